//! Renders a [`Report`] as one self-contained HTML page: inline CSS, inline SVG,
//! no script, no external asset, so it opens from disk and offline, and prints.

use std::fmt::Write as _;

use faultline_results::{
    quantity::{Dimension, Quantity},
    ErrorClass, LatencyOrigin, LatencySummary, LoadModel, Results, Totals,
};

use crate::{
    charts::{Chart, Marker, SeriesStyle},
    claims::{run_hardware, ClaimStatus},
    metric::offset_of,
    report::{Report, Section},
    timeline::decode,
};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

pub(crate) const STYLE: &str = r#"
body { font-family: sans-serif; color: #222; margin: 0 auto; max-width: 1160px; padding: 16px; }
h1 { font-size: 24px; margin: 0 0 4px 0; }
h2 { font-size: 19px; border-bottom: 2px solid #444; padding-bottom: 3px; margin-top: 32px; }
h3 { font-size: 16px; margin: 18px 0 6px 0; }
p.meta { color: #444; margin: 2px 0; }
.warn { border-left: 6px solid #D55E00; background: #fbeee6; padding: 6px 10px; }
.missing { color: #555; font-style: italic; margin: 4px 0 14px 0; }
figure { margin: 10px 0 22px 0; page-break-inside: avoid; }
figcaption { font-weight: bold; font-size: 16px; margin-bottom: 4px; }
figure svg.chart { display: block; }
ul.legend { list-style: none; padding: 0; margin: 4px 0 0 78px; display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 14px; }
ul.legend li { display: flex; align-items: center; gap: 6px; }
p.note { font-size: 13px; color: #444; margin: 2px 0 0 78px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px 0; }
th, td { border: 1px solid #bbb; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { font-weight: bold; }
.fail { font-weight: bold; text-decoration: underline; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 8px; font-size: 12px; overflow-x: auto; }
@media print { body { max-width: none; } h2 { page-break-after: avoid; } }
"#;

fn ms(micros: u64) -> String {
    Quantity::new(micros as f64 / 1e6, Dimension::Time).to_string()
}

fn secs(value: f64) -> String {
    Quantity::new(value, Dimension::Time).to_string()
}

/// Renders the page.
pub fn render(report: &Report<'_>) -> String {
    let results = report.results;
    let mut page = String::with_capacity(256 * 1024);
    let title = format!(
        "faultline report: {}",
        results
            .metadata
            .scenario
            .as_deref()
            .unwrap_or(&results.metadata.target)
    );
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    header(&mut page, results);
    crate::capacity::write_html(&mut page, report);
    page.push_str("<h2 id=\"charts\">Load</h2>\n");
    let server_start = report
        .sections
        .iter()
        .position(|s| s.id().starts_with("server-"));
    let consistency_start = report
        .sections
        .iter()
        .position(|s| s.id().starts_with("consistency-"));
    for (index, section) in report.sections.iter().enumerate() {
        if section.id() == crate::capacity::CHART_ID {
            continue; // drawn above, in the capacity section
        }
        if Some(index) == consistency_start {
            page.push_str("<h2 id=\"consistency\">Consistency window</h2>\n");
            consistency_table(&mut page, results);
        }
        if Some(index) == server_start {
            page.push_str(
                "<h2 id=\"server\">Server side (scraped from the services' /metrics)</h2>\n",
            );
            crate::prometheus::write_html(&mut page, results);
        }
        match section {
            Section::Chart(chart) => figure(&mut page, chart),
            Section::Missing { id, title, reason } => {
                let _ = write!(
                    page,
                    "<h3 id=\"chart-{}\">{}</h3>\n<p class=\"missing\">{}</p>\n",
                    escape(id),
                    escape(title),
                    escape(reason)
                );
            }
        }
    }
    faults_table(&mut page, results);
    endpoints_table(&mut page, results);
    crate::traces::write_html(&mut page, results);
    gates_table(&mut page, report);
    claims_table(&mut page, report);
    checker_table(&mut page, results);
    environment(&mut page, results);
    page.push_str("</body>\n</html>\n");
    page
}

fn header(page: &mut String, results: &Results) {
    let m = &results.metadata;
    let t = &results.totals;
    let _ = write!(
        page,
        "<h1>faultline report: {}</h1>\n<p class=\"meta\">Target <code>{}</code>, started {}, {} long, {} requests, {:.1} requests/s achieved, {} errors ({:.2}%), p50 {}, p99 {}.</p>\n",
        escape(m.scenario.as_deref().unwrap_or("(no scenario)")),
        escape(&m.target),
        escape(&m.started_at),
        secs(m.duration_secs),
        t.requests,
        t.achieved_rate,
        t.errors.total(),
        if t.requests > 0 { 100.0 * t.errors.total() as f64 / t.requests as f64 } else { 0.0 },
        ms(t.latency_summary.p50_us),
        ms(t.latency_summary.p99_us),
    );
    let _ = writeln!(
        page,
        "<p class=\"meta\">Latency is measured from each request's {}.</p>",
        match m.latency_origin {
            LatencyOrigin::IntendedSendTime => "intended send time (coordinated omission corrected)",
            LatencyOrigin::ActualSendTime => "actual send time: server stalls are hidden (coordinated omission), for demonstration only",
        }
    );
    if let Some(sentence) = crate::gate::warm_up_sentence(results) {
        let _ = writeln!(page, "<p class=\"meta\">{}</p>", escape(&sentence));
    }
    if let Some(message) = &results.generator.message {
        let _ = writeln!(page, "<p class=\"warn\">{}</p>", escape(message));
    }
}

fn swatch(style: &SeriesStyle) -> String {
    let color = style.hex();
    let dash = style
        .dash
        .map(|d| format!(" stroke-dasharray=\"{d}\""))
        .unwrap_or_default();
    let marker = match style.marker {
        Marker::None => String::new(),
        Marker::Circle => format!("<circle cx=\"20\" cy=\"7\" r=\"4\" fill=\"{color}\"/>"),
        Marker::Triangle => format!("<polygon points=\"20,2 25,11 15,11\" fill=\"{color}\"/>"),
        Marker::Square => {
            format!("<rect x=\"16\" y=\"3\" width=\"8\" height=\"8\" fill=\"{color}\"/>")
        }
        Marker::Cross => {
            format!("<path d=\"M16 3 L24 11 M24 3 L16 11\" stroke=\"{color}\" stroke-width=\"3\"/>")
        }
    };
    format!(
        "<svg width=\"40\" height=\"14\" aria-hidden=\"true\"><line x1=\"0\" y1=\"7\" x2=\"40\" y2=\"7\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>{marker}</svg>"
    )
}

pub(crate) fn figure(page: &mut String, chart: &Chart) {
    let _ = write!(
        page,
        "<figure id=\"chart-{}\">\n<figcaption>{}</figcaption>\n",
        escape(&chart.id),
        escape(&chart.title)
    );
    // plotters' <svg> gets a class, and the chart's identity for the tests and styles.
    let svg = chart.svg.replacen(
        "<svg ",
        &format!("<svg class=\"chart\" data-chart=\"{}\" ", escape(&chart.id)),
        1,
    );
    page.push_str(&svg);
    page.push_str("\n<ul class=\"legend\">");
    for style in &chart.series {
        let _ = write!(page, "<li>{}{}</li>", swatch(style), escape(&style.label));
    }
    if !chart.bands.is_empty() {
        page.push_str("<li><svg width=\"40\" height=\"14\" aria-hidden=\"true\"><rect width=\"40\" height=\"14\" fill=\"#555555\" opacity=\"0.16\"/></svg>fault active (shaded, labelled)</li>");
    }
    page.push_str("</ul>\n");
    if let Some(note) = &chart.note {
        let _ = writeln!(page, "<p class=\"note\">{}</p>", escape(note));
    }
    page.push_str("</figure>\n");
}

fn consistency_table(page: &mut String, results: &Results) {
    let Some(encoded) = &results.consistency_window else {
        return;
    };
    let Ok(histogram) = decode(encoded, "consistency window") else {
        page.push_str("<p class=\"warn\">The consistency window histogram does not decode.</p>\n");
        return;
    };
    if histogram.is_empty() {
        return;
    }
    page.push_str("<table><tr><th>observations</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr><tr>");
    let _ = write!(page, "<td class=\"num\">{}</td>", histogram.len());
    for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
        let _ = write!(
            page,
            "<td class=\"num\">{}</td>",
            ms(histogram.value_at_quantile(q))
        );
    }
    let _ = writeln!(
        page,
        "<td class=\"num\">{}</td></tr></table>",
        ms(histogram.max())
    );
}

fn faults_table(page: &mut String, results: &Results) {
    page.push_str("<h2 id=\"faults\">Faults</h2>\n");
    if results.faults.is_empty() {
        page.push_str("<p class=\"missing\">No fault was injected in this run.</p>\n");
        return;
    }
    page.push_str("<table><tr><th>label</th><th>kind</th><th>target</th><th>start</th><th>end</th><th>duration</th><th>ready again after</th><th>SLOs held again after</th></tr>\n");
    let started = &results.metadata.started_at;
    let recoveries = crate::metric::slo_recoveries(results).unwrap_or_default();
    for (index, fault) in results.faults.iter().enumerate() {
        let ready = fault.ready_after_secs.map_or("—".to_string(), secs);
        let slos_back = match (recoveries.get(index).copied().flatten(), &fault.end) {
            (Some(took), _) => secs(took),
            (None, Some(_)) => "not before the run's end".to_string(),
            (None, None) => "—".to_string(),
        };
        let start = offset_of(&fault.start, started);
        let end = fault.end.as_ref().map(|e| offset_of(e, started));
        let show =
            |v: Option<f64>| v.map_or("(time does not parse)".to_string(), |s| format!("{s:.1} s"));
        let (end_text, duration) = match (start, end) {
            (_, None) => ("still active at the end".to_string(), String::new()),
            (Some(s), Some(Some(e))) => (show(Some(e)), secs(e - s)),
            (_, Some(e)) => (show(e), String::new()),
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{ready}</td><td class=\"num\">{slos_back}</td></tr>",
            escape(&fault.label),
            escape(&fault.kind),
            escape(&fault.target),
            show(start),
            end_text,
            duration
        );
    }
    page.push_str("</table>\n");
}

fn summary_cells(page: &mut String, name: &str, totals: &Totals) {
    let s: &LatencySummary = &totals.latency_summary;
    let errors: Vec<String> = ErrorClass::ALL
        .iter()
        .filter(|c| totals.errors.get(**c) > 0)
        .map(|c| format!("{} {}", c.name(), totals.errors.get(*c)))
        .collect();
    let error_share = if totals.requests > 0 {
        100.0 * totals.errors.total() as f64 / totals.requests as f64
    } else {
        0.0
    };
    let _ = writeln!(
        page,
        "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}%</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        escape(name),
        totals.requests,
        totals.achieved_rate,
        totals.ok,
        error_share,
        escape(&errors.join(", ")),
        ms(s.mean_us.round() as u64),
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p99_us),
        ms(s.p99_9_us),
        ms(s.max_us),
        totals.late,
        totals.dropped,
    );
}

fn endpoints_table(page: &mut String, results: &Results) {
    page.push_str("<h2 id=\"endpoints\">Endpoints</h2>\n<table><tr><th>endpoint</th><th>requests</th><th>rate (/s)</th><th>ok</th><th>errors</th><th>errors by class</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>late</th><th>dropped</th></tr>\n");
    for (name, endpoint) in &results.endpoints {
        summary_cells(page, name, &endpoint.totals);
    }
    summary_cells(page, "all endpoints", &results.totals);
    page.push_str("</table>\n");
}

fn gates_table(page: &mut String, report: &Report<'_>) {
    page.push_str("<h2 id=\"gates\">Gates</h2>\n");
    if report.gates.results.is_empty() {
        page.push_str("<p class=\"missing\">No gate was set for this run (scenario [[gates]] tables or --gate).</p>\n");
        return;
    }
    let _ = write!(
        page,
        "<p>{} of {} gates hold.</p>\n<table><tr><th>result</th><th>gate</th><th>measured</th><th>limit</th><th>detail</th><th>source</th></tr>\n",
        report.gates.passed(),
        report.gates.results.len()
    );
    for gate in &report.gates.results {
        let _ = writeln!(
            page,
            "<tr><td class=\"{}\">{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            if gate.passed { "pass" } else { "fail" },
            if gate.passed { "✔ pass" } else { "✘ FAIL" },
            escape(&gate.name),
            escape(&gate.measured.value().map_or("not measured".into(), |q| q.to_string())),
            escape(&gate.limit),
            escape(&gate.message),
            escape(&gate.origin),
        );
    }
    page.push_str("</table>\n");
}

fn claims_table(page: &mut String, report: &Report<'_>) {
    page.push_str("<h2 id=\"claims\">Claims of the architecture documents</h2>\n");
    if report.claims.is_empty() {
        page.push_str("<p class=\"missing\">No claims file was given.</p>\n");
        return;
    }
    let count = |f: fn(&ClaimStatus) -> bool| report.claims.iter().filter(|c| f(&c.status)).count();
    let _ = writeln!(
        page,
        "<p>{} claims: {} pass, {} hold up to this machine's capacity, {} fail, {} not measured in this run, {} not applicable to this run's load, {} not mapped onto anything faultline measures. This run's hardware: {}.</p>",
        report.claims.len(),
        count(|s| *s == ClaimStatus::Pass),
        count(|s| matches!(s, ClaimStatus::HoldsUpTo(_))),
        count(|s| *s == ClaimStatus::Fail),
        count(|s| matches!(s, ClaimStatus::NotMeasured(_))),
        count(|s| matches!(s, ClaimStatus::NotApplicable(_))),
        count(|s| matches!(s, ClaimStatus::NotMapped(_))),
        escape(&run_hardware(report.results)),
    );
    page.push_str("<table><tr><th>result</th><th>claim (document, section, quote)</th><th>metric</th><th>claimed</th><th>measured</th><th>hardware: document / this run</th><th>detail</th></tr>\n");
    let run_machine = format!(
        "{} cores, {:.0} GiB",
        report.results.metadata.machine.cores,
        report.results.metadata.machine.memory_bytes as f64 / (1024.0 * 1024.0 * 1024.0)
    );
    for claim in &report.claims {
        let raw = &claim.claim.raw;
        let (class, label) = match &claim.status {
            ClaimStatus::Pass => ("pass", "✔ pass".to_string()),
            ClaimStatus::Fail => ("fail", "✘ FAIL".to_string()),
            other => ("", other.label().to_string()),
        };
        let detail = match claim.status.detail() {
            Some(reason) => reason.to_string(),
            None => raw.note.clone().unwrap_or_default(),
        };
        let _ = writeln!(
            page,
            "<tr><td class=\"{class}\">{}</td><td><b>{}</b>, {}<br><q>{}</q></td><td><code>{}</code>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{} / {}</td><td>{}</td></tr>",
            escape(&label),
            escape(&raw.document),
            escape(&raw.section),
            escape(&raw.quote),
            escape(raw.metric.as_deref().unwrap_or("—")),
            raw.condition.as_deref().map(|c| format!("<br>when <code>{}</code>", escape(c))).unwrap_or_default(),
            escape(&claim.claimed),
            escape(&claim.measured.map_or("—".to_string(), |q| q.to_string())),
            escape(&raw.hardware),
            escape(&run_machine),
            escape(&detail),
        );
    }
    page.push_str("</table>\n");
}

fn checker_table(page: &mut String, results: &Results) {
    page.push_str("<h2 id=\"checker\">Nothing lost: consistency checker</h2>\n");
    let Some(checker) = &results.checker else {
        page.push_str(
            "<p class=\"missing\">The consistency checker did not run in this run.</p>\n",
        );
        return;
    };
    let _ = writeln!(
        page,
        "<table><tr><th>checked</th><th>lost</th><th>duplicated</th><th>inconsistent</th><th>time to settle</th></tr><tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></table>",
        checker.checked,
        checker.lost,
        checker.duplicated,
        checker.inconsistent,
        checker.settle_secs.map_or("did not settle before the deadline".to_string(), secs),
    );
    if !checker.notes.is_empty() {
        page.push_str("<ul>");
        for note in &checker.notes {
            let _ = write!(page, "<li>{}</li>", escape(note));
        }
        page.push_str("</ul>\n");
    }
}

fn environment(page: &mut String, results: &Results) {
    let m = &results.metadata;
    let s = &results.schedule;
    page.push_str("<h2 id=\"environment\">Environment</h2>\n<table>\n");
    let mut row = |key: &str, value: String| {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(key),
            escape(&value)
        );
    };
    row("machine", run_hardware(results));
    row("faultline version", m.faultline_version.clone());
    row(
        "git commit",
        m.git_commit
            .clone()
            .unwrap_or_else(|| "not recorded".into()),
    );
    row(
        "scenario",
        m.scenario
            .clone()
            .unwrap_or_else(|| "none (a plain load run)".into()),
    );
    row("target", m.target.clone());
    row("started at", m.started_at.clone());
    row("duration", secs(m.duration_secs));
    if let Some(warm_up) = &results.warm_up {
        row("warm-up (not recorded)", warm_up.describe());
    }
    row("HTTP version", format!("{:?}", m.http_version));
    row("connections", m.connections.to_string());
    if m.streams > 1 {
        row("HTTP/2 streams per connection", m.streams.to_string());
    }
    row("timeout", format!("{} ms", m.timeout_ms));
    row("load workers merged", m.workers.to_string());
    let schedule = match s.model {
        LoadModel::Closed => format!("closed model for {}", secs(s.duration_secs)),
        LoadModel::Open => {
            let stages: Vec<String> = s
                .stages
                .iter()
                .map(|st| {
                    format!(
                        "{}: {}→{}/s",
                        secs(st.duration.as_secs_f64()),
                        st.from_rate,
                        st.to_rate
                    )
                })
                .collect();
            format!(
                "open model, {:?} arrivals, stages {}",
                s.arrivals,
                stages.join(", ")
            )
        }
    };
    row("schedule", schedule);
    row(
        "generator",
        format!(
            "late after {} ms, dropped after {} ms; {}",
            results.generator.late_threshold_ms,
            results.generator.max_send_delay_ms,
            if results.generator.kept_up {
                "kept to the schedule"
            } else {
                "did NOT keep to the schedule"
            }
        ),
    );
    page.push_str("</table>\n");
    match &results.scenario_text {
        Some(text) => {
            let _ = write!(page, "<h3>Scenario file</h3>\n<pre>{}</pre>\n", escape(text));
        }
        None => page.push_str("<p class=\"missing\">The scenario file's text was not recorded in these results.</p>\n"),
    }
}
