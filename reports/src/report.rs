//! The HTML report: sections built from results, then written as one
//! self-contained `index.html` ([`crate::html`]).
//!
//! Gates are judged before a report is built ([`GateReport::judge`], once) and the
//! judged [`GateReport`] is handed in, so the page, `junit.xml` and `summary.md` of
//! one run show the same verdicts, and `faultline run` passes values, not files.
//!
//! Each chart section is either a drawn [`Chart`] or, when the run did not record its
//! data, one line saying so ([`Section::Missing`]), never an empty chart.

use std::path::{Path, PathBuf};

use faultline_results::{error::write_text, Results};

use crate::{
    charts::{self, Bars, Chart, ChartSpec, Line, SeriesStyle},
    claims::{ClaimResult, Claims},
    error::ReportError,
    gate::{Gate, GateReport},
    html,
    timeline::{decode, log_bins, percentile_curve, Timeline},
};

/// One chart slot of the report.
#[derive(Debug, Clone)]
pub enum Section {
    Chart(Chart),
    /// The run did not record this: `(id, title, one line saying so)`.
    Missing {
        id: String,
        title: String,
        reason: String,
    },
}

impl Section {
    pub fn id(&self) -> &str {
        match self {
            Section::Chart(chart) => &chart.id,
            Section::Missing { id, .. } => id,
        }
    }
}

/// Everything the page shows.
pub struct Report<'a> {
    pub results: &'a Results,
    pub sections: Vec<Section>,
    pub gates: GateReport,
    pub claims: Vec<ClaimResult>,
}

/// Most endpoints drawn one by one on a chart; the rest are in the table.
const MAX_ENDPOINT_LINES: usize = 7;

fn missing(id: &str, title: &str, reason: impl Into<String>) -> Section {
    Section::Missing {
        id: id.into(),
        title: title.into(),
        reason: reason.into(),
    }
}

fn max_y(lines: &[Line]) -> f64 {
    lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
}

/// The gates the run recorded plus `extra`, each parsed (a bad recorded gate is bad
/// input: results name the gate).
pub fn all_gates(results: &Results, extra: &[Gate]) -> Result<Vec<Gate>, ReportError> {
    let mut gates = Vec::new();
    for spec in &results.gates {
        gates.extend(Gate::from_spec(spec, "results (the run's scenario)")?);
    }
    gates.extend(extra.iter().cloned());
    Ok(gates)
}

impl<'a> Report<'a> {
    /// Builds every section of the report of `results`, with gates already judged
    /// (once, by [`GateReport::judge`]) and the claims held against the run.
    pub fn build(
        results: &'a Results,
        claims: &Claims,
        gates: GateReport,
    ) -> Result<Report<'a>, ReportError> {
        let timeline = Timeline::new(results)?;
        let mut sections = vec![
            throughput(&timeline)?,
            latency_over_time(&timeline)?,
            latency_distribution(results)?,
            errors_over_time(&timeline)?,
        ];
        sections.extend(consistency(results)?);
        sections.extend(server_panels(&timeline)?);
        sections.extend(crate::resources::charts(results, &timeline)?);
        sections.extend(crate::capacity::chart(results)?);
        Ok(Report {
            results,
            sections,
            gates,
            claims: claims.evaluate(results),
        })
    }

    /// The page.
    pub fn html(&self) -> String {
        html::render(self)
    }

    /// Writes `index.html` into `dir` (created when missing); returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ReportError> {
        let path = dir.join("index.html");
        write_text(&path, &self.html())?;
        Ok(path)
    }

    /// Writes everything a run leaves for people and CI into `dir`: `index.html`,
    /// and the gates' `junit.xml` and `summary.md`.
    pub fn write_all(&self, dir: &Path) -> Result<Written, ReportError> {
        let index = self.write(dir)?;
        let (junit, summary) = self.gates.write(self.results, dir)?;
        Ok(Written {
            index,
            junit,
            summary,
        })
    }
}

/// The files [`Report::write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub index: PathBuf,
    pub junit: PathBuf,
    pub summary: PathBuf,
}

