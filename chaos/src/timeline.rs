//! The fault timeline of a run: applies each validated [`Fault`] to its named target at
//! its offset from the start of load, heals it when its duration is up, and returns the
//! [`FaultWindow`]s that actually happened, for `results.json` and the report's shading.
//!
//! Targets are bound by name before anything starts ([`Timeline::new`]), so a typo in a
//! scenario fails the run up front rather than halfway through it. The timeline runs
//! concurrently with the load (spawn [`Timeline::run`]) and ends when every fault has
//! ended, or when cancelled. Whatever way it ends — cancelled, or its future dropped
//! mid-run — every fault still in force is healed: proxies are cleared of it and
//! paused processes get SIGCONT.
//!
//! A fault that fails to apply (say, a kill while the supervisor is restarting the
//! process) does not stop the run: it is reported in [`TimelineOutcome::failures`] and
//! has no window.
//!
//! How a run uses it:
//!
//! ```no_run
//! # async fn example(orders_1: std::sync::Arc<dyn faultline_chaos::ProcessControl>)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use faultline_chaos::{spec, CancellationToken, FaultProxy, Targets, Timeline};
//!
//! let faults = spec::parse_faults(&std::fs::read_to_string("scenario.toml")?)?;
//! let kafka = FaultProxy::start("127.0.0.1:0".parse()?, "127.0.0.1:9092".parse()?).await?;
//! let mut targets = Targets::new();
//! targets.add_proxy("kafka", kafka.handle()).add_process("orders-1", orders_1);
//! let timeline = Timeline::new(faults, &targets)?; // unknown targets fail here
//! let active = timeline.active(); // for the progress line: active.summary()
//! let cancel = CancellationToken::new();
//! let start = tokio::time::Instant::now(); // the instant load starts
//! let faults_task = tokio::spawn(timeline.run(start, cancel.clone()));
//! // ... run the load ...
//! cancel.cancel(); // load is over: heal whatever is still in force
//! let outcome = faults_task.await?;
//! for window in &outcome.windows {
//!     println!("{} from {}s to {:?}", window.label, window.start, window.end);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deploy::{Deployable, Deployment, ReplicaStep, StepWindow};
use crate::process::{self, BoxFuture, PauseGuard, ProcessControl, ProcessError};
use crate::proxy::{ProxyHandle, ProxyHeal};
use crate::spec::{Fault, FaultAction};

/// The named things faults act on.
#[derive(Clone, Default)]
pub struct Targets {
    /// A name may stand for several proxies (e.g. `kafka`: one per broker), which every
    /// fault on it acts on together.
    proxies: BTreeMap<String, Vec<ProxyHandle>>,
    processes: BTreeMap<String, Arc<dyn ProcessControl>>,
    services: BTreeMap<String, Arc<dyn Deployable>>,
}

impl Targets {
    pub fn new() -> Targets {
        Targets::default()
    }

    /// Binds `name` (e.g. `kafka`) to a proxy, for partition, reset, latency,
    /// bandwidth, slicer and timeout faults.
    pub fn add_proxy(&mut self, name: impl Into<String>, proxy: ProxyHandle) -> &mut Targets {
        self.add_proxies(name, vec![proxy])
    }

    /// Binds `name` to several proxies that faults on it act on together, e.g. `kafka` to
    /// the proxy in front of each broker.
    pub fn add_proxies(
        &mut self,
        name: impl Into<String>,
        proxies: Vec<ProxyHandle>,
    ) -> &mut Targets {
        self.proxies.insert(name.into(), proxies);
        self
    }

    /// Binds `name` (e.g. `orders-1`) to a process, for kill, terminate, pause and
    /// restart faults.
    pub fn add_process(
        &mut self,
        name: impl Into<String>,
        process: Arc<dyn ProcessControl>,
    ) -> &mut Targets {
        self.processes.insert(name.into(), process);
        self
    }

    /// Binds `name` (e.g. `orders`) to a service whose replicas rollout and blue-green
    /// faults replace.
    pub fn add_deployable(
        &mut self,
        name: impl Into<String>,
        service: Arc<dyn Deployable>,
    ) -> &mut Targets {
        self.services.insert(name.into(), service);
        self
    }
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("proxies", &self.proxies.keys().collect::<Vec<_>>())
            .field("processes", &self.processes.keys().collect::<Vec<_>>())
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A timeline that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("fault #{number} ({label}): no {wanted} named {target:?} (known: {known})")]
    UnknownTarget {
        number: usize,
        label: String,
        target: String,
        /// `proxy`, `process` or `deployable service`.
        wanted: &'static str,
        known: String,
    },
    #[error("fault #{number} ({label}): {target:?} cannot be restarted: nothing supervises it")]
    CannotRestart {
        number: usize,
        label: String,
        target: String,
    },
}

