//! Gates: thresholds on metrics and a regression budget against a baseline, judged
//! on results, written as JUnit XML and a Markdown summary, and turned into an exit
//! code (k6 thresholds, Goose's `--baseline-file`).
//!
//! Gates come from three places, all parsed into [`Gate`] before anything is judged:
//! the `[[gates]]` tables of a scenario (`metric = "http.p99", max = "450ms"`), those
//! the run recorded in `results.json`, and `--gate 'http.p99<450ms'` flags. A gate on
//! a metric the run did not record fails: a CI gate that cannot be checked must not
//! pass silently.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use faultline_results::{
    error::{read_text, write_text},
    gates::scenario_gates,
    quantity::{Dimension, Quantity},
    GateSpec, Results, ScenarioGate,
};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::{
    error::ReportError,
    metric::{Groups, Measured, Metric},
};

/// How a measured value is held against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Less,
    AtMost,
    Greater,
    AtLeast,
}

impl Comparator {
    pub fn parse(text: &str) -> Option<Comparator> {
        match text {
            "<" => Some(Comparator::Less),
            "<=" | "≤" => Some(Comparator::AtMost),
            ">" => Some(Comparator::Greater),
            ">=" | "≥" => Some(Comparator::AtLeast),
            _ => None,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparator::Less => "<",
            Comparator::AtMost => "≤",
            Comparator::Greater => ">",
            Comparator::AtLeast => "≥",
        }
    }

    pub fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Comparator::Less => measured < limit,
            Comparator::AtMost => measured <= limit,
            Comparator::Greater => measured > limit,
            Comparator::AtLeast => measured >= limit,
        }
    }
}

/// A threshold: a metric, a comparator and a limit in the metric's dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub metric: Metric,
    pub comparator: Comparator,
    pub limit: Quantity,
    /// Where the gate was written (a file and line, `--gate`, or the results).
    pub origin: String,
}

impl Gate {
    /// Builds a gate, checking the limit's unit against the metric.
    pub fn new(
        metric: &str,
        comparator: Comparator,
        limit: &str,
        origin: impl Into<String>,
    ) -> Result<Gate, ReportError> {
        let metric = Metric::parse(metric)?;
        let dimension = metric.dimension();
        let mut limit_quantity = Quantity::parse(limit)?;
        // A bare 0 is a fine limit for any dimension ("no errors", "no lag").
        if limit_quantity.dimension == Dimension::Count && limit_quantity.value == 0.0 {
            limit_quantity.dimension = dimension;
        }
        if limit_quantity.dimension != dimension {
            return Err(ReportError::spec(
                "gate limit",
                limit,
                format!("{} needs {}", metric.text, dimension.example()),
            ));
        }
        Ok(Gate {
            metric,
            comparator,
            limit: limit_quantity,
            origin: origin.into(),
        })
    }

    /// Parses a `--gate` expression such as `http.p99<450ms` or `checker.lost<=0`.
    pub fn parse_expression(text: &str, origin: &str) -> Result<Gate, ReportError> {
        let at = text.find(['<', '>', '≤', '≥']).ok_or_else(|| {
            ReportError::spec(
                "gate",
                text,
                "expected METRIC<LIMIT, METRIC<=LIMIT, METRIC>LIMIT or METRIC>=LIMIT, e.g. 'http.p99<450ms'",
            )
        })?;
        let rest = &text[at..];
        let symbol_len = if rest.starts_with("<=") || rest.starts_with(">=") {
            2
        } else {
            rest.chars().next().map_or(1, char::len_utf8)
        };
        let comparator = Comparator::parse(&rest[..symbol_len])
            .ok_or_else(|| ReportError::spec("gate", text, "unknown comparator"))?;
        Gate::new(
            text[..at].trim(),
            comparator,
            rest[symbol_len..].trim(),
            origin,
        )
    }

    /// The gates of one `[[gates]]` entry (`max` and `min` each give one).
    pub fn from_spec(spec: &GateSpec, origin: &str) -> Result<Vec<Gate>, ReportError> {
        let mut gates = Vec::new();
        if let Some(max) = &spec.max {
            gates.push(Gate::new(&spec.metric, Comparator::AtMost, max, origin)?);
        }
        if let Some(min) = &spec.min {
            gates.push(Gate::new(&spec.metric, Comparator::AtLeast, min, origin)?);
        }
        if gates.is_empty() {
            return Err(ReportError::spec(
                "gate",
                &spec.metric,
                "a gate needs max = \"...\" or min = \"...\"",
            ));
        }
        Ok(gates)
    }

