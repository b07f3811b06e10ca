//! A saga orchestrator killed with sagas in flight: after the supervisor restarts it, every
//! saga ends in exactly one terminal state, nothing is charged or reserved twice, and stock
//! is conserved.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use faultline_system::services::ServiceKind;
use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::Harness;

const ORDERS: usize = 30;
const PRODUCT: i64 = 9;

pub async fn orders_killed_mid_saga(h: Arc<Harness>) -> anyhow::Result<()> {
    let payments = h
        .system
        .service_url(ServiceKind::Payments, 1)
        .context("payments")?;
    let orders_url = h
        .system
        .service_url(ServiceKind::Orders, 1)
        .context("orders")?;
    let before = h.product(PRODUCT).await?["available"]
        .as_i64()
        .context("available")?;
    let restarts_before = h.system.restarts(ServiceKind::Orders, 1);
    // Slow payments keep sagas in flight while the orchestrator dies.
    h.http
        .put(format!("{payments}/admin/behaviour"))
        .json(&json!({ "fail_rate": 0.0, "latency_ms": 200 }))
        .send()
        .await?
        .error_for_status()?;

    let mut users = Vec::new();
    for _ in 0..3 {
        users.push(h.user().await?);
    }
    let mut placed = Vec::new();
    for i in 0..ORDERS {
        let user = i % users.len();
        let (status, body) = h
            .place_order(
                &users[user],
                &format!("crash-{i}"),
                json!([{ "product_id": PRODUCT, "quantity": 1 }]),
            )
            .await?;
        ensure!(status == StatusCode::ACCEPTED, "order {i}: {status}");
        placed.push((user, body["id"].as_str().context("id")?.to_string()));
    }

    let killed_at = Instant::now();
    h.system.signal(ServiceKind::Orders, 1, Signal::SIGKILL)?;
    // Time until the restarted orchestrator answers /health/ready again.
    let ready_after = loop {
        if h.system.restarts(ServiceKind::Orders, 1) > restarts_before {
            if let Ok(response) = h
                .http
                .get(format!("{orders_url}/health/ready"))
                .send()
                .await
            {
                if response.status() == StatusCode::OK {
                    break killed_at.elapsed();
                }
            }
        }
        ensure!(
            killed_at.elapsed() < Duration::from_secs(60),
            "orders was not ready again within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "orders ready again {:.2} s after SIGKILL",
        ready_after.as_secs_f64()
    );

    let views =
        futures::future::join_all(placed.iter().map(|(u, id)| h.terminal_view(&users[*u], id)))
            .await;
    h.http
        .put(format!("{payments}/admin/behaviour"))
        .json(&json!({ "fail_rate": 0.0, "latency_ms": 0 }))
        .send()
        .await?
        .error_for_status()?;
    let views = views.into_iter().collect::<Result<Vec<_>, _>>()?;
    let completed = views.iter().filter(|v| v["status"] == "COMPLETED").count();

    let ids: Vec<uuid::Uuid> = placed
        .iter()
        .map(|(_, id)| uuid::Uuid::parse_str(id))
        .collect::<Result<_, _>>()?;
    let orders_db = h.database(ServiceKind::Orders)?.get().await?;
    let terminal: i64 = orders_db
        .query_one("SELECT count(*) FROM orders WHERE id = ANY($1) AND status IN ('COMPLETED', 'CANCELLED') AND step = 'DONE'", &[&ids])
        .await?
        .get(0);
    ensure!(
        terminal == ORDERS as i64,
        "{terminal} of {ORDERS} sagas ended"
    );

    let payments_db = h.database(ServiceKind::Payments)?.get().await?;
    let captured: i64 = payments_db
        .query_one(
            "SELECT count(*) FROM payments WHERE order_id = ANY($1) AND status = 'CAPTURED'",
            &[&ids],
        )
        .await?
        .get(0);
    ensure!(
        captured == completed as i64,
        "{captured} captured payments for {completed} completed orders"
    );

    let inventory_db = h.database(ServiceKind::Inventory)?.get().await?;
    let double_reserved: i64 = inventory_db
        .query_one(
            "SELECT count(*) FROM (SELECT order_id FROM stock_events WHERE order_id = ANY($1) AND kind = 'reserved'
             GROUP BY order_id, product_id HAVING count(*) > 1) d",
            &[&ids],
        )
        .await?
        .get(0);
    ensure!(
        double_reserved == 0,
        "{double_reserved} orders reserved twice"
    );
    let after = h.product(PRODUCT).await?["available"]
        .as_i64()
        .context("available")?;
    ensure!(
        after == before - completed as i64,
        "stock {before} -> {after} with {completed} completed orders"
    );
    Ok(())
}
