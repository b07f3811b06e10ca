//! The fault timeline: binding, order, healing, windows, cancellation.

use std::os::unix::process::ExitStatusExt as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_chaos::process::{BoxFuture, PidProcess, ProcessControl, ProcessError, Signal};
use faultline_chaos::proxy::{FaultProxy, Faults, Latency};
use faultline_chaos::spec::parse_faults;
use faultline_chaos::timeline::{Targets, Timeline, TimelineError};
use faultline_chaos::{CancellationToken, Deployable, Deployment, ReplicaStep};
use tokio::time::Instant;

use crate::process::{sleeper, state, until_stopped};
use crate::{echo_server, within};

async fn proxy() -> FaultProxy {
    FaultProxy::start("127.0.0.1:0".parse().unwrap(), echo_server().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_timeline_applies_and_heals_faults_in_order_and_reports_windows() {
    let db = proxy().await;
    let (mut worker, pid) = sleeper();
    let mut targets = Targets::new();
    targets
        .add_proxy("db", db.handle())
        .add_process("worker", Arc::new(PidProcess(pid)));
    let faults = parse_faults(
        r#"
        [[faults]]
        at = "100ms"
        duration = "300ms"
        kind = "latency"
        target = "db"
        latency = "50ms"

        [[faults]]
        at = "200ms"
        duration = "500ms"
        kind = "pause"
        target = "worker"

        [[faults]]
        at = "800ms"
        duration = "200ms"
        kind = "partition"
        target = "db"

        [[faults]]
        at = "1100ms"
        kind = "kill"
        target = "worker"
        "#,
    )
    .unwrap();
    let timeline = Timeline::new(faults, &targets).unwrap();
    let mut active = timeline.active();

    // What was in force at each change, as the live progress line would see it.
    let db_handle = db.handle();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while active.changed().await {
            let summary = active.summary();
            // Signals land asynchronously: poll the state while the pause is in force
            // (a late watcher must not wait for a pause that has ended).
            let mut stopped = false;
            while active.summary().contains("pause worker") {
                if state(pid) == 'T' {
                    stopped = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen.push((summary, db_handle.faults(), stopped));
        }
        seen
    });

    let start = Instant::now();
    let outcome = within("timeline", timeline.run(start, CancellationToken::new())).await;
    assert!(!outcome.cancelled);
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);

    let labels: Vec<&str> = outcome.windows.iter().map(|w| w.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "latency 50ms db",
            "pause worker",
            "partition db",
            "kill worker"
        ]
    );
    let expected = [(0.1, 0.3), (0.2, 0.5), (0.8, 0.2), (1.1, 0.0)];
    // The schedule is absolute: each fault starts no earlier than its `at` and ends no
    // earlier than `at + duration` (a late start shortens the window, it does not
    // shift the end).
    for (window, (at, duration)) in outcome.windows.iter().zip(expected) {
        assert!(window.start >= at, "{window:?} started early");
        assert!(window.start < at + 1.0, "{window:?} started late");
        let end = window.end.unwrap();
        assert!(end >= at + duration, "{window:?} ended early");
        assert!(end < at + duration + 1.0, "{window:?} ended late");
    }
    assert_eq!(outcome.windows[3].start, outcome.windows[3].end.unwrap());
    assert_eq!(outcome.windows[0].kind, "latency");
    assert_eq!(outcome.windows[0].target, "db");

    // Everything healed; the worker was killed by the last fault.
    assert_eq!(db.faults(), Faults::default());
    let status = within("killed worker", worker.wait()).await.unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));

    let seen = within("watcher", watcher).await.unwrap();
    let latency = Some(Latency {
        delay: Duration::from_millis(50),
        jitter: Duration::ZERO,
    });
    assert!(
        seen.iter()
            .any(|(s, f, _)| s == "latency 50ms db" && f.upstream.latency == latency),
        "latency never in force: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(s, _, stopped)| s.contains("pause worker") && *stopped),
        "pause never in force: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(s, f, _)| s == "partition db" && f.partition),
        "partition never in force: {seen:?}"
    );
    assert_eq!(seen.last().map(|(s, _, _)| s.as_str()), Some(""));
}

