//! `faultline run scenario.toml`: the whole job in one command.
//!
//! 1. Read the scenario: `[system]` (system::topology), `[load]` (loadgen::scenario),
//!    `[[faults]]` (chaos::spec), `[[gates]]` (kept in results, judged by reports). Every
//!    problem in the file is reported before anything starts (exit 2).
//! 2. Start the reference system on the real stack. A fault on `kafka`, `postgres` or
//!    `redis` puts a fault proxy in front of it that all the services' traffic goes
//!    through: each Kafka broker advertises its proxy's address (a proxy only in front of the
//!    bootstrap would be bypassed, as clients reconnect to the advertised address), and
//!    the services are given PostgreSQL's and Redis's URLs with the proxy's address.
//!    Seeding and the checker connect directly.
//! 3. Run the load, the fault timeline and the `/metrics` scrape together. Process
//!    faults act on the supervised services by name (`orders` is replica 1, or
//!    `orders-2`); a killed service is restarted by the supervisor.
//! 4. After the load, heal every fault, then let the system settle and check every order
//!    of the write ledger against the services' databases (system::checker): nothing
//!    acknowledged lost, nothing applied twice, the read model agreeing.
//! 5. Write `results.json`, `index.html`, `junit.xml` and `summary.md` into the output
//!    directory; the exit code is the gates' verdict (0 pass, 1 fail, 2 bad input).

