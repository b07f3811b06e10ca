//! Orders: the saga orchestrator. Placing an order starts
//! reserve inventory -> charge payment -> schedule shipping -> COMPLETED;
//! a failed step compensates the completed ones in reverse (refund, release) -> CANCELLED.
//!
//! The saga's state is a row of `orders` (`status` and `step`), and every move commits in
//! one transaction with its reply's consumption: read the row `FOR UPDATE`, apply the reply,
//! write the next step, enqueue the next command and an `order.updated` event into the
//! outbox. The consumer hands the saga a batch of replies at a time, and a batch moves its
//! sagas with two statements whatever its size (every row read and locked with one, in id
//! order; the replies applied in order in memory; the moved rows written with one); a
//! single reply is a batch of one. Commands and replies travel over Kafka. So a process
//! killed at any point resumes after restart from what committed: a reply whose
//! transaction did not commit is redelivered, a command that committed is relayed, and a
//! reply that does not fit the current step (a duplicate, a late one) is ignored. Every
//! saga ends in exactly one terminal state.

use std::collections::HashMap;

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

use super::admission::{Admission, REFRESH_EVERY};
use super::messages::{
    self, types, Amount, Failed, OrderChanged, OrderItem, OrderRef, Reserve, V1,
};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{decode_each, sorted_once, BatchHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, ErrorBody, Json, TraceContext, USER_ID};
use crate::platform::metrics::{Metrics, STEP_BUCKETS};
use crate::platform::migrate::Migration;
use crate::platform::outbox;
use crate::platform::sql::{self, Prepared};

pub const NAME: &str = "orders";

