//! The types of `results.json`: a whole run's [`Results`] and the parts it is made of.
//!
//! The format is versioned ([`SCHEMA_VERSION`]) and described by the JSON Schema in
//! `results/schema/results.schema.json`, which tests in loadgen and reports check real
//! output against. How results are built from recorded buckets is in
//! [`crate::build`], how two runs' results add up in [`crate::merge`].

use std::{collections::BTreeMap, path::Path, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{
    error::{read_text, write_text, FileError, ResultsError},
    error_class::ErrorCounts,
    gates::GateSpec,
    histogram::{EncodedHistogram, LatencySummary},
    schedule::TargetSchedule,
};

/// The version of the results format this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema_version: u32,
    pub metadata: RunMetadata,
    /// The load that was asked for, so reports can draw target against achieved.
    pub schedule: TargetSchedule,
    /// All endpoints together.
    pub totals: Totals,
    /// All endpoints together, per wall-clock second.
    pub seconds: Vec<SecondResults>,
    /// Per endpoint (keyed by its name, e.g. `GET /orders`).
    pub endpoints: BTreeMap<String, EndpointResults>,
    /// Whether the generator kept to the schedule.
    pub generator: GeneratorHealth,
    /// Time from a write's acknowledgement to the read side serving it, when the
    /// run measured it (user journeys against the reference system).
    pub consistency_window: Option<EncodedHistogram>,
    /// Where the run's ledger of acknowledged writes is, when it kept one.
    pub write_ledger: Option<String>,
    /// What the user journeys did, when the run drove journeys: the schedule's rate
    /// is then journeys per second, not requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journeys: Option<JourneyResults>,
    /// Faults that were active during the run (the chaos timeline), in start order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultWindow>,
    /// Series scraped from the services' `/metrics` during the run (consumer lag,
    /// outbox backlog, saga states, circuit breakers, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_metrics: Vec<MetricSeries>,
    /// Histograms the services export (a consumer's time to handle an event), as their
    /// change from the run's first scrape to its last (module `server_histogram`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_histograms: Vec<crate::server_histogram::ServerHistogram>,
    /// The statements the services' databases ran, from `pg_stat_statements` at the
    /// run's start and end (module `database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<crate::database::DatabaseResults>,
    /// What the consistency checker found after the drain, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checker: Option<CheckerResults>,
    /// The gates the run was asked to hold (from its scenario), so a report
    /// regenerated from these results alone shows and judges them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateSpec>,
    /// The scenario file's text, so the report can show exactly what ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_text: Option<String>,
    /// The TLS handshakes of an `https://` run (module `tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsResults>,
    /// A capacity search's steps and the capacity it found (`faultline load
    /// --find-max`); the rest of these results are then those of one step (module
    /// `capacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::capacity::CapacityResults>,
    /// CPU and memory of the system's processes, and the machine's network and disk
    /// counters, sampled from `/proc` each second (module `resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<crate::resources::ResourceResults>,
    /// The slowest requests' trace ids and spans, when the run sent trace context
    /// (module `traces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<crate::traces::Traces>,
    /// The Prometheus server that scraped the system during the run, when one did: where
    /// the raw series are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// The warm-up run before the measured load (`[load] warm_up`), when there was one:
    /// what it sent. None of it is in the rest of these results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_up: Option<WarmUp>,
}

/// A warm-up: the load's own requests or journeys, run before the measured load and not
/// recorded, so that a system whose first seconds are not its steady state (a JVM still
/// compiling, cold caches) is measured after them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmUp {
    /// How long it ran, in seconds.
    pub duration_secs: f64,
    /// Its constant arrival rate (requests or journeys per second); `None` for a closed
    /// model.
    pub rate: Option<f64>,
    /// Requests it sent, and how many of them succeeded.
    pub requests: u64,
    pub ok: u64,
    /// The ledger of the orders its journeys placed, when it kept one: a checker checks
    /// them with the load's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
}

impl WarmUp {
    /// What it was, for a summary or a report: `20 s at 500/s, 19840 requests (19790 ok)`.
    pub fn describe(&self) -> String {
        let pace = match self.rate {
            Some(rate) => format!("at {rate}/s"),
            None => "closed".to_string(),
        };
        format!(
            "{:.0} s {pace}, {} requests ({} ok)",
            self.duration_secs, self.requests, self.ok
        )
    }
}

/// Where a run's Prometheus served its series, and where it keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrometheusSource {
    /// Its web UI and HTTP API during the run (gone once the run ends).
    pub url: String,
    /// Its directory (the TSDB under `data/`): `prometheus --storage.tsdb.path` there
    /// serves the run's series again.
    pub data_dir: String,
}

