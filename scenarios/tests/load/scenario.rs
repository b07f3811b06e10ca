//! `faultline load --scenario FILE`: the file read through the one Scenario model
//! (checked whole, every problem with its line), its `[load]` run, its gates and text
//! kept in results. (Moved from loadgen's tests when loadgen's own scenario reader went.)

use faultline_results::RunInfo;
use faultline_scenarios::load;

use crate::{load_args, server::TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_file_runs_its_requests_and_keeps_its_gates_and_text() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    let text = format!(
        r#"name = "two endpoints"
[load]
target = "{}"
rate = 40
duration = "1s"
connections = 4
[[load.requests]]
path = "/a"
[[load.requests]]
method = "POST"
path = "/b"
body = "hello"
[[gates]]
metric = "http.p99"
max = "500ms"
"#,
        server.url("")
    );
    std::fs::write(&scenario, &text).unwrap();
    let args = load_args(&["--scenario", scenario.to_str().unwrap(), "-q"]);
    let results = load::run(args, RunInfo::default()).await.unwrap();
    assert_eq!(results.metadata.scenario.as_deref(), Some("two endpoints"));
    assert_eq!(results.metadata.connections, 4);
    assert_eq!(results.totals.requests, 40);
    assert_eq!(results.endpoints["GET /a"].totals.requests, 20);
    assert_eq!(results.endpoints["POST /b"].totals.requests, 20);
    assert_eq!(results.gates.len(), 1);
    assert_eq!(results.scenario_text.as_deref(), Some(text.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_up_runs_first_at_the_load_s_rate_and_is_not_recorded() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    let text = format!(
        "name = \"warmed\"\n[load]\ntarget = \"{}\"\nstages = \"1s:0->40, 1s:40\"\nwarm_up = \"1s\"\nconnections = 4\n",
        server.url("/a")
    );
    std::fs::write(&scenario, &text).unwrap();
    let args = load_args(&["--scenario", scenario.to_str().unwrap(), "-q"]);
    let results = load::run(args, RunInfo::default()).await.unwrap();
    let warm_up = results
        .warm_up
        .as_ref()
        .expect("the warm-up is in the results");
    // The load ramps up from nothing: the warm-up runs at the rate it ramps to.
    assert_eq!(warm_up.rate, Some(40.0));
    assert_eq!((warm_up.requests, warm_up.ok), (40, 40), "{warm_up:?}");
    // The ramp's 20 and the 40 after it are recorded; the server saw the warm-up's too.
    assert_eq!(results.totals.requests, 60);
    assert_eq!(server.total(), 100, "{:?}", server.seen());
}

#[tokio::test]
async fn bad_scenarios_are_usage_errors_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("broken.toml");
    for (text, expected) in [
        (
            "[load]\ntarget = \"http://127.0.0.1:1/\"\nrate = 5\nduraton = \"1s\"\n",
            "line 4",
        ),
        (
            "[load]\ntarget = \"http://127.0.0.1:1/\"\nrate = 5\n",
            "load.duration is missing",
        ),
        ("[load\n", "line 1"),
        // Checked whole, as `faultline run` checks it: a fault on nothing is refused too.
        (
            "[load]\ntarget = \"http://127.0.0.1:1/\"\nrate = 5\nduration = \"1s\"\n[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"ordrs\"\n",
            "line 5",
        ),
        (
            "[load]\ntarget = \"http://127.0.0.1:1/\"\n[load.find_max]\nstart = 10\nmax = 100\ngates = [\"http.p99<fast\"]\n",
            "[load.find_max]: gates",
        ),
        (
            "[load]\ntarget = \"http://127.0.0.1:1/\"\nrate = 5\nduration = \"1s\"\nwarm_up = \"0s\"\n",
            "load.warm_up must be longer than zero",
        ),
        (
            "[load]\ntarget = \"http://127.0.0.1:1/\"\nwarm_up = \"5s\"\n[load.find_max]\nstart = 10\nmax = 100\ngates = [\"http.p99<100ms\"]\n",
            "load.warm_up does not go with [load.find_max]",
        ),
        (
            "[load]\ntarget = \"http://127.0.0.1:1/\"\nstages = \"1s:0->0, 1s:0->5\"\nwarm_up = \"5s\"\n",
            "load.warm_up: the load's first stage asks for nothing",
        ),
    ] {
        std::fs::write(&scenario, text).unwrap();
        let args = load_args(&["--scenario", scenario.to_str().unwrap(), "-q"]);
        let err = load::run(args, RunInfo::default()).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(expected) && message.contains("broken.toml"),
            "{text:?}: {message}"
        );
        assert_eq!(err.exit_code(), 2, "{message}");
    }

    let missing = load_args(&["--scenario", "/nonexistent/scenario.toml", "-q"]);
    let err = load::run(missing, RunInfo::default()).await.unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/scenario.toml"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_with_hosts_weights_and_a_feeder_beside_it_runs() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("skus.jsonl"),
        "{\"sku\": \"s1\"}\n{\"sku\": \"s2\"}\n",
    )
    .unwrap();
    let scenario = dir.path().join("mix.toml");
    let text = format!(
        r#"
        [load]
        targets = ["{}", "{}"]
        rate = 400
        duration = "1s"
        max_send_delay = "30s"
        connections = 4
        [load.feeder]
        path = "skus.jsonl"
        [[load.requests]]
        weight = 3
        path = "/p/{{{{sku}}}}"
        [[load.requests]]
        path = "/health"
        "#,
        a.url("/"),
        b.url("/")
    );
    std::fs::write(&scenario, text).unwrap();
    let argv = ["--scenario", scenario.to_str().unwrap(), "-q"];
    // Run from elsewhere: the feeder's path is relative to the scenario file.
    load::run(load_args(&argv), RunInfo::default())
        .await
        .unwrap();

    let mut rows = [0, 0];
    for server in [&a, &b] {
        let seen = server.seen();
        assert_eq!(server.total(), 200, "{seen:?}");
        assert_eq!(seen.get("GET /health").copied(), Some(50), "{seen:?}");
        rows[0] += seen.get("GET /p/s1").copied().unwrap_or(0);
        rows[1] += seen.get("GET /p/s2").copied().unwrap_or(0);
    }
    // The feeder's two rows take turns over the 300 templated requests.
    assert_eq!(rows, [150, 150]);
}
