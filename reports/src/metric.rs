//! The metric vocabulary shared by gates and claims, and how each is measured.
//!
//! A metric is `SCOPE.STAT`:
//!
//! | scope | stats |
//! |---|---|
//! | `http` (all endpoints), `endpoint:<name>` (e.g. `endpoint:GET /orders`), `group:<name>` (endpoints named by a group of the claims file) | `p50` `p90` `p99` `p99_9` (any `pNN`/`pNN_N`), `mean`, `min`, `max`, `rate` (achieved requests/s), `requests`, `errors`, `error_rate`, `availability` (answered 1xx–3xx / sent), `late`, `dropped` |
//! | `consistency` (write acknowledged → read side serves it) | `pNN`, `mean`, `min`, `max`, `count` |
//! | `checker` | `lost`, `duplicated`, `inconsistent`, `checked`, `consistent_ratio`, `settle_time` |
//! | `server:<name>` or `server:<name>{label="value",...}` (scraped series) | `max`, `mean`, `last` (of the sum over matching series), `rate` (counter increase per second over the load, the scrape's seconds before and after it left out; under a capacity search, over the step at capacity) |
//! | `server_histogram:<name>{label="value",...}` (a histogram the services export, its change over the run, matching series added) | `mean` (exact: sum / count), `pNN` (interpolated within its Prometheus bucket), `count`, `rate` (observations per second) |
//! | `database` (statements the services' roles ran that read or write rows, from `pg_stat_statements` at the run's start and end) | `rate`, `count`, `mean` (execution time), `exec_cv` (calls-weighted mean over statements of stddev / mean of execution time) |
//! | `resources:cpu` (share of the machine's cores the system's processes used), `resources:memory` (their resident bytes, summed), `resources:network` (the machine's bytes/s, sent and received), `resources:disk_ops` (the machine's disk reads and writes/s): sampled from `/proc` each second | `max`, `mean`, `last` |
//! | `cqrs` (the claims suite's comparison of an order's view read from the read model and composed from the write side, endpoints [`CQRS_READ_MODEL`] and [`CQRS_WRITE_SIDE`]) | `read_speedup` (the composed view's mean latency over the read model's, at the same concurrency) |
//! | `faults` (every fault), `faults:<target>` (the faults on one target, e.g. `faults:orders-1`) | `recovery_time` (longest, over faults, from a fault's end to the first second back to normal), `ready_time` (mean, over the faults on a service replica, from a fault's end to the replica answering `/health/ready` again), `count`, `error_rate` and `pNN` (of the requests in the seconds the faults were in force: a rollout's or blue-green switch's change window) |
//! | `kafka_bench:<row>` (a row of document 002's Table 5 in `faultline kafka-bench`: `baseline`, `compression_lz4`, `compression_snappy`, `batching10ms`, `batching50ms`) | `rate` (rdkafka messages acknowledged per second), `pNN` (send→ack latency), `e2e_pNN` (send→consumed), `paced_e2e_pNN` (send→consumed in the row's paced phase, below saturation), `paced_e2e_added_pNN` (the row's `paced_e2e_pNN` less the baseline row's) |
//! | `broker_bench:<broker>` (`nats`, `rabbitmq`: `faultline broker-bench`, the broker's own tool) | `rate` (messages published per second), `pNN` (a percentile the tool printed) |
//!
//! `kafka_bench` and `broker_bench` figures are not in a run's results: `faultline
//! claims` measures them from the benchmarks' runs ([`crate::claims_kafka`],
//! [`crate::claims_brokers`]), and a run reports them as not measured.
//!
//! Every metric has a [`Dimension`], so a limit in the wrong unit is refused when
//! the gate or claim is read, not when it is judged. A metric the run did not record
//! measures as [`Measured::NotMeasured`] with the reason, never as zero.

use std::collections::BTreeMap;

