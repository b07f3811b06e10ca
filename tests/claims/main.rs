//! `faultline claims` against the real system: one small family of the suite, quick, as
//! `make claims` runs the whole. One run serves every check (the system starts once):
//! the family's capacity search ran inside `faultline run`'s orchestrator, and the one
//! claims report answers each of the family's claims with a measured value or the
//! capacity found, never "not measured" or "not applicable"; the page asks for nothing
//! over the network; its results count the databases' statements and hold the consumers'
//! handling histograms. Two families chosen together share one system, and a run samples
//! its processes from `/proc` and watches each killed replica back to ready. Bad
//! arguments are exit 2 before anything starts.

#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The suite's own scenarios, wherever the test runs from.
fn suite_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/claims")
}

/// Runs `faultline claims ARGS`, killed after `limit` so that a hung run fails the
/// test instead of the CI job.
fn claims(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("claims")
        .args(args)
        .arg("--scenarios")
        .arg(suite_dir())
        .env("FAULTLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_quick_users_family_answers_each_of_its_claims_with_a_figure_or_a_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("claims");
    let output = claims(
        &["--quick", "--only", "users", "-o", out.to_str().unwrap()],
        Duration::from_secs(300),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");

    // `faultline run` ran the family's [load.find_max]: every step is in its results.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("users/results.json")).unwrap())
            .unwrap();
    let steps = results["capacity"]["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{}", results["capacity"]);
    assert!(out.join("users/index.html").is_file());
    // Every run counts what the services' databases ran (its users registered, their
    // profiles read) and reads the consumers' handling histograms at its start and end.
    let users_statements = results["database"]["statements"]["users"].as_u64();
    assert!(
        users_statements.is_some_and(|n| n > 0),
        "{}",
        results["database"]
    );
    let histograms = results["server_histograms"].as_array().unwrap();
    assert!(
        histograms
            .iter()
            .any(|h| h["name"] == "faultline_event_handling_seconds"
                && h["labels"]["consumer"] == "notifications"),
        "{histograms:?}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("claims.json")).unwrap()).unwrap();
    let rows = report["claims"].as_array().unwrap();
    let users: Vec<&serde_json::Value> = rows.iter().filter(|r| r["family"] == "users").collect();
    assert!(users.len() >= 3, "{}", users.len());
    for row in &users {
        let verdict = row["verdict"].as_str().unwrap();
        assert!(
            verdict == "pass" || verdict == "fail" || verdict.starts_with("holds up to "),
            "{}: {verdict} ({})",
            row["id"],
            row["detail"]
        );
        assert!(row["measured"].is_string(), "{}", row["id"]);
        assert_eq!(row["report"], "users/index.html");
        assert!(row["measured_hardware"].as_str().unwrap().contains("cores"));
    }
    // A family left out by --only says so, rather than failing or passing.
    let kafka = rows.iter().find(|r| r["family"] == "kafka").unwrap();
    assert!(
        kafka["detail"]
            .as_str()
            .unwrap()
            .contains("not run (--only)"),
        "{kafka}"
    );

    let html = std::fs::read_to_string(out.join("claims.html")).unwrap();
    for needle in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!html.contains(needle), "the page would load {needle}");
    }
    assert!(html.contains("000-user-service-p99"));
    let md = std::fs::read_to_string(out.join("claims.md")).unwrap();
    assert!(md.contains("| `000-user-service-rate`"), "{md}");
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn two_families_share_one_system_and_record_resources_and_recovery_per_target() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("claims");
    let output = claims(
        &[
            "--quick",
            "--only",
            "recovery,users",
            "-o",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(600),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(
        stderr.matches("run: starting the reference system").count(),
        1,
        "one system for both families:\n{stderr}"
    );
    // The family that kills services ran after the one without faults.
    let users_at = stderr.find("] users:").unwrap();
    let recovery_at = stderr.find("] recovery:").unwrap();
    assert!(users_at < recovery_at, "{stderr}");

    // Every process of the system was sampled from /proc, each second.
    let users = read_json(&out.join("users/results.json"));
    let processes = users["resources"]["processes"].as_array().unwrap();
    let names: Vec<&str> = processes
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "gateway-1",
        "users-1",
        "orders-1",
        "kafka-1",
        "postgres",
        "redis",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    for process in processes {
        let samples = process["samples"].as_array().unwrap();
        assert!(samples.len() >= 2, "{process}");
        assert!(
            samples.iter().all(|s| s["rss_bytes"].as_u64().unwrap() > 0),
            "{process}"
        );
    }

    // Each killed service was watched back to ready; the claim averages them.
    let recovery = read_json(&out.join("recovery/results.json"));
    let faults = recovery["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 9, "{faults:?}");
    let watched: Vec<f64> = faults
        .iter()
        .filter_map(|f| f["ready_after_secs"].as_f64())
        .collect();
    assert!(watched.len() >= 7, "{faults:#?}");
    let report = read_json(&out.join("claims.json"));
    let rows = report["claims"].as_array().unwrap();
    let start = rows
        .iter()
        .find(|r| r["id"] == "001-container-start")
        .unwrap();
    assert!(start["measured"].is_string(), "{start}");
    let html = std::fs::read_to_string(out.join("recovery/index.html")).unwrap();
    assert!(html.contains("<th>ready again after</th>"));
}

#[test]
fn an_unknown_family_is_exit_2_naming_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = claims(
        &["--only", "nope", "-o", dir.path().to_str().unwrap()],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--only \"nope\"") && stderr.contains("consistency"),
        "{stderr}"
    );
    // Nothing was started, so nothing was written.
    assert!(!dir.path().join("claims.json").exists());
}
