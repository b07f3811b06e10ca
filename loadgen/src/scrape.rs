//! Scraping the services' Prometheus `/metrics` while load runs, so that a run records what
//! the server side did (consumer lag, outbox backlog, saga states, circuit breakers) beside
//! what the client saw, on the same time axis.
//!
//! [`Scraper::start`] polls every target every `interval` on its own task and keeps only the
//! metric names asked for (a histogram family would be thousands of series a run);
//! [`Scraper::finish`] stops it and returns one [`MetricSeries`] per name and label set,
//! with an `instance` label naming the target, its points in seconds after the run's start.
//! A target that does not answer costs a missing point, never the run.
//!
//! An `https://` target is called with [`ScrapeSpec::tls`] when given: under the reference
//! system's mutual TLS, the client certificate the mesh issues for scrapers and the
//! system CA, without which a service refuses the handshake.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use faultline_results::{MetricKind, MetricSeries};

use crate::LoadError;

/// The series the reference system's report draws.
pub const DEFAULT_METRICS: &[&str] = &[
    "faultline_consumer_lag",
    "faultline_outbox_backlog",
    "faultline_saga_orders",
    "faultline_circuit_breaker_state",
    "faultline_projection_lag_seconds",
    "faultline_events_consumed_total",
];

/// What to scrape.
#[derive(Debug, Clone)]
pub struct ScrapeSpec {
    /// A service's base URL (`/metrics` is appended) or its full metrics URL.
    pub targets: Vec<String>,
    /// Metric names to keep.
    pub metrics: Vec<String>,
    pub interval: Duration,
    /// How `https://` targets are called (trusted roots, client certificate); `None`:
    /// Mozilla's roots and no client certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A series: metric name and label set.
type SeriesKey = (String, BTreeMap<String, String>);
/// A series' type and its (scrape time, value) points.
type SeriesPoints = (Option<MetricKind>, Vec<(SystemTime, f64)>);

struct Collected {
    points: HashMap<SeriesKey, SeriesPoints>,
}

/// A running scrape; see the module documentation.
pub struct Scraper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Collected>,
}

fn metrics_url(target: &str) -> String {
    let target = target.trim_end_matches('/');
    if target.ends_with("/metrics") {
        target.to_string()
    } else {
        format!("{target}/metrics")
    }
}

/// `host:port` of a URL, for the `instance` label.
fn instance(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string()
}

impl Scraper {
    /// Starts scraping; an error when `spec.tls` cannot make a client.
    pub fn start(spec: ScrapeSpec) -> Result<Scraper, LoadError> {
        let client = client(spec.tls.as_deref())?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut collected = Collected {
                points: HashMap::new(),
            };
            let mut warned: Vec<String> = Vec::new();
            let mut tick = tokio::time::interval(spec.interval.max(Duration::from_millis(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                for target in &spec.targets {
                    let url = metrics_url(target);
                    match scrape_once(&client, &url).await {
                        Ok(text) => collect(
                            &mut collected,
                            &text,
                            &spec.metrics,
                            &instance(&url),
                            SystemTime::now(),
                        ),
                        Err(error) => {
                            if !warned.contains(&url) {
                                tracing::warn!(%url, %error, "scrape failed (points from it will be missing)");
                                warned.push(url);
                            }
                        }
                    }
                }
            }
            collected
        });
        Ok(Scraper { stop, task })
    }

    /// Stops scraping; the series with offsets from `started_at`, sorted by name and labels.
    pub async fn finish(self, started_at: SystemTime) -> Vec<MetricSeries> {
        let _ = self.stop.send(());
        let Ok(collected) = self.task.await else {
            return Vec::new();
        };
        let mut series: Vec<MetricSeries> = collected
            .points
            .into_iter()
            .map(|((name, labels), (kind, points))| MetricSeries {
                name,
                labels,
                kind,
                points: points
                    .into_iter()
                    .map(|(at, value)| {
                        let offset = match at.duration_since(started_at) {
                            Ok(after) => after.as_secs_f64(),
                            Err(before) => -before.duration().as_secs_f64(),
                        };
                        (offset, value)
                    })
                    .collect(),
            })
            .collect();
        series.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        series
    }
}

/// The scrape's HTTP client: reqwest, which takes a rustls configuration as it is.
fn client(tls: Option<&rustls::ClientConfig>) -> Result<reqwest::Client, LoadError> {
    let builder = reqwest::Client::builder();
    let builder = match tls {
        Some(tls) => builder.tls_backend_preconfigured(tls.clone()),
        None => builder,
    };
    builder.build().map_err(|e| LoadError::InvalidArgument {
        option: "the scrape's TLS settings",
        reason: with_causes(&e),
    })
}

async fn scrape_once(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = tokio::time::timeout(Duration::from_secs(1), client.get(url).send())
        .await
        .map_err(|_| "no answer within 1 s".to_string())?
        .map_err(|e| with_causes(&e))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    tokio::time::timeout(Duration::from_secs(1), response.text())
        .await
        .map_err(|_| "body not read within 1 s".to_string())?
        .map_err(|e| with_causes(&e))
}

/// An error with its causes: reqwest's own message leaves out why (a refused
/// certificate, a refused connection).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn collect(
    collected: &mut Collected,
    text: &str,
    wanted: &[String],
    instance: &str,
    at: SystemTime,
) {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return;
    };
    for sample in scrape.samples {
        if !wanted.iter().any(|w| w == &sample.metric) {
            continue;
        }
        let (kind, value) = match sample.value {
            prometheus_parse::Value::Counter(v) => (Some(MetricKind::Counter), v),
            prometheus_parse::Value::Gauge(v) => (Some(MetricKind::Gauge), v),
            prometheus_parse::Value::Untyped(v) => (Some(MetricKind::Untyped), v),
            // Histograms and summaries are not kept as series.
            _ => continue,
        };
        let mut labels: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("instance".into(), instance.to_string());
        let entry = collected
            .points
            .entry((sample.metric.clone(), labels))
            .or_insert_with(|| (kind, Vec::new()));
        entry.1.push((at, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wanted_metrics_are_kept_with_an_instance_label() {
        let text = "# HELP faultline_outbox_backlog b\n# TYPE faultline_outbox_backlog gauge\n\
                    faultline_outbox_backlog{service=\"orders\"} 7\n\
                    # TYPE other_metric counter\nother_metric 1\n";
        let mut collected = Collected {
            points: HashMap::new(),
        };
        collect(
            &mut collected,
            text,
            &["faultline_outbox_backlog".to_string()],
            "127.0.0.1:9",
            SystemTime::now(),
        );
        assert_eq!(collected.points.len(), 1);
        let ((name, labels), (kind, points)) =
            collected.points.into_iter().next().expect("one series");
        assert_eq!(name, "faultline_outbox_backlog");
        assert_eq!(
            labels.get("instance").map(String::as_str),
            Some("127.0.0.1:9")
        );
        assert_eq!(labels.get("service").map(String::as_str), Some("orders"));
        assert_eq!(kind, Some(MetricKind::Gauge));
        assert_eq!(points[0].1, 7.0);
    }

    #[test]
    fn base_urls_get_the_metrics_path() {
        assert_eq!(metrics_url("http://h:1"), "http://h:1/metrics");
        assert_eq!(metrics_url("http://h:1/metrics"), "http://h:1/metrics");
        assert_eq!(instance("http://h:1/metrics"), "h:1");
    }
}
