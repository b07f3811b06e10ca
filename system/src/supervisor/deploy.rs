//! Deployments of one service's replicas while the system runs: a rollout (one replica at a
//! time) and a blue-green switch (a second full set, then every replica at once).
//!
//! Both are made of the same [`Replacement`]: start new replicas (same command and
//! settings as the old ones, new ports, new numbers while both run: `orders-3` replaces
//! `orders-1`, and takes the number 1 once `orders-1` stopped, so that fault targets and
//! `service_url` keep naming a replica after a deployment), wait
//! until each answers `/health/ready`, tell the gateway to route to the new set without the
//! old replicas (the upstreams file, see `services::gateway::upstreams`) and wait until it
//! says it did, give the old replicas `drain` to answer what they were already sent, then
//! take them out of supervision and stop them with SIGTERM, which lets their own in-flight
//! work finish. A service the gateway does not route to (payments, shipping...) skips the
//! switch: its consumers share a group, so Kafka moves its partitions on its own.
//!
//! A replacement that fails before its old replicas leave (a new one does not start, or
//! never answers ready, or the gateway does not apply the switch) stops the new replicas it
//! started and routes the gateway back to the old ones if it was told otherwise: the old
//! set serves on. A rollout keeps the replacements it finished before.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use faultline_results::DeployStep;
use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{lock, ready, ServiceProcess, System, SystemError};
use crate::services::gateway::upstreams::{applied_generation, UpstreamsFile};
use crate::services::gateway::Upstream;
use crate::services::ServiceKind;
use crate::stack::{ports, process};

/// How long a new replica may take to answer ready, and the gateway to apply a switch.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an old replica may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// One replacement, as it happened.
pub type Replacement = DeployStep<Instant>;