    /// `http.p99 ≤ 450 ms`.
    pub fn name(&self) -> String {
        format!(
            "{} {} {}",
            self.metric.text,
            self.comparator.symbol(),
            self.limit
        )
    }

    /// Measures the metric and holds it against the limit.
    pub fn judge(&self, results: &Results, groups: &Groups) -> GateResult {
        let measured = self.metric.measure(results, groups);
        let (passed, message) = match measured.value() {
            Some(value) => {
                let passed = self.comparator.holds(value.value, self.limit.value);
                let verdict = if passed { "holds" } else { "breached" };
                (
                    passed,
                    format!(
                        "{verdict}: measured {value}, limit {} {}",
                        self.comparator.symbol(),
                        self.limit
                    ),
                )
            }
            None => (
                false,
                format!("cannot be checked: {measured}; a gate that cannot be checked fails"),
            ),
        };
        GateResult {
            name: self.name(),
            kind: GateKind::Threshold,
            origin: self.origin.clone(),
            measured,
            limit: format!("{} {}", self.comparator.symbol(), self.limit),
            passed,
            message,
        }
    }
}

/// Threshold gates or baseline comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    Threshold,
    Regression,
}

/// One judged gate.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    pub name: String,
    pub kind: GateKind,
    pub origin: String,
    pub measured: Measured,
    /// The limit as shown, e.g. `≤ 450 ms`.
    pub limit: String,
    pub passed: bool,
    /// Measured against limit, in words (the JUnit failure message).
    pub message: String,
}

/// Reads the `[[gates]]` tables of a scenario file (other keys are other crates').
pub fn read_scenario_gates(path: &Path) -> Result<Vec<Gate>, ReportError> {
    let text = read_text(path, "reading scenario")?;
    parse_scenario_gates(&text, path)
}

/// Parses the `[[gates]]` tables of scenario text; `path` names it in errors, and
/// each gate's origin is `path:line`. A `[[gate]]` table is an error naming its line.
pub fn parse_scenario_gates(text: &str, path: &Path) -> Result<Vec<Gate>, ReportError> {
    let bad = |problem: String| ReportError::BadToml {
        path: path.into(),
        problem,
    };
    let mut gates = Vec::new();
    for ScenarioGate { line, spec } in scenario_gates(text).map_err(|e| bad(e.to_string()))? {
        let origin = format!("{}:{line}", path.display());
        gates.extend(
            Gate::from_spec(&spec, &origin)
                .map_err(|e| bad(format!("[[gates]] at line {line}: {e}")))?,
        );
    }
    Ok(gates)
}

/// A baseline run and how much worse this run may be.
#[derive(Debug, Clone)]
pub struct Baseline<'a> {
    pub results: &'a Results,
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// Allowed relative regression (0.10 is 10%).
    pub budget: f64,
    /// Latency differences below this are never a regression: one-second scheduler
    /// noise on a sub-millisecond p50 would otherwise be "+40%".
    pub latency_floor: Duration,
}

/// Latency stats compared per endpoint; the error rate is compared as well.
const BASELINE_LATENCY_STATS: [&str; 3] = ["p50", "p90", "p99"];

/// An error rate of 0 in the baseline would make a single error an infinite
/// regression, so error rates are compared against at least this.
const ERROR_RATE_FLOOR: f64 = 0.001;

fn regression(
    name: String,
    origin: &str,
    measured: Measured,
    limit: String,
    failure: Option<String>,
    ok: String,
) -> GateResult {
    GateResult {
        name,
        kind: GateKind::Regression,
        origin: origin.to_string(),
        measured,
        limit,
        passed: failure.is_none(),
        message: failure.unwrap_or(ok),
    }
}