pub(crate) fn time_spec(timeline: &Timeline<'_>, id: &str, title: &str, y_desc: &str) -> ChartSpec {
    ChartSpec {
        id: id.into(),
        title: title.into(),
        x_desc: "time since start (s)".into(),
        y_desc: y_desc.into(),
        x_range: (0.0, timeline.end),
        y_range: (0.0, 1.0),
        x_format: charts::format_number,
        y_format: charts::format_number,
        lines: Vec::new(),
        bars: Vec::new(),
        bands: timeline.bands(),
        note: None,
    }
}

/// Endpoint names with the most requests first, at most `MAX_ENDPOINT_LINES`.
fn busiest_endpoints(results: &Results) -> (Vec<String>, Option<String>) {
    let mut names: Vec<(&String, u64)> = results
        .endpoints
        .iter()
        .map(|(n, e)| (n, e.totals.requests))
        .collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let left_out = names.len().saturating_sub(MAX_ENDPOINT_LINES);
    let note = (left_out > 0).then(|| {
        format!(
            "The {MAX_ENDPOINT_LINES} busiest of {} endpoints are drawn; the other {left_out} are in the endpoint table.",
            names.len()
        )
    });
    (
        names
            .into_iter()
            .take(MAX_ENDPOINT_LINES)
            .map(|(n, _)| n.clone())
            .collect(),
        note,
    )
}

fn throughput(timeline: &Timeline<'_>) -> Result<Section, ReportError> {
    const ID: &str = "throughput";
    const TITLE: &str = "Throughput: target vs achieved";
    let results = timeline.results;
    if results.seconds.is_empty() {
        return Ok(missing(
            ID,
            TITLE,
            "No request finished in this run, so there is no throughput to draw.",
        ));
    }
    // A journey run's schedule is in journeys per second and each journey makes several
    // requests: the target is held against journeys started, and every line says its unit.
    let journeys = results.journeys.is_some();
    let mut spec = time_spec(
        timeline,
        ID,
        TITLE,
        if journeys {
            "per second"
        } else {
            "requests per second"
        },
    );
    let target_label = if journeys {
        "target (journeys/s)"
    } else {
        "target rate"
    };
    if let Some(target) = timeline.target_rate() {
        spec.lines.push(Line {
            style: SeriesStyle::reference(target_label),
            points: target,
        });
    }
    let mut next_style = 0;
    if let Some(started) = timeline.journey_rate() {
        spec.lines.push(Line {
            style: SeriesStyle::nth(next_style, "journeys started/s"),
            points: started,
        });
        next_style += 1;
    }
    spec.lines.push(Line {
        style: SeriesStyle::nth(
            next_style,
            if journeys {
                "requests/s, all endpoints"
            } else {
                "achieved, all endpoints"
            },
        ),
        points: timeline.achieved_rate(),
    });
    next_style += 1;
    if results.endpoints.len() > 1 {
        let (names, note) = busiest_endpoints(results);
        for (index, name) in names.iter().enumerate() {
            spec.lines.push(Line {
                style: SeriesStyle::nth(next_style + index, name.clone()),
                points: timeline.endpoint_rate(name),
            });
        }
        spec.note = note;
    }
    spec.y_range = (0.0, max_y(&spec.lines) * 1.08);
    Ok(Section::Chart(charts::draw(spec)?))
}

fn latency_over_time(timeline: &Timeline<'_>) -> Result<Section, ReportError> {
    const ID: &str = "latency-over-time";
    const TITLE: &str = "Latency over time (all endpoints), log scale";
    let series = timeline.latency_percentiles()?;
    if series[0].is_empty() {
        return Ok(missing(
            ID,
            TITLE,
            "No request was answered in this run, so there is no latency to draw.",
        ));
    }
    let mut spec = time_spec(timeline, ID, TITLE, "latency (ms, log scale)");
    spec.y_format = charts::format_log_ms;
    for (index, (label, points)) in ["p50", "p90", "p99", "max"].iter().zip(series).enumerate() {
        spec.lines.push(Line {
            style: SeriesStyle::nth(index, *label),
            // Microseconds to log10 of milliseconds.
            points: points
                .into_iter()
                .map(|(x, us)| (x, (us / 1000.0).max(0.001).log10()))
                .collect(),
        });
    }
    let (low, high) = spec
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    spec.y_range = ((low - 0.1).floor(), (high + 0.1).ceil());
    Ok(Section::Chart(charts::draw(spec)?))
}

