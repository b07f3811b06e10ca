//! `faultline kafka-bench`: how fast a Kafka producer goes on these brokers, measured with
//! faultline's rdkafka producer and, in the same run, with Apache Kafka's own
//! `ProducerPerformance`, row by row, side by side (document 002's Table 5).
//!
//! The parts, in the order a run uses them:
//!
//! - [`spec`]: the settings grid ([`BenchSpec`]), checked whole before anything starts;
//!   a setting Kafka or librdkafka would refuse is a [`BenchError::Setting`] naming its
//!   flag.
//! - [`run`] (this file): starts the brokers through `faultline_system::stack::kafka`
//!   (or takes `--bootstrap`), warms them up with untimed records, then for each row
//!   creates two fresh topics and runs
//! - [`produce`]: the rdkafka producers and the end-to-end consumer, then
//! - [`perf_tool`]: the Java tool with the same settings on the other topic;
//! - [`produce`] again with `--paced-rate`, on a third topic: the row's settings at a
//!   fixed rate below saturation, whose latency is what the settings add;
//! - [`cpu`]: the brokers' and each client's CPU during each phase;
//! - [`table`]: the side-by-side table printed on stdout.
//!
//! The figures are `faultline_results::kafka_bench` types, written as
//! `kafka-bench.json`, so that a claims report can read them without running anything.

pub mod cpu;
pub mod perf_tool;
pub mod produce;
pub mod spec;
pub mod table;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use faultline_results::kafka_bench::{
    BrokerSetup, KafkaBenchResults, KafkaBenchRow, PacedMeasurement, ProducerSettings,
    RdkafkaMeasurement, Table5Row, KAFKA_BENCH_SCHEMA_VERSION,
};
use faultline_results::{HistogramCodecError, Machine};
use faultline_system::stack::kafka::{self, KafkaCluster, KafkaSpec, LocalKafka};
use faultline_system::stack::StackError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

pub use spec::{BenchSpec, Cluster, Grid, Paced, RowBound};

/// How long the brokers may take to start.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long topic creation and deletion may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything that can end a kafka-bench run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{flag} {value}: {reason}")]
    Setting {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid kafka-bench settings: {0}")]
    Invalid(String),
    // Boxed: a stack error quoting a broker's log is large, every other variant small.
    #[error(transparent)]
    Stack(Box<StackError>),
    #[error("Kafka, {doing}: {reason}")]
    Kafka { doing: String, reason: String },
    #[error("Apache Kafka's ProducerPerformance: {reason}")]
    PerfTool { reason: String },
    #[error("encoding a latency histogram: {0}")]
    Histogram(#[from] HistogramCodecError),
    #[error("a producer or consumer thread panicked")]
    Panicked,
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<StackError> for BenchError {
    fn from(error: StackError) -> Self {
        BenchError::Stack(Box::new(error))
    }
}

impl BenchError {
    /// Whether the fault is in what was asked (exit 2) rather than in the run (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            BenchError::Setting { .. } | BenchError::Invalid(_) => true,
            BenchError::Stack(stack) => stack.is_usage(),
            _ => false,
        }
    }
}

/// The Java tool's needs, found before anything starts.
struct JavaTool {
    java: PathBuf,
    kafka_home: PathBuf,
}

/// The brokers of a run, and what to stop at its end.
struct Brokers {
    cluster: KafkaCluster,
    // Kept until the brokers stop; removed on drop.
    _data: Option<tempfile::TempDir>,
    setup: BrokerSetup,
}

