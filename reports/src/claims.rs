//! Claims: the figures the architecture documents state, held against a run.
//!
//! `scenarios/claims.toml` lists every measurable figure of the documents with its
//! source (document, section, the quoted sentence or row), the metric of the shared
//! vocabulary ([`crate::metric`]) it maps onto, a comparator and value, and the
//! hardware the document states. Its `[groups]` table maps the documents' services
//! onto endpoint names, explicitly, so `group:users.p99` is the merged latency of the
//! endpoints that stand for the "User Service". The file is compiled into the binary
//! ([`BUILTIN_CLAIMS`]) and can be replaced with `--claims FILE`.
//!
//! Nothing measured is typed by hand: a claim is evaluated only on what the run
//! recorded, and says "not measured in this run" otherwise.
//!
//! A run that searched for its capacity (`[load.find_max]`) answers the claims this
//! machine cannot reach: a claim stated at a rate the run did not reach, or a rate
//! claim above what it reached, is "holds up to X/s here (document: Y/s on Z)" when
//! the claim's figure held at the capacity step, rather than "not applicable" or a
//! bare "fail". A server counter's rate (`server:<name>.rate`, e.g. the events a
//! consumer took off Kafka) is read over the step at capacity, so its capacity is its
//! own rate there, in its own unit, not the search's offered rate. `family` names the
//! claims scenario (`scenarios/claims/<family>.toml`) whose run answers the claim in
//! `faultline claims`.
//!
//! A claim of a range ("increases latency by 50-100ms") is written `comparator =
//! "between"`, `value = "50ms..100ms"`, and holds only within both ends.

use std::path::Path;

use faultline_results::{error::read_text, gates::line_of, quantity::Quantity, Results};
use serde::{Deserialize, Serialize};

use crate::{
    error::ReportError,
    gate::{Comparator, Gate},
    metric::{Groups, Measured, Scope, Stat},
};

/// The comparator of a claim of a range, `value = "LOW..HIGH"`.
const RANGE: &str = "between";

/// The claims file of this repository, compiled in.
pub const BUILTIN_CLAIMS: &str = include_str!("../../scenarios/claims.toml");

/// One claim as written in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaim {
    pub id: String,
    /// File name under the documents' folder.
    pub document: String,
    /// Table or section the figure is in.
    pub section: String,
    /// The sentence or table row, quoted.
    pub quote: String,
    /// What kind of figure: throughput, latency, consistency, availability, recovery.
    pub category: String,
    /// Metric of the vocabulary; absent when the figure maps onto nothing faultline
    /// measures (then `not_mapped` says why).
    pub metric: Option<String>,
    /// `<`, `<=`, `>`, `>=`, or `between` for a range.
    pub comparator: Option<String>,
    /// Value with unit, as the document gives it (`120ms`, `2500/s`, `99.9%`); a range
    /// is `LOW..HIGH` (`50ms..100ms`).
    pub value: Option<String>,
    /// A condition on the run for the claim to apply, e.g. `http.rate>=1000/s`
    /// for a figure stated "at 1K req/s".
    pub condition: Option<String>,
    /// The hardware the document states, or "not stated".
    pub hardware: String,
    pub note: Option<String>,
    pub not_mapped: Option<String>,
    /// The claims scenario whose run answers it (`faultline claims`); absent when no
    /// scenario of the suite does.
    pub family: Option<String>,
}

/// A claim checked for consistency with the vocabulary.
#[derive(Debug, Clone)]
pub struct Claim {
    pub raw: RawClaim,
    /// The figure as a gate (`None` when not mapped); a range's lower end.
    pub gate: Option<Gate>,
    /// A range's upper end (`comparator = "between"`).
    pub upper: Option<Gate>,
    pub condition: Option<Gate>,
    pub line: usize,
}

/// The claims file: endpoint groups and claims.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub groups: Groups,
    pub claims: Vec<Claim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Groups,
    #[serde(default)]
    claim: Vec<toml::Spanned<RawClaim>>,
}

impl Claims {
    /// The compiled-in claims of this repository.
    pub fn builtin() -> Result<Claims, ReportError> {
        Claims::parse(BUILTIN_CLAIMS, Path::new("scenarios/claims.toml"))
    }

