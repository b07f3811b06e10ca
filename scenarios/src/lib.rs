//! faultline's scenarios: the crate that runs a scenario, next to the scenario files it
//! runs (`scenarios/demo/`, ...).
//!
//! A scenario file is TOML, and each crate owns its table: `[system]` is
//! `faultline_system::topology::Topology`, `[load]` is `faultline_loadgen::scenario::LoadSpec`,
//! `[[faults]]` is `faultline_chaos::spec::FaultSpec`, `[[gates]]` is the results
//! contract's `GateSpec`. This crate composes them, in pipeline order:
//!
//! - [`scenario`]: [`Scenario`] is the file parsed once; [`Scenario::check`] checks it
//!   whole (topology, load plan, every fault bound against the topology in a dry run,
//!   every gate) and reports every problem with its line, before anything starts.
//! - [`targets`]: the names faults act on (services, replicas, `kafka`, `kafka-<n>`,
//!   `postgres`, `redis`), the one list behind both the dry run and the real binding, and
//!   the fault proxies put in front of dependencies.
//! - [`load`]: `faultline load` (a scenario's `[load]`, or the command line's) and its
//!   capacity search, with the SLO gates judged by reports.
//! - [`run`]: the orchestrator. System up, then load, fault timeline and `/metrics`
//!   scrape together, the checker, and the results handed in memory to reports (gates
//!   judged once, the report built once). `faultline run` is argument parsing around it.
//!   A `[load.find_max]` runs its capacity search against the system the run started.
//! - [`claims`]: the claims suite, `faultline claims`: every scenario of
//!   `scenarios/claims/` through [`run`], the Kafka benchmark of Table 5, the broker
//!   benchmarks of Table 1 ([`claims_brokers`]), and one claims report of every claim of
//!   the documents; [`claims_cqrs`] is its comparison of the read model against the view
//!   composed from the write side.
//!
//! Depends on every other crate of the workspace; none depends on it but the binary.

pub mod claims;
pub mod claims_brokers;
pub mod claims_cqrs;
pub mod load;
pub mod run;
pub mod scenario;
pub mod targets;

pub use run::{run, run_on, BaselineOptions, RunError, RunOptions, RunOutcome, StartedSystem};
pub use scenario::{CheckedScenario, Problem, Scenario, ScenarioError};
