//! The report's "Traces of the slowest requests" section, from `results.traces` alone.
//!
//! Per endpoint with fetched traces:
//!
//! - a **waterfall** of each of its p99 exemplars (latency at or above the endpoint's
//!   p99, slowest first, at most [`WATERFALLS`]): one bar per span, placed by its start
//!   and length within the trace and coloured by service, with the request's own time
//!   (its root span) shaded, so the saga's asynchronous rest shows after it;
//! - a table of **where the time went**: each service's and each hop's (service and
//!   operation) share of the request's own time, for the slowest 1% (the p99 exemplars)
//!   against typical requests (the random exemplars nearest the median). Only the spans
//!   the request waited for count (not a publish, nor what follows it); a span's time
//!   counts once, for the innermost span covering it ([`exclusive_times`]); time no span
//!   covers (queues, the network) is "between spans".
//!
//! Without traces the section says how to turn tracing on; with exemplars but no spans,
//! that Jaeger had none of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use faultline_results::{Exemplar, Kept, Results, TraceSpan};

use crate::html::escape;

/// Waterfalls drawn per endpoint.
const WATERFALLS: usize = 3;
/// Spans drawn per waterfall (a saga has about 25; a batch can add more).
const MAX_ROWS: usize = 60;
/// Typical requests compared with the slow ones, at least.
const MIN_TYPICAL: usize = 5;
/// The colour-blind-safe palette of the charts, by service in order of appearance.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];
const BETWEEN_SPANS: &str = "(between spans)";
/// The operation of an outbox event's span (`system::platform::telemetry::publish_span`):
/// where a request hands work on without waiting for it.
const PUBLISH: &str = "publish ";

/// Writes the section.
pub fn write_html(page: &mut String, results: &Results) {
    page.push_str("<h2 id=\"traces\">Traces of the slowest requests</h2>\n");
    let Some(traces) = &results.traces else {
        page.push_str(
            "<p class=\"missing\">This run sent no trace context, so there are no traces. \
             Turn tracing on with <code>tracing = true</code> in the scenario's \
             <code>[system]</code> table: Jaeger then runs in the stack, every service \
             exports its spans to it, the load generator sends a sampled \
             <code>traceparent</code> with every request and keeps the slowest, and the \
             run fetches their traces into results.json. (For a system you run yourself: \
             <code>faultline system up --tracing</code> prints <code>JAEGER_URL=</code>.)</p>\n",
        );
        return;
    };
    let fetched = traces
        .exemplars
        .iter()
        .filter(|e| !e.spans.is_empty())
        .count();
    let _ = writeln!(
        page,
        "<p class=\"meta\">{} requests kept by trace id (sampled: {:.0}% of requests), {} traces read from {}.</p>",
        traces.exemplars.len(),
        traces.sample_ratio * 100.0,
        fetched,
        escape(traces.source.as_deref().unwrap_or("no tracing backend"))
    );
    if fetched == 0 {
        page.push_str("<p class=\"missing\">No trace of the kept requests was found: the services did not export (no OTLP endpoint), or the backend dropped them.</p>\n");
        return;
    }
    let mut by_endpoint: BTreeMap<&str, Vec<&Exemplar>> = BTreeMap::new();
    for exemplar in traces.exemplars.iter().filter(|e| !e.spans.is_empty()) {
        by_endpoint
            .entry(&exemplar.endpoint)
            .or_default()
            .push(exemplar);
    }
    for (endpoint, mut exemplars) in by_endpoint {
        exemplars.sort_by_key(|e| std::cmp::Reverse(e.latency_us));
        let summary = results
            .endpoints
            .get(endpoint)
            .map(|e| &e.totals.latency_summary);
        let (p50, p99) = summary.map_or((0, 0), |s| (s.p50_us, s.p99_us));
        let _ = writeln!(
            page,
            "<h3>{}</h3>\n<p class=\"meta\">p50 {}, p99 {}</p>",
            escape(endpoint),
            ms(p50),
            ms(p99)
        );
        let slow: Vec<&Exemplar> = exemplars
            .iter()
            .copied()
            .filter(|e| faultline_results::histogram::reaches(e.latency_us, p99))
            .collect();
        for exemplar in slow.iter().take(WATERFALLS) {
            waterfall(page, exemplar);
        }
        if slow.is_empty() {
            page.push_str(
                "<p class=\"missing\">No exemplar with its trace at or above the p99.</p>\n",
            );
        }
        let typical = typical(&exemplars, p50, slow.len().max(MIN_TYPICAL));
        where_time_went(page, &slow, &typical);
    }
}

