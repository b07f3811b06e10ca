//! The optional fields added for reports (faults, server series, checker, gates,
//! scenario text, machine details) match the committed results schema, and results
//! without them are written as before.

use std::collections::BTreeMap;

use faultline_results::{GateSpec, JourneyResults, JourneySecond};
use serde_json::Value;

use crate::support::{plain_results, real_results};

pub fn validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../results/schema/results.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Fails, listing every error, when `results` do not match the schema.
pub fn assert_valid(results: &faultline_results::Results) {
    let instance = serde_json::to_value(results).unwrap();
    let errors: Vec<String> = validator()
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn results_with_every_optional_field_validate_against_the_schema() {
    let mut results = real_results().clone();
    results.gates = vec![GateSpec {
        metric: "http.p99".into(),
        max: Some("450ms".into()),
        min: None,
    }];
    results.journeys = Some(JourneyResults {
        driver: "open".into(),
        started: BTreeMap::from([("checkout".to_string(), 7)]),
        seconds: vec![
            JourneySecond {
                second: 1_700_000_000,
                started: 3,
            },
            JourneySecond {
                second: 1_700_000_001,
                started: 4,
            },
        ],
        dropped: 0,
        consistency_unseen: 0,
        consistency_deadline_ms: 30_000.0,
    });
    let instance = serde_json::to_value(&results).unwrap();
    for key in [
        "faults",
        "server_metrics",
        "checker",
        "gates",
        "scenario_text",
        "journeys",
    ] {
        assert!(instance.get(key).is_some(), "{key} is written");
    }
    let validator = validator();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let mut bad = instance.clone();
    bad["checker"]["lost"] = Value::from(-1);
    assert!(!validator.is_valid(&bad));
    let mut bad = instance.clone();
    bad["journeys"]["seconds"][0]["started"] = Value::from("3");
    assert!(!validator.is_valid(&bad));

    let plain = serde_json::to_value(plain_results()).unwrap();
    for key in [
        "faults",
        "server_metrics",
        "checker",
        "gates",
        "scenario_text",
    ] {
        assert!(plain.get(key).is_none(), "{key} is left out when empty");
    }
    assert!(validator.is_valid(&plain));
}
