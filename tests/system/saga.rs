//! The order saga end to end through the gateway.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{ensure, Context};
use faultline_system::services::inventory;
use faultline_system::services::ServiceKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::Harness;

pub async fn happy_path_completes_and_the_view_shows_it(h: Arc<Harness>) -> anyhow::Result<()> {
    let user = h.user().await?;
    let products: Vec<Value> = h
        .http
        .get(h.api("/products"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(products.len() >= 20, "{} products listed", products.len());
    let product = &products[0];
    let id = product["id"].as_i64().context("product id")?;
    let before = product["available"].as_i64().context("available")?;

    let me: Value = h
        .http
        .get(h.api("/users/me"))
        .bearer_auth(&user.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(me["id"] == user.id.as_str(), "profile {me}");

    let (status, placed) = h
        .place_order(
            &user,
            "happy-1",
            json!([{ "product_id": id, "quantity": 2 }]),
        )
        .await?;
    ensure!(
        status == StatusCode::ACCEPTED,
        "POST /orders answered {status}: {placed}"
    );
    ensure!(placed["status"] == "PENDING");
    let order_id = placed["id"].as_str().context("order id")?;

    let view = h.terminal_view(&user, order_id).await?;
    ensure!(view["status"] == "COMPLETED", "view {view}");
    let order = h.order(&user, order_id).await?;
    ensure!(
        order["status"] == "COMPLETED" && order["version"] == view["version"],
        "write side {order} vs view {view}"
    );
    let price = product["price_cents"].as_i64().context("price")?;
    ensure!(
        order["amount_cents"].as_i64() == Some(2 * price),
        "amount {order}"
    );
    let after = h.product(id).await?["available"]
        .as_i64()
        .context("available")?;
    ensure!(after == before - 2, "stock went from {before} to {after}");

    // Each step of the completed saga was timed into the orders service's histogram.
    let orders = h
        .system
        .service_url(ServiceKind::Orders, 1)
        .context("orders' URL")?;
    let metrics = h.metrics(&orders).await?;
    for step in ["RESERVING", "CHARGING", "SHIPPING"] {
        let count = metrics
            .lines()
            .filter(|l| l.starts_with("faultline_saga_step_duration_seconds_count"))
            .find(|l| l.contains(&format!("step=\"{step}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0);
        ensure!(count >= 1.0, "no {step} step timed in /metrics");
    }
    Ok(())
}

pub async fn payment_failure_cancels_and_releases(h: Arc<Harness>) -> anyhow::Result<()> {
    let user = h.user().await?;
    let before = h.product(5).await?["available"]
        .as_i64()
        .context("available")?;
    h.set_payments(1.0, 0).await?;
    let outcome = async {
        let (status, placed) = h
            .place_order(
                &user,
                "declined-1",
                json!([{ "product_id": 5, "quantity": 3 }]),
            )
            .await?;
        ensure!(status == StatusCode::ACCEPTED, "{status}: {placed}");
        let order_id = placed["id"].as_str().context("order id")?.to_string();
        let view = h.terminal_view(&user, &order_id).await?;
        anyhow::Ok((order_id, view))
    }
    .await;
    h.set_payments(0.0, 0).await?;
    let (order_id, view) = outcome?;
    ensure!(view["status"] == "CANCELLED", "view {view}");
    ensure!(
        view["reason"]
            .as_str()
            .is_some_and(|r| r.contains("declined")),
        "reason {view}"
    );
    let after = h.product(5).await?["available"]
        .as_i64()
        .context("available")?;
    ensure!(
        after == before,
        "the reservation was not released: {before} -> {after}"
    );

    let payments = h.database(ServiceKind::Payments)?.get().await?;
    let uuid = uuid::Uuid::parse_str(&order_id)?;
    let captured: i64 = payments
        .query_one(
            "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'CAPTURED'",
            &[&uuid],
        )
        .await?
        .get(0);
    ensure!(captured == 0, "a charge was left on a cancelled order");
    Ok(())
}

pub async fn concurrent_orders_never_oversell(h: Arc<Harness>) -> anyhow::Result<()> {
    const PRODUCT: i64 = 900_001;
    const STOCK: i32 = 50;
    const ORDERS: usize = 200;
    let pool = h.database(ServiceKind::Inventory)?;
    ensure!(
        inventory::add_product(&pool, PRODUCT, "Scarce thing", 1999, STOCK).await?,
        "the product existed already"
    );
    let mut users = Vec::new();
    for _ in 0..10 {
        users.push(h.user().await?);
    }
    let users = &users;
    let placed = futures::future::join_all((0..ORDERS).map(|i| {
        let h = h.clone();
        async move {
            let user = i % users.len();
            let (status, body) = h
                .place_order(
                    &users[user],
                    &format!("scarce-{i}"),
                    json!([{ "product_id": PRODUCT, "quantity": 1 }]),
                )
                .await?;
            ensure!(status == StatusCode::ACCEPTED, "order {i}: {status} {body}");
            anyhow::Ok((user, body["id"].as_str().context("id")?.to_string()))
        }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let views =
        futures::future::join_all(placed.iter().map(|(u, id)| h.terminal_view(&users[*u], id)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
    let completed = views.iter().filter(|v| v["status"] == "COMPLETED").count();
    let cancelled = views.iter().filter(|v| v["status"] == "CANCELLED").count();
    ensure!(
        completed == STOCK as usize,
        "{completed} completed, {cancelled} cancelled of {ORDERS}"
    );
    ensure!(cancelled == ORDERS - STOCK as usize);
    let available = h.product(PRODUCT).await?["available"]
        .as_i64()
        .context("available")?;
    ensure!(available == 0, "{available} left in stock");
    let findings = inventory::audit(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        findings.is_empty(),
        "stock levels disagree with their events: {findings:?}"
    );
    let client = pool.get().await?;
    let lowest: i64 = client
        .query_one(
            "SELECT min(running) FROM (SELECT sum(quantity) OVER (ORDER BY version) AS running FROM stock_events WHERE product_id = $1) s",
            &[&PRODUCT],
        )
        .await?
        .get(0);
    ensure!(lowest >= 0, "the stock stream went negative ({lowest})");
    saga_gauge_matches_the_orders_table(&h).await
}

/// The orders service's `saga_orders` gauge, which counts PENDING in the table and the
/// finished sagas from the deltas the saga appends, agrees with the orders table once its
/// refresh caught up: a delta counted twice or lost would keep them apart.
async fn saga_gauge_matches_the_orders_table(h: &Harness) -> anyhow::Result<()> {
    let orders = h
        .system
        .service_url(ServiceKind::Orders, 1)
        .context("orders' URL")?;
    let pool = h.database(ServiceKind::Orders)?;
    let mut last = String::new();
    for _ in 0..50 {
        let mut table: BTreeMap<String, i64> = ["PENDING", "COMPLETED", "CANCELLED"]
            .into_iter()
            .map(|status| (status.to_string(), 0))
            .collect();
        for row in pool
            .get()
            .await?
            .query("SELECT status, count(*) FROM orders GROUP BY status", &[])
            .await?
        {
            table.insert(row.get(0), row.get(1));
        }
        let metrics = h.metrics(&orders).await?;
        let gauge: BTreeMap<String, i64> = metrics
            .lines()
            .filter(|l| l.starts_with("faultline_saga_orders{"))
            .filter_map(|l| {
                let status = l.split("status=\"").nth(1)?.split('"').next()?;
                let value = l.rsplit(' ').next()?.parse::<f64>().ok()?;
                Some((status.to_string(), value as i64))
            })
            .collect();
        if gauge == table {
            return Ok(());
        }
        last = format!("the table {table:?}, the gauge {gauge:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("the saga_orders gauge never matched the orders table in 10 s: {last}")
}

pub async fn idempotency_key_creates_one_order(h: Arc<Harness>) -> anyhow::Result<()> {
    let user = h.user().await?;
    let items = json!([{ "product_id": 7, "quantity": 1 }]);
    let (first_status, first) = h.place_order(&user, "same-key", items.clone()).await?;
    let (second_status, second) = h.place_order(&user, "same-key", items).await?;
    ensure!(first_status == StatusCode::ACCEPTED, "{first_status}");
    ensure!(second_status.is_success(), "{second_status}: {second}");
    ensure!(
        first["id"] == second["id"],
        "two orders: {first} and {second}"
    );
    let orders = h.database(ServiceKind::Orders)?.get().await?;
    let user_id = uuid::Uuid::parse_str(&user.id)?;
    let count: i64 = orders
        .query_one(
            "SELECT count(*) FROM orders WHERE user_id = $1",
            &[&user_id],
        )
        .await?
        .get(0);
    ensure!(count == 1, "{count} orders for one idempotency key");
    Ok(())
}

/// Admission control with a lowered limit: the orders service's own routes against the
/// system's real orders database, with a fixed limit of two pending sagas. The third order
/// is shed with 503 and `Retry-After`, and taken once the database says the first two
/// finished. (The orders it did take are real: the system's saga runs them.)
pub async fn orders_past_the_pending_limit_are_shed_with_retry_after(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    use faultline_system::platform::http::TraceContext;
    use faultline_system::services::admission::{Admission, AdmissionPolicy};
    use faultline_system::services::orders;

    let admission = Admission::new(AdmissionPolicy::Fixed(2));
    let routes = orders::routes(h.database(ServiceKind::Orders)?, admission.clone()).layer(
        axum::Extension(TraceContext::from_headers(&axum::http::HeaderMap::new())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, routes).await });
    let user = h.user().await?;
    let client = reqwest::Client::new();
    let place = || {
        client
            .post(format!("{base}/orders"))
            .header("x-user-id", &user.id)
            .json(&json!({ "items": [{ "product_id": 3, "quantity": 1 }] }))
            .send()
    };
    let outcome = async {
        for n in 1..=2 {
            let response = place().await?;
            ensure!(
                response.status() == StatusCode::ACCEPTED,
                "order {n} under the limit: {}",
                response.status()
            );
        }
        let shed = place().await?;
        ensure!(
            shed.status() == StatusCode::SERVICE_UNAVAILABLE,
            "the third pending order was {}, not shed",
            shed.status()
        );
        let retry_after = shed
            .headers()
            .get("retry-after")
            .context("a shed order without Retry-After")?
            .to_str()?
            .to_string();
        ensure!(retry_after == "1", "Retry-After: {retry_after}");
        let body: Value = shed.json().await?;
        ensure!(
            body["message"].as_str().unwrap_or("").contains("2 pending"),
            "the 503 does not say why: {body}"
        );
        admission.observe(0, 2); // what the refresh reads once both sagas finished
        let again = place().await?;
        ensure!(
            again.status() == StatusCode::ACCEPTED,
            "still shed after the backlog drained: {}",
            again.status()
        );
        Ok(())
    }
    .await;
    server.abort();
    outcome
}
