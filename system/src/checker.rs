//! The consistency checker: after a run, is everything the system acknowledged really there,
//! applied once, and agreed on by every service? ("Nothing lost" in DESIGN.md.)
//!
//! A load run keeps a write ledger: the orders the system acknowledged (with their ids) and
//! the ones whose fate the client could not know (only their idempotency keys). [`check`]
//! holds that ledger against the services' own PostgreSQL databases, not their APIs, so a
//! service that answers wrongly cannot hide what it stored:
//!
//! - **lost**: an acknowledged order that the orders database does not have;
//! - **duplicated**: something applied twice — more than one order for one idempotency key,
//!   more than one captured payment for an order, stock reserved or released twice for the
//!   same order and product;
//! - **inconsistent**: a saga not in a terminal state by the settle deadline, a read-model
//!   view (analytics `order_views`) that disagrees with the write side, a completed order
//!   without its captured payment or its stock deduction, a cancelled order with a charge
//!   or a reservation left, and products whose stock level disagrees with its events
//!   ([`inventory::audit`]) or went below zero.
//!
//! Each entity (an order, an idempotency key, a product) is counted at most once per
//! category. The checker waits (polls) first, because after a drain sagas and projections
//! may still be moving; once an order is terminal it never changes again, and neither does
//! its view once it has caught up, so only the orders not settled yet are polled again.
//! Every query takes a whole batch of ids (`= ANY($1)`), so a run of tens of thousands of
//! orders costs a few round trips per poll, not one per order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use crate::platform::migrate::{self, DbError};
use crate::services::messages::OrderItem;
use crate::services::ServiceKind;
use crate::services::{analytics, inventory, orders, payments};

/// One write of the run's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOrder {
    /// The id the system answered with (acknowledged writes).
    pub order_id: Option<Uuid>,
    /// The `Idempotency-Key` the order was placed with.
    pub idempotency_key: String,
    /// Whether the system acknowledged the write; if not, it may or may not exist.
    pub acknowledged: bool,
}

/// How long to wait for the system to settle, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSpec {
    pub settle_deadline: Duration,
    pub poll_interval: Duration,
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec {
            settle_deadline: Duration::from_secs(120),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Orders checked: every acknowledged one, and every indeterminate one that was written.
    pub checked: u64,
    /// Acknowledged orders missing from the orders database.
    pub lost: u64,
    /// Entities applied more than once.
    pub duplicated: u64,
    /// Entities whose state disagrees between services, or never settled.
    pub inconsistent: u64,
    /// Seconds from the start of the check until every checked order was terminal and its
    /// view agreed; `None` if that never held before the deadline.
    pub settle_secs: Option<f64>,
    /// What was found, with a few examples each (not every entity), and the indeterminate
    /// writes' fate.
    pub notes: Vec<String>,
}