    /// Reads a claims file.
    pub fn read(path: &Path) -> Result<Claims, ReportError> {
        let text = read_text(path, "reading claims from")?;
        Claims::parse(&text, path)
    }

    /// Parses claims text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Claims, ReportError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ReportError::BadToml {
            path: path.into(),
            problem: e.to_string(),
        })?;
        let mut claims = Vec::new();
        for spanned in raw.claim {
            let line = line_of(text, spanned.span().start);
            let claim = spanned.into_inner();
            let bad = |problem: String| ReportError::BadToml {
                path: path.into(),
                problem: format!("claim {:?} at line {line}: {problem}", claim.id),
            };
            let mut upper = None;
            let gate = match (&claim.metric, &claim.comparator, &claim.value) {
                (Some(metric), Some(comparator), Some(value)) if comparator == RANGE => {
                    let (low, high) = value.split_once("..").ok_or_else(|| {
                        bad(format!(
                            "a range's value is LOW..HIGH, e.g. 50ms..100ms; not {value:?}"
                        ))
                    })?;
                    let origin = format!("{}:{line}", path.display());
                    let bound = |comparator, limit: &str| {
                        Gate::new(metric, comparator, limit.trim(), origin.clone())
                            .map_err(|e| bad(e.to_string()))
                    };
                    let (low, high) = (
                        bound(Comparator::AtLeast, low)?,
                        bound(Comparator::AtMost, high)?,
                    );
                    if low.limit.value > high.limit.value {
                        return Err(bad(format!("the range {value:?} ends below its start")));
                    }
                    upper = Some(high);
                    Some(low)
                }
                (Some(metric), Some(comparator), Some(value)) => {
                    let comparator = Comparator::parse(comparator).ok_or_else(|| {
                        bad(format!(
                            "comparator {comparator:?} is not one of < <= > >= {RANGE}"
                        ))
                    })?;
                    Some(
                        Gate::new(
                            metric,
                            comparator,
                            value,
                            format!("{}:{line}", path.display()),
                        )
                        .map_err(|e| bad(e.to_string()))?,
                    )
                }
                (None, None, _) if claim.not_mapped.is_some() => None,
                _ => {
                    return Err(bad(
                        "give metric, comparator and value, or not_mapped with the reason".into(),
                    ))
                }
            };
            let condition = claim
                .condition
                .as_deref()
                .map(|c| Gate::parse_expression(c, "condition"))
                .transpose()
                .map_err(|e| bad(e.to_string()))?;
            if let Some(gate) = gate.iter().chain(condition.iter()).find(|g| {
                matches!(&g.metric.scope, crate::metric::Scope::Group(name) if !raw.groups.contains_key(name))
            }) {
                return Err(bad(format!("{} names a group missing from [groups]", gate.metric.text)));
            }
            claims.push(Claim {
                raw: claim,
                gate,
                upper,
                condition,
                line,
            });
        }
        Ok(Claims {
            groups: raw.groups,
            claims,
        })
    }

    /// Evaluates every claim on `results`.
    pub fn evaluate(&self, results: &Results) -> Vec<ClaimResult> {
        self.claims
            .iter()
            .map(|claim| claim.evaluate(results, &self.groups))
            .collect()
    }
}

/// How a claim fared.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimStatus {
    Pass,
    Fail,
    /// The run did not record the metric (the reason).
    NotMeasured(String),
    /// The run was not under the claim's condition (what the run had).
    NotApplicable(String),
    /// No metric of the vocabulary corresponds (the reason from the file).
    NotMapped(String),
    /// The run's capacity is below the claim's rate, and the claim's figure held up to
    /// it: "holds up to X/s here (document: Y/s on Z)".
    HoldsUpTo(String),
}

impl ClaimStatus {
    pub fn label(&self) -> &'static str {
        match self {
            ClaimStatus::Pass => "pass",
            ClaimStatus::Fail => "fail",
            ClaimStatus::NotMeasured(_) => "not measured in this run",
            ClaimStatus::NotApplicable(_) => "not applicable to this run",
            ClaimStatus::NotMapped(_) => "not mapped",
            ClaimStatus::HoldsUpTo(_) => "holds up to the capacity here",
        }
    }

    /// The reason or the capacity sentence that goes with the verdict, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ClaimStatus::Pass | ClaimStatus::Fail => None,
            ClaimStatus::NotMeasured(text)
            | ClaimStatus::NotApplicable(text)
            | ClaimStatus::NotMapped(text)
            | ClaimStatus::HoldsUpTo(text) => Some(text),
        }
    }
}