impl Brokers {
    async fn start(cluster: &Cluster) -> Result<Brokers, BenchError> {
        let data = tempfile::Builder::new()
            .prefix("faultline-kafka-bench-")
            .tempdir()
            .map_err(|source| BenchError::Io {
                doing: "creating the brokers' data directory".into(),
                source,
            })?;
        let (spec, heap_mb) = match cluster {
            Cluster::Start { brokers, heap_mb } => (
                KafkaSpec::Local(LocalKafka {
                    brokers: *brokers as usize,
                    heap_mb: *heap_mb,
                    // Its own brokers, measured with its own anonymous clients.
                    secured: false,
                    ..LocalKafka::default()
                }),
                Some(*heap_mb),
            ),
            Cluster::External { bootstrap } => (
                KafkaSpec::External {
                    bootstrap: bootstrap.clone(),
                },
                None,
            ),
        };
        let cluster = KafkaCluster::start(&spec, data.path(), READY_TIMEOUT).await?;
        let bootstrap = cluster.bootstrap();
        let count = kafka::broker_count(bootstrap.clone())
            .await
            .map_err(|reason| BenchError::Kafka {
                doing: "counting the brokers".into(),
                reason,
            })?;
        Ok(Brokers {
            setup: BrokerSetup {
                bootstrap,
                count: count as u64,
                started_here: heap_mb.is_some(),
                heap_mb,
            },
            _data: heap_mb.map(|_| data),
            cluster,
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.cluster
            .brokers()
            .iter()
            .filter_map(|b| b.pid())
            .collect()
    }
}

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, BenchError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()
        .map_err(|e| BenchError::Kafka {
            doing: "creating an admin client".into(),
            reason: e.to_string(),
        })
}

/// Creates a topic with the row's partitions and replication, and waits for it.
async fn create_topic(
    bootstrap: &str,
    topic: &str,
    s: &ProducerSettings,
) -> Result<(), BenchError> {
    let fail = |reason: String| BenchError::Kafka {
        doing: format!(
            "creating topic {topic} ({} partitions, replication factor {})",
            s.partitions, s.replication_factor
        ),
        reason,
    };
    let new_topic = NewTopic::new(
        topic,
        i32::try_from(s.partitions).unwrap_or(i32::MAX),
        TopicReplication::Fixed(i32::try_from(s.replication_factor).unwrap_or(i32::MAX)),
    );
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let outcome = admin(bootstrap)?
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| fail(e.to_string()))?;
    for result in outcome {
        result.map_err(|(_, code)| fail(code.to_string()))?;
    }
    Ok(())
}

/// Deletes a row's topics so that a long sweep does not fill the disk; a failure only warns.
async fn delete_topics(bootstrap: &str, topics: &[&str]) {
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let outcome = match admin(bootstrap) {
        Ok(client) => client.delete_topics(topics, &options).await.map(|_| ()),
        Err(error) => {
            tracing::warn!(%error, "could not delete the row's topics");
            return;
        }
    };
    if let Err(error) = outcome {
        tracing::warn!(%error, "could not delete the row's topics");
    }
}

/// Untimed records through the brokers before the first row, so that their JIT warm-up
/// is not charged to whichever side of the first row runs first.
async fn warm_up_brokers(
    spec: &BenchSpec,
    brokers: &Brokers,
    settings: &ProducerSettings,
) -> Result<(), BenchError> {
    let bootstrap = &brokers.setup.bootstrap;
    let topic = format!("kafka-bench-warm-up-{}", uuid::Uuid::new_v4().simple());
    create_topic(bootstrap, &topic, settings).await?;
    let row = produce::RdkafkaRow {
        bootstrap,
        topic: &topic,
        settings,
        bound: RowBound::Records(spec.warm_up_records),
        consume_timeout: spec.consume_timeout,
        broker_pids: Vec::new(),
    };
    let outcome = blocking(|| produce::run_row(&row)).await;
    delete_topics(bootstrap, &[&topic]).await;
    outcome.map(|_| ())
}

/// How long a paced phase first produces untimed, on a topic of its own: right after
/// an unpaced row (and the Java tool's JVM) the brokers are still replicating, deleting
/// and compiling, and measured on this machine that put 95 ms on a 200 msg/s baseline
/// whose own p50 is a few ms.
const PACED_LEAD_IN: Duration = Duration::from_secs(5);

