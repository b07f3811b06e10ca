//! Replicas behind the gateway: requests spread round-robin over them, a replica that stops
//! answering its health check is taken out of rotation (requests keep succeeding on the
//! others), and two replicas of the saga orchestrator share the work. One system, started
//! with `--replicas inventory=2,orders=2`, for the whole binary.

#![allow(clippy::unwrap_used)]

#[path = "../../system/tests/common/shared.rs"]
mod shared;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::services::ServiceKind;
use faultline_system::supervisor::{System, SystemSpec};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

struct Harness {
    system: System,
    http: reqwest::Client,
}

impl shared::SharedHarness for Harness {
    async fn start() -> anyhow::Result<Harness> {
        let mut spec = SystemSpec::new(env!("CARGO_BIN_EXE_faultline").into());
        spec.replicas = HashMap::from([(ServiceKind::Inventory, 2), (ServiceKind::Orders, 2)]);
        spec.rate_limit = 0.0;
        spec.products = 10;
        let system = System::start(spec).await?;
        Ok(Harness {
            system,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    async fn stop(self) {
        self.system.stop().await;
    }
}

fn main() -> ExitCode {
    let tests: Vec<(&'static str, shared::Test<Harness>)> = vec![
        (
            "requests_spread_over_replicas_and_skip_one_that_stops_answering",
            |h| Box::pin(spread_and_failover(h)),
        ),
        ("two_saga_orchestrators_complete_every_order", |h| {
            Box::pin(two_orchestrators(h))
        }),
    ];
    shared::run(tests)
}

/// Requests a replica answered on its product route, from its own /metrics.
async fn served(h: &Harness, replica: usize) -> anyhow::Result<f64> {
    let url = h
        .system
        .service_url(ServiceKind::Inventory, replica)
        .context("replica")?;
    let text = h
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("faultline_http_request_duration_seconds_count")
                && l.contains("route=\"/products/{id}\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn spread_and_failover(h: Arc<Harness>) -> anyhow::Result<()> {
    let product = format!("{}/api/products/1", h.system.gateway_url);
    let before = (served(&h, 1).await?, served(&h, 2).await?);
    for _ in 0..40 {
        // no-cache: past the gateway's response cache, to a replica every time.
        h.http
            .get(&product)
            .header("cache-control", "no-cache")
            .send()
            .await?
            .error_for_status()?;
    }
    let after = (served(&h, 1).await?, served(&h, 2).await?);
    let (one, two) = (after.0 - before.0, after.1 - before.1);
    ensure!(one + two == 40.0, "{one} + {two} requests served of 40");
    ensure!(
        (15.0..=25.0).contains(&one),
        "round-robin is uneven: {one} and {two}"
    );

    // Replica 2 freezes: the gateway's health check takes it out of rotation.
    h.system
        .signal(ServiceKind::Inventory, 2, Signal::SIGSTOP)?;
    let outcome = async {
        let stopped = Instant::now();
        // Give the health check (every second, one-second timeout) time to notice.
        while stopped.elapsed() < Duration::from_secs(3) {
            let _ = h
                .http
                .get(&product)
                .header("cache-control", "no-cache")
                .timeout(Duration::from_millis(500))
                .send()
                .await;
        }
        for i in 0..20 {
            let started = Instant::now();
            let response = h
                .http
                .get(&product)
                .header("cache-control", "no-cache")
                .send()
                .await?;
            ensure!(
                response.status().is_success(),
                "request {i} after failover: {}",
                response.status()
            );
            ensure!(
                started.elapsed() < Duration::from_secs(1),
                "request {i} waited {:?} on the frozen replica",
                started.elapsed()
            );
        }
        anyhow::Ok(())
    }
    .await;
    h.system
        .signal(ServiceKind::Inventory, 2, Signal::SIGCONT)?;
    outcome?;

    // Back in rotation once it answers again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let resumed = served(&h, 2).await?;
    loop {
        // no-cache: past the gateway's response cache, to a replica every time.
        h.http
            .get(&product)
            .header("cache-control", "no-cache")
            .send()
            .await?
            .error_for_status()?;
        if served(&h, 2).await? > resumed {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the resumed replica never got a request again");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn two_orchestrators(h: Arc<Harness>) -> anyhow::Result<()> {
    let api = |path: &str| format!("{}/api{path}", h.system.gateway_url);
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    h.http
        .post(api("/users/register"))
        .json(&json!({ "email": email, "password": "correct horse", "name": "R" }))
        .send()
        .await?
        .error_for_status()?;
    let login: Value = h
        .http
        .post(api("/users/login"))
        .json(&json!({ "email": email, "password": "correct horse" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"].as_str().context("token")?;
    let mut ids = Vec::new();
    for i in 0..20 {
        let placed: Value = h
            .http
            .post(api("/orders"))
            .bearer_auth(token)
            .header("idempotency-key", format!("replicated-{i}"))
            .json(&json!({ "items": [{ "product_id": 1 + (i % 10), "quantity": 1 }] }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(placed["id"].as_str().context("id")?.to_string());
    }
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = h
                .http
                .get(api(&format!("/orders/{id}/view?min_version=4&wait=10s")))
                .bearer_auth(token)
                .send()
                .await?;
            if response.status().is_success() {
                let view: Value = response.json().await?;
                ensure!(view["status"] == "COMPLETED", "{view}");
                break;
            }
            if Instant::now() >= deadline {
                bail!("order {id} did not complete");
            }
        }
    }
    // Both orchestrators' HTTP replicas took orders (the gateway spreads POSTs too).
    for replica in 1..=2 {
        let url = h
            .system
            .service_url(ServiceKind::Orders, replica)
            .context("orders replica")?;
        let text = h
            .http
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        ensure!(
            text.contains("route=\"/orders\""),
            "orders replica {replica} placed no order"
        );
    }
    Ok(())
}
