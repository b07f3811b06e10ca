//! Inventory: event-sourced stock; it never oversells.
//!
//! Each product's stock is an append-only stream in `stock_events` (restocked, reserved,
//! released), numbered by `version`. `stock_levels` holds the head of each stream (version
//! and available quantity), updated in the same transaction as the append. A command locks
//! the heads it reads (`FOR UPDATE`, in product id order, so two commands never wait on each
//! other in a cycle): commands on one product queue for its row instead of all reading the
//! same version and all but one failing and retrying, which is what a hot product's orders
//! mostly did. The update still applies only if the version is the one read (a concurrent
//! writer makes it touch no row, and the command is retried from a fresh read), and
//! `available >= 0` is a CHECK constraint: two more lines of defence. [`audit`] re-derives
//! every level from the events.
//!
//! Every command is applied by [`batch`]: under a backlog the consumer hands inventory a
//! batch of commands, applied as a whole (its products' heads locked once, in id order, the
//! commands decided in memory in order, and everything written with a statement per table);
//! a single command is a batch of one, so there is one place that decides.
//!
//! The saga talks to it over Kafka: `inventory.reserve` reserves all items of an order or
//! none (replying with the order's price, since inventory owns the catalogue), and
//! `inventory.release` gives a reservation back, once.

use crate::platform::outbox::OutboxTx;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderName;
use axum::routing::get;
use axum::Router;
use deadpool_postgres::Pool;
use serde::Serialize;

use super::messages;

use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{BatchHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, ErrorBody, Json};
use crate::platform::migrate::Migration;
use crate::platform::sql::Prepared;

mod batch;

pub const NAME: &str = "inventory";

pub const MIGRATIONS: &[Migration] = &Migration::with_event_tables(
    "products and stock",
    "
CREATE TABLE products (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE stock_events (
    product_id  BIGINT NOT NULL REFERENCES products (id),
    version     BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    quantity    INT NOT NULL,
    order_id    UUID,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, version)
);
CREATE TABLE stock_levels (
    product_id BIGINT PRIMARY KEY REFERENCES products (id),
    version    BIGINT NOT NULL,
    available  INT NOT NULL CHECK (available >= 0)
);
CREATE TABLE reservations (
    order_id   UUID NOT NULL,
    product_id BIGINT NOT NULL,
    quantity   INT NOT NULL,
    released   BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (order_id, product_id)
);",
);

/// Topics inventory reads and writes.
pub const TOPICS: &[&str] = &[messages::INVENTORY_COMMANDS, messages::INVENTORY_REPLIES];

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
    pub available: i32,
    /// Version of the product's stock stream.
    pub version: i64,
}

/// `GET /products`, `GET /products/{id}`.
/// Starts inventory: its database and outbox relay, and its consumer of the saga's commands.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let platform = ctx.platform(MIGRATIONS, TOPICS).await?;
    ctx.relay(&platform);
    ctx.consume(
        &platform,
        "inventory-commands",
        &[messages::INVENTORY_COMMANDS],
        CommandHandler,
    )?;
    Ok(routes(platform.pool.clone()))
}

pub fn routes(pool: Pool) -> Router {
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{id}", get(get_product))
        .with_state(pool)
}

const PRODUCT_COLUMNS: &str =
    "SELECT p.id, p.name, p.price_cents, s.available, s.version FROM products p JOIN stock_levels s ON s.product_id = p.id";

fn product(row: &tokio_postgres::Row) -> Product {
    Product {
        id: row.get(0),
        name: row.get(1),
        price_cents: row.get(2),
        available: row.get(3),
        version: row.get(4),
    }
}

type CatalogueFreshness = [(HeaderName, &'static str); 1];

/// Catalogue reads may be served from a cache for a second: the stock shown can be that
/// old, while a reservation always checks the database.
const CATALOGUE_FRESHNESS: CatalogueFreshness = [(CACHE_CONTROL, "public, max-age=1")];

/// The catalogue with prices and available stock.
#[utoipa::path(get, path = "/api/products", tag = "products", responses((status = 200, body = Vec<Product>)))]
pub(crate) async fn list_products(
    State(pool): State<Pool>,
) -> Result<(CatalogueFreshness, Json<Vec<Product>>), ApiError> {
    let client = pool.get().await?;
    let rows = client
        .query_prepared(&format!("{PRODUCT_COLUMNS} ORDER BY p.id LIMIT 1000"), &[])
        .await?;
    Ok((
        CATALOGUE_FRESHNESS,
        Json(rows.iter().map(product).collect()),
    ))
}

/// One product with its price and available stock.
#[utoipa::path(get, path = "/api/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody), (status = 400, description = "Invalid input; the message names the field", body = ErrorBody)))]
pub(crate) async fn get_product(
    State(pool): State<Pool>,
    Path(id): Path<String>,
) -> Result<(CatalogueFreshness, Json<Product>), ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("product id {id:?} is not a number")))?;
    let client = pool.get().await?;
    let row = client
        .query_opt_prepared(&format!("{PRODUCT_COLUMNS} WHERE p.id = $1"), &[&id])
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no product {id}")))?;
    Ok((CATALOGUE_FRESHNESS, Json(product(&row))))
}

