//! `faultline kafka-bench`: the flags of the Kafka producer benchmark, turned into a
//! `faultline_kafkabench::BenchSpec`; the run is `faultline_kafkabench::run`. Prints the
//! side-by-side table on stdout, progress on stderr, and writes `kafka-bench.json` with
//! `-o DIR`. Exit 2 for a setting Kafka would refuse (before anything starts), 1 when the
//! run fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use faultline_kafkabench::{table, BenchError, BenchSpec, Cluster, Grid, Paced, RowBound};
use faultline_results::quantity::{parse_bytes, parse_duration, Dimension, Quantity};

/// A paced phase's length when `--paced-duration` is not given: at a few thousand
/// records a second, thousands of end-to-end samples.
const PACED_DURATION: &str = "5s";

/// Arguments of `faultline kafka-bench`. Every setting takes several values
/// (`--linger 0ms,10ms,50ms` or the flag repeated); each combination is a row.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  faultline kafka-bench --table5 --records 50000 -o out/kafka
      the five rows of document 002's Table 5 on 3 brokers started here
  faultline kafka-bench --brokers 1 --compression none,lz4 --linger 0ms,50ms --duration 10s
  faultline kafka-bench --table5 --paced-rate 200/s --paced-duration 10s
      each row again at 200 msg/s: the latency linger and compression add, not queueing
      (a note says when the brokers were busy: at linger 0 each record is a request)
  faultline kafka-bench --bootstrap 127.0.0.1:9092 --replication-factor 1 --producers 1,4")]
pub struct KafkaBenchArgs {
    /// Start this many local Kafka brokers for the run (each a KRaft voter), e.g. `3`.
    #[arg(long, default_value_t = 3, conflicts_with = "bootstrap")]
    brokers: u32,

    /// JVM heap of each broker started here, in MiB, e.g. `512`.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(64..=512))]
    kafka_heap_mb: u32,

    /// Use this running cluster instead of starting one, e.g. `127.0.0.1:9092`
    /// (brokers' CPU is then not measured).
    #[arg(long, value_name = "HOST:PORT,...")]
    bootstrap: Option<String>,

    /// Size of each record's value, e.g. `1KiB,4KiB` or `100B` (at least 16 bytes).
    #[arg(long, value_delimiter = ',', default_value = "1KiB")]
    message_size: Vec<String>,

    /// Partitions of each row's topic, e.g. `6`.
    #[arg(long, value_delimiter = ',', default_value = "6")]
    partitions: Vec<u32>,

    /// Replication factor of each row's topic, e.g. `3`; by default 3, or the number
    /// of brokers when fewer.
    #[arg(long, value_delimiter = ',')]
    replication_factor: Vec<u32>,

    /// Acknowledgements the producers wait for: `all` (or `-1`), `1`, `0`, e.g. `all,1`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "all",
        allow_hyphen_values = true
    )]
    acks: Vec<String>,

    /// Concurrent producers per row (rdkafka clients, and as many Java tool JVMs),
    /// e.g. `1,4`.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    producers: Vec<u32>,

    /// Compression codec: `none`, `lz4`, `snappy`, `gzip` (`zstd` where librdkafka was
    /// built with it), e.g. `none,lz4,snappy`.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    compression: Vec<String>,

    /// How long producers wait to fill a batch (linger.ms), e.g. `0ms,10ms,50ms`.
    #[arg(long, value_delimiter = ',', default_value = "0ms")]
    linger: Vec<String>,

    /// `batch.size` of both clients, e.g. `16KiB,1MB`; by default each keeps its own
    /// (the Java producer 16,384 bytes, librdkafka 1,000,000).
    #[arg(long, value_delimiter = ',')]
    batch_size: Vec<String>,

    /// Records per second per row over its producers, e.g. `2000/s,5000/s` (the Java
    /// tool's `--throughput`); by default as fast as each client goes. Below saturation,
    /// latencies show what linger and compression cost rather than queueing.
    #[arg(long, value_delimiter = ',')]
    rate: Vec<String>,

    /// The five rows of document 002's Table 5 (baseline; lz4; snappy; linger 10 ms;
    /// linger 50 ms) in place of --compression and --linger.
    #[arg(long, conflicts_with_all = ["compression", "linger"])]
    table5: bool,

    /// Records per row, split over its producers, e.g. `100000`.
    #[arg(long, default_value_t = 100_000, conflicts_with = "duration")]
    records: u64,

    /// Produce for this long per row instead of a record count, e.g. `20s` (the Java tool
    /// then sends as many records as rdkafka did).
    #[arg(long)]
    duration: Option<String>,

    /// After each row, produce its settings again with rdkafka at this fixed rate, e.g.
    /// `200/s`: well below what the brokers take, its latency is what the row's linger
    /// and codec add rather than a queue's wait (kafka-bench.json's `paced`). Each paced
    /// phase follows 5 s at the same rate that are not timed; the paced table shows the
    /// brokers' CPU, and a note says when they were busy.
    #[arg(long)]
    paced_rate: Option<String>,

    /// How long each row's paced phase produces, e.g. `5s` (the default).
    #[arg(long, requires = "paced_rate")]
    paced_duration: Option<String>,

    /// Pace only these rows, numbered as the tables number them, e.g. `1,5` (Table 5's
    /// baseline and 50 ms linger); every row when not given.
    #[arg(long, requires = "paced_rate", value_delimiter = ',')]
    paced_rows: Vec<usize>,

    /// Skip Apache Kafka's ProducerPerformance (rdkafka alone).
    #[arg(long)]
    no_perf_tool: bool,

    /// How long the end-to-end consumer may trail the last acknowledgement, e.g. `30s`.
    #[arg(long, default_value = "30s")]
    consume_timeout: String,

    /// Records sent, untimed, before the first row so that the brokers' JVMs are warm
    /// for both sides of it, e.g. `20000` (`0`: none).
    #[arg(long, default_value_t = 20_000)]
    warm_up_records: u64,

    /// Write `kafka-bench.json` (every row, with latency histograms) into this directory.
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,
}