use std::{
    io::{IsTerminal as _, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use faultline_chaos::{
    process::BoxFuture, CancellationToken, FaultProxy, ProcessControl, ProcessError, Signal,
    Targets, Timeline,
};
use faultline_loadgen::{
    engine,
    journeys::{
        self,
        ledger::{Ledger, WriteOutcome},
    },
    results::{CheckerResults, FaultWindow, TimePoint},
    scenario::{LoadPlan, ScenarioFile},
    scrape::{ScrapeSpec, Scraper, DEFAULT_METRICS},
    summary::{progress_line, summary_table},
    Progress, RunInfo,
};
use faultline_reports::cli::{run_gate, run_report, GateArgs, GateSources, ReportArgs};
use faultline_system::{
    checker::{self, CheckSpec, LedgerOrder},
    services::ServiceKind,
    supervisor::{System, SystemSpec},
    topology::Topology,
    Dependency,
};

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

/// A problem with the scenario: printed, exit code 2.
struct Usage(String);

fn usage(message: impl std::fmt::Display) -> Usage {
    Usage(message.to_string())
}

/// Everything read from the scenario file, checked.
struct Plan {
    scenario: ScenarioFile,
    text: String,
    faults: Vec<faultline_chaos::Fault>,
    spec: SystemSpec,
    /// The dependencies a fault targets, each to get a fault proxy.
    proxied: Vec<Dependency>,
    name: String,
}

/// Starts a fault proxy in front of `upstream_port` on 127.0.0.1.
async fn proxy_to(name: &str, upstream_port: u16) -> anyhow::Result<FaultProxy> {
    FaultProxy::start(
        "127.0.0.1:0".parse()?,
        format!("127.0.0.1:{upstream_port}").parse()?,
    )
    .await
    .with_context(|| format!("starting the fault proxy for {name}"))
}

/// Starts fault proxies in front of each dependency in `proxied` (one per Kafka broker)
/// and points `spec` at them: the dependency gets fixed ports (the proxies' upstreams),
/// and the services the proxies' addresses.
async fn start_proxies(
    spec: &mut SystemSpec,
    proxied: &[Dependency],
) -> anyhow::Result<Vec<(Dependency, Vec<FaultProxy>)>> {
    let mut all = Vec::new();
    for &dependency in proxied {
        let mut proxies = Vec::new();
        for (index, port) in spec.fix_ports(dependency)?.into_iter().enumerate() {
            let name = match dependency {
                Dependency::Kafka => format!("kafka-{}", index + 1),
                _ => dependency.name().to_string(),
            };
            proxies.push(proxy_to(&name, port).await?);
        }
        let addresses: Vec<_> = proxies.iter().map(FaultProxy::local_addr).collect();
        spec.route_through(dependency, &addresses)?;
        all.push((dependency, proxies));
    }
    Ok(all)
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = match read_plan(&args.scenario) {
        Ok(plan) => plan,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let out = match &args.output {
        Some(dir) => dir.clone(),
        None => {
            let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .replace([':', '-'], "");
            PathBuf::from("reports/out").join(format!(
                "{}-{}",
                plan.name,
                stamp.trim_end_matches('Z')
            ))
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let Plan {
        scenario,
        text,
        faults,
        mut spec,
        proxied,
        name,
    } = plan;

    let proxies = start_proxies(&mut spec, &proxied).await?;

    eprintln!("run: starting the reference system");
    let started = std::time::Instant::now();
    let system = Arc::new(
        System::start(spec)
            .await
            .context("starting the reference system")?,
    );
    eprintln!(
        "run: the system is up in {:.1} s; gateway {}",
        started.elapsed().as_secs_f64(),
        system.gateway_url
    );

    let outcome = drive(
        &args,
        &scenario,
        &text,
        &name,
        faults,
        system.clone(),
        &proxies,
        &out,
    )
    .await;
    eprintln!("run: stopping the system");
    match Arc::try_unwrap(system) {
        Ok(system) => system.stop().await,
        // A restart still holds it: dropping it kills every process all the same.
        Err(system) => drop(system),
    }
    for proxy in proxies.into_iter().flat_map(|(_, proxies)| proxies) {
        proxy.stop().await;
    }
    match outcome {
        Ok(code) => Ok(code),
        Err(DriveError::Usage(Usage(message))) => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(2))
        }
        Err(DriveError::Failed(error)) => Err(error),
    }
}

fn read_plan(path: &Path) -> Result<Plan, Usage> {
    let shown = path.display().to_string();
    let (scenario, text) = ScenarioFile::read(path).map_err(usage)?;
    let topology: Topology = match &scenario.system {
        Some(value) => value
            .clone()
            .try_into()
            .map_err(|e| usage(format!("scenario {shown}: [system]: {e}")))?,
        None => Topology::default(),
    };
    let faults = faultline_chaos::spec::parse_faults(&text)
        .map_err(|e| usage(format!("scenario {shown}: {e}")))?;
    // Check [load] now (with a stand-in target), not after the system is up.
    scenario
        .load
        .plan(Some("http://127.0.0.1:1"), RunInfo::default(), &shown)
        .map_err(usage)?;
    let bin =
        std::env::current_exe().map_err(|e| usage(format!("finding the faultline binary: {e}")))?;
    let mut spec = SystemSpec::new(bin);
    topology
        .apply(&mut spec)
        .map_err(|e| usage(format!("scenario {shown}: {e}")))?;
    for fault in &faults {
        if !is_target(&spec, &fault.target) {
            return Err(usage(format!(
                "scenario {shown}: fault #{} targets {:?}: name a service ({}), a replica such as orders-1, one of {}, or a broker such as kafka-1",
                fault.number,
                fault.target,
                ServiceKind::ALL.map(|k| k.name()).join(", "),
                Dependency::ALL.map(Dependency::name).join(", ")
            )));
        }
        let on_dependency = spec.dependency_named(&fault.target).is_some();
        if on_dependency == fault.kind().is_process() {
            return Err(usage(format!(
                "scenario {shown}: fault #{} ({}) on {:?}: kill, terminate, pause and restart act on services; partition, reset, latency, bandwidth, slicer and timeout on {} or a broker such as kafka-1",
                fault.number,
                fault.kind().name(),
                fault.target,
                Dependency::ALL.map(Dependency::name).join(", ")
            )));
        }
    }
    let proxied: Vec<Dependency> = Dependency::ALL
        .into_iter()
        .filter(|dependency| {
            faults
                .iter()
                .any(|f| spec.dependency_named(&f.target) == Some(*dependency))
        })
        .collect();
    for dependency in &proxied {
        spec.check_local(*dependency)
            .map_err(|why| usage(format!("scenario {shown}: {why}")))?;
    }
    let name = scenario.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    });
    Ok(Plan {
        scenario,
        text,
        faults,
        spec,
        proxied,
        name,
    })
}

/// Whether `name` is something the run binds faults to: a proxied dependency (or one
/// Kafka broker), a service (its first replica), or `<service>-<n>` with `n` among the
/// topology's replicas.
fn is_target(spec: &SystemSpec, name: &str) -> bool {
    if spec.dependency_named(name).is_some() {
        return true;
    }
    ServiceKind::ALL.into_iter().any(|kind| {
        let replicas = spec.replicas.get(&kind).copied().unwrap_or(1);
        name == kind.name()
            || name
                .strip_prefix(kind.name())
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| (1..=replicas).contains(&n))
    })
}