use faultline_results::{
    broker_bench::Broker,
    histogram::new_histogram,
    quantity::{Dimension, Quantity},
    EncodedHistogram, FaultWindow, ResourceResults, Results, TimePoint, Totals,
};
use hdrhistogram::Histogram;

use crate::error::ReportError;

mod fault_stats;
mod server_stats;

/// The endpoints of the claims suite's CQRS comparison (`cqrs.read_speedup`).
pub const CQRS_READ_MODEL: &str = "order view: read model";
pub const CQRS_WRITE_SIDE: &str = "order view: composed from the write side";

/// Endpoint groups: a name and the endpoint names it covers (`*` matches any text).
pub type Groups = BTreeMap<String, Vec<String>>;

/// Which requests, series or checks a metric is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    Http,
    Endpoint(String),
    Group(String),
    Consistency,
    Checker,
    Server {
        name: String,
        labels: Vec<(String, String)>,
    },
    /// The CQRS comparison's two endpoints.
    Cqrs,
    /// Every fault (`None`), or those on one target.
    Faults(Option<String>),
    /// What the system's processes used, from results' `resources`.
    Resources(ResourceFigure),
    /// A row of `faultline kafka-bench --table5`, by its name in kafka-bench.json.
    KafkaBench(String),
    /// A broker of `faultline broker-bench`.
    BrokerBench(Broker),
    /// Results' `server_histograms` of one name whose labels match.
    ServerHistogram {
        name: String,
        labels: Vec<(String, String)>,
    },
    /// Results' `database`.
    Database,
}

/// A figure of results' `resources` (see `faultline_results::resources`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResourceFigure {
    Cpu,
    Memory,
    Network,
    DiskOps,
}

impl ResourceFigure {
    const ALL: [(&'static str, ResourceFigure); 4] = [
        ("cpu", ResourceFigure::Cpu),
        ("memory", ResourceFigure::Memory),
        ("network", ResourceFigure::Network),
        ("disk_ops", ResourceFigure::DiskOps),
    ];

    fn dimension(self) -> Dimension {
        match self {
            ResourceFigure::Cpu => Dimension::Ratio,
            ResourceFigure::Memory => Dimension::Bytes,
            ResourceFigure::Network => Dimension::ByteRate,
            ResourceFigure::DiskOps => Dimension::Rate,
        }
    }

    /// The figure's points in a run's samples.
    pub fn series(self, resources: &ResourceResults) -> Vec<(f64, f64)> {
        match self {
            ResourceFigure::Cpu => resources.cpu_share(),
            ResourceFigure::Memory => resources.memory(),
            ResourceFigure::Network => resources.network(),
            ResourceFigure::DiskOps => resources.disk_ops(),
        }
    }
}

/// What is computed over the scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// 0–100.
    Percentile(f64),
    Mean,
    Min,
    Max,
    Rate,
    Requests,
    Errors,
    ErrorRate,
    Availability,
    Late,
    Dropped,
    Count,
    Lost,
    Duplicated,
    Inconsistent,
    Checked,
    ConsistentRatio,
    SettleTime,
    Last,
    RecoveryTime,
    ReadyTime,
    ReadSpeedup,
    /// Coefficient of variation of the databases' statement execution times.
    ExecCv,
    /// 0–100, of the end-to-end (send → consumed) latency.
    EndToEnd(f64),
    /// 0–100, of the end-to-end latency at a paced rate below saturation.
    PacedEndToEnd(f64),
    /// 0–100: the paced end-to-end percentile above the baseline row's.
    PacedAddedEndToEnd(f64),
}

/// A parsed metric name.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// As written.
    pub text: String,
    pub scope: Scope,
    pub stat: Stat,
}

/// The result of measuring a metric in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Measured {
    Value(Quantity),
    /// Why there is no number (the run did not record it).
    NotMeasured(String),
}

impl Measured {
    pub fn value(&self) -> Option<Quantity> {
        match self {
            Measured::Value(q) => Some(*q),
            Measured::NotMeasured(_) => None,
        }
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Measured::Value(q) => write!(f, "{q}"),
            Measured::NotMeasured(reason) => write!(f, "not measured in this run ({reason})"),
        }
    }
}

