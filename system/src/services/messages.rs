//! The topics of the reference system and the payloads its events carry (schema version 1
//! of each type). Commands and replies of the order saga travel on `<service>.commands` and
//! `<service>.replies`, keyed by order id; `orders.events` is the order's public history,
//! which the read model (analytics) and notifications consume.

use crate::platform::outbox::OutboxTx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::platform::consumer::HandleError;
use crate::platform::envelope::Envelope;
use crate::platform::http::whole_number;
use crate::platform::outbox;

pub const ORDERS_EVENTS: &str = "orders.events";
pub const INVENTORY_COMMANDS: &str = "inventory.commands";
pub const INVENTORY_REPLIES: &str = "inventory.replies";
pub const PAYMENTS_COMMANDS: &str = "payments.commands";
pub const PAYMENTS_REPLIES: &str = "payments.replies";
pub const SHIPPING_COMMANDS: &str = "shipping.commands";
pub const SHIPPING_REPLIES: &str = "shipping.replies";
pub const USERS_EVENTS: &str = "users.events";
pub const INGEST_TELEMETRY: &str = "ingest.telemetry";

/// Every topic of the system, for creating them up front.
pub const ALL_TOPICS: &[&str] = &[
    ORDERS_EVENTS,
    INVENTORY_COMMANDS,
    INVENTORY_REPLIES,
    PAYMENTS_COMMANDS,
    PAYMENTS_REPLIES,
    SHIPPING_COMMANDS,
    SHIPPING_REPLIES,
    USERS_EVENTS,
    INGEST_TELEMETRY,
];

/// The schema version this code writes and reads for every event type.
pub const V1: u32 = 1;

pub mod types {
    pub const RESERVE: &str = "inventory.reserve";
    pub const RELEASE: &str = "inventory.release";
    pub const RESERVED: &str = "inventory.reserved";
    pub const RESERVATION_FAILED: &str = "inventory.reservation_failed";
    pub const RELEASED: &str = "inventory.released";
    pub const CHARGE: &str = "payments.charge";
    pub const REFUND: &str = "payments.refund";
    pub const CHARGED: &str = "payments.charged";
    pub const CHARGE_FAILED: &str = "payments.charge_failed";
    pub const REFUNDED: &str = "payments.refunded";
    pub const SCHEDULE: &str = "shipping.schedule";
    pub const SCHEDULED: &str = "shipping.scheduled";
    pub const SCHEDULE_FAILED: &str = "shipping.schedule_failed";
    pub const ORDER_CREATED: &str = "order.created";
    pub const ORDER_UPDATED: &str = "order.updated";
    pub const USER_REGISTERED: &str = "user.registered";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItem {
    #[serde(deserialize_with = "whole_number")]
    pub product_id: i64,
    /// Orders take 1 to `orders::MAX_QUANTITY` of each item.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i32,
}

/// inventory.reserve
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserve {
    pub order_id: Uuid,
    pub items: Vec<OrderItem>,
}

/// inventory.release, payments.refund, shipping.schedule, and the plain replies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderRef {
    pub order_id: Uuid,
}

/// inventory.reserved (the amount is priced by inventory, which owns the catalogue) and
/// payments.charge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Amount {
    pub order_id: Uuid,
    pub amount_cents: i64,
}

/// Any `*_failed` reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failed {
    pub order_id: Uuid,
    pub reason: String,
}

/// order.created / order.updated: the order as it stands after a saga step. `version`
/// counts the order's events (1 = created), so a read model can tell how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderChanged {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub version: i64,
    pub status: String,
    pub step: String,
    pub items: Vec<OrderItem>,
    pub amount_cents: Option<i64>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// user.registered
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}

/// Enqueues, inside `tx`, the reply to a command: on `topic`, with the command's entity key
/// (so it lands on the same partition) and trace context.
pub async fn reply<T: Serialize>(
    tx: &OutboxTx<'_>,
    topic: &str,
    request: &Envelope,
    event_type: &str,
    payload: &T,
) -> Result<(), HandleError> {
    let payload = serde_json::to_value(payload).map_err(|e| HandleError::Poison(e.to_string()))?;
    let reply = Envelope::new(event_type, V1, request.key.clone(), payload)
        .with_traceparent(request.traceparent.clone());
    outbox::enqueue(tx, topic, reply);
    Ok(())
}
