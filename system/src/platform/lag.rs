//! A consumer's lag, from librdkafka's own statistics: `faultline_consumer_lag` per
//! assigned partition.
//!
//! The lag of a partition is its high watermark less the offset this consumer stored,
//! and the consumer stores an offset only once its record is applied
//! ([`super::consumer`]), so a record waiting in a worker's queue is still behind. Until
//! the first record since the assignment is applied (after a restart or a rebalance), the
//! group's committed offset stands in for it. librdkafka keeps both ends from its fetch
//! responses and emits them every `statistics.interval.ms` ([`STATISTICS_INTERVAL`]), so
//! no request goes to the brokers for it. (Asking the brokers for each partition's
//! watermarks in turn, as this used to, took seconds per round on a busy machine and
//! left the gauges seconds stale: a drained system showed a few records behind on every
//! partition for up to 9 s.)
//!
//! A partition no longer assigned loses its series, so a replica that gave partitions
//! away in a rebalance does not report them behind for ever.

use std::collections::HashMap;

use serde::Deserialize;

use super::metrics::Metrics;

/// `statistics.interval.ms` of every group consumer: how often the lag is renewed.
pub const STATISTICS_INTERVAL: &str = "1000";

/// What the statistics hold that the lag is made of (the rest is ignored).
#[derive(Debug, Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: HashMap<String, TopicStatistics>,
}

#[derive(Debug, Deserialize)]
struct TopicStatistics {
    #[serde(default)]
    partitions: HashMap<String, PartitionStatistics>,
}

#[derive(Debug, Deserialize)]
struct PartitionStatistics {
    partition: i32,
    /// Assigned to this consumer.
    desired: bool,
    /// High watermark less the committed offset; -1 when either is unknown.
    consumer_lag: i64,
    /// High watermark less the stored offset; -1 when either is unknown.
    consumer_lag_stored: i64,
}

/// Sets one consumer's `consumer_lag` series from its statistics.
#[derive(Debug, Clone)]
pub struct LagReporter {
    consumer: String,
    metrics: Metrics,
}

/// One partition's lag as the statistics give it: `None` when unknown, or not assigned.
fn partition_lag(partition: &PartitionStatistics) -> Option<i64> {
    if !partition.desired {
        return None;
    }
    [partition.consumer_lag_stored, partition.consumer_lag]
        .into_iter()
        .find(|lag| *lag >= 0)
}

impl LagReporter {
    pub fn new(consumer: &str, metrics: Metrics) -> LagReporter {
        LagReporter {
            consumer: consumer.to_string(),
            metrics,
        }
    }

    /// Renews the series from librdkafka's statistics JSON; statistics it cannot read
    /// leave the series as they were.
    pub fn report(&self, json: &[u8]) {
        let Ok(statistics) = serde_json::from_slice::<Statistics>(json) else {
            tracing::debug!(consumer = %self.consumer, "unreadable librdkafka statistics");
            return;
        };
        for (topic, stats) in &statistics.topics {
            // -1 is librdkafka's internal unassigned partition.
            for partition in stats.partitions.values().filter(|p| p.partition >= 0) {
                let labels = [
                    self.consumer.as_str(),
                    topic.as_str(),
                    &partition.partition.to_string(),
                ];
                match partition_lag(partition) {
                    Some(lag) => self
                        .metrics
                        .consumer_lag
                        .with_label_values(&labels)
                        .set(lag),
                    None if !partition.desired => {
                        // Never reported, or already gone: nothing to remove.
                        let _ = self.metrics.consumer_lag.remove_label_values(&labels);
                    }
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn statistics(partitions: &str) -> Vec<u8> {
        format!(
            r#"{{"name": "rdkafka#consumer-1", "type": "consumer", "brokers": {{}},
                "topics": {{"orders.events": {{"topic": "orders.events", "partitions": {{{partitions}}}}}}}}}"#
        )
        .into_bytes()
    }

    fn series(metrics: &Metrics, partition: &str) -> Option<i64> {
        let rendered = metrics.render();
        let prefix = format!(
            "faultline_consumer_lag{{consumer=\"c\",partition=\"{partition}\",topic=\"orders.events\""
        );
        rendered
            .lines()
            .find(|line| line.starts_with(&prefix))
            .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
    }

    #[test]
    fn the_stored_offset_leads_then_the_committed_one_and_a_revoked_partition_goes() {
        let metrics = Metrics::new("lag_test");
        let reporter = LagReporter::new("c", metrics.clone());
        reporter.report(&statistics(
            r#""0": {"partition": 0, "desired": true, "consumer_lag": 9, "consumer_lag_stored": 4},
               "1": {"partition": 1, "desired": true, "consumer_lag": 7, "consumer_lag_stored": -1},
               "2": {"partition": 2, "desired": true, "consumer_lag": -1, "consumer_lag_stored": -1},
               "3": {"partition": 3, "desired": false, "consumer_lag": 5, "consumer_lag_stored": 5},
               "-1": {"partition": -1, "desired": false, "consumer_lag": -1, "consumer_lag_stored": -1}"#,
        ));
        assert_eq!(series(&metrics, "0"), Some(4));
        assert_eq!(series(&metrics, "1"), Some(7));
        assert_eq!(series(&metrics, "2"), None);
        assert_eq!(series(&metrics, "3"), None);
        // Partition 0 is given away in a rebalance: its series goes.
        reporter.report(&statistics(
            r#""0": {"partition": 0, "desired": false, "consumer_lag": 2, "consumer_lag_stored": 2},
               "1": {"partition": 1, "desired": true, "consumer_lag": 0, "consumer_lag_stored": 0}"#,
        ));
        assert_eq!(series(&metrics, "0"), None);
        assert_eq!(series(&metrics, "1"), Some(0));
        // Garbage leaves the series as they were.
        reporter.report(b"{not json");
        assert_eq!(series(&metrics, "1"), Some(0));
    }
}
