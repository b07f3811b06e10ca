//! Capacity search ("up to what rate does this hold?"): `faultline load --find-max` and
//! a scenario's `[load.find_max]`.
//!
//! A [`Staircase`] says which rates to try: from a start rate up by a factor (or a fixed
//! step) to a maximum, each held for a while. [`find_max`] runs one constant-rate load
//! per step with the plan's own requests or journeys (the engine, not a loop of its
//! own), and judges each step: a dropped request always breaks it, and the caller's
//! judge holds it against the SLO gates. Gates are judged by `faultline-reports`,
//! which this crate does not depend on, hence a judge passed in (`faultline load` and
//! the scenario crate pass the reports' gates). The climb stops at the first broken
//! step; bisection then narrows the knee between the last good and the first bad rate
//! for the set rounds. What was found goes into results as
//! `faultline_results::CapacityResults`; the rest of the returned results are those of
//! the step at capacity (or of the first step when none held), so the usual report and
//! summary show the load at the knee.
//!
//! ```toml
//! [load.find_max]
//! start = 50          # requests (or journeys) per second of the first step
//! factor = 2          # or step = 100: add instead of multiply
//! max = 5000
//! hold = "2s"
//! rounds = 3
//! gates = ["http.p99<120ms", "http.error_rate<0.1%"]
//! ```

use std::time::Duration;

use faultline_results::{
    quantity::parse_duration, Arrivals, CapacityResults, CapacitySearch, CapacityStep, Results,
    SearchEnd, StepPhase,
};
use serde::Deserialize;

use crate::{
    engine, error::LoadError, journeys, scenario::LoadPlan, schedule::Schedule,
    summary::format_micros,
};

/// Rates a search tries: `start`, then `start × factor` (or `start + step`), ... up to
/// `max` (the last step is `max` itself when the climb would pass it).
#[derive(Debug, Clone, PartialEq)]
pub struct Staircase {
    pub start: f64,
    pub climb: Climb,
    pub max: f64,
    /// How long each step runs.
    pub hold: Duration,
    /// Bisection rounds after the first broken step.
    pub rounds: u32,
}

/// How the rate grows from one step to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Climb {
    Factor(f64),
    Step(f64),
}

/// The defaults of a staircase's optional parts.
pub const DEFAULT_FACTOR: f64 = 2.0;
pub const DEFAULT_HOLD: Duration = Duration::from_secs(5);
pub const DEFAULT_ROUNDS: u32 = 3;

/// The `[load.find_max]` table as written (see the module's example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindMaxSpec {
    pub start: f64,
    pub factor: Option<f64>,
    pub step: Option<f64>,
    pub max: f64,
    /// A duration (`"2s"`); 5 s when absent.
    pub hold: Option<String>,
    pub rounds: Option<u32>,
    /// SLO gates every step must hold, as `--gate` writes them.
    #[serde(default)]
    pub gates: Vec<String>,
}

impl FindMaxSpec {
    /// The staircase the table asks for, checked; errors name the key.
    pub fn staircase(&self) -> Result<Staircase, String> {
        let hold = match &self.hold {
            Some(text) => parse_duration(text).map_err(|e| format!("load.find_max.hold: {e}"))?,
            None => DEFAULT_HOLD,
        };
        let climb = match (self.factor, self.step) {
            (Some(_), Some(_)) => return Err("load.find_max: give factor or step, not both".into()),
            (_, Some(step)) => Climb::Step(step),
            (factor, None) => Climb::Factor(factor.unwrap_or(DEFAULT_FACTOR)),
        };
        let staircase = Staircase {
            start: self.start,
            climb,
            max: self.max,
            hold,
            rounds: self.rounds.unwrap_or(DEFAULT_ROUNDS),
        };
        staircase
            .check()
            .map_err(|e| format!("load.find_max.{e}"))?;
        Ok(staircase)
    }
}

