//! `faultline load --har` and `faultline har` against a local server: what arrives is
//! what the recording's kept entries say, and the saved requests file replays the same.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use clap::Parser;
use faultline_loadgen::{
    cli::{run_har, run_load, HarArgs},
    har::HarFilter,
};
use faultline_results::{Results, RunInfo};

use crate::{cli::load_args, support::TestServer};

/// The Chrome recording of a shop the unit tests of `har` use too.
fn shop_har() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop.har")
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("faultline-har-{}-{name}", std::process::id()))
}

/// Runs `faultline load` with `argv` (then `--rate 60 --duration 1s -c 4 -q`): its
/// results, and each `METHOD path body` the server received with how often.
async fn run_against(server: &TestServer, argv: &[&str]) -> (Results, BTreeMap<String, u64>) {
    let mut argv = argv.to_vec();
    argv.extend(["--rate", "60", "--duration", "1s", "-c", "4", "-q"]);
    let results = run_load(load_args(&argv), RunInfo::default())
        .await
        .unwrap();
    assert_eq!(results.totals.requests, server.total(), "{argv:?}");
    (results, server.seen())
}

/// The distinct `METHOD path body` the server received from `faultline load argv`.
async fn received(server: &TestServer, argv: &[&str]) -> BTreeSet<String> {
    run_against(server, argv).await.1.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_har_sends_each_kept_entry_to_the_url_given() {
    let server = TestServer::start().await;
    let url = server.url("");
    let har = shop_har();
    let har = har.to_str().unwrap();
    let (results, seen) = run_against(&server, &[&url, "--har", har]).await;
    let sent: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        sent,
        BTreeSet::from([
            "GET /",
            "GET /api/products?page=1",
            r#"POST /api/cart {"sku":"A-1","qty":2}"#,
            r#"POST /api/cart {"sku":"B-7","qty":1}"#,
            r#"POST /api/checkout {"payment":"card"}"#,
        ])
    );
    // The GET recorded twice weighs twice as much as the page it came with.
    assert!(seen["GET /api/products?page=1"] > seen["GET /"], "{seen:?}");
    let names: Vec<&str> = results.endpoints.keys().map(String::as_str).collect();
    assert!(names.contains(&"POST /api/cart (2)"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saved_requests_file_replays_what_the_recording_does() {
    // Recorded against this server, so --har needs no URL: the origin is the recording's.
    let recorded = TestServer::start().await;
    let har = temp_path("local.har");
    let text = std::fs::read_to_string(shop_har()).unwrap();
    std::fs::write(
        &har,
        text.replace("https://shop.example.com", &recorded.url("")),
    )
    .unwrap();
    let from_har = received(&recorded, &["--har", har.to_str().unwrap()]).await;
    assert!(from_har.contains("GET /"), "{from_har:?}");

    let saved = temp_path("requests.toml");
    let args = HarArgs {
        har: har.clone(),
        filter: HarFilter::default(),
        output: Some(saved.clone()),
    };
    run_har(&args).unwrap();
    let replayed = TestServer::start().await;
    let url = replayed.url("");
    let from_file = received(&replayed, &[&url, "--requests", saved.to_str().unwrap()]).await;
    assert_eq!(from_file, from_har);
    for path in [har, saved] {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn a_bad_recording_exits_two_naming_the_entry() {
    let har = temp_path("bad.har");
    std::fs::write(
        &har,
        r#"{"log": {"entries": [{"request": {"method": "GET"}}]}}"#,
    )
    .unwrap();
    let argv = ["--har", har.to_str().unwrap(), "--rate", "5", "-q"];
    let error = run_load(load_args(&argv), RunInfo::default())
        .await
        .unwrap_err();
    let _ = std::fs::remove_file(&har);
    assert_eq!(error.exit_code(), 2, "{error}");
    assert!(
        error
            .to_string()
            .contains("log.entries[0]: request.url is missing"),
        "{error}"
    );
}

#[test]
fn har_options_need_a_recording_and_exclude_other_requests() {
    #[derive(Parser)]
    struct Load {
        #[command(flatten)]
        args: faultline_loadgen::cli::LoadArgs,
    }
    for argv in [
        &[
            "load",
            "http://127.0.0.1:1/",
            "--rate",
            "5",
            "--har-cookies",
        ][..],
        &[
            "load",
            "--har",
            "a.har",
            "--requests",
            "r.toml",
            "--rate",
            "5",
        ][..],
        &["load", "--har", "a.har", "-X", "POST", "--rate", "5"][..],
    ] {
        assert!(Load::try_parse_from(argv).is_err(), "{argv:?}");
    }
    assert!(Load::try_parse_from(["load", "--har", "a.har", "--rate", "5"]).is_ok());
}
