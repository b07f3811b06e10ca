//! A capacity search in the report: latency (p50, p99) against offered rate, the
//! "hockey stick", with the knee (the capacity) marked, and the table of steps; and the
//! same in Markdown for `summary.md`.
//!
//! It reads only `results.capacity` (`faultline_results::CapacityResults`). The chart is
//! one of the report's sections ([`chart`], built by `Report::build`); the page puts it
//! under its own heading with the steps' table ([`write_html`]) rather than among the
//! time charts, since its x axis is a rate, not time.

use std::fmt::Write as _;

use faultline_results::{CapacityResults, CapacityStep, Results, StepPhase};

use crate::{
    charts::{self, ChartSpec, Line, SeriesStyle},
    error::ReportError,
    html::{escape, figure},
    report::{Report, Section},
};

/// The chart's id in the report's sections.
pub const CHART_ID: &str = "capacity";

/// The steps in rising offered rate (the search runs them out of order when it bisects).
fn by_rate(capacity: &CapacityResults) -> Vec<&CapacityStep> {
    let mut steps: Vec<&CapacityStep> = capacity.steps.iter().collect();
    steps.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    steps
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Latency against offered rate, the capacity drawn as a vertical line; `None` when the
/// run was no capacity search.
pub fn chart(results: &Results) -> Result<Option<Section>, ReportError> {
    let Some(capacity) = &results.capacity else {
        return Ok(None);
    };
    let steps = by_rate(capacity);
    let p50: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.offered_rate, ms(s.p50_us)))
        .collect();
    let p99: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.offered_rate, ms(s.p99_us)))
        .collect();
    let top = p99.iter().chain(&p50).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let right = steps.iter().map(|s| s.offered_rate).fold(1.0, f64::max) * 1.05;
    let mut lines = vec![
        Line {
            style: SeriesStyle::nth(0, "p50 latency"),
            points: p50,
        },
        Line {
            style: SeriesStyle::nth(1, "p99 latency"),
            points: p99,
        },
    ];
    if let Some(rate) = capacity.capacity {
        lines.push(Line {
            style: SeriesStyle::reference(format!("capacity (knee): {}/s", rate_text(rate))),
            points: vec![(rate, 0.0), (rate, top)],
        });
    }
    let spec = ChartSpec {
        id: CHART_ID.into(),
        title: "Capacity search: latency against offered rate".into(),
        x_desc: "offered rate (per second)".into(),
        y_desc: "latency (ms, from the intended send time)".into(),
        x_range: (0.0, right),
        y_range: (0.0, top),
        x_format: charts::format_number,
        y_format: charts::format_number,
        lines,
        bars: Vec::new(),
        bands: Vec::new(),
        note: Some(capacity.headline()),
    };
    Ok(Some(Section::Chart(charts::draw(spec)?)))
}

