//! The CPU one exported span costs, with no stack: the spans of one checkout's saga (45,
//! made by the helpers of `platform::telemetry` the way the services make them), at a
//! steady rate, once with export off and once exported with OTLP to a sink that reads and
//! discards `/v1/traces`. The difference in process CPU (getrusage: every thread, the
//! export thread included), divided by the spans the sink received, is the price of a span.
//!
//! ```text
//! cargo run --release --example span_cost -p faultline-system -- [--rate 400] [--seconds 10] [--rounds 3] [--unsampled]
//! ```
//!
//! The program is the sink and the conductor; each measured phase is a child process of it
//! (`span_cost phase ...`), so that a phase's CPU is its own and export is set up once per
//! process, as in a service. Run it under `perf record -g` with `phase` to see where a
//! phase's time goes.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use axum::http::{HeaderMap, HeaderValue};
use faultline_system::platform::envelope::Envelope;
use faultline_system::platform::http::{TraceContext, TRACEPARENT};
use faultline_system::platform::telemetry::{self, TelemetryArgs};
use nix::sys::resource::{getrusage, UsageWho};
use tokio::io::AsyncBufReadExt;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Spans one checkout makes across the services (see [`checkout`]): gateway 1, orders 19,
/// inventory, payments and shipping 3 each, analytics 8, notifications 8.
const SPANS_PER_CHECKOUT: u64 = 45;

/// Times a database transaction's future is polled (BEGIN, a statement, the outbox's
/// INSERT, COMMIT): a `tracing` span is entered and left at each poll.
const POLLS_PER_TRANSACTION: usize = 4;

/// Checkouts are started in bursts this often, as many as the rate asks for.
const TICK: Duration = Duration::from_millis(10);

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(subcommand)]
    phase: Option<Phase>,
    /// Checkouts per second.
    #[arg(long, default_value_t = 400)]
    rate: u32,
    /// Length of each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Phases with export off and on, alternated.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The client's `traceparent` says "not sampled": what an unrecorded trace costs.
    #[arg(long)]
    unsampled: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Phase {
    /// One measured phase: prints `cpu_us checkouts` on stdout.
    Phase {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        rate: u32,
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        unsampled: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    match cli.phase {
        Some(Phase::Phase {
            endpoint,
            rate,
            seconds,
            unsampled,
        }) => phase(endpoint, rate, seconds, unsampled),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(conduct(&cli)),
    }
}

/// Serves the sink, runs the phases as children, prints what each cost.
async fn conduct(cli: &Cli) -> anyhow::Result<()> {
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let counter = received.clone();
    let sink = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            counter.fetch_add(count_spans(&body).unwrap_or(0), Ordering::Relaxed);
            async { "" }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, sink).await });

    println!(
        "{} checkouts/s for {} s per phase, {} spans per checkout, client {}",
        cli.rate,
        cli.seconds,
        SPANS_PER_CHECKOUT,
        if cli.unsampled {
            "unsampled"
        } else {
            "sampled"
        }
    );
    let mut per_span = Vec::new();
    for round in 1..=cli.rounds {
        let (off_us, checkouts) = run_phase(cli, None).await?;
        let before = received.load(Ordering::Relaxed);
        let (on_us, on_checkouts) = run_phase(cli, Some(&endpoint)).await?;
        let exported = received.load(Ordering::Relaxed) - before;
        ensure!(
            checkouts == on_checkouts,
            "the phases made {checkouts} and {on_checkouts} checkouts"
        );
        let made = checkouts * SPANS_PER_CHECKOUT;
        // Spans the exporter dropped would cost nothing and flatter the figure.
        ensure!(
            cli.unsampled || exported == made,
            "round {round}: {made} spans made, {exported} received"
        );
        let extra = on_us.saturating_sub(off_us) as f64;
        let spans = if cli.unsampled { made } else { exported };
        let us = extra / spans as f64;
        per_span.push(us);
        println!(
            "round {round}: export off {:.1} ms CPU, on {:.1} ms CPU, {exported} spans received: \
             {us:.2} µs CPU per span, {:.1} µs per checkout (off: {:.1} µs per checkout)",
            off_us as f64 / 1e3,
            on_us as f64 / 1e3,
            extra / checkouts as f64,
            off_us as f64 / checkouts as f64,
        );
    }
    per_span.sort_by(f64::total_cmp);
    let median = per_span[per_span.len() / 2];
    println!("median: {median:.2} µs CPU per span");
    Ok(())
}

