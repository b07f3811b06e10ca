//! Replicas behind the gateway: requests spread round-robin over them, a replica that stops
//! answering its health check is taken out of rotation (requests keep succeeding on the
//! others), and two replicas of the saga orchestrator share the work. One system, started
//! with `--replicas inventory=2,orders=2`, for the whole binary.

#![allow(clippy::unwrap_used)]

#[path = "../common/harness.rs"]
mod harness;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::services::ServiceKind;
use nix::sys::signal::Signal;

type Harness = harness::Running<harness::Replicated>;

fn main() -> ExitCode {
    let tests: Vec<(&'static str, harness::Test<Harness>)> = vec![
        (
            "requests_spread_over_replicas_and_skip_one_that_stops_answering",
            |h| Box::pin(spread_and_failover(h)),
        ),
        ("two_saga_orchestrators_complete_every_order", |h| {
            Box::pin(two_orchestrators(h))
        }),
    ];
    harness::run(tests)
}

/// Requests inventory `replica` answered on its product route, from its own /metrics.
async fn served(h: &Harness, replica: usize) -> anyhow::Result<f64> {
    let url = h
        .system
        .service_url(ServiceKind::Inventory, replica)
        .context("replica")?;
    h.served(&url, Duration::from_secs(30)).await
}

async fn spread_and_failover(h: Arc<Harness>) -> anyhow::Result<()> {
    let before = (served(&h, 1).await?, served(&h, 2).await?);
    for _ in 0..40 {
        h.uncached_product().send().await?.error_for_status()?;
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
                .uncached_product()
                .timeout(Duration::from_millis(500))
                .send()
                .await;
        }
        for i in 0..20 {
            let started = Instant::now();
            let response = h.uncached_product().send().await?;
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
        h.uncached_product().send().await?.error_for_status()?;
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
    let token = h.token().await?;
    let mut ids = Vec::new();
    for i in 0..20 {
        let key = format!("replicated-{i}");
        ids.push(h.place_order(&token, 1 + (i % 10), &key, None).await?);
    }
    for id in &ids {
        h.completed(&token, id, Duration::from_secs(60)).await?;
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