impl Metric {
    /// Parses `SCOPE.STAT`.
    pub fn parse(text: &str) -> Result<Metric, ReportError> {
        let bad = |problem: String| ReportError::spec("metric", text, problem);
        let trimmed = text.trim();
        // The stat follows the last dot, except that dots inside a label block belong
        // to the label values.
        let split_at = match trimmed.rfind('}') {
            Some(close) => trimmed[close..].find('.').map(|i| close + i),
            None => trimmed.rfind('.'),
        };
        let Some(dot) = split_at else {
            return Err(bad("expected SCOPE.STAT, e.g. http.p99".into()));
        };
        let (scope_text, stat_text) = (&trimmed[..dot], &trimmed[dot + 1..]);
        let scope = parse_scope(scope_text).map_err(bad)?;
        let stat = parse_stat(stat_text).map_err(bad)?;
        let allowed = match &scope {
            Scope::Http | Scope::Endpoint(_) | Scope::Group(_) => matches!(
                stat,
                Stat::Percentile(_)
                    | Stat::Mean
                    | Stat::Min
                    | Stat::Max
                    | Stat::Rate
                    | Stat::Requests
                    | Stat::Errors
                    | Stat::ErrorRate
                    | Stat::Availability
                    | Stat::Late
                    | Stat::Dropped
            ),
            Scope::Consistency => matches!(
                stat,
                Stat::Percentile(_) | Stat::Mean | Stat::Min | Stat::Max | Stat::Count
            ),
            Scope::Checker => matches!(
                stat,
                Stat::Lost
                    | Stat::Duplicated
                    | Stat::Inconsistent
                    | Stat::Checked
                    | Stat::ConsistentRatio
                    | Stat::SettleTime
            ),
            Scope::Server { .. } => {
                matches!(stat, Stat::Max | Stat::Mean | Stat::Last | Stat::Rate)
            }
            Scope::Faults(_) => fault_stats::takes(stat),
            Scope::Resources(_) => matches!(stat, Stat::Max | Stat::Mean | Stat::Last),
            Scope::Cqrs => stat == Stat::ReadSpeedup,
            Scope::KafkaBench(_) => matches!(
                stat,
                Stat::Rate
                    | Stat::Percentile(_)
                    | Stat::EndToEnd(_)
                    | Stat::PacedEndToEnd(_)
                    | Stat::PacedAddedEndToEnd(_)
            ),
            Scope::BrokerBench(_) => matches!(stat, Stat::Rate | Stat::Percentile(_)),
            Scope::ServerHistogram { .. } | Scope::Database => server_stats::takes(&scope, stat),
        };
        if !allowed {
            return Err(bad(format!(
                "{stat_text:?} is not a stat of {scope_text:?} (see the metric table in reports/src/metric.rs)"
            )));
        }
        Ok(Metric {
            text: trimmed.to_string(),
            scope,
            stat,
        })
    }

    /// The dimension of the metric's values.
    pub fn dimension(&self) -> Dimension {
        match (&self.scope, self.stat) {
            (Scope::Resources(figure), _) => figure.dimension(),
            (Scope::Server { name, .. }, stat) => {
                let base = if name.ends_with("_bytes") {
                    Dimension::Bytes
                } else if name.ends_with("_seconds") {
                    Dimension::Time
                } else {
                    Dimension::Count
                };
                match (stat, base) {
                    (Stat::Rate, Dimension::Count) => Dimension::Rate,
                    // Seconds per second of a CPU counter is a share of one core.
                    (Stat::Rate, Dimension::Time) => Dimension::Ratio,
                    (_, base) => base,
                }
            }
            (
                _,
                Stat::Percentile(_)
                | Stat::EndToEnd(_)
                | Stat::PacedEndToEnd(_)
                | Stat::PacedAddedEndToEnd(_)
                | Stat::Mean
                | Stat::Min
                | Stat::Max,
            ) => Dimension::Time,
            (_, Stat::SettleTime | Stat::RecoveryTime | Stat::ReadyTime | Stat::Last) => {
                Dimension::Time
            }
            (_, Stat::Rate) => Dimension::Rate,
            (_, Stat::ErrorRate | Stat::Availability | Stat::ConsistentRatio | Stat::ExecCv) => {
                Dimension::Ratio
            }
            _ => Dimension::Count,
        }
    }