#[tokio::test]
async fn cancelling_heals_everything_and_leaves_the_windows_open() {
    let db = proxy().await;
    let (_worker, pid) = sleeper();
    let mut targets = Targets::new();
    targets
        .add_proxy("db", db.handle())
        .add_process("worker", Arc::new(PidProcess(pid)));
    // No durations: in force until the run ends.
    let faults = parse_faults(
        r#"
        [[faults]]
        at = "0s"
        kind = "pause"
        target = "worker"

        [[faults]]
        at = "0s"
        kind = "partition"
        target = "db"

        [[faults]]
        at = "1h"
        kind = "kill"
        target = "worker"
        "#,
    )
    .unwrap();
    let timeline = Timeline::new(faults, &targets).unwrap();
    let mut active = timeline.active();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(timeline.run(Instant::now(), cancel.clone()));
    within("both faults in force", async {
        while active.current().len() < 2 {
            assert!(active.changed().await);
        }
    })
    .await;
    until_stopped(pid, true).await;
    assert!(db.faults().partition);

    cancel.cancel();
    let outcome = within("cancelled timeline", run).await.unwrap();
    assert!(outcome.cancelled);
    assert_eq!(outcome.windows.len(), 2, "{:?}", outcome.windows);
    assert!(outcome.windows.iter().all(|w| w.end.is_none()));
    assert_eq!(db.faults(), Faults::default());
    until_stopped(pid, false).await;
    assert_ne!(state(pid), 'Z', "the kill at 1h must not have run");
    assert!(active.current().is_empty());
}

#[tokio::test]
async fn dropping_the_running_timeline_resumes_a_paused_process() {
    let (_worker, pid) = sleeper();
    let mut targets = Targets::new();
    targets.add_process("worker", Arc::new(PidProcess(pid)));
    let faults = parse_faults(
        "[[faults]]\nat = \"0s\"\nduration = \"1h\"\nkind = \"pause\"\ntarget = \"worker\"\n",
    )
    .unwrap();
    let timeline = Timeline::new(faults, &targets).unwrap();
    let mut active = timeline.active();
    let run = tokio::spawn(timeline.run(Instant::now(), CancellationToken::new()));
    within("pause in force", active.changed()).await;
    until_stopped(pid, true).await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    until_stopped(pid, false).await;
}

#[tokio::test]
async fn unknown_targets_and_wrong_kinds_of_target_fail_before_anything_starts() {
    let db = proxy().await;
    let (_worker, pid) = sleeper();
    let mut targets = Targets::new();
    targets
        .add_proxy("db", db.handle())
        .add_process("worker", Arc::new(PidProcess(pid)));

    let typo = parse_faults(
        "[[faults]]\nat = \"0s\"\nduration = \"1s\"\nkind = \"partition\"\ntarget = \"bd\"\n",
    )
    .unwrap();
    let error = Timeline::new(typo, &targets).unwrap_err();
    assert!(matches!(error, TimelineError::UnknownTarget { .. }));
    let message = error.to_string();
    assert!(
        message.contains("fault #1") && message.contains("\"bd\""),
        "{message}"
    );
    assert!(
        message.contains("db"),
        "known proxies are listed: {message}"
    );

    // A process fault needs a process, even if a proxy has the name.
    let kill_proxy =
        parse_faults("[[faults]]\nat = \"0s\"\nkind = \"kill\"\ntarget = \"db\"\n").unwrap();
    let message = Timeline::new(kill_proxy, &targets).unwrap_err().to_string();
    assert!(message.contains("no process named \"db\""), "{message}");

    // A bare pid has nothing to restart it.
    let restart =
        parse_faults("[[faults]]\nat = \"0s\"\nkind = \"restart\"\ntarget = \"worker\"\n").unwrap();
    assert!(matches!(
        Timeline::new(restart, &targets),
        Err(TimelineError::CannotRestart { .. })
    ));
    // Nothing was touched.
    assert_eq!(db.faults(), Faults::default());
    assert_ne!(state(pid), 'T');
}

/// A supervisor stand-in: restarts take 200ms; signals fail (nothing runs).
#[derive(Default)]
struct FakeSupervisor {
    restarts: AtomicU32,
    signalled_at: Mutex<Option<Instant>>,
}

impl ProcessControl for FakeSupervisor {
    fn signal(&self, _signal: Signal) -> Result<u32, ProcessError> {
        *self.signalled_at.lock().unwrap() = Some(Instant::now());
        Err(ProcessError::NotRunning("fake".into()))
    }

    fn can_restart(&self) -> bool {
        true
    }