fn percentile_spec(id: &str, title: &str) -> ChartSpec {
    ChartSpec {
        id: id.into(),
        title: title.into(),
        x_desc: "percentile (log scale of 1/(1-p))".into(),
        y_desc: "latency (ms)".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        x_format: charts::format_percentile,
        y_format: charts::format_number,
        lines: Vec::new(),
        bars: Vec::new(),
        bands: Vec::new(),
        note: None,
    }
}

fn to_ms(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.into_iter().map(|(x, us)| (x, us / 1000.0)).collect()
}

fn fit_percentile_ranges(spec: &mut ChartSpec) {
    let x_max = spec
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    spec.x_range = (0.0, x_max);
    spec.y_range = (0.0, max_y(&spec.lines) * 1.08);
}

fn latency_distribution(results: &Results) -> Result<Section, ReportError> {
    const ID: &str = "latency-distribution";
    const TITLE: &str = "Latency distribution: HDR percentile curve";
    let total = decode(&results.totals.latency, "total latency")?;
    let Some(curve) = percentile_curve(&total) else {
        return Ok(missing(
            ID,
            TITLE,
            "No request was answered in this run, so there is no latency distribution.",
        ));
    };
    let mut spec = percentile_spec(ID, TITLE);
    spec.lines.push(Line {
        style: SeriesStyle::nth(0, "all endpoints"),
        points: to_ms(curve),
    });
    if results.endpoints.len() > 1 {
        let (names, note) = busiest_endpoints(results);
        for (index, name) in names.iter().enumerate() {
            let Some(endpoint) = results.endpoints.get(name) else {
                continue;
            };
            let histogram = decode(&endpoint.totals.latency, "endpoint latency")?;
            if let Some(curve) = percentile_curve(&histogram) {
                spec.lines.push(Line {
                    style: SeriesStyle::nth(index + 1, name.clone()),
                    points: to_ms(curve),
                });
            }
        }
        spec.note = note;
    }
    fit_percentile_ranges(&mut spec);
    Ok(Section::Chart(charts::draw(spec)?))
}

fn errors_over_time(timeline: &Timeline<'_>) -> Result<Section, ReportError> {
    const ID: &str = "errors-over-time";
    const TITLE: &str = "Errors over time by class";
    let classes = timeline.errors_by_class();
    if classes.is_empty() {
        return Ok(missing(
            ID,
            TITLE,
            format!(
                "No request failed in this run (0 errors in {} requests).",
                timeline.results.totals.requests
            ),
        ));
    }
    let mut spec = time_spec(timeline, ID, TITLE, "errors per second");
    for (index, (class, points)) in classes.into_iter().enumerate() {
        spec.lines.push(Line {
            style: SeriesStyle::nth(index, class.name()),
            points,
        });
    }
    spec.y_range = (0.0, max_y(&spec.lines).max(1.0) * 1.08);
    Ok(Section::Chart(charts::draw(spec)?))
}

fn consistency(results: &Results) -> Result<Vec<Section>, ReportError> {
    const DIST: &str = "consistency-distribution";
    const DIST_TITLE: &str = "Consistency window: distribution";
    const CURVE: &str = "consistency-percentiles";
    const CURVE_TITLE: &str = "Consistency window: percentile curve";
    let not_recorded = "The run did not measure the consistency window (write acknowledged → read side serves it).";
    let Some(encoded) = &results.consistency_window else {
        return Ok(vec![
            missing(DIST, DIST_TITLE, not_recorded),
            missing(CURVE, CURVE_TITLE, not_recorded),
        ]);
    };
    let histogram = decode(encoded, "consistency window")?;
    let Some(curve) = percentile_curve(&histogram) else {
        let empty =
            "The run measured the consistency window but observed no write becoming visible.";
        return Ok(vec![
            missing(DIST, DIST_TITLE, empty),
            missing(CURVE, CURVE_TITLE, empty),
        ]);
    };
    let bins = log_bins(&histogram);
    let (x_low, x_high) = bins.iter().fold((f64::MAX, f64::MIN), |(lo, hi), b| {
        (lo.min(b.0), hi.max(b.1))
    });
    let tallest = bins.iter().map(|b| b.2).fold(0.0, f64::max);
    let distribution = ChartSpec {
        id: DIST.into(),
        title: DIST_TITLE.into(),
        x_desc: "consistency window (ms, log scale)".into(),
        y_desc: "observations".into(),
        x_range: (x_low - 0.1, x_high + 0.1),
        y_range: (0.0, tallest * 1.08),
        x_format: charts::format_log_ms,
        y_format: charts::format_number,
        lines: Vec::new(),
        bars: vec![Bars {
            style: SeriesStyle::nth(0, "observations per bin (10 bins per decade)"),
            bars: bins,
        }],
        bands: Vec::new(),
        note: None,
    };
    let mut curve_spec = percentile_spec(CURVE, CURVE_TITLE);
    curve_spec.y_desc = "consistency window (ms)".into();
    curve_spec.lines.push(Line {
        style: SeriesStyle::nth(1, "consistency window"),
        points: to_ms(curve),
    });
    fit_percentile_ranges(&mut curve_spec);
    Ok(vec![
        Section::Chart(charts::draw(distribution)?),
        Section::Chart(charts::draw(curve_spec)?),
    ])
}

