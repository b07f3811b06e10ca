//! `kafka-bench.json` as the types write it validates against the committed schema
//! (`schema/kafka-bench.schema.json`), every optional part included, and the schema
//! notices a missing or unknown field.

#![allow(clippy::unwrap_used)]

use faultline_results::histogram::{new_histogram, record};
use faultline_results::kafka_bench::{
    BrokerSetup, CpuUse, KafkaBenchResults, KafkaBenchRow, PacedMeasurement, PerfToolMeasurement,
    PerfToolSummary, ProducerSettings, RdkafkaMeasurement, Table5Row, KAFKA_BENCH_SCHEMA_VERSION,
};
use faultline_results::{EncodedHistogram, LatencySummary, Machine};
use serde_json::Value;
use std::time::Duration;

fn sample() -> KafkaBenchResults {
    let mut histogram = new_histogram();
    for ms in [3, 5, 8, 40] {
        record(&mut histogram, Duration::from_millis(ms));
    }
    let encoded = EncodedHistogram::encode(&histogram).unwrap();
    let cpu = Some(CpuUse {
        cores: 1.2,
        percent_of_machine: 60.0,
    });
    let tool = PerfToolSummary {
        records: 4,
        records_per_sec: 900.5,
        mb_per_sec: 0.88,
        avg_ms: 10.0,
        max_ms: 41.0,
        p50_ms: 5.0,
        p95_ms: 40.0,
        p99_ms: 40.0,
        p99_9_ms: 41.0,
    };
    let rdkafka = RdkafkaMeasurement {
        acked: 4,
        failed: 0,
        elapsed_secs: 0.004,
        msgs_per_sec: 1000.0,
        mb_per_sec: 1.024,
        produce_latency: LatencySummary::of(&histogram),
        produce_histogram: encoded.clone(),
        end_to_end_latency: LatencySummary::of(&histogram),
        end_to_end_histogram: encoded,
        consumed: 4,
        broker_cpu: cpu,
        client_cpu: cpu,
    };
    let mut perf_tool = PerfToolMeasurement::from_instances(vec![tool]);
    perf_tool.broker_cpu = cpu;
    perf_tool.client_cpu = cpu;
    KafkaBenchResults {
        schema_version: KAFKA_BENCH_SCHEMA_VERSION,
        started_at: "2026-12-01T18:00:00.000Z".into(),
        machine: Machine::this(),
        faultline_version: "0.1.0".into(),
        brokers: BrokerSetup {
            bootstrap: "127.0.0.1:9092".into(),
            count: 3,
            started_here: true,
            heap_mb: Some(512),
        },
        rows: vec![KafkaBenchRow {
            table5: Some(Table5Row::CompressionLz4),
            settings: ProducerSettings {
                message_bytes: 1024,
                partitions: 6,
                replication_factor: 3,
                acks: "all".into(),
                producers: 1,
                compression: "lz4".into(),
                linger_ms: 0,
                batch_bytes: Some(65_536),
                rate_per_sec: Some(2500.0),
                records: Some(4),
                duration_secs: Some(1.5),
            },
            rdkafka: rdkafka.clone(),
            perf_tool: Some(perf_tool),
            paced: Some(PacedMeasurement {
                rate_per_sec: 2000.0,
                duration_secs: 3.0,
                rdkafka,
            }),
            notes: vec!["a note".into()],
        }],
    }
}

fn errors(instance: &Value) -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/kafka-bench.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn kafka_bench_results_validate_against_the_committed_schema() {
    let instance = serde_json::to_value(sample()).unwrap();
    let found = errors(&instance);
    assert!(found.is_empty(), "{found:#?}");
    let back: KafkaBenchResults = serde_json::from_value(instance).unwrap();
    assert_eq!(back, sample());
}

#[test]
fn the_schema_refuses_a_missing_or_unknown_row_field() {
    let mut missing = serde_json::to_value(sample()).unwrap();
    missing["rows"][0]["rdkafka"]
        .as_object_mut()
        .unwrap()
        .remove("acked");
    assert!(!errors(&missing).is_empty());
    let mut unknown = serde_json::to_value(sample()).unwrap();
    unknown["rows"][0]["settings"]["buffer_memory"] = Value::from(16384);
    assert!(!errors(&unknown).is_empty());
    let mut unpaced = serde_json::to_value(sample()).unwrap();
    unpaced["rows"][0]["paced"]
        .as_object_mut()
        .unwrap()
        .remove("rate_per_sec");
    assert!(!errors(&unpaced).is_empty());
}
