//! Document 002's "CQRS improves read performance by 10-15x for complex query patterns",
//! measured on the reference system: the family `cqrs` of the claims suite.
//!
//! The read side of an order is one row of analytics' read model (`order_views`, the
//! query the order view endpoint runs). Without CQRS, the same view is composed from
//! the write side: the order (orders), its payment (payments), its shipment (shipping)
//! and its reservations joined with the products (inventory), each from its own
//! service's database, fanned out at once and merged in memory, as an API composer
//! would. [`compare`] runs both against the same orders (the latest the suite's earlier
//! families placed) at the same concurrency and for the same time, one side after the
//! other so that they do not share the CPU, and records them as two endpoints of
//! ordinary results ([`READ_MODEL`], [`WRITE_SIDE`]); reports' `cqrs.read_speedup` is
//! the ratio of their mean latencies. The queries go to PostgreSQL directly: HTTP in
//! front of both would add the same cost to each and only shrink the ratio.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant, SystemTime},
};

use faultline_reports::metric::{CQRS_READ_MODEL as READ_MODEL, CQRS_WRITE_SIDE as WRITE_SIDE};
use faultline_results::{
    histogram::record, Bucket, ErrorClass, HttpVersion, LatencyOrigin, Machine, Results, RunInfo,
    RunMetadata, RunRecord, TargetSchedule,
};
use faultline_system::services::ServiceKind;
use tokio_postgres::{Client, NoTls, Statement};

/// Orders the comparison reads, round robin: the latest the read model holds.
const ORDERS: i64 = 500;

/// How the comparison runs.
#[derive(Debug, Clone, Copy)]
pub struct CqrsSpec {
    /// Views read at once, on each side.
    pub concurrency: usize,
    /// How long each side reads.
    pub duration: Duration,
}

/// A comparison that could not run.
#[derive(Debug, thiserror::Error)]
pub enum CqrsError {
    #[error("the system has no database for {0}")]
    NoDatabase(&'static str),
    #[error("the {database} database: {source}")]
    Database {
        database: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("no order in the read model: the cqrs family reads the orders that the families before it placed")]
    NoOrders,
    #[error("the results: {0}")]
    Results(String),
}

/// The queries of one side, prepared on its own connections.
enum Side {
    ReadModel(Client, Statement),
    /// orders, payments, shipping, inventory.
    WriteSide(Vec<(Client, Statement)>),
}

const VIEW_SQL: &str = "SELECT order_id, user_id, status, step, items, amount_cents, reason, version, created_at, updated_at, projected_at FROM order_views WHERE order_id = $1::text::uuid";
/// The write side's parts of the same view, by service.
const PARTS: [(ServiceKind, &str, &str); 4] = [
    (ServiceKind::Orders, "orders", "SELECT id, user_id, status, step, items, amount_cents, reason, version, created_at, updated_at FROM orders WHERE id = $1::text::uuid"),
    (ServiceKind::Payments, "payments", "SELECT amount_cents, status, reason, updated_at FROM payments WHERE order_id = $1::text::uuid"),
    (ServiceKind::Shipping, "shipping", "SELECT status, reason, created_at FROM shipments WHERE order_id = $1::text::uuid"),
    (ServiceKind::Inventory, "inventory", "SELECT r.product_id, r.quantity, r.released, p.name, p.price_cents FROM reservations r JOIN products p ON p.id = r.product_id WHERE r.order_id = $1::text::uuid ORDER BY r.product_id"),
];

async fn connect(
    urls: &HashMap<ServiceKind, String>,
    kind: ServiceKind,
    database: &'static str,
    sql: &str,
) -> Result<(Client, Statement), CqrsError> {
    let failed = |source| CqrsError::Database { database, source };
    let url = urls.get(&kind).ok_or(CqrsError::NoDatabase(database))?;
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(failed)?;
    // The connection ends with its client, at the end of the comparison.
    tokio::spawn(connection);
    let statement = client.prepare(sql).await.map_err(failed)?;
    Ok((client, statement))
}

impl Side {
    async fn open(
        urls: &HashMap<ServiceKind, String>,
        read_model: bool,
    ) -> Result<Side, CqrsError> {
        if read_model {
            let (client, statement) =
                connect(urls, ServiceKind::Analytics, "analytics", VIEW_SQL).await?;
            return Ok(Side::ReadModel(client, statement));
        }
        let mut parts = Vec::new();
        for (kind, database, sql) in PARTS {
            parts.push(connect(urls, kind, database, sql).await?);
        }
        Ok(Side::WriteSide(parts))
    }

