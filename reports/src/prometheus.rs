//! The server-side section's pointer to the raw series: a run with Prometheus
//! (`[system] prometheus = true`) kept every replica's every metric, scraped each second,
//! in a directory the results name; this says where, and gives a PromQL example to start
//! from. The charts above it show only the few series the report picks.

use std::fmt::Write as _;

use faultline_results::Results;

use crate::html::escape;

/// A first query to paste: requests per second per service.
pub const EXAMPLE_PROMQL: &str =
    "sum by (service) (rate(faultline_http_request_duration_seconds_count[5s]))";

/// The paragraph under the server-side heading.
pub fn write_html(page: &mut String, results: &Results) {
    let Some(source) = &results.prometheus else {
        page.push_str(
            "<p class=\"note\">Every metric of every replica, scraped each second into a real \
             Prometheus, is kept when the run has <code>[system] prometheus = true</code>.</p>\n",
        );
        return;
    };
    let link = format!(
        "{}/graph?g0.expr={}&g0.tab=0&g0.range_input={}s",
        source.url.trim_end_matches('/'),
        encode(EXAMPLE_PROMQL),
        results.metadata.duration_secs.ceil().max(60.0)
    );
    let _ = writeln!(
        page,
        "<p class=\"note\">The raw series (every metric of every replica, scraped each \
         second) are kept in <code>{dir}</code>: serve them again with <code>prometheus \
         --storage.tsdb.path={dir}/data --config.file={dir}/prometheus.yml</code>. During \
         the run they were at <a href=\"{link}\">{url}</a>; for example \
         <code>{promql}</code>.</p>",
        dir = escape(&source.data_dir),
        link = escape(&link),
        url = escape(&source.url),
        promql = escape(EXAMPLE_PROMQL),
    );
}

/// Percent-encodes a query-string value.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