/// The row's settings again from rdkafka, at the paced rate for the paced time, on a
/// topic of its own (the end-to-end consumer reads every record of its topic), after a
/// [`PACED_LEAD_IN`] at the same rate on another.
async fn run_paced(
    brokers: &Brokers,
    settings: &ProducerSettings,
    paced: Paced,
    consume_timeout: Duration,
) -> Result<PacedMeasurement, BenchError> {
    let settings = ProducerSettings {
        rate_per_sec: Some(paced.rate_per_sec),
        records: None,
        duration_secs: Some(paced.duration.as_secs_f64()),
        ..settings.clone()
    };
    paced_phase(
        brokers,
        &settings,
        "lead-in",
        PACED_LEAD_IN,
        consume_timeout,
    )
    .await?;
    let measured =
        paced_phase(brokers, &settings, "paced", paced.duration, consume_timeout).await?;
    Ok(PacedMeasurement {
        rate_per_sec: paced.rate_per_sec,
        duration_secs: paced.duration.as_secs_f64(),
        rdkafka: measured,
    })
}

/// rdkafka with `settings` for `length` on a fresh topic, deleted afterwards.
async fn paced_phase(
    brokers: &Brokers,
    settings: &ProducerSettings,
    phase: &str,
    length: Duration,
    consume_timeout: Duration,
) -> Result<RdkafkaMeasurement, BenchError> {
    let bootstrap = &brokers.setup.bootstrap;
    let topic = format!("kafka-bench-{phase}-{}", uuid::Uuid::new_v4().simple());
    create_topic(bootstrap, &topic, settings).await?;
    let row = produce::RdkafkaRow {
        bootstrap,
        topic: &topic,
        settings,
        bound: RowBound::Duration(length),
        consume_timeout,
        broker_pids: brokers.pids(),
    };
    let outcome = blocking(|| produce::run_row(&row)).await;
    delete_topics(bootstrap, &[&topic]).await;
    outcome
}

/// What makes a paced phase's latency other than what the settings add: a rate the
/// producers did not keep, or one not well below the row's unthrottled rate
/// (`unpaced_rate`, `None` when the row had a rate of its own).
fn paced_notes(paced: &PacedMeasurement, unpaced_rate: Option<f64>) -> Vec<String> {
    let mut notes = Vec::new();
    let achieved = paced.rdkafka.msgs_per_sec;
    // A tenth short is a stall, not the jitter of a clock-paced sender.
    if achieved < 0.9 * paced.rate_per_sec {
        notes.push(format!(
            "paced: {achieved:.0} of {:.0} msg/s sent: the producers did not keep the pace",
            paced.rate_per_sec
        ));
    }
    // Brokers that keep half the machine busy answer late because they are busy: at
    // linger 0 each record is a request of its own, which on a small machine saturates
    // the brokers' CPU at a few thousand records a second.
    if let Some(busy) = (paced.rdkafka.broker_cpu).filter(|u| u.percent_of_machine > 50.0) {
        notes.push(format!(
            "paced: the brokers kept {:.0}% of the machine busy at {:.0} msg/s, so its \
             latency holds their queue, not only what the settings add",
            busy.percent_of_machine, paced.rate_per_sec
        ));
    }
    // Above half the most it takes, a queue builds in bursts.
    if let Some(unpaced_rate) = unpaced_rate.filter(|most| paced.rate_per_sec > 0.5 * most) {
        notes.push(format!(
            "paced: {:.0} msg/s is not well below the row's unpaced {unpaced_rate:.0} msg/s, \
             so its latency holds queueing",
            paced.rate_per_sec
        ));
    }
    notes
}