/// Runs one phase as a child process: its CPU in µs and the checkouts it made.
async fn run_phase(cli: &Cli, endpoint: Option<&str>) -> anyhow::Result<(u64, u64)> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .arg("phase")
        .arg("--rate")
        .arg(cli.rate.to_string())
        .arg("--seconds")
        .arg(cli.seconds.to_string());
    if let Some(endpoint) = endpoint {
        command.args(["--endpoint", endpoint]);
    }
    if cli.unsampled {
        command.arg("--unsampled");
    }
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().context("the phase's stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines.next_line().await?.unwrap_or_default();
    let status = child.wait().await?;
    ensure!(status.success(), "the phase failed: {status}");
    let mut fields = line.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(cpu)), Some(Ok(checkouts))) => Ok((cpu, checkouts)),
        _ => bail!("the phase printed {line:?}, not `cpu_us checkouts`"),
    }
}

/// Process CPU (user and system, every thread) so far, in µs.
fn cpu_us() -> anyhow::Result<u64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let (user, system) = (usage.user_time(), usage.system_time());
    let seconds = user.tv_sec() + system.tv_sec();
    let micros = user.tv_usec() + system.tv_usec();
    Ok((seconds * 1_000_000 + micros) as u64)
}

/// One measured phase, set up as `faultline serve` sets up a service: the export layer
/// when there is an endpoint, and the JSON log layer at `info` (writing nowhere).
fn phase(endpoint: Option<String>, rate: u32, seconds: u64, unsampled: bool) -> anyhow::Result<()> {
    let args = TelemetryArgs {
        otlp_endpoint: endpoint,
        trace_sample_ratio: 1.0,
    };
    let (telemetry, spans) = match telemetry::init(&args, "span-cost")? {
        Some((guard, layer)) => (Some(guard), Some(layer.with_filter(telemetry::targets()))),
        None => (None, None),
    };
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .json()
        .with_current_span(true)
        .with_filter(telemetry::not_logged(tracing_subscriber::EnvFilter::new(
            "info",
        )));
    tracing_subscriber::registry().with(spans).with(logs).init();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = cpu_us()?;
    let checkouts = runtime.block_on(async {
        let mut made = 0u64;
        let start = Instant::now();
        let mut ticks = tokio::time::interval(TICK);
        while start.elapsed() < Duration::from_secs(seconds) {
            ticks.tick().await;
            let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
            while made < due {
                checkout(made, unsampled).await;
                made += 1;
            }
        }
        made
    });
    // The last spans are exported before the CPU is read: export is part of the price.
    drop(runtime);
    drop(telemetry);
    let used = cpu_us()? - started;
    println!("{used} {checkouts}");
    Ok(())
}

/// A relay publishing `event` (the span ends at Kafka's acknowledgement: here, at once).
fn publish(relay: &str, topic: &str, event: &mut Envelope) {
    drop(telemetry::publish_span(relay, topic, event));
}

