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
//!
//! Histograms asked for ([`ScrapeSpec::histograms`]) are not kept as series: only their
//! first and last reading, so [`Scraper::finish_all`] gives each one's change over the run
//! ([`ServerHistogram`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use faultline_results::{MetricKind, MetricSeries, ServerHistogram};

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

/// The histograms the reference system's claims read: each consumer's time from taking an
/// event off Kafka to committing its effect.
pub const DEFAULT_HISTOGRAMS: &[&str] = &["faultline_event_handling_seconds"];

/// What to scrape.
#[derive(Debug, Clone)]
pub struct ScrapeSpec {
    /// A service's base URL (`/metrics` is appended) or its full metrics URL.
    pub targets: Vec<String>,
    /// Metric names to keep.
    pub metrics: Vec<String>,
    /// Histogram names (without `_bucket`) to read at the start and the end.
    pub histograms: Vec<String>,
    pub interval: Duration,
    /// How `https://` targets are called (trusted roots, client certificate); `None`:
    /// Mozilla's roots and no client certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A series: metric name and label set.
type SeriesKey = (String, BTreeMap<String, String>);
/// A series' type and its (scrape time, value) points.
type SeriesPoints = (Option<MetricKind>, Vec<(SystemTime, f64)>);

/// A histogram's buckets (finite bounds), sum and count at one scrape.
#[derive(Clone, Default)]
struct HistogramReading {
    at: Option<SystemTime>,
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

struct Collected {
    points: HashMap<SeriesKey, SeriesPoints>,
    /// Each histogram's first and latest reading.
    histograms: HashMap<SeriesKey, (HistogramReading, HistogramReading)>,
}

/// What a scrape recorded: series, and histograms as their change.
pub struct Scraped {
    pub series: Vec<MetricSeries>,
    pub histograms: Vec<ServerHistogram>,
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
                histograms: HashMap::new(),
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
                            &spec,
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
        self.finish_all(started_at).await.series
    }

    /// Stops scraping; the series as [`Scraper::finish`] gives them, and each histogram's
    /// change from its first reading to its last, sorted the same way.
    pub async fn finish_all(self, started_at: SystemTime) -> Scraped {
        let _ = self.stop.send(());
        let Ok(collected) = self.task.await else {
            return Scraped {
                series: Vec::new(),
                histograms: Vec::new(),
            };
        };
        let offset = |at: SystemTime| match at.duration_since(started_at) {
            Ok(after) => after.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        };
        let reading = |(name, labels): &SeriesKey, r: &HistogramReading| {
            let at = r.at.map_or(0.0, offset);
            ServerHistogram {
                name: name.clone(),
                labels: labels.clone(),
                from_secs: at,
                to_secs: at,
                buckets: r.buckets.clone(),
                sum: r.sum.unwrap_or_default(),
                count: r.count.unwrap_or_default(),
            }
        };
        let mut histograms: Vec<ServerHistogram> = (collected.histograms.iter())
            .map(|(key, (first, last))| {
                ServerHistogram::delta(&reading(key, first), &reading(key, last))
            })
            .collect();
        histograms.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        let mut series: Vec<MetricSeries> = collected
            .points
            .into_iter()
            .map(|((name, labels), (kind, points))| MetricSeries {
                name,
                labels,
                kind,
                points: (points.into_iter())
                    .map(|(at, value)| (offset(at), value))
                    .collect(),
            })
            .collect();
        series.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        Scraped { series, histograms }
    }
}

/// One reading of every target at a time, with one client kept across readings: for a
/// caller that polls the services' state (has the system drained?) rather than records a
/// run's series.
pub struct MetricsProbe {
    client: reqwest::Client,
    spec: ScrapeSpec,
}

impl MetricsProbe {
    /// A probe of `spec`'s targets and metric names (its interval and histograms are not
    /// used); an error when `spec.tls` cannot make a client.
    pub fn new(spec: ScrapeSpec) -> Result<MetricsProbe, LoadError> {
        Ok(MetricsProbe {
            client: client(spec.tls.as_deref())?,
            spec,
        })
    }

