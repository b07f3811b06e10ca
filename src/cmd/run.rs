//! `faultline run scenario.toml`: the whole job in one command. The scenario is read and
//! checked whole (every problem, with its line, is exit 2 before anything starts), then
//! `faultline_scenarios::run` does the run: system, load and faults, checker, results,
//! report and gates. The exit code is the gates' verdict (0 pass, 1 fail, 2 bad input,
//! 130 interrupted).

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use faultline_loadgen::summary::summary_table;
use faultline_reports::read_results;
use faultline_results::{
    quantity::{Dimension, Quantity},
    RunInfo,
};
use faultline_scenarios::{BaselineOptions, RunError, RunOptions, Scenario};

/// Arguments of `faultline run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML): [system], [load], [[faults]], [[gates]]; see
    /// scenarios/README.md.
    pub scenario: PathBuf,

    /// Directory for results.json, ledger.jsonl, index.html, junit.xml and summary.md
    /// (default: reports/out/<scenario>-<time>).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// No live progress line (it is also off when stderr is not a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// After the load, how long every acknowledged order may take to settle before the
    /// checker counts it as inconsistent.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub settle_deadline: Duration,

    /// A previous run's results.json: a regression beyond --max-regression fails the run.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Regression budget against --baseline.
    #[arg(long, default_value = "10%", value_name = "PERCENT")]
    pub max_regression: String,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let checked = match Scenario::read(&args.scenario).and_then(|s| s.check()) {
        Ok(checked) => checked,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let baseline = match baseline(&args) {
        Ok(baseline) => baseline,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&checked.scenario.name));
    let options = RunOptions {
        output,
        faultline_bin: std::env::current_exe().context("finding the faultline binary")?,
        progress: !args.quiet && std::io::stderr().is_terminal(),
        settle_deadline: args.settle_deadline,
        baseline,
        run_info: RunInfo {
            scenario: None,
            faultline_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            git_commit: option_env!("FAULTLINE_GIT_COMMIT").map(str::to_string),
        },
    };
    match faultline_scenarios::run(checked, options, super::terminated()).await {
        Ok(outcome) => {
            println!("{}", summary_table(&outcome.results));
            println!("{}", outcome.gates.summary_markdown(&outcome.results));
            println!("results: {}", outcome.results_path.display());
            println!("report:  {}", outcome.report_path.display());
            println!("junit:   {}", outcome.junit_path.display());
            Ok(ExitCode::from(outcome.exit_code()))
        }
        Err(RunError::Interrupted) => {
            eprintln!("\nrun: interrupted; every fault was healed");
            Ok(ExitCode::from(130))
        }
        Err(error) => Err(error.into()),
    }
}

/// `--baseline` and its budget, read before anything starts.
fn baseline(args: &RunArgs) -> anyhow::Result<Option<BaselineOptions>> {
    let Some(path) = &args.baseline else {
        return Ok(None);
    };
    let budget = Quantity::parse_in(&args.max_regression, Dimension::Ratio)
        .context("--max-regression")?
        .value;
    Ok(Some(BaselineOptions {
        results: read_results(path)?,
        path: path.clone(),
        budget,
        latency_floor: Duration::from_millis(1),
    }))
}

/// `reports/out/<scenario>-<UTC time>`.
fn default_output(name: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    PathBuf::from("reports/out").join(format!("{name}-{}", stamp.trim_end_matches('Z')))
}