/// The capacity section of the page: the headline, the chart and the steps' table.
/// Nothing when the run was no capacity search.
pub fn write_html(page: &mut String, report: &Report<'_>) {
    let Some(capacity) = &report.results.capacity else {
        return;
    };
    let _ = writeln!(
        page,
        "<h2 id=\"capacity\">Capacity</h2>\n<p>{}. Gates every step had to hold: {}; a dropped request breaks a step too. The rest of this report is the run at {}.</p>",
        escape(&capacity.headline()),
        escape(&gates_text(capacity)),
        if capacity.capacity.is_some() { "the capacity" } else { "the first step" },
    );
    if let Some(Section::Chart(chart)) = report.sections.iter().find(|s| s.id() == CHART_ID) {
        figure(page, chart);
    }
    page.push_str("<table><tr>");
    for head in HEADS {
        let _ = write!(page, "<th>{head}</th>");
    }
    page.push_str("</tr>\n");
    for (number, step) in capacity.steps.iter().enumerate() {
        page.push_str("<tr>");
        let result = if step.passed { "pass" } else { "fail" };
        for (column, cell) in cells(number, step).iter().enumerate() {
            // The phase is a word, the last column the verdict; the others are figures.
            let class = match column {
                1 => "",
                RESULT_COLUMN => result,
                _ => "num",
            };
            let _ = write!(page, "<td class=\"{class}\">{}</td>", escape(cell));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

/// The capacity and the steps as Markdown, for `summary.md`.
pub fn markdown(capacity: &CapacityResults) -> String {
    let mut md = format!(
        "**Capacity search**: {} (gates: {}).\n\n|",
        capacity.headline(),
        gates_text(capacity)
    );
    for head in HEADS {
        let _ = write!(md, " {head} |");
    }
    md.push_str(&format!("\n|{}\n", "---|".repeat(HEADS.len())));
    for (number, step) in capacity.steps.iter().enumerate() {
        md.push('|');
        for cell in cells(number, step) {
            let _ = write!(md, " {} |", cell.replace('|', "\\|"));
        }
        md.push('\n');
    }
    md.push('\n');
    md
}

/// The steps' table: its heads, and each step's cells in the same order.
const HEADS: [&str; 10] = [
    "#",
    "phase",
    "offered/s",
    "achieved/s",
    "requests",
    "p50",
    "p99",
    "errors",
    "dropped",
    "result",
];

const RESULT_COLUMN: usize = HEADS.len() - 1;

fn cells(number: usize, step: &CapacityStep) -> [String; 10] {
    [
        (number + 1).to_string(),
        phase(step).into(),
        rate_text(step.offered_rate),
        format!("{:.1}", step.achieved_rate),
        step.requests.to_string(),
        format!("{} ms", charts::format_number(&ms(step.p50_us))),
        format!("{} ms", charts::format_number(&ms(step.p99_us))),
        step.errors.to_string(),
        step.dropped.to_string(),
        verdict(step),
    ]
}

fn gates_text(capacity: &CapacityResults) -> String {
    if capacity.search.gates.is_empty() {
        "none besides dropped requests".into()
    } else {
        capacity.search.gates.join(", ")
    }
}

fn phase(step: &CapacityStep) -> &'static str {
    match step.phase {
        StepPhase::Climb => "climb",
        StepPhase::Bisect => "bisect",
    }
}

fn verdict(step: &CapacityStep) -> String {
    match &step.broken {
        None => "held".into(),
        Some(broken) => format!("broke {broken}"),
    }
}

fn rate_text(rate: f64) -> String {
    charts::format_number(&rate)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use faultline_results::{CapacitySearch, SearchEnd};

    use super::*;

    fn step(rate: f64, p99_ms: u64, broken: Option<&str>) -> CapacityStep {
        CapacityStep {
            phase: StepPhase::Climb,
            offered_rate: rate,
            achieved_rate: rate,
            requests: rate as u64,
            errors: 0,
            dropped: 0,
            p50_us: 1000,
            p99_us: p99_ms * 1000,
            passed: broken.is_none(),
            broken: broken.map(str::to_string),
        }
    }

    #[test]
    fn the_markdown_carries_the_capacity_and_every_step() {
        let capacity = CapacityResults {
            search: CapacitySearch {
                start_rate: 100.0,
                factor: Some(2.0),
                step: None,
                max_rate: 1000.0,
                hold_secs: 1.0,
                rounds: 1,
                gates: vec!["http.p99<100ms".into()],
            },
            steps: vec![
                step(100.0, 5, None),
                step(200.0, 6, None),
                step(400.0, 900, Some("http.p99 | 100 ms")),
                step(300.0, 40, None),
            ],
            capacity: Some(300.0),
            ended: SearchEnd::Bracketed,
        };
        let md = markdown(&capacity);
        assert!(md.contains("capacity 300/s"), "{md}");
        assert!(md.contains("gates: http.p99<100ms"), "{md}");
        assert_eq!(md.matches("| climb |").count(), 4, "{md}");
        // A | inside a cell would split it.
        assert!(md.contains("broke http.p99 \\| 100 ms"), "{md}");
    }
}
