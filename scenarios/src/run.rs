//! The orchestrator: [`run`] takes a [`CheckedScenario`] through one whole run.
//!
//! 1. Put fault proxies in front of the dependencies faults act on, and start the
//!    reference system on the real stack, routed through them.
//! 2. Run the load, the fault timeline, the `/metrics` scrape and the `/proc` sampler
//!    ([`resources`]) together, between two readings of the databases' statement
//!    counters ([`database`]); the timeline
//!    starts with the load's clock (a journey run first registers its users). A
//!    `[load.find_max]` runs its capacity search here, step after step, in place of the
//!    single load.
//! 3. After the load, heal every fault, let the system settle and check every order of
//!    the write ledger against the services' databases (system::checker).
//! 4. Hand the results, in memory, to reports: gates judged once, the report built once;
//!    write `results.json`, `index.html`, `junit.xml` and `summary.md`.
//!
//! Nothing here can fail as a usage error: the scenario was checked whole before.
//!
//! With tracing on, module `traces` has the generator keep its slowest requests' trace
//! ids and fetches their traces from Jaeger after the load.

mod prometheus;
mod traces;

use std::{
    future::Future,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use faultline_chaos::{ActiveFaults, CancellationToken, Timeline, TimelineOutcome};
use faultline_loadgen::{
    capacity::{self, Staircase},
    engine,
    journeys::{
        self,
        ledger::{Ledger, WriteOutcome},
    },
    scenario::LoadPlan,
    scrape::{ScrapeSpec, Scraper, DEFAULT_HISTOGRAMS, DEFAULT_METRICS},
    summary::progress_line,
    warm_up, Progress,
};
use faultline_reports::{Baseline, Claims, GateReport, Report, ReportError};
use faultline_results::{CapacityStep, CheckerResults, FaultWindow, Results, RunInfo, TimePoint};
use faultline_system::{
    checker::{self, CheckSpec, LedgerOrder},
    services::ServiceKind,
    supervisor::System,
};

mod database;
mod recovery;
mod resources;

use self::{
    database::StatementCounter,
    recovery::{ReadinessWatcher, Transitions},
    resources::ResourceSampler,
};
use crate::{
    load::SloJudge,
    scenario::CheckedScenario,
    targets::{self, Proxies},
};

/// How a run goes, besides what the scenario says.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where results.json, ledger.jsonl, index.html, junit.xml and summary.md go.
    pub output: PathBuf,
    /// The `faultline` binary the services run as (`faultline serve <service>`).
    pub faultline_bin: PathBuf,
    /// A live progress line on stderr.
    pub progress: bool,
    /// How long every acknowledged order may take to settle after the load before the
    /// checker counts it as inconsistent.
    pub settle_deadline: Duration,
    /// A previous run to hold this one against.
    pub baseline: Option<BaselineOptions>,
    /// The version and commit recorded in results.
    pub run_info: RunInfo,
}

/// A previous run's results, and how much worse this run may be.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    pub results: Results,
    pub path: PathBuf,
    /// Allowed relative regression (0.10 is 10%).
    pub budget: f64,
    /// Latency differences below this are never a regression.
    pub latency_floor: Duration,
}

/// What a run measured and wrote.
#[derive(Debug)]
pub struct RunOutcome {
    pub results: Results,
    pub gates: GateReport,
    pub results_path: PathBuf,
    pub report_path: PathBuf,
    pub junit_path: PathBuf,
    pub summary_path: PathBuf,
    /// Faults that could not be applied (the run went on without them).
    pub fault_failures: Vec<String>,
}

impl RunOutcome {
    /// 0 when every gate holds, 1 when one fails.
    pub fn exit_code(&self) -> u8 {
        self.gates.exit_code()
    }
}

