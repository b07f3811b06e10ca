//! The load generator's user journeys against the real system: every journey the
//! schedule asked for starts, every step is recorded, the write ledger agrees with
//! the orders database (the ledger is what the consistency checker will trust), and
//! shoppers log in once while the `login` journey logs in every time.

use std::{sync::Arc, time::Duration};

use anyhow::{ensure, Context as _};
use faultline_loadgen::{
    journeys::{
        self,
        ledger::{Ledger, WriteOutcome},
        Driver, JourneyConfig, JourneyKind, Step,
    },
    Schedule,
};
use faultline_results::Arrivals;
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
    let mix = [
        JourneyKind::Browse,
        JourneyKind::Checkout,
        JourneyKind::Ingest,
    ];
    for kind in mix {
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
    // Checkouts and ingests of 4 users: each user logs in on its first journey only.
    let logins = results.endpoints[Step::Login.name()].totals.requests;
    ensure!(
        (1..=4).contains(&logins),
        "4 users logged in {logins} times"
    );
    Ok(())
}

/// N checkouts by U users log in at most U times (the argon2 verification of a login
/// would otherwise cap the checkout rate), and each `login` journey is one login.
pub async fn shoppers_log_in_once_and_login_journeys_every_time(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let run_logging_in = |mix: &str, users: usize, login_before_start: bool| {
        let mix = mix.parse().map_err(anyhow::Error::msg);
        let gateway_url = h.system.gateway_url.clone();
        async move {
            let schedule = Schedule::constant(6.0, Duration::from_secs(3), Arrivals::Uniform)?;
            let mut config = JourneyConfig::new(&gateway_url, mix?, schedule);
            config.users = users;
            config.login_before_start = login_before_start;
            config.seed = Some(11);
            anyhow::Ok(journeys::run(config, |_| {}).await?)
        }
    };
    let run = |mix: &str, users: usize| run_logging_in(mix, users, false);
    let endpoint = |results: &faultline_results::Results, step: Step| {
        results
            .endpoints
            .get(step.name())
            .map(|endpoint| (endpoint.totals.requests, endpoint.totals.ok))
            .with_context(|| format!("no results for {}", step.name()))
    };

    let users = 3;
    let results = run("checkout=1", users).await?;
    let counts = results.journeys.as_ref().context("journey counts")?;
    let checkouts = counts.started["checkout"];
    ensure!(
        checkouts == 18,
        "6/s for 3 s is 18 checkouts, started {checkouts}"
    );
    let (orders, placed) = endpoint(&results, Step::PlaceOrder)?;
    ensure!(
        orders == checkouts && placed == checkouts,
        "{checkouts} checkouts sent {orders} orders, {placed} placed"
    );
    let (logins, logged_in) = endpoint(&results, Step::Login)?;
    ensure!(
        (1..=users as u64).contains(&logins) && logged_in == logins,
        "{checkouts} checkouts by {users} users logged in {logins} times ({logged_in} ok)"
    );

    let results = run("login=1", 2).await?;
    let counts = results.journeys.as_ref().context("journey counts")?;
    let started = counts.started["login"];
    let (logins, logged_in) = endpoint(&results, Step::Login)?;
    ensure!(
        started == 18 && logins == started && logged_in == started,
        "{started} login journeys, {logins} logins, {logged_in} ok"
    );

    // Logged in at set-up (a benchmark's option): the timed run has no login at all.
    let results = run_logging_in("checkout=1", users, true).await?;
    let counts = results.journeys.as_ref().context("journey counts")?;
    let checkouts = counts.started["checkout"];
    let (orders, placed) = endpoint(&results, Step::PlaceOrder)?;
    let logins = results
        .endpoints
        .get(Step::Login.name())
        .map_or(0, |endpoint| endpoint.totals.requests);
    ensure!(
        checkouts == 18 && orders == checkouts && placed == checkouts && logins == 0,
        "users logged in before the start: {checkouts} checkouts, {placed} of {orders} orders placed, {logins} logins timed"
    );
    Ok(())
}

/// Goose runs closed loops as fast as answers come, which would trip the gateway's
/// rate limit on anonymous browsing; checkout is paced by the read model it waits for.
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
