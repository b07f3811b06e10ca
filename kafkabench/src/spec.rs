//! What a kafka-bench run is asked to do, checked whole before anything starts.
//!
//! A [`BenchSpec`] holds a [`Grid`] of settings (several values per setting; every
//! combination is a row) or, with `table5`, the five rows of document 002's Table 5 for
//! each combination of the other settings. [`BenchSpec::check`] refuses what Kafka or
//! librdkafka would refuse later (an unknown or unbuilt compression codec, `acks=7`, a
//! record too large for a broker's default limit), each error naming its flag, so a bad
//! run ends with exit 2 before a broker starts. [`BenchSpec::rows`] then yields the rows.
//! With [`Paced`], each row is produced a second time by rdkafka at a fixed rate below
//! saturation, so that its latency is what the settings add rather than queueing.

use std::time::Duration;

use faultline_results::kafka_bench::{ProducerSettings, Table5Row};

use crate::BenchError;

/// Codecs both clients know; librdkafka builds may lack some (see [`built_in_codecs`]).
pub const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// Values of `acks` Kafka accepts (`-1` means `all`).
pub const ACKS: [&str; 4] = ["all", "-1", "0", "1"];
/// librdkafka's upper bound of `linger.ms`.
pub const MAX_LINGER_MS: u64 = 900_000;
/// A record's value must hold the 8-byte send time; above 1,000,000 bytes a record with
/// its overhead no longer fits a broker's default `message.max.bytes` (1 MiB + 12).
pub const MESSAGE_BYTES: std::ops::RangeInclusive<u64> = 16..=1_000_000;
/// `batch.size` both clients accept: librdkafka caps a batch at its `message.max.bytes`.
pub const BATCH_BYTES: std::ops::RangeInclusive<u64> = 1..=1_000_000;
/// Concurrent producers per row: each is a client thread here and a JVM for the Java tool.
pub const MAX_PRODUCERS: u32 = 32;
/// Rows per run: a sweep bigger than this is most likely a typo in a list.
pub const MAX_ROWS: usize = 100;

/// The cluster to benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// Start this many local brokers (each a KRaft voter) for the run.
    Start { brokers: u32, heap_mb: u32 },
    /// Use a running cluster.
    External { bootstrap: String },
}

/// Each setting's values; every combination is a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub message_bytes: Vec<u64>,
    pub partitions: Vec<u32>,
    /// Empty: 3 where the cluster has 3 brokers or more, else its broker count.
    pub replication_factors: Vec<u32>,
    pub acks: Vec<String>,
    pub producers: Vec<u32>,
    pub compressions: Vec<String>,
    pub linger_ms: Vec<u64>,
    /// `batch.size` for both clients; empty: each client's own default.
    pub batch_bytes: Vec<u64>,
    /// Records per second per row, over its producers; empty: unthrottled.
    pub rates: Vec<f64>,
}

/// How long each row produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowBound {
    /// This many records per row, split over the producers.
    Records(u64),
    /// For this long (the Java tool then sends as many records as rdkafka sent).
    Duration(Duration),
}

/// A row's paced phase: rdkafka at a fixed rate, meant to be well below what the
/// brokers take, for a fixed time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paced {
    /// Records per second over the row's producers.
    pub rate_per_sec: f64,
    pub duration: Duration,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSpec {
    pub cluster: Cluster,
    pub grid: Grid,
    /// The five rows of Table 5 in place of the compression × linger grid.
    pub table5: bool,
    pub bound: RowBound,
    /// Run Apache Kafka's `ProducerPerformance` beside rdkafka in each row.
    pub perf_tool: bool,
    /// How long the end-to-end consumer may lag behind the last acknowledgement.
    pub consume_timeout: Duration,
    /// Untimed records sent before the first row (0: none).
    pub warm_up_records: u64,
    /// A paced phase after each row's unpaced ones; `None`: none.
    pub paced: Option<Paced>,
    /// The rows (numbered from 1, as the tables number them) that get the paced phase;
    /// empty: every row.
    pub paced_rows: Vec<usize>,
}

