//! Deployment faults: a rollout (a service's replicas replaced one at a time) and a
//! blue-green switch (a second full set started, the traffic switched to it at once, the
//! first set stopped).
//!
//! A deployment acts on a [`Deployable`]: something that can replace a service's
//! replicas. Like [`crate::ProcessControl`], nothing here knows the reference system; the
//! run implements the trait over its supervisor and binds it by service name
//! ([`crate::Targets::add_deployable`]). The timeline runs a deployment aside, as it runs a
//! restart, so later faults stay on time; the deployment's window lasts until its last old
//! replica stopped, and each [`ReplicaStep`] (one per replica for a rollout, one for the
//! whole set for blue-green) says when its new replicas started and were ready, when the
//! traffic left the old ones and when those stopped.

use std::time::Duration;

use faultline_results::DeployStep;
use tokio::time::Instant;

use crate::process::{BoxFuture, ProcessError};

/// Which deployment, with its settings (validated from the scenario's `[[faults]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One replica at a time: start a new one, wait until it is ready, take the old one
    /// out of rotation, give it `drain` to finish what it was sent, stop it (SIGTERM,
    /// which lets its in-flight work finish), wait `pause`, then the next.
    Rollout { pause: Duration, drain: Duration },
    /// A new replica for every old one, all ready before the traffic moves to them at
    /// once; then the old set drains and stops.
    BlueGreen { drain: Duration },
}

/// One replacement within a deployment, as it happened (instants).
pub type ReplicaStep = DeployStep<Instant>;

/// A [`ReplicaStep`] as offsets in seconds from the start of load.
pub type StepWindow = DeployStep<f64>;

/// A service whose replicas a deployment can replace.
pub trait Deployable: Send + Sync {
    /// Runs `deployment` to its end; resolves with its steps, in order.
    fn deploy(
        &self,
        deployment: Deployment,
    ) -> BoxFuture<'_, Result<Vec<ReplicaStep>, ProcessError>>;
}
