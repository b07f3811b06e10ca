//! Distributed load as the load chart runs it, with local processes: four `faultline load
//! --worker I/4 --start-at T` at a total of 4,000 requests/s for 10 s against a counting
//! server on 127.0.0.1. The server counts 40,000 (± 0.5%), and `faultline merge` of the
//! four results accounts for exactly the 40,000 arrivals of the single-machine schedule.
//! Bad worker input is exit 2 with the reason.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

const WORKERS: u32 = 4;
const RATE: u64 = 4_000;
const SECONDS: u64 = 10;

fn faultline() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_faultline"))
}

/// A server on 127.0.0.1 that answers every request at once and counts them.
async fn counting_server() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

fn totals(path: &Path) -> (u64, u64) {
    let results: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let totals = &results["totals"];
    (
        totals["requests"].as_u64().unwrap(),
        totals["dropped"].as_u64().unwrap(),
    )
}

#[test]
fn four_workers_send_the_single_machine_schedule_exactly() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (url, count) = runtime.block_on(counting_server());
    let dir = tempfile::tempdir().unwrap();
    // Far enough ahead for four processes to start and connect on a busy machine.
    let start_at = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(5));
    let outputs: Vec<_> = (0..WORKERS)
        .map(|i| dir.path().join(format!("worker-{i}.json")))
        .collect();
    let workers: Vec<_> = outputs
        .iter()
        .enumerate()
        .map(|(index, output)| {
            Command::new(faultline())
                .args(["load", &url, "--rate", &RATE.to_string(), "--duration"])
                .arg(format!("{SECONDS}s"))
                // A starved worker on a busy machine sends late rather than drops: the
                // count is what this test is about, not the latency.
                .args([
                    "--connections",
                    "32",
                    "--max-send-delay",
                    "60s",
                    "--timeout",
                    "60s",
                ])
                .args(["--quiet", "--worker"])
                .arg(format!("{index}/{WORKERS}"))
                .args(["--start-at", &start_at.to_string(), "--output"])
                .arg(output)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for worker in workers {
        let done = worker.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let expected = RATE * SECONDS;
    let tolerance = expected / 200; // 0.5%
    let served = count.load(Ordering::Relaxed);
    assert!(
        served.abs_diff(expected) <= tolerance,
        "the server counted {served} of {expected}"
    );
    for output in &outputs {
        let (requests, dropped) = totals(output);
        assert_eq!(
            requests + dropped,
            expected / u64::from(WORKERS),
            "{}",
            output.display()
        );
    }

    let merged = dir.path().join("merged.json");
    let mut merge = Command::new(faultline());
    merge
        .arg("merge")
        .args(&outputs)
        .arg("--output")
        .arg(&merged);
    let done = merge.output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let (requests, dropped) = totals(&merged);
    assert_eq!(
        requests + dropped,
        expected,
        "every arrival of the schedule, once"
    );
    assert!(
        requests.abs_diff(expected) <= tolerance,
        "merged {requests} sent"
    );
}

#[test]
fn bad_worker_input_is_exit_2_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["--worker", "4/4"], "numbered 0 to 3"),
        (&["--worker", "1/0"], "at least 1"),
        (&["--start-at", "2020-01-01T00:00:00Z"], "in the past"),
        (&["--start-at", "tomorrow"], "not an RFC 3339 instant"),
        (&["--worker", "0/2", "--poisson"], "--seed"),
    ];
    for (args, reason) in cases {
        let output = Command::new(faultline())
            .args([
                "load",
                "http://127.0.0.1:9/",
                "--rate",
                "10",
                "--duration",
                "1s",
            ])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
