//! A run with Prometheus (`[system] prometheus = true`): its directory goes under the run's
//! output directory ([`keep_under`]), so the raw series outlive the run beside
//! `results.json`; at the end, [`record`] writes where they are into results and reads the
//! request rate per service back from Prometheus' HTTP API into `server_metrics`, where
//! the report charts it next to the series the run scraped itself.

use std::path::Path;
use std::time::{Duration, SystemTime};

use faultline_results::{MetricKind, MetricSeries, PrometheusSource, Results};
use faultline_system::stack::PrometheusQuery;
use faultline_system::supervisor::{System, SystemSpec};

/// The name the request-rate series get in `server_metrics` (the report's panel reads it).
pub(crate) const REQUEST_RATE: &str = "faultline_http_requests_per_second";

/// Requests per second per service, from the services' own latency histograms. The 5 s
/// window spans several 1 s scrapes, so one late scrape does not drop the line to zero.
const REQUEST_RATE_PROMQL: &str =
    "sum by (service) (rate(faultline_http_request_duration_seconds_count[5s]))";

/// How long after the load the last scrape may take to land.
const SCRAPE_SETTLE: Duration = Duration::from_secs(2);

/// Puts Prometheus' directory under `output` when the run starts one and no place was
/// chosen.
pub(super) fn keep_under(spec: &mut SystemSpec, output: &Path) {
    if let Some(prometheus) = spec.stack.prometheus.as_mut() {
        prometheus
            .dir
            .get_or_insert_with(|| output.join("prometheus"));
    }
}

/// Records where the run's Prometheus keeps its series and reads the request rate back.
/// A Prometheus that does not answer costs the run only that series: it says so.
pub(super) async fn record(system: &System, results: &mut Results, started_at: SystemTime) {
    let Some(prometheus) = system.stack().and_then(|stack| stack.prometheus()) else {
        return;
    };
    let url = prometheus.url();
    let data_dir = prometheus.dir().display().to_string();
    eprintln!("run: Prometheus kept the run's series in {data_dir}");
    results.prometheus = Some(PrometheusSource {
        url: url.clone(),
        data_dir,
    });
    tokio::time::sleep(SCRAPE_SETTLE).await;
    let start = unix_seconds(started_at);
    let end = unix_seconds(SystemTime::now());
    let query = PrometheusQuery::new(&url);
    match query
        .query_range(REQUEST_RATE_PROMQL, start, end, Duration::from_secs(1))
        .await
    {
        Ok(series) => results
            .server_metrics
            .extend(series.into_iter().map(|series| {
                MetricSeries {
                    name: REQUEST_RATE.to_string(),
                    labels: series.labels,
                    kind: Some(MetricKind::Gauge),
                    points: (series.points.into_iter())
                        .map(|(at, value)| (at - start, value))
                        .collect(),
                }
            })),
        Err(error) => eprintln!("run: reading the request rate from Prometheus: {error}"),
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