/// A server-side chart: which scraped series (by the end of their name), and which
/// labels tell lines apart.
struct ServerPanel {
    id: &'static str,
    title: &'static str,
    y_desc: &'static str,
    suffix: &'static str,
    keep: &'static [&'static str],
}

impl ServerPanel {
    const fn new(
        id: &'static str,
        title: &'static str,
        y_desc: &'static str,
        suffix: &'static str,
        keep: &'static [&'static str],
    ) -> ServerPanel {
        ServerPanel {
            id,
            title,
            y_desc,
            suffix,
            keep,
        }
    }
}

// A table, one panel a row: id, title, y axis; the series' name suffix and the labels
// that tell its lines apart.
#[rustfmt::skip]
const SERVER_PANELS: [ServerPanel; 4] = [
    ServerPanel::new("server-consumer-lag", "Kafka consumer lag", "messages behind",
        "consumer_lag", &["service", "consumer", "group"]),
    ServerPanel::new("server-outbox-backlog", "Outbox backlog (committed, not yet published)", "events",
        "outbox_backlog", &["service"]),
    // orders' `saga_orders` gauge (orders by saga status); not the transitions counter,
    // which would not add up with it.
    ServerPanel::new("server-saga-states", "Saga states", "sagas",
        "saga_orders", &["service", "status"]),
    // The gateway's `circuit_breaker_state` per upstream replica.
    ServerPanel::new("server-circuit-breakers", "Circuit breakers", "state (0 closed, 1 open, 2 half-open)",
        "circuit_breaker_state", &["service", "upstream", "replica"]),
];

fn server_panels(timeline: &Timeline<'_>) -> Result<Vec<Section>, ReportError> {
    let mut sections = Vec::new();
    // Read back from the run's Prometheus (`[system] prometheus = true`) at its end, so
    // only a run that had one can have it.
    let request_rate = ServerPanel::new(
        "server-request-rate",
        "Requests per second by service (Prometheus)",
        "requests/s",
        "http_requests_per_second",
        &["service"],
    );
    let from_prometheus = timeline
        .results
        .prometheus
        .is_some()
        .then_some(&request_rate);
    for panel in SERVER_PANELS.iter().chain(from_prometheus) {
        let groups = timeline.server_groups(panel.suffix, panel.keep);
        if groups.is_empty() {
            let absent = format!(
                "No series ending in `{}` was scraped in this run.",
                panel.suffix
            );
            sections.push(missing(panel.id, panel.title, absent));
            continue;
        }
        let mut spec = time_spec(timeline, panel.id, panel.title, panel.y_desc);
        let shown = groups.len().min(MAX_ENDPOINT_LINES + 1);
        if groups.len() > shown {
            spec.note = Some(format!(
                "The {shown} series with the highest peaks of {} are drawn.",
                groups.len()
            ));
        }
        for (index, (label, points)) in groups.into_iter().take(shown).enumerate() {
            spec.lines.push(Line {
                style: SeriesStyle::nth(index, label),
                points,
            });
        }
        let last = spec
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .fold(timeline.end, f64::max);
        spec.x_range = (0.0, last);
        spec.y_range = (0.0, max_y(&spec.lines).max(1.0) * 1.08);
        sections.push(Section::Chart(charts::draw(spec)?));
    }
    Ok(sections)
}
