//! Analytics: the CQRS read side. It consumes `orders.events` into a denormalized view per
//! order and running aggregates, in its own database, and serves them.
//!
//! The totals by status are kept as appended deltas that a background task folds in every
//! second; the summary adds both. (One row per status updated by every event was a lock
//! every projection queued on.)
//!
//! `GET /orders/{id}/view?min_version=N&wait=5s` long-polls until the view has reached
//! version N (without `wait` it answers at once: the view, 404 if there is none yet, 408 if
//! it is older than N): once the transaction that changes a view commits, the projector announces it
//! ([`Changes`]) with the view as written (`RETURNING`), and the waiters of this replica
//! answer with it at once, without looking again, so a client learns of the change as soon
//! as it commits (a waiter on another replica looks again every
//! [`Changes::POLL`], or only every [`Changes::SOLE_POLL`] while this replica projects every
//! partition). This is how the consistency window (write acknowledged -> read model
//! serves it) is measured from outside. Projection lag (event time to applied
//! time) is a metric, and part of the summary.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::platform::outbox::OutboxTx;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use prometheus::{Gauge, Histogram, HistogramOpts, Opts};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::messages::{self, types, OrderChanged, V1};
use super::orders::caller;
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{decode_each, BatchHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, ErrorBody, Json, Query};
use crate::platform::metrics::{Metrics, STEP_BUCKETS};
use crate::platform::migrate::Migration;
use crate::platform::notify::Changes;
use crate::platform::ownership::Ownership;
use crate::platform::sql::{self, Prepared};

pub const NAME: &str = "analytics";
/// The longest a long-poll may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

pub const MIGRATIONS: &[Migration] = &[
    Migration::processed_events(1),
    Migration {
        version: 2,
        name: "order views and aggregates",
        sql: "
CREATE TABLE order_views (
    order_id     UUID PRIMARY KEY,
    user_id      UUID NOT NULL,
    status       TEXT NOT NULL,
    step         TEXT NOT NULL,
    items        JSONB NOT NULL,
    amount_cents BIGINT,
    reason       TEXT,
    version      BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    projected_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE order_totals (
    status        TEXT PRIMARY KEY,
    orders        BIGINT NOT NULL,
    amount_cents  BIGINT NOT NULL
);",
    },
    Migration {
        version: 3,
        name: "order total deltas",
        sql: "
CREATE TABLE order_total_deltas (
    status        TEXT NOT NULL,
    orders        BIGINT NOT NULL,
    amount_cents  BIGINT NOT NULL
);",
    },
    // A view is rewritten at each step of its saga; with room left on the page the rewrite
    // is a HOT update, which writes no index entry. At fillfactor 100, 62% were HOT.
    Migration {
        version: 4,
        name: "room for HOT updates",
        sql: "ALTER TABLE order_views SET (fillfactor = 70);",
    },
];

pub const TOPICS: &[&str] = &[messages::ORDERS_EVENTS];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub step: String,
    #[schema(value_type = Vec<super::messages::OrderItem>)]
    pub items: serde_json::Value,
    pub amount_cents: Option<i64>,
    pub reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub projected_at: DateTime<Utc>,
}

/// What a long-poll for an order's view is handed once its change committed: the view as
/// the projector wrote it.
pub(crate) type ViewChanges = Changes<Arc<OrderView>>;

#[derive(Clone)]
pub(crate) struct ViewState {
    pool: Pool,
    views: ViewChanges,
}

/// `GET /orders/{id}/view`, `GET /analytics/summary`.
/// Starts analytics: its database, the projector that builds the read model from order
/// events, and the listener that wakes long-polls when a view changes.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let platform = ctx.platform(MIGRATIONS, TOPICS).await?;
    let views = Changes::new();
    let projector = Projector::new(&platform.metrics, views.clone());
    ctx.consume(&platform, "analytics-projector", TOPICS, projector)?;
    ctx.spawn(fold_totals(platform.pool.clone(), ctx.background()));
    Ok(routes(platform.pool.clone(), views))
}

