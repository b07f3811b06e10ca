//! The `load` and `merge` commands as the binary runs them.

use std::path::PathBuf;

use clap::Parser;
use faultline_loadgen::{
    cli::{run_load, run_merge, LoadArgs, MergeArgs},
    LoadError,
};
use faultline_results::{Results, RunInfo};

use crate::support::TestServer;

#[derive(Parser)]
struct Load {
    #[command(flatten)]
    args: LoadArgs,
}

#[derive(Parser)]
struct Merge {
    #[command(flatten)]
    args: MergeArgs,
}

pub fn load_args(argv: &[&str]) -> LoadArgs {
    Load::try_parse_from(std::iter::once("load").chain(argv.iter().copied()))
        .unwrap()
        .args
}

fn config_error(argv: &[&str]) -> LoadError {
    load_args(argv).to_config(RunInfo::default()).unwrap_err()
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("faultline-loadgen-{}-{name}", std::process::id()))
}

#[test]
fn bad_input_is_a_usage_error_with_exit_code_two() {
    for (argv, expected) in [
        (&["not a url", "--rate", "5"][..], "bad URL"),
        (&["http://127.0.0.1:1/", "--rate", "0"][..], "bad rate 0"),
        (&["http://127.0.0.1:1/", "--rate", "-5"][..], "bad rate -5"),
        (
            &["http://127.0.0.1:1/", "--stages", "10s:0->500, 60s500"][..],
            "stage 2 at column 13",
        ),
        (&["http://127.0.0.1:1/"][..], "give --rate"),
        (
            &["http://127.0.0.1:1/", "--rate", "5", "-H", "nocolon"][..],
            "--header",
        ),
    ] {
        let err = config_error(argv);
        assert!(err.to_string().contains(expected), "{argv:?}: {err}");
        assert_eq!(err.exit_code(), 2, "{argv:?}");
    }
}

