//! Spans out of every service process, exported with OTLP (http/protobuf) to Jaeger or any
//! collector, so that a slow request can be followed hop by hop.
//!
//! - [`TelemetryArgs`] are `serve`'s flags (`--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT`,
//!   `--trace-sample-ratio`); [`init`] turns them into a batch-exporting tracer provider and
//!   the `tracing` layer that makes the services' spans OpenTelemetry spans. Without an
//!   endpoint there is no provider, no layer, and every helper below returns a disabled
//!   span at the price of one atomic load.
//! - The W3C `traceparent` the services already carry (HTTP and Kafka headers, the outbox
//!   row) is the only context that travels: [`remote_context`] reads one, [`traceparent_of`]
//!   writes one, and each helper rewrites what it is given to its own span, so the next hop
//!   becomes that span's child.
//! - One helper per kind of hop: [`request_span`] (an HTTP request, at the gateway and at
//!   each service, from the `observe` middleware), [`transaction_span`] (a database
//!   transaction, held by `OutboxTx`), [`publish_span`] (an outbox event from the
//!   transaction that made it until Kafka acknowledged it), [`consume_spans`] (an event
//!   applied by a consumer, child of its producer from the headers) and [`saga_step`] (the
//!   time the saga spent waiting in one step).
//!
//! Sampling is parent-based: a caller's sampled flag (the load generator's) decides for
//! the whole trace, and `--trace-sample-ratio` only for traces that start here.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use clap::Args;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::envelope::Envelope;
use super::http::{TraceContext, TRACEPARENT};

/// The tracer of this process once [`init`] exported somewhere; `None` means tracing is off.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Spans a service may have waiting for export: a second of checkout load at ratio 1.0
/// (about 25 spans per saga) fits many times over, so a slow collector costs dropped spans
/// rather than memory without bound.
const EXPORT_QUEUE: usize = 65_536;
/// How long a finished span may wait before its batch is sent: short, so that a run's
/// traces are in Jaeger soon after its last request.
const EXPORT_DELAY: Duration = Duration::from_millis(500);
const EXPORT_BATCH: usize = 2_048;

/// Where spans go, and how many traces are recorded.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct TelemetryArgs {
    /// OTLP/HTTP endpoint to export spans to, e.g. `http://127.0.0.1:4318` (`/v1/traces`
    /// is appended); no spans leave the process when absent.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Share of the traces starting here that are recorded, 0 to 1; a caller's sampled
    /// flag (W3C `traceparent`) decides for the traces it started.
    #[arg(long, env = "FAULTLINE_TRACE_SAMPLE_RATIO", default_value_t = 1.0)]
    pub trace_sample_ratio: f64,
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--otlp-endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("--trace-sample-ratio {0}: must be between 0 and 1")]
    Ratio(f64),
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Owns the tracer provider; dropping it exports what is still queued (at most a few
/// seconds) and stops the export thread. Drop it outside the async runtime: the flush
/// blocks.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: exporting the last spans: {error}");
        }
    }
}

/// The `tracing` layer that turns spans into OpenTelemetry spans, for this process' subscriber.
pub type TelemetryLayer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>;

/// Sets up export for `service` when `args` name an endpoint; `None` when they do not.
/// The caller adds the layer to its subscriber and keeps the [`Telemetry`] until the end.
pub fn init<S>(
    args: &TelemetryArgs,
    service: &str,
) -> Result<Option<(Telemetry, TelemetryLayer<S>)>, TelemetryError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let Some(endpoint) = args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let ratio = args.trace_sample_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(TelemetryError::Ratio(ratio));
    }
    let traces_url = traces_url(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(EXPORT_QUEUE)
        .with_scheduled_delay(EXPORT_DELAY)
        .with_max_export_batch_size(EXPORT_BATCH)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batches)
                .build(),
        )
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build();
    let tracer = provider.tracer("faultline");
    // A second init in one process (tests) keeps the first tracer: spans are per process.
    let _ = TRACER.set(tracer.clone());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false);
    Ok(Some((Telemetry { provider }, layer)))
}

/// `endpoint` (a base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is) with `/v1/traces` appended.
fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let invalid = |reason: &str| TelemetryError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let url = url::Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("expected http://HOST:PORT"));
    }
    Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
}

/// What the exported spans are made of: the system's own spans, whatever the log level
/// (the libraries' spans would be many and say little about the hops).
pub fn targets() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target("faultline_system", tracing::Level::INFO)
        .with_target(OPERATIONAL, tracing::level_filters::LevelFilter::OFF)
}

/// The target of the spans of health checks and metrics scrapes, which are not exported.
const OPERATIONAL: &str = "faultline_system::telemetry::operational";

/// The target of spans made only to be exported (database, consume): the logs leave them
/// out ([`not_logged`]).
const EXPORT_ONLY: &str = "faultline_system::telemetry::export_only";

