//! The reference system that faultline exercises, and the real infrastructure it runs on.
//!
//! - [`stack`] starts Apache Kafka (KRaft), PostgreSQL and Redis as supervised child
//!   processes on loopback with temporary data, or connects to external ones, and makes
//!   sure none of them outlives faultline;
//! - [`platform`] holds what every service is built from: the event envelope, the
//!   transactional outbox, idempotent consumers with a dead-letter topic, migrations,
//!   metrics;
//! - [`services`] are the reference system's services (gateway, users, orders, inventory,
//!   payments, shipping, notifications, analytics, ingest), each run as its own process by
//!   `faultline serve`;
//! - [`supervisor`] runs the whole system: stack, one database per service, every replica
//!   as a supervised process, the gateway in front (`faultline system up`);
//! - [`dependency`] names Kafka, PostgreSQL and Redis as fault targets and routes the
//!   services to them through fault proxies;
//! - [`topology`] is the `[system]` table of a scenario file, applied onto the
//!   supervisor's spec (`faultline run`);
//! - [`checker`] holds a run's write ledger against the services' databases after the run:
//!   nothing acknowledged lost, nothing applied twice, every service agreeing.
//!
//! Nothing in `loadgen`, `chaos` or `reports` depends on this crate.

pub mod checker;
pub mod dependency;
pub mod platform;
pub mod services;
pub mod stack;
pub mod supervisor;
pub mod topology;

pub use dependency::{Dependency, SpecError};