/// One row: rdkafka on one topic, then the Java tool on another, same settings (its
/// paced phase comes after every row's, in [`run`]).
async fn run_row(
    spec: &BenchSpec,
    brokers: &Brokers,
    tool: Option<&JavaTool>,
    (table5, settings): (Option<Table5Row>, ProducerSettings),
) -> Result<KafkaBenchRow, BenchError> {
    let bootstrap = brokers.setup.bootstrap.clone();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let ours = format!("kafka-bench-rdkafka-{run_id}");
    let theirs = format!("kafka-bench-java-{run_id}");
    create_topic(&bootstrap, &ours, &settings).await?;
    let row = produce::RdkafkaRow {
        bootstrap: &bootstrap,
        topic: &ours,
        settings: &settings,
        bound: spec.bound,
        consume_timeout: spec.consume_timeout,
        broker_pids: brokers.pids(),
    };
    let rdkafka = blocking(|| produce::run_row(&row)).await?;
    let mut notes = Vec::new();
    if rdkafka.consumed < rdkafka.acked {
        notes.push(format!(
            "the end-to-end consumer read {} of {} records within {:?}",
            rdkafka.consumed, rdkafka.acked, spec.consume_timeout
        ));
    }
    let perf_tool = match tool {
        Some(tool) => {
            create_topic(&bootstrap, &theirs, &settings).await?;
            let row = perf_tool::PerfToolRow {
                java: &tool.java,
                kafka_home: &tool.kafka_home,
                bootstrap: &bootstrap,
                topic: &theirs,
                settings: &settings,
                // A row bounded by time gives the tool as many records as rdkafka sent.
                records: settings.records.unwrap_or(rdkafka.acked),
                broker_pids: brokers.pids(),
            };
            match blocking(|| perf_tool::run_row(&row)).await {
                Ok(measurement) => Some(measurement),
                Err(error) => {
                    notes.push(error.to_string());
                    None
                }
            }
        }
        None => None,
    };
    delete_topics(&bootstrap, &[&ours, &theirs]).await;
    Ok(KafkaBenchRow {
        table5,
        settings,
        rdkafka,
        perf_tool,
        paced: None,
        notes,
    })
}

/// A row's paced phase, with what it notes, into `row`; a failure is one of its notes.
async fn add_paced(spec: &BenchSpec, brokers: &Brokers, paced: Paced, row: &mut KafkaBenchRow) {
    match run_paced(brokers, &row.settings, paced, spec.consume_timeout).await {
        Ok(measured) => {
            let unthrottled =
                (row.settings.rate_per_sec.is_none()).then_some(row.rdkafka.msgs_per_sec);
            row.notes.extend(paced_notes(&measured, unthrottled));
            if measured.rdkafka.consumed < measured.rdkafka.acked {
                row.notes.push(format!(
                    "paced: the end-to-end consumer read {} of {} records within {:?}",
                    measured.rdkafka.consumed, measured.rdkafka.acked, spec.consume_timeout
                ));
            }
            row.paced = Some(measured);
        }
        Err(error) => row.notes.push(format!("the paced phase: {error}")),
    }
}

/// Runs blocking client code (threads that produce, consume or wait for JVMs) without
/// stalling the runtime's other tasks; needs the multi-threaded runtime, as the binary's.
async fn blocking<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    tokio::task::block_in_place(work)
}