enum DriveError {
    Usage(Usage),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for DriveError {
    fn from(error: E) -> Self {
        DriveError::Failed(error.into())
    }
}

/// Load, faults and scrape together; then the checker, results, report and gates.
#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &RunArgs,
    scenario: &ScenarioFile,
    text: &str,
    name: &str,
    faults: Vec<faultline_chaos::Fault>,
    system: Arc<System>,
    proxies: &[(Dependency, Vec<FaultProxy>)],
    out: &Path,
) -> Result<ExitCode, DriveError> {
    let scenario_path = args.scenario.display().to_string();
    let mut targets = Targets::new();
    let mut scrape_targets = Vec::new();
    for kind in ServiceKind::ALL {
        for replica in 1.. {
            let Some(url) = system.service_url(kind, replica) else {
                break;
            };
            scrape_targets.push(url);
            let control: Arc<dyn ProcessControl> = Arc::new(ServiceFaults {
                system: system.clone(),
                kind,
                replica,
            });
            if replica == 1 {
                targets.add_process(kind.name(), control.clone());
            }
            targets.add_process(format!("{}-{replica}", kind.name()), control);
        }
    }
    for (dependency, proxies) in proxies {
        // `kafka` is every broker at once; `kafka-<n>` one of them.
        targets.add_proxies(
            dependency.name(),
            proxies.iter().map(|p| p.handle()).collect(),
        );
        if *dependency == Dependency::Kafka {
            for (index, proxy) in proxies.iter().enumerate() {
                targets.add_proxy(format!("kafka-{}", index + 1), proxy.handle());
            }
        }
    }
    let timeline = Timeline::new(faults, &targets)
        .map_err(|e| DriveError::Usage(usage(format!("scenario {scenario_path}: {e}"))))?;
    let active = timeline.active();

    let run_info = RunInfo {
        scenario: Some(name.to_string()),
        faultline_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        git_commit: option_env!("FAULTLINE_GIT_COMMIT").map(str::to_string),
    };
    let mut plan = scenario
        .load
        .plan(Some(&system.gateway_url), run_info, &scenario_path)
        .map_err(|e| DriveError::Usage(usage(e)))?;
    let ledger_path = out.join("ledger.jsonl");
    if let LoadPlan::Journeys(config) = &mut plan {
        if config.ledger.is_none() {
            config.ledger = Some(ledger_path.clone());
        }
    }

    let scraper = Scraper::start(ScrapeSpec {
        targets: scrape_targets,
        metrics: DEFAULT_METRICS.iter().map(|m| m.to_string()).collect(),
        interval: Duration::from_secs(1),
    });
    let live = !args.quiet && std::io::stderr().is_terminal();
    let show = {
        let active = active.clone();
        move |progress: &Progress| {
            if live {
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
    };

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
                _ = cancel.cancelled() => return (SystemTime::now(), Default::default()),
            }
            let wall = SystemTime::now();
            (
                wall,
                timeline.run(tokio::time::Instant::now(), cancel).await,
            )
        }
    });
    eprintln!(
        "run: load and faults for {}",
        humantime::format_duration(plan.schedule().duration())
    );
    let load = async {
        match plan {
            LoadPlan::Requests(config) => engine::run(config, show).await,
            LoadPlan::Journeys(config) => journeys::run(config, show).await,
        }
    };
    let results = tokio::select! {
        results = load => results,
        _ = super::terminated() => {
            cancel.cancel();
            let _ = timeline_task.await;
            eprintln!("\nrun: interrupted; every fault was healed");
            return Ok(ExitCode::from(130));
        }
    };
    if live {
        eprint!("\r\x1b[2K");
    }
    cancel.cancel();
    let (timeline_wall, outcome) = timeline_task.await.context("the fault timeline failed")?;
    let mut results = match results {
        Ok(results) => results,
        Err(error) if error.is_usage() => return Err(DriveError::Usage(usage(error))),
        Err(error) => return Err(error.into()),
    };
    for failure in &outcome.failures {
        eprintln!(
            "run: fault #{} ({}) could not be applied: {}",
            failure.number, failure.label, failure.error
        );
    }
    let at = |offset: f64| {
        let when = timeline_wall + Duration::try_from_secs_f64(offset.max(0.0)).unwrap_or_default();
        TimePoint::At(humantime::format_rfc3339_millis(when).to_string())
    };
    results.faults = outcome
        .windows
        .iter()
        .map(|w| FaultWindow {
            label: w.label.clone(),
            kind: w.kind.clone(),
            target: w.target.clone(),
            start: at(w.start),
            end: w.end.map(at),
        })
        .collect();
    let started_at =
        humantime::parse_rfc3339(&results.metadata.started_at).unwrap_or(timeline_wall);
    results.server_metrics = scraper.finish(started_at).await;
    if let Some(ledger) = results.write_ledger.clone() {
        results.checker = check(&system, Path::new(&ledger), args.settle_deadline).await;
    }
    results.gates = scenario.gates.clone();
    results.scenario_text = Some(text.to_string());

    let results_path = out.join("results.json");
    results.write(&results_path)?;
    println!("{}", summary_table(&results));

    let sources = GateSources {
        gates: Vec::new(),
        scenario: None,
        baseline: args.baseline.clone(),
        max_regression: args.max_regression.clone(),
        regression_floor: "1ms".into(),
        claims: None,
    };
    let report = run_report(&ReportArgs {
        results: results_path.clone(),
        output: Some(out.to_path_buf()),
        sources: sources.clone(),
    })
    .map_err(|e| DriveError::Failed(anyhow::anyhow!("writing the report: {e}")))?;
    let gates = run_gate(&GateArgs {
        results: results_path.clone(),
        output: Some(out.to_path_buf()),
        sources,
    })
    .map_err(|e| DriveError::Usage(usage(e)))?;
    println!("{}", gates.markdown);
    println!("results: {}", results_path.display());
    println!("report:  {}", report.display());
    println!("junit:   {}", gates.junit.display());
    Ok(ExitCode::from(gates.report.exit_code()))
}