/// How often the appended total deltas are folded into `order_totals`.
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// Folds `order_total_deltas` into `order_totals` every [`FOLD_EVERY`], in one statement,
/// so a reader summing both never counts a delta twice or misses one. The upsert goes in
/// status order: two replicas folding at once then lock the rows in the same order, and one
/// waits for the other instead of both deadlocking.
async fn fold_totals(pool: Pool, shutdown: tokio_util::sync::CancellationToken) {
    sql::every(FOLD_EVERY, &pool, &shutdown, |client| async move {
        if let Err(error) = client
            .execute_prepared(
                "WITH folded AS (DELETE FROM order_total_deltas RETURNING status, orders, amount_cents)
                 INSERT INTO order_totals (status, orders, amount_cents)
                 SELECT status, sum(orders), sum(amount_cents) FROM folded GROUP BY status ORDER BY status
                 ON CONFLICT (status) DO UPDATE SET orders = order_totals.orders + EXCLUDED.orders,
                     amount_cents = order_totals.amount_cents + EXCLUDED.amount_cents",
                &[],
            )
            .await
        {
            tracing::warn!(%error, "folding the order totals");
        }
    })
    .await
}

pub fn routes(pool: Pool, views: ViewChanges) -> Router {
    Router::new()
        .route("/orders/{id}/view", get(get_view))
        .route("/analytics/summary", get(summary))
        .with_state(ViewState { pool, views })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ViewQuery {
    /// Answer once the view has at least this version (default 1).
    min_version: Option<i64>,
    /// How long to wait for `min_version`: whole seconds (`5s`, at most `30s`) or
    /// milliseconds (`250ms`, at most `30000ms`). Default: no wait, answer at once (404 if
    /// there is no view of the order yet, 408 if it is older than `min_version`).
    #[param(schema_with = wait_schema)]
    wait: Option<String>,
}

/// `wait`'s schema (with its description: utoipa drops the field's doc comment here).
fn wait_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(WAIT_PATTERN))
        .description(Some(
            "How long to wait for `min_version`: whole seconds (`5s`, at most `30s`) or \
             milliseconds (`250ms`, at most `30000ms`). Default: no wait, answer at once \
             (404 if there is no view of the order yet, 408 if it is older than `min_version`)",
        ))
        .build()
}

/// What `wait` takes, as the document declares it: whole seconds up to 30 (`0s`..`30s`) or
/// milliseconds up to 30,000 (`0ms`..`30000ms`), without leading zeros. [`parse_wait`]
/// reads exactly this, so a value the document allows is never refused and the other way
/// round.
pub const WAIT_PATTERN: &str =
    "^(?:(?:[0-9]|[12][0-9]|30)s|(?:[0-9]|[1-9][0-9]{1,3}|[12][0-9]{4}|30000)ms)$";

/// Reads a `wait` of [`WAIT_PATTERN`]'s form; more than [`MAX_WAIT`] is refused.
fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let refused = || {
        ApiError::BadRequest(format!(
            "wait: {text:?} is not a whole number of seconds (`s`) or milliseconds (`ms`) \
             up to {}s",
            MAX_WAIT.as_secs()
        ))
    };
    let (digits, unit) = match text.strip_suffix("ms") {
        Some(digits) => (digits, Duration::from_millis(1)),
        None => (
            text.strip_suffix('s').ok_or_else(refused)?,
            Duration::from_secs(1),
        ),
    };
    let well_formed = !digits.is_empty()
        && digits.len() <= 5
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !well_formed {
        return Err(refused());
    }
    let count: u32 = digits.parse().map_err(|_| refused())?;
    let wait = unit * count;
    if wait > MAX_WAIT {
        return Err(refused());
    }
    Ok(wait)
}

async fn load_view(pool: &Pool, order_id: Uuid) -> Result<Option<OrderView>, ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt_prepared(
            "SELECT order_id, user_id, status, step, items, amount_cents, reason, version, created_at, updated_at, projected_at
             FROM order_views WHERE order_id = $1",
            &[&order_id],
        )
        .await?;
    Ok(row.as_ref().map(view_of_row))
}

