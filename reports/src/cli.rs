//! The `faultline report` and `faultline gate` commands, as library code.
//!
//! The binary's `src/cmd/report.rs` and `src/cmd/gate.rs` flatten these argument
//! structs (`#[group(skip)]`, so the binary's structs of the same name do not clash)
//! and call [`run_report`] / [`run_gate`], then [`exit_code`], so every path,
//! including the exit code, is tested here. `faultline run` calls [`apply_gates`]
//! at its end.
//!
//! Exit codes: 0 every gate holds, 1 a gate failed or a regression is beyond its
//! budget, 2 bad input (unreadable or malformed results, baseline, scenario, claims
//! or `--gate`), with a message naming the file and, for JSON, the path and line.

use std::path::{Path, PathBuf};

use faultline_results::{
    quantity::{Dimension, Quantity},
    Results,
};

use crate::{
    claims::Claims,
    error::ReportError,
    gate::{read_scenario_gates, Baseline, Gate, GateReport},
    input::read_results,
    metric::Groups,
    report::{all_gates, write_report, ReportInputs},
};

/// Options shared by both commands: where gates and claims come from.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct GateSources {
    /// A threshold, e.g. 'http.p99<450ms', 'http.error_rate<=0.1%', 'checker.lost<=0' (repeatable).
    #[arg(long = "gate", value_name = "METRIC<LIMIT")]
    pub gates: Vec<String>,

    /// Read the [[gates]] tables of this scenario file (metric = "http.p99", max = "450ms");
    /// a [[gate]] table is an error.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Compare every endpoint with these results (p50, p90, p99, error rate).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// How much worse than the baseline a metric may be, e.g. 10%.
    #[arg(long, default_value = "10%", value_name = "PERCENT")]
    pub max_regression: String,

    /// Latency differences below this are never a regression (timer noise).
    #[arg(long, default_value = "1ms", value_name = "TIME")]
    pub regression_floor: String,

    /// Claims file (also defines the endpoint groups of group:<name> metrics);
    /// the repository's scenarios/claims.toml is built in.
    #[arg(long, value_name = "FILE")]
    pub claims: Option<PathBuf>,
}

impl GateSources {
    fn claims(&self) -> Result<Claims, ReportError> {
        match &self.claims {
            Some(path) => Claims::read(path),
            None => Claims::builtin(),
        }
    }

    fn gates(&self) -> Result<Vec<Gate>, ReportError> {
        let mut gates = Vec::new();
        if let Some(path) = &self.scenario {
            gates.extend(read_scenario_gates(path)?);
        }
        for text in &self.gates {
            gates.push(Gate::parse_expression(text, "--gate")?);
        }
        Ok(gates)
    }

    fn baseline(&self) -> Result<Option<(Results, PathBuf, f64, f64)>, ReportError> {
        let Some(path) = &self.baseline else {
            return Ok(None);
        };
        let budget = Quantity::parse_in(&self.max_regression, Dimension::Ratio)?.value;
        let floor = Quantity::parse_in(&self.regression_floor, Dimension::Time)?.value;
        Ok(Some((read_results(path)?, path.clone(), budget, floor)))
    }
}

fn beside(results: &Path) -> PathBuf {
    match results.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Arguments of `faultline report`.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct ReportArgs {
    /// results.json of a run (or of several merged with `faultline merge`).
    pub results: PathBuf,

    /// Directory to write index.html into (default: beside the results file).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub sources: GateSources,
}

/// Runs `faultline report`: reads the results, judges gates and claims, writes
/// `index.html`, and returns its path.
pub fn run_report(args: &ReportArgs) -> Result<PathBuf, ReportError> {
    let results = read_results(&args.results)?;
    let inputs = ReportInputs {
        claims: args.sources.claims()?,
        gates: args.sources.gates()?,
    };
    let baseline = args.sources.baseline()?;
    let baseline = baseline.as_ref().map(|(r, path, budget, floor)| Baseline {
        results: r,
        path: path.clone(),
        budget: *budget,
        latency_floor_secs: *floor,
    });
    let dir = args.output.clone().unwrap_or_else(|| beside(&args.results));
    write_report(&results, &inputs, baseline.as_ref(), &dir)
}

/// Arguments of `faultline gate`.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct GateArgs {
    /// results.json to judge.
    pub results: PathBuf,

    /// Directory for junit.xml and summary.md (default: beside the results file).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub sources: GateSources,
}

/// What `faultline gate` judged and wrote.
#[derive(Debug, Clone)]
pub struct GateRun {
    pub report: GateReport,
    pub junit: PathBuf,
    pub summary: PathBuf,
    /// The summary's Markdown, which the command also prints.
    pub markdown: String,
}

/// Runs `faultline gate`: judges the gates recorded in the results, those of
/// `--scenario` and `--gate`, and the baseline comparison; writes `junit.xml` and
/// `summary.md`.
pub fn run_gate(args: &GateArgs) -> Result<GateRun, ReportError> {
    let results = read_results(&args.results)?;
    let claims = args.sources.claims()?;
    let gates = all_gates(&results, &args.sources.gates()?)?;
    let baseline = args.sources.baseline()?;
    let baseline = baseline.as_ref().map(|(r, path, budget, floor)| Baseline {
        results: r,
        path: path.clone(),
        budget: *budget,
        latency_floor_secs: *floor,
    });
    let dir = args.output.clone().unwrap_or_else(|| beside(&args.results));
    let report = apply_gates(&results, &gates, baseline.as_ref(), &claims.groups, &dir)?;
    Ok(GateRun {
        markdown: report.summary_markdown(&results),
        junit: dir.join("junit.xml"),
        summary: dir.join("summary.md"),
        report,
    })
}

/// Judges gates on results and writes `junit.xml` and `summary.md` into `dir`;
/// [`GateReport::exit_code`] gives the process exit code. For `faultline run`.
pub fn apply_gates(
    results: &Results,
    gates: &[Gate],
    baseline: Option<&Baseline<'_>>,
    groups: &Groups,
    dir: &Path,
) -> Result<GateReport, ReportError> {
    let report = GateReport::judge(results, gates, baseline, groups);
    report.write(results, dir)?;
    Ok(report)
}

/// The exit code of a gate or report command: the gates' verdict (0 or 1), or 2 for
/// any error.
pub fn exit_code<T>(outcome: &Result<T, ReportError>, verdict: impl Fn(&T) -> u8) -> u8 {
    match outcome {
        Ok(value) => verdict(value),
        Err(_) => ReportError::EXIT_CODE,
    }
}

/// [`exit_code`] of `faultline gate`.
pub fn gate_exit_code(outcome: &Result<GateRun, ReportError>) -> u8 {
    exit_code(outcome, |run| run.report.exit_code())
}
