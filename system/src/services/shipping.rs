//! Shipping: schedules a shipment per order, idempotently, with a configurable failure rate
//! and latency like payments. A failed schedule makes the saga refund and release.

use crate::platform::outbox::OutboxTx;
use axum::Router;

use super::behaviour::{start_participant, SharedBehaviour};
use super::messages::{self, types, Failed, OrderRef, V1};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{expect_version, EventHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::migrate::Migration;
use crate::platform::sql::Prepared;

pub const NAME: &str = "shipping";

pub const MIGRATIONS: &[Migration] = &Migration::with_event_tables(
    "shipments",
    "
CREATE TABLE shipments (
    order_id   UUID PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('SCHEDULED', 'FAILED')),
    reason     TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);",
);

pub const TOPICS: &[&str] = &[messages::SHIPPING_COMMANDS, messages::SHIPPING_REPLIES];

/// Starts shipping: its database and outbox relay, its consumer of the saga's commands, and
/// the route that changes its failure rate and latency during a run.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let handler = |behaviour| CommandHandler { behaviour };
    let (_, behaviour) = start_participant(ctx, MIGRATIONS, TOPICS, handler).await?;
    Ok(super::behaviour::routes(behaviour))
}

/// Handles `shipping.schedule`.
pub struct CommandHandler {
    pub behaviour: SharedBehaviour,
}

impl EventHandler for CommandHandler {
    async fn handle(&self, tx: &OutboxTx<'_>, event: &Envelope) -> Result<(), HandleError> {
        expect_version(event, V1)?;
        if event.event_type != types::SCHEDULE {
            return Err(HandleError::Poison(format!(
                "shipping does not handle {}",
                event.event_type
            )));
        }
        let OrderRef { order_id } = event.payload_as()?;
        let existing = tx
            .query_opt_prepared(
                "SELECT status, reason FROM shipments WHERE order_id = $1",
                &[&order_id],
            )
            .await?;
        let (status, reason): (String, Option<String>) = match existing {
            Some(row) => (row.get(0), row.get(1)),
            None => {
                let failed = self.behaviour.decide().await;
                let (status, reason) = if failed {
                    (
                        "FAILED",
                        Some("no carrier available (injected failure)".to_string()),
                    )
                } else {
                    ("SCHEDULED", None)
                };
                tx.execute_prepared(
                    "INSERT INTO shipments (order_id, status, reason) VALUES ($1, $2, $3) ON CONFLICT (order_id) DO NOTHING",
                    &[&order_id, &status, &reason],
                )
                .await?;
                (status.to_string(), reason)
            }
        };
        if status == "SCHEDULED" {
            messages::reply(
                tx,
                messages::SHIPPING_REPLIES,
                event,
                types::SCHEDULED,
                &OrderRef { order_id },
            )
            .await
        } else {
            let failed = Failed {
                order_id,
                reason: reason.unwrap_or_default(),
            };
            messages::reply(
                tx,
                messages::SHIPPING_REPLIES,
                event,
                types::SCHEDULE_FAILED,
                &failed,
            )
            .await
        }
    }
}
