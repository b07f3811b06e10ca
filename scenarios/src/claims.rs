//! The claims suite (`faultline claims`): every scenario under `scenarios/claims/`, one
//! per family of claims, the Kafka benchmark of document 002's Table 5 and the broker
//! benchmarks of its Table 1, then one claims report.
//!
//! In order:
//!
//! 1. [`families`] lists the suite's scenarios (`<family>.toml`); `--only` picks some
//!    families (`kafka` is the Kafka benchmark, `brokers` the broker benchmarks). Every
//!    scenario chosen is read and checked whole, and the benchmarks' settings too, before
//!    anything starts: a bad one is a usage error ([`SuiteError::is_usage`], exit 2).
//! 2. Each scenario runs as `faultline run` runs it (its capacity search, checker,
//!    report) into `DIR/<family>/`. Starting the reference system is most of a quick
//!    suite's time, so the families whose `[system]` tables are the same and that inject
//!    no fault share one system ([`sharing_key`]): it is started once, each family's load
//!    runs on it through [`crate::run_on`], and between two families the suite waits
//!    until no event is left in an outbox or behind a consumer ([`drain`]), so one
//!    family's backlog does not load the next one's measurement. Each family keeps its
//!    own results and report. `--quick` shortens every search's hold and bisection. A
//!    run that fails is recorded as failed and the suite goes on, so one broken family
//!    does not hide the others.
//! 3. The Kafka benchmark runs through `faultline_kafkabench::run` into `DIR/kafka/`,
//!    then each broker's through `faultline_brokerbench::run` into `DIR/brokers/`
//!    (`<broker>.json` and its table, `<broker>.txt`), one after the other.
//! 4. `faultline_reports::claims_suite` holds every claim against its family's
//!    results, in memory, and writes `claims.html`, `claims.md` and `claims.json`.
//!    [`report_again`] writes them anew from the results a suite left on disk.
//!
//! Progress goes to stderr, one line per run started and ended.

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use faultline_brokerbench::{BrokerBenchError, BrokerSpec};
use faultline_kafkabench::{table, BenchError, BenchSpec};
use faultline_loadgen::scrape::{MetricsProbe, ScrapeSpec};
use faultline_reports::{
    claims_suite::{
        BrokersRun, ClaimsSuiteReport, FamilyRun, KafkaRun, RunOutcome, SuiteInfo, SuiteWritten,
        BROKERS_FAMILY, KAFKA_FAMILY,
    },
    Claims, GateReport, Report, ReportError,
};
use faultline_results::{
    error::{read_text, write_text},
    RunInfo,
};

use crate::{
    claims_cqrs::{self, CqrsSpec},
    run::{service_urls, RunError, RunOptions, StartedSystem},
    scenario::{CheckedScenario, Scenario, ScenarioError},
};

/// How `--quick` shortens a capacity search: each step's hold, and one bisection.
const QUICK_HOLD: &str = "2s";
const QUICK_ROUNDS: u32 = 1;
/// The family whose results are the CQRS comparison, and how it reads: views at once
/// on each side, and for how long.
const CQRS_FAMILY: &str = "cqrs";
const CQRS_CONCURRENCY: usize = 8;
const CQRS_READ: Duration = Duration::from_secs(10);
const CQRS_READ_QUICK: Duration = Duration::from_secs(3);
/// The longest the suite waits for a shared system to drain between two families; a
/// system still behind after it is used all the same, and the wait says so.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How long the system must stay drained before the next family: a consumer's lag is
/// renewed once a second.
const LAG_RENEWED: Duration = Duration::from_millis(1100);

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The folder of the suite's scenarios (`scenarios/claims`).
    pub scenarios: PathBuf,
    /// Where each run's report and the claims report go.
    pub output: PathBuf,
    pub quick: bool,
    /// Run these families only (a scenario's stem, `kafka` or `brokers`); every one when
    /// empty.
    pub only: Vec<String>,
    /// The `faultline` binary the services run as.
    pub faultline_bin: PathBuf,
    pub run_info: RunInfo,
    /// How long acknowledged orders may take to settle after each run's load.
    pub settle_deadline: Duration,
    /// The Kafka benchmark's Table 5 rows.
    pub kafka: BenchSpec,
    /// The broker benchmarks of Table 1, run in this order.
    pub brokers: Vec<BrokerSpec>,
}

