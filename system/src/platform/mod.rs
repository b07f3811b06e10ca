//! What every service of the reference system is built from (DESIGN.md, "Platform rules"):
//!
//! - [`envelope`]: the versioned event envelope and its Kafka wire form;
//! - [`outbox`]: state change and event in one transaction, relayed to Kafka afterwards;
//! - [`consumer`]: idempotent consumers (event id recorded in the same transaction as the
//!   state change) that dead-letter what they cannot read;
//! - [`migrate`]: each service's own schema, migrated safely by concurrent replicas;
//! - [`metrics`]: the Prometheus metrics every service exposes;
//! - [`http`]: the error type that becomes a response, health and metrics routes, trace
//!   context and request timing;
//! - [`sql`]: statements prepared once per connection ([`sql::Prepared`]);
//! - [`telemetry`]: spans of every hop exported with OTLP, when an endpoint is set;
//! - [`files`]: files that hold secrets, readable by their owner only;
//! - [`tls`]: CAs, certificates and TLS 1.3 configurations;
//! - [`mesh`]: mutual TLS between the services, and who may call whom.

pub mod auth;
pub mod breaker;
pub mod consumer;
pub mod envelope;
pub mod files;
pub mod http;
pub mod lag;
pub mod mesh;
pub mod metrics;
pub mod migrate;
pub mod notify;
pub mod outbox;
pub mod ownership;
pub mod sql;
pub mod telemetry;
pub mod tls;