fn quantity<T>(
    flag: &'static str,
    text: &str,
    parse: impl Fn(&str) -> Result<T, faultline_results::QuantityError>,
) -> Result<T, BenchError> {
    parse(text).map_err(|error| BenchError::Setting {
        flag,
        value: text.to_string(),
        reason: error.to_string(),
    })
}

fn millis(flag: &'static str, text: &str) -> Result<u64, BenchError> {
    let duration: Duration = quantity(flag, text, parse_duration)?;
    u64::try_from(duration.as_millis()).map_err(|_| BenchError::Setting {
        flag,
        value: text.to_string(),
        reason: "too long".into(),
    })
}

impl KafkaBenchArgs {
    pub(crate) fn spec(&self) -> Result<BenchSpec, BenchError> {
        use faultline_kafkabench::spec::flag;
        let cluster = match &self.bootstrap {
            Some(bootstrap) => Cluster::External {
                bootstrap: bootstrap.clone(),
            },
            None => Cluster::Start {
                brokers: self.brokers,
                heap_mb: self.kafka_heap_mb,
            },
        };
        let message_bytes = self
            .message_size
            .iter()
            .map(|text| quantity(flag::MESSAGE_SIZE, text, parse_bytes))
            .collect::<Result<_, _>>()?;
        let linger_ms = self
            .linger
            .iter()
            .map(|text| millis(flag::LINGER, text))
            .collect::<Result<_, _>>()?;
        let batch_bytes = self
            .batch_size
            .iter()
            .map(|text| quantity(flag::BATCH_SIZE, text, parse_bytes))
            .collect::<Result<_, _>>()?;
        let rates = self
            .rate
            .iter()
            .map(|text| {
                quantity(flag::RATE, text, |t| {
                    Quantity::parse_in(t, Dimension::Rate).map(|q| q.value)
                })
            })
            .collect::<Result<_, _>>()?;
        let paced = match &self.paced_rate {
            Some(text) => Some(Paced {
                rate_per_sec: quantity(flag::PACED_RATE, text, |t| {
                    Quantity::parse_in(t, Dimension::Rate).map(|q| q.value)
                })?,
                duration: quantity(
                    flag::PACED_DURATION,
                    self.paced_duration.as_deref().unwrap_or(PACED_DURATION),
                    parse_duration,
                )?,
            }),
            None => None,
        };
        let bound = match &self.duration {
            Some(text) => RowBound::Duration(quantity(flag::DURATION, text, parse_duration)?),
            None => RowBound::Records(self.records),
        };
        Ok(BenchSpec {
            cluster,
            grid: Grid {
                message_bytes,
                partitions: self.partitions.clone(),
                replication_factors: self.replication_factor.clone(),
                acks: self.acks.clone(),
                producers: self.producers.clone(),
                compressions: self.compression.clone(),
                linger_ms,
                batch_bytes,
                rates,
            },
            table5: self.table5,
            bound,
            perf_tool: !self.no_perf_tool,
            warm_up_records: self.warm_up_records,
            paced,
            paced_rows: self.paced_rows.clone(),
            consume_timeout: quantity("--consume-timeout", &self.consume_timeout, parse_duration)?,
        })
    }
}

/// Runs the benchmark; a bad setting prints a message and exits with code 2.
pub async fn run(args: KafkaBenchArgs) -> anyhow::Result<ExitCode> {
    let outcome = match args.spec() {
        Ok(spec) => {
            faultline_kafkabench::run(&spec, &mut |line| eprintln!("kafka-bench: {line}")).await
        }
        Err(error) => Err(error),
    };
    super::finish_bench(
        "kafka-bench",
        outcome,
        BenchError::is_usage,
        table::render,
        args.output.as_deref(),
        faultline_kafkabench::write_json,
    )
}
