//! Resources sampled from `/proc` in the report and in the metric vocabulary: a CPU and a
//! memory chart naming each process, valid against the results schema, and the
//! `resources:` metrics that the resource claims are held against.

use faultline_reports::{report::Section, Claims, GateReport, Metric, Report};
use faultline_results::{
    quantity::Dimension, MachineSample, ProcessResources, ProcessSample, ResourceResults, Results,
};

use crate::support::plain_results;

/// Two processes on a 2-core machine over 3 s: orders-1 busy half a core, postgres a
/// whole one; 64 and 192 MiB; the machine moving 1 MB/s and 10 disk operations/s.
fn sampled() -> Results {
    let mut results = plain_results();
    let process = |name: &str, cores: f64, mib: u64| ProcessResources {
        name: name.into(),
        samples: (0..4)
            .map(|t| ProcessSample {
                t: f64::from(t),
                cpu_secs: 10.0 + cores * f64::from(t),
                rss_bytes: mib << 20,
            })
            .collect(),
    };
    results.resources = Some(ResourceResults {
        interval_secs: 1.0,
        cores: 2,
        processes: vec![process("orders-1", 0.5, 64), process("postgres", 1.0, 192)],
        machine: (0..4u64)
            .map(|t| MachineSample {
                t: t as f64,
                net_rx_bytes: 600_000 * t,
                net_tx_bytes: 400_000 * t,
                disk_reads: 4 * t,
                disk_writes: 6 * t,
            })
            .collect(),
    });
    results
}

#[test]
fn sampled_resources_validate_against_the_schema() {
    crate::schema::assert_valid(&sampled());
}

#[test]
fn the_report_draws_cpu_and_memory_per_process_and_a_run_without_samples_draws_none() {
    let claims = Claims::builtin().unwrap();
    let results = sampled();
    let report = Report::build(&results, &claims, GateReport::default()).unwrap();
    for id in ["resources-cpu", "resources-memory"] {
        let Some(Section::Chart(chart)) = report.sections.iter().find(|s| s.id() == id) else {
            panic!("no chart {id}");
        };
        let labels: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["orders-1", "postgres", "the whole system"], "{id}");
    }
    let plain = plain_results();
    let report = Report::build(&plain, &claims, GateReport::default()).unwrap();
    assert!(!report
        .sections
        .iter()
        .any(|s| s.id().starts_with("resources-")));
}

#[test]
fn resource_metrics_measure_the_samples_in_their_units() {
    let results = sampled();
    let groups = Default::default();
    let measure = |text: &str| {
        let metric = Metric::parse(text).unwrap();
        let value = metric.measure(&results, &groups).value().unwrap();
        (value.value, value.dimension)
    };
    // 1.5 cores of 2.
    assert_eq!(measure("resources:cpu.max"), (0.75, Dimension::Ratio));
    assert_eq!(
        measure("resources:memory.max"),
        ((256u64 << 20) as f64, Dimension::Bytes)
    );
    assert_eq!(
        measure("resources:network.mean"),
        (1e6, Dimension::ByteRate)
    );
    assert_eq!(measure("resources:disk_ops.last"), (10.0, Dimension::Rate));
    // A run that sampled nothing says so rather than measuring 0.
    let plain = plain_results();
    let metric = Metric::parse("resources:cpu.max").unwrap();
    assert!(metric.measure(&plain, &groups).value().is_none());
    assert!(Metric::parse("resources:gpu.max").is_err());
    assert!(Metric::parse("resources:cpu.p99").is_err());
}