/// A view from a row of `order_views`' columns in their table order.
fn view_of_row(row: &tokio_postgres::Row) -> OrderView {
    OrderView {
        order_id: row.get(0),
        user_id: row.get(1),
        status: row.get(2),
        step: row.get(3),
        items: row.get(4),
        amount_cents: row.get(5),
        reason: row.get(6),
        version: row.get(7),
        created_at: row.get(8),
        updated_at: row.get(9),
        projected_at: row.get(10),
    }
}

/// How long after its id was issued an order's view may still be missing: far beyond the
/// projection lag of an overloaded system (tens of seconds), far below the distance from
/// now of a made-up id's time.
pub const VIEW_MAY_APPEAR_WITHIN: Duration = Duration::from_secs(600);

/// Whether a view of `order_id` may yet appear. Orders issues UUIDv7 ids, whose first 48
/// bits are the time of issue: an id of another version, or issued long ago or in the
/// future, names no order still on its way to the read model, so a long-poll for it would
/// hold a connection for its whole wait to answer what is known at once.
fn may_yet_appear(order_id: Uuid, now: SystemTime) -> bool {
    if order_id.get_version() != Some(uuid::Version::SortRand) {
        return false;
    }
    let Some(timestamp) = order_id.get_timestamp() else {
        return false;
    };
    let (seconds, nanos) = timestamp.to_unix();
    let issued = UNIX_EPOCH + Duration::new(seconds, nanos);
    // A minute of clock difference between the orders host and this one is tolerated.
    let skew = Duration::from_secs(60);
    match now.duration_since(issued) {
        Ok(age) => age <= VIEW_MAY_APPEAR_WITHIN,
        Err(ahead) => ahead.duration() <= skew,
    }
}

/// The read model's view of an order, once it reached `min_version` (long-poll up to
/// `wait`). This is how the consistency window is observed.
#[utoipa::path(get, path = "/api/orders/{id}/view", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id (UUID; anything else is not found)"), ViewQuery),
    responses((status = 200, body = OrderView),
              (status = 400, description = "`wait` or `min_version` is not of the declared form", body = ErrorBody),
              (status = 408, description = "The view did not reach `min_version` within the wait", body = ErrorBody),
              (status = 404, description = "No such order of the caller's; or, without a wait, no view of it yet; or, even with a wait, an id that is no order still on its way to the read model (orders' ids are UUIDv7: one of another version, or issued over 600 s ago or in the future, with no view)", body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(crate) async fn get_view(
    State(state): State<ViewState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ViewQuery>,
) -> Result<Json<OrderView>, ApiError> {
    let user_id = caller(&headers)?;
    let order_id =
        Uuid::parse_str(&id).map_err(|_| ApiError::NotFound(format!("no order {id}")))?;
    let wait = match &query.wait {
        Some(text) => parse_wait(text)?,
        None => Duration::ZERO,
    };
    let min_version = query.min_version.unwrap_or(1);
    let deadline = Instant::now() + wait;
    // Watch before looking, so a change between the look and the wait is not missed.
    let mut changes = state.views.watch(&order_id.to_string());
    // What this replica's projector handed over when it woke us; a database look otherwise.
    let mut handed: Option<Arc<OrderView>> = None;
    loop {
        let view = match handed.take() {
            Some(view) => Some(Arc::unwrap_or_clone(view)),
            None => load_view(&state.pool, order_id).await?,
        };
        match view {
            Some(view) if view.user_id != user_id => {
                return Err(ApiError::NotFound(format!("no order {order_id}")));
            }
            Some(view) if view.version >= min_version => return Ok(Json(view)),
            // Asked to answer at once: a view that is not there is not found. Within a wait
            // it may still appear (the order was acknowledged before it was projected),
            // unless the id cannot be that of an order still on its way.
            None if wait.is_zero() => {
                return Err(ApiError::NotFound(format!(
                    "no view of order {order_id} yet"
                )));
            }
            None if !may_yet_appear(order_id, SystemTime::now()) => {
                return Err(ApiError::NotFound(format!(
                    "no order {order_id}: orders' ids are UUIDv7 issued within the last {}s",
                    VIEW_MAY_APPEAR_WITHIN.as_secs()
                )));
            }
            _ => {}
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ApiError::WaitExpired(format!(
                "the view of order {order_id} did not reach version {min_version} within {wait:?}"
            )));
        }
        // Woken once this replica projected the version waited for, or look again after a
        // while anyway: another replica may have projected it.
        let poll = state.views.poll_interval();
        handed = tokio::time::timeout(remaining.min(poll), changes.reached(min_version))
            .await
            .ok()
            .flatten();
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub orders: i64,
    #[schema(value_type = Object)]
    pub by_status: serde_json::Value,
    pub revenue_cents: i64,
    /// Seconds between the newest applied event's time and its projection.
    pub projection_lag_seconds: f64,
}

/// Aggregates of the read model and its projection lag.
#[utoipa::path(get, path = "/api/analytics/summary", tag = "analytics", security(("bearer" = [])),
    responses((status = 200, body = Summary), (status = 401, body = ErrorBody)))]