/// One claim held against a run.
#[derive(Debug, Clone)]
pub struct ClaimResult {
    pub claim: Claim,
    /// The claim's figure, e.g. `≤ 120 ms` (empty when not mapped).
    pub claimed: String,
    pub measured: Option<Quantity>,
    pub status: ClaimStatus,
    /// The capacity the run's search found (offered rate per second), when it
    /// searched one for the scope the claim is about; for a server counter's rate, that
    /// rate at the step at capacity.
    pub capacity: Option<f64>,
}

impl Claim {
    /// The claim's figure as the report prints it, e.g. `≤ 120 ms`.
    pub fn claimed(&self) -> String {
        match (&self.gate, &self.upper) {
            (Some(low), Some(high)) => format!("{} to {}", low.limit, high.limit),
            (Some(gate), None) => format!("{} {}", gate.comparator.symbol(), gate.limit),
            (None, _) => self.raw.value.clone().unwrap_or_default(),
        }
    }

    /// Whether `value` meets the claim's figure: its gate, and a range's upper end.
    pub fn holds(&self, value: f64) -> bool {
        [&self.gate, &self.upper]
            .into_iter()
            .flatten()
            .all(|gate| gate.comparator.holds(value, gate.limit.value))
    }

    /// The claim with no figure: not mapped (the file's reason) when it maps onto
    /// nothing, else not measured for `reason`.
    pub fn unanswered(&self, reason: String) -> ClaimResult {
        let status = match (&self.gate, &self.raw.not_mapped) {
            (None, not_mapped) => ClaimStatus::NotMapped(not_mapped.clone().unwrap_or_default()),
            (Some(_), _) => ClaimStatus::NotMeasured(reason),
        };
        ClaimResult {
            claim: self.clone(),
            claimed: self.claimed(),
            measured: None,
            status,
            capacity: None,
        }
    }

    /// Measures the claim's metric (if its condition holds) and compares.
    pub fn evaluate(&self, results: &Results, groups: &Groups) -> ClaimResult {
        let Some(gate) = &self.gate else {
            return self.unanswered(String::new());
        };
        // A search that loaded the claim's scope answers a rate the run did not reach;
        // `capacity` is what it found (none when its first step already broke).
        let searched = search_loaded(results, &gate.metric, groups);
        let capacity = searched
            .then(|| results.capacity.as_ref()?.capacity)
            .flatten();
        let result = |measured, status, capacity| ClaimResult {
            claim: self.clone(),
            claimed: self.claimed(),
            measured,
            status,
            capacity,
        };
        // The rate the claim is stated at, and what the run reached of it, when the
        // run stayed below it.
        let mut unreached: Option<(&Gate, Quantity)> = None;
        if let Some(condition) = &self.condition {
            match condition.metric.measure(results, groups) {
                Measured::NotMeasured(reason) => {
                    return result(None, ClaimStatus::NotMeasured(reason), capacity)
                }
                Measured::Value(value) => {
                    if !condition
                        .comparator
                        .holds(value.value, condition.limit.value)
                    {
                        if !searched {
                            return result(
                                None,
                                ClaimStatus::NotApplicable(format!(
                                    "the claim is stated for {}; this run had {} = {value}",
                                    condition.name(),
                                    condition.metric.text
                                )),
                                capacity,
                            );
                        }
                        unreached = Some((condition, value));
                    }
                }
            }
        }
        let value = match gate.metric.measure(results, groups) {
            Measured::NotMeasured(reason) => {
                return result(None, ClaimStatus::NotMeasured(reason), capacity)
            }
            Measured::Value(value) => value,
        };
        let holds = self.holds(value.value);
        // A rate claim the run fell short of, with a capacity searched: the run's rate
        // at capacity is what this machine reached, and every gate held up to it.
        let rate_short = !holds && capacity.is_some() && gate.metric.stat == Stat::Rate;
        if rate_short {
            unreached = Some((gate, value));
        }
        let status = match unreached {
            // Below the stated rate the figure held (or the rate is the figure).
            Some((stated, reached)) if holds || rate_short => ClaimStatus::HoldsUpTo(format!(
                "holds up to {reached} here (document: {} on {}){}",
                stated.limit,
                self.raw.hardware,
                capacity
                    .map(|c| format!("; capacity search: {}/s offered", trim_rate(c)))
                    .unwrap_or_default(),
            )),
            _ if holds => ClaimStatus::Pass,
            _ => ClaimStatus::Fail,
        };
        // A server counter was read over the step at capacity: its rate there is the
        // capacity of what it counts (events/s, where the search offered journeys/s).
        let counted =
            matches!(gate.metric.scope, Scope::Server { .. }) && gate.metric.stat == Stat::Rate;
        let capacity = match capacity {
            Some(_) if counted => Some(value.value),
            other => other,
        };
        result(Some(value), status, capacity)
    }
}

