//! The table `faultline broker-bench` prints on stdout (and the claims suite keeps as
//! `brokers/<broker>.txt`): one run's settings and figures, one per line.

use std::fmt::Write as _;

use faultline_results::broker_bench::BrokerBenchResults;

/// The run as a two-column table.
pub fn render(results: &BrokerBenchResults) -> String {
    let s = &results.settings;
    let m = &results.measured;
    let mut rows: Vec<(String, String)> = vec![
        (
            "broker".into(),
            format!("{} {}", results.broker, results.broker_version),
        ),
        ("tool".into(), results.broker.tool().into()),
        (
            "load".into(),
            format!(
                "{} producer(s), {} consumer(s), {} B messages, {:.0} s{}",
                s.producers,
                s.consumers,
                s.message_bytes,
                s.duration_secs,
                s.messages
                    .map(|n| format!(" ({n} messages)"))
                    .unwrap_or_default()
            ),
        ),
        ("published msg/s".into(), format!("{:.0}", m.msgs_per_sec)),
        ("published MiB/s".into(), format!("{:.1}", m.mb_per_sec)),
    ];
    if let Some(received) = m.received_per_sec {
        rows.push(("consumed msg/s".into(), format!("{received:.0}")));
    }
    if let Some(latency) = &m.latency {
        rows.push(("latency of".into(), latency.what.clone()));
        rows.push(("latency min".into(), format!("{} µs", latency.min_us)));
        for point in &latency.percentiles {
            rows.push((
                format!("latency p{}", point.percentile),
                format!("{} µs", point.us),
            ));
        }
    }
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut table = String::new();
    for (label, value) in rows {
        let _ = writeln!(table, "{label:<width$}  {value}");
    }
    table
}