pub(crate) async fn summary(
    State(state): State<ViewState>,
    headers: HeaderMap,
) -> Result<Json<Summary>, ApiError> {
    caller(&headers)?;
    let client = state.pool.get().await?;
    let rows = client
        .query_prepared(
            "SELECT status, sum(orders)::BIGINT, sum(amount_cents)::BIGINT FROM (
                 SELECT status, orders, amount_cents FROM order_totals
                 UNION ALL SELECT status, orders, amount_cents FROM order_total_deltas) totals
             GROUP BY status",
            &[],
        )
        .await?;
    let mut by_status = serde_json::Map::new();
    let mut orders = 0;
    let mut revenue = 0;
    for row in &rows {
        let (status, count, amount): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        orders += count;
        if status == "COMPLETED" {
            revenue = amount;
        }
        by_status.insert(status, serde_json::json!(count));
    }
    let lag: Option<f64> = client
        .query_one_prepared(
            "SELECT EXTRACT(EPOCH FROM (projected_at - updated_at))::FLOAT8 FROM order_views ORDER BY projected_at DESC LIMIT 1",
            &[],
        )
        .await
        .ok()
        .and_then(|row| row.get(0));
    Ok(Json(Summary {
        orders,
        by_status: serde_json::Value::Object(by_status),
        revenue_cents: revenue,
        projection_lag_seconds: lag.unwrap_or(0.0),
    }))
}

/// Applies `order.created` / `order.updated` to the view and the totals.
pub struct Projector {
    /// Where committed view changes are announced to this replica's long-polls.
    views: ViewChanges,
    lag: Gauge,
    /// The same lag for every event, so the last step of a saga (its projection) has a
    /// distribution beside the orders service's per-step one.
    lag_histogram: Histogram,
}

impl Projector {
    pub fn new(metrics: &Metrics, views: ViewChanges) -> Projector {
        let lag = metrics.register(Gauge::with_opts(Opts::new(
            "projection_lag_seconds",
            "Seconds from an order event's time to its projection into the read model",
        )));
        let lag_histogram = metrics.register(Histogram::with_opts(
            HistogramOpts::new(
                "projection_duration_seconds",
                "Seconds from an order event's time to its projection, per event",
            )
            .buckets(STEP_BUCKETS.to_vec()),
        ));
        Projector {
            views,
            lag,
            lag_histogram,
        }
    }
}