/// Counts of a journey run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyResults {
    /// `open` (faultline's engine) or `goose`.
    pub driver: String,
    /// Journeys started, by journey name.
    pub started: BTreeMap<String, u64>,
    /// Journeys started per wall-clock second of their intended start (the achieved rate
    /// in the schedule's unit); seconds with none are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seconds: Vec<JourneySecond>,
    /// Journeys never started: every journey slot was busy past the maximum send delay.
    pub dropped: u64,
    /// Acknowledged orders the read model did not show within the deadline.
    pub consistency_unseen: u64,
    pub consistency_deadline_ms: f64,
}

/// Journeys started in one second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneySecond {
    /// Unix time of the second's start.
    pub second: u64,
    pub started: u64,
}

/// When something happened: seconds after `metadata.started_at`, or an RFC 3339
/// UTC timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimePoint {
    Offset(f64),
    At(String),
}

/// One fault that was active during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Shown on the charts, e.g. `kill orders-1`.
    pub label: String,
    /// The kind of fault, e.g. `kill`, `pause`, `partition`, `latency`.
    pub kind: String,
    /// What it was applied to, e.g. a process or a proxied address.
    pub target: String,
    pub start: TimePoint,
    /// `None` while the fault was still active when the run ended.
    #[serde(default)]
    pub end: Option<TimePoint>,
    /// A fault on a service replica: seconds from the fault's end (a kill's instant)
    /// until the replica answered `/health/ready` again, as the run watched it; `None`
    /// when it was not watched or never seen down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_after_secs: Option<f64>,
    /// A deployment (rollout, blue-green): each replacement of replicas, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<DeployStep>,
}

/// One replacement within a deployment (a rollout has one per replica, a blue-green switch
/// one for the whole set): old replicas out, new ones in. `T` says when: a [`TimePoint`]
/// here; the supervisor that makes the step records instants, the fault timeline offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployStep<T = TimePoint> {
    /// Replica names, e.g. `orders-1` replaced by `orders-3`.
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// The new replicas were started.
    pub started: T,
    /// Every new replica answered `/health/ready`.
    pub ready: T,
    /// The gateway sent to the new replicas and no longer to the old ones.
    pub switched: T,
    /// Every old replica had exited.
    pub stopped: T,
}

impl<T> DeployStep<T> {
    /// The same step with each of its times converted by `when`.
    pub fn map<U>(&self, mut when: impl FnMut(&T) -> U) -> DeployStep<U> {
        DeployStep {
            old: self.old.clone(),
            new: self.new.clone(),
            started: when(&self.started),
            ready: when(&self.ready),
            switched: when(&self.switched),
            stopped: when(&self.stopped),
        }
    }
}

/// Prometheus metric type of a scraped series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Counter,
    Gauge,
    Untyped,
}

/// One scraped series: a metric name and label set, with its values over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    /// Full Prometheus name, e.g. `faultline_consumer_lag`.
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MetricKind>,
    /// `[seconds after metadata.started_at, value]`, in time order.
    pub points: Vec<(f64, f64)>,
}

/// What the consistency checker counted after load and drain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckerResults {
    /// Entities (e.g. acknowledged orders) that were checked.
    pub checked: u64,
    /// Acknowledged but nowhere to be found, or not in a terminal state.
    pub lost: u64,
    /// Applied more than once (e.g. two captured payments for one order).
    pub duplicated: u64,
    /// Found, but the sides disagree (read model vs write model, stock not conserved).
    pub inconsistent: u64,
    /// From the end of load until every check held, in seconds; `None` when it
    /// never settled within the checker's deadline.
    #[serde(default)]
    pub settle_secs: Option<f64>,
    /// Findings in words, for the report (a few examples, not every entity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Facts about the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetadata {
    pub scenario: Option<String>,
    pub target: String,
    /// When the schedule started, RFC 3339 (UTC).
    pub started_at: String,
    /// How long the schedule ran, in seconds (for merged results: first start to last end).
    pub duration_secs: f64,
    pub machine: Machine,
    pub faultline_version: String,
    pub git_commit: Option<String>,
    pub http_version: HttpVersion,
    /// Connections (the bound on requests in flight); summed over merged workers.
    pub connections: u64,
    /// HTTP/2 streams in flight at once on each connection (1 for HTTP/1.1), so
    /// requests in flight are bounded by `connections × streams`. Results written
    /// before it was recorded read as 1, which is what those runs used.
    #[serde(default = "one_stream")]
    pub streams: u64,
    pub timeout_ms: u64,
    pub latency_origin: LatencyOrigin,
    /// How many runs these results hold (1, or more after merging).
    pub workers: u64,
}

fn one_stream() -> u64 {
    1
}

/// The machine the load generator ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: u64,
    pub memory_bytes: u64,
    /// CPU model name (`/proc/cpuinfo`), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Operating system and kernel, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

impl Machine {
    /// This machine (memory from `/proc/meminfo`, 0 where unknown).
    pub fn this() -> Machine {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(0);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(0);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_string())
            });
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|kernel| format!("{} {}", std::env::consts::OS, kernel.trim()));
        Machine {
            cores,
            memory_bytes,
            cpu_model,
            os,
        }
    }
}

