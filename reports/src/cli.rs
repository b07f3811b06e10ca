//! The `faultline report` and `faultline gate` commands, as library code.
//!
//! The binary's `src/cmd/report.rs` and `src/cmd/gate.rs` flatten these argument
//! structs (`#[group(skip)]`, so the binary's structs of the same name do not clash)
//! and call [`run_report`] / [`run_gate`], then [`exit_code`], so every path,
//! including the exit code, is tested here. Both read the results file, judge the
//! gates once ([`GateReport::judge`]) and hand the verdicts on; `faultline run`, which
//! has its results in memory, calls the same typed functions ([`GateReport::judge`],
//! [`Report::build`], [`Report::write_all`]) without files or flags.
//!
//! Exit codes: 0 every gate holds, 1 a gate failed or a regression is beyond its
//! budget, 2 bad input (unreadable or malformed results, baseline, scenario, claims
//! or `--gate`), with a message naming the file and, for JSON, the path and line.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use faultline_results::{
    quantity::{parse_duration, Dimension, Quantity},
    Results,
};

use crate::{
    claims::Claims,
    error::ReportError,
    gate::{read_scenario_gates, Baseline, Gate, GateReport},
    input::read_results,
    report::{all_gates, Report},
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

    fn baseline(&self) -> Result<Option<BaselineFile>, ReportError> {
        let Some(path) = &self.baseline else {
            return Ok(None);
        };
        Ok(Some(BaselineFile {
            results: read_results(path)?,
            path: path.clone(),
            budget: Quantity::parse_in(&self.max_regression, Dimension::Ratio)?.value,
            latency_floor: parse_duration(&self.regression_floor)?,
        }))
    }

    /// Reads the results at `path` and judges, once, every gate they recorded, those
    /// of these sources and the baseline comparison.
    fn judge(&self, path: &Path) -> Result<Judged, ReportError> {
        let results = read_results(path)?;
        let claims = self.claims()?;
        let gates = all_gates(&results, &self.gates()?)?;
        let baseline = self.baseline()?;
        let baseline = baseline.as_ref().map(BaselineFile::baseline);
        let gates = GateReport::judge(&results, &gates, baseline.as_ref(), &claims.groups);
        Ok(Judged {
            results,
            claims,
            gates,
        })
    }
}

/// A `--baseline` file, read, with the budget and floor of the flags.
struct BaselineFile {
    results: Results,
    path: PathBuf,
    budget: f64,
    latency_floor: Duration,
}

impl BaselineFile {
    fn baseline(&self) -> Baseline<'_> {
        Baseline {
            results: &self.results,
            path: self.path.clone(),
            budget: self.budget,
            latency_floor: self.latency_floor,
        }
    }
}

/// What both commands start from: the results, the claims, the judged gates.
struct Judged {
    results: Results,
    claims: Claims,
    gates: GateReport,
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
    let judged = args.sources.judge(&args.results)?;
    let dir = args.output.clone().unwrap_or_else(|| beside(&args.results));
    Report::build(&judged.results, &judged.claims, judged.gates)?.write(&dir)
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
    let Judged { results, gates, .. } = args.sources.judge(&args.results)?;
    let dir = args.output.clone().unwrap_or_else(|| beside(&args.results));
    let (junit, summary) = gates.write(&results, &dir)?;
    Ok(GateRun {
        markdown: gates.summary_markdown(&results),
        junit,
        summary,
        report: gates,
    })
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
