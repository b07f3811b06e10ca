//! What a capacity search found ("up to what rate does this hold?"), as `results.json`
//! records it under `capacity`.
//!
//! The search itself is the load engine's (`faultline_loadgen::capacity`): it climbs a
//! staircase of rates, one short constant-rate run per step, stops at the first step
//! that breaks a gate, then bisects between the last good and the first bad rate. Each
//! run is one [`CapacityStep`] here; [`CapacityResults::capacity`] is the highest
//! offered rate at which every gate held. Reports draw latency against offered rate
//! from these steps and mark the capacity on it (the knee), so a report regenerated from
//! results alone shows the whole search.

use serde::{Deserialize, Serialize};

use crate::results::Results;

/// A capacity search and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityResults {
    /// The staircase that was asked for.
    pub search: CapacitySearch,
    /// Every step run, in the order run (climb first, then bisection).
    pub steps: Vec<CapacityStep>,
    /// The highest offered rate (per second) at which every gate held; `None` when
    /// even the first step broke one.
    pub capacity: Option<f64>,
    /// Why the search stopped, which says how to read `capacity`.
    pub ended: SearchEnd,
}

/// The staircase as asked: rates climb from `start_rate` by `factor` (or by `step`)
/// up to `max_rate`, each held for `hold_secs`; then `rounds` of bisection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacitySearch {
    pub start_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    pub max_rate: f64,
    pub hold_secs: f64,
    pub rounds: u32,
    /// The gates every step had to hold, as written (`http.p99<120ms`); a dropped
    /// request always breaks a step besides.
    pub gates: Vec<String>,
}

/// Why a capacity search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchEnd {
    /// A step broke a gate and bisection narrowed the knee: `capacity` lies between
    /// the last good and the first bad rate.
    Bracketed,
    /// Every step held up to the maximum rate: `capacity` is a lower bound.
    MaxRate,
    /// The first step already broke a gate: no rate of the staircase held.
    FirstStep,
}

/// Whether a step was part of the climb or of the bisection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPhase {
    Climb,
    Bisect,
}

/// One constant-rate run of the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityStep {
    pub phase: StepPhase,
    /// The rate asked for, per second.
    pub offered_rate: f64,
    /// Requests (or journeys) sent per second of the step.
    pub achieved_rate: f64,
    pub requests: u64,
    /// Failed requests, every class together.
    pub errors: u64,
    /// Requests never sent because no connection was free in time.
    pub dropped: u64,
    /// Latency from the intended send time, microseconds.
    pub p50_us: u64,
    pub p99_us: u64,
    pub passed: bool,
    /// What broke the step (the gate and what was measured); `None` when it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

impl CapacityStep {
    /// The step's figures from its run's results, with the verdict: `broken` names
    /// what broke it, `None` when every gate held.
    pub fn of(
        phase: StepPhase,
        offered_rate: f64,
        results: &Results,
        broken: Option<String>,
    ) -> CapacityStep {
        let totals = &results.totals;
        CapacityStep {
            phase,
            offered_rate,
            achieved_rate: totals.achieved_rate,
            requests: totals.requests,
            errors: totals.errors.total(),
            dropped: totals.dropped,
            p50_us: totals.latency_summary.p50_us,
            p99_us: totals.latency_summary.p99_us,
            passed: broken.is_none(),
            broken,
        }
    }
}

impl CapacityResults {
    /// One line for summaries: `capacity 210/s (every gate held up to it; 230/s broke http.p99 ...)`.
    pub fn headline(&self) -> String {
        let first_bad = self
            .steps
            .iter()
            .filter(|s| !s.passed)
            .min_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
        let broke = first_bad
            .map(|step| {
                format!(
                    "; {}/s broke {}",
                    rate(step.offered_rate),
                    step.broken.as_deref().unwrap_or("a gate")
                )
            })
            .unwrap_or_default();
        match (self.ended, self.capacity) {
            (SearchEnd::MaxRate, Some(capacity)) => format!(
                "capacity at least {}/s: every gate held up to the maximum rate",
                rate(capacity)
            ),
            (_, Some(capacity)) => format!(
                "capacity {}/s: every gate held up to it{broke}",
                rate(capacity)
            ),
            (_, None) => format!(
                "no capacity found: the first step ({}/s) already broke a gate{broke}",
                rate(self.search.start_rate)
            ),
        }
    }
}

/// A rate as people read it: whole numbers without decimals.
fn rate(value: f64) -> String {
    if value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}
