//! The load generator's user journeys against the real system: every journey the
//! schedule asked for starts, every step is recorded, and the write ledger agrees with
//! the orders database — the ledger is what the consistency checker will trust.

use std::{sync::Arc, time::Duration};

use anyhow::{ensure, Context as _};
use faultline_loadgen::{
    journeys::{
        self,
        ledger::{Ledger, WriteOutcome},
        Driver, JourneyConfig, JourneyKind, Step,
    },
    Arrivals, Schedule,
};
use faultline_system::services::ServiceKind;

use crate::support::Harness;

pub async fn open_model_journeys_keep_a_ledger_that_matches_the_orders(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger_path = dir.path().join("ledger.jsonl");
    let schedule = Schedule::constant(10.0, Duration::from_secs(4), Arrivals::Uniform)?;
    let mut config = JourneyConfig::new(
        &h.system.gateway_url,
        "browse=2,checkout=2,ingest=1"
            .parse()
            .map_err(anyhow::Error::msg)?,
        schedule,
    );
    config.users = 4;
    config.seed = Some(7);
    config.ledger = Some(ledger_path.clone());
    let results = journeys::run(config, |_| {}).await?;

    let counts = results.journeys.as_ref().context("journey counts")?;
    let started: u64 = counts.started.values().sum();
    ensure!(
        started == 40,
        "10/s for 4 s is 40 journeys, started {started}"
    );
    ensure!(counts.dropped == 0, "dropped {}", counts.dropped);
    // Per second of intended start: 4 s of arrivals span 4 or 5 wall-clock seconds.
    let by_second: u64 = counts.seconds.iter().map(|s| s.started).sum();
    ensure!(
        by_second == started && (4..=5).contains(&counts.seconds.len()),
        "per-second starts {:?} do not add up to {started}",
        counts.seconds
    );
    for kind in JourneyKind::ALL {
        ensure!(
            counts.started[kind.name()] > 0,
            "no {} journey started",
            kind.name()
        );
        for step in kind.steps() {
            let endpoint = results
                .endpoints
                .get(step.name())
                .with_context(|| format!("no results for {}", step.name()))?;
            ensure!(
                endpoint.totals.requests > 0 && endpoint.totals.errors.total() == 0,
                "{}: {} requests, errors {:?}",
                step.name(),
                endpoint.totals.requests,
                endpoint.totals.errors
            );
        }
    }

    // The ledger holds exactly the acknowledged orders, and each is in the database
    // under its idempotency key.
    let ledger = Ledger::read(&ledger_path)?;
    let placed = results.endpoints[Step::PlaceOrder.name()].totals.ok;
    let acknowledged: Vec<_> = ledger
        .iter()
        .filter(|entry| entry.outcome == WriteOutcome::Acknowledged)
        .collect();
    ensure!(
        acknowledged.len() as u64 == placed && placed > 0,
        "{placed} orders acknowledged, {} in the ledger",
        acknowledged.len()
    );
    let orders = h.database(ServiceKind::Orders)?.get().await?;
    for entry in &acknowledged {
        let id: uuid::Uuid = entry.order_id.as_deref().context("order id")?.parse()?;
        let row = orders
            .query_opt("SELECT idempotency_key FROM orders WHERE id = $1", &[&id])
            .await?
            .with_context(|| format!("acknowledged order {id} is not in the orders database"))?;
        let key: Option<String> = row.get(0);
        ensure!(
            key.as_deref() == Some(entry.idempotency_key.as_str()),
            "order {id}: key {key:?}"
        );
    }

    // Every acknowledged order was seen by the read model: one window each.
    let window = results
        .consistency_window
        .as_ref()
        .context("no consistency window")?
        .decode()?;
    ensure!(
        window.len() == placed && counts.consistency_unseen == 0,
        "{placed} orders, {} windows, {} unseen",
        window.len(),
        counts.consistency_unseen
    );
    ensure!(results.write_ledger.as_deref() == ledger_path.to_str());
    Ok(())
}

/// Goose runs closed loops as fast as answers come, which would trip the gateway's
/// rate limit on anonymous browsing; checkout is paced by its login (argon2).
pub async fn goose_drives_the_same_journeys(h: Arc<Harness>) -> anyhow::Result<()> {
    let mut config = JourneyConfig::new(
        &h.system.gateway_url,
        "checkout=1".parse().map_err(anyhow::Error::msg)?,
        Schedule::closed(Duration::from_secs(3))?,
    );
    config.driver = Driver::Goose;
    config.concurrency = 2;
    config.users = 2;
    let results = journeys::run(config, |_| {}).await?;
    let counts = results.journeys.as_ref().context("journey counts")?;
    ensure!(counts.driver == "goose");
    for step in JourneyKind::Checkout.steps() {
        let totals = &results.endpoints[step.name()].totals;
        ensure!(
            totals.ok > 0 && totals.errors.total() == 0,
            "{}: {} ok, errors {:?}",
            step.name(),
            totals.ok,
            totals.errors
        );
    }
    let window = results
        .consistency_window
        .as_ref()
        .context("window")?
        .decode()?;
    ensure!(window.len() == results.endpoints[Step::PlaceOrder.name()].totals.ok);
    Ok(())
}
