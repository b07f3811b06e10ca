//! A warm-up before the measured load (`[load] warm_up = "20s"`): the load's own requests
//! or journeys, at the rate it starts with, run first and not recorded.
//!
//! A system's first seconds are often not its steady state: a JVM still compiling its hot
//! paths, caches and plans still cold. A figure stated for the steady state is measured
//! after them, as wrk2 measures after its calibration and JMH after its warm-up
//! iterations. What the warm-up sent is kept in the results' `warm_up`, so a report says
//! that there was one; none of it is in the latencies, counts or rates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_results::{Stage, WarmUp};

use crate::{engine, error::LoadError, journeys, scenario::LoadPlan, schedule::Schedule};

impl LoadPlan {
    /// The plan of a warm-up of `duration` before this one: the same requests or journeys
    /// at the rate this plan starts with ([`start_rate`]), or closed as it is. Its journeys
    /// keep their ledger in `ledger` (so the orders they placed are checked too) and do not
    /// start a fault timeline's clock.
    pub fn warm_up(
        &self,
        duration: Duration,
        ledger: Option<PathBuf>,
    ) -> Result<LoadPlan, LoadError> {
        let schedule = match self.schedule() {
            Schedule::Closed { .. } => Schedule::closed(duration)?,
            Schedule::Open {
                stages,
                arrivals,
                share,
                ..
            } => {
                let rate = start_rate(stages).ok_or(LoadError::InvalidArgument {
                    option: "warm_up",
                    reason: "the load's first stage asks for nothing to warm up with".into(),
                })?;
                Schedule::Open {
                    stages: vec![Stage::constant(duration, rate)],
                    arrivals: *arrivals,
                    share: *share,
                    start_at: None,
                }
            }
        };
        Ok(match self {
            LoadPlan::Requests(config) => {
                let mut config = config.clone();
                config.schedule = schedule;
                LoadPlan::Requests(config)
            }
            LoadPlan::Journeys(config) => {
                let mut config = config.clone();
                config.schedule = schedule;
                // A seed of its own: with the load's, the warm-up's checkouts would reuse
                // the load's idempotency keys (the checker's duplicates).
                config.seed = config.seed.map(|seed| seed ^ WARM_UP_SEED);
                config.ledger = ledger;
                config.clock_started = None;
                LoadPlan::Journeys(config)
            }
        })
    }
}

/// Mixed into a journey load's seed for its warm-up ("warm_up" in ASCII).
const WARM_UP_SEED: u64 = 0x0077_6172_6d5f_7570;

/// The rate a load starts with: its first stage's, or, when that stage ramps up from
/// nothing, the rate it ramps to. `None` when it asks for nothing at all.
pub fn start_rate(stages: &[Stage]) -> Option<f64> {
    let first = stages.first()?;
    let rate = if first.from_rate > 0.0 {
        first.from_rate
    } else {
        first.to_rate
    };
    (rate > 0.0).then_some(rate)
}

/// Runs a warm-up plan (from [`LoadPlan::warm_up`]) and says what it sent; its results
/// are dropped.
pub async fn run(plan: LoadPlan) -> Result<WarmUp, LoadError> {
    let duration_secs = plan.schedule().duration().as_secs_f64();
    let rate = match plan.schedule() {
        Schedule::Open { stages, .. } => start_rate(stages),
        Schedule::Closed { .. } => None,
    };
    let results = match plan {
        LoadPlan::Requests(config) => engine::run(config, |_| {}).await?,
        LoadPlan::Journeys(config) => journeys::run(config, |_| {}).await?,
    };
    Ok(WarmUp {
        duration_secs,
        rate,
        requests: results.totals.requests,
        ok: results.totals.ok,
        ledger: results.write_ledger,
    })
}

/// Where a warm-up keeps the ledger of its journeys, beside the load's own `ledger`:
/// `warm-up-ledger.jsonl` for `ledger.jsonl`.
pub fn ledger_beside(ledger: &Path) -> PathBuf {
    let name = ledger
        .file_name()
        .map_or_else(|| "ledger.jsonl".into(), |n| n.to_string_lossy());
    ledger.with_file_name(format!("warm-up-{name}"))
}

/// Plans and runs the warm-up of `duration` before `plan` (its journeys' ledger beside
/// the plan's own), saying on stderr what it does unless `quiet`.
pub async fn before(plan: &LoadPlan, duration: Duration, quiet: bool) -> Result<WarmUp, LoadError> {
    let ledger = match plan {
        LoadPlan::Journeys(config) => config.ledger.as_deref().map(ledger_beside),
        LoadPlan::Requests(_) => None,
    };
    let warm_up = plan.warm_up(duration, ledger)?;
    if !quiet {
        eprintln!(
            "warm-up: {} before the measured load, not recorded",
            humantime::format_duration(duration)
        );
    }
    let done = run(warm_up).await?;
    if !quiet {
        eprintln!("{}", line(&done));
    }
    Ok(done)
}

/// The line that says a warm-up ran: `warm-up: 20 s at 500/s, 19840 requests (19790
/// ok), not recorded`.
pub fn line(warm_up: &WarmUp) -> String {
    format!("warm-up: {}, not recorded", warm_up.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_rate_is_the_first_stage_or_what_its_ramp_reaches() {
        let s = |from, to| Stage {
            duration: Duration::from_secs(10),
            from_rate: from,
            to_rate: to,
        };
        assert_eq!(start_rate(&[s(500.0, 500.0), s(500.0, 0.0)]), Some(500.0));
        assert_eq!(start_rate(&[s(0.0, 200.0), s(200.0, 200.0)]), Some(200.0));
        assert_eq!(start_rate(&[s(50.0, 10.0)]), Some(50.0));
        assert_eq!(start_rate(&[s(0.0, 0.0), s(0.0, 100.0)]), None);
        assert_eq!(start_rate(&[]), None);
    }

    #[test]
    fn the_warm_up_ledger_lies_beside_the_load_s() {
        assert_eq!(
            ledger_beside(Path::new("/tmp/run/ledger.jsonl")),
            PathBuf::from("/tmp/run/warm-up-ledger.jsonl")
        );
        assert_eq!(
            ledger_beside(Path::new("orders.jsonl")),
            PathBuf::from("warm-up-orders.jsonl")
        );
    }
}