    /// Measures the metric in `results`.
    pub fn measure(&self, results: &Results, groups: &Groups) -> Measured {
        match measure(self, results, groups) {
            Ok(value) => Measured::Value(Quantity::new(value, self.dimension())),
            Err(reason) => Measured::NotMeasured(reason),
        }
    }
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    if let Some(name) = text.strip_prefix("endpoint:") {
        return Ok(Scope::Endpoint(name.to_string()));
    }
    if let Some(name) = text.strip_prefix("group:") {
        return Ok(Scope::Group(name.to_string()));
    }
    if let Some(target) = text.strip_prefix("faults:") {
        if target.is_empty() {
            return Err("faults: needs a target, e.g. faults:orders-1".into());
        }
        return Ok(Scope::Faults(Some(target.to_string())));
    }
    if let Some(figure) = text.strip_prefix("resources:") {
        return ResourceFigure::ALL
            .iter()
            .find(|(name, _)| *name == figure)
            .map(|(_, figure)| Scope::Resources(*figure))
            .ok_or(format!(
                "unknown resource {figure:?} (known: cpu, memory, network, disk_ops)"
            ));
    }
    if let Some(row) = text.strip_prefix("kafka_bench:") {
        return Ok(Scope::KafkaBench(row.to_string()));
    }
    if let Some(name) = text.strip_prefix("broker_bench:") {
        return crate::claims_brokers::scope(name);
    }
    if let Some(rest) = text.strip_prefix("server:") {
        let (name, labels) = server_stats::name_and_labels(rest, "server:")?;
        return Ok(Scope::Server { name, labels });
    }
    if let Some(rest) = text.strip_prefix("server_histogram:") {
        let (name, labels) = server_stats::name_and_labels(rest, "server_histogram:")?;
        return Ok(Scope::ServerHistogram { name, labels });
    }
    match text {
        "database" => Ok(Scope::Database),
        "http" => Ok(Scope::Http),
        "consistency" => Ok(Scope::Consistency),
        "checker" => Ok(Scope::Checker),
        "faults" => Ok(Scope::Faults(None)),
        "cqrs" => Ok(Scope::Cqrs),
        other => Err(format!(
            "unknown scope {other:?} (known: http, endpoint:<name>, group:<name>, consistency, checker, server:<name>, server_histogram:<name>, database, resources:<cpu|memory|network|disk_ops>, cqrs, faults, faults:<target>, kafka_bench:<row>, broker_bench:<broker>)"
        )),
    }
}