impl System {
    /// Replaces every replica of `kind` one at a time, waiting `pause` between them.
    pub async fn rollout(
        &self,
        kind: ServiceKind,
        pause: Duration,
        drain: Duration,
    ) -> Result<Vec<Replacement>, SystemError> {
        let old = self.replica_numbers(kind)?;
        let mut steps = Vec::with_capacity(old.len());
        for (i, replica) in old.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            steps.push(self.replace(kind, &[replica], drain).await?);
        }
        Ok(steps)
    }

    /// Starts as many new replicas of `kind` as it has, then switches to them all at once.
    pub async fn blue_green(
        &self,
        kind: ServiceKind,
        drain: Duration,
    ) -> Result<Replacement, SystemError> {
        let old = self.replica_numbers(kind)?;
        self.replace(kind, &old, drain).await
    }

    /// The replica numbers of `kind` now, or why it cannot be deployed.
    fn replica_numbers(&self, kind: ServiceKind) -> Result<Vec<usize>, SystemError> {
        if kind == ServiceKind::Gateway {
            return Err(SystemError::Invalid(
                "the gateway cannot be deployed this way: nothing in front of it switches traffic"
                    .into(),
            ));
        }
        let numbers: Vec<usize> = lock(&self.processes)
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.replica)
            .collect();
        if numbers.is_empty() {
            return Err(SystemError::Invalid(format!(
                "{} has no replicas",
                kind.name()
            )));
        }
        Ok(numbers)
    }

    async fn replace(
        &self,
        kind: ServiceKind,
        old: &[usize],
        drain: Duration,
    ) -> Result<Replacement, SystemError> {
        let started = Instant::now();
        let mut new = Vec::with_capacity(old.len());
        let brought_up = match self.start_replicas(kind, old.len(), &mut new) {
            Ok(()) => self.wait_ready(kind, &new).await,
            Err(error) => Err(error),
        };
        if let Err(error) = brought_up {
            self.call_off(kind, &new, false).await;
            return Err(error);
        }
        let ready = Instant::now();
        if let Err(error) = self.switch(kind, old).await {
            self.call_off(kind, &new, true).await;
            return Err(error);
        }
        let switched = Instant::now();
        tokio::time::sleep(drain).await;
        self.stop_replicas(kind, old).await;
        self.renumber(kind, &new, old);
        // Prometheus scrapes the replicas by port: name the new ones (a failure to write
        // its targets file costs scrapes, not the deployment).
        if let Err(error) = self.scrape_by_prometheus() {
            tracing::warn!(%error, "naming the new replicas to Prometheus");
        }
        let names = |numbers: &[usize]| -> Vec<String> {
            numbers
                .iter()
                .map(|n| format!("{}-{n}", kind.name()))
                .collect()
        };
        Ok(Replacement {
            old: names(old),
            new: names(&new),
            started,
            ready,
            switched,
            stopped: Instant::now(),
        })
    }

    /// A step that failed before its old replicas left: the gateway is routed back to them
    /// if it may have been told of the new ones (`routed`), and the new ones `started` are
    /// stopped, so the old set goes on serving as before.
    async fn call_off(&self, kind: ServiceKind, started: &[usize], routed: bool) {
        tracing::warn!(
            service = kind.name(),
            ?started,
            "deployment step failed: stopping its new replicas"
        );
        if routed {
            if let Err(error) = self.switch(kind, started).await {
                tracing::warn!(%error, "routing the gateway back to the old replicas");
            }
        }
        self.stop_replicas(kind, started).await;
    }

    /// Starts `count` new replicas of `kind` like its first one, on new ports, adding
    /// their numbers to `started` as each starts (so that a failure part way still says
    /// which did). They are supervised (restarted if they die) from the start.
    fn start_replicas(
        &self,
        kind: ServiceKind,
        count: usize,
        started: &mut Vec<usize>,
    ) -> Result<(), SystemError> {
        let mut processes = lock(&self.processes);
        let template = processes
            .iter()
            .find(|p| p.kind == kind)
            .ok_or_else(|| SystemError::Invalid(format!("{} has no replicas", kind.name())))?;
        let (spec, tls_ca, mesh) = (
            template.spec.clone(),
            template.tls_ca.clone(),
            template.mesh,
        );
        let template_name = spec.name.clone();
        let mut next = processes
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.replica)
            .max()
            .unwrap_or(0);
        for _ in 0..count {
            next += 1;
            let port = ports::free_port(kind.name())?;
            let mut spec = spec.clone();
            spec.name = format!("{}-{next}", kind.name());
            spec.log_path = spec.log_path.with_file_name(format!("{}.log", spec.name));
            let listen = spec.args.iter().position(|a| a == "--listen");
            match listen.and_then(|i| spec.args.get_mut(i + 1)) {
                Some(address) => *address = format!("127.0.0.1:{port}"),
                None => {
                    return Err(SystemError::Invalid(format!(
                        "{template_name}'s command has no --listen to change"
                    )))
                }
            }
            let process = process::spawn(&spec)?;
            processes.push(ServiceProcess {
                kind,
                replica: next,
                port,
                spec,
                process: Some(process),
                restarts: 0,
                next_restart: None,
                tls_ca: tls_ca.clone(),
                mesh,
            });
            started.push(next);
        }
        Ok(())
    }

    /// Waits until every replica in `numbers` answers ready; one that exits or stays
    /// unready past [`READY_TIMEOUT`] is an error naming it, with its log's last lines.
    async fn wait_ready(&self, kind: ServiceKind, numbers: &[usize]) -> Result<(), SystemError> {
        let client = self.probe_client();
        let deadline = Instant::now() + READY_TIMEOUT;
        for &number in numbers {
            let name = format!("{}-{number}", kind.name());
            loop {
                let (target, exited, log) = {
                    let mut processes = lock(&self.processes);
                    let Some(p) = processes
                        .iter_mut()
                        .find(|p| p.kind == kind && p.replica == number)
                    else {
                        return Err(SystemError::Invalid(format!("{name} is gone")));
                    };
                    let exited = p.process.as_mut().and_then(|m| m.try_exit_status());
                    ((p.url(), p.tls_ca.clone()), exited, p.spec.log_path.clone())
                };
                let reason = match exited {
                    Some(status) => Some(format!("it exited with {status}")),
                    None => {
                        if ready(&client, &target, Duration::from_secs(2)).await {
                            break;
                        }
                        (Instant::now() >= deadline)
                            .then(|| "/health/ready did not answer 200".to_string())
                    }
                };
                if let Some(reason) = reason {
                    return Err(SystemError::NotReady {
                        name,
                        timeout: READY_TIMEOUT,
                        reason,
                        tail: process::log_tail(&log, 20),
                        log,
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Routes the gateway to every replica of `kind` but `leaving`, and waits until it
    /// says it does. Nothing to do for a service the gateway does not route to.
    async fn switch(&self, kind: ServiceKind, leaving: &[usize]) -> Result<(), SystemError> {
        if Upstream::from_name(kind.name()).is_none() {
            return Ok(());
        }
        let in_rotation: Vec<String> = lock(&self.processes)
            .iter()
            .filter(|p| p.kind == kind && !leaving.contains(&p.replica))
            .map(ServiceProcess::url)
            .collect();
        let generation = self.upstreams_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let file = UpstreamsFile {
            generation,
            upstreams: [(kind.name().to_string(), in_rotation)]
                .into_iter()
                .collect(),
        };
        let path: &PathBuf = &self.upstreams_file;
        file.write(path)
            .map_err(|e| SystemError::Invalid(format!("writing {}: {e}", path.display())))?;
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        while applied_generation(path).is_none_or(|applied| applied < generation) {
            if Instant::now() >= deadline {
                return Err(SystemError::Invalid(format!(
                    "the gateway did not apply generation {generation} of {} within {SWITCH_TIMEOUT:?}",
                    path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Gives the replicas `new` of `kind` the numbers `old` (in order) of those they replaced.
    fn renumber(&self, kind: ServiceKind, new: &[usize], old: &[usize]) {
        let mut processes = lock(&self.processes);
        for (from, to) in new.iter().zip(old) {
            if let Some(p) = processes
                .iter_mut()
                .find(|p| p.kind == kind && p.replica == *from)
            {
                p.replica = *to;
                p.spec.name = format!("{}-{to}", kind.name());
            }
        }
    }

    /// Takes the replicas `numbers` of `kind` out of supervision and stops them: SIGTERM
    /// to all at once (each finishes its in-flight work), SIGKILL past [`STOP_GRACE`].
    async fn stop_replicas(&self, kind: ServiceKind, numbers: &[usize]) {
        let mut leaving: Vec<ServiceProcess> = {
            let mut processes = lock(&self.processes);
            let (leaving, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut *processes)
                .into_iter()
                .partition(|p| p.kind == kind && numbers.contains(&p.replica));
            *processes = staying;
            leaving
        };
        stop_all(&mut leaving, STOP_GRACE).await;
    }
}

/// SIGTERM to every process at once, then waits for each (SIGKILL past `grace`): stopping
/// them one after another would add their stop times up.
pub(super) async fn stop_all(processes: &mut [ServiceProcess], grace: Duration) {
    for managed in processes.iter_mut().filter_map(|p| p.process.as_mut()) {
        if managed.try_exit_status().is_none() {
            let _ = managed.signal_group(Signal::SIGTERM);
        }
    }
    for managed in processes.iter_mut().filter_map(|p| p.process.as_mut()) {
        managed.stop(grace).await;
    }
}