impl SuiteOptions {
    /// Whether `--only` lets `family` run.
    fn chosen(&self, family: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| only == family)
    }
}

/// What the suite wrote.
#[derive(Debug)]
pub struct SuiteOutcome {
    pub report: ClaimsSuiteReport,
    pub written: SuiteWritten,
    /// Families whose run failed (their claims say why).
    pub failed: Vec<String>,
}

/// A suite that could not run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("--only {family:?}: no such family (known: {known})")]
    UnknownFamily { family: String, known: String },
    #[error("listing the claims scenarios in {path}: {source}")]
    Listing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no claims scenario (*.toml) in {0}")]
    NoScenario(PathBuf),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("the Kafka benchmark's settings: {0}")]
    KafkaSettings(BenchError),
    #[error("the broker benchmarks' settings: {0}")]
    BrokerSettings(BrokerBenchError),
    #[error("creating {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the claims report: {0}")]
    Report(#[from] ReportError),
    #[error("interrupted; every fault was healed")]
    Interrupted,
}

impl SuiteError {
    /// Bad input (exit 2), found before anything started.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SuiteError::UnknownFamily { .. }
                | SuiteError::Listing { .. }
                | SuiteError::NoScenario(_)
                | SuiteError::Scenario(_)
                | SuiteError::KafkaSettings(_)
                | SuiteError::BrokerSettings(_)
        )
    }
}

/// The suite's scenarios, `(family, path)`, sorted by family.
pub fn families(dir: &Path) -> Result<Vec<(String, PathBuf)>, SuiteError> {
    let listing = |source| SuiteError::Listing {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let path = entry.map_err(listing)?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                found.push((stem.to_string(), path.clone()));
            }
        }
    }
    if found.is_empty() {
        return Err(SuiteError::NoScenario(dir.to_path_buf()));
    }
    found.sort();
    Ok(found)
}

/// Reads and checks the chosen scenarios, shortened with `--quick`.
fn checked_scenarios(options: &SuiteOptions) -> Result<Vec<(String, CheckedScenario)>, SuiteError> {
    let all = families(&options.scenarios)?;
    for only in &options.only {
        let benchmark = only == KAFKA_FAMILY || only == BROKERS_FAMILY;
        if !benchmark && !all.iter().any(|(family, _)| family == only) {
            let mut known: Vec<&str> = all.iter().map(|(family, _)| family.as_str()).collect();
            known.extend([KAFKA_FAMILY, BROKERS_FAMILY]);
            return Err(SuiteError::UnknownFamily {
                family: only.clone(),
                known: known.join(", "),
            });
        }
    }
    let mut checked = Vec::new();
    for (family, path) in all {
        if !options.chosen(&family) {
            continue;
        }
        let mut scenario = Scenario::read(&path)?;
        if options.quick {
            if let Some(search) = &mut scenario.load.find_max {
                search.hold = Some(QUICK_HOLD.into());
                search.rounds = Some(QUICK_ROUNDS);
            }
        }
        checked.push((family, scenario.check()?));
    }
    Ok(checked)
}