fn ms(micros: u64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

/// The random exemplars nearest the median, `count` at most.
fn typical<'a>(exemplars: &[&'a Exemplar], p50: u64, count: usize) -> Vec<&'a Exemplar> {
    let mut sampled: Vec<&Exemplar> = exemplars
        .iter()
        .copied()
        .filter(|e| e.kept == Kept::Sampled)
        .collect();
    sampled.sort_by_key(|e| e.latency_us.abs_diff(p50));
    sampled.truncate(count);
    sampled
}

/// The root of a trace: the span whose parent is not in it (the request at the gateway).
fn root(spans: &[TraceSpan]) -> Option<&TraceSpan> {
    spans.iter().find(|span| {
        span.parent_id
            .as_ref()
            .is_none_or(|parent| !spans.iter().any(|s| &s.span_id == parent))
    })
}

/// Each span's own time within `[from, to)`: its time there minus what its children
/// cover, so that every microsecond counts once, for the innermost span. Returns the time
/// per span index and the time no span covers.
pub fn exclusive_times(spans: &[TraceSpan], from: u64, to: u64) -> (Vec<u64>, u64) {
    let clip = |span: &TraceSpan| {
        let start = span.start_us.max(from);
        let end = (span.start_us + span.duration_us).min(to);
        (start, end.max(start))
    };
    // Depth of each span: deeper spans own the time they cover.
    let depth = |index: usize| {
        let mut depth = 0;
        let mut current = &spans[index];
        while let Some(parent) = current
            .parent_id
            .as_ref()
            .and_then(|p| spans.iter().find(|s| &s.span_id == p))
        {
            depth += 1;
            current = parent;
            if depth > spans.len() {
                break; // a cycle: not a trace, stop counting
            }
        }
        depth
    };
    let depths: Vec<usize> = (0..spans.len()).map(depth).collect();
    // Sweep over the boundaries; each slice goes to the deepest span covering it.
    let mut edges: Vec<u64> = spans
        .iter()
        .flat_map(|s| {
            let (a, b) = clip(s);
            [a, b]
        })
        .chain([from, to])
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let mut own = vec![0; spans.len()];
    let mut uncovered = 0;
    for pair in edges.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a < from || b > to {
            continue;
        }
        let owner = (0..spans.len())
            .filter(|&i| {
                let (start, end) = clip(&spans[i]);
                start <= a && b <= end && start < end
            })
            .max_by_key(|&i| (depths[i], spans[i].start_us));
        match owner {
            Some(i) => own[i] += b - a,
            None => uncovered += b - a,
        }
    }
    (own, uncovered)
}

/// The spans the request waited for: not an outbox event's publish, nor anything after it
/// (its consumers, the saga's later steps), which runs on while or after it answers.
fn synchronous(spans: &[TraceSpan]) -> Vec<TraceSpan> {
    let asynchronous = |span: &TraceSpan| {
        let mut current = Some(span);
        // Bounded by the trace's size: a cycle (no trace) cannot loop.
        for _ in 0..=spans.len() {
            let Some(span) = current else {
                return false;
            };
            if span.operation.starts_with(PUBLISH) {
                return true;
            }
            current = (span.parent_id.as_ref())
                .and_then(|parent| spans.iter().find(|s| &s.span_id == parent));
        }
        false
    };
    spans.iter().filter(|s| !asynchronous(s)).cloned().collect()
}

