//! The stack's real Prometheus (`--prometheus`, `[system] prometheus = true`) and what
//! reads it: the harness' system runs one, which must scrape every replica and hold each
//! service's series after traffic; the Grafana dashboard in `deploy/grafana/` must have
//! what Grafana needs and name only metrics that this Prometheus really holds; a scenario
//! run must keep the series under its output directory and chart the request rate it read
//! back. The load generator's `--trace-sample-ratio` is checked here too, against the same
//! system, since it needs the gateway and nothing else.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use faultline_system::services::ServiceKind;
use serde_json::Value;

use crate::harness::{eventually, services_with_series};
use crate::programs::which;
use crate::{new_traceparent, run_scenario, Harness};

/// The dashboard, from the repository root.
fn dashboard() -> anyhow::Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/faultline.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Every PromQL expression of the dashboard's panels.
fn expressions(dashboard: &Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_string))
        .collect()
}

/// The metric names an expression reads: each `faultline_...` word.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in expr.match_indices("faultline_") {
        let name: String = expr[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

/// The dashboard has what Grafana's import needs, and its PromQL parses: promtool checks
/// every expression as a recording rule (with Grafana's `$__rate_interval` made concrete).
pub async fn the_dashboard_has_what_grafana_needs_and_its_promql_parses() -> anyhow::Result<()> {
    let dashboard = dashboard()?;
    for field in ["uid", "title"] {
        ensure!(
            dashboard[field].as_str().is_some_and(|s| !s.is_empty()),
            "the dashboard has no {field}"
        );
    }
    let variables: Vec<&str> = (dashboard["templating"]["list"].as_array())
        .map(|list| list.iter().filter_map(|v| v["name"].as_str()).collect())
        .unwrap_or_default();
    let panels = dashboard["panels"]
        .as_array()
        .filter(|panels| !panels.is_empty())
        .context("the dashboard has no panels")?;
    for panel in panels {
        let title = panel["title"].as_str().context("a panel without a title")?;
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        let sources = std::iter::once(&panel["datasource"])
            .chain(targets.iter().map(|target| &target["datasource"]));
        for source in sources {
            ensure!(
                source["type"] == "prometheus",
                "{title}: a datasource that is not Prometheus: {source}"
            );
            let uid = source["uid"].as_str().unwrap_or_default();
            let variable = uid.trim_start_matches("${").trim_end_matches('}');
            ensure!(
                variables.contains(&variable),
                "{title}: datasource {uid:?} is no variable of the dashboard ({variables:?})"
            );
        }
        ensure!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()),
            "{title}: a panel without PromQL targets"
        );
        ensure!(panel["gridPos"].is_object(), "{title}: no gridPos");
    }
    let Some(promtool) = which("promtool") else {
        eprintln!("promtool is not installed (make setup): the PromQL was not parsed");
        return Ok(());
    };
    let rules: Vec<String> = expressions(&dashboard)
        .iter()
        .enumerate()
        .map(|(index, expr)| {
            let expr = expr.replace("$__rate_interval", "1m");
            format!("      - record: dashboard:expr{index}\n        expr: {expr:?}\n")
        })
        .collect();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(
        &file,
        format!(
            "groups:\n  - name: dashboard\n    rules:\n{}",
            rules.concat()
        ),
    )?;
    let output = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()?;
    ensure!(
        output.status.success(),
        "promtool rejects the dashboard's PromQL:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Some traffic through every hop: a new user's checkout.
async fn traffic(h: &Harness) -> anyhow::Result<()> {
    let token = h.token().await?;
    let (traceparent, _, _) = new_traceparent();
    h.checkout(&token, &traceparent).await
}

/// Every replica the system runs is a target that is `up`, and after a checkout a
/// metric every service exports has a series of each service, and the request rate of
/// the gateway and orders is above zero.
pub async fn prometheus_scrapes_every_replica_and_holds_each_services_series(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let ports: BTreeSet<String> = h
        .system
        .services()
        .iter()
        .filter_map(|(_, url, _)| url.rsplit(':').next().map(str::to_string))
        .collect();
    ensure!(ports.len() == ServiceKind::ALL.len(), "ports {ports:?}");
    // Copies of references move into each try's future.
    let (prometheus, ports) = (&h.extra.prometheus, &ports);
    eventually(Duration::from_secs(60), || async move {
        let targets = (prometheus.active_targets().await).map_err(anyhow::Error::msg)?;
        let up: BTreeSet<String> = (targets.iter())
            .filter(|t| t.health == "up")
            .filter_map(|t| {
                let port = t.scrape_url.rsplit(':').next()?;
                Some(port.split('/').next()?.to_string())
            })
            .collect();
        ensure!(
            &up == ports,
            "up targets {up:?}, replicas {ports:?}: {targets:?}"
        );
        Ok(())
    })
    .await?;
    traffic(&h).await?;
    let services: BTreeSet<String> = ServiceKind::ALL
        .iter()
        .map(|kind| kind.name().to_string())
        .collect();
    let services = &services;
    eventually(Duration::from_secs(30), || async move {
        let seen = services_with_series(prometheus, "faultline_outbox_backlog").await?;
        ensure!(
            &seen == services,
            "series of {seen:?}, services {services:?}"
        );
        let rate = "sum by (service) (rate(faultline_http_request_duration_seconds_count[30s]))";
        let rates = prometheus.query(rate).await.map_err(anyhow::Error::msg)?;
        for service in ["gateway", "orders"] {
            let value = (rates.iter())
                .find(|s| s.labels.get("service").map(String::as_str) == Some(service))
                .and_then(|s| s.points.last().map(|p| p.1));
            ensure!(
                value.is_some_and(|v| v > 0.0),
                "no request rate of {service}"
            );
        }
        Ok(())
    })
    .await
}

/// Every metric name the dashboard's PromQL reads is one the running services export:
/// after a checkout, Prometheus holds a series of each.
pub async fn every_metric_the_dashboard_reads_is_one_the_services_export(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let wanted: BTreeSet<String> = expressions(&dashboard()?)
        .iter()
        .flat_map(|expr| metric_names(expr))
        .collect();
    ensure!(
        !wanted.is_empty(),
        "the dashboard reads no faultline_ metric"
    );
    traffic(&h).await?;
    let (prometheus, wanted) = (&h.extra.prometheus, &wanted);
    eventually(Duration::from_secs(60), || async move {
        let held: BTreeSet<String> = (prometheus.metric_names().await)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .collect();
        let missing: Vec<&String> = wanted.difference(&held).collect();
        ensure!(
            missing.is_empty(),
            "the dashboard reads metrics no service exports: {missing:?}"
        );
        Ok(())
    })
    .await
}

/// `faultline load --journeys … --trace-sample-ratio 1` sends sampled trace context and
/// keeps the slowest requests' trace ids, without `faultline run`; a ratio above 1 is a
/// usage error (exit 2).
pub async fn load_with_a_trace_sample_ratio_keeps_exemplars(h: Arc<Harness>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("results.json");
    let load = |ratio: &str| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
        command
            .args(["load", &h.system.gateway_url, "--journeys", "browse=1"])
            .args(["--rate", "5", "--duration", "3s", "--users", "2", "-q"])
            .args(["--trace-sample-ratio", ratio, "-o"])
            .arg(&out)
            .env("FAULTLINE_LOG", "warn");
        command
    };
    let refused = load("1.5").output().await?;
    ensure!(
        refused.status.code() == Some(2),
        "--trace-sample-ratio 1.5 ended with {:?}",
        refused.status
    );
    let output = load("1").output().await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "faultline load failed: {stderr}");
    let results = faultline_results::Results::read(&out)?;
    let traces = results.traces.as_ref().context("results without traces")?;
    ensure!(traces.sample_ratio == 1.0, "ratio {}", traces.sample_ratio);
    ensure!(!traces.exemplars.is_empty(), "no exemplar kept: {stderr}");
    Ok(())
}