/// Whether the run searched its capacity with load on the claim's scope (its
/// endpoints answered requests, the consistency window was observed, a service's
/// histogram observed events, a counter rose during the step at capacity or the
/// databases ran statements); a claim about what the
/// search did not load is evaluated as any other.
fn search_loaded(results: &Results, metric: &crate::metric::Metric, groups: &Groups) -> bool {
    if results.capacity.is_none() {
        return false;
    }
    let stat = match metric.scope {
        Scope::Http | Scope::Endpoint(_) | Scope::Group(_) => Stat::Requests,
        Scope::Consistency | Scope::ServerHistogram { .. } | Scope::Database => Stat::Count,
        // A counter's rate is read over the step at capacity: loaded if it rose there.
        Scope::Server { .. } if metric.stat == Stat::Rate => Stat::Rate,
        Scope::Checker
        | Scope::Server { .. }
        | Scope::Faults(_)
        | Scope::Resources(_)
        | Scope::Cqrs
        | Scope::KafkaBench(_)
        | Scope::BrokerBench(_) => return false,
    };
    crate::metric::Metric {
        text: metric.text.clone(),
        scope: metric.scope.clone(),
        stat,
    }
    .measure(results, groups)
    .value()
    .is_some_and(|count| count.value > 0.0)
}

/// A rate without needless decimals: `212/s`, `212.5/s`.
fn trim_rate(rate: f64) -> String {
    Quantity {
        value: rate,
        dimension: faultline_results::quantity::Dimension::Count,
    }
    .to_string()
}

/// The run's hardware in words, from its metadata.
pub fn run_hardware(results: &Results) -> String {
    let machine = &results.metadata.machine;
    let mut parts = vec![format!("{} cores", machine.cores)];
    if machine.memory_bytes > 0 {
        parts.push(format!(
            "{:.1} GiB RAM",
            machine.memory_bytes as f64 / (1024.0 * 1024.0 * 1024.0)
        ));
    }
    if let Some(cpu) = &machine.cpu_model {
        parts.push(cpu.clone());
    }
    if let Some(os) = &machine.os {
        parts.push(os.clone());
    }
    let mut text = parts.join(", ");
    if results.metadata.workers > 1 {
        text.push_str(&format!(
            " (first of {} load workers)",
            results.metadata.workers
        ));
    }
    text.push_str("; load generator and system on the same machine");
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_builtin_claims_file_parses_and_maps_onto_the_vocabulary() {
        let claims = Claims::builtin().unwrap();
        assert!(claims.claims.len() >= 30, "{}", claims.claims.len());
        let mapped = claims.claims.iter().filter(|c| c.gate.is_some()).count();
        assert!(mapped >= 20, "{mapped} mapped");
        for claim in &claims.claims {
            assert!(!claim.raw.quote.is_empty(), "{}", claim.raw.id);
            assert!(!claim.raw.hardware.is_empty(), "{}", claim.raw.id);
        }
    }

    #[test]
    fn a_claim_without_metric_or_reason_is_refused_with_its_line() {
        let text = "[[claim]]\nid = \"x\"\ndocument = \"d\"\nsection = \"s\"\nquote = \"q\"\ncategory = \"latency\"\nhardware = \"not stated\"\n";
        let error = Claims::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 1") && error.contains("not_mapped"),
            "{error}"
        );
    }
}