impl Staircase {
    /// Checks the numbers; an error starts with the key at fault (`start`, `factor`,
    /// `step`, `max`, `hold`), so the CLI and the scenario file can each name theirs.
    pub fn check(&self) -> Result<(), String> {
        let positive = |value: f64| value.is_finite() && value > 0.0;
        if !positive(self.start) {
            return Err(format!("start: {} is not a positive rate", self.start));
        }
        match self.climb {
            Climb::Factor(factor) if !(factor.is_finite() && factor > 1.0) => {
                return Err(format!(
                    "factor: {factor} must be above 1, or no step climbs"
                ));
            }
            Climb::Step(step) if !positive(step) => {
                return Err(format!("step: {step} is not a positive rate"));
            }
            _ => {}
        }
        if !(self.max.is_finite() && self.max >= self.start) {
            return Err(format!(
                "max: {} must be at least the start rate {}",
                self.max, self.start
            ));
        }
        if self.hold.is_zero() {
            return Err("hold: a step must last longer than zero".into());
        }
        Ok(())
    }

    /// The rates of the climb, in order.
    pub fn climb_rates(&self) -> Vec<f64> {
        let mut rates = vec![self.start];
        let mut rate = self.start;
        while rate < self.max {
            rate = match self.climb {
                Climb::Factor(factor) => rate * factor,
                Climb::Step(step) => rate + step,
            }
            .min(self.max);
            rates.push(rate);
        }
        rates
    }

    /// The staircase as results record it, with the gates as written.
    pub fn recorded(&self, gates: Vec<String>) -> CapacitySearch {
        let (factor, step) = match self.climb {
            Climb::Factor(factor) => (Some(factor), None),
            Climb::Step(step) => (None, Some(step)),
        };
        CapacitySearch {
            start_rate: self.start,
            factor,
            step,
            max_rate: self.max,
            hold_secs: self.hold.as_secs_f64(),
            rounds: self.rounds,
            gates,
        }
    }
}

/// Judges one step's results: `Some(what broke)` when a gate broke, `None` when
/// every gate held.
pub trait StepJudge {
    fn broken(&self, results: &Results) -> Option<String>;
}

impl<F: Fn(&Results) -> Option<String>> StepJudge for F {
    fn broken(&self, results: &Results) -> Option<String> {
        self(results)
    }
}

/// Runs the search: the climb, then bisection. `gates` are recorded as written;
/// `judge` holds each step against them; `on_step` hears of each step once judged (the
/// CLI prints it on stderr). Returns the results of the step at capacity with the whole
/// search in `capacity`.
pub async fn find_max(
    plan: &LoadPlan,
    staircase: &Staircase,
    gates: Vec<String>,
    judge: &impl StepJudge,
    mut on_step: impl FnMut(&CapacityStep),
) -> Result<Results, LoadError> {
    let mut steps = Vec::new();
    // The highest rate that held, with its results; the lowest that broke.
    let mut good: Option<(f64, Results)> = None;
    let mut bad: Option<(f64, Results)> = None;
    let run = |rate: f64, phase: StepPhase| run_step(plan, staircase.hold, rate, phase, judge);
    for rate in staircase.climb_rates() {
        let (step, results) = run(rate, StepPhase::Climb).await?;
        on_step(&step);
        let passed = step.passed;
        steps.push(step);
        if passed {
            good = Some((rate, results));
        } else {
            bad = Some((rate, results));
            break;
        }
    }
    for _ in 0..staircase.rounds {
        let (Some((low, _)), Some((high, _))) = (&good, &bad) else {
            break;
        };
        let rate = (low + high) / 2.0;
        let (step, results) = run(rate, StepPhase::Bisect).await?;
        on_step(&step);
        if step.passed {
            good = Some((rate, results));
        } else {
            bad = Some((rate, results));
        }
        steps.push(step);
    }
    let ended = match (&good, &bad) {
        (Some(_), Some(_)) => SearchEnd::Bracketed,
        (Some(_), None) => SearchEnd::MaxRate,
        (None, _) => SearchEnd::FirstStep,
    };
    let capacity = good.as_ref().map(|(rate, _)| *rate);
    let Some((_, mut results)) = good.or(bad) else {
        // climb_rates() always holds the start rate, so a step ran.
        return Err(LoadError::InvalidArgument {
            option: "--find-max",
            reason: "the staircase has no step".into(),
        });
    };
    results.capacity = Some(CapacityResults {
        search: staircase.recorded(gates),
        steps,
        capacity,
        ended,
    });
    Ok(results)
}

