//! `faultline gate` through the library functions the binary calls: exit codes,
//! junit.xml as read by a real JUnit consumer (Python's junitparser), summary.md,
//! the baseline budget, and malformed input.

use std::{path::Path, process::Command};

use faultline_reports::{
    all_gates,
    cli::{GateArgs, GateSources},
    gate_exit_code, run_gate, Claims, Gate, GateReport, Report,
};
use faultline_results::{histogram::new_histogram, EncodedHistogram, GateSpec, Results};

use crate::support::{plain_results, temp_dir, write_results};

fn gate_args(results: &Path, gates: &[&str]) -> GateArgs {
    GateArgs {
        results: results.into(),
        output: None,
        sources: GateSources {
            gates: gates.iter().map(|g| g.to_string()).collect(),
            scenario: None,
            baseline: None,
            max_regression: "10%".into(),
            regression_floor: "1ms".into(),
            claims: None,
        },
    }
}

/// (passed, failed) test cases of a JUnit file, as junitparser counts them.
fn junitparser_counts(junit: &Path) -> (usize, usize) {
    let script = r#"
import sys
try:
    from junitparser import JUnitXml, Failure
except ImportError:
    sys.exit("junitparser is not installed: run `make setup`")
xml = JUnitXml.fromfile(sys.argv[1])
passed = failed = 0
for suite in xml:
    for case in suite:
        if case.is_passed:
            passed += 1
        elif any(isinstance(r, Failure) for r in case.result):
            failed += 1
print(passed, failed)
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(junit)
        .output()
        .expect("python3 is needed to read junit.xml with junitparser: run `make setup`");
    assert!(
        output.status.success(),
        "junitparser failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut numbers = text.split_whitespace().map(|n| n.parse::<usize>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[test]
fn a_breached_threshold_exits_1_and_junitparser_counts_the_passed_and_failed_gates() {
    let dir = temp_dir();
    let mut results = plain_results();
    // A gate the run recorded from its scenario is judged too.
    results.gates = vec![GateSpec {
        metric: "http.requests".into(),
        max: None,
        min: Some("100".into()),
    }];
    let path = write_results(&results, dir.path(), "results.json");
    // The stall makes the p99 hundreds of milliseconds: the 1 ms gate is breached.
    let args = gate_args(
        &path,
        &[
            "http.p99<1ms",
            "http.error_rate<=50%",
            "checker.lost<=0",
            "endpoint:GET /.p50<5s",
        ],
    );
    let outcome = run_gate(&args);
    let run = outcome.as_ref().unwrap();
    assert_eq!(gate_exit_code(&outcome), 1);
    // checker.lost fails too: the plain run has no checker, and an unchecked gate fails.
    assert_eq!((run.report.passed(), run.report.failed()), (3, 2));
    assert_eq!(run.junit, dir.path().join("junit.xml"));
    assert_eq!(junitparser_counts(&run.junit), (3, 2));
    let xml = std::fs::read_to_string(&run.junit).unwrap();
    assert!(xml.contains("breached: measured"), "{xml}");
    assert!(xml.contains("limit &lt; 1 ms"), "{xml}");
    let summary = std::fs::read_to_string(&run.summary).unwrap();
    assert!(summary.contains("| ❌ | `http.p99 < 1 ms` |"), "{summary}");
    assert!(summary.contains("2 of 5 gates failed"), "{summary}");
}

#[test]
fn gates_that_all_hold_exit_0_and_scenario_gates_are_read_from_the_file() {
    let dir = temp_dir();
    let path = write_results(&plain_results(), dir.path(), "results.json");
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(
        &scenario,
        "[load]\nrate = 150\n\n[[gates]]\nmetric = \"http.p99\"\nmax = \"5s\"\n\n[[gates]]\nmetric = \"http.rate\"\nmin = \"50/s\"\n",
    )
    .unwrap();
    let mut args = gate_args(&path, &["http.error_rate<=50%"]);
    args.sources.scenario = Some(scenario);
    args.output = Some(dir.path().join("out"));
    let outcome = run_gate(&args);
    assert_eq!(
        gate_exit_code(&outcome),
        0,
        "{:#?}",
        outcome.as_ref().unwrap().report
    );
    let run = outcome.unwrap();
    assert_eq!(run.report.results.len(), 3);
    assert!(run.report.results[0].origin.ends_with("scenario.toml:4"));
    assert_eq!(
        junitparser_counts(&dir.path().join("out/junit.xml")),
        (3, 0)
    );
}

#[test]
fn the_demo_scenario_gives_its_four_gates_and_a_gate_table_is_refused_with_its_line() {
    let dir = temp_dir();
    let path = write_results(&plain_results(), dir.path(), "results.json");
    let mut args = gate_args(&path, &[]);
    args.output = Some(dir.path().join("out"));
    args.sources.scenario = Some(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/demo/checkout.toml"
        )
        .into(),
    );
    let run = run_gate(&args).unwrap();
    let from_scenario = run
        .report
        .results
        .iter()
        .filter(|r| r.origin.contains("checkout.toml:"))
        .count();
    assert_eq!(from_scenario, 4, "{:#?}", run.report);

    let singular = dir.path().join("singular.toml");
    std::fs::write(
        &singular,
        "[load]\nrate = 5\n\n[[gate]]\nmetric = \"http.p99\"\nmax = \"5s\"\n",
    )
    .unwrap();
    args.sources.scenario = Some(singular);
    let outcome = run_gate(&args);
    assert_eq!(gate_exit_code(&outcome), 2);
    let message = outcome.unwrap_err().to_string();
    assert!(message.contains("singular.toml"), "{message}");
    assert!(message.contains("line 4"), "{message}");
    assert!(message.contains("[[gates]]"), "{message}");
}

/// The results with every latency doubled.
fn twice_as_slow(results: &Results) -> Results {
    let double = |encoded: &EncodedHistogram| {
        let histogram = encoded.decode().unwrap();
        let mut slower = new_histogram();
        for value in histogram.iter_recorded() {
            slower
                .record_n(value.value_iterated_to() * 2, value.count_at_value())
                .unwrap();
        }
        EncodedHistogram::encode(&slower).unwrap()
    };
    let mut slow = results.clone();
    slow.totals.latency = double(&slow.totals.latency);
    for endpoint in slow.endpoints.values_mut() {
        endpoint.totals.latency = double(&endpoint.totals.latency);
    }
    slow
}

#[test]
fn a_regression_beyond_the_budget_exits_1_and_one_within_it_exits_0() {
    let dir = temp_dir();
    let baseline = write_results(&plain_results(), dir.path(), "base.json");
    let current = write_results(&twice_as_slow(&plain_results()), dir.path(), "current.json");

    let mut args = gate_args(&current, &[]);
    args.sources.baseline = Some(baseline.clone());
    let outcome = run_gate(&args);
    assert_eq!(gate_exit_code(&outcome), 1);
    let report = &outcome.as_ref().unwrap().report;
    let p99 = report
        .results
        .iter()
        .find(|r| r.name == "endpoint:GET /stall.p99 vs baseline")
        .unwrap();
    assert!(!p99.passed);
    assert!(
        p99.message.contains("regressed beyond budget"),
        "{}",
        p99.message
    );
    assert!(p99.message.contains("+100"), "{}", p99.message);

    args.sources.max_regression = "150%".into();
    let outcome = run_gate(&args);
    assert_eq!(
        gate_exit_code(&outcome),
        0,
        "{:#?}",
        outcome.as_ref().unwrap().report
    );

    // The same run against itself is within any budget.
    let mut args = gate_args(&baseline, &[]);
    args.sources.baseline = Some(baseline.clone());
    args.sources.max_regression = "0%".into();
    assert_eq!(gate_exit_code(&run_gate(&args)), 0);
}

#[test]
fn malformed_results_exit_2_with_the_file_and_the_json_path_and_line() {
    let dir = temp_dir();
    let good = serde_json::to_string_pretty(&plain_results()).unwrap();
    let bad = good.replacen("\"requests\": ", "\"requests\": \"many\", \"was\": ", 1);
    let path = dir.path().join("broken.json");
    std::fs::write(&path, &bad).unwrap();
    let outcome = run_gate(&gate_args(&path, &["http.p99<1s"]));
    assert_eq!(gate_exit_code(&outcome), 2);
    let message = outcome.unwrap_err().to_string();
    assert!(message.contains("broken.json"), "{message}");
    assert!(message.contains("totals.requests"), "{message}");
    assert!(message.contains("line "), "{message}");
    assert!(!dir.path().join("junit.xml").exists());

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let message = run_gate(&gate_args(&path, &[])).unwrap_err().to_string();
    assert!(message.contains("EOF while parsing"), "{message}");

    let missing = run_gate(&gate_args(&dir.path().join("nope.json"), &[]));
    assert_eq!(gate_exit_code(&missing), 2);
    assert!(missing.unwrap_err().to_string().contains("nope.json"));

    let good_path = write_results(&plain_results(), dir.path(), "results.json");
    let bad_gate = run_gate(&gate_args(&good_path, &["http.p99<fast"]));
    assert_eq!(gate_exit_code(&bad_gate), 2);
    let message = bad_gate.unwrap_err().to_string();
    assert!(message.contains("\"fast\""), "{message}");
}

#[test]
fn a_run_judges_its_gates_once_and_its_page_junit_and_summary_agree() {
    let dir = temp_dir();
    let results = plain_results();
    let claims = Claims::builtin().unwrap();
    let extra = [
        Gate::parse_expression("http.p99<1ms", "run").unwrap(),
        Gate::parse_expression("http.error_rate<=50%", "run").unwrap(),
    ];
    let gates = all_gates(&results, &extra).unwrap();
    let judged = GateReport::judge(&results, &gates, None, &claims.groups);
    assert_eq!((judged.passed(), judged.failed()), (1, 1));
    let report = Report::build(&results, &claims, judged).unwrap();
    let written = report.write_all(&dir.path().join("run")).unwrap();
    assert_eq!(written.index, dir.path().join("run/index.html"));
    assert_eq!(junitparser_counts(&written.junit), (1, 1));
    let summary = std::fs::read_to_string(&written.summary).unwrap();
    assert!(summary.contains("1 of 2 gates failed"), "{summary}");
    let html = std::fs::read_to_string(&written.index).unwrap();
    assert!(html.contains("http.p99 &lt; 1 ms") || html.contains("http.p99 < 1 ms"));
    assert_eq!(report.gates.exit_code(), 1);
}
