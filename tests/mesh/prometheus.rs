//! Prometheus under mutual TLS: a system of its own (the shared one runs no Prometheus),
//! with two orders replicas and a gateway serving HTTPS, whose Prometheus must scrape
//! every replica over HTTPS (those of the mesh with its own certificate, the gateway
//! trusting the gateway's own CA), and hold a series of each service.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use faultline_system::services::ServiceKind;
use faultline_system::stack::prometheus::JOB;
use faultline_system::stack::{PrometheusQuery, PrometheusSpec};
use faultline_system::supervisor::{System, SystemSpec};

use crate::harness::{eventually, services_with_series};

/// Every replica of a system started with `--mtls --tls --prometheus` is an `up` target
/// scraped over HTTPS, and a metric every service exports has a series of each service.
pub async fn prometheus_scrapes_every_replica_over_mutual_tls(
    _shared: Arc<super::Harness>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut spec = SystemSpec::new(env!("CARGO_BIN_EXE_faultline").into());
    spec.mtls = true;
    spec.gateway_tls = true;
    spec.stack.prometheus = Some(PrometheusSpec {
        dir: Some(dir.path().to_path_buf()),
    });
    spec.replicas.insert(ServiceKind::Orders, 2);
    spec.rate_limit = 0.0;
    spec.products = 10;
    let system = System::start(spec).await?;
    let checked = scraped_over_mutual_tls(&system).await;
    system.stop().await;
    checked
}

async fn scraped_over_mutual_tls(system: &System) -> anyhow::Result<()> {
    let url = (system.stack())
        .and_then(|stack| stack.endpoints().prometheus_url)
        .context("the stack runs no Prometheus")?;
    let prometheus = &PrometheusQuery::new(&url);
    // Each replica's scrape URL as Prometheus writes it: scheme, address, path.
    let replicas: &BTreeSet<String> = &(system.services().into_iter())
        .map(|(_, url, _)| format!("{url}/metrics"))
        .collect();
    ensure!(
        replicas.iter().all(|u| u.starts_with("https://")),
        "every replica serves HTTPS (the gateway to the outside, the rest mutual TLS): \
         {replicas:?}"
    );
    eventually(Duration::from_secs(60), || async move {
        let targets = (prometheus.active_targets().await).map_err(anyhow::Error::msg)?;
        let up: BTreeSet<String> = (targets.iter())
            .filter(|t| t.health == "up")
            .map(|t| t.scrape_url.clone())
            .collect();
        ensure!(
            &up == replicas,
            "up targets {up:?}, replicas {replicas:?}: {targets:?}"
        );
        let jobs: BTreeSet<&str> = (targets.iter())
            .filter_map(|t| t.labels.get("job").map(String::as_str))
            .collect();
        ensure!(jobs == BTreeSet::from([JOB]), "job labels {jobs:?}");
        Ok(())
    })
    .await?;
    let services: &BTreeSet<String> = &(ServiceKind::ALL.iter())
        .map(|kind| kind.name().to_string())
        .collect();
    eventually(Duration::from_secs(30), || async move {
        let seen = services_with_series(prometheus, "faultline_outbox_backlog").await?;
        ensure!(
            &seen == services,
            "series of {seen:?}, services {services:?}"
        );
        Ok(())
    })
    .await
}