/// One fault as it happened. Offsets are seconds from the timeline's start (the start of
/// load); the root maps this onto `results.json`'s `FaultWindow`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultWindow {
    /// e.g. `latency 200ms±50ms kafka`.
    pub label: String,
    /// e.g. `latency`.
    pub kind: String,
    pub target: String,
    /// When the fault took effect.
    pub start: f64,
    /// When it was healed (equal to `start` for kill and terminate; when the restart
    /// finished for restart); `None` if it was still in force when the timeline was
    /// cancelled (it is healed then all the same).
    pub end: Option<f64>,
    /// A deployment's replacements, in order (empty for other faults).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepWindow>,
}

/// A fault that could not be applied or healed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultFailure {
    pub number: usize,
    pub label: String,
    pub error: String,
}

/// What a timeline did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimelineOutcome {
    /// In the order the faults took effect.
    pub windows: Vec<FaultWindow>,
    pub failures: Vec<FaultFailure>,
    /// Whether it was cancelled before every fault had ended.
    pub cancelled: bool,
}

/// A fault in force right now.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveFault {
    pub number: usize,
    pub label: String,
    /// Seconds from the start.
    pub since: f64,
}

/// The faults in force, for a live progress line. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ActiveFaults {
    receiver: watch::Receiver<Vec<ActiveFault>>,
}

impl ActiveFaults {
    /// The faults in force, in the order they took effect.
    pub fn current(&self) -> Vec<ActiveFault> {
        self.receiver.borrow().clone()
    }

    /// Their labels joined with ", " (empty when none).
    pub fn summary(&self) -> String {
        let active = self.receiver.borrow();
        let labels: Vec<&str> = active.iter().map(|a| a.label.as_str()).collect();
        labels.join(", ")
    }

    /// Waits until the set changes; `false` once the timeline is gone.
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }
}

#[derive(Clone)]
enum Bound {
    Proxy(Vec<ProxyHandle>),
    Process(Arc<dyn ProcessControl>),
    Service(Arc<dyn Deployable>),
}

/// Work a fault does aside, while the timeline goes on: a restart or a deployment.
type Aside = BoxFuture<'static, Result<Vec<ReplicaStep>, ProcessError>>;

struct Planned {
    fault: Fault,
    label: String,
    target: Bound,
}

/// Faults bound to their targets, ready to run.
pub struct Timeline {
    planned: Vec<Planned>,
    active: watch::Sender<Vec<ActiveFault>>,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field(
                "faults",
                &self.planned.iter().map(|p| &p.label).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Timeline {
    /// Binds every fault to its target; an unknown target (or a restart of a process
    /// nothing supervises) is an error here, before anything runs.
    pub fn new(faults: Vec<Fault>, targets: &Targets) -> Result<Timeline, TimelineError> {
        let mut planned = Vec::with_capacity(faults.len());
        for fault in faults {
            let label = fault.label();
            let target = if fault.kind().is_deployment() {
                let Some(service) = targets.services.get(&fault.target) else {
                    return Err(unknown(
                        &fault,
                        label,
                        "deployable service",
                        &targets.services,
                    ));
                };
                Bound::Service(service.clone())
            } else if fault.kind().is_process() {
                let Some(process) = targets.processes.get(&fault.target) else {
                    return Err(unknown(&fault, label, "process", &targets.processes));
                };
                if fault.action == FaultAction::Restart && !process.can_restart() {
                    return Err(TimelineError::CannotRestart {
                        number: fault.number,
                        label,
                        target: fault.target.clone(),
                    });
                }
                Bound::Process(process.clone())
            } else {
                let Some(proxies) = targets.proxies.get(&fault.target) else {
                    return Err(unknown(&fault, label, "proxy", &targets.proxies));
                };
                Bound::Proxy(proxies.clone())
            };
            planned.push(Planned {
                fault,
                label,
                target,
            });
        }
        let (active, _) = watch::channel(Vec::new());
        Ok(Timeline { planned, active })
    }

    /// The faults in force while [`Timeline::run`] goes on.
    pub fn active(&self) -> ActiveFaults {
        ActiveFaults {
            receiver: self.active.subscribe(),
        }
    }

    /// Runs the faults against `start` (the start of load) until every fault has ended
    /// or `cancel` fires. Faults without a duration (other than instantaneous ones) last
    /// until cancelled, so a run that has them must cancel the timeline when load ends.
    /// Every fault in force is healed before this returns, and also if this future is
    /// dropped.
    pub async fn run(
        self,
        start: impl Into<Instant>,
        cancel: CancellationToken,
    ) -> TimelineOutcome {
        let start = start.into();
        let mut run = Run {
            start,
            planned: self.planned,
            active: self.active,
            open: BTreeMap::new(),
            outcome: TimelineOutcome::default(),
            window_of: HashMap::new(),
        };
        let events = run.events();
        let mut next = 0;
        // Restarts and deployments take seconds; they run aside so later faults stay on time.
        let mut restarts: JoinSet<Result<Vec<ReplicaStep>, ProcessError>> = JoinSet::new();
        let mut restart_of: HashMap<Id, usize> = HashMap::new();
        loop {
            let due = events.get(next).map(|event| start + event.offset);
            if due.is_none() && restarts.is_empty() && run.open.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    run.outcome.cancelled = true;
                    break;
                }
                Some(joined) = restarts.join_next_with_id(), if !restarts.is_empty() => {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, result),
                        Err(error) => (error.id(), Err(ProcessError::Restart {
                            target: "restart task".into(),
                            reason: error.to_string(),
                        })),
                    };
                    if let Some(index) = restart_of.remove(&id) {
                        run.finish_aside(index, result);
                    }
                }
                _ = sleep_until_some(due) => {
                    let event = events[next];
                    next += 1;
                    match event.what {
                        What::Heal => run.heal(event.index),
                        What::Apply => {
                            if let Some(aside) = run.apply(event.index) {
                                let handle = restarts.spawn(aside);
                                restart_of.insert(handle.id(), event.index);
                            }
                        }
                    }
                }
            }
        }
        // Cancelled: heal what is in force; its window stays open-ended (`end: None`).
        // Restarts still running are aborted with `restarts` (their windows stay open).
        run.heal_all();
        run.active.send_replace(Vec::new());
        std::mem::take(&mut run.outcome)
    }
}