/// Compares every endpoint (and all together) with the baseline.
pub fn compare_with_baseline(results: &Results, baseline: &Baseline<'_>) -> Vec<GateResult> {
    let origin = format!(
        "baseline {} (budget {})",
        baseline.path.display(),
        Quantity::new(baseline.budget, Dimension::Ratio)
    );
    let no_groups = Groups::new();
    let mut scopes = vec!["http".to_string()];
    scopes.extend(
        baseline
            .results
            .endpoints
            .keys()
            .map(|n| format!("endpoint:{n}")),
    );
    let mut out = Vec::new();
    for scope in scopes {
        if let Some(name) = scope.strip_prefix("endpoint:") {
            if !results.endpoints.contains_key(name) {
                out.push(regression(
                    format!("{scope} vs baseline"),
                    &origin,
                    Measured::NotMeasured(format!("no endpoint {name:?} in this run")),
                    "present".into(),
                    Some(format!(
                        "endpoint {name:?} is in the baseline but not in this run"
                    )),
                    String::new(),
                ));
                continue;
            }
        }
        let stats = BASELINE_LATENCY_STATS.iter().copied().chain(["error_rate"]);
        for stat in stats {
            let text = format!("{scope}.{stat}");
            let Ok(metric) = Metric::parse(&text) else {
                continue;
            };
            let (Some(now), Some(before)) = (
                metric.measure(results, &no_groups).value(),
                metric.measure(baseline.results, &no_groups).value(),
            ) else {
                continue;
            };
            let (limit_value, failure) = if stat == "error_rate" {
                let limit = before.value.max(ERROR_RATE_FLOOR) * (1.0 + baseline.budget);
                (limit, now.value > limit)
            } else {
                let limit = before.value * (1.0 + baseline.budget);
                (
                    limit,
                    now.value > limit
                        && now.value - before.value > baseline.latency_floor.as_secs_f64(),
                )
            };
            let limit = Quantity::new(limit_value, now.dimension);
            let change = if before.value > 0.0 {
                format!("{:+.1}%", (now.value / before.value - 1.0) * 100.0)
            } else {
                "from 0".into()
            };
            let words = format!("measured {now}, baseline {before} ({change}), limit ≤ {limit}");
            out.push(regression(
                format!("{text} vs baseline"),
                &origin,
                Measured::Value(now),
                format!("≤ {limit}"),
                failure.then(|| format!("regressed beyond budget: {words}")),
                format!("within budget: {words}"),
            ));
        }
    }
    out
}

/// Every judged gate of a run.
#[derive(Debug, Clone, Default)]
pub struct GateReport {
    pub results: Vec<GateResult>,
}

impl GateReport {
    /// Judges `gates` (and the baseline comparison, when given).
    pub fn judge(
        results: &Results,
        gates: &[Gate],
        baseline: Option<&Baseline<'_>>,
        groups: &Groups,
    ) -> GateReport {
        let mut judged: Vec<GateResult> = gates.iter().map(|g| g.judge(results, groups)).collect();
        if let Some(baseline) = baseline {
            judged.extend(compare_with_baseline(results, baseline));
        }
        GateReport { results: judged }
    }

    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }

    pub fn passed(&self) -> usize {
        self.results.len() - self.failed()
    }

    /// 0 when every gate holds, 1 when any fails.
    pub fn exit_code(&self) -> u8 {
        if self.failed() == 0 {
            0
        } else {
            1
        }
    }

    /// JUnit XML: one test case per gate; a failure's message is measured vs limit.
    pub fn junit_xml(&self) -> String {
        let mut suite = TestSuite::new("faultline gates");
        for result in &self.results {
            let status = if result.passed {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(result.message.clone());
                status.set_type(match result.kind {
                    GateKind::Threshold => "threshold",
                    GateKind::Regression => "regression",
                });
                status
            };
            let mut case = TestCase::new(result.name.clone(), status);
            case.set_classname(match result.kind {
                GateKind::Threshold => "faultline.gate",
                GateKind::Regression => "faultline.baseline",
            });
            case.set_system_out(format!("{} ({})", result.message, result.origin));
            suite.add_test_case(case);
        }
        let mut report = Report::new("faultline");
        report.add_test_suite(suite);
        // Serializing owned strings into memory cannot fail for I/O reasons; an
        // error would be a bug in quick-junit, shown rather than hidden.
        report
            .to_string()
            .unwrap_or_else(|e| format!("<!-- JUnit serialization failed: {e} -->\n"))
    }

    /// A Markdown table fit for a pull request comment.
    pub fn summary_markdown(&self, results: &Results) -> String {
        let mut md = String::new();
        let verdict = if self.failed() == 0 {
            format!("✅ all {} gates hold", self.results.len())
        } else {
            format!(
                "❌ {} of {} gates failed",
                self.failed(),
                self.results.len()
            )
        };
        md.push_str(&format!("### faultline gates: {verdict}\n\n"));
        md.push_str(&format!(
            "Run `{}` against `{}`, started {}, {:.0} s, {} requests at {:.1}/s.\n\n",
            results
                .metadata
                .scenario
                .as_deref()
                .unwrap_or("(no scenario)"),
            results.metadata.target,
            results.metadata.started_at,
            results.metadata.duration_secs,
            results.totals.requests,
            results.totals.achieved_rate
        ));
        if let Some(sentence) = warm_up_sentence(results) {
            md.push_str(&format!("{sentence}\n\n"));
        }
        if let Some(capacity) = &results.capacity {
            md.push_str(&crate::capacity::markdown(capacity));
        }
        if self.results.is_empty() {
            md.push_str("No gates were given.\n");
            return md;
        }
        md.push_str("| | Gate | Measured | Limit | Source |\n|---|---|---|---|---|\n");
        for r in &self.results {
            md.push_str(&format!(
                "| {} | `{}` | {} | {} | {} |\n",
                if r.passed { "✅" } else { "❌" },
                escape_md(&r.name),
                escape_md(&r.measured.to_string()),
                escape_md(&r.limit),
                escape_md(&r.origin)
            ));
        }
        md
    }

    /// Writes `junit.xml` and `summary.md` into `dir`; returns their paths.
    pub fn write(&self, results: &Results, dir: &Path) -> Result<(PathBuf, PathBuf), ReportError> {
        let junit = dir.join("junit.xml");
        let summary = dir.join("summary.md");
        write_text(&junit, &self.junit_xml())?;
        write_text(&summary, &self.summary_markdown(results))?;
        Ok((junit, summary))
    }
}