fn parse_stat(text: &str) -> Result<Stat, String> {
    if let Some(percentile) = text.strip_prefix("paced_e2e_added_") {
        return match parse_stat(percentile)? {
            Stat::Percentile(p) => Ok(Stat::PacedAddedEndToEnd(p)),
            _ => Err(format!(
                "{text:?}: paced_e2e_added_ takes a percentile, e.g. paced_e2e_added_p50"
            )),
        };
    }
    if let Some(percentile) = text.strip_prefix("paced_e2e_") {
        return match parse_stat(percentile)? {
            Stat::Percentile(p) => Ok(Stat::PacedEndToEnd(p)),
            _ => Err(format!(
                "{text:?}: paced_e2e_ takes a percentile, e.g. paced_e2e_p50"
            )),
        };
    }
    if text.starts_with("e2e_added_") {
        // Unpaced rows saturate, so their latency is queueing: what batching adds is
        // only read at a paced rate.
        return Err(format!(
            "{text:?}: what a row adds is measured at a paced rate: paced_{text}"
        ));
    }
    if let Some(percentile) = text.strip_prefix("e2e_") {
        return match parse_stat(percentile)? {
            Stat::Percentile(p) => Ok(Stat::EndToEnd(p)),
            _ => Err(format!("{text:?}: e2e_ takes a percentile, e.g. e2e_p99")),
        };
    }
    if let Some(digits) = text.strip_prefix('p') {
        let number = match digits.split_once('_') {
            Some((whole, fraction)) => format!("{whole}.{fraction}"),
            // p999 is 99.9, p9999 is 99.99.
            None if digits.len() > 2 && digits != "100" => {
                format!("{}.{}", &digits[..2], &digits[2..])
            }
            None => digits.to_string(),
        };
        return match number.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(Stat::Percentile(p)),
            _ => Err(format!("bad percentile {text:?} (e.g. p50, p99, p99_9)")),
        };
    }
    Ok(match text {
        "mean" => Stat::Mean,
        "min" => Stat::Min,
        "max" => Stat::Max,
        "rate" => Stat::Rate,
        "requests" => Stat::Requests,
        "errors" => Stat::Errors,
        "error_rate" => Stat::ErrorRate,
        "availability" => Stat::Availability,
        "late" => Stat::Late,
        "dropped" => Stat::Dropped,
        "count" => Stat::Count,
        "lost" => Stat::Lost,
        "duplicated" => Stat::Duplicated,
        "inconsistent" => Stat::Inconsistent,
        "checked" => Stat::Checked,
        "consistent_ratio" => Stat::ConsistentRatio,
        "settle_time" => Stat::SettleTime,
        "last" => Stat::Last,
        "recovery_time" => Stat::RecoveryTime,
        "ready_time" => Stat::ReadyTime,
        "read_speedup" => Stat::ReadSpeedup,
        "exec_cv" => Stat::ExecCv,
        other => return Err(format!("unknown stat {other:?}")),
    })
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if index == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Request counts and latency of a set of endpoints.
struct RequestSet {
    requests: u64,
    ok: u64,
    errors: u64,
    late: u64,
    dropped: u64,
    rate: f64,
    latency: Histogram<u64>,
}

fn decode(encoded: &EncodedHistogram, what: &str) -> Result<Histogram<u64>, String> {
    encoded
        .decode()
        .map_err(|e| format!("the {what} histogram does not decode: {e}"))
}

fn request_set(scope: &Scope, results: &Results, groups: &Groups) -> Result<RequestSet, String> {
    let totals: Vec<&Totals> = match scope {
        Scope::Http => vec![&results.totals],
        Scope::Endpoint(name) => match results.endpoints.get(name) {
            Some(endpoint) => vec![&endpoint.totals],
            None => return Err(format!("no endpoint {name:?} in this run")),
        },
        Scope::Group(group) => {
            let patterns = groups
                .get(group)
                .ok_or(format!("no endpoint group {group:?} is defined"))?;
            let matched: Vec<_> = results
                .endpoints
                .iter()
                .filter(|(name, _)| patterns.iter().any(|p| glob_matches(p, name)))
                .map(|(_, e)| &e.totals)
                .collect();
            if matched.is_empty() {
                return Err(format!(
                    "no endpoint of group {group:?} ({}) in this run",
                    patterns.join(", ")
                ));
            }
            matched
        }
        _ => return Err("not a set of requests".into()),
    };
    let mut set = RequestSet {
        requests: 0,
        ok: 0,
        errors: 0,
        late: 0,
        dropped: 0,
        rate: 0.0,
        latency: new_histogram(),
    };
    for t in totals {
        set.requests += t.requests;
        set.ok += t.ok;
        set.errors += t.errors.total();
        set.late += t.late;
        set.dropped += t.dropped;
        set.rate += t.achieved_rate;
        set.latency
            .add(decode(&t.latency, "latency")?)
            .map_err(|e| format!("histograms do not add: {e:?}"))?;
    }
    Ok(set)
}

