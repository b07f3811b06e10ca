//! A run with Prometheus in the report: the server-side section names the directory the
//! raw series are kept in with a PromQL link, and charts the request rate read back from
//! Prometheus; a run without says how to turn it on. Both validate against the schema.

use std::collections::BTreeMap;

use faultline_reports::{html, Claims, GateReport, Report};
use faultline_results::{MetricKind, MetricSeries, PrometheusSource, Results};

use crate::support::plain_results;

fn page(results: &Results) -> String {
    let claims = Claims::builtin().unwrap();
    let report = Report::build(results, &claims, GateReport::default()).unwrap();
    html::render(&report)
}

/// What `faultline run` records with `[system] prometheus = true`: where, and the gateway's
/// request rate over three seconds.
fn with_prometheus() -> Results {
    let mut results = plain_results();
    results.prometheus = Some(PrometheusSource {
        url: "http://127.0.0.1:9090".into(),
        data_dir: "/runs/checkout/prometheus".into(),
    });
    results.server_metrics.push(MetricSeries {
        name: "faultline_http_requests_per_second".into(),
        labels: BTreeMap::from([("service".to_string(), "gateway".to_string())]),
        kind: Some(MetricKind::Gauge),
        points: vec![(1.0, 40.0), (2.0, 50.0), (3.0, 45.0)],
    });
    results
}

#[test]
fn the_server_side_section_names_the_kept_series_and_charts_the_request_rate() {
    let results = with_prometheus();
    crate::schema::assert_valid(&results);
    let html = page(&results);
    let server = html
        .split("<h2 id=\"server\">")
        .nth(1)
        .expect("a server-side section");
    assert!(server.contains("/runs/checkout/prometheus"), "{server}");
    assert!(
        server.contains("http://127.0.0.1:9090/graph?g0.expr=sum%20by"),
        "no PromQL link: {server}"
    );
    assert!(server.contains("data-chart=\"server-request-rate\""));
}

#[test]
fn a_run_without_prometheus_says_how_to_keep_the_series() {
    let results = plain_results();
    let html = page(&results);
    assert!(html.contains("<code>[system] prometheus = true</code>"));
    assert!(!html.contains("data-chart=\"server-request-rate\""));
}
