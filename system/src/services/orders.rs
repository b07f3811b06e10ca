//! Orders: the saga orchestrator. Placing an order starts
//! reserve inventory -> charge payment -> schedule shipping -> COMPLETED;
//! a failed step compensates the completed ones in reverse (refund, release) -> CANCELLED.
//!
//! The saga's state is a row of `orders` (`status` and `step`), and every move is one
//! transaction: read the row `FOR UPDATE`, apply the reply, write the next step, enqueue the
//! next command and an `order.updated` event into the outbox. Commands and replies travel
//! over Kafka. So a process killed at any point resumes after restart from what committed:
//! a reply whose transaction did not commit is redelivered, a command that committed is
//! relayed, and a reply that does not fit the current step (a duplicate, a late one) is
//! ignored. Every saga ends in exactly one terminal state.

use std::time::Duration;

use crate::platform::outbox::OutboxTx;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::admission::Admission;
use super::messages::{
    self, types, Amount, Failed, OrderChanged, OrderItem, OrderRef, Reserve, V1,
};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{expect_version, EventHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, ErrorBody, Json, TraceContext, USER_ID};
use crate::platform::metrics::{Metrics, STEP_BUCKETS};
use crate::platform::migrate::Migration;
use crate::platform::outbox;
use crate::platform::sql::{self, Prepared};

pub const NAME: &str = "orders";

