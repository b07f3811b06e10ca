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
//! [`messages`] names the topics and payloads; [`runtime`] is what each process holds and
//! the context a service starts in. Each service module has a `start` that builds its
//! routes and background work from that context; [`serve`] looks a [`ServiceKind`] up in
//! that table and runs what every service shares (listener, metrics, health, shutdown).

pub mod admission;
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

use clap::ValueEnum;

/// The services `faultline serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum ServiceKind {
    Gateway,
    Users,
    Orders,
    Inventory,
    Payments,
    Shipping,
    Notifications,
    Analytics,
    Ingest,
}

impl ServiceKind {
    /// Every service; the gateway last, since the supervisor starts it in front of the
    /// others once they are ready.
    pub const ALL: [ServiceKind; 9] = [
        ServiceKind::Users,
        ServiceKind::Inventory,
        ServiceKind::Payments,
        ServiceKind::Shipping,
        ServiceKind::Orders,
        ServiceKind::Analytics,
        ServiceKind::Notifications,
        ServiceKind::Ingest,
        ServiceKind::Gateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Gateway => gateway::NAME,
            ServiceKind::Users => users::NAME,
            ServiceKind::Orders => orders::NAME,
            ServiceKind::Inventory => inventory::NAME,
            ServiceKind::Payments => payments::NAME,
            ServiceKind::Shipping => shipping::NAME,
            ServiceKind::Notifications => notifications::NAME,
            ServiceKind::Analytics => analytics::NAME,
            ServiceKind::Ingest => ingest::NAME,
        }
    }

    /// Whether the service has a database of its own.
    pub fn has_database(self) -> bool {
        !matches!(self, ServiceKind::Gateway | ServiceKind::Ingest)
    }
}
