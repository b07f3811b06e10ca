//! `results.json` as produced matches the committed JSON Schema.

use std::time::Duration;

use faultline_loadgen::{engine, Schedule};
use faultline_results::{Arrivals, Results};
use serde_json::Value;

use crate::support::TestServer;

pub fn validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../results/schema/results.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

pub fn assert_valid(validator: &jsonschema::Validator, results: &Results) {
    let instance = serde_json::to_value(results).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_and_merged_results_validate_against_the_committed_schema() {
    let server = TestServer::start().await;
    let validator = validator();
    let mut config = server.config(
        "/",
        Schedule::constant(100.0, Duration::from_secs(1), Arrivals::Uniform).unwrap(),
    );
    config.requests.push(server.endpoint("/status/500"));
    let open = engine::run(config, |_| {}).await.unwrap();
    assert_valid(&validator, &open);
    let closed = engine::run(
        server.config("/", Schedule::closed(Duration::from_millis(300)).unwrap()),
        |_| {},
    )
    .await
    .unwrap();
    assert_valid(&validator, &closed);
    let mut merged = Results::merge(&open, &closed).unwrap();
    merged.consistency_window = Some(open.totals.latency.clone());
    merged.write_ledger = Some("/tmp/ledger.jsonl".into());
    assert_valid(&validator, &merged);
}

#[test]
fn the_schema_rejects_results_of_another_version_or_shape() {
    let validator = validator();
    assert!(!validator.is_valid(&serde_json::json!({ "schema_version": 2 })));
    assert!(!validator.is_valid(&serde_json::json!({})));
}