/// The HTTP version spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// Where latency is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyOrigin {
    /// From when the request was due: a stalled server shows in full (the default).
    /// A request the timer let go up to 1 ms early is measured from its actual send.
    IntendedSendTime,
    /// From when the request was actually sent. This hides server stalls behind the
    /// requests that were never sent during them (coordinated omission); it exists to
    /// demonstrate that, not for real measurements.
    ActualSendTime,
}

/// Counts and latency of a set of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests sent (answered or failed).
    pub requests: u64,
    /// Requests answered with a 1xx–3xx status.
    pub ok: u64,
    pub errors: ErrorCounts,
    /// Requests sent later than `generator.late_threshold_ms` after their intended time.
    pub late: u64,
    /// Requests never sent: overdue by more than `generator.max_send_delay_ms`.
    pub dropped: u64,
    /// `requests / metadata.duration_secs`.
    pub achieved_rate: f64,
    /// Latency of answered requests, from the intended send time, microseconds.
    pub latency: EncodedHistogram,
    pub latency_summary: LatencySummary,
    /// Send delay (actual minus intended send time), microseconds.
    pub send_delay: EncodedHistogram,
    pub send_delay_summary: LatencySummary,
}

/// One endpoint's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointResults {
    pub totals: Totals,
    pub seconds: Vec<SecondResults>,
}

/// One wall-clock second (by when requests finished).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondResults {
    /// Unix time of the second's start.
    pub second: u64,
    pub requests: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    pub late: u64,
    pub dropped: u64,
    pub latency: EncodedHistogram,
}

/// Did the generator keep to the schedule?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorHealth {
    /// False when requests were dropped or more than 1% were late.
    pub kept_up: bool,
    pub late_threshold_ms: f64,
    pub max_send_delay_ms: f64,
    /// What went wrong, in words, when it did not keep up.
    pub message: Option<String>,
}

impl GeneratorHealth {
    /// Judges the counts.
    pub fn judge(
        late_threshold_ms: f64,
        max_send_delay_ms: f64,
        totals: &Totals,
    ) -> GeneratorHealth {
        let late_share = if totals.requests == 0 {
            0.0
        } else {
            totals.late as f64 / totals.requests as f64
        };
        let mut problems = Vec::new();
        if totals.dropped > 0 {
            problems.push(format!(
                "{} requests were dropped (due more than {max_send_delay_ms} ms earlier when a connection was free)",
                totals.dropped
            ));
        }
        if late_share > 0.01 {
            problems.push(format!(
                "{} requests ({:.1}%) started more than {late_threshold_ms} ms after their intended time",
                totals.late,
                late_share * 100.0
            ));
        }
        let message = (!problems.is_empty()).then(|| {
            format!(
                "the generator did not keep to the schedule: {}. All connections were busy (raise --connections) \
                 or the generator ran out of CPU; latency is still measured from the intended send time",
                problems.join("; ")
            )
        });
        GeneratorHealth {
            kept_up: message.is_none(),
            late_threshold_ms,
            max_send_delay_ms,
            message,
        }
    }
}

impl Results {
    /// Reads results from a JSON file, refusing another schema version.
    pub fn read(path: &Path) -> Result<Results, ResultsError> {
        let text = read_text(path, "reading results from")?;
        let results: Results = serde_json::from_str(&text).map_err(|e| ResultsError::Json {
            path: path.into(),
            reason: e.to_string(),
        })?;
        results.check_version()?;
        Ok(results)
    }

    /// An error unless these results are of the version this crate reads.
    pub fn check_version(&self) -> Result<(), ResultsError> {
        if self.schema_version == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(ResultsError::SchemaVersion {
                found: self.schema_version,
            })
        }
    }

    /// Writes results as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| FileError::new("writing results to", path, std::io::Error::other(e)))?;
        Ok(write_text(path, &(text + "\n"))?)
    }
}

/// Who ran the load, for the results' metadata (the binary fills it in).
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub scenario: Option<String>,
    /// Version of the faultline binary; this crate's own when empty.
    pub faultline_version: Option<String>,
    pub git_commit: Option<String>,
}

impl RunMetadata {
    /// What every run records the same way: who ran it, against what, when, for how
    /// long, on which machine. The connection facts are the caller's to set (struct
    /// update syntax); they default to one HTTP/1.1 worker measuring from the intended
    /// send time.
    pub fn of_run(
        run_info: &RunInfo,
        target: &str,
        started: SystemTime,
        schedule: &TargetSchedule,
    ) -> RunMetadata {
        RunMetadata {
            scenario: run_info.scenario.clone(),
            target: target.to_string(),
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            duration_secs: schedule.duration_secs,
            machine: Machine::this(),
            faultline_version: run_info
                .faultline_version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            git_commit: run_info.git_commit.clone(),
            http_version: HttpVersion::Http1,
            connections: 0,
            streams: 1,
            timeout_ms: 0,
            latency_origin: LatencyOrigin::IntendedSendTime,
            workers: 1,
        }
    }
}