/// Runs the suite and writes the claims report. `interrupted` makes a future that
/// resolves on Ctrl-C or SIGTERM, one per run.
pub async fn run<F: Future<Output = ()>>(
    options: SuiteOptions,
    interrupted: impl Fn() -> F,
) -> Result<SuiteOutcome, SuiteError> {
    let chosen = checked_scenarios(&options)?;
    let run_kafka = options.chosen(KAFKA_FAMILY);
    if run_kafka {
        options.kafka.check().map_err(SuiteError::KafkaSettings)?;
    }
    let run_brokers = options.chosen(BROKERS_FAMILY);
    if run_brokers {
        for spec in &options.brokers {
            spec.check().map_err(SuiteError::BrokerSettings)?;
        }
    }
    let claims = Claims::builtin()?;
    create_dir(&options.output)?;
    let total = chosen.len() + usize::from(run_kafka) + usize::from(run_brokers);
    let suite_started = Instant::now();
    let mut runs = Vec::new();
    let mut announced = 0;
    let mut stopping = Vec::new();
    for group in shared_groups(chosen) {
        let (outcomes, stop) = run_group(&options, group, &interrupted, |family, path| {
            announced += 1;
            eprintln!(
                "claims: [{announced}/{total}] {family}: {} ({:.0} s into the suite)",
                path.display(),
                suite_started.elapsed().as_secs_f64()
            );
        })
        .await?;
        runs.extend(outcomes);
        stopping.extend(stop);
    }
    for (family, _) in families(&options.scenarios)? {
        if !runs.iter().any(|run| run.family == family) {
            runs.push(FamilyRun {
                family,
                outcome: RunOutcome::Skipped,
            });
        }
    }
    let kafka = KafkaRun {
        outcome: if run_kafka {
            announced += 1;
            eprintln!(
                "claims: [{announced}/{total}] {KAFKA_FAMILY}: faultline kafka-bench --table5 ({:.0} s into the suite)",
                suite_started.elapsed().as_secs_f64()
            );
            run_kafka_bench(&options, interrupted()).await?
        } else {
            RunOutcome::Skipped
        },
    };
    let brokers = if run_brokers {
        eprintln!(
            "claims: [{total}/{total}] {BROKERS_FAMILY}: faultline broker-bench ({:.0} s into the suite)",
            suite_started.elapsed().as_secs_f64()
        );
        crate::claims_brokers::run(&options.brokers, &options.output, &interrupted)
            .await
            .ok_or(SuiteError::Interrupted)?
    } else {
        crate::claims_brokers::skipped(&options.brokers)
    };
    for stop in stopping {
        // A stop that panicked has dropped the system, which kills what was left.
        let _ = stop.await;
    }
    let outcome = write_report(&options, &claims, &runs, &kafka, &brokers)?;
    eprintln!(
        "claims: the suite took {:.0} s",
        suite_started.elapsed().as_secs_f64()
    );
    Ok(outcome)
}

/// Rewrites the claims report from what a suite left in `options.output` (each
/// family's `results.json`, `kafka/kafka-bench.json`), running nothing: after a change
/// to the claims file or the report, or to see `--only` runs together.
pub fn report_again(options: &SuiteOptions) -> Result<SuiteOutcome, SuiteError> {
    let claims = Claims::builtin()?;
    let chosen = |family: &str| options.chosen(family);
    let runs: Vec<FamilyRun> = families(&options.scenarios)?
        .into_iter()
        .map(|(family, _)| {
            let path = options.output.join(&family).join("results.json");
            let outcome = if !chosen(&family) {
                RunOutcome::Skipped
            } else {
                match faultline_reports::read_results(&path) {
                    Ok(results) => RunOutcome::Ran {
                        results: Box::new(results),
                        report: format!("{family}/index.html"),
                    },
                    Err(error) => RunOutcome::Failed(format!("no results to report: {error}")),
                }
            };
            FamilyRun { family, outcome }
        })
        .collect();
    let kafka_path = options.output.join(KAFKA_FAMILY).join("kafka-bench.json");
    let kafka = KafkaRun {
        outcome: if !chosen(KAFKA_FAMILY) {
            RunOutcome::Skipped
        } else {
            match read_text(&kafka_path, "reading kafka-bench results from")
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_str(&text)
                        .map_err(|e| format!("{}: {e}", kafka_path.display()))
                }) {
                Ok(results) => RunOutcome::Ran {
                    results: Box::new(results),
                    report: format!("{KAFKA_FAMILY}/table5.txt"),
                },
                Err(error) => RunOutcome::Failed(format!("no results to report: {error}")),
            }
        },
    };
    let brokers = if chosen(BROKERS_FAMILY) {
        crate::claims_brokers::read_back(&options.brokers, &options.output)
    } else {
        crate::claims_brokers::skipped(&options.brokers)
    };
    write_report(options, &claims, &runs, &kafka, &brokers)
}