/// A run that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("creating {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Proxies(#[from] targets::ProxyStartError),
    #[error("starting the reference system: {0}")]
    System(#[from] faultline_system::supervisor::SystemError),
    #[error("the fault timeline: {0}")]
    Timeline(String),
    #[error("the load: {0}")]
    Load(#[from] faultline_loadgen::LoadError),
    #[error("writing results: {0}")]
    Results(String),
    #[error("the report: {0}")]
    Report(#[from] ReportError),
    #[error("interrupted; every fault was healed")]
    Interrupted,
}

/// Runs a checked scenario end to end. `interrupted` resolves on Ctrl-C or SIGTERM: the
/// load stops, every fault is healed and the system stopped.
pub async fn run(
    checked: CheckedScenario,
    options: RunOptions,
    interrupted: impl Future<Output = ()>,
) -> Result<RunOutcome, RunError> {
    create_output(&options.output)?;
    let mut checked = checked;
    prometheus::keep_under(&mut checked.system, &options.output);
    let started = StartedSystem::start(&checked, &options.faultline_bin).await?;
    let outcome = run_on(&started, checked, options, interrupted).await;
    started.stop().await;
    outcome
}

/// A reference system started for runs, with the fault proxies in front of its
/// dependencies. [`run`] starts one per scenario; the claims suite starts one for every
/// family whose `[system]` is the same and runs each family on it with [`run_on`].
pub struct StartedSystem {
    system: Arc<System>,
    spec: faultline_system::supervisor::SystemSpec,
    proxies: Vec<Proxies>,
}

impl StartedSystem {
    /// Starts the system `checked`'s `[system]` describes, routed through proxies for the
    /// dependencies its faults act on.
    pub async fn start(
        checked: &CheckedScenario,
        faultline_bin: &Path,
    ) -> Result<StartedSystem, RunError> {
        let mut spec = checked.system.clone();
        spec.faultline_bin = faultline_bin.to_path_buf();
        let proxies = targets::start_proxies(&mut spec, &checked.proxied).await?;
        eprintln!("run: starting the reference system");
        let started = std::time::Instant::now();
        let system = Arc::new(System::start(spec.clone()).await?);
        eprintln!(
            "run: the system is up in {:.1} s; gateway {}",
            started.elapsed().as_secs_f64(),
            system.gateway_url
        );
        Ok(StartedSystem {
            system,
            spec,
            proxies,
        })
    }

    pub fn system(&self) -> &System {
        &self.system
    }

    /// Stops every service, then the stack and the proxies.
    pub async fn stop(self) {
        eprintln!("run: stopping the system");
        stop(self.system, self.proxies).await;
    }
}

/// Runs a checked scenario against a system already started: the load with its fault
/// timeline and scrape, the checker, results and report. Anything the run changed in
/// the system (its data, a restarted replica) stays for whatever runs next on it.
pub async fn run_on(
    started: &StartedSystem,
    checked: CheckedScenario,
    options: RunOptions,
    interrupted: impl Future<Output = ()>,
) -> Result<RunOutcome, RunError> {
    create_output(&options.output)?;
    let system = &started.system;
    let targets = targets::bind(system, &started.spec, &started.proxies);
    let timeline = Timeline::new(checked.faults.clone(), &targets)
        .map_err(|e| RunError::Timeline(e.to_string()))?;
    let watcher = ReadinessWatcher::start(system.clone(), &started.spec, &checked.faults);
    let loaded = load_with_faults(&checked, &options, system, timeline, interrupted).await;
    let readiness = watcher.finish().await;
    finish(&checked, &options, system, loaded?, &readiness).await
}

fn create_output(output: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(output).map_err(|source| RunError::Output {
        path: output.to_path_buf(),
        source,
    })
}

async fn stop(system: Arc<System>, proxies: Vec<Proxies>) {
    match Arc::try_unwrap(system) {
        Ok(system) => system.stop().await,
        // A restart still holds it: dropping it kills every process all the same.
        Err(system) => drop(system),
    }
    for proxy in proxies.into_iter().flat_map(|p| p.proxies) {
        proxy.stop().await;
    }
}

/// The load's results, with the fault timeline and the scrape that ran alongside.
struct Loaded {
    results: Results,
    timeline: TimelineOutcome,
    /// When the timeline (and the load's clock) started.
    timeline_wall: SystemTime,
    scraper: Scraper,
    sampler: ResourceSampler,
    statements: StatementCounter,
}

/// Runs the load, the fault timeline and the scrape together.
async fn load_with_faults(
    checked: &CheckedScenario,
    options: &RunOptions,
    system: &Arc<System>,
    timeline: Timeline,
    interrupted: impl Future<Output = ()>,
) -> Result<Loaded, RunError> {
    let mut run_info = options.run_info.clone();
    run_info.scenario = Some(checked.scenario.name.clone());
    let mut plan = checked.scenario.plan(&system.gateway_url, run_info)?;
    if let LoadPlan::Journeys(config) = &mut plan {
        if config.ledger.is_none() {
            config.ledger = Some(options.output.join("ledger.jsonl"));
        }
        config.exemplars = traces::exemplar_limits(&checked.system);
    }
    // A warm-up runs before anything is measured: the scrape, the samplers and the fault
    // timeline all start with the load itself.
    tokio::pin!(interrupted);
    let warm_up = match checked.scenario.load.warm_up {
        Some(duration) => tokio::select! {
            done = warm_up::before(&plan, duration, false) => Some(done?),
            _ = &mut interrupted => return Err(RunError::Interrupted),
        },
        None => None,
    };
    let scraper = Scraper::start(ScrapeSpec {
        targets: service_urls(system),
        metrics: DEFAULT_METRICS.iter().map(|m| m.to_string()).collect(),
        histograms: DEFAULT_HISTOGRAMS.iter().map(|h| h.to_string()).collect(),
        interval: Duration::from_secs(1),
        tls: system.scrape_tls(),
    })?;
    let sampler = ResourceSampler::start(system.clone(), Duration::from_secs(1));
    let statements = StatementCounter::start(system).await;
    let show = progress_printer(options.progress, timeline.active());

    // The timeline starts with the load's clock: a journey run first registers its users.
    let clock_started = Arc::new(tokio::sync::Notify::new());
    match &mut plan {
        LoadPlan::Journeys(config) => config.clock_started = Some(clock_started.clone()),
        LoadPlan::Requests(_) => clock_started.notify_one(),
    }
    let cancel = CancellationToken::new();
    let timeline_task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            tokio::select! {
                _ = clock_started.notified() => {}
                // The load failed in its set-up: nothing to run.
                _ = cancel.cancelled() => return (SystemTime::now(), TimelineOutcome::default()),
            }
            let wall = SystemTime::now();
            (
                wall,
                timeline.run(tokio::time::Instant::now(), cancel).await,
            )
        }
    });
    let search = capacity_search(checked)?;
    match &search {
        Some((staircase, _)) => eprintln!(
            "run: capacity search from {}/s to {}/s, {} a step, with the faults",
            staircase.start,
            staircase.max,
            humantime::format_duration(staircase.hold)
        ),
        None => eprintln!(
            "run: load and faults for {}",
            humantime::format_duration(plan.schedule().duration())
        ),
    }
    let load = async {
        match (plan, search) {
            (plan, Some((staircase, judge))) => {
                let mut number = 0;
                let gates = judge.written.clone();
                let on_step = |step: &CapacityStep| {
                    number += 1;
                    eprintln!("{}", capacity::step_line(number, step));
                };
                capacity::find_max(&plan, &staircase, gates, &judge, on_step).await
            }
            (LoadPlan::Requests(config), None) => engine::run(config, show).await,
            (LoadPlan::Journeys(config), None) => journeys::run(config, show).await,
        }
    };
    let results = tokio::select! {
        results = load => results,
        _ = &mut interrupted => {
            cancel.cancel();
            let _ = timeline_task.await;
            return Err(RunError::Interrupted);
        }
    };
    if options.progress {
        eprint!("\r\x1b[2K");
    }
    cancel.cancel();
    let (timeline_wall, timeline) = timeline_task
        .await
        .map_err(|e| RunError::Timeline(e.to_string()))?;
    let mut results = results?;
    results.warm_up = warm_up;
    Ok(Loaded {
        results,
        timeline,
        timeline_wall,
        scraper,
        sampler,
        statements,
    })
}