impl BatchHandler for Projector {
    /// Reads the batch's views with one statement, folds the events into them in memory in
    /// order (an event no newer than its view changes nothing), and writes the views and
    /// the totals' deltas with one statement each.
    async fn apply(&self, tx: &OutboxTx<'_>, events: &[&Envelope]) -> Result<(), HandleError> {
        let changes = decode_each(events, V1, |event| {
            if !matches!(
                event.event_type.as_str(),
                types::ORDER_CREATED | types::ORDER_UPDATED
            ) {
                return Err(HandleError::Poison(format!(
                    "analytics does not handle {}",
                    event.event_type
                )));
            }
            Ok(event.payload_as::<OrderChanged>()?)
        })?;
        let mut ids: Vec<Uuid> = changes.iter().map(|(_, order)| order.order_id).collect();
        ids.sort_unstable();
        ids.dedup();
        // Locked in id order, so two projectors (a rebalance) cannot deadlock on them.
        let rows = tx
            .query_prepared(
                "SELECT order_id, status, version, amount_cents FROM order_views
                 WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
                &[&ids],
            )
            .await?;
        let mut views: HashMap<Uuid, ViewTotals> = rows
            .iter()
            .map(|row| {
                let state = ViewTotals {
                    status: row.get(1),
                    version: row.get(2),
                    amount_cents: row.get::<_, Option<i64>>(3).unwrap_or(0),
                };
                (row.get(0), state)
            })
            .collect();
        let mut newest: HashMap<Uuid, &OrderChanged> = HashMap::new();
        let mut totals = TotalDeltas::default();
        for (event, order) in &changes {
            let new = ViewTotals {
                status: order.status.clone(),
                version: order.version,
                amount_cents: order.amount_cents.unwrap_or(0),
            };
            let old = views.get(&order.order_id);
            if old.is_some_and(|old| old.version >= order.version) {
                continue; // an older or repeated state: the view is already past it
            }
            totals.change(old, &new);
            views.insert(order.order_id, new);
            newest.insert(order.order_id, order);
            self.observe_lag(event);
        }
        let written = write_views(tx, newest.into_values()).await?;
        totals.write(tx).await?;
        // Each view can be seen at its version once committed: then wake its waiters
        // with the view as written (an older version than one announced wakes nobody).
        let views = self.views.clone();
        tx.on_commit(move || {
            for view in written {
                views.announce(&view.order_id.to_string(), view.version, Arc::new(view));
            }
        });
        Ok(())
    }

    fn ownership(&self) -> Option<Ownership> {
        Some(self.views.ownership())
    }
}

impl Projector {
    /// Sets the projection lag from `event`'s time to now.
    fn observe_lag(&self, event: &Envelope) {
        let lag = (Utc::now() - event.occurred_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        self.lag.set(lag.max(0.0));
        self.lag_histogram.observe(lag.max(0.0));
    }
}

/// What the totals need of a view: its status, version and amount.
struct ViewTotals {
    status: String,
    version: i64,
    amount_cents: i64,
}

/// Changes to the totals by status, summed over a batch: (orders, amount) per status.
#[derive(Default)]
struct TotalDeltas(HashMap<String, (i64, i64)>);

impl TotalDeltas {
    /// A view moving from `old` (none: a new order) to `new`.
    fn change(&mut self, old: Option<&ViewTotals>, new: &ViewTotals) {
        if let Some(old) = old {
            let entry = self.0.entry(old.status.clone()).or_default();
            entry.0 -= 1;
            entry.1 -= old.amount_cents;
        }
        let entry = self.0.entry(new.status.clone()).or_default();
        entry.0 += 1;
        entry.1 += new.amount_cents;
    }

    /// Appends the deltas that are not zero, in one statement. Totals change by appended
    /// deltas folded in later (`fold_totals`): updating one row per status made that row
    /// the lock every projection queued on.
    async fn write(self, tx: &OutboxTx<'_>) -> Result<(), HandleError> {
        let (statuses, (counts, amounts)): (Vec<String>, (Vec<i64>, Vec<i64>)) = self
            .0
            .into_iter()
            .filter(|(_, (orders, amount))| *orders != 0 || *amount != 0)
            .unzip();
        if !statuses.is_empty() {
            tx.execute_prepared(
                "INSERT INTO order_total_deltas (status, orders, amount_cents)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
                &[&statuses, &counts, &amounts],
            )
            .await?;
        }
        Ok(())
    }
}

/// Writes the newest state of each order of a batch into its view, in one statement, and
/// returns the views as written.
async fn write_views<'a>(
    tx: &OutboxTx<'_>,
    orders: impl Iterator<Item = &'a OrderChanged>,
) -> Result<Vec<OrderView>, HandleError> {
    let mut columns = ViewColumns::default();
    for order in orders {
        let items =
            serde_json::to_value(&order.items).map_err(|e| HandleError::Poison(e.to_string()))?;
        columns.push(order, items);
    }
    if columns.order_id.is_empty() {
        return Ok(Vec::new());
    }
    let c = &columns;
    let rows = tx.query_prepared(
        "INSERT INTO order_views (order_id, user_id, status, step, items, amount_cents, reason, version, created_at, updated_at, projected_at)
         SELECT *, now() FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::bigint[], $7::text[], $8::bigint[], $9::timestamptz[], $10::timestamptz[])
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, step = EXCLUDED.step, items = EXCLUDED.items,
             amount_cents = EXCLUDED.amount_cents, reason = EXCLUDED.reason, version = EXCLUDED.version,
             updated_at = EXCLUDED.updated_at, projected_at = now()
         RETURNING order_id, user_id, status, step, items, amount_cents, reason, version, created_at, updated_at, projected_at",
        &[
            &c.order_id, &c.user_id, &c.status, &c.step, &c.items, &c.amount_cents, &c.reason,
            &c.version, &c.created_at, &c.updated_at,
        ],
    )
    .await?;
    Ok(rows.iter().map(view_of_row).collect())
}

