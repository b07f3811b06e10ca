//! Results built from buckets and merged match the committed JSON Schema, survive a
//! write and a read, and a file of another schema version is refused.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use faultline_results::{
    histogram::record, Arrivals, Bucket, ErrorClass, HttpVersion, LatencyOrigin, Machine,
    MachineSample, ProcessResources, ProcessSample, ResourceResults, Results, ResultsError,
    RunMetadata, RunRecord, Stage, TargetSchedule,
};
use serde_json::Value;

fn results(started_at: &str, latency_ms: u64) -> Results {
    let mut buckets = BTreeMap::new();
    for second in 0..3u64 {
        let mut bucket = Bucket::default();
        for i in 0..10 {
            bucket.requests += 1;
            record(&mut bucket.latency, Duration::from_millis(latency_ms + i));
            record(&mut bucket.send_delay, Duration::from_micros(100));
            if i == 0 {
                bucket.errors.add(ErrorClass::Http5xx);
            } else {
                bucket.ok += 1;
            }
        }
        buckets.insert(((second % 2) as usize, 1_700_000_000 + second), bucket);
    }
    Results::build(RunRecord {
        metadata: RunMetadata {
            scenario: Some("contract".into()),
            target: "http://127.0.0.1:1/".into(),
            started_at: started_at.into(),
            duration_secs: 3.0,
            machine: Machine::this(),
            faultline_version: "test".into(),
            git_commit: None,
            http_version: HttpVersion::Http1,
            connections: 2,
            streams: 1,
            timeout_ms: 5000,
            latency_origin: LatencyOrigin::IntendedSendTime,
            workers: 1,
        },
        schedule: TargetSchedule::open(
            vec![Stage::constant(Duration::from_secs(3), 10.0)],
            Arrivals::Uniform,
        ),
        endpoint_names: &["GET /a".to_string(), "GET /b".to_string()],
        collected: &buckets,
        late_threshold_ms: 10.0,
        max_send_delay_ms: 5000.0,
    })
    .unwrap()
}

#[test]
fn built_and_merged_results_validate_against_the_committed_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/results.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut one = results("2026-01-01T00:00:00.000Z", 5);
    // The optional parts a run adds after the load are in the schema too.
    one.resources = Some(ResourceResults {
        interval_secs: 1.0,
        cores: 2,
        processes: vec![ProcessResources {
            name: "orders-1".into(),
            samples: vec![ProcessSample {
                t: 0.5,
                cpu_secs: 1.25,
                rss_bytes: 1 << 20,
            }],
        }],
        machine: vec![MachineSample {
            t: 0.5,
            net_rx_bytes: 1,
            net_tx_bytes: 2,
            disk_reads: 3,
            disk_writes: 4,
        }],
    });
    let two = results("2026-01-01T00:00:01.000Z", 50);
    let merged = Results::merge(&one, &two).unwrap();
    assert_eq!(merged.totals.requests, 60);
    assert_eq!(merged.totals.errors.http_5xx, 6);
    assert_eq!(merged.metadata.workers, 2);
    assert_eq!(merged.schedule.stages[0].from_rate, 20.0);
    assert_eq!(merged.resources, one.resources);
    for results in [&one, &merged] {
        let instance = serde_json::to_value(results).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

#[test]
fn results_survive_a_write_and_a_read_and_another_version_is_refused() {
    let dir = std::env::temp_dir().join(format!("faultline-results-{}", std::process::id()));
    let path = dir.join("results.json");
    let written = results("2026-01-01T00:00:00.000Z", 5);
    written.write(&path).unwrap();
    assert_eq!(Results::read(&path).unwrap(), written);

    let mut other = written.clone();
    other.schema_version = 99;
    other.write(&path).unwrap();
    let error = Results::read(&path).unwrap_err();
    assert!(
        matches!(error, ResultsError::SchemaVersion { found: 99 }),
        "{error}"
    );
    let missing = Results::read(&dir.join("nope.json"))
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("reading results from"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn streams_per_connection_are_kept_through_a_merge_and_older_results_read_as_one() {
    let mut one = results("2026-01-01T00:00:00.000Z", 5);
    one.metadata.http_version = HttpVersion::Http2;
    one.metadata.streams = 16;
    let two = Results {
        metadata: one.metadata.clone(),
        ..results("2026-01-01T00:00:01.000Z", 50)
    };
    let merged = Results::merge(&one, &two).unwrap();
    // Connections add up over workers; streams are per connection, so they do not.
    assert_eq!(merged.metadata.connections, 4);
    assert_eq!(merged.metadata.streams, 16);

    let mut older = serde_json::to_value(&one).unwrap();
    older["metadata"].as_object_mut().unwrap().remove("streams");
    let read: Results = serde_json::from_value(older).unwrap();
    assert_eq!(read.metadata.streams, 1);
}