/// The logs' `filter` without the spans made only for export. A log layer formats the
/// fields of every span it sees when the span starts and at each `record`, to print them
/// beside a line that may never come: a profile of orders under checkout load with export
/// on (`perf --call-graph dwarf`) had a twentieth of its CPU there. The request span stays
/// in the logs: its trace id is what a log line is found by.
pub fn not_logged(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    match format!("{EXPORT_ONLY}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Whether spans are exported from this process.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The context of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) as a remote parent,
/// or `None` for anything else.
pub fn remote_context(traceparent: &str) -> Option<Context> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !hex(version, 2) || !hex(trace, 32) || !hex(span, 16) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16)
        .ok()
        .filter(|_| hex(flags, 2))?;
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    context
        .is_valid()
        .then(|| Context::new().with_remote_span_context(context))
}

/// The W3C `traceparent` naming `span` as the parent of the next hop.
pub fn traceparent_of(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// The span context a `tracing` span stands for, when it is exported.
fn exported_context(span: &tracing::Span) -> Option<SpanContext> {
    let context = span.context().span().span_context().clone();
    context.is_valid().then_some(context)
}

/// The span of one HTTP request a service serves, child of the caller's `traceparent`.
/// With export on, `context` is rewritten to this span (its trace id and `traceparent`), so
/// what the handler passes on (the gateway's forwarded header, an event's header) names it
/// as the parent; with export off, `context` stays as [`TraceContext::from_headers`] made it.
pub fn request_span(
    headers: &HeaderMap,
    context: &mut TraceContext,
    method: &str,
    route: &str,
) -> tracing::Span {
    macro_rules! request {
        ($($target:tt)*) => {
            tracing::info_span!($($target)* "request", trace_id = %context.trace_id,
                request_id = %context.request_id, %method, %route, otel.kind = "server")
        };
    }
    // Health checks and scrapes come every second from the supervisor, the gateway and
    // Prometheus: logged as before, but never exported (see `targets`).
    let operational = route.starts_with("/health/") || route == "/metrics";
    let span = match operational {
        true => request!(target: OPERATIONAL,),
        false => request!(),
    };
    if enabled() && !operational {
        if let Some(parent) = headers
            .get(&TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(remote_context)
        {
            let _ = span.set_parent(parent);
        }
        if let Some(own) = exported_context(&span) {
            let trace_id = own.trace_id().to_string();
            // Recorded again only when it changed (no usable parent came in): the JSON
            // log format re-parses a span's fields at every record, and recording this and
            // the status on every request was 5% of the gateway's CPU under checkout load.
            if trace_id != context.trace_id {
                span.record("trace_id", trace_id.as_str());
                context.trace_id = trace_id;
            }
            context.traceparent = traceparent_of(&own);
            // Named on the started span rather than through an `otel.name` field, which
            // the logs would format again at every record.
            span.context()
                .span()
                .update_name(format!("{method} {route}"));
        }
    }
    span
}

/// What the answer to a request says about its span: its status, and its route when only
/// the handler knew it (`renamed`: the gateway routes by itself); a 5xx marks the span as
/// failed.
pub fn record_response(span: &tracing::Span, method: &str, renamed: Option<&str>, status: u16) {
    if enabled() {
        // On the exported span only, not a `tracing` field: no log line in the span comes
        // after it, and recording a field costs the JSON log format a re-parse.
        span.set_attribute("http.response.status_code", i64::from(status));
        if let Some(route) = renamed {
            // The span is started by now: its name is changed on the span itself.
            span.context()
                .span()
                .update_name(format!("{method} {route}"));
        }
        if status >= 500 {
            span.set_status(Status::error(format!("answered {status}")));
        }
    }
}

/// The span of a wait for a pooled database connection, child of the current span: under
/// load the pool is a queue, and its wait is database time.
pub fn connection_span() -> tracing::Span {
    database_span("db connection")
}

/// The span of one database transaction (the service's own database: the process' service
/// name says which), child of the current span (the request or the consumed event it is
/// for); it ends when dropped, at commit or rollback.
pub fn transaction_span() -> tracing::Span {
    database_span("db transaction")
}

/// A span of the service's PostgreSQL named `name`, child of the current span.
fn database_span(name: &'static str) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: EXPORT_ONLY,
        "database",
        otel.name = name,
        otel.kind = "client",
        db.system = "postgresql"
    )
}

/// The spans of events a consumer applies together, one per event, each the child of the
/// producer named in the event's `traceparent`. Each event's `traceparent` is rewritten to
/// its own span, so the events a handler sends on (which copy it) are this span's children.
/// The spans end when this is dropped, after the transaction.
pub struct ConsumeSpans {
    spans: Vec<tracing::Span>,
}

impl ConsumeSpans {
    /// The span to run the batch's transaction in (the first event's): its transaction span
    /// and its logs go there.
    pub fn current(&self) -> tracing::Span {
        self.spans
            .first()
            .cloned()
            .unwrap_or_else(tracing::Span::none)
    }
}

/// See [`ConsumeSpans`]; `consumer` is the consumer's name (its group).
/// `None` (a batch that did not decode) has no spans.
pub fn consume_spans(consumer: &str, events: Option<&mut [Envelope]>) -> ConsumeSpans {
    let Some(events) = events.filter(|_| enabled()) else {
        return ConsumeSpans { spans: Vec::new() };
    };
    let batch = events.len();
    let spans = events
        .iter_mut()
        .map(|event| {
            let span = tracing::info_span!(target: EXPORT_ONLY, "consume", otel.name = %format_args!("consume {}", event.event_type),
                otel.kind = "consumer", messaging.system = "kafka", messaging.consumer.group.name = consumer,
                messaging.message.id = %event.id, messaging.batch.message_count = batch);
            if let Some(parent) = event.traceparent.as_deref().and_then(remote_context) {
                let _ = span.set_parent(parent);
            }
            if let Some(own) = exported_context(&span) {
                event.traceparent = Some(traceparent_of(&own));
            }
            span
        })
        .collect();
    ConsumeSpans { spans }
}

/// An outbox event on its way to Kafka: from the moment its transaction made it (so the
/// outbox's wait is in it) until Kafka acknowledged it (when this is dropped). Child of the
/// span that enqueued it; the event's `traceparent` is rewritten to this span, so its
/// consumers are its children.
pub struct PublishSpan(Option<opentelemetry_sdk::trace::Span>);

impl Drop for PublishSpan {
    fn drop(&mut self) {
        if let Some(span) = self.0.as_mut() {
            span.end();
        }
    }
}

/// See [`PublishSpan`]; `service` is the relaying service.
pub fn publish_span(service: &str, topic: &str, event: &mut Envelope) -> PublishSpan {
    let Some(tracer) = TRACER.get() else {
        return PublishSpan(None);
    };
    let parent = event
        .traceparent
        .as_deref()
        .and_then(remote_context)
        .unwrap_or_default();
    let span = tracer
        .span_builder(format!("publish {}", event.event_type))
        .with_kind(SpanKind::Producer)
        .with_start_time(SystemTime::from(event.occurred_at))
        .with_attributes([
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.destination.name", topic.to_string()),
            KeyValue::new("messaging.message.id", event.id.to_string()),
            KeyValue::new("faultline.relay", service.to_string()),
        ])
        .start_with_context(tracer, &parent);
    if span.span_context().is_valid() {
        event.traceparent = Some(traceparent_of(span.span_context()));
    }
    PublishSpan(Some(span))
}

/// Records the saga step `step` of the order `event` answers: the time from the step's
/// start (`since`, when its command was sent) until this reply was applied, as a span
/// under the reply's consume span.
pub fn saga_step(event: &Envelope, step: &str, since: chrono::DateTime<chrono::Utc>) {
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let Some(parent) = event.traceparent.as_deref().and_then(remote_context) else {
        return;
    };
    tracer
        .span_builder(format!("saga step {}", step.to_lowercase()))
        .with_kind(SpanKind::Internal)
        .with_start_time(SystemTime::from(since))
        .with_attributes([
            KeyValue::new("saga.step", step.to_string()),
            KeyValue::new("saga.reply", event.event_type.clone()),
            KeyValue::new("saga.key", event.key.clone()),
        ])
        .start_with_context(tracer, &parent)
        .end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_garbage_is_no_parent() {
        let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = remote_context(sent).expect("a valid traceparent");
        let span = context.span().span_context().clone();
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(traceparent_of(&span), sent);
        let unsampled = remote_context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
            .expect("valid");
        assert!(!unsampled.span().span_context().is_sampled());
        for garbage in [
            "",
            "00-zz-yy-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        ] {
            assert!(remote_context(garbage).is_none(), "{garbage:?}");
        }
    }

    #[test]
    fn an_endpoint_must_be_an_http_url_and_the_ratio_a_share() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318/").ok().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert!(traces_url("127.0.0.1:4318").is_err());
        assert!(traces_url("ftp://127.0.0.1:4318").is_err());
        let args = TelemetryArgs {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            trace_sample_ratio: 1.5,
        };
        assert!(matches!(
            init::<tracing_subscriber::Registry>(&args, "orders"),
            Err(TelemetryError::Ratio(_))
        ));
        let off = TelemetryArgs {
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
        };
        assert!(matches!(
            init::<tracing_subscriber::Registry>(&off, "orders"),
            Ok(None)
        ));
    }

    #[test]
    fn without_export_the_helpers_change_nothing() {
        // No test of this binary calls `init` with an endpoint: export stays off.
        let mut event = Envelope::new("order.created", 1, "k", serde_json::json!({}))
            .with_traceparent(Some(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            ));
        let before = event.traceparent.clone();
        let spans = consume_spans("orders", Some(std::slice::from_mut(&mut event)));
        assert!(spans.current().is_none());
        let publish = publish_span("orders", "orders.events", &mut event);
        assert!(publish.0.is_none());
        assert_eq!(event.traceparent, before);
    }
}
