//! Human-readable output: the end-of-run summary table and the live progress line.
//!
//! Both read plain data ([`Results`], [`Progress`]) and return strings, so the CLI
//! decides where they go and tests can check them.

use std::fmt::Write as _;

use faultline_results::{
    Arrivals, ErrorClass, HttpVersion, LatencyOrigin, LatencySummary, LoadModel, Results,
    TlsResults,
};

use crate::engine::Progress;

/// Formats microseconds for people: `0.21 ms`, `12.3 ms`, `1.50 s`.
pub fn format_micros(micros: u64) -> String {
    let ms = micros as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn percentiles(summary: &LatencySummary) -> String {
    format!(
        "p50 {} | p90 {} | p99 {} | p99.9 {} | max {}",
        format_micros(summary.p50_us),
        format_micros(summary.p90_us),
        format_micros(summary.p99_us),
        format_micros(summary.p99_9_us),
        format_micros(summary.max_us)
    )
}

/// The summary printed at the end of a run (or a merge).
pub fn summary_table(results: &Results) -> String {
    let mut out = String::new();
    write_load(&mut out, results);
    write_latency_and_errors(&mut out, results);
    write_endpoints(&mut out, results);
    write_consistency(&mut out, results);
    tls_line(&mut out, results.tls.as_ref());
    if let Some(ledger) = &results.write_ledger {
        let _ = writeln!(out, "ledger      {ledger}");
    }
    if let Some(capacity) = &results.capacity {
        let _ = writeln!(out, "search      {}", capacity.headline());
    }
    if let Some(warm_up) = &results.warm_up {
        let _ = writeln!(out, "warm-up     {}, not recorded", warm_up.describe());
    }
    if let Some(message) = &results.generator.message {
        let _ = writeln!(out, "WARNING     {message}");
    }
    out
}

/// What was asked for and what was sent: target, load, journeys, requests.
fn write_load(out: &mut String, results: &Results) {
    let meta = &results.metadata;
    let schedule = &results.schedule;
    let model = match (schedule.model, schedule.arrivals) {
        (LoadModel::Closed, _) => "closed model (no pacing)",
        (LoadModel::Open, Some(Arrivals::Poisson { .. })) => "open model, Poisson arrivals",
        (LoadModel::Open, _) => "open model, uniform arrivals",
    };
    let http = match meta.http_version {
        HttpVersion::Http1 => "HTTP/1.1",
        HttpVersion::Http2 => "HTTP/2",
    };
    let _ = writeln!(out, "target      {}", meta.target);
    let _ = writeln!(
        out,
        "load        {model}, {:.1} s, {} connections{}, {http}{}",
        meta.duration_secs,
        meta.connections,
        if meta.streams > 1 {
            format!(" × {} streams", meta.streams)
        } else {
            String::new()
        },
        if meta.workers > 1 {
            format!(", {} workers merged", meta.workers)
        } else {
            String::new()
        }
    );
    let target_rate = match schedule.model {
        LoadModel::Open if schedule.duration_secs > 0.0 => {
            let expected: f64 = schedule.stages.iter().map(|s| s.expected_requests()).sum();
            let unit = if results.journeys.is_some() {
                " journeys"
            } else {
                ""
            };
            format!(" (target {:.1}{unit}/s)", expected / schedule.duration_secs)
        }
        _ => String::new(),
    };
    if let Some(journeys) = &results.journeys {
        let started: Vec<String> = journeys
            .started
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let total: u64 = journeys.started.values().sum();
        let _ = writeln!(
            out,
            "journeys    {total} started ({}), {:.1}/s, {} dropped, driver {}",
            started.join(", "),
            total as f64 / meta.duration_secs.max(f64::MIN_POSITIVE),
            journeys.dropped,
            journeys.driver
        );
    }
    let totals = &results.totals;
    let _ = writeln!(
        out,
        "requests    {} sent, {} ok, {:.1}/s achieved{target_rate}",
        totals.requests, totals.ok, totals.achieved_rate
    );
}

/// Latency, errors by class, and for an open schedule whether the generator kept up.
fn write_latency_and_errors(out: &mut String, results: &Results) {
    let totals = &results.totals;
    let open = results.schedule.model == LoadModel::Open;
    let origin = match results.metadata.latency_origin {
        LatencyOrigin::IntendedSendTime => "from the intended send time",
        LatencyOrigin::ActualSendTime => {
            "from the actual send time: hides stalls (coordinated omission)"
        }
    };
    if open {
        let _ = writeln!(
            out,
            "latency     {}   ({origin})",
            percentiles(&totals.latency_summary)
        );
    } else {
        let _ = writeln!(out, "latency     {}", percentiles(&totals.latency_summary));
    }
    let errors: Vec<String> = ErrorClass::ALL
        .iter()
        .map(|c| format!("{} {}", c.name(), totals.errors.get(*c)))
        .collect();
    let _ = writeln!(
        out,
        "errors      {} ({})",
        totals.errors.total(),
        errors.join(", ")
    );
    if open {
        let _ = writeln!(
            out,
            "send delay  {}",
            percentiles(&totals.send_delay_summary)
        );
        let _ = writeln!(
            out,
            "late        {} sent more than {} ms late, {} dropped",
            totals.late, results.generator.late_threshold_ms, totals.dropped
        );
    }
}

/// One line per endpoint, when there is more than one.
fn write_endpoints(out: &mut String, results: &Results) {
    if results.endpoints.len() <= 1 {
        return;
    }
    let _ = writeln!(out, "endpoints");
    for (name, endpoint) in &results.endpoints {
        let t = &endpoint.totals;
        let _ = writeln!(
            out,
            "  {name:<30} {:>9} req  {:>9.1}/s  p50 {:>9}  p99 {:>9}  errors {}",
            t.requests,
            t.achieved_rate,
            format_micros(t.latency_summary.p50_us),
            format_micros(t.latency_summary.p99_us),
            t.errors.total()
        );
    }
}

/// The consistency window, when the run measured it.
fn write_consistency(out: &mut String, results: &Results) {
    let Some(histogram) = results
        .consistency_window
        .as_ref()
        .and_then(|window| window.decode().ok())
    else {
        return;
    };
    let unseen = results
        .journeys
        .as_ref()
        .map(|j| {
            format!(
                ", {} not seen within {:.0} s",
                j.consistency_unseen,
                j.consistency_deadline_ms / 1000.0
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "consistency {}   (write acknowledged -> read model serves it, {} writes{unseen})",
        percentiles(&LatencySummary::of(&histogram)),
        histogram.len()
    );
}

/// The TLS handshakes of an `https://` run, on one line.
fn tls_line(out: &mut String, tls: Option<&TlsResults>) {
    let Some(tls) = tls else { return };
    let failures: Vec<String> = tls
        .failures
        .iter()
        .map(|(cause, count)| format!("{cause} {count}"))
        .collect();
    let failures = if failures.is_empty() {
        String::new()
    } else {
        format!(", failed: {}", failures.join(", "))
    };
    let _ = writeln!(
        out,
        "tls         {} handshakes ({} resumed{failures})   handshake {}",
        tls.handshakes,
        tls.resumed,
        percentiles(&tls.handshake_summary)
    );
}

/// The one-line live progress (without the leading `\r`).
pub fn progress_line(progress: &Progress) -> String {
    let target = match progress.target_rate {
        Some(rate) => match progress.target_unit {
            Some(unit) => format!("target {rate:.0} {unit}/s  "),
            None => format!("target {rate:.0}/s  "),
        },
        None => String::new(),
    };
    format!(
        "[{:>5.0}s/{:.0}s] {target}achieved {}/s  p50 {}  p99 {}  errors {} ({} last s)  late {}  dropped {}",
        progress.elapsed.as_secs_f64(),
        progress.total.as_secs_f64(),
        progress.last_second_requests,
        format_micros(progress.last_second_p50_us),
        format_micros(progress.last_second_p99_us),
        progress.errors,
        progress.last_second_errors,
        progress.late,
        progress.dropped
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_are_formatted_for_people() {
        assert_eq!(format_micros(210), "0.21 ms");
        assert_eq!(format_micros(12_345), "12.3 ms");
        assert_eq!(format_micros(1_500_000), "1.50 s");
    }
}