    fn restart(&self) -> BoxFuture<'_, Result<(), ProcessError>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.restarts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test]
async fn restarts_run_aside_and_failed_faults_are_reported_without_a_window() {
    let supervisor = Arc::new(FakeSupervisor::default());
    let mut targets = Targets::new();
    targets.add_process("svc", supervisor.clone());
    let faults = parse_faults(
        r#"
        [[faults]]
        at = "0s"
        kind = "restart"
        target = "svc"

        [[faults]]
        at = "50ms"
        kind = "kill"
        target = "svc"
        "#,
    )
    .unwrap();
    let timeline = Timeline::new(faults, &targets).unwrap();
    let start = Instant::now();
    let outcome = within("timeline", timeline.run(start, CancellationToken::new())).await;
    assert_eq!(supervisor.restarts.load(Ordering::SeqCst), 1);
    assert_eq!(outcome.windows.len(), 1, "{:?}", outcome.windows);
    let restart = &outcome.windows[0];
    assert_eq!(restart.label, "restart svc");
    assert!(restart.end.unwrap() - restart.start >= 0.2, "{restart:?}");
    // The kill at 50ms was not held up by the 200ms restart.
    let signalled = supervisor.signalled_at.lock().unwrap().unwrap();
    assert!(
        signalled - start < Duration::from_millis(180),
        "kill waited for the restart"
    );
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    assert_eq!(outcome.failures[0].label, "kill svc");
    assert!(outcome.failures[0].error.contains("not running"));
}

/// A service stand-in: each replica's replacement takes 50ms, and the settings asked for
/// are kept.
#[derive(Default)]
struct FakeService {
    asked: Mutex<Vec<Deployment>>,
}

impl Deployable for FakeService {
    fn deploy(
        &self,
        deployment: Deployment,
    ) -> BoxFuture<'_, Result<Vec<ReplicaStep>, ProcessError>> {
        self.asked.lock().unwrap().push(deployment);
        Box::pin(async move {
            let mut steps = Vec::new();
            for replica in 1..=2 {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = Instant::now();
                steps.push(ReplicaStep {
                    old: vec![format!("svc-{replica}")],
                    new: vec![format!("svc-{}", replica + 2)],
                    started,
                    ready: now,
                    switched: now,
                    stopped: now,
                });
            }
            Ok(steps)
        })
    }
}

#[tokio::test]
async fn a_rollout_runs_aside_and_its_window_holds_every_replica_step() {
    let service = Arc::new(FakeService::default());
    let mut targets = Targets::new();
    targets.add_deployable("svc", service.clone());
    let faults = parse_faults(
        "[[faults]]\nat = \"10ms\"\nkind = \"rollout\"\ntarget = \"svc\"\npause = \"3s\"\n",
    )
    .unwrap();
    let timeline = Timeline::new(faults, &targets).unwrap();
    let outcome = within(
        "timeline",
        timeline.run(Instant::now(), CancellationToken::new()),
    )
    .await;
    assert_eq!(
        service.asked.lock().unwrap().as_slice(),
        [Deployment::Rollout {
            pause: Duration::from_secs(3),
            drain: faultline_chaos::spec::DEFAULT_DRAIN,
        }]
    );
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let window = &outcome.windows[0];
    assert_eq!(window.label, "rollout svc");
    let steps = &window.steps;
    assert_eq!(steps.len(), 2, "{window:?}");
    assert_eq!(steps[0].old, ["svc-1"]);
    assert_eq!(steps[1].new, ["svc-4"]);
    assert!(window.start <= steps[0].started, "{window:?}");
    assert!(
        steps[0].stopped <= steps[1].started,
        "one replica at a time: {window:?}"
    );
    assert!(steps[1].stopped <= window.end.unwrap(), "{window:?}");

    // A deployment names a service: a process of that name is not one.
    let mut processes = Targets::new();
    processes.add_process("svc", Arc::new(FakeSupervisor::default()));
    let blue_green =
        parse_faults("[[faults]]\nat = \"0s\"\nkind = \"blue-green\"\ntarget = \"svc\"\n").unwrap();
    let error = Timeline::new(blue_green, &processes).unwrap_err();
    assert!(error.to_string().contains("deployable service"), "{error}");
}

#[tokio::test]
async fn a_fault_on_a_name_of_several_proxies_acts_on_each_and_heals_each() {
    let (first, second, alone) = (proxy().await, proxy().await, proxy().await);
    let mut targets = Targets::new();
    targets
        .add_proxies("cluster", vec![first.handle(), second.handle()])
        .add_proxy("cluster-1", alone.handle());
    let faults = parse_faults(
        r#"
        [[faults]]
        at = "0s"
        duration = "300ms"
        kind = "partition"
        target = "cluster"
        "#,
    )
    .unwrap();
    let timeline = Timeline::new(faults, &targets).unwrap();
    let mut active = timeline.active();
    let run = tokio::spawn(timeline.run(Instant::now(), CancellationToken::new()));
    within("the partition starts", async {
        while !active.summary().contains("partition cluster") {
            active.changed().await;
        }
    })
    .await;
    assert!(first.faults().partition && second.faults().partition);
    assert!(
        !alone.faults().partition,
        "another name's proxy was touched"
    );
    let outcome = within("the timeline ends", run).await.unwrap();
    assert_eq!(first.faults(), Faults::default());
    assert_eq!(second.faults(), Faults::default());
    assert_eq!(outcome.windows.len(), 1, "{:?}", outcome.windows);
    assert!(outcome.windows[0].end.is_some());
}
