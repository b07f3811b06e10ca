//! Property tests of the system's two parsers of untrusted input: the event envelope
//! decoder (any Kafka record may be on a topic) and bearer-token validation (any client
//! may send any `Authorization` header).
//!
//! Each parser meets arbitrary bytes, valid input with bytes changed, and valid input
//! it must give back unchanged. It must never panic; an envelope it cannot read is
//! `Undecodable` with the line and column of the fault, and a token it refuses says
//! which of its parts is wrong. `PROPTEST_CASES` sets other case counts (`make fuzz`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use faultline_system::platform::auth::{AuthError, Secret, Tokens};
use faultline_system::platform::envelope::{Envelope, EnvelopeError};
use proptest::prelude::*;
use rdkafka::message::OwnedHeaders;
use uuid::Uuid;

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<u128>(),
        any::<String>(),
        any::<u32>(),
        any::<String>(),
        // From year 1 to 9999, where RFC 3339 can write the time.
        -62_135_596_800i64..253_402_300_799,
        0u32..1_000_000_000,
        json(),
    )
        .prop_map(
            |(id, event_type, version, key, seconds, nanos, payload)| Envelope {
                id: Uuid::from_u128(id),
                event_type,
                version,
                key,
                occurred_at: DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap_or_default(),
                payload,
                traceparent: None,
            },
        )
}

/// A decode error names the place: the record is empty, or the line and column of the
/// fault in its value.
fn names_its_place(error: &EnvelopeError) -> bool {
    match error {
        EnvelopeError::Empty => true,
        EnvelopeError::Undecodable(message) => message.contains("line"),
    }
}

fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    Envelope::decode(Some(bytes), None::<&OwnedHeaders>)
}

/// `bytes` with each change applied: (position, new byte) or a cut at a position.
fn mutate(mut bytes: Vec<u8>, changes: &[(prop::sample::Index, u8, bool)]) -> Vec<u8> {
    for (at, byte, cut) in changes {
        if bytes.is_empty() {
            break;
        }
        let at = at.index(bytes.len());
        if *cut {
            bytes.truncate(at);
        } else {
            bytes[at] = *byte;
        }
    }
    bytes
}

const SECRET: &str = "a test secret that is long enough for HS256";

fn tokens() -> Tokens {
    match Tokens::new(&Secret::new(SECRET), Duration::from_secs(3600)) {
        Ok(tokens) => tokens,
        Err(error) => panic!("{error}"),
    }
}

/// A refused token says which part is wrong.
fn names_its_part(error: &AuthError) -> bool {
    match error {
        AuthError::Expired => true,
        AuthError::Invalid(message) => [
            "expected header.claims.signature",
            "header:",
            "signature:",
            "claims:",
        ]
        .iter()
        .any(|place| message.starts_with(place)),
        AuthError::WeakSecret => false,
    }
}

/// Text shaped like a JWT: three parts of base64url-ish characters and some noise.
fn token_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=+/-]{0,40}(\\.[A-Za-z0-9_=+/-]{0,60}){0,4}",
        // A header that is real JSON, then anything.
        (
            prop_oneof![
                Just(r#"{"alg":"HS256","typ":"JWT"}"#),
                Just(r#"{"alg":"none"}"#),
                Just(r#"{"alg":"RS256"}"#),
                Just(r#"{"typ":"JWT"}"#),
                Just(r#"[]"#),
            ],
            "[A-Za-z0-9_-]{0,60}",
            "[A-Za-z0-9_-]{0,60}"
        )
            .prop_map(|(header, claims, signature)| {
                use base64::Engine as _;
                let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
                format!("{header}.{claims}.{signature}")
            }),
    ]
}

proptest! {
    // PROPTEST_CASES, when set, overrides the count (`make fuzz`).
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_are_an_envelope_or_an_error_naming_the_place(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Err(error) = decode(&bytes) {
            prop_assert!(names_its_place(&error), "{error}");
        }
    }

    #[test]
    fn an_envelope_with_bytes_changed_is_read_or_refused_naming_the_place(
        sent in envelope(),
        changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..4),
    ) {
        let bytes = mutate(sent.to_bytes(), &changes);
        if let Err(error) = decode(&bytes) {
            prop_assert!(names_its_place(&error), "{error}");
        }
    }

    #[test]
    fn any_envelope_survives_the_wire(sent in envelope()) {
        let received = decode(&sent.to_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(received, sent);
    }

    #[test]
    fn arbitrary_tokens_are_refused_naming_the_part(token in token_ish()) {
        let tokens = tokens();
        match tokens.validate(&token) {
            Ok(user) => prop_assert!(false, "{token:?} was taken for {user}"),
            Err(error) => prop_assert!(names_its_part(&error), "{error}"),
        }
    }

    #[test]
    fn a_valid_token_with_a_character_changed_is_refused_naming_the_part(
        user in any::<u128>(),
        at in any::<prop::sample::Index>(),
        replacement in prop::char::any(),
    ) {
        let tokens = tokens();
        let user = Uuid::from_u128(user);
        let token = tokens.issue(user).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(tokens.validate(&token).ok(), Some(user));
        let mut chars: Vec<char> = token.chars().collect();
        let at = at.index(chars.len());
        prop_assume!(chars[at] != replacement);
        chars[at] = replacement;
        let forged: String = chars.into_iter().collect();
        match tokens.validate(&forged) {
            Ok(taken) => prop_assert!(false, "{forged:?} was taken for {taken}"),
            Err(error) => prop_assert!(names_its_part(&error), "{error}"),
        }
    }
}
