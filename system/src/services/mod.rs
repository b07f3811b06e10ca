//! The services of the reference system, each run as its own process by
//! `faultline serve <service>` (see [`serve`]):
//!
//! - [`gateway`]: the only public entry (routing, JWT, rate limiting, replicas);
//! - [`users`]: registration, login (JWT), profiles cached in Redis;
//! - [`orders`]: the saga orchestrator; [`inventory`] (event-sourced stock),
//!   [`payments`] and [`shipping`] are its participants;
//! - [`analytics`]: the CQRS read model of orders, with a long-poll for the consistency
//!   window;
//! - [`ingest`]: high-rate telemetry ingestion to Kafka;
//! - [`notifications`]: sends order events through channels with retries.
//!
//! [`messages`] names the topics and payloads; [`runtime`] is what each process holds.

pub mod analytics;
pub mod behaviour;
pub mod gateway;
pub mod ingest;
pub mod inventory;
pub mod messages;
pub mod notifications;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod runtime;
pub mod serve;
pub mod shipping;
pub mod users;