    /// The sum of the wanted metrics' values over every series of every target, read
    /// now; an error naming the first target that did not answer, since a sum without it
    /// would say nothing.
    pub async fn sum(&self) -> Result<f64, String> {
        let mut collected = Collected {
            points: HashMap::new(),
            histograms: HashMap::new(),
        };
        for target in &self.spec.targets {
            let url = metrics_url(target);
            let text =
                (scrape_once(&self.client, &url).await).map_err(|e| format!("{url}: {e}"))?;
            collect(
                &mut collected,
                &text,
                &self.spec,
                &instance(&url),
                SystemTime::now(),
            );
        }
        Ok((collected.points.values())
            .filter_map(|(_, points)| points.last().map(|(_, value)| value))
            .sum())
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

/// The sample's labels with `instance`.
fn labels_of(sample: &prometheus_parse::Sample, instance: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = sample
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("instance".into(), instance.to_string());
    labels
}

/// A histogram's part in `sample` (its buckets, `_sum` or `_count`) into `readings`, if
/// `sample` belongs to a wanted histogram.
fn histogram_part(
    readings: &mut HashMap<SeriesKey, HistogramReading>,
    sample: &prometheus_parse::Sample,
    wanted: &[String],
    instance: &str,
) {
    let is_wanted = |name: &str| wanted.iter().any(|w| w == name);
    let (name, value) = match &sample.value {
        prometheus_parse::Value::Histogram(counts) if is_wanted(&sample.metric) => {
            let mut buckets: Vec<(f64, f64)> = (counts.iter())
                .filter(|c| c.less_than.is_finite())
                .map(|c| (c.less_than, c.count))
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let key = (sample.metric.clone(), labels_of(sample, instance));
            readings.entry(key).or_default().buckets = buckets;
            return;
        }
        prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => {
            (&sample.metric, *v)
        }
        _ => return,
    };
    let part = |suffix: &str| name.strip_suffix(suffix).filter(|base| is_wanted(base));
    let (base, is_sum) = match (part("_sum"), part("_count")) {
        (Some(base), _) => (base, true),
        (_, Some(base)) => (base, false),
        _ => return,
    };
    let reading = (readings.entry((base.to_string(), labels_of(sample, instance)))).or_default();
    if is_sum {
        reading.sum = Some(value);
    } else {
        reading.count = Some(value);
    }
}

fn collect(
    collected: &mut Collected,
    text: &str,
    spec: &ScrapeSpec,
    instance: &str,
    at: SystemTime,
) {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return;
    };
    let mut readings: HashMap<SeriesKey, HistogramReading> = HashMap::new();
    for sample in scrape.samples {
        histogram_part(&mut readings, &sample, &spec.histograms, instance);
        if !spec.metrics.iter().any(|w| w == &sample.metric) {
            continue;
        }
        let (kind, value) = match sample.value {
            prometheus_parse::Value::Counter(v) => (Some(MetricKind::Counter), v),
            prometheus_parse::Value::Gauge(v) => (Some(MetricKind::Gauge), v),
            prometheus_parse::Value::Untyped(v) => (Some(MetricKind::Untyped), v),
            // Histograms and summaries are not kept as series.
            _ => continue,
        };
        let labels = labels_of(&sample, instance);
        let entry = collected
            .points
            .entry((sample.metric.clone(), labels))
            .or_insert_with(|| (kind, Vec::new()));
        entry.1.push((at, value));
    }
    for (key, mut reading) in readings {
        // A histogram is read whole or not at all.
        if reading.sum.is_none() || reading.count.is_none() {
            continue;
        }
        reading.at = Some(at);
        match collected.histograms.get_mut(&key) {
            Some((_, last)) => *last = reading,
            None => {
                collected.histograms.insert(key, (reading.clone(), reading));
            }
        }
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
            histograms: HashMap::new(),
        };
        collect(
            &mut collected,
            text,
            &spec(&["faultline_outbox_backlog"], &[]),
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

    fn spec(metrics: &[&str], histograms: &[&str]) -> ScrapeSpec {
        ScrapeSpec {
            targets: Vec::new(),
            metrics: metrics.iter().map(|m| m.to_string()).collect(),
            histograms: histograms.iter().map(|h| h.to_string()).collect(),
            interval: Duration::from_secs(1),
            tls: None,
        }
    }

    /// A consumer's handling histogram as the services' registry renders it.
    fn handling(at_5ms: u64, total: u64, sum: f64) -> String {
        format!(
            "# HELP faultline_event_handling_seconds h\n\
             # TYPE faultline_event_handling_seconds histogram\n\
             faultline_event_handling_seconds_bucket{{consumer=\"notifications\",le=\"0.005\"}} {at_5ms}\n\
             faultline_event_handling_seconds_bucket{{consumer=\"notifications\",le=\"0.01\"}} {total}\n\
             faultline_event_handling_seconds_bucket{{consumer=\"notifications\",le=\"+Inf\"}} {total}\n\
             faultline_event_handling_seconds_sum{{consumer=\"notifications\"}} {sum}\n\
             faultline_event_handling_seconds_count{{consumer=\"notifications\"}} {total}\n"
        )
    }

    #[tokio::test]
    async fn a_histogram_is_kept_as_its_change_from_the_first_reading_to_the_last() {
        let mut collected = Collected {
            points: HashMap::new(),
            histograms: HashMap::new(),
        };
        let spec = spec(&[], &["faultline_event_handling_seconds"]);
        let started = SystemTime::now();
        let later = started + Duration::from_secs(4);
        for (text, at) in [
            (handling(10, 20, 0.1), started),
            (handling(12, 25, 0.12), started + Duration::from_secs(2)),
            (handling(40, 60, 0.4), later),
        ] {
            collect(&mut collected, &text, &spec, "127.0.0.1:9", at);
        }
        assert!(collected.points.is_empty(), "a histogram is no series");
        let (stop, _) = oneshot::channel();
        let scraper = Scraper {
            stop,
            task: tokio::spawn(async move { collected }),
        };
        let scraped = scraper.finish_all(started).await;
        let [histogram] = scraped.histograms.as_slice() else {
            panic!("{} histograms", scraped.histograms.len());
        };
        assert_eq!(histogram.name, "faultline_event_handling_seconds");
        assert_eq!(histogram.labels["consumer"], "notifications");
        assert_eq!(histogram.labels["instance"], "127.0.0.1:9");
        assert_eq!(histogram.buckets, vec![(0.005, 30.0), (0.01, 40.0)]);
        assert_eq!(histogram.count, 40.0);
        assert!((histogram.sum - 0.3).abs() < 1e-9);
        assert_eq!((histogram.from_secs, histogram.to_secs), (0.0, 4.0));
    }

    #[test]
    fn base_urls_get_the_metrics_path() {
        assert_eq!(metrics_url("http://h:1"), "http://h:1/metrics");
        assert_eq!(metrics_url("http://h:1/metrics"), "http://h:1/metrics");
        assert_eq!(instance("http://h:1/metrics"), "h:1");
    }
}