fn escape_md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The sentence that says the run had a warm-up (`[load] warm_up`), which its figures
/// leave out; `None` without one.
pub(crate) fn warm_up_sentence(results: &Results) -> Option<String> {
    let warm_up = results.warm_up.as_ref()?;
    Some(format!(
        "After a warm-up of {}, not recorded: these figures are of the load that followed it.",
        warm_up.describe()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn gate_expressions_parse_with_every_comparator() {
        let gate = Gate::parse_expression("http.p99<450ms", "--gate").unwrap();
        assert_eq!(gate.comparator, Comparator::Less);
        assert!((gate.limit.value - 0.45).abs() < 1e-12);
        let gate = Gate::parse_expression("http.rate >= 900/s", "--gate").unwrap();
        assert_eq!(gate.comparator, Comparator::AtLeast);
        let gate = Gate::parse_expression("checker.lost<=0", "--gate").unwrap();
        assert_eq!(gate.name(), "checker.lost ≤ 0");
    }

    #[test]
    fn a_limit_in_the_wrong_unit_is_refused() {
        let error = Gate::parse_expression("http.error_rate<5ms", "--gate")
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs a percentage"), "{error}");
        assert!(Gate::parse_expression("http.p99 450ms", "--gate").is_err());
    }

    #[test]
    fn scenario_gates_name_the_file_and_line_of_a_bad_entry() {
        let text = "[load]\nrate = 5\n\n[[gates]]\nmetric = \"http.p99\"\nmax = \"450ms\"\n\n[[gates]]\nmetric = \"http.p99\"\nmax = \"fast\"\n";
        let error = parse_scenario_gates(text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("s.toml"), "{error}");
        assert!(error.contains("line 8"), "{error}");
        let good = &text[..text
            .find("\n\n[[gates]]\nmetric = \"http.p99\"\nmax = \"fast\"")
            .unwrap()];
        let gates = parse_scenario_gates(good, Path::new("s.toml")).unwrap();
        assert_eq!(gates.len(), 1);
        assert_eq!(gates[0].origin, "s.toml:4");
    }

    #[test]
    fn a_gate_table_is_an_error_that_names_its_line_and_the_spelling() {
        let text = "[load]\nrate = 5\n\n[[gate]]\nmetric = \"http.p99\"\nmax = \"450ms\"\n";
        let error = parse_scenario_gates(text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("s.toml"), "{error}");
        assert!(error.contains("line 4"), "{error}");
        assert!(error.contains("[[gates]]"), "{error}");
    }

    #[test]
    fn the_demo_scenario_file_holds_its_four_gates() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/demo/checkout.toml"
        ));
        let gates = read_scenario_gates(path).unwrap();
        assert_eq!(gates.len(), 4, "{gates:?}");
        assert!(gates.iter().all(|g| g.origin.contains("checkout.toml:")));
    }
}