/// Per service and per hop (`service: operation`), the share of the request's own time
/// (its root span), summed over `exemplars` and divided by their total.
pub fn shares(exemplars: &[&Exemplar]) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut services: BTreeMap<String, f64> = BTreeMap::new();
    let mut hops: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0;
    for exemplar in exemplars {
        let Some(root) = root(&exemplar.spans) else {
            continue;
        };
        let (from, to) = (root.start_us, root.start_us + root.duration_us);
        let spans = synchronous(&exemplar.spans);
        let (own, uncovered) = exclusive_times(&spans, from, to);
        for (span, time) in spans.iter().zip(own) {
            *services.entry(span.service.clone()).or_default() += time as f64;
            *hops
                .entry(format!("{}: {}", span.service, span.operation))
                .or_default() += time as f64;
        }
        *services.entry(BETWEEN_SPANS.into()).or_default() += uncovered as f64;
        total += (to - from) as f64;
    }
    if total > 0.0 {
        for share in services.values_mut().chain(hops.values_mut()) {
            *share /= total;
        }
    }
    (services, hops)
}

fn where_time_went(page: &mut String, slow: &[&Exemplar], typical: &[&Exemplar]) {
    let (slow_services, slow_hops) = shares(slow);
    let (typical_services, typical_hops) = shares(typical);
    let mean = |group: &[&Exemplar]| {
        let n = group.len().max(1) as u64;
        ms(group.iter().map(|e| e.latency_us).sum::<u64>() / n)
    };
    let _ = writeln!(
        page,
        "<table><tr><th>where the request's time went</th><th>slowest 1% ({} traces, mean {})</th><th>typical ({} traces near the median, mean {})</th></tr>",
        slow.len(),
        mean(slow),
        typical.len(),
        mean(typical)
    );
    let mut rows = |title: &str, slow: &BTreeMap<String, f64>, typical: &BTreeMap<String, f64>| {
        let _ = writeln!(page, "<tr><th colspan=\"3\">{title}</th></tr>");
        let mut names: Vec<&String> = slow.keys().chain(typical.keys()).collect();
        names.sort();
        names.dedup();
        names.sort_by(|a, b| {
            let share = |name: &String| slow.get(name).copied().unwrap_or(0.0);
            share(b).total_cmp(&share(a))
        });
        for name in names {
            let cell = |shares: &BTreeMap<String, f64>| match shares.get(name) {
                Some(share) => format!("{:.1}%", share * 100.0),
                None => "–".into(),
            };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(name),
                cell(slow),
                cell(typical)
            );
        }
    };
    rows("by service", &slow_services, &typical_services);
    rows("by hop", &slow_hops, &typical_hops);
    page.push_str("</table>\n");
}

