//! What `faultline kafka-bench` measured: a Kafka producer benchmark, one row per setting,
//! written as `kafka-bench.json` next to the table the command prints.
//!
//! Each [`KafkaBenchRow`] holds the row's [`ProducerSettings`] and two measurements taken
//! against the same brokers in the same run: faultline's own rdkafka producer
//! ([`RdkafkaMeasurement`], with its latency histograms and the end-to-end
//! produce→consume latency) and Apache Kafka's own `ProducerPerformance` tool
//! ([`PerfToolMeasurement`], from the summary lines it prints). A row may carry a
//! [`Table5Row`] label, which is how a claims report finds the row that answers a line of
//! document 002's Table 5 ("Baseline", "Compression (LZ4)", …).
//!
//! A row may also carry a [`PacedMeasurement`]: the same settings produced by rdkafka at a
//! fixed rate below saturation for a few seconds, so that its latency is what the
//! settings cost (a linger's wait, a codec's work) rather than a queue's length (the
//! "batching adds 50–100 ms" claim reads it).
//!
//! Latencies are microseconds in [`LatencySummary`] (rdkafka, measured here) and
//! milliseconds in [`PerfToolSummary`] (what Kafka's tool prints, kept as printed).
//!
//! The layout is `schema/kafka-bench.schema.json` ([`KAFKA_BENCH_SCHEMA_VERSION`]), which
//! `tests/kafka_bench_schema.rs` checks these types against.

use serde::{Deserialize, Serialize};

use crate::{EncodedHistogram, LatencySummary, Machine};

/// Version of the `kafka-bench.json` layout; bumped when a field changes meaning.
pub const KAFKA_BENCH_SCHEMA_VERSION: u32 = 1;

/// One `faultline kafka-bench` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaBenchResults {
    pub schema_version: u32,
    /// When the first row started, RFC 3339 (UTC).
    pub started_at: String,
    pub machine: Machine,
    pub faultline_version: String,
    pub brokers: BrokerSetup,
    pub rows: Vec<KafkaBenchRow>,
}

/// The cluster the rows ran against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerSetup {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// Brokers in the cluster's metadata.
    pub count: u64,
    /// Whether kafka-bench started them (then their CPU is measured) or was given them.
    pub started_here: bool,
    /// Each broker's JVM heap in MiB, when started here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_mb: Option<u32>,
}

/// Which line of document 002's Table 5 a row answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table5Row {
    /// No compression, no linger.
    Baseline,
    CompressionLz4,
    CompressionSnappy,
    /// No compression, 10 ms linger.
    Batching10ms,
    /// No compression, 50 ms linger.
    Batching50ms,
}

impl Table5Row {
    pub const ALL: [Table5Row; 5] = [
        Table5Row::Baseline,
        Table5Row::CompressionLz4,
        Table5Row::CompressionSnappy,
        Table5Row::Batching10ms,
        Table5Row::Batching50ms,
    ];

    /// The row's name as the document prints it.
    pub fn document_name(self) -> &'static str {
        match self {
            Table5Row::Baseline => "Baseline",
            Table5Row::CompressionLz4 => "Compression (LZ4)",
            Table5Row::CompressionSnappy => "Compression (Snappy)",
            Table5Row::Batching10ms => "Batching (10ms)",
            Table5Row::Batching50ms => "Batching (50ms)",
        }
    }

    /// The compression codec and linger (ms) that the row stands for.
    pub fn compression_and_linger(self) -> (&'static str, u64) {
        match self {
            Table5Row::Baseline => ("none", 0),
            Table5Row::CompressionLz4 => ("lz4", 0),
            Table5Row::CompressionSnappy => ("snappy", 0),
            Table5Row::Batching10ms => ("none", 10),
            Table5Row::Batching50ms => ("none", 50),
        }
    }
}

/// The settings of one row, given to both producers alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducerSettings {
    /// Bytes of each record's value.
    pub message_bytes: u64,
    pub partitions: u32,
    pub replication_factor: u32,
    /// `all`, `0` or `1` (`-1` is written `all`).
    pub acks: String,
    /// Concurrent producers (rdkafka clients; `ProducerPerformance` JVMs).
    pub producers: u32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    pub linger_ms: u64,
    /// `batch.size` given to both clients; `None`: each its own default (the Java
    /// producer 16,384 bytes, librdkafka 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_bytes: Option<u64>,
    /// Records per second over all the row's producers (the Java tool's `--throughput`,
    /// split over its JVMs); `None`: as fast as each client goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<f64>,
    /// Records per row (split over the producers), when the row is bounded by count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Seconds per row, when the row is bounded by time (the Java tool then sends as many
    /// records as rdkafka sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
}

/// One row: settings, and both producers' figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaBenchRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table5: Option<Table5Row>,
    pub settings: ProducerSettings,
    pub rdkafka: RdkafkaMeasurement,
    /// `None` when the Java tool was not run (`--no-perf-tool`) or failed; see `notes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perf_tool: Option<PerfToolMeasurement>,
    /// rdkafka again at a fixed rate below saturation (`--paced-rate`); `None` when no
    /// paced phase was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paced: Option<PacedMeasurement>,
    /// What went wrong or was left out in this row, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl KafkaBenchRow {
    /// rdkafka's throughput over the Java tool's (≥ 1.0 when rdkafka keeps up).
    pub fn throughput_ratio(&self) -> Option<f64> {
        let tool = self.perf_tool.as_ref()?;
        (tool.msgs_per_sec > 0.0).then(|| self.rdkafka.msgs_per_sec / tool.msgs_per_sec)
    }
}