fn unknown<T>(
    fault: &Fault,
    label: String,
    wanted: &'static str,
    known: &BTreeMap<String, T>,
) -> TimelineError {
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.keys().cloned().collect::<Vec<_>>().join(", ")
    };
    TimelineError::UnknownTarget {
        number: fault.number,
        label,
        target: fault.target.clone(),
        wanted,
        known,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    // Heals sort first: a fault may start exactly when another of its kind ends.
    Heal,
    Apply,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    offset: Duration,
    what: What,
    index: usize,
}

/// How to undo a fault in force.
enum Undo {
    /// SIGCONT when dropped.
    Pause(PauseGuard),
    /// Each proxy of the target with what heals it.
    Proxy(Vec<(ProxyHandle, ProxyHeal)>),
}

impl Undo {
    fn heal(self) -> Result<(), ProcessError> {
        match self {
            Undo::Pause(guard) => guard.resume(),
            Undo::Proxy(healing) => {
                for (proxy, heal) in healing {
                    proxy.heal(heal);
                }
                Ok(())
            }
        }
    }
}

/// The state of one run; dropping it heals whatever is still in force.
struct Run {
    start: Instant,
    planned: Vec<Planned>,
    active: watch::Sender<Vec<ActiveFault>>,
    /// Faults in force (by index into `planned`) and how to undo them. Restarts in
    /// flight are here too, with no undo.
    open: BTreeMap<usize, Option<Undo>>,
    outcome: TimelineOutcome,
    /// Index into `outcome.windows` of each applied fault.
    window_of: HashMap<usize, usize>,
}

impl Run {
    fn events(&self) -> Vec<Event> {
        let mut events = Vec::new();
        for (index, planned) in self.planned.iter().enumerate() {
            let fault = &planned.fault;
            events.push(Event {
                offset: fault.at,
                what: What::Apply,
                index,
            });
            if let Some(end) = fault.end() {
                events.push(Event {
                    offset: end,
                    what: What::Heal,
                    index,
                });
            }
        }
        events.sort_by_key(|e| (e.offset, e.what, e.index));
        events
    }

    fn now(&self) -> f64 {
        Instant::now()
            .saturating_duration_since(self.start)
            .as_secs_f64()
    }

