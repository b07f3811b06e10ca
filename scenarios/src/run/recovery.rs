//! How long a service replica hit by a fault takes to be ready again: the run watches
//! `/health/ready` of every replica a process fault of the scenario names, and each
//! fault window of results gets `ready_after_secs` (the fault's end, a kill's instant,
//! to the first answer of "ready" after the replica was seen down).
//!
//! [`ReadinessWatcher::start`] polls only those replicas, each on its own every
//! [`POLL`], so a run without process faults sends nothing; it keeps each replica's
//! changes of state, not every poll. [`ready_after`] reads a window's recovery from them. The figure is
//! what a killed service costs here: the supervisor's restart back-off, the process's
//! start, its connections to PostgreSQL and Kafka, and its readiness check.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use faultline_chaos::{CancellationToken, Fault};
use faultline_system::{
    platform::http::answers_ready,
    services::ServiceKind,
    supervisor::{System, SystemSpec},
};
use tokio::task::JoinHandle;

use crate::targets::{self, Named};

/// Between two polls of a watched replica; the figure's resolution.
const POLL: Duration = Duration::from_millis(100);
/// How long one poll waits: a paused replica (SIGSTOP) does not answer at all.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// A replica's changes of state: when it was first seen ready (`true`) or not.
pub type Transitions = Vec<(SystemTime, bool)>;

/// A running watcher; see the module documentation.
pub struct ReadinessWatcher {
    stop: CancellationToken,
    watches: Vec<JoinHandle<(String, Transitions)>>,
}

impl ReadinessWatcher {
    /// Watches every replica that a process fault of `faults` names (by the name the
    /// fault gives it, e.g. `orders` or `orders-2`).
    pub fn start(system: Arc<System>, spec: &SystemSpec, faults: &[Fault]) -> ReadinessWatcher {
        let names = targets::names(spec);
        let mut watched: Vec<(String, ServiceKind, usize)> = Vec::new();
        for fault in faults.iter().filter(|f| f.kind().is_process()) {
            let replica = names.iter().find_map(|(name, named)| match named {
                Named::Process(kind, replica) if *name == fault.target => Some((*kind, *replica)),
                _ => None,
            });
            if let Some((kind, replica)) = replica {
                if !watched.iter().any(|(name, ..)| *name == fault.target) {
                    watched.push((fault.target.clone(), kind, replica));
                }
            }
        }
        let stop = CancellationToken::new();
        // A task per replica, so that a slow answer from one does not delay the polls
        // of another: a replica back within half a second is still seen down.
        let watches = watched
            .into_iter()
            .map(|(name, kind, replica)| {
                let (system, stop) = (system.clone(), stop.clone());
                tokio::spawn(async move {
                    let transitions = watch(&system, kind, replica, stop).await;
                    (name, transitions)
                })
            })
            .collect();
        ReadinessWatcher { stop, watches }
    }

    /// Stops watching; each watched replica's changes of state, by fault target name.
    pub async fn finish(mut self) -> Vec<(String, Transitions)> {
        self.stop.cancel();
        let mut seen = Vec::new();
        for watch in std::mem::take(&mut self.watches) {
            if let Ok(watched) = watch.await {
                seen.push(watched);
            }
        }
        seen
    }
}

impl Drop for ReadinessWatcher {
    /// A run that ends early (interrupted) stops the polls with it.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls one replica's `/health/ready` until `stop`, keeping its changes of state.
async fn watch(
    system: &System,
    kind: ServiceKind,
    replica: usize,
    stop: CancellationToken,
) -> Transitions {
    // The supervisor's own client: under mutual TLS it presents its certificate.
    let client = system.probe_client();
    let mut transitions = Transitions::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return transitions,
            _ = tick.tick() => {}
        }
        let ready = match system.service_url(kind, replica) {
            Some(url) => answers_ready(&client, &url, POLL_TIMEOUT).await,
            None => false,
        };
        if transitions.last().is_none_or(|(_, was)| *was != ready) {
            transitions.push((SystemTime::now(), ready));
        }
    }
}

/// Seconds from `end` until the replica was ready again, having been seen not ready at
/// or after `start`; `None` when it was never seen down (the fault did not take it
/// down, or it came back within one poll) or never came back.
pub fn ready_after(
    transitions: &[(SystemTime, bool)],
    start: SystemTime,
    end: SystemTime,
) -> Option<f64> {
    // A poll that began just before the fault may land just after it: a tenth of a
    // poll's slack keeps the down it saw.
    let from = start.checked_sub(POLL / 10).unwrap_or(start);
    let down = transitions
        .iter()
        .position(|(at, ready)| *at >= from && !ready)?;
    let (up, _) = transitions[down..].iter().find(|(_, ready)| *ready)?;
    let took = match up.duration_since(end) {
        Ok(after) => after.as_secs_f64(),
        // Back before the fault's end (a pause that SIGCONT ended early): no wait.
        Err(_) => 0.0,
    };
    Some(took)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_000.0 + secs)
    }

    #[test]
    fn a_killed_replica_is_ready_again_when_first_seen_ready_after_being_seen_down() {
        let seen = vec![(at(0.0), true), (at(5.05), false), (at(7.35), true)];
        let took = ready_after(&seen, at(5.0), at(5.0)).unwrap();
        assert!((took - 2.35).abs() < 1e-6, "{took}");
        // A fault before which the replica was only ever ready: not seen down.
        assert_eq!(ready_after(&seen[..1], at(5.0), at(5.0)), None);
        // Down and never back.
        assert_eq!(ready_after(&seen[..2], at(5.0), at(5.0)), None);
    }

    #[test]
    fn a_down_before_the_fault_is_not_this_faults() {
        let seen = vec![
            (at(0.0), false),
            (at(1.0), true),
            (at(9.0), false),
            (at(9.5), true),
        ];
        let took = ready_after(&seen, at(8.9), at(8.9)).unwrap();
        assert!((took - 0.6).abs() < 1e-6, "{took}");
    }
}
