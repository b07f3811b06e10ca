//! `faultline broker-bench` run as a user runs it: a short run of each broker's own tool
//! against a broker the command starts itself on loopback, which must leave a positive
//! rate in `<broker>.json` and no broker behind; bad input, which must end with exit 2
//! before anything starts; and the claims suite's `brokers` family, whose report answers
//! Table 1's RabbitMQ and NATS columns and reads them back with `--report-only`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use faultline_results::broker_bench::{Broker, BrokerBenchResults};

#[path = "../common/programs.rs"]
mod programs;

use programs::{faultline, stderr_of};

/// Runs `broker-bench --broker BROKER --duration 2s -o DIR` and reads `<broker>.json`.
fn short_run(broker: Broker, dir: &Path) -> BrokerBenchResults {
    let output = faultline(&[
        "broker-bench",
        "--broker",
        broker.name(),
        "--duration",
        "2s",
        "-o",
        dir.to_str().unwrap(),
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("published msg/s"), "{table}");
    let json = std::fs::read_to_string(dir.join(format!("{broker}.json"))).unwrap();
    let results: BrokerBenchResults = serde_json::from_str(&json).unwrap();
    assert_eq!(results.broker, broker);
    assert_eq!(results.settings.message_bytes, 1024);
    assert_eq!(results.settings.duration_secs, 2.0);
    assert_ne!(
        results.broker_version, "unknown",
        "read from the broker's log"
    );
    let measured = &results.measured;
    assert!(measured.msgs_per_sec > 0.0, "{measured:?}");
    assert!(measured.mb_per_sec > 0.0, "{measured:?}");
    // The data directory named after the run's port is gone with the broker.
    let port = results
        .tool_command
        .iter()
        .find_map(|arg| {
            arg.rsplit_once("127.0.0.1:")
                .map(|(_, port)| port.to_string())
        })
        .unwrap();
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "the broker on port {port} still answers after the run"
    );
    results
}

#[test]
fn a_short_nats_run_publishes_at_a_positive_rate_sized_by_its_probe() {
    let out = tempfile::tempdir().unwrap();
    let results = short_run(Broker::Nats, out.path());
    assert_eq!(results.settings.consumers, 0);
    let messages = results.settings.messages.unwrap();
    assert!(
        messages >= 100_000,
        "at least the probe's count: {messages}"
    );
    assert!(results.tool_command.contains(&messages.to_string()));
}

#[test]
fn a_short_rabbitmq_run_publishes_and_consumes_with_the_consumers_latency() {
    let out = tempfile::tempdir().unwrap();
    let results = short_run(Broker::Rabbitmq, out.path());
    assert_eq!(results.settings.consumers, 1);
    let received = results.measured.received_per_sec.unwrap();
    assert!(received > 0.0, "{:?}", results.measured);
    let latency = results.measured.latency.as_ref().unwrap();
    let p50 = latency.at(50.0).unwrap();
    let p99 = latency.at(99.0).unwrap();
    assert!(p99 >= p50 && p50 >= latency.min_us, "{latency:?}");
}

#[test]
fn an_unknown_broker_is_exit_2_naming_it_and_the_known_ones() {
    let output = faultline(&["broker-bench", "--broker", "foo"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'foo'") && stderr.contains("nats, rabbitmq"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_size_of_zero_and_a_short_duration_are_exit_2_before_any_broker_starts() {
    for (flag, value) in [
        ("--size", "0"),
        ("--duration", "100ms"),
        ("--producers", "0"),
    ] {
        let output = faultline(&["broker-bench", "--broker", "nats", flag, value]);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(&format!("{flag} {value}")), "{stderr}");
        assert!(!stderr.contains("starting"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn the_brokers_family_answers_table_1_and_reads_back_with_report_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("claims");
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/claims");
    let claims = |extra: &[&str]| {
        let mut args = vec!["claims", "--only", "brokers", "-o", out.to_str().unwrap()];
        args.extend(["--scenarios", scenarios.to_str().unwrap()]);
        args.extend(extra);
        faultline(&args)
    };
    let output = claims(&["--quick"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    for broker in Broker::ALL {
        assert!(out.join(format!("brokers/{broker}.json")).is_file());
        assert!(out.join(format!("brokers/{broker}.txt")).is_file());
    }
    let verdicts = |path: &Path| -> Vec<(String, serde_json::Value)> {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        report["claims"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["id"].as_str().unwrap().starts_with("002-broker"))
            .map(|row| (row["id"].as_str().unwrap().to_string(), row.clone()))
            .collect()
    };
    let first = verdicts(&out.join("claims.json"));
    let ids: Vec<&str> = first.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "002-broker-kafka",
            "002-broker-rabbitmq",
            "002-broker-sqs",
            "002-broker-nats"
        ]
    );
    for (id, row) in &first {
        match id.as_str() {
            "002-broker-kafka" => {
                let verdict = row["verdict"].as_str().unwrap();
                assert!(
                    verdict.starts_with("not measured"),
                    "--only left it out: {row}"
                );
            }
            "002-broker-sqs" => {
                assert_eq!(row["verdict"], "not mapped", "{row}");
                assert!(row["detail"]
                    .as_str()
                    .unwrap()
                    .contains("AWS managed service"));
            }
            _ => {
                assert!(row["measured"].as_str().is_some(), "{row}");
                let verdict = row["verdict"].as_str().unwrap();
                assert!(
                    verdict == "pass" || verdict.starts_with("holds up to"),
                    "{row}"
                );
            }
        }
    }

    // Read back from the files alone: the same figures.
    let output = claims(&["--report-only"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let again = verdicts(&out.join("claims.json"));
    for ((id, row), (_, row_again)) in first.iter().zip(&again) {
        assert_eq!(row["measured"], row_again["measured"], "{id}");
    }
}
