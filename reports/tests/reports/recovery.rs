//! Recovery per target: each fault's time until its replica was ready again and until
//! the SLOs held again, in the report's faults table and in the `faults` metrics that
//! the recovery claims are held against.

use faultline_reports::{Claims, GateReport, Metric, Report};

use crate::support::real_results;

fn measure(text: &str) -> Option<f64> {
    let metric = Metric::parse(text).unwrap();
    metric
        .measure(real_results(), &Default::default())
        .value()
        .map(|q| q.value)
}

#[test]
fn ready_time_is_read_per_target_and_only_where_it_was_watched() {
    // The support run's pause of "flaky" was watched back to ready after 0.4 s; the
    // Kafka latency fault acts on no replica.
    assert_eq!(measure("faults.ready_time"), Some(0.4));
    assert_eq!(measure("faults:flaky.ready_time"), Some(0.4));
    assert_eq!(measure("faults:127.0.0.1:9092.ready_time"), None);
    assert_eq!(measure("faults:flaky.count"), Some(1.0));
    assert_eq!(measure("faults:nobody.recovery_time"), None);
    // Per target, the SLO recovery is at most the longest over every fault.
    let longest = measure("faults.recovery_time").unwrap();
    let flaky = measure("faults:flaky.recovery_time").unwrap();
    assert!(flaky <= longest, "{flaky} > {longest}");
    assert!(Metric::parse("faults:.ready_time").is_err());
}

#[test]
fn the_faults_table_gives_each_fault_its_ready_and_slo_recovery() {
    let claims = Claims::builtin().unwrap();
    let html = Report::build(real_results(), &claims, GateReport::default())
        .unwrap()
        .html();
    let table = &html[html.find("<h2 id=\"faults\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("<th>ready again after</th>"), "{table}");
    let pause = table
        .split("<tr>")
        .find(|row| row.contains("pause flaky backend"))
        .unwrap();
    assert!(pause.contains("400 ms"), "{pause}");
}