pub const MIGRATIONS: &[Migration] = &{
    let [outbox, processed_events, orders] = Migration::with_event_tables(
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
    [
        outbox,
        processed_events,
        orders,
        // Counting the finished sagas with `GROUP BY status` read the whole table every second
        // on every replica (43 ms a call at 28,000 orders, growing with the table). The saga
        // appends each batch's finished count instead, and `SagaMetrics::refresh` folds them.
        Migration {
            version: 4,
            name: "saga totals",
            sql: "
CREATE TABLE saga_totals (
    status  TEXT PRIMARY KEY,
    sagas   BIGINT NOT NULL
);
CREATE TABLE saga_total_deltas (
    status  TEXT NOT NULL,
    sagas   BIGINT NOT NULL
);
INSERT INTO saga_totals (status, sagas)
    SELECT status, count(*) FROM orders WHERE status <> 'PENDING' GROUP BY status;",
        },
        // A saga's row is updated three times, twice without changing `status` (its only
        // indexed column that changes): with room left on the page those two are HOT updates,
        // which write no index entries. At fillfactor 100, 47% of the updates were HOT.
        Migration {
            version: 5,
            name: "room for HOT updates",
            sql: "ALTER TABLE orders SET (fillfactor = 80);",
        },
    ]
};

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
    /// Orders by status, refreshed from the database every [`REFRESH_EVERY`].
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
        sql::every(REFRESH_EVERY, &pool, &shutdown, |client| {
            let (by_status, admission) = (&self.by_status, &admission);
            async move {
                let Ok(rows) = sagas_by_status(&client).await else {
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

/// The sagas by status: PENDING counted through `orders_by_status` (as many rows as are
/// pending), the finished ones from `saga_totals` once the deltas the saga appended are
/// folded in. Folding takes its deltas and adds them in one statement, so two replicas
/// folding at once count each delta once; the totals are locked in status order.
async fn sagas_by_status(
    client: &deadpool_postgres::Client,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    client
        .execute_prepared(
            "WITH folded AS (DELETE FROM saga_total_deltas RETURNING status, sagas)
             INSERT INTO saga_totals (status, sagas)
             SELECT status, sum(sagas) FROM folded GROUP BY status ORDER BY status
             ON CONFLICT (status) DO UPDATE SET sagas = saga_totals.sagas + EXCLUDED.sagas",
            &[],
        )
        .await?;
    client
        .query_prepared(
            "SELECT status, sagas FROM saga_totals
             UNION ALL SELECT 'PENDING', count(*) FROM orders WHERE status = 'PENDING'",
            &[],
        )
        .await
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
    let waiting = crate::platform::telemetry::connection_span();
    let client = tracing::Instrument::instrument(pool.get(), waiting).await?;
    // UUIDv7: time-ordered, so the primary key's index grows at its right edge, and the
    // read model can tell an id that is no recent order's (see analytics' view).
    let order_id = Uuid::now_v7();
    let placed = Placing {
        order_id,
        user_id,
        idempotency_key,
        created_at: Utc::now(),
        traceparent: Some(trace.traceparent.clone()),
    };
    if !placed.insert(&client, request.items).await? {
        // The same key was used before: answer with that order, create nothing.
        let existing = client
            .query_one_prepared(
                "SELECT id, status FROM orders WHERE user_id = $1 AND idempotency_key = $2",
                &[&user_id, &placed.idempotency_key],
            )
            .await?;
        return Ok((
            StatusCode::OK,
            Json(Placed {
                id: existing.get(0),
                status: existing.get(1),
            }),
        ));
    }
    ticket.keep();
    Ok((
        StatusCode::ACCEPTED,
        Json(Placed {
            id: order_id,
            status: "PENDING".into(),
        }),
    ))
}

/// An order being placed: its row, its reservation command and its `order.created` event.
struct Placing {
    order_id: Uuid,
    user_id: Uuid,
    idempotency_key: Option<String>,
    created_at: DateTime<Utc>,
    traceparent: Option<String>,
}

/// Writes the order and, only if it was written (its idempotency key is new), its two
/// events into the outbox, in one statement: one round trip, atomic on its own, where a
/// transaction (BEGIN, INSERT, INSERT, COMMIT) took four.
static PLACE_ORDER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH placed AS (
             INSERT INTO orders (id, user_id, idempotency_key, status, step, items, version, created_at, updated_at)
             VALUES ($1, $2, $3, 'PENDING', $4, $5, 1, $6, $6)
             ON CONFLICT (user_id, idempotency_key) DO NOTHING
             RETURNING id),
         announced AS ({})
         SELECT count(*) FROM placed",
        outbox::insert_sql(7, "EXISTS (SELECT 1 FROM placed)")
    )
});

impl Placing {
    /// Inserts the order and its events; false if its idempotency key was used before.
    async fn insert(
        &self,
        client: &deadpool_postgres::Client,
        items: Vec<OrderItem>,
    ) -> Result<bool, ApiError> {
        let key = self.order_id.to_string();
        let reserve = Envelope::new(
            types::RESERVE,
            V1,
            key.clone(),
            serde_json::to_value(Reserve {
                order_id: self.order_id,
                items: items.clone(),
            })
            .map_err(ApiError::internal)?,
        )
        .with_traceparent(self.traceparent.clone());
        let created = OrderChanged {
            order_id: self.order_id,
            user_id: self.user_id,
            version: 1,
            status: "PENDING".into(),
            step: step::RESERVING.into(),
            items,
            amount_cents: None,
            reason: None,
            created_at: self.created_at,
            updated_at: self.created_at,
        };
        let event = Envelope::new(
            types::ORDER_CREATED,
            V1,
            key,
            serde_json::to_value(&created).map_err(ApiError::internal)?,
        )
        .with_traceparent(self.traceparent.clone());
        let events = [
            (messages::INVENTORY_COMMANDS.to_string(), reserve),
            (messages::ORDERS_EVENTS.to_string(), event),
        ];
        let columns = outbox::OutboxColumns::of(&events);
        // The row's items are order.created's, already JSON: not serialised a second time.
        let (_, order_created) = &events[1];
        let items_json = (order_created.payload.get("items"))
            .ok_or_else(|| ApiError::internal("order.created's payload has no items"))?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &self.order_id,
            &self.user_id,
            &self.idempotency_key,
            &step::RESERVING,
            items_json,
            &self.created_at,
        ];
        params.extend(columns.params());
        let _transaction = crate::platform::telemetry::transaction_span();
        let placed: i64 = client
            .query_one_prepared(PLACE_ORDER.as_str(), &params)
            .await?
            .get(0);
        Ok(placed > 0)
    }
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

/// A saga's row as a batch of replies moves it.
struct Saga {
    step: String,
    amount_cents: Option<i64>,
    reason: Option<String>,
    version: i64,
    user_id: Uuid,
    items: Vec<OrderItem>,
    created_at: DateTime<Utc>,
    /// When the saga entered its current step (its `updated_at`).
    step_started: DateTime<Utc>,
    /// The status a reply of the batch moved it to, if one did (its row is written back).
    moved_to: Option<&'static str>,
}

impl Saga {
    fn from_row(row: &tokio_postgres::Row) -> Result<(Uuid, Saga), HandleError> {
        let saga = Saga {
            step: row.get(1),
            amount_cents: row.get(2),
            version: row.get(3),
            user_id: row.get(4),
            items: serde_json::from_value(row.get(5))
                .map_err(|e| HandleError::Poison(e.to_string()))?,
            created_at: row.get(6),
            reason: row.get(7),
            step_started: row.get(8),
            moved_to: None,
        };
        Ok((row.get(0), saga))
    }
}

impl BatchHandler for SagaHandler {
    /// Applies replies (a batch of one or more) in order: each moves its order's saga as
    /// the transition table says, announcing the move and sending the next command. Their
    /// rows are read and locked with one statement and written with one.
    async fn apply(&self, tx: &OutboxTx<'_>, events: &[&Envelope]) -> Result<(), HandleError> {
        let replies = decode_each(events, V1, |event| {
            Ok(event.payload_as::<OrderRef>()?.order_id)
        })?;
        let ids = sorted_once(replies.iter().map(|(_, order_id)| *order_id));
        // Locked in id order ([`sorted_once`]); `now()` is the transaction's time, the
        // `updated_at` every move of it writes.
        let rows = tx
            .query_prepared(
                "SELECT id, step, amount_cents, version, user_id, items, created_at, reason, updated_at, now()
                 FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&ids],
            )
            .await?;
        let now: DateTime<Utc> = match rows.first() {
            Some(row) => row.get(9),
            None => Utc::now(),
        };
        let mut sagas = rows
            .iter()
            .map(Saga::from_row)
            .collect::<Result<HashMap<Uuid, Saga>, _>>()?;
        for (event, order_id) in replies {
            let Some(saga) = sagas.get_mut(&order_id) else {
                return Err(HandleError::Poison(format!(
                    "a reply for unknown order {order_id}"
                )));
            };
            self.move_saga(tx, event, order_id, saga, now)?;
        }
        write_moved(tx, &sagas).await
    }
}

impl SagaHandler {
    /// Applies one reply to `saga` in memory, and stages the next command and the
    /// announcement of the move; a reply that does not fit the step changes nothing.
    fn move_saga(
        &self,
        tx: &OutboxTx<'_>,
        event: &Envelope,
        order_id: Uuid,
        saga: &mut Saga,
        now: DateTime<Utc>,
    ) -> Result<(), HandleError> {
        let Some(next) = saga_move(&saga.step, event, order_id)? else {
            tracing::debug!(%order_id, step = %saga.step, reply = %event.event_type, "reply does not fit the saga's step; ignored");
            return Ok(());
        };
        let left = std::mem::replace(&mut saga.step, next.step.to_string());
        saga.version += 1;
        saga.amount_cents = next.amount_cents.or(saga.amount_cents);
        saga.reason = next.reason.or(saga.reason.take());
        saga.moved_to = Some(next.status);
        let key = order_id.to_string();
        if let Some((topic, command_type, payload)) = next.command {
            let command = Envelope::new(command_type, V1, key.clone(), payload)
                .with_traceparent(event.traceparent.clone());
            outbox::enqueue(tx, topic, command);
        }
        let changed = OrderChanged {
            order_id,
            user_id: saga.user_id,
            version: saga.version,
            status: next.status.into(),
            step: next.step.into(),
            items: saga.items.clone(),
            amount_cents: saga.amount_cents,
            reason: saga.reason.clone(),
            created_at: saga.created_at,
            updated_at: now,
        };
        let payload =
            serde_json::to_value(&changed).map_err(|e| HandleError::Poison(e.to_string()))?;
        let announcement = Envelope::new(types::ORDER_UPDATED, V1, key, payload)
            .with_traceparent(event.traceparent.clone());
        outbox::enqueue(tx, messages::ORDERS_EVENTS, announcement);
        self.metrics
            .transitions
            .with_label_values(&[left.as_str(), next.step])
            .inc();
        crate::platform::telemetry::saga_step(event, &left, saga.step_started);
        let took = (Utc::now() - saga.step_started)
            .to_std()
            .unwrap_or_default();
        self.metrics
            .step_seconds
            .with_label_values(&[left.as_str()])
            .observe(took.as_secs_f64());
        saga.step_started = now;
        Ok(())
    }
}

/// Writes the sagas a batch moved, one statement for all of them.
async fn write_moved(tx: &OutboxTx<'_>, sagas: &HashMap<Uuid, Saga>) -> Result<(), HandleError> {
    let moved: Vec<(&Uuid, &Saga, &str)> = sagas
        .iter()
        .filter_map(|(id, saga)| Some((id, saga, saga.moved_to?)))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = moved.iter().map(|(id, _, _)| **id).collect();
    let steps: Vec<&str> = moved.iter().map(|(_, s, _)| s.step.as_str()).collect();
    let statuses: Vec<&str> = moved.iter().map(|(_, _, status)| *status).collect();
    let amounts: Vec<Option<i64>> = moved.iter().map(|(_, s, _)| s.amount_cents).collect();
    let reasons: Vec<Option<&str>> = moved.iter().map(|(_, s, _)| s.reason.as_deref()).collect();
    let versions: Vec<i64> = moved.iter().map(|(_, s, _)| s.version).collect();
    // A finished saga never moves again, so every terminal status written here is a saga
    // that just finished: counted into `saga_total_deltas` by the same statement.
    let updated: i64 = tx
        .query_one_prepared(
            "WITH moved AS (
                 UPDATE orders o SET step = v.step, status = v.status, amount_cents = v.amount_cents,
                     reason = v.reason, version = v.version, updated_at = now()
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
                      AS v(id, step, status, amount_cents, reason, version)
                 WHERE o.id = v.id
                 RETURNING o.status),
             finished AS (
                 INSERT INTO saga_total_deltas (status, sagas)
                 SELECT status, count(*) FROM moved WHERE status <> 'PENDING' GROUP BY status)
             SELECT count(*) FROM moved",
            &[&ids, &steps, &statuses, &amounts, &reasons, &versions],
        )
        .await?
        .get(0);
    if updated != moved.len() as i64 {
        return Err(HandleError::Retry(format!(
            "{} of {} locked orders were updated",
            updated,
            moved.len()
        )));
    }
    Ok(())
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
