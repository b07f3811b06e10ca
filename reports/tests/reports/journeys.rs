//! A journey run's throughput chart holds the target (journeys per second) against the
//! journeys started each second, and says the unit of every line.

use std::collections::BTreeMap;

use faultline_reports::{Claims, GateReport, Report, Section};
use faultline_results::{JourneyResults, JourneySecond};

use crate::support::plain_results;

/// The labels of the throughput chart's lines.
fn throughput_labels(results: &faultline_results::Results) -> String {
    let claims = Claims::builtin().unwrap();
    let report = Report::build(results, &claims, GateReport::default()).unwrap();
    report
        .sections
        .iter()
        .find_map(|section| match section {
            Section::Chart(chart) if chart.id == "throughput" => Some(
                chart
                    .series
                    .iter()
                    .map(|s| s.label.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        })
        .expect("a throughput chart")
}

#[test]
fn a_journey_run_draws_journeys_started_against_its_target() {
    let mut results = plain_results();
    let first = results.seconds.first().expect("the run has seconds").second;
    results.journeys = Some(JourneyResults {
        driver: "open".into(),
        started: BTreeMap::from([("browse".to_string(), 30)]),
        seconds: (0..3)
            .map(|i| JourneySecond {
                second: first + i,
                started: 10,
            })
            .collect(),
        dropped: 0,
        consistency_unseen: 0,
        consistency_deadline_ms: 30_000.0,
    });
    let labels = throughput_labels(&results);
    for label in [
        "target (journeys/s)",
        "journeys started/s",
        "requests/s, all endpoints",
    ] {
        assert!(labels.contains(label), "{label} missing from:\n{labels}");
    }

    // Without per-second starts (results of an older version) there is no such line.
    results.journeys.as_mut().unwrap().seconds.clear();
    let labels = throughput_labels(&results);
    assert!(!labels.contains("journeys started/s"));
    assert!(labels.contains("target (journeys/s)"));

    // A request run keeps its own labels.
    let labels = throughput_labels(&plain_results());
    assert!(labels.contains("achieved, all endpoints"));
    assert!(!labels.contains("journeys"));
}