impl CheckReport {
    /// Nothing lost, duplicated or inconsistent.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.inconsistent == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    #[error("no database URL for the {0} service")]
    NoDatabase(&'static str),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("connecting to the {service} database: {source}")]
    Connect {
        service: &'static str,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("querying the {service} database: {source}")]
    Query {
        service: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("order {order_id} has items the checker cannot read: {reason}")]
    Items { order_id: Uuid, reason: String },
    #[error("auditing inventory: {0}")]
    Audit(String),
}

/// Ids per query: large enough that a big run costs few round trips, small enough to keep
/// one statement's parameters and result modest.
const BATCH: usize = 10_000;
/// Examples kept per kind of finding.
const EXAMPLES: usize = 3;

const COMPLETED: &str = "COMPLETED";
const CANCELLED: &str = "CANCELLED";

/// Checks the ledger's orders against the services' databases; see the module docs.
pub async fn check(
    database_urls: &HashMap<ServiceKind, String>,
    orders: &[LedgerOrder],
    spec: &CheckSpec,
) -> Result<CheckReport, CheckerError> {
    let started = Instant::now();
    let db = Databases::connect(database_urls)?;
    let mut findings = Findings::default();

    let resolved = resolve(&db.orders, orders, &mut findings).await?;
    let (settled, settle_secs) = settle(&db, &resolved.items, spec, started, &mut findings).await?;
    check_payments(&db.payments, &settled, &mut findings).await?;
    check_stock_of_orders(&db.inventory, &settled, &resolved.items, &mut findings).await?;
    check_stock_levels(&db.inventory, &mut findings).await?;

    let mut notes = Vec::new();
    if resolved.indeterminate > 0 {
        notes.push(format!(
            "{} indeterminate writes: {} were written and are checked, {} were never written",
            resolved.indeterminate,
            resolved.indeterminate - resolved.never_written,
            resolved.never_written
        ));
    }
    notes.extend(findings.notes());
    Ok(CheckReport {
        checked: (resolved.items.len() + findings.lost.len()) as u64,
        lost: findings.lost.len() as u64,
        duplicated: findings.duplicated.len() as u64,
        inconsistent: findings.inconsistent.len() as u64,
        settle_secs,
        notes,
    })
}

struct Databases {
    orders: Pool,
    payments: Pool,
    inventory: Pool,
    analytics: Pool,
}

impl Databases {
    fn connect(urls: &HashMap<ServiceKind, String>) -> Result<Databases, CheckerError> {
        let pool = |kind: ServiceKind| -> Result<Pool, CheckerError> {
            let url = urls
                .get(&kind)
                .ok_or(CheckerError::NoDatabase(kind.name()))?;
            // Two connections: the orders and view polls run side by side.
            Ok(migrate::pool(url, 2)?)
        };
        Ok(Databases {
            orders: pool(ServiceKind::Orders)?,
            payments: pool(ServiceKind::Payments)?,
            inventory: pool(ServiceKind::Inventory)?,
            analytics: pool(ServiceKind::Analytics)?,
        })
    }
}

/// Runs `sql` once per batch of `ids` (its `$1`) and gathers the rows.
async fn query_batched<T>(
    pool: &Pool,
    service: &'static str,
    sql: &str,
    ids: &[T],
) -> Result<Vec<tokio_postgres::Row>, CheckerError>
where
    T: tokio_postgres::types::ToSql + Sync,
{
    let client = pool
        .get()
        .await
        .map_err(|source| CheckerError::Connect { service, source })?;
    let mut rows = Vec::new();
    for batch in ids.chunks(BATCH) {
        let batch: Vec<&T> = batch.iter().collect();
        rows.extend(
            client
                .query(sql, &[&batch])
                .await
                .map_err(|source| CheckerError::Query { service, source })?,
        );
    }
    Ok(rows)
}

/// Something the checker counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entity {
    Order(Uuid),
    Key(String),
    Product(i64),
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Order(id) => write!(f, "order {id}"),
            Entity::Key(key) => write!(f, "idempotency key {key:?}"),
            Entity::Product(id) => write!(f, "product {id}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    Lost,
    Duplicated,
    Inconsistent,
}

/// The entities found in each category, and per kind of finding its count and examples.
#[derive(Default)]
struct Findings {
    lost: HashSet<Entity>,
    duplicated: HashSet<Entity>,
    inconsistent: HashSet<Entity>,
    /// Per kind of finding, the entities it was found in and the first few examples.
    kinds: BTreeMap<(Category, &'static str), Kind>,
}

/// One kind of finding: the entities it was found in, and the first few examples.
#[derive(Default)]
struct Kind {
    entities: HashSet<Entity>,
    examples: Vec<String>,
}

impl Findings {
    fn add(&mut self, category: Category, what: &'static str, entity: Entity, detail: String) {
        let set = match category {
            Category::Lost => &mut self.lost,
            Category::Duplicated => &mut self.duplicated,
            Category::Inconsistent => &mut self.inconsistent,
        };
        set.insert(entity.clone());
        let kind = self.kinds.entry((category, what)).or_default();
        if kind.entities.insert(entity.clone()) && kind.examples.len() < EXAMPLES {
            kind.examples.push(if detail.is_empty() {
                entity.to_string()
            } else {
                format!("{entity} ({detail})")
            });
        }
    }

    fn notes(&self) -> Vec<String> {
        self.kinds
            .iter()
            .map(|((category, what), Kind { entities, examples })| {
                let count = entities.len();
                let category = match category {
                    Category::Lost => "lost",
                    Category::Duplicated => "duplicated",
                    Category::Inconsistent => "inconsistent",
                };
                let more = if count > examples.len() {
                    format!("; {} more", count - examples.len())
                } else {
                    String::new()
                };
                format!(
                    "{category}: {what}: {count}, e.g. {}{more}",
                    examples.join("; ")
                )
            })
            .collect()
    }
}

/// The orders of the ledger found in the orders database, with their items.
struct Resolved {
    items: HashMap<Uuid, Vec<OrderItem>>,
    indeterminate: u64,
    never_written: u64,
}

fn parse_items(order_id: Uuid, items: serde_json::Value) -> Result<Vec<OrderItem>, CheckerError> {
    serde_json::from_value(items).map_err(|e| CheckerError::Items {
        order_id,
        reason: e.to_string(),
    })
}

/// Looks the ledger's orders up by id and by idempotency key: missing acknowledged ones are
/// lost, and a key with more than one order was applied twice.
async fn resolve(
    pool: &Pool,
    ledger: &[LedgerOrder],
    findings: &mut Findings,
) -> Result<Resolved, CheckerError> {
    let ids: Vec<Uuid> = {
        let set: HashSet<Uuid> = ledger.iter().filter_map(|o| o.order_id).collect();
        set.into_iter().collect()
    };
    let keys: Vec<String> = {
        let set: HashSet<&str> = ledger.iter().map(|o| o.idempotency_key.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    };
    let mut found: HashMap<Uuid, Vec<OrderItem>> = HashMap::new();
    for row in query_batched(
        pool,
        orders::NAME,
        "SELECT id, items FROM orders WHERE id = ANY($1)",
        &ids,
    )
    .await?
    {
        let id: Uuid = row.get(0);
        found.insert(id, parse_items(id, row.get(1))?);
    }
    // By key: (user_id, idempotency_key) is indexed, the key alone is not, so join the keys
    // as a set rather than probing one by one. Ledger keys are random (loadgen draws 128
    // bits), so two orders under one key means the write was applied twice.
    let mut by_key: HashMap<String, Vec<(Uuid, serde_json::Value)>> = HashMap::new();
    for row in query_batched(
        pool,
        orders::NAME,
        "SELECT o.idempotency_key, o.id, o.items FROM orders o
         JOIN unnest($1::TEXT[]) AS k (key) ON o.idempotency_key = k.key",
        &keys,
    )
    .await?
    {
        by_key
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }

    let mut items = HashMap::new();
    let mut indeterminate = HashSet::new();
    let mut never_written = HashSet::new();
    for order in ledger {
        let under_key = by_key
            .get(&order.idempotency_key)
            .map_or(&[][..], Vec::as_slice);
        if under_key.len() > 1 {
            let ids: Vec<String> = under_key.iter().map(|(id, _)| id.to_string()).collect();
            findings.add(
                Category::Duplicated,
                "orders under one idempotency key",
                Entity::Key(order.idempotency_key.clone()),
                ids.join(", "),
            );
        }
        if !order.acknowledged {
            indeterminate.insert(order.idempotency_key.as_str());
        }
        match order.order_id {
            Some(id) => match found.get(&id) {
                Some(order_items) => {
                    items.insert(id, order_items.clone());
                }
                None => findings.add(
                    Category::Lost,
                    "acknowledged orders missing from the orders database",
                    Entity::Order(id),
                    String::new(),
                ),
            },
            None if under_key.is_empty() => {
                if order.acknowledged {
                    findings.add(
                        Category::Lost,
                        "acknowledged orders (by key) missing from the orders database",
                        Entity::Key(order.idempotency_key.clone()),
                        String::new(),
                    );
                } else {
                    never_written.insert(order.idempotency_key.as_str());
                }
            }
            None => {
                for (id, order_items) in under_key {
                    items.insert(*id, parse_items(*id, order_items.clone())?);
                }
            }
        }
    }
    Ok(Resolved {
        items,
        indeterminate: indeterminate.len() as u64,
        never_written: never_written.len() as u64,
    })
}

/// Waits until every order is terminal and its view agrees, or the deadline passes; orders
/// still not there are inconsistent. Returns the terminal status of every settled order.
async fn settle(
    db: &Databases,
    orders: &HashMap<Uuid, Vec<OrderItem>>,
    spec: &CheckSpec,
    started: Instant,
    findings: &mut Findings,
) -> Result<(HashMap<Uuid, String>, Option<f64>), CheckerError> {
    let deadline = started + spec.settle_deadline;
    let mut pending: Vec<Uuid> = orders.keys().copied().collect();
    let mut settled = HashMap::with_capacity(pending.len());
    loop {
        let (written, views) = tokio::try_join!(
            query_batched(
                &db.orders,
                orders::NAME,
                "SELECT id, status, step, version FROM orders WHERE id = ANY($1)",
                &pending,
            ),
            query_batched(
                &db.analytics,
                analytics::NAME,
                "SELECT order_id, status, version FROM order_views WHERE order_id = ANY($1)",
                &pending,
            ),
        )?;
        let written: HashMap<Uuid, (String, String, i64)> = written
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
        let views: HashMap<Uuid, (String, i64)> = views
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let mut unsettled = Vec::new();
        for id in pending {
            match written.get(&id) {
                Some((status, _, version))
                    if (status == COMPLETED || status == CANCELLED)
                        && views.get(&id) == Some(&(status.clone(), *version)) =>
                {
                    settled.insert(id, status.clone());
                }
                _ => unsettled.push(id),
            }
        }
        pending = unsettled;
        if pending.is_empty() {
            return Ok((settled, Some(started.elapsed().as_secs_f64())));
        }
        let now = Instant::now();
        if now >= deadline {
            for id in &pending {
                let view = views.get(id);
                match written.get(id) {
                    // It was found at the start; an order row does not go away.
                    None => findings.add(
                        Category::Inconsistent,
                        "orders that disappeared from the orders database during the check",
                        Entity::Order(*id),
                        String::new(),
                    ),
                    Some((status, step, _)) if status != COMPLETED && status != CANCELLED => {
                        findings.add(
                            Category::Inconsistent,
                            "sagas not in a terminal state at the settle deadline",
                            Entity::Order(*id),
                            format!("{status} at step {step}"),
                        )
                    }
                    Some((status, _, version)) => {
                        let seen = match view {
                            Some((s, v)) => format!("view {s} v{v}"),
                            None => "no view".to_string(),
                        };
                        findings.add(
                            Category::Inconsistent,
                            "read-model views that disagree with the orders database",
                            Entity::Order(*id),
                            format!("orders {status} v{version}, {seen}"),
                        );
                        // Terminal on the write side: its effects can be checked.
                        settled.insert(*id, status.clone());
                    }
                }
            }
            return Ok((settled, None));
        }
        tokio::time::sleep(spec.poll_interval.min(deadline - now)).await;
    }
}

/// Completed orders have exactly one captured payment; cancelled ones none (a refund
/// turns the capture into REFUNDED, so a compensated charge is not counted).
async fn check_payments(
    pool: &Pool,
    settled: &HashMap<Uuid, String>,
    findings: &mut Findings,
) -> Result<(), CheckerError> {
    let ids: Vec<Uuid> = settled.keys().copied().collect();
    let rows = query_batched(
        pool,
        payments::NAME,
        "SELECT order_id, count(*) FILTER (WHERE status = 'CAPTURED'),
                string_agg(status, ',' ORDER BY status)
         FROM payments WHERE order_id = ANY($1) GROUP BY order_id",
        &ids,
    )
    .await?;
    let payments: HashMap<Uuid, (i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    for (id, status) in settled {
        let (captured, all) = payments
            .get(id)
            .map_or((0, "no payment"), |(c, s)| (*c, s.as_str()));
        if captured > 1 {
            findings.add(
                Category::Duplicated,
                "orders charged more than once",
                Entity::Order(*id),
                format!("{captured} captured payments"),
            );
        }
        if status == COMPLETED && captured == 0 {
            findings.add(
                Category::Inconsistent,
                "completed orders without a captured payment",
                Entity::Order(*id),
                all.to_string(),
            );
        } else if status == CANCELLED && captured > 0 {
            findings.add(
                Category::Inconsistent,
                "cancelled orders with a captured payment left",
                Entity::Order(*id),
                all.to_string(),
            );
        }
    }
    Ok(())
}

/// Per order and product, what the stock stream and the reservations say.
#[derive(Default)]
struct Held {
    reserved_events: i64,
    /// Units reserved (positive), from the events.
    reserved: i64,
    released_events: i64,
    released: i64,
    /// The reservation row: its quantity and whether it was released.
    reservation: Option<(i32, bool)>,
}

/// Completed orders have their stock deducted once (one `reserved` event per product,
/// for the ordered quantity, never released); cancelled ones hold nothing (every
/// reservation released once).
async fn check_stock_of_orders(
    pool: &Pool,
    settled: &HashMap<Uuid, String>,
    items: &HashMap<Uuid, Vec<OrderItem>>,
    findings: &mut Findings,
) -> Result<(), CheckerError> {
    let ids: Vec<Uuid> = settled.keys().copied().collect();
    let held = held_stock(pool, &ids).await?;
    for (id, status) in settled {
        // The order's items, merged per product like inventory merges them.
        let mut wanted: BTreeMap<i64, i64> = BTreeMap::new();
        for item in items.get(id).map_or(&[][..], Vec::as_slice) {
            *wanted.entry(item.product_id).or_default() += i64::from(item.quantity);
        }
        let empty = BTreeMap::new();
        let held = held.get(id).unwrap_or(&empty);
        // Ordered products, and any other product the order touched.
        let mut products: Vec<i64> = wanted.keys().copied().collect();
        products.extend(held.keys().filter(|p| !wanted.contains_key(p)));
        let order = Entity::Order(*id);
        for product in products {
            let nothing = Held::default();
            let h = held.get(&product).unwrap_or(&nothing);
            let ordered = wanted.get(&product).copied();
            check_product_of_order(&order, status, product, h, ordered, findings);
        }
    }
    Ok(())
}

/// What each of `ids` holds of each product, per order and product, from inventory's
/// events and reservations.
async fn held_stock(
    pool: &Pool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, BTreeMap<i64, Held>>, CheckerError> {
    let mut held: HashMap<Uuid, BTreeMap<i64, Held>> = HashMap::new();
    for row in query_batched(
        pool,
        inventory::NAME,
        "SELECT order_id, product_id, kind, count(*), COALESCE(sum(quantity), 0)
         FROM stock_events WHERE order_id = ANY($1) GROUP BY order_id, product_id, kind",
        ids,
    )
    .await?
    {
        let entry = held
            .entry(row.get(0))
            .or_default()
            .entry(row.get(1))
            .or_default();
        let (kind, count, quantity): (String, i64, i64) = (row.get(2), row.get(3), row.get(4));
        match kind.as_str() {
            "reserved" => {
                entry.reserved_events += count;
                entry.reserved -= quantity;
            }
            "released" => {
                entry.released_events += count;
                entry.released += quantity;
            }
            // Restocks carry no order; anything else is not the saga's.
            _ => {}
        }
    }
    for row in query_batched(
        pool,
        inventory::NAME,
        "SELECT order_id, product_id, quantity, released FROM reservations WHERE order_id = ANY($1)",
        ids,
    )
    .await?
    {
        held.entry(row.get(0))
            .or_default()
            .entry(row.get(1))
            .or_default()
            .reservation = Some((row.get(2), row.get(3)));
    }
    Ok(held)
}

/// Holds one product of a settled order against its status: reserved and released at most
/// once; a completed order deducted what it ordered and kept it; a cancelled one gave back
/// all it reserved.
fn check_product_of_order(
    order: &Entity,
    status: &str,
    product: i64,
    h: &Held,
    ordered: Option<i64>,
    findings: &mut Findings,
) {
    for (events, what, noun) in [
        (
            h.reserved_events,
            "orders whose stock was reserved more than once",
            "reservations",
        ),
        (
            h.released_events,
            "orders whose reservation was released more than once",
            "releases",
        ),
    ] {
        if events > 1 {
            let detail = format!("product {product}: {events} {noun}");
            findings.add(Category::Duplicated, what, order.clone(), detail);
        }
    }
    if status == COMPLETED {
        if h.reserved_events == 0 {
            findings.add(
                Category::Inconsistent,
                "completed orders whose stock was not deducted",
                order.clone(),
                format!("product {product}"),
            );
        } else if h.reserved_events == 1 && Some(h.reserved) != ordered {
            findings.add(
                Category::Inconsistent,
                "completed orders whose deduction differs from the order",
                order.clone(),
                format!(
                    "product {product}: {} deducted, {} ordered",
                    h.reserved,
                    ordered.unwrap_or(0)
                ),
            );
        }
        if h.released_events > 0 || h.reservation.is_some_and(|(_, released)| released) {
            findings.add(
                Category::Inconsistent,
                "completed orders whose stock was given back",
                order.clone(),
                format!("product {product}"),
            );
        }
    } else if h.reserved != h.released || h.reservation.is_some_and(|(_, r)| !r) {
        findings.add(
            Category::Inconsistent,
            "cancelled orders still holding stock",
            order.clone(),
            format!(
                "product {product}: {} reserved, {} released",
                h.reserved, h.released
            ),
        );
    }
}

/// Stock is conserved: every level equals the fold of its events, and neither a level nor
/// any point of a product's stream is below zero.
async fn check_stock_levels(pool: &Pool, findings: &mut Findings) -> Result<(), CheckerError> {
    for finding in inventory::audit(pool)
        .await
        .map_err(|e| CheckerError::Audit(e.to_string()))?
    {
        findings.add(
            Category::Inconsistent,
            "stock levels that disagree with their events",
            Entity::Product(finding.product_id),
            format!("level {}, events {}", finding.level, finding.derived),
        );
    }
    let client = pool.get().await.map_err(|source| CheckerError::Connect {
        service: inventory::NAME,
        source,
    })?;
    let rows = client
        .query(
            "SELECT product_id, min(running)::BIGINT FROM (
                 SELECT product_id, sum(quantity) OVER (PARTITION BY product_id ORDER BY version) AS running
                 FROM stock_events) s
             GROUP BY product_id HAVING min(running) < 0
             UNION
             SELECT product_id, available::BIGINT FROM stock_levels WHERE available < 0",
            &[],
        )
        .await
        .map_err(|source| CheckerError::Query {
            service: inventory::NAME,
            source,
        })?;
    for row in rows {
        let lowest: i64 = row.get(1);
        findings.add(
            Category::Inconsistent,
            "products whose stock went below zero",
            Entity::Product(row.get(0)),
            format!("lowest {lowest}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_count_an_entity_once_per_category_and_keep_a_few_examples() {
        let mut findings = Findings::default();
        let order = Entity::Order(Uuid::nil());
        findings.add(Category::Inconsistent, "a", order.clone(), String::new());
        findings.add(Category::Inconsistent, "b", order.clone(), "x".into());
        findings.add(Category::Duplicated, "c", order, String::new());
        for product in 0..10 {
            findings.add(
                Category::Inconsistent,
                "d",
                Entity::Product(product),
                String::new(),
            );
        }
        assert_eq!(findings.inconsistent.len(), 11);
        assert_eq!(findings.duplicated.len(), 1);
        let notes = findings.notes();
        assert_eq!(notes.len(), 4);
        assert!(
            notes.iter().any(|n| n
                .starts_with("inconsistent: d: 10, e.g. product 0; product 1; product 2; 7 more")),
            "{notes:?}"
        );
    }
}