pub(crate) fn latency_stat(histogram: &Histogram<u64>, stat: Stat) -> Result<f64, String> {
    if histogram.is_empty() {
        return Err("no request was answered".into());
    }
    let micros = match stat {
        Stat::Percentile(p) => histogram.value_at_quantile(p / 100.0) as f64,
        Stat::Mean => histogram.mean(),
        Stat::Min => histogram.min() as f64,
        Stat::Max => histogram.max() as f64,
        _ => return Err("not a latency stat".into()),
    };
    Ok(micros / 1e6)
}

fn ratio(part: u64, whole: u64) -> Result<f64, String> {
    if whole == 0 {
        Err("no request was sent".into())
    } else {
        Ok(part as f64 / whole as f64)
    }
}

fn measure(metric: &Metric, results: &Results, groups: &Groups) -> Result<f64, String> {
    let stat = metric.stat;
    match &metric.scope {
        scope @ (Scope::Http | Scope::Endpoint(_) | Scope::Group(_)) => {
            let set = request_set(scope, results, groups)?;
            match stat {
                Stat::Rate => Ok(set.rate),
                Stat::Requests => Ok(set.requests as f64),
                Stat::Errors => Ok(set.errors as f64),
                Stat::Late => Ok(set.late as f64),
                Stat::Dropped => Ok(set.dropped as f64),
                Stat::ErrorRate => ratio(set.errors, set.requests),
                Stat::Availability => ratio(set.ok, set.requests),
                _ => latency_stat(&set.latency, stat),
            }
        }
        Scope::Consistency => {
            let encoded = results
                .consistency_window
                .as_ref()
                .ok_or("the run did not measure the consistency window")?;
            let histogram = decode(encoded, "consistency window")?;
            match stat {
                Stat::Count => Ok(histogram.len() as f64),
                _ => latency_stat(&histogram, stat)
                    .map_err(|_| "no consistency window was observed".to_string()),
            }
        }
        Scope::Checker => {
            let checker = results
                .checker
                .as_ref()
                .ok_or("the consistency checker did not run")?;
            match stat {
                Stat::Lost => Ok(checker.lost as f64),
                Stat::Duplicated => Ok(checker.duplicated as f64),
                Stat::Inconsistent => Ok(checker.inconsistent as f64),
                Stat::Checked => Ok(checker.checked as f64),
                Stat::ConsistentRatio => {
                    let bad = checker.lost + checker.duplicated + checker.inconsistent;
                    ratio(checker.checked.saturating_sub(bad), checker.checked)
                        .map_err(|_| "the checker checked nothing".to_string())
                }
                Stat::SettleTime => checker
                    .settle_secs
                    .ok_or("the checks never all held before the checker's deadline".into()),
                _ => Err("not a checker stat".into()),
            }
        }
        Scope::Server { name, labels } => server_stats::series(results, name, labels, stat),
        Scope::Faults(target) => {
            let on_target =
                |fault: &FaultWindow| target.as_ref().is_none_or(|t| *t == fault.target);
            match stat {
                Stat::Count => Ok(results.faults.iter().filter(|f| on_target(f)).count() as f64),
                Stat::ReadyTime => fault_stats::ready_time(results, on_target),
                Stat::ErrorRate | Stat::Percentile(_) => fault_stats::during(results, on_target, stat),
                _ => longest_recovery(results, on_target),
            }
        }
        Scope::Cqrs => {
            let mean = |name: &str| {
                results
                    .endpoints
                    .get(name)
                    .map(|endpoint| endpoint.totals.latency_summary.mean_us)
                    .filter(|mean| *mean > 0.0)
                    .ok_or(format!("the run did not read {name:?}"))
            };
            Ok(mean(CQRS_WRITE_SIDE)? / mean(CQRS_READ_MODEL)?)
        }
        Scope::Resources(figure) => {
            let resources = results
                .resources
                .as_ref()
                .ok_or("no resources were sampled (a run of `faultline run` samples /proc)")?;
            let values: Vec<f64> = figure.series(resources).into_iter().map(|(_, v)| v).collect();
            let last = values.last().copied().ok_or("fewer than two samples were taken")?;
            match stat {
                Stat::Max => Ok(values.iter().copied().fold(f64::MIN, f64::max)),
                Stat::Mean => Ok(values.iter().sum::<f64>() / values.len() as f64),
                _ => Ok(last),
            }
        }
        Scope::KafkaBench(_) | Scope::BrokerBench(_) => Err(
            "a benchmark's figure: `faultline claims` measures it with `faultline kafka-bench --table5` or `faultline broker-bench`"
                .into(),
        ),
        Scope::ServerHistogram { name, labels } => {
            server_stats::histogram(results, name, labels, stat)
        }
        Scope::Database => server_stats::database(results, stat),
    }
}