/// The view rows of one statement, column by column (`unnest` takes one array per column).
#[derive(Default)]
struct ViewColumns {
    order_id: Vec<Uuid>,
    user_id: Vec<Uuid>,
    status: Vec<String>,
    step: Vec<String>,
    items: Vec<serde_json::Value>,
    amount_cents: Vec<Option<i64>>,
    reason: Vec<Option<String>>,
    version: Vec<i64>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl ViewColumns {
    fn push(&mut self, order: &OrderChanged, items: serde_json::Value) {
        self.order_id.push(order.order_id);
        self.user_id.push(order.user_id);
        self.status.push(order.status.clone());
        self.step.push(order.step.clone());
        self.items.push(items);
        self.amount_cents.push(order.amount_cents);
        self.reason.push(order.reason.clone());
        self.version.push(order.version);
        self.created_at.push(order.created_at);
        self.updated_at.push(order.updated_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_one_orders_moves_nets_to_its_last_status() {
        let state = |status: &str, version, amount_cents| ViewTotals {
            status: status.to_string(),
            version,
            amount_cents,
        };
        let mut totals = TotalDeltas::default();
        let (created, reserved, completed) = (
            state("PENDING", 1, 0),
            state("PENDING", 2, 500),
            state("COMPLETED", 3, 500),
        );
        totals.change(None, &created);
        totals.change(Some(&created), &reserved);
        totals.change(Some(&reserved), &completed);
        assert_eq!(totals.0.get("PENDING"), Some(&(0, 0)));
        assert_eq!(totals.0.get("COMPLETED"), Some(&(1, 500)));
    }

    #[test]
    fn only_a_recent_uuid_v7_may_yet_become_a_view() {
        let now = SystemTime::now();
        let at = |time: SystemTime| {
            let since = time.duration_since(UNIX_EPOCH).expect("after 1970");
            let stamp =
                uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
            Uuid::new_v7(stamp)
        };
        assert!(may_yet_appear(Uuid::now_v7(), now));
        assert!(may_yet_appear(at(now - Duration::from_secs(590)), now));
        assert!(!may_yet_appear(at(now - Duration::from_secs(610)), now));
        assert!(may_yet_appear(at(now + Duration::from_secs(30)), now));
        assert!(!may_yet_appear(at(now + Duration::from_secs(90)), now));
        assert!(!may_yet_appear(Uuid::new_v4(), now));
        assert!(!may_yet_appear(Uuid::nil(), now));
    }

    #[test]
    fn wait_takes_exactly_the_forms_its_pattern_declares() {
        for (text, millis) in [
            ("0s", 0),
            ("5s", 5_000),
            ("30s", 30_000),
            ("0ms", 0),
            ("250ms", 250),
            ("29999ms", 29_999),
            ("30000ms", 30_000),
        ] {
            let wait = parse_wait(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(wait, Duration::from_millis(millis), "{text}");
        }
        for text in [
            "", "s", "ms", "31s", "30001ms", "05s", "00ms", "1.5s", "1m", "5 s", " 5s", "5s\n",
            "-1s", "+1s", "100000ms", "5S", "5",
        ] {
            assert!(parse_wait(text).is_err(), "{text:?} is refused");
        }
    }
}