    /// Reads one order's view; `false` when a query failed.
    async fn read(&self, order: &str) -> bool {
        match self {
            Side::ReadModel(client, statement) => {
                client.query_opt(statement, &[&order]).await.is_ok()
            }
            Side::WriteSide(parts) => {
                let [orders, payments, shipping, inventory] = &parts[..] else {
                    return false;
                };
                // Fanned out at once: the view waits for the slowest part, not the sum.
                let answers = tokio::join!(
                    part(orders, order),
                    part(payments, order),
                    part(shipping, order),
                    part(inventory, order)
                );
                // The merge a composer does: every part's rows into one view.
                let mut view: Vec<tokio_postgres::Row> = Vec::new();
                for answer in [answers.0, answers.1, answers.2, answers.3] {
                    match answer {
                        Ok(rows) => view.extend(rows),
                        Err(_) => return false,
                    }
                }
                !view.is_empty()
            }
        }
    }
}

/// One part of a composed view: its service's rows for the order.
async fn part(
    (client, statement): &(Client, Statement),
    order: &str,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    client.query(statement, &[&order]).await
}

/// Both sides, one after the other, into results with one endpoint each.
pub async fn compare(
    database_urls: &HashMap<ServiceKind, String>,
    spec: CqrsSpec,
    run_info: RunInfo,
) -> Result<Results, CqrsError> {
    let (analytics, latest) = connect(
        database_urls,
        ServiceKind::Analytics,
        "analytics",
        "SELECT order_id::text FROM order_views ORDER BY updated_at DESC LIMIT $1",
    )
    .await?;
    let orders: Vec<String> = analytics
        .query(&latest, &[&ORDERS])
        .await
        .map_err(|source| CqrsError::Database {
            database: "analytics",
            source,
        })?
        .iter()
        .filter_map(|row| row.try_get::<_, String>(0).ok())
        .collect();
    if orders.is_empty() {
        return Err(CqrsError::NoOrders);
    }
    let started_at = SystemTime::now();
    let mut collected: BTreeMap<(usize, u64), Bucket> = BTreeMap::new();
    for (endpoint, read_model) in [(0, true), (1, false)] {
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..spec.concurrency {
            let side = Side::open(database_urls, read_model).await?;
            let orders = orders.clone();
            let duration = spec.duration;
            workers.spawn(async move {
                let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
                let until = Instant::now() + duration;
                let mut next = worker;
                while Instant::now() < until {
                    let order = &orders[next % orders.len()];
                    next += spec.concurrency;
                    let sent = Instant::now();
                    let ok = side.read(order).await;
                    let second = unix_second(SystemTime::now());
                    let bucket = buckets.entry(second).or_default();
                    bucket.requests += 1;
                    if ok {
                        bucket.ok += 1;
                        record(&mut bucket.latency, sent.elapsed());
                    } else {
                        // The database answered an error: a server-side failure.
                        bucket.errors.add(ErrorClass::Http5xx);
                    }
                }
                buckets
            });
        }
        while let Some(joined) = workers.join_next().await {
            for (second, bucket) in joined.unwrap_or_default() {
                collected
                    .entry((endpoint, second))
                    .or_default()
                    .merge(&bucket);
            }
        }
    }
    let duration = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or_default();
    Results::build(RunRecord {
        metadata: RunMetadata {
            scenario: Some("claims-cqrs".into()),
            target:
                "PostgreSQL: analytics' read model against orders, payments, shipping and inventory"
                    .into(),
            started_at: humantime::format_rfc3339_millis(started_at).to_string(),
            duration_secs: duration.as_secs_f64(),
            machine: Machine::this(),
            faultline_version: run_info.faultline_version.unwrap_or_default(),
            git_commit: run_info.git_commit,
            http_version: HttpVersion::Http1,
            connections: spec.concurrency as u64,
            streams: 1,
            timeout_ms: 0,
            latency_origin: LatencyOrigin::IntendedSendTime,
            workers: 1,
        },
        schedule: TargetSchedule::closed(spec.duration * 2),
        endpoint_names: &[READ_MODEL.to_string(), WRITE_SIDE.to_string()],
        collected: &collected,
        // A closed loop sends each query when the last one is answered: never late.
        late_threshold_ms: 1000.0,
        max_send_delay_ms: 5000.0,
    })
    .map_err(|error| CqrsError::Results(error.to_string()))
}

fn unix_second(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
