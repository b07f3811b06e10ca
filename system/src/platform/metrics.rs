//! Prometheus metrics of one service process, served as text on `/metrics`.
//!
//! One [`Metrics`] per process, cloned into every part that counts something; each clone
//! shares the same registry.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Buckets (seconds) of the histograms of asynchronous steps (a saga step, a
/// projection): from a millisecond on a quiet system to tens of seconds under a backlog.
pub const STEP_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets (seconds) of the time a consumer takes to handle an event: each bound 25% above
/// the one before, from 0.25 ms to about 14 s, so that a quantile interpolated within a
/// bucket (as `histogram_quantile` does) is off by less than a quarter of its value, where
/// [`STEP_BUCKETS`]' decades would let a p99 of 8 ms read anywhere from 5 to 10 ms.
pub fn handling_buckets() -> Vec<f64> {
    (0..50).map(|i| 0.00025 * 1.25f64.powi(i)).collect()
}

/// The metrics every service has; services add their own to [`Metrics::registry`].
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub registry: Registry,
    /// Outbox events acknowledged by Kafka and marked published.
    pub outbox_published: IntCounter,
    /// Outbox events committed but not yet published.
    pub outbox_backlog: IntGauge,
    /// Events a consumer took off Kafka, by consumer and outcome
    /// (`applied`, `duplicate`, `dead_lettered`).
    pub events_consumed: IntCounterVec,
    /// Attempts that failed transiently and were retried, by consumer.
    pub event_retries: IntCounterVec,
    /// Seconds from taking an event off Kafka to committing its effect (or
    /// dead-lettering it), by consumer: queueing for its partition's worker included.
    pub event_handling: HistogramVec,
    /// Messages between a consumer's position and the end of its partitions.
    pub consumer_lag: IntGaugeVec,
    /// HTTP request latency by route, method and status.
    pub http_requests: HistogramVec,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Registers `metric` in `registry` and hands it back. Every metric's name and labels are
/// constants, so a failure here is a programming error (an invalid or duplicate name) that
/// any test starting the service catches; nothing a request or the network sends reaches it.
#[allow(clippy::expect_used)]
fn registered<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: Collector + Clone + 'static,
{
    let metric = metric.expect("metric definition is valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// Metrics labelled with the service's name (`service="orders"` on every series).
    #[allow(clippy::expect_used)]
    pub fn new(service: &str) -> Metrics {
        let labels = std::iter::once(("service".to_string(), service.to_string())).collect();
        let registry = Registry::new_custom(Some("faultline".into()), Some(labels))
            .expect("a registry with a constant label is valid");
        let outbox_published = registered(
            &registry,
            IntCounter::new(
                "outbox_published_total",
                "Outbox events acknowledged by Kafka",
            ),
        );
        let outbox_backlog = registered(
            &registry,
            IntGauge::new(
                "outbox_backlog",
                "Outbox events committed and not yet published",
            ),
        );
        let events_consumed = registered(
            &registry,
            IntCounterVec::new(
                Opts::new("events_consumed_total", "Events taken off Kafka by outcome"),
                &["consumer", "outcome"],
            ),
        );
        let event_retries = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "event_retries_total",
                    "Event handling attempts retried after a transient error",
                ),
                &["consumer"],
            ),
        );
        let event_handling = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "event_handling_seconds",
                    "Time from taking an event off Kafka to committing its effect",
                )
                .buckets(handling_buckets()),
                &["consumer"],
            ),
        );
        let consumer_lag = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "consumer_lag",
                    "Messages between the last one applied (its stored offset) and the partition end",
                ),
                &["consumer", "topic", "partition"],
            ),
        );
        let http_requests = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ]),
                &["route", "method", "status"],
            ),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                outbox_published,
                outbox_backlog,
                events_consumed,
                event_retries,
                event_handling,
                consumer_lag,
                http_requests,
            }),
        }
    }

    /// Registers a service's own metric (built by its constructor, e.g.
    /// `IntCounterVec::new(opts, labels)`) next to the common ones and returns it.
    pub fn register<M>(&self, metric: prometheus::Result<M>) -> M
    where
        M: Collector + Clone + 'static,
    {
        registered(&self.registry, metric)
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_the_service_label() {
        let metrics = Metrics::new("orders");
        metrics.outbox_published.inc();
        metrics
            .events_consumed
            .with_label_values(&["analytics", "applied"])
            .inc();
        let text = metrics.render();
        assert!(
            text.contains("faultline_outbox_published_total{service=\"orders\"} 1"),
            "{text}"
        );
        assert!(text.contains("outcome=\"applied\""), "{text}");
    }

    #[test]
    fn a_service_metric_is_served_with_the_common_ones() {
        let metrics = Metrics::new("users");
        let cache = metrics.register(IntCounterVec::new(
            Opts::new("profile_cache_total", "Profile reads by cache outcome"),
            &["outcome"],
        ));
        cache.with_label_values(&["hit"]).inc_by(2);
        let text = metrics.render();
        assert!(
            text.contains("faultline_profile_cache_total{outcome=\"hit\",service=\"users\"} 2"),
            "{text}"
        );
        assert!(text.contains("faultline_outbox_backlog"), "{text}");
    }
}