/// A consumer applying `event` in one transaction; `handle` gets the event (its
/// `traceparent` rewritten to the consume span) and returns what it sends on.
async fn consume(
    consumer: &str,
    mut event: Envelope,
    handle: impl FnOnce(&Envelope) -> Vec<(&'static str, Envelope)>,
) -> Vec<(&'static str, Envelope)> {
    let spans = telemetry::consume_spans(consumer, Some(std::slice::from_mut(&mut event)));
    let current = spans.current();
    async move {
        let _transaction = telemetry::transaction_span();
        for _ in 0..POLLS_PER_TRANSACTION {
            tokio::task::yield_now().await;
        }
        handle(&event)
    }
    .instrument(current)
    .await
}

/// An event sent on from `cause`, under its trace context.
fn after(cause: &Envelope, event_type: &str, key: &str) -> Envelope {
    Envelope::new(event_type, 1, key, serde_json::json!({}))
        .with_traceparent(cause.traceparent.clone())
}

/// The spans of one checkout, hop by hop, as the services make them.
async fn checkout(n: u64, unsampled: bool) {
    let key = format!("order-{n}");
    let flags = if unsampled { "00" } else { "01" };
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client = format!("00-{trace_id}-{}-{flags}", &trace_id[..16]);

    // gateway (1 span): the request, forwarded under its own span.
    let forwarded = request("POST", "/api/orders", &client, |_| async {}).await;
    // orders (3 + 2 publishes): the request, a pooled connection, the order's transaction.
    let mut placed = Vec::new();
    request("POST", "/api/orders", &forwarded, |context| {
        let traceparent = Some(context.traceparent.clone());
        let placed = &mut placed;
        let key = &key;
        async move {
            async { tokio::task::yield_now().await }
                .instrument(telemetry::connection_span())
                .await;
            let _transaction = telemetry::transaction_span();
            tokio::task::yield_now().await;
            for (topic, event_type) in [
                ("orders.events", "order.created"),
                ("inventory.commands", "inventory.reserve"),
            ] {
                placed.push((
                    topic,
                    Envelope::new(event_type, 1, key.as_str(), serde_json::json!({}))
                        .with_traceparent(traceparent.clone()),
                ));
            }
        }
    })
    .await;

    let mut announcements = Vec::new();
    let mut commands = Vec::new();
    for (topic, mut event) in placed {
        publish("orders", topic, &mut event);
        match topic {
            "orders.events" => announcements.push(event),
            _ => commands.push(event),
        }
    }
    // Each step: the participant consumes the command and replies (3 spans); orders
    // consumes the reply, records the step and sends the next command and an update (3 + 2).
    let steps = [
        (
            "inventory",
            "inventory.reserved",
            "reserving",
            Some(("payments.commands", "payment.charge")),
        ),
        (
            "payments",
            "payment.charged",
            "charging",
            Some(("shipping.commands", "shipping.schedule")),
        ),
        ("shipping", "shipping.scheduled", "shipping", None),
    ];
    let mut command = commands.pop();
    for (participant, reply_type, step, next) in steps {
        let Some(sent) = command.take() else { break };
        let mut replies = consume(participant, sent, |event| {
            vec![("replies", after(event, reply_type, &key))]
        })
        .await;
        let Some((_, mut reply)) = replies.pop() else {
            break;
        };
        publish(participant, "replies", &mut reply);
        let since = chrono::Utc::now();
        let outgoing = consume("orders", reply, |event| {
            telemetry::saga_step(event, step, since);
            let mut out = vec![("orders.events", after(event, "order.updated", &key))];
            if let Some((topic, command_type)) = next {
                out.push((topic, after(event, command_type, &key)));
            }
            out
        })
        .await;
        for (topic, mut event) in outgoing {
            publish("orders", topic, &mut event);
            match topic {
                "orders.events" => announcements.push(event),
                _ => command = Some(event),
            }
        }
    }
    // analytics and notifications each consume the order's 4 announcements (8 spans each).
    for consumer in ["analytics", "notifications"] {
        for event in &announcements {
            consume(consumer, event.clone(), |_| Vec::new()).await;
        }
    }
}

/// A service serving one request under `traceparent`, as the `observe` middleware does;
/// the `traceparent` it hands on.
async fn request<F, Fut>(method: &str, route: &str, traceparent: &str, handle: F) -> String
where
    F: FnOnce(TraceContext) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(traceparent) {
        headers.insert(TRACEPARENT, value);
    }
    let mut context = TraceContext::from_headers(&headers);
    let span = telemetry::request_span(&headers, &mut context, method, route);
    handle(context.clone()).instrument(span.clone()).await;
    telemetry::record_response(&span, method, None, 201);
    context.traceparent
}

/// The spans in an OTLP `ExportTraceServiceRequest`: resource_spans (1) > scope_spans (2) >
/// spans (2), each a length-delimited field; `None` if the body is not protobuf.
fn count_spans(body: &[u8]) -> Option<u64> {
    let mut total = 0;
    for resource in fields(body, 1)? {
        for scope in fields(resource, 2)? {
            total += fields(scope, 2)?.len() as u64;
        }
    }
    Some(total)
}

/// The length-delimited fields numbered `wanted` in one protobuf message.
fn fields(mut message: &[u8], wanted: u64) -> Option<Vec<&[u8]>> {
    let mut found = Vec::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let length = match key & 7 {
            0 => {
                varint(&mut message)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut message)?).ok()?,
            5 => 4,
            _ => return None,
        };
        let value = message.get(..length)?;
        message = &message[length..];
        if key & 7 == 2 && key >> 3 == wanted {
            found.push(value);
        }
    }
    Some(found)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