/// Holds every claim against the runs and writes the claims report.
fn write_report(
    options: &SuiteOptions,
    claims: &Claims,
    runs: &[FamilyRun],
    kafka: &KafkaRun,
    brokers: &BrokersRun,
) -> Result<SuiteOutcome, SuiteError> {
    let info = SuiteInfo {
        faultline_version: options.run_info.faultline_version.clone(),
        git_commit: options.run_info.git_commit.clone(),
        quick: options.quick,
    };
    let report = ClaimsSuiteReport::build(claims, runs, kafka, brokers, &info);
    let written = report.write_all(&options.output)?;
    let mut failed: Vec<String> = runs
        .iter()
        .filter(|run| matches!(run.outcome, RunOutcome::Failed(_)))
        .map(|run| run.family.clone())
        .collect();
    if matches!(kafka.outcome, RunOutcome::Failed(_)) {
        failed.push(KAFKA_FAMILY.into());
    }
    for run in &brokers.runs {
        if matches!(run.outcome, RunOutcome::Failed(_)) {
            failed.push(format!("{BROKERS_FAMILY} ({})", run.broker));
        }
    }
    Ok(SuiteOutcome {
        report,
        written,
        failed,
    })
}

fn create_dir(path: &Path) -> Result<(), SuiteError> {
    std::fs::create_dir_all(path).map_err(|source| SuiteError::Output {
        path: path.to_path_buf(),
        source,
    })
}

/// Families that run on one system, by name.
type Group = Vec<(String, CheckedScenario)>;

/// What decides whether two families may share one system: the `[system]` table as
/// parsed (its `Debug` form, every field of it), or `None` for a family whose faults
/// act on a dependency, which needs fault proxies put in front of it at the system's
/// start.
fn sharing_key(checked: &CheckedScenario) -> Option<String> {
    checked
        .proxied
        .is_empty()
        .then(|| format!("{:?}", checked.scenario.topology))
}

/// The chosen families, grouped so that each group runs on one system: families with
/// the same [`sharing_key`] together, in the order their first member was chosen. In a
/// group, the families that kill or pause processes run after those without faults,
/// whose measurements they would otherwise precede with restarted replicas.
fn shared_groups(chosen: Vec<(String, CheckedScenario)>) -> Vec<Group> {
    let mut groups: Vec<(Option<String>, Group)> = Vec::new();
    for (family, checked) in chosen {
        let key = sharing_key(&checked);
        match groups
            .iter_mut()
            .find(|(shared, _)| key.is_some() && *shared == key)
        {
            Some((_, members)) => members.push((family, checked)),
            None => groups.push((key, vec![(family, checked)])),
        }
    }
    groups
        .into_iter()
        .map(|(_, mut members)| {
            members.sort_by_key(|(_, checked)| !checked.faults.is_empty());
            members
        })
        .collect()
}

/// A system being stopped in the background.
type Stopping = tokio::task::JoinHandle<()>;

