//! Property tests of the control API's `POST /faults` body ([`fault_of`]).
//!
//! Anyone who can reach the control port can send any body. Arbitrary bytes, JSON objects
//! with the fields a fault has (each holding a value hostile to it) and valid bodies with a
//! field changed must end in a fault or in a 400 text that names the field at fault (or
//! says the body is not a JSON object), never a panic. `PROPTEST_CASES` raises the case
//! counts (`make fuzz`).

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

/// The fields of a `[[faults]]` entry, and two a body may not have.
const FIELDS: [&str; 12] = [
    "kind",
    "duration",
    "latency",
    "jitter",
    "direction",
    "bandwidth",
    "size",
    "size_variation",
    "delay",
    "timeout",
    "at",
    "target",
];

/// Values meant to break a field's parser: quantities out of range, wrong units and types.
fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN", |f| f.is_finite()).prop_map(Value::from),
        prop_oneof![
            Just("latency"),
            Just("slicer"),
            Just("bandwidth"),
            Just("partition"),
            Just("reset"),
            Just("timeout"),
            Just("kill"),
            Just("upstream"),
            Just("both"),
        ]
        .prop_map(Value::from),
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?(e[0-9]{1,3})?(ns|us|ms|s|m|h|d|B|KB|KiB|MB|GB|TB|B/s|MB/s|%|x)?"
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(Value::from(vec![1, 2])),
        Just(serde_json::json!({"nested": "1s"})),
    ]
}

fn hostile_object() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((prop::sample::select(FIELDS.to_vec()), hostile()), 0..6).prop_map(
        |fields| {
            let object: Map<String, Value> = fields
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect();
            serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
        },
    )
}

/// Valid bodies of each proxy kind.
const VALID: [&str; 6] = [
    r#"{"kind": "latency", "latency": "100ms", "jitter": "10ms", "duration": "5s"}"#,
    r#"{"kind": "bandwidth", "bandwidth": "1MB/s", "direction": "downstream"}"#,
    r#"{"kind": "slicer", "size": 64, "size_variation": 8, "delay": "1ms"}"#,
    r#"{"kind": "partition", "duration": "2s"}"#,
    r#"{"kind": "reset"}"#,
    r#"{"kind": "timeout", "timeout": "1s"}"#,
];

/// A 400's text names its place: the body as a whole, a missing field, or the field at
/// fault first.
fn names_its_place(message: &str) -> bool {
    message.starts_with("the body is not JSON")
        || message.starts_with("expected a JSON object")
        || message.starts_with("missing field")
        || message.split_once(": ").is_some_and(|(field, problem)| {
            FIELDS.contains(&field) || problem.starts_with("unknown field")
        })
}

proptest! {
    // PROPTEST_CASES, when set, overrides the count (`make fuzz`).
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_are_a_fault_or_a_400_naming_the_place(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            "[{}\\[\\]\":, a-z0-9.-]{0,80}".prop_map(String::into_bytes),
        ],
    ) {
        if let Err(message) = fault_of(&body) {
            prop_assert!(names_its_place(&message), "{message}");
        }
    }

    #[test]
    fn hostile_field_values_are_a_fault_or_a_400_naming_the_field(body in hostile_object()) {
        if let Err(message) = fault_of(&body) {
            prop_assert!(names_its_place(&message), "{message}");
        }
    }

    #[test]
    fn a_valid_body_with_a_field_changed_is_a_fault_or_a_400_naming_the_field(
        valid in prop::sample::select(VALID.to_vec()),
        field in prop::sample::select(FIELDS.to_vec()),
        value in hostile(),
    ) {
        prop_assert!(fault_of(valid.as_bytes()).is_ok(), "{valid}");
        let mut object: Value = serde_json::from_str(valid).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Value::Object(fields) = &mut object {
            fields.insert(field.to_string(), value);
        }
        let body = serde_json::to_vec(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Err(message) = fault_of(&body) {
            prop_assert!(names_its_place(&message), "{message}");
        }
    }
}