/// A scenario with `[system] prometheus = true` keeps Prometheus' series under its output
/// directory, names them in results and the report, and charts the request rate it read
/// back; `trace_sample_ratio` reaches the load generator.
pub async fn a_run_with_prometheus_keeps_its_series_and_charts_the_request_rate(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (results, out, stderr) = run_scenario(
        dir.path(),
        r#"name = "prometheus-kept"
[system]
prometheus = true
tracing = true
trace_sample_ratio = 0.5
rate_limit = 0
products = 10
[load]
rate = 5
duration = "8s"
[load.journeys]
mix = { checkout = 1, browse = 1 }
users = 3
"#,
    )
    .await?;
    let source = results
        .prometheus
        .as_ref()
        .with_context(|| format!("results name no Prometheus: {stderr}"))?;
    let kept = Path::new(&source.data_dir);
    ensure!(
        kept.starts_with(std::path::absolute(&out)?),
        "{} is not under the output directory",
        kept.display()
    );
    ensure!(
        kept.join("data").is_dir() && kept.join("prometheus.yml").is_file(),
        "{} holds no TSDB and configuration",
        kept.display()
    );
    let rates: Vec<&faultline_results::MetricSeries> = (results.server_metrics.iter())
        .filter(|s| s.name == "faultline_http_requests_per_second")
        .collect();
    let gateway = rates
        .iter()
        .find(|s| s.labels.get("service").map(String::as_str) == Some("gateway"));
    if !gateway.is_some_and(|s| s.points.iter().any(|p| p.1 > 0.0)) {
        bail!("no gateway request rate read back from Prometheus: {rates:?}\n{stderr}");
    }
    let traces = results.traces.as_ref().context("results without traces")?;
    ensure!(traces.sample_ratio == 0.5, "ratio {}", traces.sample_ratio);
    let html = std::fs::read_to_string(out.join("index.html"))?;
    ensure!(
        html.contains(&source.data_dir),
        "the report does not say where the series are"
    );
    ensure!(
        html.contains("data-chart=\"server-request-rate\""),
        "the report does not chart the request rate"
    );
    Ok(())
}