/// Runs one group of families on one system, started for the group and stopped after
/// it (in the background, see [`Stopping`]). A system that does not start fails every
/// family of the group, with the reason.
async fn run_group<F: Future<Output = ()>>(
    options: &SuiteOptions,
    group: Group,
    interrupted: &impl Fn() -> F,
    mut announce: impl FnMut(&str, &Path),
) -> Result<(Vec<FamilyRun>, Option<Stopping>), SuiteError> {
    let Some((_, first)) = group.first() else {
        return Ok((Vec::new(), None));
    };
    let started = tokio::select! {
        started = StartedSystem::start(first, &options.faultline_bin) => started,
        // Dropping the start future drops what it started, which kills it.
        _ = interrupted() => return Err(SuiteError::Interrupted),
    };
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            let failed = group
                .into_iter()
                .map(|(family, checked)| {
                    announce(&family, &checked.scenario.path);
                    eprintln!("claims: {family} failed: {error}");
                    FamilyRun {
                        family,
                        outcome: RunOutcome::Failed(error.to_string()),
                    }
                })
                .collect();
            return Ok((failed, None));
        }
    };
    let mut runs = Vec::new();
    let mut result = Ok(());
    for (number, (family, checked)) in group.into_iter().enumerate() {
        if number > 0 {
            drain(started.system()).await;
        }
        announce(&family, &checked.scenario.path);
        match run_family(options, &started, &family, checked, interrupted()).await {
            Ok(outcome) => runs.push(FamilyRun { family, outcome }),
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    match result {
        // The services take seconds to stop gracefully, waiting on nothing the next
        // run needs: the suite goes on and waits for them before it ends.
        Ok(()) => Ok((runs, Some(tokio::spawn(started.stop())))),
        Err(error) => {
            started.stop().await;
            Err(error)
        }
    }
}

/// Waits until no service has an event left in its outbox and no consumer is behind
/// its partitions (the scraped `faultline_outbox_backlog` and `faultline_consumer_lag`
/// add up to 0) for [`LAG_RENEWED`], for at most [`DRAIN_LIMIT`].
async fn drain(system: &faultline_system::supervisor::System) {
    let started = Instant::now();
    let probe = MetricsProbe::new(ScrapeSpec {
        targets: service_urls(system),
        metrics: vec![
            "faultline_outbox_backlog".into(),
            "faultline_consumer_lag".into(),
        ],
        histograms: Vec::new(),
        interval: Duration::from_millis(100),
        tls: system.scrape_tls(),
    });
    let probe = match probe {
        Ok(probe) => probe,
        Err(error) => {
            eprintln!("claims: cannot see whether the system drained ({error}); going on");
            return;
        }
    };
    // Since when nothing was seen behind.
    let mut caught_up: Option<Instant> = None;
    loop {
        // A service that did not answer may hold events: not drained.
        let behind = probe.sum().await;
        if matches!(behind, Ok(events) if events <= 0.0) {
            let since = *caught_up.get_or_insert_with(Instant::now);
            if since.elapsed() >= LAG_RENEWED {
                eprintln!(
                    "claims: the system drained in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
        } else {
            caught_up = None;
        }
        if started.elapsed() >= DRAIN_LIMIT {
            let state = match behind {
                Ok(events) => format!("still has {events} events behind"),
                Err(error) => format!("did not answer ({error})"),
            };
            eprintln!(
                "claims: the system {state} after {} s; going on",
                DRAIN_LIMIT.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// One family's scenario, as `faultline run` runs it, into `DIR/<family>/`, on the
/// system started for its group.
async fn run_family(
    options: &SuiteOptions,
    system: &StartedSystem,
    family: &str,
    checked: CheckedScenario,
    interrupted: impl Future<Output = ()>,
) -> Result<RunOutcome<faultline_results::Results>, SuiteError> {
    let started = Instant::now();
    // The cqrs family's load only places orders; the family's results are the
    // comparison that follows it.
    let output = match family {
        CQRS_FAMILY => options.output.join(family).join("orders"),
        _ => options.output.join(family),
    };
    let run_options = RunOptions {
        output,
        faultline_bin: options.faultline_bin.clone(),
        progress: false,
        settle_deadline: options.settle_deadline,
        baseline: None,
        run_info: options.run_info.clone(),
    };
    match crate::run_on(system, checked, run_options, interrupted).await {
        Ok(_) if family == CQRS_FAMILY => {
            eprintln!(
                "claims: {family}: orders placed in {:.0} s; reading their views both ways",
                started.elapsed().as_secs_f64()
            );
            Ok(run_cqrs(options, system).await)
        }
        Ok(outcome) => {
            let capacity = outcome
                .results
                .capacity
                .as_ref()
                .map(|c| c.headline())
                .unwrap_or_else(|| "no capacity search".into());
            eprintln!(
                "claims: {family} done in {:.0} s: {capacity}",
                started.elapsed().as_secs_f64()
            );
            Ok(RunOutcome::Ran {
                results: Box::new(outcome.results),
                report: format!("{family}/index.html"),
            })
        }
        Err(RunError::Interrupted) => Err(SuiteError::Interrupted),
        Err(error) => {
            eprintln!("claims: {family} failed: {error}");
            Ok(RunOutcome::Failed(error.to_string()))
        }
    }
}

/// The cqrs family's comparison ([`crate::claims_cqrs`]) on the orders its load placed,
/// with its own `results.json` and report in `DIR/cqrs/`.
async fn run_cqrs(
    options: &SuiteOptions,
    system: &StartedSystem,
) -> RunOutcome<faultline_results::Results> {
    let spec = CqrsSpec {
        concurrency: CQRS_CONCURRENCY,
        duration: if options.quick {
            CQRS_READ_QUICK
        } else {
            CQRS_READ
        },
    };
    let dir = options.output.join(CQRS_FAMILY);
    let compared = claims_cqrs::compare(
        &system.system().database_urls,
        spec,
        options.run_info.clone(),
    )
    .await
    .map_err(|error| error.to_string())
    .and_then(|results| {
        let claims = Claims::builtin().map_err(|e| e.to_string())?;
        results
            .write(&dir.join("results.json"))
            .map_err(|e| e.to_string())?;
        Report::build(&results, &claims, GateReport::default())
            .and_then(|report| report.write_all(&dir))
            .map_err(|e| e.to_string())?;
        Ok(results)
    });
    match compared {
        Ok(results) => {
            let speedup = faultline_reports::Metric::parse("cqrs.read_speedup")
                .map(|metric| metric.measure(&results, &Default::default()).to_string())
                .unwrap_or_default();
            eprintln!("claims: {CQRS_FAMILY} done: the read model reads {speedup}x faster");
            RunOutcome::Ran {
                results: Box::new(results),
                report: format!("{CQRS_FAMILY}/index.html"),
            }
        }
        Err(error) => {
            eprintln!("claims: {CQRS_FAMILY} failed: {error}");
            RunOutcome::Failed(error)
        }
    }
}

/// The Table 5 rows of the Kafka benchmark, into `DIR/kafka/` (`kafka-bench.json` and
/// the side-by-side table as `table5.txt`, the run's own report).
async fn run_kafka_bench(
    options: &SuiteOptions,
    interrupted: impl Future<Output = ()>,
) -> Result<RunOutcome<faultline_results::kafka_bench::KafkaBenchResults>, SuiteError> {
    let dir = options.output.join(KAFKA_FAMILY);
    create_dir(&dir)?;
    let started = Instant::now();
    let mut progress = |line: &str| eprintln!("claims: kafka-bench: {line}");
    let outcome = tokio::select! {
        outcome = faultline_kafkabench::run(&options.kafka, &mut progress) => outcome,
        // Dropping the benchmark drops the brokers it started, which kills them.
        _ = interrupted => return Err(SuiteError::Interrupted),
    };
    let results = match outcome {
        Ok(results) => results,
        Err(error) => {
            eprintln!("claims: kafka-bench failed: {error}");
            return Ok(RunOutcome::Failed(error.to_string()));
        }
    };
    let written = faultline_kafkabench::write_json(&dir, &results)
        .map_err(|error| error.to_string())
        .and_then(|_| {
            write_text(&dir.join("table5.txt"), &table::render(&results)).map_err(|e| e.to_string())
        });
    if let Err(error) = written {
        eprintln!("claims: writing the kafka-bench results: {error}");
        return Ok(RunOutcome::Failed(error));
    }
    eprintln!(
        "claims: kafka-bench done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(RunOutcome::Ran {
        results: Box::new(results),
        report: format!("{KAFKA_FAMILY}/table5.txt"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use faultline_loadgen::{
        journeys::JourneyKind,
        scrape::{DEFAULT_HISTOGRAMS, DEFAULT_METRICS},
    };
    use faultline_reports::metric::{glob_matches, Scope};
    use faultline_results::{broker_bench::Broker, kafka_bench::Table5Row};

    use super::*;

    fn suite_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("claims")
    }

    /// Whether a run of `scenario` records `scope`: its journeys call an endpoint of it,
    /// its checkouts make the consistency window and the checker's ledger, the scrape
    /// keeps its series.
    fn produces(
        scenario: &Scenario,
        scope: &Scope,
        groups: &faultline_reports::metric::Groups,
    ) -> bool {
        let kinds: Vec<JourneyKind> = scenario
            .load
            .journeys
            .as_ref()
            .map(|journeys| journeys.mix.keys().copied().collect())
            .unwrap_or_default();
        let endpoints: Vec<&str> = kinds
            .iter()
            .flat_map(|kind| kind.steps().iter().map(|step| step.name()))
            .collect();
        let any_endpoint = |patterns: &[String]| {
            endpoints
                .iter()
                .any(|endpoint| patterns.iter().any(|p| glob_matches(p, endpoint)))
        };
        match scope {
            Scope::Http => !endpoints.is_empty(),
            Scope::Endpoint(name) => endpoints.contains(&name.as_str()),
            Scope::Group(group) => any_endpoint(&groups[group]),
            Scope::Consistency | Scope::Checker => kinds.contains(&JourneyKind::Checkout),
            Scope::Server { name, .. } => DEFAULT_METRICS.contains(&name.as_str()),
            // The scrape reads them at the run's start and end.
            Scope::ServerHistogram { name, .. } => DEFAULT_HISTOGRAMS.contains(&name.as_str()),
            // Every run reads pg_stat_statements at its start and end.
            Scope::Database => true,
            // Every run samples its system's processes from /proc.
            Scope::Resources(_) => true,
            Scope::Faults(_) => !scenario.faults.is_empty(),
            // The comparison that follows the cqrs family's load.
            Scope::Cqrs => scenario.name == "claims-cqrs",
            Scope::KafkaBench(_) | Scope::BrokerBench(_) => false,
        }
    }

    #[test]
    fn every_claim_of_a_family_maps_onto_a_metric_its_run_produces() {
        let claims = Claims::builtin().unwrap();
        let scenarios: Vec<(String, Scenario)> = families(&suite_dir())
            .unwrap()
            .into_iter()
            .map(|(family, path)| (family, Scenario::read(&path).unwrap()))
            .collect();
        let table5: Vec<String> = Table5Row::ALL
            .iter()
            .map(|row| {
                serde_json::to_value(row)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let brokers: Vec<Broker> = broker_specs().iter().map(|spec| spec.broker).collect();
        let mut answered = 0;
        for claim in &claims.claims {
            let Some(family) = &claim.raw.family else {
                continue;
            };
            let gate = claim
                .gate
                .as_ref()
                .unwrap_or_else(|| panic!("{}: a family but no metric", claim.raw.id));
            if family == KAFKA_FAMILY {
                match &gate.metric.scope {
                    Scope::KafkaBench(row) => {
                        assert!(table5.contains(row), "{}: {row}", claim.raw.id)
                    }
                    other => panic!("{}: {other:?} is not a kafka-bench figure", claim.raw.id),
                }
            } else if family == BROKERS_FAMILY {
                let Scope::BrokerBench(broker) = &gate.metric.scope else {
                    panic!("{}: not a broker-bench figure", claim.raw.id)
                };
                assert!(
                    brokers.contains(broker),
                    "{}: the suite runs no {broker}",
                    claim.raw.id
                );
            } else {
                let (_, scenario) = scenarios
                    .iter()
                    .find(|(name, _)| name == family)
                    .unwrap_or_else(|| panic!("{}: no scenario {family}.toml", claim.raw.id));
                for metric in
                    std::iter::once(&gate.metric).chain(claim.condition.as_ref().map(|c| &c.metric))
                {
                    assert!(
                        produces(scenario, &metric.scope, &claims.groups),
                        "{}: the {family} run does not record {}",
                        claim.raw.id,
                        metric.text
                    );
                }
            }
            answered += 1;
        }
        // Every family of the suite answers claims, and most mapped claims have one.
        for (family, _) in &scenarios {
            assert!(
                claims
                    .claims
                    .iter()
                    .any(|c| c.raw.family.as_ref() == Some(family)),
                "no claim names family {family}"
            );
        }
        let mapped = claims.claims.iter().filter(|c| c.gate.is_some()).count();
        assert!(
            answered + 2 >= mapped,
            "{answered} of {mapped} mapped claims have a family"
        );
    }

    #[test]
    fn every_scenario_of_the_suite_checks_whole_and_searches_its_capacity() {
        for quick in [false, true] {
            let options = SuiteOptions {
                scenarios: suite_dir(),
                output: PathBuf::new(),
                quick,
                only: Vec::new(),
                faultline_bin: PathBuf::new(),
                run_info: RunInfo::default(),
                settle_deadline: Duration::from_secs(1),
                kafka: bench_spec(),
                brokers: broker_specs(),
            };
            let checked = checked_scenarios(&options).unwrap();
            assert!(checked.len() >= 5, "{}", checked.len());
            for (family, checked) in &checked {
                // The recovery and deployments families hold faults at a steady rate, and
                // the cqrs family's load only places orders: their claims are times, error
                // shares and a ratio, not rates.
                let faulted = family == "recovery" || family == "deployments";
                if faulted || family == CQRS_FAMILY {
                    assert!(checked.scenario.load.find_max.is_none());
                    assert_eq!(faulted, !checked.faults.is_empty());
                    continue;
                }
                let search = checked.scenario.load.find_max.as_ref().unwrap();
                assert!(!checked.capacity_gates.is_empty(), "{family}");
                if quick {
                    assert_eq!(search.hold.as_deref(), Some(QUICK_HOLD), "{family}");
                }
            }
        }
    }

    #[test]
    fn an_unknown_family_is_a_usage_error_naming_the_known_ones() {
        let options = SuiteOptions {
            scenarios: suite_dir(),
            output: PathBuf::new(),
            quick: true,
            only: vec!["users".into(), "nope".into()],
            faultline_bin: PathBuf::new(),
            run_info: RunInfo::default(),
            settle_deadline: Duration::from_secs(1),
            kafka: bench_spec(),
            brokers: broker_specs(),
        };
        let error = checked_scenarios(&options).unwrap_err();
        assert!(error.is_usage());
        let text = error.to_string();
        assert!(
            text.contains("\"nope\"")
                && text.contains("users")
                && text.contains("kafka")
                && text.contains("brokers"),
            "{text}"
        );
    }

    #[test]
    fn families_with_the_same_system_and_no_fault_share_one_system() {
        let options = SuiteOptions {
            scenarios: suite_dir(),
            output: PathBuf::new(),
            quick: true,
            only: Vec::new(),
            faultline_bin: PathBuf::new(),
            run_info: RunInfo::default(),
            settle_deadline: Duration::from_secs(1),
            kafka: bench_spec(),
            brokers: broker_specs(),
        };
        let chosen = checked_scenarios(&options).unwrap();
        let families = chosen.len();
        let groups = shared_groups(chosen);
        assert_eq!(groups.len(), 1, "the suite's families start one system");
        assert_eq!(groups[0].len(), families);

        // The families that kill processes run after the others on it.
        let with_faults: Vec<bool> = groups[0]
            .iter()
            .map(|(_, checked)| !checked.faults.is_empty())
            .collect();
        assert!(
            with_faults.contains(&true),
            "the recovery family kills services"
        );
        assert!(with_faults.is_sorted(), "{with_faults:?}");

        // A family whose faults need proxies, or that asks for another system, runs on
        // its own.
        let mut chosen = checked_scenarios(&options).unwrap();
        let (_, proxied) = &mut chosen[0];
        proxied.proxied.push(faultline_system::Dependency::Kafka);
        let (_, bigger) = &mut chosen[1];
        bigger.scenario.topology.products = Some(7);
        let groups = shared_groups(chosen);
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1, families - 2], "{sizes:?}");
    }

    fn broker_specs() -> Vec<BrokerSpec> {
        Broker::ALL
            .map(|broker| BrokerSpec {
                broker,
                duration: Duration::from_secs(10),
                message_bytes: 1024,
                producers: 1,
            })
            .to_vec()
    }

    fn bench_spec() -> BenchSpec {
        BenchSpec {
            cluster: faultline_kafkabench::Cluster::Start {
                brokers: 3,
                heap_mb: 512,
            },
            grid: faultline_kafkabench::Grid {
                message_bytes: vec![1024],
                partitions: vec![6],
                replication_factors: vec![],
                acks: vec!["all".into()],
                producers: vec![1],
                compressions: vec!["none".into()],
                linger_ms: vec![0],
                batch_bytes: vec![],
                rates: vec![],
            },
            table5: true,
            bound: faultline_kafkabench::RowBound::Records(1000),
            perf_tool: true,
            consume_timeout: Duration::from_secs(30),
            warm_up_records: 0,
            paced: None,
            paced_rows: Vec::new(),
        }
    }
}
