//! The consistency checker against the real system's databases: a clean set of orders
//! passes, and each kind of damage (a lost order, a stale read model, a missing or doubled
//! effect, unconserved stock) is counted. Tampering touches only orders and products made
//! for these tests, and is undone before the test returns, whatever the checker said.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use faultline_system::checker::{check, CheckReport, CheckSpec, LedgerOrder};
use faultline_system::services::inventory;
use faultline_system::services::ServiceKind;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{Harness, User};

/// Products only these tests order, so tampering with their streams touches nothing else.
const PLENTY: i64 = 900_201;
const SCARCE: i64 = 900_202;

/// Long enough for sagas still running to finish.
const SETTLE: CheckSpec = CheckSpec {
    settle_deadline: Duration::from_secs(60),
    poll_interval: Duration::from_millis(100),
};
/// For orders already terminal: a tampered view must not hold the test up for long.
const SHORT: CheckSpec = CheckSpec {
    settle_deadline: Duration::from_secs(2),
    poll_interval: Duration::from_millis(100),
};

async fn checker(
    h: &Harness,
    ledger: &[LedgerOrder],
    spec: &CheckSpec,
) -> anyhow::Result<CheckReport> {
    Ok(check(&h.system.database_urls, ledger, spec).await?)
}

fn acknowledged(id: Uuid, key: &str) -> LedgerOrder {
    LedgerOrder {
        order_id: Some(id),
        idempotency_key: key.to_string(),
        acknowledged: true,
    }
}