/// The flags of `faultline kafka-bench`, named in errors.
pub mod flag {
    pub const BROKERS: &str = "--brokers";
    pub const BOOTSTRAP: &str = "--bootstrap";
    pub const MESSAGE_SIZE: &str = "--message-size";
    pub const PARTITIONS: &str = "--partitions";
    pub const REPLICATION_FACTOR: &str = "--replication-factor";
    pub const ACKS: &str = "--acks";
    pub const PRODUCERS: &str = "--producers";
    pub const COMPRESSION: &str = "--compression";
    pub const LINGER: &str = "--linger";
    pub const BATCH_SIZE: &str = "--batch-size";
    pub const RATE: &str = "--rate";
    pub const RECORDS: &str = "--records";
    pub const DURATION: &str = "--duration";
    pub const PACED_RATE: &str = "--paced-rate";
    pub const PACED_DURATION: &str = "--paced-duration";
    pub const PACED_ROWS: &str = "--paced-rows";
}

fn refuse(flag: &'static str, value: impl ToString, reason: impl Into<String>) -> BenchError {
    BenchError::Setting {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The compression codecs this build of librdkafka has (its `builtin.features`), plus
/// `none`.
pub fn built_in_codecs() -> Vec<String> {
    let features = rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|config| config.get("builtin.features"))
        .unwrap_or_default();
    let mut codecs = vec!["none".to_string()];
    codecs.extend(
        features
            .split(',')
            .filter(|feature| COMPRESSIONS.contains(feature))
            .map(str::to_string),
    );
    codecs
}

impl BenchSpec {
    /// Brokers known before the run: those it starts.
    fn known_brokers(&self) -> Option<u32> {
        match self.cluster {
            Cluster::Start { brokers, .. } => Some(brokers),
            Cluster::External { .. } => None,
        }
    }

    /// Refuses what Kafka, librdkafka or the Java tool would refuse, naming the flag.
    pub fn check(&self) -> Result<(), BenchError> {
        match &self.cluster {
            Cluster::Start { brokers, .. } if !(1..=9).contains(brokers) => {
                return Err(refuse(flag::BROKERS, brokers, "must be 1 to 9"));
            }
            Cluster::External { bootstrap } => check_bootstrap(bootstrap)?,
            Cluster::Start { .. } => {}
        }
        let grid = &self.grid;
        for bytes in &grid.message_bytes {
            if !MESSAGE_BYTES.contains(bytes) {
                return Err(refuse(
                    flag::MESSAGE_SIZE,
                    format!("{bytes} bytes"),
                    format!(
                        "must be {} to {} bytes (room for the send time; a broker's default \
                         message.max.bytes)",
                        MESSAGE_BYTES.start(),
                        MESSAGE_BYTES.end()
                    ),
                ));
            }
        }
        if let Some(partitions) = grid.partitions.iter().find(|p| !(1..=10_000).contains(*p)) {
            return Err(refuse(flag::PARTITIONS, partitions, "must be 1 to 10000"));
        }
        for factor in &grid.replication_factors {
            let most = self.known_brokers().unwrap_or(u32::MAX);
            if *factor == 0 || *factor > most {
                return Err(refuse(
                    flag::REPLICATION_FACTOR,
                    factor,
                    format!("must be 1 to the number of brokers ({most})"),
                ));
            }
        }
        if let Some(acks) = grid.acks.iter().find(|a| !ACKS.contains(&a.as_str())) {
            return Err(refuse(
                flag::ACKS,
                acks,
                "Kafka knows acks all (-1), 0 and 1",
            ));
        }
        if let Some(n) = grid
            .producers
            .iter()
            .find(|n| !(1..=MAX_PRODUCERS).contains(*n))
        {
            return Err(refuse(
                flag::PRODUCERS,
                n,
                format!("must be 1 to {MAX_PRODUCERS}"),
            ));
        }
        self.check_compressions()?;
        if let Some(linger) = grid.linger_ms.iter().find(|l| **l > MAX_LINGER_MS) {
            return Err(refuse(
                flag::LINGER,
                format!("{linger}ms"),
                format!("librdkafka allows at most {MAX_LINGER_MS} ms"),
            ));
        }
        if let Some(bytes) = grid.batch_bytes.iter().find(|b| !BATCH_BYTES.contains(*b)) {
            return Err(refuse(
                flag::BATCH_SIZE,
                format!("{bytes} bytes"),
                format!(
                    "must be 1 to {} bytes (librdkafka's message.max.bytes)",
                    BATCH_BYTES.end()
                ),
            ));
        }
        if let Some(rate) = grid.rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
            return Err(refuse(
                flag::RATE,
                format!("{rate}/s"),
                "must be above zero",
            ));
        }
        match self.bound {
            RowBound::Records(0) => return Err(refuse(flag::RECORDS, 0, "must be at least 1")),
            RowBound::Duration(d) if d.is_zero() => {
                return Err(refuse(flag::DURATION, "0s", "must be longer than zero"))
            }
            _ => {}
        }
        let rows = self.row_count();
        if rows == 0 || rows > MAX_ROWS {
            return Err(BenchError::Invalid(format!(
                "the settings make {rows} rows; give every setting at least one value and \
                 keep the sweep to at most {MAX_ROWS} rows"
            )));
        }
        self.check_paced(rows)
    }

    /// The paced phase's rate, time and rows, of `rows` rows in all.
    fn check_paced(&self, rows: usize) -> Result<(), BenchError> {
        if let Some(paced) = &self.paced {
            if !(paced.rate_per_sec.is_finite() && paced.rate_per_sec > 0.0) {
                return Err(refuse(
                    flag::PACED_RATE,
                    format!("{}/s", paced.rate_per_sec),
                    "must be above zero",
                ));
            }
            if paced.duration.is_zero() {
                return Err(refuse(
                    flag::PACED_DURATION,
                    "0s",
                    "must be longer than zero",
                ));
            }
        }
        if let Some(row) = self
            .paced_rows
            .iter()
            .find(|row| !(1..=rows).contains(*row))
        {
            return Err(refuse(
                flag::PACED_ROWS,
                row,
                format!("the settings make rows 1 to {rows}"),
            ));
        }
        Ok(())
    }

    fn check_compressions(&self) -> Result<(), BenchError> {
        let available = built_in_codecs();
        for codec in &self.grid.compressions {
            if !COMPRESSIONS.contains(&codec.as_str()) {
                return Err(refuse(
                    flag::COMPRESSION,
                    codec,
                    format!("Kafka knows {}", COMPRESSIONS.join(", ")),
                ));
            }
            if !available.contains(codec) {
                return Err(refuse(
                    flag::COMPRESSION,
                    codec,
                    format!(
                        "this build of librdkafka lacks it; it has {}",
                        available.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The (compression, linger) pairs of each row, with the Table 5 label where asked.
    fn codec_lingers(&self) -> Vec<(Option<Table5Row>, String, u64)> {
        if self.table5 {
            return Table5Row::ALL
                .iter()
                .map(|row| {
                    let (codec, linger) = row.compression_and_linger();
                    (Some(*row), codec.to_string(), linger)
                })
                .collect();
        }
        let mut pairs = Vec::new();
        for codec in &self.grid.compressions {
            for linger in &self.grid.linger_ms {
                pairs.push((None, codec.clone(), *linger));
            }
        }
        pairs
    }

    fn row_count(&self) -> usize {
        let g = &self.grid;
        [
            g.message_bytes.len(),
            g.partitions.len(),
            g.replication_factors.len().max(1),
            g.acks.len(),
            g.producers.len(),
            g.batch_bytes.len().max(1),
            g.rates.len().max(1),
            self.codec_lingers().len(),
        ]
        .iter()
        .product()
    }

    /// Every row, in the order the flags list their values (compression and linger vary
    /// fastest). `brokers` is the cluster's size, for the default replication factor.
    pub fn rows(&self, brokers: u32) -> Vec<(Option<Table5Row>, ProducerSettings)> {
        let g = &self.grid;
        let factors = if g.replication_factors.is_empty() {
            vec![brokers.clamp(1, 3)]
        } else {
            g.replication_factors.clone()
        };
        let batches: Vec<Option<u64>> = if g.batch_bytes.is_empty() {
            vec![None]
        } else {
            g.batch_bytes.iter().copied().map(Some).collect()
        };
        let rates: Vec<Option<f64>> = if g.rates.is_empty() {
            vec![None]
        } else {
            g.rates.iter().copied().map(Some).collect()
        };
        let (records, duration_secs) = match self.bound {
            RowBound::Records(n) => (Some(n), None),
            RowBound::Duration(d) => (None, Some(d.as_secs_f64())),
        };
        let first = ProducerSettings {
            message_bytes: 0,
            partitions: 0,
            replication_factor: 0,
            acks: String::new(),
            producers: 0,
            compression: String::new(),
            linger_ms: 0,
            batch_bytes: None,
            rate_per_sec: None,
            records,
            duration_secs,
        };
        let mut rows = vec![(None, first)];
        rows = expand(rows, &g.message_bytes, |s, v| s.message_bytes = *v);
        rows = expand(rows, &g.partitions, |s, v| s.partitions = *v);
        rows = expand(rows, &factors, |s, v| s.replication_factor = *v);
        rows = expand(rows, &g.acks, |s, v| s.acks = normal_acks(v));
        rows = expand(rows, &g.producers, |s, v| s.producers = *v);
        rows = expand(rows, &batches, |s, v| s.batch_bytes = *v);
        rows = expand(rows, &rates, |s, v| s.rate_per_sec = *v);
        let pairs = self.codec_lingers();
        rows.into_iter()
            .flat_map(|(_, settings)| {
                pairs.iter().map(move |(table5, codec, linger)| {
                    let mut settings = settings.clone();
                    settings.compression = codec.clone();
                    settings.linger_ms = *linger;
                    (*table5, settings)
                })
            })
            .collect()
    }
}

type Row = (Option<Table5Row>, ProducerSettings);

/// Each row once per value, with `set` applied: the values vary faster than the rows.
fn expand<T>(rows: Vec<Row>, values: &[T], set: impl Fn(&mut ProducerSettings, &T)) -> Vec<Row> {
    let mut expanded = Vec::with_capacity(rows.len() * values.len());
    for (label, settings) in rows {
        for value in values {
            let mut settings = settings.clone();
            set(&mut settings, value);
            expanded.push((label, settings));
        }
    }
    expanded
}

/// `-1` and `all` are one setting; results spell it `all`.
fn normal_acks(acks: &str) -> String {
    if acks == "-1" { "all" } else { acks }.to_string()
}

fn check_bootstrap(bootstrap: &str) -> Result<(), BenchError> {
    for server in bootstrap.split(',') {
        let port = server
            .trim()
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port > 0) {
            return Err(refuse(
                flag::BOOTSTRAP,
                bootstrap,
                format!("`{server}` is not HOST:PORT"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec() -> BenchSpec {
        BenchSpec {
            cluster: Cluster::Start {
                brokers: 3,
                heap_mb: 512,
            },
            grid: Grid {
                message_bytes: vec![1024],
                partitions: vec![6],
                replication_factors: Vec::new(),
                acks: vec!["all".into()],
                producers: vec![1],
                compressions: vec!["none".into(), "lz4".into()],
                linger_ms: vec![0, 10, 50],
                batch_bytes: Vec::new(),
                rates: Vec::new(),
            },
            table5: false,
            bound: RowBound::Records(1000),
            perf_tool: true,
            consume_timeout: Duration::from_secs(30),
            warm_up_records: 0,
            paced: None,
            paced_rows: Vec::new(),
        }
    }

    fn refused_flag(spec: &BenchSpec) -> &'static str {
        match spec.check() {
            Err(BenchError::Setting { flag, .. }) => flag,
            other => panic!("expected a refused setting, got {other:?}"),
        }
    }

    #[test]
    fn a_grid_makes_one_row_per_combination_with_rf_3_on_3_brokers() {
        let spec = spec();
        spec.check().unwrap();
        let rows = spec.rows(3);
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|(_, s)| s.replication_factor == 3));
        assert_eq!(rows[1].1.linger_ms, 10);
        assert_eq!(rows[3].1.compression, "lz4");
        assert!(spec.rows(1).iter().all(|(_, s)| s.replication_factor == 1));
        assert!(rows.iter().all(|(_, s)| s.batch_bytes.is_none()));
    }

    #[test]
    fn batch_sizes_multiply_the_rows_and_reach_every_row() {
        let mut spec = spec();
        spec.grid.batch_bytes = vec![16_384, 1_000_000];
        spec.grid.producers = vec![1, 4];
        spec.check().unwrap();
        let rows = spec.rows(3);
        assert_eq!(rows.len(), 24);
        let big = rows
            .iter()
            .filter(|(_, s)| s.batch_bytes == Some(1_000_000));
        assert_eq!(big.count(), 12);
        assert_eq!(rows[0].1.producers, 1);
        assert_eq!(rows[23].1.producers, 4);
        let mut bad = spec.clone();
        bad.grid.batch_bytes = vec![0];
        assert_eq!(refused_flag(&bad), flag::BATCH_SIZE);
        let mut bad = spec.clone();
        bad.grid.rates = vec![0.0];
        assert_eq!(refused_flag(&bad), flag::RATE);
        let mut bad = spec.clone();
        bad.paced = Some(Paced {
            rate_per_sec: f64::NAN,
            duration: Duration::from_secs(3),
        });
        assert_eq!(refused_flag(&bad), flag::PACED_RATE);
        let mut bad = spec;
        bad.paced = Some(Paced {
            rate_per_sec: 2000.0,
            duration: Duration::ZERO,
        });
        assert_eq!(refused_flag(&bad), flag::PACED_DURATION);
    }

    #[test]
    fn table5_gives_its_five_rows_in_place_of_the_codec_grid() {
        let mut spec = spec();
        spec.table5 = true;
        let rows = spec.rows(3);
        let labels: Vec<_> = rows.iter().filter_map(|(label, _)| *label).collect();
        assert_eq!(labels, Table5Row::ALL);
        assert_eq!(rows[1].1.compression, "lz4");
        assert_eq!(rows[4].1.linger_ms, 50);
        spec.paced_rows = vec![1, 5];
        spec.check().unwrap();
        spec.paced_rows = vec![1, 6];
        assert_eq!(refused_flag(&spec), flag::PACED_ROWS);
        spec.paced_rows = vec![0];
        assert_eq!(refused_flag(&spec), flag::PACED_ROWS);
    }

    #[test]
    fn settings_kafka_refuses_name_their_flag() {
        let mut bad = spec();
        bad.grid.compressions.push("brotli".into());
        assert_eq!(refused_flag(&bad), flag::COMPRESSION);
        let mut bad = spec();
        bad.grid.acks = vec!["7".into()];
        assert_eq!(refused_flag(&bad), flag::ACKS);
        let mut bad = spec();
        bad.grid.replication_factors = vec![4];
        assert_eq!(refused_flag(&bad), flag::REPLICATION_FACTOR);
        let mut bad = spec();
        bad.grid.message_bytes = vec![4];
        assert_eq!(refused_flag(&bad), flag::MESSAGE_SIZE);
        let mut bad = spec();
        bad.cluster = Cluster::External {
            bootstrap: "localhost".into(),
        };
        assert_eq!(refused_flag(&bad), flag::BOOTSTRAP);
    }

    #[test]
    fn acks_minus_one_is_written_all() {
        let mut spec = spec();
        spec.grid.acks = vec!["-1".into()];
        assert!(spec.rows(3).iter().all(|(_, s)| s.acks == "all"));
    }

    #[test]
    fn the_bundled_librdkafka_has_lz4_and_snappy() {
        let codecs = built_in_codecs();
        assert!(codecs.contains(&"lz4".to_string()), "{codecs:?}");
        assert!(codecs.contains(&"snappy".to_string()), "{codecs:?}");
    }
}