#[test]
fn conflicting_models_are_refused_by_the_parser() {
    assert!(Load::try_parse_from(["load", "http://x/", "--rate", "5", "--closed"]).is_err());
    assert!(
        Load::try_parse_from(["load", "http://x/", "--rate", "5", "--stages", "1s:5"]).is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_writes_results_that_merge_reads() {
    let server = TestServer::start().await;
    let (first, second, merged) = (
        temp_path("a.json"),
        temp_path("b.json"),
        temp_path("all.json"),
    );
    for path in [&first, &second] {
        let url = server.url("/");
        let out = path.to_str().unwrap();
        let args = load_args(&[
            &url,
            "--rate",
            "100",
            "--duration",
            "1s",
            "-c",
            "4",
            "-q",
            "-o",
            out,
        ]);
        let info = RunInfo {
            git_commit: Some("abc123".into()),
            ..RunInfo::default()
        };
        run_load(args, info).await.unwrap();
    }
    let merge = Merge::try_parse_from([
        "merge",
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ])
    .unwrap();
    run_merge(&merge.args).unwrap();
    let all = Results::read(&merged).unwrap();
    assert_eq!(all.totals.requests, 200);
    assert_eq!(all.metadata.workers, 2);
    assert_eq!(all.metadata.git_commit.as_deref(), Some("abc123"));
    for path in [first, second, merged] {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn load_against_an_unreachable_target_exits_two() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let err = run_load(load_args(&[&url, "--rate", "5", "-q"]), RunInfo::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Unreachable { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn scraped_server_metrics_are_recorded_on_the_runs_time_axis() {
    let server = TestServer::start().await;
    let url = server.url("/");
    let base = server.url("");
    let args = load_args(&[
        &url,
        "--rate",
        "50",
        "--duration",
        "2500ms",
        "-q",
        "--scrape",
        &base,
        "--scrape-interval",
        "200ms",
    ]);
    let results = run_load(args, RunInfo::default()).await.unwrap();
    assert_eq!(
        results.server_metrics.len(),
        1,
        "only the wanted metric: {:?}",
        results.server_metrics
    );
    let series = &results.server_metrics[0];
    assert_eq!(series.name, "faultline_outbox_backlog");
    assert_eq!(
        series.labels.get("service").map(String::as_str),
        Some("test")
    );
    assert_eq!(
        series.labels.get("instance"),
        Some(&server.addr.to_string())
    );
    assert!(
        series.points.len() >= 8,
        "{} points in 2.5 s at 200 ms",
        series.points.len()
    );
    assert!(
        series.points.iter().all(|(t, _)| (-0.5..3.5).contains(t)),
        "{:?}",
        series.points
    );
    assert!(series
        .points
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    assert!(
        series.points.last().unwrap().1 >= 2.0,
        "the gauge grew with time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_file_runs_its_requests_and_keeps_its_gates_and_text() {
    let server = TestServer::start().await;
    let scenario = temp_path("scenario.toml");
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
    let results = run_load(args, RunInfo::default()).await.unwrap();
    assert_eq!(results.metadata.scenario.as_deref(), Some("two endpoints"));
    assert_eq!(results.metadata.connections, 4);
    assert_eq!(results.totals.requests, 40);
    assert_eq!(results.endpoints["GET /a"].totals.requests, 20);
    assert_eq!(results.endpoints["POST /b"].totals.requests, 20);
    assert_eq!(results.gates.len(), 1);
    assert_eq!(results.scenario_text.as_deref(), Some(text.as_str()));
    let _ = std::fs::remove_file(scenario);
}

#[tokio::test]
async fn bad_scenarios_and_journey_options_are_usage_errors_naming_what() {
    let scenario = temp_path("broken.toml");
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
    ] {
        std::fs::write(&scenario, text).unwrap();
        let args = load_args(&["--scenario", scenario.to_str().unwrap(), "-q"]);
        let err = run_load(args, RunInfo::default()).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(expected) && message.contains("broken.toml"),
            "{text:?}: {message}"
        );
        assert_eq!(err.exit_code(), 2, "{message}");
    }
    let _ = std::fs::remove_file(&scenario);

    let missing = load_args(&["--scenario", "/nonexistent/scenario.toml", "-q"]);
    let err = run_load(missing, RunInfo::default()).await.unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/scenario.toml"),
        "{err}"
    );

    for (argv, expected) in [
        (
            &["http://127.0.0.1:1", "--journeys", "shop=1", "--rate", "1"][..],
            "unknown journey",
        ),
        (
            &[
                "http://127.0.0.1:1",
                "--journeys",
                "browse=0",
                "--rate",
                "1",
            ][..],
            "above zero",
        ),
        (
            &[
                "http://127.0.0.1:1",
                "--journeys",
                "browse",
                "--rate",
                "1",
                "--driver",
                "goose",
            ][..],
            "goose has no open",
        ),
        (
            &[
                "http://127.0.0.1:1/api",
                "--journeys",
                "browse",
                "--rate",
                "1",
            ][..],
            "without a path",
        ),
    ] {
        let err = run_load(load_args(argv), RunInfo::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{argv:?}: {err}");
        assert_eq!(err.exit_code(), 2, "{argv:?}");
    }
}

#[tokio::test]
async fn bad_templates_and_a_missing_feeder_column_exit_two_naming_the_place() {
    let feeder = temp_path("users.csv");
    std::fs::write(&feeder, "id,name\n1,ann\n").unwrap();
    let feeder_arg = feeder.to_str().unwrap();
    // Port 1 is never reached: templates compile before the target is checked.
    for (argv, expected) in [
        (
            vec!["http://127.0.0.1:1/n/{{randint 5 1}}", "--rate", "5"],
            "template in request 1 (GET /n/{{randint 5 1}}) path, column 4: bad range randint 5 1",
        ),
        (
            vec![
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--request",
                "/a/{{md5 x}}",
            ],
            "request 1 (GET /a/{{md5 x}}) path, column 4: unknown function \"md5\"",
        ),
        (
            vec![
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--feeder",
                feeder_arg,
                "--request",
                "/a",
                "--request",
                "/b/{{id}}",
                "-H",
                "x-user: u{{user}}",
            ],
            "request 1 (GET /a) header x-user, column 2: \"user\" is no function",
        ),
        (
            vec![
                "http://127.0.0.1:1/{{id}}",
                "--rate",
                "5",
                "--feeder",
                "/nonexistent/f.csv",
            ],
            "feeder /nonexistent/f.csv: cannot be read",
        ),
    ] {
        let err = run_load(load_args(&argv), RunInfo::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{argv:?}: {err}");
        assert_eq!(err.exit_code(), 2, "{argv:?}");
    }
    let _ = std::fs::remove_file(feeder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_request_mix_from_the_command_line_reaches_the_server() {
    let server = TestServer::start().await;
    let body = temp_path("order.json");
    std::fs::write(&body, "{\"user\": {{seq}}}").unwrap();
    let url = server.url("/api");
    let request = format!("weight=3 POST /orders @{}", body.display());
    let mut argv = vec![
        url.as_str(),
        "--request",
        &request,
        "--request",
        "/products",
    ];
    argv.extend("--rate 400 --duration 1s --max-send-delay 30s -c 4 -q".split_whitespace());
    let results = run_load(load_args(&argv), RunInfo::default())
        .await
        .unwrap();
    let _ = std::fs::remove_file(body);

    let seen = server.seen();
    let orders: u64 = seen
        .iter()
        .filter(|(key, _)| key.starts_with("POST /api/orders {\"user\": "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        (orders, seen.get("GET /api/products").copied()),
        (300, Some(100))
    );
    // {{seq}} gave each order its own body.
    assert_eq!(seen.len(), 301, "{seen:?}");
    assert!(results.endpoints.contains_key("POST /api/orders"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_with_hosts_weights_and_a_feeder_beside_it_runs() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let dir = temp_path("scenario-dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("skus.jsonl"),
        "{\"sku\": \"s1\"}\n{\"sku\": \"s2\"}\n",
    )
    .unwrap();
    let scenario = dir.join("mix.toml");
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
    run_load(load_args(&argv), RunInfo::default())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_file_is_the_mix_to_send() {
    let server = TestServer::start().await;
    let file = temp_path("requests.toml");
    let text =
        "[[requests]]\nmethod = \"PUT\"\npath = \"/c/{{seq}}\"\nweight = 2\nname = \"put c\"\n\
                [[requests]]\npath = \"/d\"\n";
    std::fs::write(&file, text).unwrap();
    let url = server.url("/");
    let mut argv = vec![url.as_str(), "--requests", file.to_str().unwrap()];
    argv.extend("--rate 300 --duration 1s --max-send-delay 30s -c 4 -q".split_whitespace());
    let results = run_load(load_args(&argv), RunInfo::default())
        .await
        .unwrap();

    let seen = server.seen();
    let _ = std::fs::remove_file(file);
    let puts = seen.keys().filter(|k| k.starts_with("PUT /c/")).count();
    assert_eq!((puts, seen.get("GET /d").copied()), (200, Some(100)));
    let names: Vec<&String> = results.endpoints.keys().collect();
    assert_eq!(names, ["GET /d", "put c"]);

    let bad = temp_path("bad-requests.toml");
    std::fs::write(&bad, "[[requests]]\npath = \"/x\"\nwieght = 2\n").unwrap();
    let bad_arg = bad.to_str().unwrap();
    let err = config_error(&[url.as_str(), "--rate", "5", "--requests", bad_arg]);
    let _ = std::fs::remove_file(&bad);
    assert!(
        err.to_string().contains("wieght") && err.to_string().contains("line 3"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}
