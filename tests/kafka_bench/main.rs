//! `faultline kafka-bench` run as a user runs it: a short benchmark on one broker that the
//! command starts itself on loopback (rdkafka and Apache Kafka's ProducerPerformance), and
//! settings Kafka would refuse, which must end with exit 2 before any broker starts.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use faultline_results::kafka_bench::KafkaBenchResults;

fn kafka_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("kafka-bench")
        .args(args)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("faultline runs")
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_short_paced_run_on_one_broker_records_throughput_and_p99_for_both_producers() {
    let out = tempfile::tempdir().unwrap();
    let output = kafka_bench(&[
        "--brokers",
        "1",
        "--kafka-heap-mb",
        "256",
        "--records",
        "3000",
        "--message-size",
        "200B",
        "--partitions",
        "3",
        "--linger",
        "5ms",
        // 3,000 records at 1,500/s: two seconds per side, where unthrottled they take
        // a second or less (the Java tool) or a fraction of one (rdkafka).
        "--rate",
        "1500/s",
        "-o",
        out.path().to_str().unwrap(),
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("rdk msg/s") && table.contains("jvm msg/s"),
        "{table}"
    );

    let json = std::fs::read_to_string(out.path().join("kafka-bench.json")).unwrap();
    let results: KafkaBenchResults = serde_json::from_str(&json).unwrap();
    assert_eq!(results.brokers.count, 1);
    assert_eq!(results.rows.len(), 1);
    let row = &results.rows[0];
    assert_eq!(row.settings.replication_factor, 1, "RF 1 on one broker");
    assert_eq!(row.settings.linger_ms, 5);
    assert_eq!(row.settings.rate_per_sec, Some(1500.0));

    let ours = &row.rdkafka;
    assert_eq!(ours.acked, 3000, "{:?}", row.notes);
    assert!(ours.msgs_per_sec > 0.0 && ours.mb_per_sec > 0.0, "{ours:?}");
    // A lower bound only: a loaded machine makes a row slower, never faster.
    assert!(
        ours.elapsed_secs >= 1.6,
        "the rate held rdkafka back: {ours:?}"
    );
    assert_eq!(ours.produce_latency.count, 3000);
    assert!(ours.produce_latency.p99_us > 0);
    assert!(ours.produce_latency.p99_us >= ours.produce_latency.p50_us);
    assert_eq!(
        ours.consumed, 3000,
        "the end-to-end consumer read every record"
    );
    assert!(ours.end_to_end_latency.p99_us > 0);
    assert!(
        ours.broker_cpu.is_some_and(|cpu| cpu.cores > 0.0),
        "{ours:?}"
    );
    let decoded = ours.produce_histogram.decode().unwrap();
    assert_eq!(decoded.len(), 3000);

    let theirs = row.perf_tool.as_ref().expect("ProducerPerformance ran");
    assert_eq!(theirs.records, 3000);
    assert!(theirs.msgs_per_sec > 0.0, "{theirs:?}");
    let tool_secs = theirs.records as f64 / theirs.msgs_per_sec;
    assert!(
        tool_secs >= 1.6,
        "the rate held the Java tool back: {theirs:?}"
    );
    assert!(theirs.max_ms >= theirs.p99_ms && theirs.p99_ms >= theirs.p50_ms);
    assert!(row.throughput_ratio().is_some());
}

#[test]
fn an_unknown_compression_is_exit_2_naming_the_flag_before_anything_starts() {
    let output = kafka_bench(&["--brokers", "1", "--compression", "none,brotli"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--compression brotli"), "{stderr}");
    assert!(!stderr.contains("starting the brokers"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn acks_kafka_does_not_know_is_exit_2_naming_the_flag() {
    let output = kafka_bench(&["--brokers", "1", "--acks", "7"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--acks 7"), "{stderr}");
    assert!(!stderr.contains("starting the brokers"), "{stderr}");
}