    /// Applies fault `index`. Returns the work to run aside when it is a restart or a
    /// deployment.
    fn apply(&mut self, index: usize) -> Option<Aside> {
        let planned = &self.planned[index];
        let fault = &planned.fault;
        let applied = match &planned.target {
            Bound::Proxy(proxies) => {
                let healing: Vec<(ProxyHandle, ProxyHeal)> = proxies
                    .iter()
                    .filter_map(|proxy| {
                        let heal = proxy.apply(fault.action, fault.duration.is_some());
                        heal.map(|heal| (proxy.clone(), heal))
                    })
                    .collect();
                // Nothing to heal: an instantaneous reset.
                let instant = healing.is_empty();
                Ok(((!instant).then_some(Undo::Proxy(healing)), instant))
            }
            Bound::Process(process) => apply_to_process(process, fault.action),
            // A deployment is in force until its work aside ends.
            Bound::Service(_) => Ok((None, false)),
        };
        let (undo, instant) = match applied {
            Ok(applied) => applied,
            Err(error) => {
                tracing::warn!(fault = %planned.label, %error, "fault could not be applied");
                self.outcome.failures.push(FaultFailure {
                    number: fault.number,
                    label: planned.label.clone(),
                    error: error.to_string(),
                });
                return None;
            }
        };
        let now = self.now();
        tracing::info!(fault = %planned.label, at = now, "fault applied");
        self.window_of.insert(index, self.outcome.windows.len());
        self.outcome.windows.push(FaultWindow {
            label: planned.label.clone(),
            kind: fault.kind().name().to_string(),
            target: fault.target.clone(),
            start: now,
            end: instant.then_some(now),
            steps: Vec::new(),
        });
        if instant {
            return None;
        }
        self.open.insert(index, undo);
        let active = ActiveFault {
            number: fault.number,
            label: planned.label.clone(),
            since: now,
        };
        self.active.send_modify(|list| list.push(active));
        match (&planned.target, fault.action) {
            (Bound::Process(p), FaultAction::Restart) => {
                let process = p.clone();
                Some(Box::pin(async move {
                    process.restart().await.map(|()| Vec::new())
                }))
            }
            (Bound::Service(service), FaultAction::Rollout { pause, drain }) => {
                Some(deploy(service, Deployment::Rollout { pause, drain }))
            }
            (Bound::Service(service), FaultAction::BlueGreen { drain }) => {
                Some(deploy(service, Deployment::BlueGreen { drain }))
            }
            _ => None,
        }
    }

    /// Ends fault `index` (if it is in force) and closes its window.
    fn heal(&mut self, index: usize) {
        let Some(undo) = self.open.remove(&index) else {
            return;
        };
        let result = undo.map_or(Ok(()), Undo::heal);
        self.close(index, result);
    }

    /// Ends a restart or deployment; a deployment's steps join its window.
    fn finish_aside(&mut self, index: usize, result: Result<Vec<ReplicaStep>, ProcessError>) {
        self.open.remove(&index);
        let steps = match result {
            Ok(steps) => steps,
            Err(error) => return self.close(index, Err(error)),
        };
        if let Some(window) = self
            .window_of
            .get(&index)
            .and_then(|w| self.outcome.windows.get_mut(*w))
        {
            let start = self.start;
            window.steps = steps
                .iter()
                .map(|step| step.map(|at| at.saturating_duration_since(start).as_secs_f64()))
                .collect();
        }
        self.close(index, Ok(()));
    }

    fn close(&mut self, index: usize, result: Result<(), ProcessError>) {
        let now = self.now();
        let planned = &self.planned[index];
        if let Err(error) = result {
            tracing::warn!(fault = %planned.label, %error, "fault could not be healed");
            self.outcome.failures.push(FaultFailure {
                number: planned.fault.number,
                label: planned.label.clone(),
                error: error.to_string(),
            });
        } else {
            tracing::info!(fault = %planned.label, at = now, "fault ended");
        }
        if let Some(window) = self
            .window_of
            .get(&index)
            .and_then(|w| self.outcome.windows.get_mut(*w))
        {
            window.end = Some(now);
        }
        let number = planned.fault.number;
        self.active
            .send_modify(|list| list.retain(|a| a.number != number));
    }

    /// Heals everything in force without closing windows (they stay open-ended).
    fn heal_all(&mut self) {
        for (index, undo) in std::mem::take(&mut self.open) {
            if let Some(Err(error)) = undo.map(Undo::heal) {
                let planned = &self.planned[index];
                tracing::warn!(fault = %planned.label, %error, "fault could not be healed");
                self.outcome.failures.push(FaultFailure {
                    number: planned.fault.number,
                    label: planned.label.clone(),
                    error: error.to_string(),
                });
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Reached with faults in force only when the `run` future is dropped mid-way.
        self.heal_all();
        self.active.send_replace(Vec::new());
    }
}

/// Applies a process fault; returns how to undo it and whether it is instantaneous. A
/// restart is neither: it stays in force until the caller's restart task finishes.
fn apply_to_process(
    process: &Arc<dyn ProcessControl>,
    action: FaultAction,
) -> Result<(Option<Undo>, bool), ProcessError> {
    match action {
        FaultAction::Kill => process::kill(process.as_ref()).map(|_| (None, true)),
        FaultAction::Terminate => process::terminate(process.as_ref()).map(|_| (None, true)),
        FaultAction::Pause => {
            process::pause(process.clone()).map(|guard| (Some(Undo::Pause(guard)), false))
        }
        FaultAction::Restart => Ok((None, false)),
        // Proxy faults never reach a process: `Timeline::new` binds by kind.
        _ => Ok((None, true)),
    }
}

fn deploy(service: &Arc<dyn Deployable>, deployment: Deployment) -> Aside {
    let service = service.clone();
    Box::pin(async move { service.deploy(deployment).await })
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
