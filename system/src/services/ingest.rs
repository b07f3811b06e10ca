//! Ingest: the "data processing" service of the documents. It accepts batches of telemetry
//! events over HTTP and writes them to Kafka (`ingest.telemetry`), answering 202 only once
//! Kafka acknowledged every event of the batch (acks=all): an accepted event is never lost.
//! Events go straight to Kafka rather than through an outbox, since there is no state
//! change to keep consistent with them.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use super::messages;
use super::runtime::{ensure_topics, kafka_probe, producer, ServiceContext, ServiceError};
use crate::platform::http::{ApiError, ErrorBody, Json};

pub const NAME: &str = "ingest";
pub const TOPICS: &[&str] = &[messages::INGEST_TELEMETRY];
/// The most events one request may carry.
pub const MAX_BATCH: usize = 10_000;
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Starts ingest: no database, only Kafka, whose readiness it reports.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let kafka = ctx.kafka()?;
    ensure_topics(&kafka, TOPICS)
        .await
        .map_err(|reason| ctx.kafka_error(reason))?;
    let producer = producer(&kafka).map_err(|reason| ctx.kafka_error(reason))?;
    ctx.add_probe("kafka", kafka_probe(&producer));
    Ok(routes(producer))
}

/// `POST /ingest/events` with a JSON array of objects.
pub fn routes(producer: FutureProducer) -> Router {
    Router::new()
        .route("/ingest/events", post(accept))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(producer)
}

/// One request's events: 1 to [`MAX_BATCH`] JSON objects; a string `source` keys the
/// partition.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Batch(pub Vec<serde_json::Map<String, serde_json::Value>>);

/// Written by hand: the derive cannot put `minItems`/`maxItems` on a newtype.
impl utoipa::PartialSchema for Batch {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::Object))
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH))
            .into()
    }
}

impl utoipa::ToSchema for Batch {}

/// The answer once Kafka has every event of the batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub accepted: usize,
}

/// Accepts a batch of telemetry events (a JSON array of objects); 202 once Kafka has all.
#[utoipa::path(post, path = "/api/ingest/events", tag = "ingest", security(("bearer" = [])),
    request_body(content = Batch, description = "1 to 10,000 events; `source` keys the partition"),
    responses((status = 202, description = "Kafka has every event", body = Accepted),
              (status = 503, description = "Kafka did not acknowledge", body = ErrorBody),
              (status = 413, description = "The body is over 16 MiB", body = ErrorBody),
              (status = 400, description = "Invalid input; the message names the field", body = ErrorBody)))]
pub(crate) async fn accept(
    State(producer): State<FutureProducer>,
    Json(Batch(events)): Json<Batch>,
) -> Result<impl IntoResponse, ApiError> {
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "give 1 to {MAX_BATCH} events"
        )));
    }
    let mut deliveries = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        // Partition by the event's source when it names one, so a source's events stay in order.
        let key = event
            .get("source")
            .and_then(|s| s.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| index.to_string());
        let payload = serde_json::to_vec(event).map_err(ApiError::internal)?;
        let record = FutureRecord::to(messages::INGEST_TELEMETRY)
            .key(&key)
            .payload(&payload);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((error, _)) => {
                return Err(ApiError::Unavailable(format!(
                    "Kafka refused event {index}: {error}"
                )));
            }
        }
    }
    let accepted = deliveries.len();
    for delivery in deliveries {
        match tokio::time::timeout(Duration::from_secs(30), delivery).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((error, _)))) => {
                return Err(ApiError::Unavailable(format!(
                    "Kafka did not acknowledge the batch: {error}"
                )))
            }
            _ => {
                return Err(ApiError::Unavailable(
                    "Kafka did not acknowledge the batch in time".into(),
                ))
            }
        }
    }
    Ok((StatusCode::ACCEPTED, Json(Accepted { accepted })))
}
