//! The claims report of `faultline claims`: every claim of the documents held against
//! the run of its family, in one table, as `claims.json`, `claims.md` and a
//! self-contained `claims.html`.
//!
//! The suite (`faultline_scenarios::claims`) runs one scenario per family, the Kafka
//! benchmark and the broker benchmarks, then hands their results here, in memory, as
//! [`FamilyRun`]s, a [`KafkaRun`] and a [`BrokersRun`]. [`ClaimsSuiteReport::build`]
//! evaluates each claim once: a claim's `family` names the run that answers it (`kafka`
//! is the Kafka benchmark, through [`crate::claims_kafka`]; `brokers` the run of the
//! broker its metric names, through [`crate::claims_brokers`]); a run's capacity search
//! answers the claims it could not
//! reach at the stated rate ([`crate::claims`]). Each row carries the quote, the
//! claimed value and hardware, the measured value with this machine's hardware, the
//! capacity found, the verdict and a link to the run's own report. The three files
//! are written from the same rows, so they cannot disagree.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use faultline_results::{
    broker_bench::{Broker, BrokerBenchResults},
    error::write_text,
    kafka_bench::KafkaBenchResults,
    Machine, Results,
};
use serde::Serialize;

use crate::{
    claims::{Claim, ClaimResult, ClaimStatus, Claims, RawClaim},
    claims_brokers, claims_kafka,
    error::ReportError,
    html::{escape, STYLE},
};

/// The family whose claims the Kafka benchmark answers.
pub const KAFKA_FAMILY: &str = "kafka";

/// The family whose claims the broker benchmarks answer, one broker per claim.
pub const BROKERS_FAMILY: &str = "brokers";

/// What the suite ran for one family: its results, or why it has none.
#[derive(Debug, Clone)]
pub struct FamilyRun {
    pub family: String,
    pub outcome: RunOutcome<Results>,
}

/// The Kafka benchmark's run.
#[derive(Debug, Clone)]
pub struct KafkaRun {
    pub outcome: RunOutcome<KafkaBenchResults>,
}

/// The broker benchmarks' runs (`faultline broker-bench`), one per broker.
#[derive(Debug, Clone, Default)]
pub struct BrokersRun {
    pub runs: Vec<BrokerRun>,
}

/// One broker's benchmark.
#[derive(Debug, Clone)]
pub struct BrokerRun {
    pub broker: Broker,
    pub outcome: RunOutcome<BrokerBenchResults>,
}

/// How one run of the suite ended.
#[derive(Debug, Clone)]
pub enum RunOutcome<T> {
    /// It ran; `report` is its own report, relative to the claims report's directory.
    Ran { results: Box<T>, report: String },
    /// It could not run to the end (the error).
    Failed(String),
    /// `--only` left it out.
    Skipped,
}

impl<T> RunOutcome<T> {
    fn ran(&self) -> Option<(&T, &str)> {
        match self {
            RunOutcome::Ran { results, report } => Some((results, report)),
            _ => None,
        }
    }

    /// Why a claim of this run has no figure, when it has none.
    fn missing(&self, family: &str) -> Option<String> {
        match self {
            RunOutcome::Ran { .. } => None,
            RunOutcome::Failed(error) => Some(format!("the {family} run failed: {error}")),
            RunOutcome::Skipped => Some(format!("the {family} family was not run (--only)")),
        }
    }
}

/// One claim of the report: the claim as the claims file writes it (quote, claimed
/// value, hardware, family, ...), then every figure of the run as text.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimRow {
    #[serde(flatten)]
    pub claim: RawClaim,
    /// The claim's figure, e.g. `≤ 120 ms`.
    pub claimed: String,
    pub measured: Option<String>,
    /// This machine, as the run that measured it recorded it.
    pub measured_hardware: Option<String>,
    /// The highest rate at which the run's gates held (per second), when searched.
    pub capacity: Option<String>,
    /// `pass`, `fail`, `holds up to X/s here (document: Y/s on Z)`, `not measured`,
    /// `not applicable`, `not mapped`.
    pub verdict: String,
    /// The reason behind the verdict, or the claim's note.
    pub detail: Option<String>,
    /// The run's own report, relative to the claims report's directory.
    pub report: Option<String>,
}