/// Adds the tests' products once.
async fn products(h: &Harness) -> anyhow::Result<()> {
    let pool = h.database(ServiceKind::Inventory)?;
    for (id, name, stock) in [
        (PLENTY, "Checker plenty", 1000),
        (SCARCE, "Checker scarce", 1),
    ] {
        inventory::add_product(&pool, id, name, 500, stock)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Places an order with a fresh key; returns its id and key.
async fn place(h: &Harness, user: &User, items: Value) -> anyhow::Result<(Uuid, String)> {
    let key = Uuid::new_v4().simple().to_string();
    let (status, placed) = h.place_order(user, &key, items).await?;
    ensure!(
        status == StatusCode::ACCEPTED,
        "POST /orders answered {status}: {placed}"
    );
    let id = Uuid::parse_str(placed["id"].as_str().context("order id")?)?;
    Ok((id, key))
}

/// Places an order of one unit of [`PLENTY`] and waits until the read model shows it
/// completed.
async fn completed_order(h: &Harness, user: &User) -> anyhow::Result<(Uuid, String)> {
    let (id, key) = place(h, user, json!([{ "product_id": PLENTY, "quantity": 1 }])).await?;
    let view = h.terminal_view(user, &id.to_string()).await?;
    ensure!(view["status"] == "COMPLETED", "view {view}");
    Ok((id, key))
}

pub async fn orders_through_the_gateway_settle_and_are_consistent(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    products(&h).await?;
    let user = h.user().await?;
    let mut ledger = Vec::new();
    // Cancelled after a declined charge, its reservation released. First and awaited, so
    // no other order meets the failing payments.
    h.set_payments(1.0, 0).await?;
    let declined = async {
        let (id, key) = place(&h, &user, json!([{ "product_id": PLENTY, "quantity": 1 }])).await?;
        h.terminal_view(&user, &id.to_string()).await?;
        anyhow::Ok((id, key))
    }
    .await;
    h.set_payments(0.0, 0).await?;
    let (id, key) = declined?;
    ledger.push(acknowledged(id, &key));
    // Completed: one product, and two products with one repeated.
    for items in [
        json!([{ "product_id": PLENTY, "quantity": 2 }]),
        json!([{ "product_id": 3, "quantity": 1 }, { "product_id": PLENTY, "quantity": 1 },
               { "product_id": 3, "quantity": 2 }]),
    ] {
        let (id, key) = place(&h, &user, items).await?;
        ledger.push(acknowledged(id, &key));
    }
    // Cancelled at the reservation: more than is in stock.
    let (id, key) = place(&h, &user, json!([{ "product_id": SCARCE, "quantity": 2 }])).await?;
    ledger.push(acknowledged(id, &key));

    // The others may still be running: the checker waits for them.
    let report = checker(&h, &ledger, &SETTLE).await?;
    ensure!(report.checked == 4, "{report:?}");
    ensure!(report.is_clean(), "{report:?}");
    ensure!(report.settle_secs.is_some(), "{report:?}");
    let mut completed = 0;
    for order in &ledger {
        let order_id = order.order_id.context("id")?.to_string();
        if h.order(&user, &order_id).await?["status"] == "COMPLETED" {
            completed += 1;
        }
    }
    ensure!(
        completed == 2,
        "{completed} of 4 completed; expected 2 (2 cancelled)"
    );
    Ok(())
}

pub async fn an_acknowledged_order_never_written_is_lost(h: Arc<Harness>) -> anyhow::Result<()> {
    products(&h).await?;
    let user = h.user().await?;
    let (id, key) = completed_order(&h, &user).await?;
    let ledger = [
        acknowledged(id, &key),
        acknowledged(Uuid::new_v4(), &Uuid::new_v4().simple().to_string()),
        // Acknowledged, but the ledger has only its key.
        LedgerOrder {
            order_id: None,
            idempotency_key: Uuid::new_v4().simple().to_string(),
            acknowledged: true,
        },
    ];
    let report = checker(&h, &ledger, &SETTLE).await?;
    ensure!(
        report.lost == 2
            && report.checked == 3
            && report.duplicated == 0
            && report.inconsistent == 0,
        "{report:?}"
    );
    ensure!(report.settle_secs.is_some(), "{report:?}");
    ensure!(
        report.notes.iter().any(|n| n.starts_with("lost:")),
        "{report:?}"
    );
    Ok(())
}

pub async fn an_indeterminate_write_never_made_is_not_lost(h: Arc<Harness>) -> anyhow::Result<()> {
    products(&h).await?;
    let user = h.user().await?;
    // An indeterminate write that did happen is checked like an acknowledged one.
    let (_, key) = completed_order(&h, &user).await?;
    let ledger = [
        LedgerOrder {
            order_id: None,
            idempotency_key: key,
            acknowledged: false,
        },
        LedgerOrder {
            order_id: None,
            idempotency_key: Uuid::new_v4().simple().to_string(),
            acknowledged: false,
        },
    ];
    let report = checker(&h, &ledger, &SETTLE).await?;
    ensure!(report.checked == 1 && report.is_clean(), "{report:?}");
    ensure!(
        report
            .notes
            .iter()
            .any(|n| n.contains("2 indeterminate writes: 1 were written")
                && n.contains("1 were never written")),
        "{report:?}"
    );
    Ok(())
}

/// Runs one statement on a service's database; the rows it changed.
async fn execute(
    pool: &deadpool_postgres::Pool,
    statement: &str,
    params: &[&(dyn deadpool_postgres::tokio_postgres::types::ToSql + Sync)],
) -> anyhow::Result<u64> {
    Ok(pool.get().await?.execute(statement, params).await?)
}

/// Runs `tamper`, the checker and `restore`, restoring even if the checker failed; then
/// checks again to show the restoration left the system clean.
async fn tampered<T, R>(
    h: &Harness,
    ledger: &[LedgerOrder],
    tamper: T,
    restore: R,
) -> anyhow::Result<CheckReport>
where
    T: std::future::Future<Output = anyhow::Result<()>>,
    R: std::future::Future<Output = anyhow::Result<()>>,
{
    let outcome = match tamper.await {
        Ok(()) => checker(h, ledger, &SHORT).await,
        Err(e) => Err(e),
    };
    restore.await?;
    let report = outcome?;
    let after = checker(h, ledger, &SHORT).await?;
    ensure!(after.is_clean(), "still unclean after restoring: {after:?}");
    Ok(report)
}

pub async fn tampered_databases_are_counted_as_duplicated_or_inconsistent(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    products(&h).await?;
    let user = h.user().await?;
    let (id, key) = completed_order(&h, &user).await?;
    let ledger = [acknowledged(id, &key)];
    let clean = checker(&h, &ledger, &SHORT).await?;
    ensure!(
        clean.is_clean() && clean.checked == 1,
        "before tampering: {clean:?}"
    );

    // The read model shows another status.
    let analytics = h.database(ServiceKind::Analytics)?;
    let report = tampered(
        &h,
        &ledger,
        async {
            let n = execute(
                &analytics,
                "UPDATE order_views SET status = 'PENDING' WHERE order_id = $1",
                &[&id],
            )
            .await?;
            ensure!(n == 1, "no view to tamper with");
            anyhow::Ok(())
        },
        async {
            execute(
                &analytics,
                "UPDATE order_views SET status = 'COMPLETED' WHERE order_id = $1",
                &[&id],
            )
            .await?;
            anyhow::Ok(())
        },
    )
    .await?;
    ensure!(
        report.inconsistent == 1 && report.duplicated == 0 && report.lost == 0,
        "stale view: {report:?}"
    );
    ensure!(
        report.settle_secs.is_none(),
        "stale view settled: {report:?}"
    );
    ensure!(
        report
            .notes
            .iter()
            .any(|n| n.contains("read-model") && n.contains(&id.to_string())),
        "stale view: {report:?}"
    );

    // The completed order's charge is gone (refunded).
    let payments = h.database(ServiceKind::Payments)?;
    let report = tampered(
        &h,
        &ledger,
        async {
            let n = execute(&payments, "UPDATE payments SET status = 'REFUNDED' WHERE order_id = $1 AND status = 'CAPTURED'",
                    &[&id]).await?;
            ensure!(n == 1, "no captured payment to tamper with");
            anyhow::Ok(())
        },
        async {
            execute(&payments, "UPDATE payments SET status = 'CAPTURED' WHERE order_id = $1", &[&id]).await?;
            anyhow::Ok(())
        },
    )
    .await?;
    ensure!(
        report.inconsistent == 1 && report.duplicated == 0,
        "missing charge: {report:?}"
    );
    ensure!(report.settle_secs.is_some(), "{report:?}");

    // The order's stock is reserved a second time, with the level moved along, so only the
    // double deduction is wrong.
    let inventory_db = h.database(ServiceKind::Inventory)?;
    let head: i64 = inventory_db
        .get()
        .await?
        .query_one(
            "SELECT version FROM stock_levels WHERE product_id = $1",
            &[&PLENTY],
        )
        .await?
        .get(0);
    let report = tampered(
        &h,
        &ledger,
        async {
            let mut client = inventory_db.get().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO stock_events (product_id, version, kind, quantity, order_id)
                 VALUES ($1, $2, 'reserved', -1, $3)",
                &[&PLENTY, &(head + 1), &id],
            )
            .await?;
            let n = tx
                .execute(
                    "UPDATE stock_levels SET version = $2::BIGINT + 1, available = available - 1
                     WHERE product_id = $1 AND version = $2",
                    &[&PLENTY, &head],
                )
                .await?;
            ensure!(n == 1, "the product's stream moved");
            tx.commit().await?;
            anyhow::Ok(())
        },
        async {
            let mut client = inventory_db.get().await?;
            let tx = client.transaction().await?;
            let n = tx
                .execute(
                    "DELETE FROM stock_events WHERE product_id = $1 AND version = $2::BIGINT + 1",
                    &[&PLENTY, &head],
                )
                .await?;
            if n == 1 {
                tx.execute(
                    "UPDATE stock_levels SET version = $2, available = available + 1 WHERE product_id = $1",
                    &[&PLENTY, &head],
                )
                .await?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        },
    )
    .await?;
    ensure!(
        report.duplicated == 1 && report.inconsistent == 0 && report.lost == 0,
        "double reservation: {report:?}"
    );
    ensure!(
        report
            .notes
            .iter()
            .any(|n| n.contains("reserved more than once")),
        "{report:?}"
    );

    // A stock level that its events do not explain.
    let report = tampered(
        &h,
        &ledger,
        async {
            execute(
                &inventory_db,
                "UPDATE stock_levels SET available = available + 7 WHERE product_id = $1",
                &[&PLENTY],
            )
            .await?;
            anyhow::Ok(())
        },
        async {
            execute(
                &inventory_db,
                "UPDATE stock_levels SET available = available - 7 WHERE product_id = $1",
                &[&PLENTY],
            )
            .await?;
            anyhow::Ok(())
        },
    )
    .await?;
    ensure!(
        report.inconsistent == 1 && report.duplicated == 0,
        "unconserved stock: {report:?}"
    );
    ensure!(
        report
            .notes
            .iter()
            .any(|n| n.contains("disagree with their events")
                && n.contains(&format!("product {PLENTY}"))),
        "{report:?}"
    );
    Ok(())
}