/// The scenario's `[load.find_max]`, when it has one: the staircase and the judge of its
/// SLO gates. The search runs against the system this run started, with the fault
/// timeline and the scrape alongside, as a single load would; the results are those of
/// the step at capacity, with every step under `capacity`.
fn capacity_search(checked: &CheckedScenario) -> Result<Option<(Staircase, SloJudge)>, RunError> {
    let Some(spec) = &checked.scenario.load.find_max else {
        return Ok(None);
    };
    // Checked with the scenario, so this cannot fail here; named all the same.
    let staircase = spec
        .staircase()
        .map_err(|reason| faultline_loadgen::LoadError::Scenario {
            path: checked.scenario.path.display().to_string(),
            reason,
        })?;
    let judge = SloJudge {
        gates: checked.capacity_gates.clone(),
        written: spec.gates.clone(),
    };
    Ok(Some((staircase, judge)))
}

/// Every service replica's URL, for the `/metrics` scrape.
pub(crate) fn service_urls(system: &System) -> Vec<String> {
    ServiceKind::ALL
        .into_iter()
        .flat_map(|kind| (1..).map_while(move |replica| system.service_url(kind, replica)))
        .collect()
}

/// The live progress line, with the faults in force.
fn progress_printer(live: bool, active: ActiveFaults) -> impl Fn(&Progress) + Send + Sync {
    move |progress: &Progress| {
        if !live {
            return;
        }
        let faults = active.summary();
        let faults = if faults.is_empty() {
            String::new()
        } else {
            format!("  faults: {faults}")
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{}{faults}", progress_line(progress));
        let _ = stderr.flush();
    }
}

/// After the load: fault windows, the scrape and the checker into results; then
/// results, report and gates on disk.
async fn finish(
    checked: &CheckedScenario,
    options: &RunOptions,
    system: &System,
    loaded: Loaded,
    readiness: &[(String, Transitions)],
) -> Result<RunOutcome, RunError> {
    let Loaded {
        mut results,
        timeline,
        timeline_wall,
        scraper,
        sampler,
        statements,
    } = loaded;
    let fault_failures: Vec<String> = timeline
        .failures
        .iter()
        .map(|f| {
            format!(
                "fault #{} ({}) could not be applied: {}",
                f.number, f.label, f.error
            )
        })
        .collect();
    for failure in &fault_failures {
        eprintln!("run: {failure}");
    }
    results.faults = fault_windows(&timeline, timeline_wall, readiness);
    let started_at =
        humantime::parse_rfc3339(&results.metadata.started_at).unwrap_or(timeline_wall);
    let scraped = scraper.finish_all(started_at).await;
    results.server_metrics = scraped.series;
    results.server_histograms = scraped.histograms;
    results.resources = sampler.finish(started_at).await;
    results.database = statements.finish().await;
    if let Some(ledger) = results.write_ledger.clone() {
        // The warm-up's orders are the system's too: checked with the load's.
        let mut ledgers = vec![PathBuf::from(&ledger)];
        ledgers.extend(
            results
                .warm_up
                .as_ref()
                .and_then(|w| w.ledger.as_ref())
                .map(PathBuf::from),
        );
        results.checker = check(system, &ledgers, options.settle_deadline).await;
    }
    traces::fetch(system, &mut results).await;
    prometheus::record(system, &mut results, started_at).await;
    results.gates = checked.scenario.gates.clone();
    results.scenario_text = Some(checked.scenario.text.clone());

    let out = &options.output;
    let results_path = out.join("results.json");
    results
        .write(&results_path)
        .map_err(|e| RunError::Results(e.to_string()))?;
    let baseline = options.baseline.as_ref().map(|b| Baseline {
        results: &b.results,
        path: b.path.clone(),
        budget: b.budget,
        latency_floor: b.latency_floor,
    });
    // The gates were checked with the scenario; they are judged once, here, and the
    // report is built from that verdict.
    let claims = Claims::builtin()?;
    let gates = GateReport::judge(&results, &checked.gates, baseline.as_ref(), &claims.groups);
    let report = Report::build(&results, &claims, gates)?;
    let written = report.write_all(out)?;
    let gates = report.gates;
    Ok(RunOutcome {
        results,
        gates,
        results_path,
        report_path: written.index,
        junit_path: written.junit,
        summary_path: written.summary,
        fault_failures,
    })
}

/// The timeline's windows (seconds from its start) as results' wall-clock windows, each
/// with how long its replica took to be ready again when it was watched.
fn fault_windows(
    timeline: &TimelineOutcome,
    wall: SystemTime,
    readiness: &[(String, Transitions)],
) -> Vec<FaultWindow> {
    let when =
        |offset: f64| wall + Duration::try_from_secs_f64(offset.max(0.0)).unwrap_or_default();
    let at =
        |offset: f64| TimePoint::At(humantime::format_rfc3339_millis(when(offset)).to_string());
    timeline
        .windows
        .iter()
        .map(|w| FaultWindow {
            label: w.label.clone(),
            kind: w.kind.clone(),
            target: w.target.clone(),
            start: at(w.start),
            end: w.end.map(at),
            ready_after_secs: readiness
                .iter()
                .find(|(target, _)| *target == w.target)
                .zip(w.end)
                .and_then(|((_, seen), end)| recovery::ready_after(seen, when(w.start), when(end))),
            steps: w.steps.iter().map(|step| step.map(|o| at(*o))).collect(),
        })
        .collect()
}

/// Drains and checks every order of the ledger against the services' databases; `None`
/// (and the reason on stderr) when the check could not be made, so checker gates fail
/// as "not measured" rather than pass.
async fn check(
    system: &System,
    ledgers: &[PathBuf],
    settle_deadline: Duration,
) -> Option<CheckerResults> {
    let mut entries = Vec::new();
    for ledger in ledgers {
        match Ledger::read(ledger) {
            Ok(read) => entries.extend(read),
            Err(error) => {
                eprintln!("run: the checker cannot read the ledger: {error}");
                return None;
            }
        }
    }
    let orders: Vec<LedgerOrder> = entries
        .iter()
        .map(|entry| LedgerOrder {
            order_id: entry.order_id.as_deref().and_then(|id| id.parse().ok()),
            idempotency_key: entry.idempotency_key.clone(),
            acknowledged: entry.outcome == WriteOutcome::Acknowledged,
        })
        .collect();
    eprintln!(
        "run: checking {} ledger entries (settling for up to {})",
        orders.len(),
        humantime::format_duration(settle_deadline)
    );
    let spec = CheckSpec {
        settle_deadline,
        poll_interval: Duration::from_millis(250),
    };
    match checker::check(&system.database_urls, &orders, &spec).await {
        Ok(report) => Some(CheckerResults {
            checked: report.checked,
            lost: report.lost,
            duplicated: report.duplicated,
            inconsistent: report.inconsistent,
            settle_secs: report.settle_secs,
            notes: report.notes,
        }),
        Err(error) => {
            eprintln!("run: the consistency check failed: {error}");
            None
        }
    }
}
