//! Capacity search (`faultline load --find-max`) against a server whose latency jumps
//! above a known rate ([`server::CAPACITY`]): the climb stops at the first step that
//! breaks the p99 gate, and bisection finds that rate within one bisection step.

use faultline_results::{CapacityResults, RunInfo, SearchEnd, StepPhase};
use faultline_scenarios::load;

use crate::{
    load_args,
    server::{TestServer, CAPACITY, SLOW},
};

/// The search's bracket at its end: the capacity and the lowest broken rate above it.
fn bracket(search: &CapacityResults) -> (f64, f64) {
    let capacity = search.capacity.unwrap();
    let first_bad = search
        .steps
        .iter()
        .filter(|s| !s.passed && s.offered_rate > capacity)
        .map(|s| s.offered_rate)
        .fold(f64::INFINITY, f64::min);
    (capacity, first_bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_search_finds_the_rate_where_latency_jumps_within_one_bisection_step() {
    let server = TestServer::start().await;
    let url = server.url("/capacity");
    // Half of SLOW: a step breaks when more than 1% of its requests wait for a token.
    let gate = format!("http.p99<{}ms", SLOW.as_millis() / 2);
    let argv = [
        url.as_str(),
        "--find-max",
        "--start-rate",
        "60",
        "--rate-factor",
        "2",
        "--max-rate",
        "1000",
        "--hold",
        "1500ms",
        "--rounds",
        "3",
        "--gate",
        &gate,
        "--gate",
        "http.error_rate<1%",
        "-q",
    ];
    let results = load::run(load_args(&argv), RunInfo::default())
        .await
        .unwrap();
    let search = results.capacity.as_ref().unwrap();
    let rates: Vec<f64> = search.steps.iter().map(|s| s.offered_rate).collect();
    assert_eq!(search.ended, SearchEnd::Bracketed, "{rates:?}");

    // The climb: 60, 120, then 240 breaks the gate (the first rate above CAPACITY).
    let climb: Vec<&_> = search
        .steps
        .iter()
        .filter(|s| s.phase == StepPhase::Climb)
        .collect();
    let (last_good, first_bad) = (climb[climb.len() - 2], climb[climb.len() - 1]);
    assert!(last_good.passed && !first_bad.passed, "{rates:?}");
    assert!(
        last_good.offered_rate < CAPACITY && first_bad.offered_rate > CAPACITY,
        "the climb brackets the known capacity: {rates:?}"
    );
    let broken = first_bad.broken.as_deref().unwrap();
    assert!(broken.starts_with("http.p99"), "{broken}");
    assert_eq!(
        search.steps.len(),
        climb.len() + 3,
        "three rounds: {rates:?}"
    );

    // Bisection narrowed the knee to one step of its last round, and the known
    // capacity lies within that step of what was found.
    let (capacity, above) = bracket(search);
    let width = (first_bad.offered_rate - last_good.offered_rate) / 8.0;
    assert!(
        above - capacity <= width + 1e-9,
        "bracket {capacity}..{above}: {rates:?}"
    );
    assert!(
        (capacity - CAPACITY).abs() <= width,
        "capacity {capacity}/s, known {CAPACITY}/s, one step {width}/s: {rates:?}"
    );
    // The rest of the results are the run at capacity.
    assert_eq!(results.schedule.stages[0].to_rate, capacity);
}

#[tokio::test]
async fn a_bad_gate_or_staircase_is_a_usage_error_before_any_load() {
    for (extra, expected) in [
        (
            &["--max-rate", "100", "--gate", "http.p99<fast"][..],
            "--gate",
        ),
        (
            &["--max-rate", "100", "--gate", "http.p999x<1s"][..],
            "http.p999x",
        ),
        (&["--max-rate", "100", "--rate-factor", "1"][..], "factor"),
        (&["--max-rate", "5"][..], "max"),
    ] {
        // Port 1 is never reached: arguments are checked first.
        let mut argv = vec!["http://127.0.0.1:1/", "--find-max", "--start-rate", "10"];
        argv.extend_from_slice(extra);
        let err = load::run(load_args(&argv), RunInfo::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{argv:?}: {err}");
        assert_eq!(err.exit_code(), 2, "{argv:?}");
    }
    let err = load::run(
        load_args(&["http://127.0.0.1:1/", "--find-max", "--max-rate", "100"]),
        RunInfo::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--start-rate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_files_find_max_table_runs_the_search_it_describes() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("search.toml");
    // Both steps are below CAPACITY: every gate holds up to the maximum rate.
    let text = format!(
        "[load]\ntarget = \"{}\"\n[load.find_max]\nstart = 50\nstep = 50\nmax = 100\nhold = \"1s\"\nrounds = 2\ngates = [\"http.p99<200ms\"]\n",
        server.url("/capacity")
    );
    std::fs::write(&scenario, &text).unwrap();
    let args = load_args(&["--scenario", scenario.to_str().unwrap(), "-q"]);
    let results = load::run(args, RunInfo::default()).await.unwrap();
    let search = results.capacity.as_ref().unwrap();
    let rates: Vec<f64> = search.steps.iter().map(|s| s.offered_rate).collect();
    assert_eq!(rates, [50.0, 100.0]);
    assert_eq!(search.ended, SearchEnd::MaxRate);
    assert_eq!(search.capacity, Some(100.0));
    assert_eq!(search.search.gates, ["http.p99<200ms"]);
    assert_eq!(search.search.step, Some(50.0));
    assert_eq!(
        server.total(),
        150,
        "one request per due time of both steps"
    );
    assert_eq!(results.scenario_text.as_deref(), Some(text.as_str()));
}