/// The whole claims report.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimsSuiteReport {
    pub generated_at: String,
    pub faultline_version: Option<String>,
    pub git_commit: Option<String>,
    /// This machine in words: CPU model, cores, RAM.
    pub machine: String,
    /// Short holds and fewer steps (`--quick`).
    pub quick: bool,
    /// Claims per verdict label.
    pub counts: BTreeMap<String, usize>,
    pub families: Vec<FamilyRow>,
    pub claims: Vec<ClaimRow>,
}

/// One run of the suite.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyRow {
    pub family: String,
    pub status: String,
    pub capacity: Option<String>,
    pub report: Option<String>,
}

/// Who made the report, and how.
#[derive(Debug, Clone, Default)]
pub struct SuiteInfo {
    pub faultline_version: Option<String>,
    pub git_commit: Option<String>,
    pub quick: bool,
}

/// The files [`ClaimsSuiteReport::write_all`] wrote.
#[derive(Debug, Clone)]
pub struct SuiteWritten {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
}

/// This machine in words (`/proc/cpuinfo`'s model, cores, RAM).
pub fn machine_words(machine: &Machine) -> String {
    let mut parts = Vec::new();
    if let Some(cpu) = &machine.cpu_model {
        parts.push(cpu.clone());
    }
    parts.push(format!("{} cores", machine.cores));
    if machine.memory_bytes > 0 {
        parts.push(format!(
            "{:.1} GiB RAM",
            machine.memory_bytes as f64 / (1024.0 * 1024.0 * 1024.0)
        ));
    }
    parts.join(", ")
}

impl ClaimsSuiteReport {
    /// Holds every claim against the run of its family.
    pub fn build(
        claims: &Claims,
        runs: &[FamilyRun],
        kafka: &KafkaRun,
        brokers: &BrokersRun,
        info: &SuiteInfo,
    ) -> ClaimsSuiteReport {
        let rows: Vec<ClaimRow> = claims
            .claims
            .iter()
            .map(|claim| {
                let family = claim.raw.family.as_deref();
                let mut no_capacity = None;
                let (result, hardware, report) = match family {
                    _ if claim.gate.is_none() => (claim.unanswered(String::new()), None, None),
                    Some(BROKERS_FAMILY) => broker_claim(claim, brokers),
                    Some(KAFKA_FAMILY) => match kafka.outcome.ran() {
                        Some((bench, report)) => (
                            claims_kafka::evaluate(claim, bench),
                            Some(machine_words(&bench.machine)),
                            Some(report.to_string()),
                        ),
                        None => (
                            claim.unanswered(
                                kafka.outcome.missing(KAFKA_FAMILY).unwrap_or_default(),
                            ),
                            None,
                            None,
                        ),
                    },
                    Some(name) => match runs.iter().find(|run| run.family == name) {
                        Some(run) => match run.outcome.ran() {
                            Some((results, report)) => {
                                let result = claim.evaluate(results, &claims.groups);
                                // A search that found no rate at all says so in the
                                // capacity column, with the step that broke.
                                let none =
                                    results.capacity.as_ref().filter(|c| c.capacity.is_none());
                                no_capacity = none.map(|c| {
                                    format!(
                                        "none: the first step ({}/s) broke",
                                        c.search.start_rate
                                    )
                                });
                                if result.measured.is_none() {
                                    no_capacity = None;
                                }
                                (
                                    result,
                                    Some(machine_words(&results.metadata.machine)),
                                    Some(report.to_string()),
                                )
                            }
                            None => (
                                claim.unanswered(run.outcome.missing(name).unwrap_or_default()),
                                None,
                                None,
                            ),
                        },
                        None => (
                            claim.unanswered(format!(
                                "no claims scenario of family {name:?} was run"
                            )),
                            None,
                            None,
                        ),
                    },
                    None => (
                        claim.unanswered("no scenario of the claims suite measures it".to_string()),
                        None,
                        None,
                    ),
                };
                row(&result, hardware, report, no_capacity)
            })
            .collect();
        let mut counts = BTreeMap::new();
        for row in &rows {
            *counts.entry(verdict_kind(&row.verdict)).or_insert(0) += 1;
        }
        let mut families: Vec<FamilyRow> = runs
            .iter()
            .map(|run| {
                family_row(&run.family, &run.outcome, |r: &Results| {
                    r.capacity.as_ref().and_then(|c| c.capacity).map(per_second)
                })
            })
            .collect();
        families.push(family_row(KAFKA_FAMILY, &kafka.outcome, |_| None));
        families.extend(brokers.runs.iter().map(|run| {
            let family = format!("{BROKERS_FAMILY}: {}", run.broker);
            family_row(&family, &run.outcome, |bench: &BrokerBenchResults| {
                Some(per_second(bench.measured.msgs_per_sec))
            })
        }));
        let machine = runs
            .iter()
            .find_map(|run| run.outcome.ran())
            .map(|(results, _)| machine_words(&results.metadata.machine))
            .unwrap_or_else(|| machine_words(&Machine::this()));
        ClaimsSuiteReport {
            generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            faultline_version: info.faultline_version.clone(),
            git_commit: info.git_commit.clone(),
            machine,
            quick: info.quick,
            counts,
            families,
            claims: rows,
        }
    }

