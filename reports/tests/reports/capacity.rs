//! A capacity search's results in the report: latency against offered rate with the
//! knee marked, the table of steps, the capacity in `summary.md`, all valid against the
//! results schema.

use faultline_reports::{report::Section, Claims, GateReport, Report};
use faultline_results::{
    CapacityResults, CapacitySearch, CapacityStep, Results, SearchEnd, StepPhase,
};

use crate::support::plain_results;

fn step(phase: StepPhase, rate: f64, p99_ms: u64, broken: Option<&str>) -> CapacityStep {
    CapacityStep {
        phase,
        offered_rate: rate,
        achieved_rate: rate * 0.99,
        requests: rate as u64,
        errors: 0,
        dropped: 0,
        p50_us: 900,
        p99_us: p99_ms * 1000,
        passed: broken.is_none(),
        broken: broken.map(str::to_string),
    }
}

/// A run with a capacity search of 150/s recorded (the claims tests use it too).
pub fn searched() -> Results {
    let mut results = plain_results();
    results.capacity = Some(CapacityResults {
        search: CapacitySearch {
            start_rate: 50.0,
            factor: Some(2.0),
            step: None,
            max_rate: 1000.0,
            hold_secs: 2.0,
            rounds: 2,
            gates: vec!["http.p99<100ms".into()],
        },
        steps: vec![
            step(StepPhase::Climb, 50.0, 4, None),
            step(StepPhase::Climb, 100.0, 5, None),
            step(StepPhase::Climb, 200.0, 700, Some("http.p99 ≤ 100 ms")),
            step(StepPhase::Bisect, 150.0, 9, None),
            step(StepPhase::Bisect, 175.0, 300, Some("http.p99 ≤ 100 ms")),
        ],
        capacity: Some(150.0),
        ended: SearchEnd::Bracketed,
    });
    results
}

#[test]
fn a_capacity_search_validates_against_the_schema() {
    let instance = serde_json::to_value(searched()).unwrap();
    let validator = crate::schema::validator();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_report_draws_latency_against_offered_rate_with_the_knee_at_the_capacity() {
    let results = searched();
    let claims = Claims::builtin().unwrap();
    let report = Report::build(&results, &claims, GateReport::default()).unwrap();
    let Some(Section::Chart(chart)) = report.sections.iter().find(|s| s.id() == "capacity") else {
        panic!("no capacity chart");
    };
    let labels: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        ["p50 latency", "p99 latency", "capacity (knee): 150/s"]
    );
    let html = report.html();
    let section = &html[html.find("<h2 id=\"capacity\">").unwrap()..];
    assert!(section.contains("capacity 150/s"), "the headline");
    // The table has a row per step, in the order run.
    let rows: Vec<&str> = section
        .split("<tr>")
        .skip(2)
        .take(5)
        .map(|row| row.split("</td>").nth(2).unwrap_or(""))
        .collect();
    assert_eq!(
        rows.iter()
            .map(|cell| cell.rsplit('>').next().unwrap())
            .collect::<Vec<_>>(),
        ["50", "100", "200", "150", "175"]
    );
    // The chart is drawn once, in the capacity section, not again among the time charts.
    assert_eq!(html.matches("data-chart=\"capacity\"").count(), 1);
}

#[test]
fn the_summary_carries_the_capacity_and_a_plain_run_has_none() {
    let results = searched();
    let md = GateReport::default().summary_markdown(&results);
    assert!(md.contains("**Capacity search**: capacity 150/s"), "{md}");
    assert!(md.contains("175/s broke http.p99"), "{md}");
    let plain = plain_results();
    let claims = Claims::builtin().unwrap();
    let html = Report::build(&plain, &claims, GateReport::default())
        .unwrap()
        .html();
    assert!(!html.contains("id=\"capacity\""));
    assert!(!GateReport::default()
        .summary_markdown(&plain)
        .contains("Capacity"));
}
