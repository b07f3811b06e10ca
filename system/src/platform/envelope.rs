//! The versioned envelope every event of the reference system travels in.
//!
//! On the wire an event is one Kafka record: the **key** is the entity key (so all events of
//! one order land on one partition, in order), the **value** is the JSON envelope below, and
//! the W3C trace context rides in the `traceparent` header, so that a trace crosses Kafka.
//!
//! ```json
//! {"id":"…uuid…","type":"order.created","version":1,"key":"…","occurred_at":"…RFC 3339…",
//!  "payload":{…}}
//! ```

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// One event: identity, type and schema version, entity key, time, payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; consumers deduplicate on it.
    pub id: Uuid,
    /// Dotted event type, e.g. `order.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `payload` for this type.
    pub version: u32,
    /// Entity key, also the Kafka partition key.
    pub key: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// W3C `traceparent`, carried in a Kafka header rather than in the JSON.
    #[serde(skip)]
    pub traceparent: Option<String>,
}

/// Why a record could not be read as an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the record has no value")]
    Empty,
    #[error("the value is not an event envelope: {0}")]
    Undecodable(String),
}

impl Envelope {
    /// A new event with a fresh id, stamped now.
    ///
    /// The id is a UUIDv7 (time-ordered): consumers record it in `processed_events`' primary
    /// key and the outbox in a unique index, so time-ordered ids append to those B-trees'
    /// rightmost pages where random ones (v4) landed on a random leaf each, every one a page
    /// to read, dirty and write to the WAL in full after a checkpoint.
    pub fn new(
        event_type: impl Into<String>,
        version: u32,
        key: impl Into<String>,
        payload: serde_json::Value,
    ) -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            version,
            key: key.into(),
            occurred_at: Utc::now(),
            payload,
            traceparent: None,
        }
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Envelope {
        self.traceparent = traceparent;
        self
    }

    /// The record value.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings, numbers and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record headers.
    pub fn headers(&self) -> OwnedHeaders {
        let headers = OwnedHeaders::new();
        match &self.traceparent {
            Some(traceparent) => headers.insert(Header {
                key: TRACEPARENT_HEADER,
                value: Some(traceparent.as_bytes()),
            }),
            None => headers,
        }
    }

    /// Reads an envelope from a record's value and headers.
    pub fn decode(
        value: Option<&[u8]>,
        headers: Option<&impl Headers>,
    ) -> Result<Envelope, EnvelopeError> {
        let value = value.ok_or(EnvelopeError::Empty)?;
        let mut envelope: Envelope =
            serde_json::from_slice(value).map_err(|e| EnvelopeError::Undecodable(e.to_string()))?;
        envelope.traceparent = headers.and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == TRACEPARENT_HEADER)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        });
        Ok(envelope)
    }

    /// Decodes the payload into the type a handler expects.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            EnvelopeError::Undecodable(format!(
                "payload of {} v{}: {e}",
                self.event_type, self.version
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_the_wire_with_its_trace_context() {
        let sent = Envelope::new(
            "order.created",
            1,
            "order-1",
            serde_json::json!({"total": 3}),
        )
        .with_traceparent(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        ));
        let bytes = sent.to_bytes();
        let headers = sent.headers();
        let received = Envelope::decode(Some(&bytes), Some(&headers)).expect("decodes");
        assert_eq!(received, sent);
        assert_eq!(received.traceparent, sent.traceparent);
    }

    #[test]
    fn garbage_is_undecodable_not_a_panic() {
        let error =
            Envelope::decode(Some(b"\xff{not json"), None::<&OwnedHeaders>).expect_err("garbage");
        assert!(matches!(error, EnvelopeError::Undecodable(_)));
        assert!(matches!(
            Envelope::decode(None, None::<&OwnedHeaders>),
            Err(EnvelopeError::Empty)
        ));
    }
}
