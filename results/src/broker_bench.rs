//! What `faultline broker-bench` measured: one run of a message broker's own load tool
//! (NATS' `nats bench pub`, RabbitMQ's PerfTest) against a node of that broker started on
//! loopback, written as `<broker>.json` beside the table the command prints.
//!
//! The figures are the tool's, kept as it printed them: message rates per second, and
//! the latency percentiles each tool prints, in microseconds (PerfTest's are publish to
//! consume; `nats bench pub`'s time the client's publish call, which only buffers). The claims suite reads them for document 002's Table 1
//! ("Message Broker Comparison"), one broker per column.

use serde::{Deserialize, Serialize};

use crate::Machine;

/// Version of the `<broker>.json` layout; bumped when a field changes meaning.
pub const BROKER_BENCH_SCHEMA_VERSION: u32 = 1;

/// A broker `faultline broker-bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Broker {
    Nats,
    Rabbitmq,
}

impl Broker {
    pub const ALL: [Broker; 2] = [Broker::Nats, Broker::Rabbitmq];

    /// The name on the command line, in metrics (`broker_bench:nats.rate`) and file names.
    pub fn name(self) -> &'static str {
        match self {
            Broker::Nats => "nats",
            Broker::Rabbitmq => "rabbitmq",
        }
    }

    /// By [`Broker::name`].
    pub fn from_name(name: &str) -> Option<Broker> {
        Broker::ALL.into_iter().find(|broker| broker.name() == name)
    }

    /// The broker's own load tool.
    pub fn tool(self) -> &'static str {
        match self {
            Broker::Nats => "nats bench pub",
            Broker::Rabbitmq => "PerfTest",
        }
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One `faultline broker-bench` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerBenchResults {
    pub schema_version: u32,
    /// When the broker was started, RFC 3339 (UTC).
    pub started_at: String,
    pub machine: Machine,
    pub faultline_version: String,
    pub broker: Broker,
    /// The broker's version, as its server reports it.
    pub broker_version: String,
    /// The load tool's command line, as run (its arguments after the program).
    pub tool_command: Vec<String>,
    pub settings: BrokerBenchSettings,
    pub measured: BrokerMeasurement,
}

/// What the tool was asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerBenchSettings {
    pub message_bytes: u64,
    pub producers: u32,
    /// Consumers beside the producers (0: publishing only).
    pub consumers: u32,
    /// How long the tool was asked to run, seconds.
    pub duration_secs: f64,
    /// Messages the tool was asked to send, for a tool that counts messages rather than
    /// time (`nats bench`), sized by a probe run to last about the duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
}

/// The tool's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerMeasurement {
    /// Messages published per second over all producers.
    pub msgs_per_sec: f64,
    /// Messages delivered to the consumers per second, when there were consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_per_sec: Option<f64>,
    /// MiB (2^20 bytes) of message bodies published per second.
    pub mb_per_sec: f64,
    /// Publish→consume latency, when the tool measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<ToolLatency>,
}

/// Latency as the tool prints it, microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolLatency {
    /// What was timed, e.g. PerfTest's publish→consume, or `nats bench`'s publish call.
    pub what: String,
    pub min_us: f64,
    /// Ascending by percentile.
    pub percentiles: Vec<LatencyPoint>,
}

/// One percentile of a [`ToolLatency`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyPoint {
    /// 0–100, e.g. 99.9.
    pub percentile: f64,
    pub us: f64,
}

impl ToolLatency {
    /// The tool's figure for `percentile` (50 for the median), if it printed one.
    pub fn at(&self, percentile: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|point| (point.percentile - percentile).abs() < 1e-9)
            .map(|point| point.us)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_broker_is_named_the_same_on_the_command_line_and_in_json() {
        for broker in Broker::ALL {
            assert_eq!(Broker::from_name(broker.name()), Some(broker));
            let json = serde_json::to_value(broker).unwrap();
            assert_eq!(json.as_str(), Some(broker.name()));
        }
        assert_eq!(Broker::from_name("kafka"), None);
    }
}
