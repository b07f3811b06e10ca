//! Traces of the reference system in a real Jaeger: one system started with tracing on
//! (Jaeger in the stack, every service exporting to it over OTLP) for the whole binary.
//! A checkout is sent through the gateway under a `traceparent` of the test's own, and the
//! trace is read back from Jaeger's query API: every hop of the saga must be in it, and
//! every span's parent must be in it too. The same system runs Prometheus: [`prometheus`]
//! checks its scrape, the Grafana dashboard against it, and a run that keeps its series.
//! Set TEST_LOG=1 for the logs; the services' logs
//! and Jaeger's are in the stack's data directory.

#![allow(clippy::unwrap_used)]

#[path = "../common/harness.rs"]
mod harness;
#[path = "../common/programs.rs"]
mod programs;
mod prometheus;

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::services::ServiceKind;
use faultline_system::stack::jaeger::TraceSpan;
use faultline_system::stack::{JaegerQuery, PrometheusQuery, PrometheusSpec};
use faultline_system::supervisor::{System, SystemSpec};
use nix::sys::signal::Signal;

type Harness = harness::Running<Observed>;

/// The stack's Jaeger and Prometheus, which every service reports to.
struct Observed {
    jaeger: JaegerQuery,
    prometheus: PrometheusQuery,
}

impl harness::Setup for Observed {
    fn spec() -> SystemSpec {
        let mut spec = harness::base_spec();
        spec.stack.tracing = true;
        spec.stack.prometheus = Some(PrometheusSpec::default());
        spec
    }

    fn extra(system: &System) -> anyhow::Result<Observed> {
        let endpoints = system.stack().context("a local stack")?.endpoints();
        let jaeger = endpoints.jaeger_url.context("the stack runs no Jaeger")?;
        let prometheus = endpoints
            .prometheus_url
            .context("the stack runs no Prometheus")?;
        Ok(Observed {
            jaeger: JaegerQuery::new(&jaeger),
            prometheus: PrometheusQuery::new(&prometheus),
        })
    }
}

fn main() -> ExitCode {
    let tests: Vec<(&'static str, harness::Test<Harness>)> = vec![
        (
            "one_checkout_is_one_trace_through_every_hop_with_parents_that_link",
            |h| Box::pin(one_checkout_is_one_trace(h)),
        ),
        (
            "a_trace_survives_a_kafka_hop_across_a_killed_and_restarted_consumer",
            |h| Box::pin(trace_survives_a_killed_consumer(h)),
        ),
        (
            "a_run_with_postgresql_slowed_shows_database_spans_as_the_slow_orders_largest_share",
            |_| Box::pin(database_latency_shows_in_the_reports_traces()),
        ),
        (
            "the_grafana_dashboard_has_what_grafana_needs_and_its_promql_parses",
            |_| Box::pin(prometheus::the_dashboard_has_what_grafana_needs_and_its_promql_parses()),
        ),
        (
            "prometheus_scrapes_every_replica_and_holds_each_services_series",
            |h| {
                Box::pin(
                    prometheus::prometheus_scrapes_every_replica_and_holds_each_services_series(h),
                )
            },
        ),
        (
            "every_metric_the_grafana_dashboard_reads_is_one_the_services_export",
            |h| {
                Box::pin(prometheus::every_metric_the_dashboard_reads_is_one_the_services_export(h))
            },
        ),
        ("load_with_a_trace_sample_ratio_keeps_exemplars", |h| {
            Box::pin(prometheus::load_with_a_trace_sample_ratio_keeps_exemplars(
                h,
            ))
        }),
        (
            "a_run_with_prometheus_keeps_its_series_and_charts_the_request_rate",
            |_| {
                Box::pin(
                    prometheus::a_run_with_prometheus_keeps_its_series_and_charts_the_request_rate(
                    ),
                )
            },
        ),
    ];
    harness::run(tests)
}

