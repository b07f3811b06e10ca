//! Bad input and missing prerequisites: exit code 2 and a message that says what to do.

use std::net::TcpListener;
use std::process::{Command, Output};

fn faultline(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .envs(env.iter().copied())
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("faultline runs")
}

use crate::programs::stderr_of;

#[test]
fn a_missing_kafka_cache_exits_2_and_says_to_run_setup() {
    let empty = tempfile::tempdir().unwrap();
    let output = faultline(
        &["stack", "up"],
        &[("FAULTLINE_KAFKA_HOME", empty.path().to_str().unwrap())],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("make setup"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "stdout must stay empty on failure"
    );
}

#[test]
fn a_taken_port_exits_2_and_names_the_port() {
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port().to_string();
    let output = faultline(&["stack", "up", "--redis-port", &port], &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&port) && stderr.contains("already in use"),
        "{stderr}"
    );
    assert!(stderr.contains("Redis"), "{stderr}");
}

#[test]
fn an_unreachable_external_bootstrap_exits_2_and_names_it() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let output = faultline(
        &[
            "stack",
            "up",
            "--kafka-bootstrap",
            &bootstrap,
            "--ready-timeout",
            "3s",
        ],
        &[],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&bootstrap) && stderr.contains("unreachable"),
        "{stderr}"
    );
}

#[test]
fn a_zero_broker_count_is_refused_by_the_parser() {
    let output = faultline(&["stack", "up", "--kafka-brokers", "0"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("--kafka-brokers"));
}

#[test]
fn a_bad_capacity_search_is_refused_by_run_and_by_load_with_exit_2() {
    // `faultline run` runs a [load.find_max] now; one whose gate cannot be read is
    // still refused before anything starts, naming the table.
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("search.toml");
    std::fs::write(
        &scenario,
        "[load]\n[load.find_max]\nstart = 10\nmax = 100\ngates = [\"http.p99<fast\"]\n",
    )
    .unwrap();
    let output = faultline(&["run", scenario.to_str().unwrap()], &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[load.find_max]"), "{stderr}");

    // Port 1 is never reached: the gate is checked first.
    let output = faultline(
        &[
            "load",
            "http://127.0.0.1:1/",
            "--find-max",
            "--start-rate",
            "10",
            "--max-rate",
            "100",
            "--gate",
            "http.p99<soon",
        ],
        &[],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--gate"), "{stderr}");
}

#[test]
fn a_bad_recording_exits_2_naming_the_entry_for_har_and_load_har() {
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("rec.har");
    std::fs::write(
        &har,
        r#"{"log": {"entries": [{"request": {"method": "GET", "url": "gopher://a.example/"}}]}}"#,
    )
    .unwrap();
    let har = har.to_str().unwrap();
    // Port 1 is never reached: the recording is read first.
    for args in [
        &["har", har][..],
        &["load", "http://127.0.0.1:1/", "--har", har, "--rate", "5"][..],
    ] {
        let output = faultline(args, &[]);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("rec.har: log.entries[0]") && stderr.contains("\"gopher\""),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}: stdout must stay empty");
    }
}