    /// Writes `claims.json`, `claims.md` and `claims.html` into `dir`.
    pub fn write_all(&self, dir: &Path) -> Result<SuiteWritten, ReportError> {
        let json = dir.join("claims.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| ReportError::BadSpec {
            what: "claims report",
            text: json.display().to_string(),
            problem: e.to_string(),
        })?;
        write_text(&json, &text)?;
        let markdown = dir.join("claims.md");
        write_text(&markdown, &self.markdown())?;
        let html = dir.join("claims.html");
        write_text(&html, &self.html())?;
        Ok(SuiteWritten {
            html,
            markdown,
            json,
        })
    }

    fn heading(&self) -> String {
        format!(
            "{} claims, {}; generated {}{}, faultline {}, commit {}; this machine: {}",
            self.claims.len(),
            self.counts
                .iter()
                .map(|(kind, count)| format!("{count} {kind}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.generated_at,
            if self.quick { " (--quick)" } else { "" },
            self.faultline_version.as_deref().unwrap_or("?"),
            self.git_commit.as_deref().unwrap_or("unknown"),
            self.machine
        )
    }

    /// The table as Markdown (the README's section is this file).
    pub fn markdown(&self) -> String {
        let mut md = String::from("# What the documents claim, and what we measured\n\n");
        let _ = writeln!(md, "{}.\n", self.heading());
        md.push_str("| claim | document, section | claimed (hardware) | measured | capacity | verdict | run |\n|---|---|---|---|---|---|---|\n");
        let cell = |text: &str| text.replace('|', "\\|").replace('\n', " ");
        for row in &self.claims {
            let _ = writeln!(
                md,
                "| `{}`: {} | {}, {} | {} ({}) | {} | {} | {} | {} |",
                row.claim.id,
                cell(&row.claim.quote),
                row.claim.document,
                cell(&row.claim.section),
                cell(&row.claimed),
                cell(&row.claim.hardware),
                row.measured
                    .as_deref()
                    .map(cell)
                    .unwrap_or_else(|| "—".into()),
                row.capacity.as_deref().unwrap_or("—"),
                cell(&verdict_with_detail(row)),
                row.report
                    .as_deref()
                    .map(|r| format!("[{}]({r})", row.claim.family.as_deref().unwrap_or("report")))
                    .unwrap_or_else(|| "—".into()),
            );
        }
        md
    }

    /// One self-contained page (the run reports' style; no script, no request).
    pub fn html(&self) -> String {
        let mut page = String::with_capacity(64 * 1024);
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>faultline claims</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>What the documents claim, and what we measured</h1>\n<p class=\"meta\">{}.</p>\n",
            escape(&self.heading())
        );
        page.push_str("<h2 id=\"runs\">Runs</h2>\n<table><tr><th>family</th><th>status</th><th>capacity found</th><th>report</th></tr>\n");
        for family in &self.families {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&family.family),
                escape(&family.status),
                escape(family.capacity.as_deref().unwrap_or("—")),
                link(family.report.as_deref(), "report"),
            );
        }
        page.push_str("</table>\n<h2 id=\"claims\">Claims</h2>\n<table><tr><th>verdict</th><th>claim (document, section, quote)</th><th>claimed</th><th>document's hardware</th><th>measured</th><th>this machine</th><th>capacity found</th><th>detail</th><th>run</th></tr>\n");
        for row in &self.claims {
            let class = match row.verdict.as_str() {
                "pass" => "pass",
                "fail" => "fail",
                _ => "",
            };
            let _ = writeln!(
                page,
                "<tr id=\"{}\"><td class=\"{class}\">{}</td><td><b>{}</b> {}, {}<br><q>{}</q>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&row.claim.id),
                escape(&row.verdict),
                escape(&row.claim.id),
                escape(&row.claim.document),
                escape(&row.claim.section),
                escape(&row.claim.quote),
                row.claim.metric
                    .as_deref()
                    .map(|m| format!("<br><code>{}</code>", escape(m)))
                    .unwrap_or_default(),
                escape(&row.claimed),
                escape(&row.claim.hardware),
                escape(row.measured.as_deref().unwrap_or("—")),
                escape(row.measured_hardware.as_deref().unwrap_or("—")),
                escape(row.capacity.as_deref().unwrap_or("—")),
                escape(row.detail.as_deref().unwrap_or("")),
                link(row.report.as_deref(), row.claim.family.as_deref().unwrap_or("report")),
            );
        }
        page.push_str("</table>\n</body>\n</html>\n");
        page
    }
}