/// One step: the plan at `rate` for `hold`, judged.
async fn run_step(
    plan: &LoadPlan,
    hold: Duration,
    rate: f64,
    phase: StepPhase,
    judge: &impl StepJudge,
) -> Result<(CapacityStep, Results), LoadError> {
    let schedule = Schedule::constant(rate, hold, arrivals_of(plan.schedule()))?;
    let results = match plan.clone() {
        LoadPlan::Requests(mut config) => {
            config.schedule = schedule;
            engine::run(config, |_| {}).await?
        }
        LoadPlan::Journeys(mut config) => {
            config.schedule = schedule;
            // Each step its own seed (no two steps share a rate): a seed repeated would
            // repeat the orders' idempotency keys, which the checker counts as duplicates.
            config.seed = config.seed.map(|seed| seed ^ rate.to_bits());
            journeys::run(config, |_| {}).await?
        }
    };
    // A dropped request is load the generator could not even send: never a held step.
    let dropped = results.totals.dropped;
    let broken = if dropped > 0 {
        Some(format!("{dropped} requests dropped"))
    } else {
        judge.broken(&results)
    };
    Ok((CapacityStep::of(phase, rate, &results, broken), results))
}

/// The plan's arrivals (uniform or Poisson), which every step keeps.
fn arrivals_of(schedule: &Schedule) -> Arrivals {
    match schedule {
        Schedule::Open { arrivals, .. } => *arrivals,
        Schedule::Closed { .. } => Arrivals::Uniform,
    }
}

/// One line per step for stderr: `step 4 bisect  300/s offered  296.1/s achieved  p50
/// 1.21 ms  p99 310.2 ms  0 errors  0 dropped  broke http.p99 ...`.
pub fn step_line(number: usize, step: &CapacityStep) -> String {
    let phase = match step.phase {
        StepPhase::Climb => "climb",
        StepPhase::Bisect => "bisect",
    };
    let verdict = match &step.broken {
        None => "held".to_string(),
        Some(broken) => format!("broke {broken}"),
    };
    format!(
        "step {number} {phase:<6} {:>9.1}/s offered {:>9.1}/s achieved  p50 {}  p99 {}  {} errors  {} dropped  {verdict}",
        step.offered_rate,
        step.achieved_rate,
        format_micros(step.p50_us),
        format_micros(step.p99_us),
        step.errors,
        step.dropped,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn staircase(climb: Climb, max: f64) -> Staircase {
        Staircase {
            start: 50.0,
            climb,
            max,
            hold: Duration::from_secs(1),
            rounds: 3,
        }
    }

    #[test]
    fn the_climb_multiplies_or_adds_and_ends_on_the_maximum() {
        assert_eq!(
            staircase(Climb::Factor(2.0), 300.0).climb_rates(),
            [50.0, 100.0, 200.0, 300.0]
        );
        assert_eq!(
            staircase(Climb::Step(100.0), 250.0).climb_rates(),
            [50.0, 150.0, 250.0]
        );
        assert_eq!(staircase(Climb::Step(1.0), 50.0).climb_rates(), [50.0]);
    }

    #[test]
    fn a_staircase_that_cannot_climb_is_refused_naming_the_key() {
        for (bad, key) in [
            (staircase(Climb::Factor(1.0), 100.0), "factor"),
            (staircase(Climb::Step(0.0), 100.0), "step"),
            (staircase(Climb::Factor(2.0), 10.0), "max"),
        ] {
            let error = bad.check().unwrap_err();
            assert!(error.starts_with(key), "{error}");
        }
        let spec = FindMaxSpec {
            start: 10.0,
            factor: Some(2.0),
            step: Some(5.0),
            max: 100.0,
            hold: None,
            rounds: None,
            gates: Vec::new(),
        };
        assert!(spec.staircase().unwrap_err().contains("not both"));
        let spec = FindMaxSpec {
            step: None,
            hold: Some("soon".into()),
            ..spec
        };
        assert!(spec.staircase().unwrap_err().contains("load.find_max.hold"));
    }
}
