//! The `load` and `merge` commands as the binary runs them.

use std::path::{Path, PathBuf};

use clap::Parser;
use faultline_loadgen::{
    cli::{run_load, run_merge, run_plan, LoadArgs, LoadRun, MergeArgs},
    scenario::LoadSpec,
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

/// Runs the `[load]` table of a scenario file as `faultline load --scenario` does
/// after `faultline_scenarios` has checked the whole file (which this crate cannot
/// read: the other tables are other crates').
pub async fn run_load_table(path: &Path) -> Result<Results, LoadError> {
    #[derive(serde::Deserialize)]
    struct LoadTable {
        load: LoadSpec,
    }
    let text = std::fs::read_to_string(path).unwrap();
    let table: LoadTable = toml::from_str(&text).unwrap();
    let plan = table
        .load
        .plan(None, RunInfo::default(), &path.display().to_string())?;
    let run = LoadRun {
        plan,
        search: None,
        scenario: None,
    };
    run_plan(
        run,
        &load_args(&["-q", "--scenario", "x"]),
        &|_: &Results| None,
    )
    .await
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

#[tokio::test]
async fn a_scenario_or_a_capacity_search_is_not_run_without_the_scenario_crate() {
    for argv in [
        &["--scenario", "s.toml"][..],
        &[
            "http://127.0.0.1:1/",
            "--find-max",
            "--start-rate",
            "1",
            "--max-rate",
            "2",
        ][..],
    ] {
        let err = run_load(load_args(argv), RunInfo::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("faultline_scenarios::load"),
            "{err}"
        );
    }
}

#[test]
fn conflicting_models_are_refused_by_the_parser() {
    assert!(Load::try_parse_from(["load", "http://x/", "--rate", "5", "--closed"]).is_err());
    assert!(
        Load::try_parse_from(["load", "http://x/", "--rate", "5", "--stages", "1s:5"]).is_err()
    );
    assert!(Load::try_parse_from(["load", "http://x/", "--find-max", "--rate", "5"]).is_err());
    assert!(Load::try_parse_from(["load", "http://x/", "--gate", "http.p99<1s"]).is_err());
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

#[tokio::test]
async fn bad_journey_options_are_usage_errors_naming_what() {
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