/// One exemplar's spans as an SVG waterfall.
fn waterfall(page: &mut String, exemplar: &Exemplar) {
    let spans = &exemplar.spans;
    let end = spans
        .iter()
        .map(|s| s.start_us + s.duration_us)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut services: Vec<&str> = Vec::new();
    for span in spans {
        if !services.contains(&span.service.as_str()) {
            services.push(&span.service);
        }
    }
    let colour = |service: &str| {
        let index = services.iter().position(|s| *s == service).unwrap_or(0);
        PALETTE[index % PALETTE.len()]
    };
    let (label_width, bar_width, row) = (330.0, 760.0, 16.0);
    let rows = spans.len().min(MAX_ROWS);
    let height = row * rows as f64 + 24.0;
    let x = |us: u64| label_width + bar_width * us as f64 / end as f64;
    let _ = writeln!(
        page,
        "<figure><figcaption>{} in {} (trace {}, {}; whole trace {})</figcaption>\n<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-size=\"11\">",
        escape(&exemplar.endpoint),
        ms(exemplar.latency_us),
        escape(&exemplar.trace_id),
        match exemplar.kept {
            Kept::Slowest => "among the slowest of the run",
            Kept::OfItsSecond => "among the slowest of its second",
            Kept::Sampled => "picked at random",
        },
        ms(end),
        label_width + bar_width + 10.0
    );
    if let Some(root) = root(spans) {
        let _ = writeln!(
            page,
            "<rect x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\" fill=\"#eee\"><title>the request: {}</title></rect>",
            x(root.start_us),
            (x(root.start_us + root.duration_us) - x(root.start_us)).max(1.0),
            ms(root.duration_us)
        );
    }
    for (index, span) in spans.iter().take(MAX_ROWS).enumerate() {
        let y = row * index as f64;
        let label = format!("{}: {}", span.service, span.operation);
        let _ = writeln!(
            page,
            "<text x=\"2\" y=\"{:.1}\">{}</text><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {} at +{}</title></rect>",
            y + 12.0,
            escape(&label.chars().take(52).collect::<String>()),
            x(span.start_us),
            y + 2.0,
            (x(span.start_us + span.duration_us) - x(span.start_us)).max(1.0),
            row - 4.0,
            colour(&span.service),
            escape(&label),
            ms(span.duration_us),
            ms(span.start_us)
        );
    }
    let axis = row * rows as f64 + 16.0;
    let _ = writeln!(
        page,
        "<text x=\"{label_width}\" y=\"{axis}\">0</text><text x=\"{:.1}\" y=\"{axis}\" text-anchor=\"end\">{}</text></svg>",
        label_width + bar_width,
        ms(end)
    );
    page.push_str("<ul class=\"legend\">");
    for service in &services {
        let _ = write!(
            page,
            "<li><svg width=\"12\" height=\"12\"><rect width=\"12\" height=\"12\" fill=\"{}\"/></svg>{}</li>",
            colour(service),
            escape(service)
        );
    }
    if spans.len() > MAX_ROWS {
        let _ = write!(
            page,
            "<li>{} more spans not drawn</li>",
            spans.len() - MAX_ROWS
        );
    }
    page.push_str("</ul></figure>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, start: u64, duration: u64) -> TraceSpan {
        TraceSpan {
            span_id: id.into(),
            parent_id: parent.map(str::to_string),
            service: service.into(),
            operation: format!("op {id}"),
            start_us: start,
            duration_us: duration,
        }
    }

    #[test]
    fn each_microsecond_counts_once_for_the_innermost_span() {
        // gateway 0..100 > orders 10..90 > db 20..70; a publish 80..200 outlives them all.
        let spans = vec![
            span("g", Some("client"), "gateway", 0, 100),
            span("o", Some("g"), "orders", 10, 80),
            span("d", Some("o"), "orders", 20, 50),
            span("p", Some("d"), "orders", 80, 120),
        ];
        let (own, uncovered) = exclusive_times(&spans, 0, 100);
        assert_eq!(own, vec![10, 20, 50, 20]);
        assert_eq!(uncovered, 0);
        let (own, uncovered) = exclusive_times(&spans, 0, 300);
        assert_eq!(own, vec![10, 20, 50, 120]);
        assert_eq!(uncovered, 100, "after the publish, no span");
    }

    #[test]
    fn shares_are_of_the_requests_own_time_and_add_up_to_one() {
        let exemplar = Exemplar {
            endpoint: "POST /api/orders".into(),
            second: 1,
            latency_us: 100,
            trace_id: "0".repeat(32),
            kept: Kept::Slowest,
            spans: vec![
                span("g", Some("client"), "gateway", 0, 100),
                span("d", Some("g"), "orders", 25, 50),
                span("s", Some("d"), "orders", 150, 50),
                // Handed on: its consumer runs while the request is still open.
                TraceSpan {
                    operation: "publish order.created".into(),
                    ..span("p", Some("d"), "orders", 30, 100)
                },
                span("c", Some("p"), "analytics", 40, 30),
            ],
        };
        let (services, hops) = shares(&[&exemplar]);
        assert_eq!(services.get("gateway"), Some(&0.5));
        assert_eq!(services.get("orders"), Some(&0.5));
        assert_eq!(
            hops.get("orders: op s"),
            Some(&0.0),
            "after the request: not its time"
        );
        assert!(
            !services.contains_key("analytics"),
            "asynchronous: not waited for"
        );
        let sum: f64 = services.values().sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }
}