/// Points of the series that match, summed at each whole second.
pub fn server_sum(
    results: &Results,
    name: &str,
    labels: &[(String, String)],
) -> Option<BTreeMap<i64, f64>> {
    let mut sum: BTreeMap<i64, f64> = BTreeMap::new();
    let mut any = false;
    for series in &results.server_metrics {
        if series.name == name && has_labels(&series.labels, labels) {
            any = true;
            for (t, v) in &series.points {
                *sum.entry(t.round() as i64).or_default() += v;
            }
        }
    }
    any.then_some(sum)
}

/// Whether a series' labels include every one of `wanted` (extra labels are fine).
pub(crate) fn has_labels(have: &BTreeMap<String, String>, wanted: &[(String, String)]) -> bool {
    (wanted.iter()).all(|(k, v)| have.get(k).is_some_and(|value| value == v))
}

/// Seconds after `metadata.started_at` of a time point; `None` for a timestamp
/// that does not parse.
pub fn offset_of(point: &TimePoint, started_at: &str) -> Option<f64> {
    match point {
        TimePoint::Offset(secs) => Some(*secs),
        TimePoint::At(text) => {
            let at = humantime::parse_rfc3339_weak(text).ok()?;
            let start = humantime::parse_rfc3339_weak(started_at).ok()?;
            Some(match at.duration_since(start) {
                Ok(after) => after.as_secs_f64(),
                Err(before) => -before.duration().as_secs_f64(),
            })
        }
    }
}

/// Unix time (seconds, fractional) of the run's start.
pub fn start_unix(results: &Results) -> Option<f64> {
    let start = humantime::parse_rfc3339_weak(&results.metadata.started_at).ok()?;
    Some(
        start
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64(),
    )
}

/// The longest of [`slo_recoveries`] over the faults `on_target` keeps.
fn longest_recovery(
    results: &Results,
    on_target: impl Fn(&FaultWindow) -> bool,
) -> Result<f64, String> {
    let recoveries = slo_recoveries(results)?;
    let mut longest: Option<f64> = None;
    let mut any = false;
    for (fault, recovery) in results.faults.iter().zip(recoveries) {
        if !on_target(fault) {
            continue;
        }
        any = true;
        match (recovery, &fault.end) {
            (Some(took), _) => longest = Some(longest.map_or(took, |l: f64| l.max(took))),
            (None, Some(_)) => {
                return Err("a fault's effects lasted until the end of the run".into())
            }
            (None, None) => {}
        }
    }
    if !any {
        return Err("no fault was injected on that target".into());
    }
    longest.ok_or("no fault has ended".into())
}

