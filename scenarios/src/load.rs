//! `faultline load` as the binary runs it: the command line's load, or a scenario
//! file's `[load]` read through the one [`Scenario`] model, and a capacity search
//! judged by the reports' gates.
//!
//! `faultline_loadgen::cli` owns the arguments and runs a plan ([`cli::run_plan`]); it
//! cannot read a whole scenario file nor judge gates, since it depends on neither
//! `faultline-scenarios` nor `faultline-reports`. This module is the glue: it checks a
//! `--scenario` file whole, as `faultline run` does (every problem with its line, exit
//! 2), plans its `[load]` against the URL given or the file's target, parses the SLO
//! gates of `--find-max` (`--gate`) or `[load.find_max]`, and hands loadgen a judge
//! that holds each step of the search against them.

use std::path::Path;

use faultline_loadgen::{
    capacity::StepJudge,
    cli::{self, LoadArgs, LoadRun, ScenarioExtras},
    LoadError,
};
use faultline_reports::{metric::Groups, Gate};
use faultline_results::{Results, RunInfo};

use crate::scenario::{Scenario, ScenarioError};

/// Runs `faultline load`: checks everything, runs the load or the capacity search,
/// writes results if asked and prints the summary. Bad input is a usage error
/// ([`LoadError::is_usage`], exit 2) naming what and where.
pub async fn run(args: LoadArgs, run_info: RunInfo) -> Result<Results, LoadError> {
    let (run, gates) = match &args.scenario {
        Some(path) => plan_scenario(&args, path, run_info)?,
        None => plan_command_line(&args, run_info)?,
    };
    let written = run
        .search
        .as_ref()
        .map(|(_, written)| written.clone())
        .unwrap_or_default();
    cli::run_plan(run, &args, &SloJudge { gates, written }).await
}

/// The command line's plan, with `--find-max`'s staircase and `--gate`s.
fn plan_command_line(
    args: &LoadArgs,
    run_info: RunInfo,
) -> Result<(LoadRun, Vec<Gate>), LoadError> {
    let plan = args.to_plan(run_info)?;
    let gates = args
        .gates
        .iter()
        .map(|text| {
            Gate::parse_expression(text, "--gate").map_err(|e| LoadError::InvalidArgument {
                option: "--gate",
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let search = args
        .staircase()?
        .map(|staircase| (staircase, args.gates.clone()));
    let run = LoadRun {
        plan,
        search,
        scenario: None,
    };
    Ok((run, gates))
}

/// A scenario file's plan: the file checked whole, its `[load]` planned against the
/// command line's URL (or the file's target), the command line's connections and TLS
/// options applied, and its `[load.find_max]` search with its gates.
fn plan_scenario(
    args: &LoadArgs,
    path: &Path,
    mut run_info: RunInfo,
) -> Result<(LoadRun, Vec<Gate>), LoadError> {
    let checked = Scenario::read(path)
        .and_then(|scenario| scenario.check())
        .map_err(usage_error)?;
    let scenario = checked.scenario;
    run_info.scenario = Some(scenario.name.clone());
    let mut plan =
        scenario
            .load
            .plan(args.url.as_deref(), run_info, &path.display().to_string())?;
    args.override_scenario_plan(&mut plan, scenario.load.connections.is_some());
    let bad = |reason: String| LoadError::Scenario {
        path: path.display().to_string(),
        reason,
    };
    let search = match (
        &scenario.load.find_max,
        scenario.load.staircase().map_err(bad)?,
    ) {
        (Some(spec), Some(staircase)) => Some((staircase, spec.gates.clone())),
        _ => None,
    };
    let run = LoadRun {
        plan,
        search,
        scenario: Some(ScenarioExtras {
            gates: scenario.gates,
            text: scenario.text,
            warm_up: scenario.load.warm_up,
        }),
    };
    Ok((run, checked.capacity_gates))
}

/// A scenario that cannot run, as loadgen's usage error (exit 2), every problem
/// listed with its line.
fn usage_error(error: ScenarioError) -> LoadError {
    let reason = error
        .problems
        .iter()
        .map(|problem| problem.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    LoadError::Scenario {
        path: error.path.display().to_string(),
        reason,
    }
}

/// Holds a capacity search's step against the SLO gates: the first gate that breaks,
/// with what was measured, breaks the step.
pub(crate) struct SloJudge {
    pub(crate) gates: Vec<Gate>,
    /// The same gates as written, which results record.
    pub(crate) written: Vec<String>,
}

impl StepJudge for SloJudge {
    fn broken(&self, results: &Results) -> Option<String> {
        // Gates of a search name plain metrics; endpoint groups are the claims' and
        // play no part here.
        let groups = Groups::new();
        self.gates
            .iter()
            .map(|gate| gate.judge(results, &groups))
            .find(|judged| !judged.passed)
            .map(|judged| format!("{} ({})", judged.name, judged.message))
    }
}