/// Runs every row of `spec` and returns what they measured; `progress` hears of each row
/// as it starts and ends (the command prints it on stderr). Call it on a multi-threaded
/// tokio runtime. Brokers started here are stopped before it returns, error or not.
pub async fn run(
    spec: &BenchSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<KafkaBenchResults, BenchError> {
    spec.check()?;
    let tool = if spec.perf_tool {
        Some(JavaTool {
            kafka_home: kafka::kafka_home(None)?,
            java: kafka::java_program()?,
        })
    } else {
        None
    };
    let started_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    progress("starting the brokers");
    let mut brokers = Brokers::start(&spec.cluster).await?;
    let count = u32::try_from(brokers.setup.count).unwrap_or(u32::MAX);
    let rows = spec.rows(count);
    let mut results = KafkaBenchResults {
        schema_version: KAFKA_BENCH_SCHEMA_VERSION,
        started_at,
        machine: Machine::this(),
        faultline_version: env!("CARGO_PKG_VERSION").to_string(),
        brokers: brokers.setup.clone(),
        rows: Vec::with_capacity(rows.len()),
    };
    let total = rows.len();
    let mut outcome = match rows.iter().find(|(_, s)| s.replication_factor > count) {
        // Only an external cluster's size is learnt this late.
        Some((_, settings)) => Err(BenchError::Setting {
            flag: spec::flag::REPLICATION_FACTOR,
            value: settings.replication_factor.to_string(),
            reason: format!(
                "the cluster at {} has {count} brokers",
                brokers.setup.bootstrap
            ),
        }),
        None => Ok(()),
    };
    if let (Ok(()), Some((_, first)), 1..) = (&outcome, rows.first(), spec.warm_up_records) {
        progress(&format!(
            "warming the brokers up with {} records",
            spec.warm_up_records
        ));
        outcome = warm_up_brokers(spec, &brokers, first).await;
    }
    for (index, row) in rows.into_iter().enumerate() {
        if outcome.is_err() {
            break;
        }
        progress(&format!(
            "row {}/{total}: {}",
            index + 1,
            table::describe(&row.1)
        ));
        match run_row(spec, &brokers, tool.as_ref(), row).await {
            Ok(row) => {
                progress(&format!(
                    "row {}/{total}: {}",
                    index + 1,
                    table::outcome(&row)
                ));
                results.rows.push(row);
            }
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    // Paced phases last, every row's unpaced phase done: the brokers' JIT compilers
    // keep a fresh broker's CPU high for minutes, and this puts the first paced phase
    // (the baseline's) as late as the run allows.
    if let (Ok(()), Some(paced)) = (&outcome, spec.paced) {
        for (index, row) in results.rows.iter_mut().enumerate() {
            if !(spec.paced_rows.is_empty() || spec.paced_rows.contains(&(index + 1))) {
                continue;
            }
            progress(&format!(
                "row {}/{total}: paced at {:.0} msg/s",
                index + 1,
                paced.rate_per_sec
            ));
            add_paced(spec, &brokers, paced, row).await;
            progress(&format!(
                "row {}/{total}: {}",
                index + 1,
                table::paced_outcome(row)
            ));
        }
    }
    brokers.cluster.stop().await;
    outcome.map(|()| results)
}

/// Writes `kafka-bench.json` into `dir` (created if missing) and returns its path.
pub fn write_json(dir: &Path, results: &KafkaBenchResults) -> Result<PathBuf, BenchError> {
    let io = |doing: String| move |source| BenchError::Io { doing, source };
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let path = dir.join("kafka-bench.json");
    let json = serde_json::to_string_pretty(results).map_err(|e| BenchError::Io {
        doing: "encoding the results".into(),
        source: e.into(),
    })?;
    std::fs::write(&path, json).map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use faultline_results::kafka_bench::CpuUse;
    use faultline_results::{EncodedHistogram, LatencySummary};

    fn paced(rate: f64, achieved: f64, brokers_percent: f64) -> PacedMeasurement {
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        histogram.record(2_000).unwrap();
        let encoded = EncodedHistogram::encode(&histogram).unwrap();
        PacedMeasurement {
            rate_per_sec: rate,
            duration_secs: 5.0,
            rdkafka: RdkafkaMeasurement {
                acked: 1,
                failed: 0,
                elapsed_secs: 5.0,
                msgs_per_sec: achieved,
                mb_per_sec: 0.1,
                produce_latency: LatencySummary::of(&histogram),
                produce_histogram: encoded.clone(),
                end_to_end_latency: LatencySummary::of(&histogram),
                end_to_end_histogram: encoded,
                consumed: 1,
                broker_cpu: Some(CpuUse {
                    cores: brokers_percent / 50.0,
                    percent_of_machine: brokers_percent,
                }),
                client_cpu: None,
            },
        }
    }

    #[test]
    fn a_paced_phase_kept_with_idle_brokers_has_no_note() {
        assert!(paced_notes(&paced(200.0, 199.0, 14.0), Some(30_000.0)).is_empty());
    }

    #[test]
    fn busy_brokers_short_rates_and_rates_near_the_unpaced_one_are_noted() {
        let busy = paced_notes(&paced(2000.0, 1999.0, 72.0), Some(30_000.0));
        assert_eq!(busy.len(), 1, "{busy:?}");
        assert!(busy[0].contains("72% of the machine"), "{busy:?}");
        let short = paced_notes(&paced(2000.0, 1500.0, 10.0), None);
        assert!(short[0].contains("did not keep the pace"), "{short:?}");
        let near = paced_notes(&paced(2000.0, 2000.0, 10.0), Some(3_000.0));
        assert!(near[0].contains("not well below"), "{near:?}");
    }
}