/// A `brokers` claim held against the run of the broker its metric names, with this
/// machine's words and the run's own table.
fn broker_claim(
    claim: &Claim,
    brokers: &BrokersRun,
) -> (ClaimResult, Option<String>, Option<String>) {
    let broker = match claim.gate.as_ref().map(|gate| &gate.metric.scope) {
        Some(crate::metric::Scope::BrokerBench(broker)) => *broker,
        _ => {
            let reason = format!("family {BROKERS_FAMILY} needs a broker_bench:<broker> metric");
            return (claim.unanswered(reason), None, None);
        }
    };
    let run = brokers.runs.iter().find(|run| run.broker == broker);
    match run.map(|run| (run.outcome.ran(), &run.outcome)) {
        Some((Some((bench, report)), _)) => (
            claims_brokers::evaluate(claim, bench),
            Some(machine_words(&bench.machine)),
            Some(report.to_string()),
        ),
        Some((None, outcome)) => {
            let family = format!("{BROKERS_FAMILY} ({broker})");
            (
                claim.unanswered(outcome.missing(&family).unwrap_or_default()),
                None,
                None,
            )
        }
        None => {
            let reason = format!("broker-bench did not run {broker}");
            (claim.unanswered(reason), None, None)
        }
    }
}

fn per_second(rate: f64) -> String {
    format!("{}/s", (rate * 10.0).round() / 10.0)
}

fn link(target: Option<&str>, text: &str) -> String {
    match target {
        Some(target) => format!("<a href=\"{}\">{}</a>", escape(target), escape(text)),
        None => "—".into(),
    }
}

fn family_row<T>(
    family: &str,
    outcome: &RunOutcome<T>,
    capacity: impl Fn(&T) -> Option<String>,
) -> FamilyRow {
    let (status, capacity, report) = match outcome {
        RunOutcome::Ran { results, report } => {
            ("ran".to_string(), capacity(results), Some(report.clone()))
        }
        RunOutcome::Failed(error) => (format!("failed: {error}"), None, None),
        RunOutcome::Skipped => ("not run (--only)".to_string(), None, None),
    };
    FamilyRow {
        family: family.to_string(),
        status,
        capacity,
        report,
    }
}

/// The verdict's kind, for the counts: the capacity sentence counts as one kind.
fn verdict_kind(verdict: &str) -> String {
    if verdict.starts_with("holds up to") {
        "hold up to this machine's capacity".into()
    } else {
        verdict.to_string()
    }
}

fn verdict_with_detail(row: &ClaimRow) -> String {
    match (&row.detail, row.verdict.starts_with("holds up to")) {
        (Some(detail), false) if row.verdict != "pass" && row.verdict != "fail" => {
            format!("{} ({detail})", row.verdict)
        }
        _ => row.verdict.clone(),
    }
}

fn row(
    result: &ClaimResult,
    measured_hardware: Option<String>,
    report: Option<String>,
    no_capacity: Option<String>,
) -> ClaimRow {
    let raw = &result.claim.raw;
    let (verdict, detail) = match &result.status {
        ClaimStatus::Pass => ("pass".to_string(), raw.note.clone()),
        ClaimStatus::Fail => ("fail".to_string(), raw.note.clone()),
        ClaimStatus::HoldsUpTo(text) => (text.clone(), raw.note.clone()),
        other => (
            other.label().to_string(),
            other.detail().map(str::to_string),
        ),
    };
    ClaimRow {
        claim: raw.clone(),
        claimed: result.claimed.clone(),
        measured: result.measured.map(|q| q.to_string()),
        measured_hardware: result.measured.and(measured_hardware),
        capacity: result.capacity.map(per_second).or(no_capacity),
        verdict,
        detail,
        report,
    }
}
