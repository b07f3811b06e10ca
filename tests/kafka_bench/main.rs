//! `faultline kafka-bench` run as a user runs it: a short benchmark on one broker that the
//! command starts itself on loopback (rdkafka and Apache Kafka's ProducerPerformance, then
//! each row's paced phase), and settings Kafka would refuse, which must end with exit 2
//! before any broker starts.

#![allow(clippy::unwrap_used)]

use std::process::Output;

use faultline_results::kafka_bench::KafkaBenchResults;

#[path = "../common/programs.rs"]
mod programs;

use programs::stderr_of;

fn kafka_bench(args: &[&str]) -> Output {
    programs::faultline(&[&["kafka-bench"][..], args].concat())
}

#[test]
fn a_short_run_on_one_broker_records_throughput_and_p99_and_a_paced_e2e_p50_per_linger() {
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
        "0ms,50ms",
        // 3,000 records at 1,500/s: two seconds per side, where unthrottled they take
        // a second or less (the Java tool) or a fraction of one (rdkafka).
        "--rate",
        "1500/s",
        // Then each row again from rdkafka at 1,000/s: 333/s a partition, so a record
        // waits for a 50 ms linger where it would go at once with none.
        "--paced-rate",
        "1000/s",
        "--paced-duration",
        "2s",
        "-o",
        out.path().to_str().unwrap(),
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("rdk msg/s") && table.contains("jvm msg/s") && table.contains("paced:"),
        "{table}"
    );

    let json = std::fs::read_to_string(out.path().join("kafka-bench.json")).unwrap();
    let results: KafkaBenchResults = serde_json::from_str(&json).unwrap();
    assert_eq!(results.brokers.count, 1);
    assert_eq!(results.rows.len(), 2);
    let lingers: Vec<u64> = results.rows.iter().map(|r| r.settings.linger_ms).collect();
    assert_eq!(lingers, [0, 50]);
    let mut paced_e2e_p50_us = Vec::new();
    for row in &results.rows {
        let paced = row.paced.as_ref().expect("each row ran its paced phase");
        assert_eq!(paced.rate_per_sec, 1000.0);
        assert_eq!(paced.duration_secs, 2.0);
        let measured = &paced.rdkafka;
        assert!(measured.acked >= 1500, "{measured:?} {:?}", row.notes);
        assert_eq!(measured.consumed, measured.acked, "{:?}", row.notes);
        // The clock paced it: about 1,000/s, never the unpaced rate.
        assert!(
            (500.0..1100.0).contains(&measured.msgs_per_sec),
            "{measured:?}"
        );
        paced_e2e_p50_us.push(measured.end_to_end_latency.p50_us);
        assert_unpaced_row_measured(row);
    }
    // A 50 ms linger holds a paced record up to 50 ms for its batch, about half of it
    // at the median; a tenth of it is the least a loaded machine still shows.
    assert!(
        paced_e2e_p50_us[1] >= paced_e2e_p50_us[0] + 5_000,
        "paced end-to-end p50: {paced_e2e_p50_us:?} µs at linger 0 and 50 ms"
    );
}

/// A row's unpaced phases: rdkafka's and the Java tool's 3,000 records at 1,500/s.
fn assert_unpaced_row_measured(row: &faultline_results::kafka_bench::KafkaBenchRow) {
    assert_eq!(row.settings.replication_factor, 1, "RF 1 on one broker");
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

#[test]
fn a_paced_rate_of_zero_is_exit_2_naming_the_flag() {
    let output = kafka_bench(&["--brokers", "1", "--paced-rate", "0/s"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--paced-rate 0/s"), "{stderr}");
    assert!(!stderr.contains("starting the brokers"), "{stderr}");
}

#[test]
fn a_paced_row_past_the_last_is_exit_2_naming_the_flag_and_the_rows() {
    let output = kafka_bench(&[
        "--brokers",
        "1",
        "--table5",
        "--paced-rate",
        "200/s",
        "--paced-rows",
        "1,6",
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--paced-rows 6"), "{stderr}");
    assert!(stderr.contains("rows 1 to 5"), "{stderr}");
    assert!(!stderr.contains("starting the brokers"), "{stderr}");
}