pub const MIGRATIONS: &[Migration] = &Migration::with_event_tables(
    "orders",
    "
CREATE TABLE orders (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL,
    idempotency_key TEXT,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED')),
    step            TEXT NOT NULL,
    items           JSONB NOT NULL,
    amount_cents    BIGINT,
    reason          TEXT,
    version         BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_by_status ON orders (status);",
);

pub const TOPICS: &[&str] = &[
    messages::ORDERS_EVENTS,
    messages::INVENTORY_COMMANDS,
    messages::INVENTORY_REPLIES,
    messages::PAYMENTS_COMMANDS,
    messages::PAYMENTS_REPLIES,
    messages::SHIPPING_COMMANDS,
    messages::SHIPPING_REPLIES,
];

/// The topics the saga consumer reads.
pub const REPLY_TOPICS: &[&str] = &[
    messages::INVENTORY_REPLIES,
    messages::PAYMENTS_REPLIES,
    messages::SHIPPING_REPLIES,
];

/// Saga steps (`orders.step`).
pub mod step {
    pub const RESERVING: &str = "RESERVING";
    pub const CHARGING: &str = "CHARGING";
    pub const SHIPPING: &str = "SHIPPING";
    pub const REFUNDING: &str = "REFUNDING";
    pub const RELEASING: &str = "RELEASING";
    pub const DONE: &str = "DONE";
}

/// The limits [`place_order`] enforces, which the document declares (`PlaceOrder`,
/// [`OrderItem`] and the `Idempotency-Key` parameter; a test holds it to these numbers).
pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i32 = 1000;
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// The orders service's own metrics, registered in the process registry.
#[derive(Clone)]
pub struct SagaMetrics {
    /// Orders by status, refreshed every second from the database.
    pub by_status: IntGaugeVec,
    /// Saga moves by the step they left and the step they entered.
    pub transitions: IntCounterVec,
    /// How long each step took: from the command leaving with the order's last update to
    /// its reply applied (relay, Kafka, the participant and back), by step left.
    pub step_seconds: HistogramVec,
}

impl SagaMetrics {
    pub fn register(metrics: &Metrics) -> SagaMetrics {
        let by_status = metrics.register(IntGaugeVec::new(
            Opts::new("saga_orders", "Orders by saga status"),
            &["status"],
        ));
        let transitions = metrics.register(IntCounterVec::new(
            Opts::new(
                "saga_transitions_total",
                "Saga moves by step left and step entered",
            ),
            &["from", "to"],
        ));
        let step_seconds = metrics.register(HistogramVec::new(
            HistogramOpts::new(
                "saga_step_duration_seconds",
                "Time from a saga step's command to its reply applied, by step",
            )
            .buckets(STEP_BUCKETS.to_vec()),
            &["step"],
        ));
        SagaMetrics {
            by_status,
            transitions,
            step_seconds,
        }
    }

    /// Keeps `by_status` and `admission`'s counts current until `shutdown`.
    pub async fn refresh(
        self,
        pool: Pool,
        admission: Admission,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        sql::every(Duration::from_secs(1), &pool, &shutdown, |client| {
            let (by_status, admission) = (&self.by_status, &admission);
            async move {
                let Ok(rows) = client
                    .query_prepared("SELECT status, count(*) FROM orders GROUP BY status", &[])
                    .await
                else {
                    return;
                };
                let count = |status: &str| {
                    rows.iter()
                        .find(|r| r.get::<_, String>(0) == status)
                        .map_or(0, |r| r.get::<_, i64>(1))
                };
                for status in ["PENDING", "COMPLETED", "CANCELLED"] {
                    by_status.with_label_values(&[status]).set(count(status));
                }
                admission.observe(count("PENDING"), count("COMPLETED") + count("CANCELLED"));
            }
        })
        .await
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PlaceOrder {
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Placed {
    pub id: Uuid,
    pub status: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub step: String,
    pub items: Vec<OrderItem>,
    pub amount_cents: Option<i64>,
    pub reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /orders`, `GET /orders/{id}`; the caller is the `x-user-id` the gateway set.
/// Starts orders: its database and outbox relay, the saga's metrics and its consumer of
/// the participants' replies.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let platform = ctx.platform(MIGRATIONS, TOPICS).await?;
    ctx.relay(&platform);
    let metrics = SagaMetrics::register(&platform.metrics);
    let admission = Admission::new(ctx.admission_policy());
    ctx.spawn(
        metrics
            .clone()
            .refresh(platform.pool.clone(), admission.clone(), ctx.background()),
    );
    ctx.consume(
        &platform,
        "orders-saga",
        REPLY_TOPICS,
        SagaHandler { metrics },
    )?;
    Ok(routes(platform.pool.clone(), admission))
}

/// What the order routes share: the database, and the admission control of new orders.
#[derive(Clone)]
pub struct OrdersState {
    pool: Pool,
    admission: Admission,
}

pub fn routes(pool: Pool, admission: Admission) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .with_state(OrdersState { pool, admission })
}

/// The caller, as the gateway vouched for it.
pub fn caller(headers: &HeaderMap) -> Result<Uuid, ApiError> {
    headers
        .get(&USER_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .ok_or_else(|| ApiError::Unauthorized("no authenticated user".into()))
}

/// An `Idempotency-Key` as the document's pattern has it: 1 to [`MAX_IDEMPOTENCY_KEY`]
/// printable ASCII characters, spaces only inside (HTTP drops them at the ends anyway).
fn check_idempotency_key(key: &[u8]) -> Result<String, ApiError> {
    let printable = |b: &u8| (b' '..=b'~').contains(b);
    let well_formed = (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len())
        && key.iter().all(printable)
        && key.first() != Some(&b' ')
        && key.last() != Some(&b' ');
    match std::str::from_utf8(key) {
        Ok(key) if well_formed => Ok(key.to_string()),
        _ => Err(ApiError::BadRequest(format!(
            "Idempotency-Key: give 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        ))),
    }
}

/// Places an order and starts its saga. The same `Idempotency-Key` never creates a second
/// order: the first one is answered again (200).
#[utoipa::path(post, path = "/api/orders", tag = "orders", security(("bearer" = [])), request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = "^[!-~]([ -~]*[!-~])?$",
            description = "Makes retries safe: printable ASCII, spaces only inside")),
    responses((status = 202, description = "Accepted; the saga runs", body = Placed),
              (status = 200, description = "This key was used before: that order", body = Placed),
              (status = 401, body = ErrorBody), (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
              (status = 503, description = "Shedding load: more orders are pending than complete in time; see Retry-After", body = ErrorBody),
              (status = 400, description = "Invalid input; the message names the field", body = ErrorBody)))]
pub(crate) async fn place_order(
    State(OrdersState { pool, admission }): State<OrdersState>,
    Extension(trace): Extension<TraceContext>,
    headers: HeaderMap,
    Json(request): Json<PlaceOrder>,
) -> Result<impl IntoResponse, ApiError> {
    let user_id = caller(&headers)?;
    let idempotency_key = match headers.get("idempotency-key") {
        Some(value) => Some(check_idempotency_key(value.as_bytes())?),
        None => None,
    };
    if request.items.is_empty() || request.items.len() > MAX_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "items: give 1 to {MAX_ITEMS} items"
        )));
    }
    for (index, item) in request.items.iter().enumerate() {
        if item.quantity <= 0 || item.quantity > MAX_QUANTITY {
            return Err(ApiError::BadRequest(format!(
                "items[{index}].quantity: {} is not between 1 and {MAX_QUANTITY}",
                item.quantity
            )));
        }
    }

    let ticket = admission.admit()?;
    let mut client = pool.get().await?;
    let tx = OutboxTx::begin(&mut client).await?;
    // UUIDv7: time-ordered, so the primary key's index grows at its right edge, and the
    // read model can tell an id that is no recent order's (see analytics' view).
    let order_id = Uuid::now_v7();
    let items = serde_json::to_value(&request.items).map_err(ApiError::internal)?;
    let inserted = tx
        .query_opt_prepared(
            "INSERT INTO orders (id, user_id, idempotency_key, status, step, items, version)
             VALUES ($1, $2, $3, 'PENDING', $4, $5, 1)
             ON CONFLICT (user_id, idempotency_key) DO NOTHING
             RETURNING created_at",
            &[
                &order_id,
                &user_id,
                &idempotency_key,
                &step::RESERVING,
                &items,
            ],
        )
        .await?;
    let Some(row) = inserted else {
        // The same key was used before: answer with that order, create nothing.
        let existing = tx
            .query_one_prepared(
                "SELECT id, status FROM orders WHERE user_id = $1 AND idempotency_key = $2",
                &[&user_id, &idempotency_key],
            )
            .await?;
        tx.rollback().await?;
        return Ok((
            StatusCode::OK,
            Json(Placed {
                id: existing.get(0),
                status: existing.get(1),
            }),
        ));
    };
    let created_at: DateTime<Utc> = row.get(0);
    let key = order_id.to_string();
    let traceparent = Some(trace.traceparent.clone());
    let reserve = Envelope::new(
        types::RESERVE,
        V1,
        key.clone(),
        serde_json::to_value(Reserve {
            order_id,
            items: request.items.clone(),
        })
        .map_err(ApiError::internal)?,
    )
    .with_traceparent(traceparent.clone());
    outbox::enqueue(&tx, messages::INVENTORY_COMMANDS, &reserve);
    let created = OrderChanged {
        order_id,
        user_id,
        version: 1,
        status: "PENDING".into(),
        step: step::RESERVING.into(),
        items: request.items,
        amount_cents: None,
        reason: None,
        created_at,
        updated_at: created_at,
    };
    let event = Envelope::new(
        types::ORDER_CREATED,
        V1,
        key,
        serde_json::to_value(&created).map_err(ApiError::internal)?,
    )
    .with_traceparent(traceparent);
    outbox::enqueue(&tx, messages::ORDERS_EVENTS, &event);
    tx.commit().await?;
    ticket.keep();
    Ok((
        StatusCode::ACCEPTED,
        Json(Placed {
            id: order_id,
            status: "PENDING".into(),
        }),
    ))
}

/// The write side's order with its saga status; 404 if it is not the caller's.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id (UUID)")),
    responses((status = 200, body = Order), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_order(
    State(OrdersState { pool, .. }): State<OrdersState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let user_id = caller(&headers)?;
    // Another user's order and a malformed id are both "not found": ids are not probeable.
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound(format!("no order {id}")))?;
    let client = pool.get().await?;
    let row = client
        .query_opt_prepared(
            "SELECT id, user_id, status, step, items, amount_cents, reason, version, created_at, updated_at
             FROM orders WHERE id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))?;
    Ok(Json(Order {
        id: row.get(0),
        user_id: row.get(1),
        status: row.get(2),
        step: row.get(3),
        items: serde_json::from_value(row.get(4)).map_err(ApiError::internal)?,
        amount_cents: row.get(5),
        reason: row.get(6),
        version: row.get(7),
        created_at: row.get(8),
        updated_at: row.get(9),
    }))
}

/// Moves sagas on the participants' replies.
pub struct SagaHandler {
    pub metrics: SagaMetrics,
}

/// What a reply makes of the saga: the next step, the status, and the command to send.
struct Move {
    step: &'static str,
    status: &'static str,
    command: Option<(&'static str, &'static str, serde_json::Value)>,
    amount_cents: Option<i64>,
    reason: Option<String>,
}

impl Move {
    /// To `step` with `status`, sending nothing and keeping the order's amount and reason.
    fn to(step: &'static str, status: &'static str) -> Move {
        Move {
            step,
            status,
            command: None,
            amount_cents: None,
            reason: None,
        }
    }

    /// Also sends the command `command_type` with `payload` on `topic`.
    fn sending(
        self,
        topic: &'static str,
        command_type: &'static str,
        payload: serde_json::Value,
    ) -> Move {
        Move {
            command: Some((topic, command_type, payload)),
            ..self
        }
    }

    /// Also records why the saga turned back.
    fn because(self, reason: String) -> Move {
        Move {
            reason: Some(reason),
            ..self
        }
    }
}

/// The saga's transition table: what a reply to the step `current` makes of the order, or
/// `None` for a reply that does not fit the step (a redelivery of an older one).
fn saga_move(current: &str, event: &Envelope, order_id: Uuid) -> Result<Option<Move>, HandleError> {
    let order_ref = || serde_json::json!({ "order_id": order_id });
    // The reason a participant gave for failing, kept on the order.
    let failure = || event.payload_as::<Failed>().map(|failed| failed.reason);
    let next = match (current, event.event_type.as_str()) {
        (step::RESERVING, types::RESERVED) => {
            let Amount { amount_cents, .. } = event.payload_as()?;
            let charge = serde_json::json!({ "order_id": order_id, "amount_cents": amount_cents });
            let mut next = Move::to(step::CHARGING, "PENDING").sending(
                messages::PAYMENTS_COMMANDS,
                types::CHARGE,
                charge,
            );
            next.amount_cents = Some(amount_cents);
            Some(next)
        }
        (step::RESERVING, types::RESERVATION_FAILED) => {
            Some(Move::to(step::DONE, "CANCELLED").because(failure()?))
        }
        (step::CHARGING, types::CHARGED) => Some(Move::to(step::SHIPPING, "PENDING").sending(
            messages::SHIPPING_COMMANDS,
            types::SCHEDULE,
            order_ref(),
        )),
        (step::CHARGING, types::CHARGE_FAILED) => Some(
            Move::to(step::RELEASING, "PENDING")
                .sending(messages::INVENTORY_COMMANDS, types::RELEASE, order_ref())
                .because(failure()?),
        ),
        (step::SHIPPING, types::SCHEDULED) => Some(Move::to(step::DONE, "COMPLETED")),
        (step::SHIPPING, types::SCHEDULE_FAILED) => Some(
            Move::to(step::REFUNDING, "PENDING")
                .sending(messages::PAYMENTS_COMMANDS, types::REFUND, order_ref())
                .because(failure()?),
        ),
        (step::REFUNDING, types::REFUNDED) => Some(Move::to(step::RELEASING, "PENDING").sending(
            messages::INVENTORY_COMMANDS,
            types::RELEASE,
            order_ref(),
        )),
        (step::RELEASING, types::RELEASED) => Some(Move::to(step::DONE, "CANCELLED")),
        _ => None,
    };
    Ok(next)
}

impl EventHandler for SagaHandler {
    async fn handle(&self, tx: &OutboxTx<'_>, event: &Envelope) -> Result<(), HandleError> {
        expect_version(event, V1)?;
        let OrderRef { order_id } = event.payload_as()?;
        let Some(row) = tx
            .query_opt_prepared(
                "SELECT step, status, amount_cents, version, user_id, items, created_at, reason, updated_at FROM orders WHERE id = $1 FOR UPDATE",
                &[&order_id],
            )
            .await?
        else {
            return Err(HandleError::Poison(format!("a reply for unknown order {order_id}")));
        };
        let current: String = row.get(0);
        let next = saga_move(&current, event, order_id)?;
        let Some(next) = next else {
            tracing::debug!(%order_id, step = %current, reply = %event.event_type, "reply does not fit the saga's step; ignored");
            return Ok(());
        };
        let version: i64 = row.get::<_, i64>(3) + 1;
        let amount_cents: Option<i64> = next.amount_cents.or(row.get(2));
        let reason: Option<String> = next.reason.or(row.get(7));
        let updated = tx
            .query_one_prepared(
                "UPDATE orders SET step = $2, status = $3, amount_cents = $4, reason = $5, version = $6, updated_at = now()
                 WHERE id = $1 RETURNING updated_at",
                &[&order_id, &next.step, &next.status, &amount_cents, &reason, &version],
            )
            .await?;
        let key = order_id.to_string();
        if let Some((topic, command_type, payload)) = next.command {
            let command = Envelope::new(command_type, V1, key.clone(), payload)
                .with_traceparent(event.traceparent.clone());
            outbox::enqueue(tx, topic, &command);
        }
        let changed = OrderChanged {
            order_id,
            user_id: row.get(4),
            version,
            status: next.status.into(),
            step: next.step.into(),
            items: serde_json::from_value(row.get(5))
                .map_err(|e| HandleError::Poison(e.to_string()))?,
            amount_cents,
            reason,
            created_at: row.get(6),
            updated_at: updated.get(0),
        };
        let payload =
            serde_json::to_value(&changed).map_err(|e| HandleError::Poison(e.to_string()))?;
        let announcement = Envelope::new(types::ORDER_UPDATED, V1, key, payload)
            .with_traceparent(event.traceparent.clone());
        outbox::enqueue(tx, messages::ORDERS_EVENTS, &announcement);
        self.metrics
            .transitions
            .with_label_values(&[current.as_str(), next.step])
            .inc();
        let step_started: DateTime<Utc> = row.get(8);
        let took = (Utc::now() - step_started).to_std().unwrap_or_default();
        self.metrics
            .step_seconds
            .with_label_values(&[current.as_str()])
            .observe(took.as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_printable_ascii_with_spaces_only_inside() {
        assert_eq!(
            check_idempotency_key(b"order 7").ok().as_deref(),
            Some("order 7")
        );
        assert!(check_idempotency_key(&[b'k'; MAX_IDEMPOTENCY_KEY]).is_ok());
        for refused in [
            &b""[..],
            b" k",
            b"k ",
            b"a\tb",
            "é".as_bytes(),
            &[b'k'; MAX_IDEMPOTENCY_KEY + 1],
        ] {
            assert!(check_idempotency_key(refused).is_err(), "{refused:?}");
        }
    }
}
