//! Fault injection for faultline: breaks things on a schedule while load runs, and records
//! exactly when each fault was in force so the report can shade it on every chart.
//!
//! The parts, from the scenario file to the run:
//!
//! - [`spec`]: the `[[faults]]` of a scenario file. [`FaultSpec`] deserializes what was
//!   written; [`spec::validate`] turns it into typed [`Fault`]s or an error that names the
//!   fault's number, kind and the field at fault.
//! - [`proxy`]: a TCP [`FaultProxy`] put in front of Kafka, PostgreSQL, Redis or any TCP
//!   endpoint; its [`ProxyHandle`] changes faults while traffic flows (latency with
//!   jitter, bandwidth, partition, reset, slicer, timeout).
//! - [`process`]: signals for process faults (kill, terminate, pause, resume) and the
//!   [`ProcessControl`] trait through which a supervisor restarts a process.
//! - [`deploy`]: deployments (rollout, blue-green) of a service's replicas through the
//!   [`Deployable`] trait, which the run implements over its supervisor.
//! - [`timeline`]: binds faults to named proxies and processes ([`Targets`]), runs them
//!   concurrently with the load from a common start instant, heals everything when done
//!   or cancelled, and returns the [`FaultWindow`]s that happened.
//! - [`cli`]: `faultline proxy`, the proxy on its own from the command line, with
//!   [`control`]'s HTTP API to add and heal faults while it runs.
//!
//! Nothing here depends on the reference system or the load generator: the root binary
//! binds the system's processes and proxies as targets and copies the windows into
//! `results.json`.

pub mod cli;
pub mod control;
pub mod deploy;
pub mod process;
pub mod proxy;
pub mod spec;
pub mod timeline;
pub mod units;

pub use deploy::{Deployable, Deployment, ReplicaStep, StepWindow};
pub use process::{PauseGuard, PidProcess, ProcessControl, ProcessError, Signal};
pub use proxy::{Direction, FaultProxy, Faults, Latency, ProxyError, ProxyHandle, ProxyStats};
pub use spec::{Fault, FaultAction, FaultKind, FaultSpec, SpecError};
pub use timeline::{ActiveFaults, FaultWindow, Targets, Timeline, TimelineError, TimelineOutcome};
pub use tokio_util::sync::CancellationToken;