/// Creates products `1..=count` priced 1.00 to 100.00 with `stock` each, unless present.
pub async fn seed(pool: &Pool, count: i64, stock: i32) -> Result<u64, ApiError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let created = tx
        .execute_prepared(
            "INSERT INTO products (id, name, price_cents)
             SELECT n, 'Product ' || n, 100 + (n * 7919) % 9901 FROM generate_series(1, $1::BIGINT) AS n
             ON CONFLICT (id) DO NOTHING",
            &[&count],
        )
        .await?;
    tx.execute_prepared(
        "INSERT INTO stock_events (product_id, version, kind, quantity)
         SELECT id, 1, 'restocked', $1 FROM products WHERE id NOT IN (SELECT product_id FROM stock_levels)",
        &[&stock],
    )
    .await?;
    tx.execute_prepared(
        "INSERT INTO stock_levels (product_id, version, available)
         SELECT id, 1, $1 FROM products WHERE id NOT IN (SELECT product_id FROM stock_levels)",
        &[&stock],
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}

/// Adds one product with `stock` units, unless a product with that id exists.
pub async fn add_product(
    pool: &Pool,
    id: i64,
    name: &str,
    price_cents: i64,
    stock: i32,
) -> Result<bool, ApiError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let created = tx
        .execute_prepared(
            "INSERT INTO products (id, name, price_cents) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            &[&id, &name, &price_cents],
        )
        .await?;
    if created == 1 {
        tx.execute_prepared(
            "INSERT INTO stock_events (product_id, version, kind, quantity) VALUES ($1, 1, 'restocked', $2)",
            &[&id, &stock],
        )
        .await?;
        tx.execute_prepared(
            "INSERT INTO stock_levels (product_id, version, available) VALUES ($1, 1, $2)",
            &[&id, &stock],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(created == 1)
}

/// A stock level that does not equal the fold of its events.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFinding {
    pub product_id: i64,
    pub level: i32,
    pub derived: i64,
}

/// Re-derives every product's stock from its events and lists the disagreements.
pub async fn audit(pool: &Pool) -> Result<Vec<AuditFinding>, ApiError> {
    let client = pool.get().await?;
    let rows = client
        .query_prepared(
            "SELECT s.product_id, s.available, COALESCE(SUM(e.quantity), 0)
             FROM stock_levels s LEFT JOIN stock_events e ON e.product_id = s.product_id
             GROUP BY s.product_id, s.available
             HAVING s.available <> COALESCE(SUM(e.quantity), 0)",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditFinding {
            product_id: r.get(0),
            level: r.get(1),
            derived: r.get(2),
        })
        .collect())
}

/// Handles `inventory.reserve` and `inventory.release`.
pub struct CommandHandler;

impl BatchHandler for CommandHandler {
    /// Every batch locks the stock rows of the products it names, whatever its partitions,
    /// so parallel workers only queued on each other's locks (a lock convoy: at 400
    /// checkouts/s each waited 19 ms on average for the stock read, and inventory finished
    /// 13 reservations per transaction). One worker instead takes, each time, all that
    /// arrived during its last commit.
    const WORKERS: usize = 1;
    const BATCH: usize = 128;

    /// Reservations of different orders write the same products' rows: a batch is applied
    /// as a whole, its products locked once, in id order ([`batch`]).
    async fn apply(&self, tx: &OutboxTx<'_>, events: &[&Envelope]) -> Result<(), HandleError> {
        batch::apply(tx, events).await
    }
}

async fn reply<T: Serialize>(
    tx: &OutboxTx<'_>,
    request: &Envelope,
    event_type: &str,
    payload: &T,
) -> Result<(), HandleError> {
    messages::reply(
        tx,
        messages::INVENTORY_REPLIES,
        request,
        event_type,
        payload,
    )
    .await
}