/// For each fault of results, the time from its end to the first whole second that
/// is back to normal: error share at most the larger of 1% and twice the share before
/// the first fault, and p99 at most twice the p99 before the first fault (or 10 ms
/// when nothing ran before it). "Twice" leaves room for the noise of a one-second
/// sample; a second without requests is not normal. `None` for a fault that has not
/// ended, or whose effects lasted until the end of the run.
pub fn slo_recoveries(results: &Results) -> Result<Vec<Option<f64>>, String> {
    if results.faults.is_empty() {
        return Err("no fault was injected".into());
    }
    let start = start_unix(results).ok_or("metadata.started_at does not parse")?;
    let offset = |second: u64| second as f64 - start; // from the exact start, as faults are
    let fault_ranges: Vec<(f64, Option<f64>)> = results
        .faults
        .iter()
        .map(|f| {
            let s = offset_of(&f.start, &results.metadata.started_at).unwrap_or(f64::NAN);
            let e = f
                .end
                .as_ref()
                .and_then(|e| offset_of(e, &results.metadata.started_at));
            (s, e)
        })
        .collect();
    let first_fault = fault_ranges
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| !s.is_nan())
        .fold(f64::INFINITY, f64::min);
    let mut before = new_histogram();
    let (mut before_requests, mut before_errors) = (0u64, 0u64);
    let mut per_second = Vec::new();
    for second in &results.seconds {
        let histogram = decode(&second.latency, "per-second latency")?;
        if offset(second.second) + 1.0 <= first_fault {
            before_requests += second.requests;
            before_errors += second.errors.total();
            let _ = before.add(&histogram);
        }
        per_second.push((offset(second.second), second, histogram));
    }
    let normal_p99 = if before.is_empty() {
        0.010
    } else {
        2.0 * before.value_at_quantile(0.99) as f64 / 1e6
    };
    let normal_errors = if before_requests == 0 {
        0.01
    } else {
        (2.0 * before_errors as f64 / before_requests as f64).max(0.01)
    };
    Ok(fault_ranges
        .iter()
        .map(|(_, end)| {
            let end = (*end)?;
            let (at, _, _) = per_second.iter().find(|(at, second, histogram)| {
                *at + 1.0 > end // from the second [at, at + 1) the fault ended in
                    && second.requests > 0
                    && (second.errors.total() as f64 / second.requests as f64) <= normal_errors
                    && !histogram.is_empty()
                    && histogram.value_at_quantile(0.99) as f64 / 1e6 <= normal_p99
            })?;
            Some((at - end).max(0.0))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn metrics_parse_into_scope_and_stat() {
        let m = Metric::parse("http.p99").unwrap();
        assert_eq!((m.scope, m.stat), (Scope::Http, Stat::Percentile(99.0)));
        let m = Metric::parse("endpoint:GET /v1.2/orders.p99_9").unwrap();
        assert_eq!(m.scope, Scope::Endpoint("GET /v1.2/orders".into()));
        assert_eq!(m.stat, Stat::Percentile(99.9));
        let m = Metric::parse("server:faultline_consumer_lag{topic=\"a.b\"}.max").unwrap();
        assert_eq!(
            m.scope,
            Scope::Server {
                name: "faultline_consumer_lag".into(),
                labels: vec![("topic".into(), "a.b".into())]
            }
        );
        assert_eq!(
            Metric::parse("http.error_rate").unwrap().dimension(),
            Dimension::Ratio
        );
        assert_eq!(
            Metric::parse("checker.lost").unwrap().dimension(),
            Dimension::Count
        );
    }

    #[test]
    fn unknown_scopes_and_stats_are_refused_with_the_known_ones() {
        let error = Metric::parse("htp.p99").unwrap_err().to_string();
        assert!(error.contains("unknown scope"), "{error}");
        let error = Metric::parse("checker.p99").unwrap_err().to_string();
        assert!(error.contains("not a stat of"), "{error}");
        assert!(Metric::parse("http").is_err());
    }

    #[test]
    fn globs_match_endpoint_names() {
        assert!(glob_matches("* /users*", "POST /users/login"));
        assert!(glob_matches("GET /orders", "GET /orders"));
        assert!(!glob_matches("GET /orders", "GET /orders/1"));
        assert!(!glob_matches("* /users*", "GET /orders"));
    }
}