/// A random sampled W3C `traceparent` of the test's own: its trace id and span id.
fn new_traceparent() -> (String, String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

impl Harness {
    /// Places one order under `traceparent` and waits until its view says COMPLETED.
    async fn checkout(&self, token: &str, traceparent: &str) -> anyhow::Result<()> {
        let key = uuid::Uuid::new_v4().to_string();
        let id = self.place_order(token, 1, &key, Some(traceparent)).await?;
        self.completed(token, &id, Duration::from_secs(90)).await
    }

    /// The trace once `complete` says it holds everything expected (spans arrive in
    /// batches), or what Jaeger had at the deadline.
    async fn trace_when(
        &self,
        trace_id: &str,
        complete: impl Fn(&[TraceSpan]) -> bool,
    ) -> anyhow::Result<Vec<TraceSpan>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self
                .extra
                .jaeger
                .trace(trace_id)
                .await
                .map_err(anyhow::Error::msg)?;
            if complete(&spans) || Instant::now() >= deadline {
                return Ok(spans);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn services(spans: &[TraceSpan]) -> HashSet<&str> {
    spans.iter().map(|span| span.service.as_str()).collect()
}

/// The trace as lines a person can read in a failure message.
fn describe(spans: &[TraceSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} parent={:?} {}us",
                s.span_id, s.service, s.operation, s.parent_id, s.duration_us
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `span` descends from the span `ancestor` through parents held in `by_id`.
fn descends_from(span: &TraceSpan, ancestor: &str, by_id: &HashMap<&str, &TraceSpan>) -> bool {
    let mut current = span;
    // A trace has no cycles; the bound keeps a broken one from looping.
    for _ in 0..by_id.len() + 1 {
        match current.parent_id.as_deref() {
            Some(parent) if parent == ancestor => return true,
            Some(parent) => match by_id.get(parent) {
                Some(next) => current = next,
                None => return false,
            },
            None => return false,
        }
    }
    false
}

/// Whether every span's parent is in the trace, or is the client's own span.
fn parents_present(spans: &[TraceSpan], client_span: &str) -> bool {
    spans.iter().all(|span| {
        span.parent_id.as_deref().is_some_and(|parent| {
            parent == client_span || spans.iter().any(|s| s.span_id == parent)
        })
    })
}

const SAGA_SERVICES: [&str; 6] = [
    "gateway",
    "orders",
    "inventory",
    "payments",
    "shipping",
    "analytics",
];

async fn one_checkout_is_one_trace(h: Arc<Harness>) -> anyhow::Result<()> {
    let token = h.token().await?;
    let (traceparent, trace_id, client_span) = new_traceparent();
    h.checkout(&token, &traceparent).await?;
    // Spans arrive in batches, the saga's last ones seconds after the order completed.
    let spans = h
        .trace_when(&trace_id, |spans| {
            let seen = services(spans);
            SAGA_SERVICES.iter().all(|s| seen.contains(s))
                && spans.iter().any(|s| s.operation == "saga step shipping")
                && parents_present(spans, &client_span)
        })
        .await?;
    let trace = describe(&spans);
    let seen = services(&spans);
    ensure!(spans.len() >= 8, "{} spans:\n{trace}", spans.len());
    ensure!(seen.len() >= 6, "services {seen:?}:\n{trace}");
    for service in SAGA_SERVICES {
        ensure!(seen.contains(service), "no span of {service}:\n{trace}");
    }

    // Parents link: the gateway's request is the child of the test's span, and every other
    // span's parent is in the trace.
    let by_id: HashMap<&str, &TraceSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let roots: Vec<&TraceSpan> = spans
        .iter()
        .filter(|s| s.parent_id.as_deref() == Some(client_span.as_str()))
        .collect();
    ensure!(
        roots.len() == 1 && roots[0].service == "gateway",
        "the gateway's request must be the one child of the client's span:\n{trace}"
    );
    let gateway = roots[0];
    for span in &spans {
        if span.span_id == gateway.span_id {
            continue;
        }
        ensure!(
            descends_from(span, &gateway.span_id, &by_id),
            "{} {} {} does not link to the gateway's request:\n{trace}",
            span.span_id,
            span.service,
            span.operation
        );
    }

    // Each Kafka hop: a consume span is the child of the publish span of its event.
    let consumes: Vec<&TraceSpan> = spans
        .iter()
        .filter(|s| s.operation.starts_with("consume "))
        .collect();
    ensure!(
        consumes.len() >= 5,
        "{} consume spans:\n{trace}",
        consumes.len()
    );
    for consume in consumes {
        let parent = consume
            .parent_id
            .as_deref()
            .and_then(|id| by_id.get(id))
            .context("a consume span without its parent")?;
        let event = consume.operation.trim_start_matches("consume ");
        ensure!(
            parent.operation == format!("publish {event}"),
            "{} {} has parent {} {}:\n{trace}",
            consume.service,
            consume.operation,
            parent.service,
            parent.operation
        );
    }
    // The HTTP hop gateway -> orders, database transactions and the saga's steps.
    ensure!(
        spans.iter().any(|s| s.service == "orders"
            && s.operation.starts_with("POST")
            && s.parent_id.as_deref() == Some(gateway.span_id.as_str())),
        "no orders request under the gateway's:\n{trace}"
    );
    ensure!(
        spans
            .iter()
            .any(|s| s.operation == "db transaction" && s.service == "inventory"),
        "no database transaction of inventory:\n{trace}"
    );
    for step in ["reserving", "charging", "shipping"] {
        ensure!(
            spans
                .iter()
                .any(|s| s.operation == format!("saga step {step}")),
            "no saga step {step}:\n{trace}"
        );
    }
    Ok(())
}

/// Shipping is frozen while an order reaches its step (the command waits in Kafka, and
/// perhaps in the frozen consumer's buffer), then killed; the supervisor restarts it and
/// the new process consumes the command. Its consume span must still be the child of the
/// orders relay's publish span.
async fn trace_survives_a_killed_consumer(h: Arc<Harness>) -> anyhow::Result<()> {
    let token = h.token().await?;
    let (traceparent, trace_id, _) = new_traceparent();
    let restarts = h.system.restarts(ServiceKind::Shipping, 1);
    h.system.signal(ServiceKind::Shipping, 1, Signal::SIGSTOP)?;
    let placed = async {
        let checkout = h.checkout(&token, &traceparent);
        tokio::pin!(checkout);
        // Until the shipping command is published: the saga cannot go further while
        // shipping is frozen.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            tokio::select! {
                done = &mut checkout => bail!("the order completed with shipping frozen: {done:?}"),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let spans = h
                .extra
                .jaeger
                .trace(&trace_id)
                .await
                .map_err(anyhow::Error::msg)?;
            if spans
                .iter()
                .any(|s| s.operation == "publish shipping.schedule")
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the shipping command was never published"
            );
        }
        h.system.signal(ServiceKind::Shipping, 1, Signal::SIGKILL)?;
        checkout.await
    }
    .await;
    if placed.is_err() {
        // Leave shipping running for the tests after this one.
        let _ = h.system.signal(ServiceKind::Shipping, 1, Signal::SIGCONT);
    }
    placed?;
    ensure!(
        h.system.restarts(ServiceKind::Shipping, 1) > restarts,
        "shipping was not restarted"
    );
    let spans = h
        .trace_when(&trace_id, |spans| {
            spans
                .iter()
                .any(|s| s.service == "shipping" && s.operation.starts_with("consume "))
        })
        .await?;
    let trace = describe(&spans);
    let by_id: HashMap<&str, &TraceSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let consumed = spans
        .iter()
        .find(|s| s.service == "shipping" && s.operation.starts_with("consume "))
        .with_context(|| format!("no consume span of the restarted shipping:\n{trace}"))?;
    let parent = consumed
        .parent_id
        .as_deref()
        .and_then(|id| by_id.get(id))
        .with_context(|| format!("the consume span's parent is not in the trace:\n{trace}"))?;
    ensure!(
        parent.service == "orders" && parent.operation.starts_with("publish "),
        "the redelivered command's parent is {} {}:\n{trace}",
        parent.service,
        parent.operation
    );
    Ok(())
}

/// A scenario run of its own (`faultline run`, its own system) with tracing on, checkouts,
/// and 500 ms of latency on PostgreSQL in the middle: the slowest orders' traces, fetched
/// into results, spend most of their time in database transactions, and the report draws
/// their waterfalls and that table.
async fn database_latency_shows_in_the_reports_traces() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (results, out, stderr) = run_scenario(
        dir.path(),
        r#"name = "traced-database-latency"
[system]
tracing = true
rate_limit = 0
products = 20
[load]
rate = 10
duration = "14s"
connections = 64
timeout = "20s"
[load.journeys]
mix = { checkout = 1 }
users = 5
consistency_deadline = "30s"
[[faults]]
at = "4s"
duration = "6s"
kind = "latency"
target = "postgres"
latency = "500ms"
"#,
    )
    .await?;
    let traces = results.traces.as_ref().context("results without traces")?;
    ensure!(
        traces.source.is_some(),
        "the traces were not read from Jaeger: {stderr}"
    );
    let endpoint = "POST /api/orders";
    let p99 = results
        .endpoints
        .get(endpoint)
        .context("no orders placed")?
        .totals
        .latency_summary
        .p99_us;
    let slow: Vec<&faultline_results::Exemplar> = traces
        .exemplars
        .iter()
        .filter(|e| {
            e.endpoint == endpoint
                && faultline_results::histogram::reaches(e.latency_us, p99)
                && !e.spans.is_empty()
        })
        .collect();
    if slow.is_empty() {
        let of_endpoint: Vec<(u64, usize)> = (traces.exemplars.iter())
            .filter(|e| e.endpoint == endpoint)
            .map(|e| (e.latency_us, e.spans.len()))
            .collect();
        anyhow::bail!(
            "no p99 exemplar of {endpoint} with its trace (p99 {p99} µs; its exemplars' \
             latency in µs and span count: {of_endpoint:?}): {stderr}"
        );
    }
    let (_, hops) = faultline_reports::traces::shares(&slow);
    // Database spans: waiting for a pooled connection, and the transaction.
    let database: f64 = (hops.iter())
        .filter(|(hop, _)| hop.contains(": db "))
        .map(|(_, share)| share)
        .sum();
    let (largest, share) = (hops.iter())
        .filter(|(hop, _)| !hop.contains(": db "))
        .max_by(|a, b| a.1.total_cmp(b.1))
        .context("no hop")?;
    ensure!(
        database > *share,
        "the slow orders spent {:.0}% in database spans, {:.0}% in {largest}: {hops:?}",
        database * 100.0,
        share * 100.0
    );
    let html = std::fs::read_to_string(out.join("index.html"))?;
    let section = html
        .split("<h2 id=\"traces\">")
        .nth(1)
        .context("no traces section in the report")?;
    ensure!(
        section.contains("<svg") && section.contains("db transaction"),
        "the section has no waterfall with database spans"
    );
    Ok(())
}

/// Runs the scenario `text` with `faultline run` in `dir`: its results, output directory
/// and stderr.
async fn run_scenario(
    dir: &std::path::Path,
    text: &str,
) -> anyhow::Result<(faultline_results::Results, std::path::PathBuf, String)> {
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, text)?;
    let out = dir.join("out");
    let run = programs::faultline_run(&scenario, &out, "60s");
    let output = tokio::process::Command::from(run).output().await?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let results = faultline_results::Results::read(&out.join("results.json"))
        .with_context(|| format!("no results; stderr:\n{stderr}"))?;
    Ok((results, out, stderr))
}
