//! Traces in a run with tracing on (`[system] tracing = true`): the load generator sends
//! its own sampled `traceparent` and keeps the slowest requests' trace ids
//! ([`exemplar_limits`]); after the load, [`fetch`] reads those traces from the stack's
//! Jaeger into results, for the report's waterfalls.

use std::time::Duration;

use faultline_loadgen::exemplars::ExemplarLimits;
use faultline_results::{Results, TraceSpan};
use faultline_system::stack::jaeger::{JaegerQuery, TraceSpan as JaegerSpan};
use faultline_system::supervisor::{System, SystemSpec};

/// Traces fetched at most: the slowest of the run and the first seconds' are fetched
/// first (results list them by endpoint, slowest first), so a long run keeps its worst.
const MAX_FETCHED: usize = 3_000;
/// Requests to Jaeger at once.
const CONCURRENT: usize = 8;
/// How long after the load the services' last batches may take to reach Jaeger: their
/// exporters send every 0.5 s, Jaeger stores every 0.2 s.
const EXPORT_SETTLE: Duration = Duration::from_secs(3);

/// What the generator keeps when the run traces: the requests `[system]
/// trace_sample_ratio` asks for sampled (every one by default, so the slowest are always
/// among the traced); the services follow the generator's flag.
pub(super) fn exemplar_limits(spec: &SystemSpec) -> Option<ExemplarLimits> {
    if !spec.stack.tracing {
        return None;
    }
    ExemplarLimits::sampling(spec.trace_sample_ratio.unwrap_or(1.0)).ok()
}

/// Reads the spans of every exemplar of `results` (up to [`MAX_FETCHED`]) from the
/// stack's Jaeger. A trace Jaeger does not have, or cannot give, stays without spans: the
/// report says how many were found.
pub(super) async fn fetch(system: &System, results: &mut Results) {
    let Some(url) = system
        .stack()
        .and_then(|stack| stack.endpoints().jaeger_url)
    else {
        return;
    };
    let Some(traces) = results.traces.as_mut() else {
        return;
    };
    traces.source = Some(url.clone());
    tokio::time::sleep(EXPORT_SETTLE).await;
    let query = JaegerQuery::new(&url);
    let wanted: Vec<(usize, String)> = traces
        .exemplars
        .iter()
        .enumerate()
        .take(MAX_FETCHED)
        .map(|(index, exemplar)| (index, exemplar.trace_id.clone()))
        .collect();
    let mut failures = 0;
    for chunk in wanted.chunks(CONCURRENT) {
        let mut fetching = tokio::task::JoinSet::new();
        for (index, trace_id) in chunk.iter().cloned() {
            let query = query.clone();
            fetching.spawn(async move { (index, query.trace(&trace_id).await) });
        }
        while let Some(done) = fetching.join_next().await {
            match done {
                Ok((index, Ok(spans))) => traces.exemplars[index].spans = relative(spans),
                Ok((_, Err(error))) => {
                    failures += 1;
                    tracing::debug!(%error, "fetching an exemplar's trace");
                }
                Err(_) => failures += 1,
            }
        }
    }
    let found = traces
        .exemplars
        .iter()
        .filter(|e| !e.spans.is_empty())
        .count();
    eprintln!(
        "run: {found} of {} exemplars' traces read from Jaeger ({url}){}",
        traces.exemplars.len(),
        if failures > 0 {
            format!(", {failures} reads failed")
        } else {
            String::new()
        }
    );
}

/// Jaeger's spans with their start counted from the trace's first span.
fn relative(spans: Vec<JaegerSpan>) -> Vec<TraceSpan> {
    let first = spans.iter().map(|s| s.start_us).min().unwrap_or(0);
    spans
        .into_iter()
        .map(|span| TraceSpan {
            span_id: span.span_id,
            parent_id: span.parent_id,
            service: span.service,
            operation: span.operation,
            start_us: span.start_us - first,
            duration_us: span.duration_us,
        })
        .collect()
}
