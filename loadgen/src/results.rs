//! `results.json`: the one contract between running load and reporting on it.
//!
//! The format is versioned ([`SCHEMA_VERSION`]) and described by the JSON Schema in
//! `loadgen/schema/results.schema.json`, which a test checks real output against.
//! Histograms are stored whole (HdrHistogram V2 compressed, base64), so results of
//! several workers merge exactly with [`Results::merge`]: histograms add, counts add,
//! per-second entries line up by wall-clock (Unix) second.

use std::{collections::BTreeMap, path::Path, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{
    classify::ErrorCounts,
    error::LoadError,
    histogram::{new_histogram, EncodedHistogram, HistogramCodecError, LatencySummary},
    recorder::{Bucket, Collected},
    schedule::{Arrivals, Schedule, Stage},
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

impl JourneyResults {
    fn merge(a: &JourneyResults, b: &JourneyResults) -> JourneyResults {
        let mut started = a.started.clone();
        for (name, count) in &b.started {
            *started.entry(name.clone()).or_default() += count;
        }
        let mut by_second: BTreeMap<u64, u64> = BTreeMap::new();
        for s in a.seconds.iter().chain(&b.seconds) {
            *by_second.entry(s.second).or_default() += s.started;
        }
        JourneyResults {
            driver: if a.driver == b.driver {
                a.driver.clone()
            } else {
                format!("{} + {}", a.driver, b.driver)
            },
            started,
            seconds: by_second
                .into_iter()
                .map(|(second, started)| JourneySecond { second, started })
                .collect(),
            dropped: a.dropped + b.dropped,
            consistency_unseen: a.consistency_unseen + b.consistency_unseen,
            consistency_deadline_ms: a.consistency_deadline_ms.max(b.consistency_deadline_ms),
        }
    }
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

/// A gate as written in a scenario: a metric and a bound (`max` or `min`, with
/// units, e.g. `450ms`, `1%`, `900/s`). `faultline-reports` parses and judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSpec {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
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
    pub timeout_ms: u64,
    pub latency_origin: LatencyOrigin,
    /// How many runs these results hold (1, or more after merging).
    pub workers: u64,
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

/// The load that was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSchedule {
    pub model: LoadModel,
    /// Arrival process of an open schedule (`null` for closed).
    pub arrivals: Option<Arrivals>,
    pub duration_secs: f64,
    /// Rate stages of an open schedule (empty for closed).
    pub stages: Vec<Stage>,
}

/// Open (arrival rate) or closed (fixed connections, no pacing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    Open,
    Closed,
}

impl TargetSchedule {
    /// Describes a schedule.
    pub fn of(schedule: &Schedule) -> TargetSchedule {
        match schedule {
            Schedule::Open { stages, arrivals } => TargetSchedule {
                model: LoadModel::Open,
                arrivals: Some(*arrivals),
                duration_secs: schedule.duration().as_secs_f64(),
                stages: stages.clone(),
            },
            Schedule::Closed { duration } => TargetSchedule {
                model: LoadModel::Closed,
                arrivals: None,
                duration_secs: duration.as_secs_f64(),
                stages: Vec::new(),
            },
        }
    }
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

/// What went wrong reading or merging results.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("schema version {found} is not {SCHEMA_VERSION}, the version this faultline reads")]
    SchemaVersion { found: u32 },
    #[error(transparent)]
    Histogram(#[from] HistogramCodecError),
    #[error("bad timestamp {0:?}: {1}")]
    Timestamp(String, String),
}

/// What a finished run recorded, to build results from (the engine fills it in;
/// other recorders, such as user journeys, can too).
pub struct RunRecord<'a> {
    pub metadata: RunMetadata,
    pub schedule: TargetSchedule,
    pub endpoint_names: &'a [String],
    pub collected: &'a Collected,
    pub late_threshold_ms: f64,
    pub max_send_delay_ms: f64,
}

impl Results {
    /// Builds results from what the collector gathered.
    pub fn build(record: RunRecord<'_>) -> Result<Results, HistogramCodecError> {
        let duration = record.metadata.duration_secs;
        let mut per_endpoint: BTreeMap<usize, Vec<(u64, &Bucket)>> = BTreeMap::new();
        let mut per_second: BTreeMap<u64, Bucket> = BTreeMap::new();
        for ((endpoint, second), bucket) in &record.collected.buckets {
            per_endpoint
                .entry(*endpoint)
                .or_default()
                .push((*second, bucket));
            per_second.entry(*second).or_default().merge(bucket);
        }
        let mut endpoints = BTreeMap::new();
        let mut all = Bucket::default();
        for (index, name) in record.endpoint_names.iter().enumerate() {
            let mut sum = Bucket::default();
            let mut seconds = Vec::new();
            for (second, bucket) in per_endpoint.get(&index).into_iter().flatten() {
                sum.merge(bucket);
                seconds.push(SecondResults::of(*second, bucket)?);
            }
            all.merge(&sum);
            endpoints.insert(
                name.clone(),
                EndpointResults {
                    totals: Totals::of(&sum, duration)?,
                    seconds,
                },
            );
        }
        let totals = Totals::of(&all, duration)?;
        let seconds = per_second
            .iter()
            .map(|(second, bucket)| SecondResults::of(*second, bucket))
            .collect::<Result<_, _>>()?;
        Ok(Results {
            schema_version: SCHEMA_VERSION,
            generator: GeneratorHealth::judge(
                record.late_threshold_ms,
                record.max_send_delay_ms,
                &totals,
            ),
            metadata: record.metadata,
            schedule: record.schedule,
            totals,
            seconds,
            endpoints,
            consistency_window: None,
            write_ledger: None,
            journeys: None,
            faults: Vec::new(),
            server_metrics: Vec::new(),
            checker: None,
            gates: Vec::new(),
            scenario_text: None,
            tls: None,
        })
    }

    /// Merges the results of two runs (e.g. two load workers) exactly.
    pub fn merge(a: &Results, b: &Results) -> Result<Results, ResultsError> {
        for results in [a, b] {
            if results.schema_version != SCHEMA_VERSION {
                return Err(ResultsError::SchemaVersion {
                    found: results.schema_version,
                });
            }
        }
        let (start_a, end_a) = a.metadata.span()?;
        let (start_b, end_b) = b.metadata.span()?;
        let start = start_a.min(start_b);
        let end = end_a.max(end_b);
        let duration = end.duration_since(start).unwrap_or_default().as_secs_f64();

        let pick = |x: &Option<String>, y: &Option<String>| {
            if x == y {
                x.clone()
            } else {
                x.clone().or(y.clone())
            }
        };
        let metadata = RunMetadata {
            scenario: pick(&a.metadata.scenario, &b.metadata.scenario),
            target: if a.metadata.target == b.metadata.target {
                a.metadata.target.clone()
            } else {
                format!("{} + {}", a.metadata.target, b.metadata.target)
            },
            started_at: humantime::format_rfc3339_millis(start).to_string(),
            duration_secs: duration,
            machine: a.metadata.machine.clone(),
            faultline_version: a.metadata.faultline_version.clone(),
            git_commit: pick(&a.metadata.git_commit, &b.metadata.git_commit),
            http_version: a.metadata.http_version,
            connections: a.metadata.connections + b.metadata.connections,
            timeout_ms: a.metadata.timeout_ms.max(b.metadata.timeout_ms),
            latency_origin: a.metadata.latency_origin,
            workers: a.metadata.workers + b.metadata.workers,
        };

        let mut endpoints = a.endpoints.clone();
        for (name, theirs) in &b.endpoints {
            let merged = match endpoints.get(name) {
                Some(ours) => EndpointResults {
                    totals: Totals::merge(&ours.totals, &theirs.totals, duration)?,
                    seconds: merge_seconds(&ours.seconds, &theirs.seconds)?,
                },
                None => theirs.clone(),
            };
            endpoints.insert(name.clone(), merged);
        }
        // Endpoints only in `a` keep their totals but need the new duration's rate.
        for endpoint in endpoints.values_mut() {
            endpoint.totals.achieved_rate = rate(endpoint.totals.requests, duration);
        }
        let totals = Totals::merge(&a.totals, &b.totals, duration)?;
        let consistency_window = match (&a.consistency_window, &b.consistency_window) {
            (Some(x), Some(y)) => Some(EncodedHistogram::merge(x, y)?),
            (x, y) => x.clone().or(y.clone()),
        };
        let generator = GeneratorHealth::judge(
            a.generator.late_threshold_ms,
            a.generator.max_send_delay_ms,
            &totals,
        );
        Ok(Results {
            schema_version: SCHEMA_VERSION,
            metadata,
            schedule: merge_schedules(&a.schedule, &b.schedule),
            seconds: merge_seconds(&a.seconds, &b.seconds)?,
            totals,
            endpoints,
            generator,
            consistency_window,
            write_ledger: a.write_ledger.clone().or(b.write_ledger.clone()),
            journeys: match (&a.journeys, &b.journeys) {
                (Some(x), Some(y)) => Some(JourneyResults::merge(x, y)),
                (x, y) => x.clone().or(y.clone()),
            },
            // Workers of one run share its faults, scrape and checker; they are
            // recorded once, by the run, so the first worker's are kept.
            faults: if a.faults.is_empty() {
                b.faults.clone()
            } else {
                a.faults.clone()
            },
            server_metrics: if a.server_metrics.is_empty() {
                b.server_metrics.clone()
            } else {
                a.server_metrics.clone()
            },
            checker: a.checker.clone().or(b.checker.clone()),
            gates: if a.gates.is_empty() {
                b.gates.clone()
            } else {
                a.gates.clone()
            },
            scenario_text: a.scenario_text.clone().or(b.scenario_text.clone()),
            tls: crate::tls::TlsResults::merge_runs(&a.tls, &b.tls)?,
        })
    }

    /// Reads results from a JSON file.
    pub fn read(path: &Path) -> Result<Results, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::File {
            action: "reading results from",
            path: path.into(),
            source,
        })?;
        let results: Results = serde_json::from_str(&text).map_err(|e| LoadError::BadResults {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if results.schema_version != SCHEMA_VERSION {
            return Err(LoadError::BadResults {
                path: path.display().to_string(),
                reason: ResultsError::SchemaVersion {
                    found: results.schema_version,
                }
                .to_string(),
            });
        }
        Ok(results)
    }

    /// Writes results as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), LoadError> {
        let file_error = |source| LoadError::File {
            action: "writing results to",
            path: path.into(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| file_error(e.into()))?;
        std::fs::write(path, text + "\n").map_err(file_error)
    }
}

impl RunMetadata {
    /// What every run records the same way: who ran it, against what, when, for how
    /// long, on which machine. The connection facts are the caller's to set (struct
    /// update syntax); they default to one HTTP/1.1 worker measuring from the intended
    /// send time.
    pub fn of_run(
        run_info: &crate::engine::RunInfo,
        target: &str,
        started: SystemTime,
        schedule: &Schedule,
    ) -> RunMetadata {
        RunMetadata {
            scenario: run_info.scenario.clone(),
            target: target.to_string(),
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            duration_secs: schedule.duration().as_secs_f64(),
            machine: Machine::this(),
            faultline_version: run_info
                .faultline_version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            git_commit: run_info.git_commit.clone(),
            http_version: HttpVersion::Http1,
            connections: 0,
            timeout_ms: 0,
            latency_origin: LatencyOrigin::IntendedSendTime,
            workers: 1,
        }
    }

    /// Start and end of the run as wall-clock times.
    fn span(&self) -> Result<(SystemTime, SystemTime), ResultsError> {
        let start = humantime::parse_rfc3339(&self.started_at)
            .map_err(|e| ResultsError::Timestamp(self.started_at.clone(), e.to_string()))?;
        let length =
            std::time::Duration::try_from_secs_f64(self.duration_secs.max(0.0)).unwrap_or_default();
        Ok((start, start + length))
    }
}

fn rate(requests: u64, duration_secs: f64) -> f64 {
    if duration_secs > 0.0 {
        requests as f64 / duration_secs
    } else {
        0.0
    }
}

impl Totals {
    fn of(bucket: &Bucket, duration_secs: f64) -> Result<Totals, HistogramCodecError> {
        Ok(Totals {
            requests: bucket.requests,
            ok: bucket.ok,
            errors: bucket.errors,
            late: bucket.late,
            dropped: bucket.dropped,
            achieved_rate: rate(bucket.requests, duration_secs),
            latency: EncodedHistogram::encode(&bucket.latency)?,
            latency_summary: LatencySummary::of(&bucket.latency),
            send_delay: EncodedHistogram::encode(&bucket.send_delay)?,
            send_delay_summary: LatencySummary::of(&bucket.send_delay),
        })
    }

    fn merge(a: &Totals, b: &Totals, duration_secs: f64) -> Result<Totals, HistogramCodecError> {
        let mut latency = a.latency.decode()?;
        latency
            .add(b.latency.decode()?)
            .map_err(HistogramCodecError::Add)?;
        let mut send_delay = a.send_delay.decode()?;
        send_delay
            .add(b.send_delay.decode()?)
            .map_err(HistogramCodecError::Add)?;
        let mut errors = a.errors;
        errors.merge(&b.errors);
        let requests = a.requests + b.requests;
        Ok(Totals {
            requests,
            ok: a.ok + b.ok,
            errors,
            late: a.late + b.late,
            dropped: a.dropped + b.dropped,
            achieved_rate: rate(requests, duration_secs),
            latency: EncodedHistogram::encode(&latency)?,
            latency_summary: LatencySummary::of(&latency),
            send_delay: EncodedHistogram::encode(&send_delay)?,
            send_delay_summary: LatencySummary::of(&send_delay),
        })
    }
}

impl SecondResults {
    fn of(second: u64, bucket: &Bucket) -> Result<SecondResults, HistogramCodecError> {
        Ok(SecondResults {
            second,
            requests: bucket.requests,
            ok: bucket.ok,
            errors: bucket.errors,
            late: bucket.late,
            dropped: bucket.dropped,
            latency: EncodedHistogram::encode(&bucket.latency)?,
        })
    }
}

/// Merges two per-second series, aligned by wall-clock second.
fn merge_seconds(
    a: &[SecondResults],
    b: &[SecondResults],
) -> Result<Vec<SecondResults>, HistogramCodecError> {
    let mut by_second: BTreeMap<u64, SecondResults> =
        a.iter().map(|s| (s.second, s.clone())).collect();
    for theirs in b {
        let merged = match by_second.get(&theirs.second) {
            Some(ours) => {
                let mut errors = ours.errors;
                errors.merge(&theirs.errors);
                SecondResults {
                    second: ours.second,
                    requests: ours.requests + theirs.requests,
                    ok: ours.ok + theirs.ok,
                    errors,
                    late: ours.late + theirs.late,
                    dropped: ours.dropped + theirs.dropped,
                    latency: EncodedHistogram::merge(&ours.latency, &theirs.latency)?,
                }
            }
            None => theirs.clone(),
        };
        by_second.insert(theirs.second, merged);
    }
    Ok(by_second.into_values().collect())
}

/// Workers that ran the same stages side by side asked for the sum of their rates;
/// schedules of other shapes cannot be added, and the first one is kept.
fn merge_schedules(a: &TargetSchedule, b: &TargetSchedule) -> TargetSchedule {
    let same_shape = a.model == b.model
        && a.stages.len() == b.stages.len()
        && a.stages
            .iter()
            .zip(&b.stages)
            .all(|(x, y)| x.duration == y.duration);
    if !same_shape || a.model == LoadModel::Closed {
        return a.clone();
    }
    TargetSchedule {
        stages: a
            .stages
            .iter()
            .zip(&b.stages)
            .map(|(x, y)| Stage {
                duration: x.duration,
                from_rate: x.from_rate + y.from_rate,
                to_rate: x.to_rate + y.to_rate,
            })
            .collect(),
        ..a.clone()
    }
}

/// An empty histogram in its stored form (for results with no requests).
pub fn empty_histogram() -> Result<EncodedHistogram, HistogramCodecError> {
    EncodedHistogram::encode(&new_histogram())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journeys(started: u64, seconds: &[(u64, u64)]) -> JourneyResults {
        JourneyResults {
            driver: "open".into(),
            started: BTreeMap::from([("browse".to_string(), started)]),
            seconds: seconds
                .iter()
                .map(|&(second, started)| JourneySecond { second, started })
                .collect(),
            dropped: 1,
            consistency_unseen: 0,
            consistency_deadline_ms: 30_000.0,
        }
    }

    #[test]
    fn merged_journeys_add_their_starts_second_by_second() {
        let merged = JourneyResults::merge(
            &journeys(5, &[(100, 2), (101, 3)]),
            &journeys(4, &[(101, 1), (102, 3)]),
        );
        assert_eq!(merged.started["browse"], 9);
        assert_eq!(merged.dropped, 2);
        let seconds: Vec<(u64, u64)> = merged
            .seconds
            .iter()
            .map(|s| (s.second, s.started))
            .collect();
        assert_eq!(seconds, [(100, 2), (101, 4), (102, 3)]);
    }
}