/// CPU used during a phase, averaged over its wall time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    /// Cores kept busy (1.0 = one core all the time), summed over the processes.
    pub cores: f64,
    /// The same as a share of the machine (cores / the machine's cores × 100).
    pub percent_of_machine: f64,
}

/// faultline's rdkafka producer in one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RdkafkaMeasurement {
    /// Records acknowledged by the brokers.
    pub acked: u64,
    /// Records whose delivery failed.
    pub failed: u64,
    /// From the first send to the last acknowledgement, in seconds.
    pub elapsed_secs: f64,
    pub msgs_per_sec: f64,
    /// Megabytes (10^6 bytes) of record values per second.
    pub mb_per_sec: f64,
    /// Send → acknowledgement per record.
    pub produce_latency: LatencySummary,
    pub produce_histogram: EncodedHistogram,
    /// Send → a consumer reading the record (the send time travels in the record).
    pub end_to_end_latency: LatencySummary,
    pub end_to_end_histogram: EncodedHistogram,
    /// Records the consumer read (fewer than `acked` when it timed out).
    pub consumed: u64,
    /// The brokers' CPU during the phase; `None` for brokers not started here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_cpu: Option<CpuUse>,
    /// faultline's own CPU during the phase (producers and the consumer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu: Option<CpuUse>,
}

/// A row's paced phase: its settings, produced by rdkafka on a fresh topic at a fixed
/// rate (split over the row's producers) for a fixed time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacedMeasurement {
    /// Records per second asked for, over the row's producers.
    pub rate_per_sec: f64,
    /// How long the producers sent.
    pub duration_secs: f64,
    /// What was measured (`msgs_per_sec` is the rate achieved).
    pub rdkafka: RdkafkaMeasurement,
}

/// Apache Kafka's `ProducerPerformance` in one row: the sum over its JVMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfToolMeasurement {
    pub records: u64,
    /// Summed over the JVMs, which run at the same time.
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// With one JVM, its figure; with several, the highest of them (percentiles of
    /// separate runs do not add, so this is an upper bound).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Each JVM's summary line, parsed.
    pub instances: Vec<PerfToolSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_cpu: Option<CpuUse>,
    /// The tool's JVMs' CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu: Option<CpuUse>,
}

impl PerfToolMeasurement {
    /// Adds up the JVMs' summaries (see the field docs for how percentiles combine).
    pub fn from_instances(instances: Vec<PerfToolSummary>) -> PerfToolMeasurement {
        let highest = |field: fn(&PerfToolSummary) -> f64| {
            instances.iter().map(field).fold(0.0_f64, f64::max)
        };
        PerfToolMeasurement {
            records: instances.iter().map(|i| i.records).sum(),
            msgs_per_sec: instances.iter().map(|i| i.records_per_sec).sum(),
            mb_per_sec: instances.iter().map(|i| i.mb_per_sec).sum(),
            p50_ms: highest(|i| i.p50_ms),
            p99_ms: highest(|i| i.p99_ms),
            max_ms: highest(|i| i.max_ms),
            instances,
            broker_cpu: None,
            client_cpu: None,
        }
    }
}

/// The final line `ProducerPerformance` prints, e.g.
/// `300000 records sent, 11700.1 records/sec (11.43 MB/sec), 2345.67 ms avg latency,
/// 5300.00 ms max latency, 2100 ms 50th, 5000 ms 95th, 5300 ms 99th, 5310 ms 99.9th.`
/// (its MB are 2^20 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfToolSummary {
    pub records: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn summary(records: u64, rate: f64, p99_ms: f64) -> PerfToolSummary {
        PerfToolSummary {
            records,
            records_per_sec: rate,
            mb_per_sec: rate / 1000.0,
            avg_ms: p99_ms / 2.0,
            max_ms: p99_ms * 2.0,
            p50_ms: p99_ms / 3.0,
            p95_ms: p99_ms / 1.5,
            p99_ms,
            p99_9_ms: p99_ms * 1.5,
        }
    }

    #[test]
    fn concurrent_tool_runs_add_rates_and_keep_the_worst_percentiles() {
        let total = PerfToolMeasurement::from_instances(vec![
            summary(1000, 400.0, 30.0),
            summary(3000, 600.0, 10.0),
        ]);
        assert_eq!(total.records, 4000);
        assert!((total.msgs_per_sec - 1000.0).abs() < 1e-9);
        assert!((total.p99_ms - 30.0).abs() < 1e-9);
        assert!((total.max_ms - 60.0).abs() < 1e-9);
    }

    #[test]
    fn table5_labels_round_trip_in_snake_case() {
        for row in Table5Row::ALL {
            let text = serde_json::to_string(&row).unwrap();
            assert_eq!(serde_json::from_str::<Table5Row>(&text).unwrap(), row);
        }
        assert_eq!(
            serde_json::to_string(&Table5Row::Batching10ms).unwrap(),
            "\"batching10ms\""
        );
    }
}