/// Drains and checks every order of the ledger against the services' databases; `None`
/// (and the reason on stderr) when the check could not be made, so checker gates fail
/// as "not measured" rather than pass.
async fn check(
    system: &System,
    ledger: &Path,
    settle_deadline: Duration,
) -> Option<CheckerResults> {
    let entries = match Ledger::read(ledger) {
        Ok(entries) => entries,
        Err(error) => {
            eprintln!("run: the checker cannot read the ledger: {error}");
            return None;
        }
    };
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

/// One replica of a service, as a target of process faults.
struct ServiceFaults {
    system: Arc<System>,
    kind: ServiceKind,
    replica: usize,
}

impl ServiceFaults {
    fn name(&self) -> String {
        format!("{}-{}", self.kind.name(), self.replica)
    }
}

impl ProcessControl for ServiceFaults {
    fn signal(&self, signal: Signal) -> Result<u32, ProcessError> {
        self.system
            .signal(self.kind, self.replica, signal)
            .map_err(|e| ProcessError::NotRunning(format!("{}: {e}", self.name())))
    }

    fn can_restart(&self) -> bool {
        true
    }

    /// SIGTERM, then wait until the supervisor has started it again and it is ready.
    fn restart(&self) -> BoxFuture<'_, Result<(), ProcessError>> {
        Box::pin(async move {
            self.system
                .restart_and_wait(self.kind, self.replica, Duration::from_secs(60))
                .await
                .map_err(|e| ProcessError::Restart {
                    target: self.name(),
                    reason: e.to_string(),
                })
        })
    }
}
