//! Shipping: schedules a shipment per order, idempotently, with a configurable failure rate
//! and latency like payments. A failed schedule makes the saga refund and release.
//!
//! The consumer hands it a batch of commands at a time: one statement reads their orders'
//! shipments, one stores the new ones; a single command is a batch of one.

use std::collections::HashMap;

use crate::platform::outbox::OutboxTx;
use axum::Router;
use uuid::Uuid;

use super::behaviour::{start_participant, SharedBehaviour};
use super::messages::{self, types, Failed, OrderRef, V1};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{decode_each, not_handled, BatchHandler, HandleError};
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

/// A shipment's status and why it failed, if it did.
type Shipment = (String, Option<String>);

impl BatchHandler for CommandHandler {
    /// Schedules a shipment per order of the commands (a batch of one or more), at most
    /// once: a repeated schedule answers as the first did. One statement reads the batch's
    /// shipments and one stores the new ones.
    async fn apply(&self, tx: &OutboxTx<'_>, events: &[&Envelope]) -> Result<(), HandleError> {
        let orders = decode_each(events, V1, |event| match event.event_type.as_str() {
            types::SCHEDULE => Ok(event.payload_as::<OrderRef>()?.order_id),
            _ => Err(not_handled(NAME, event)),
        })?;
        let ids: Vec<Uuid> = orders.iter().map(|(_, order_id)| *order_id).collect();
        let stored = tx
            .query_prepared(
                "SELECT order_id, status, reason FROM shipments WHERE order_id = ANY($1)",
                &[&ids],
            )
            .await?;
        let mut shipments: HashMap<Uuid, Shipment> = stored
            .iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect();
        let mut new: Vec<Uuid> = Vec::new();
        for (_, order_id) in &orders {
            if !shipments.contains_key(order_id) && !new.contains(order_id) {
                new.push(*order_id);
            }
        }
        self.schedule_new(tx, &new, &mut shipments).await?;
        for (event, order_id) in orders {
            let (status, reason) = shipments.get(&order_id).cloned().unwrap_or_default();
            if status == "SCHEDULED" {
                let scheduled = OrderRef { order_id };
                messages::reply(
                    tx,
                    messages::SHIPPING_REPLIES,
                    event,
                    types::SCHEDULED,
                    &scheduled,
                )
                .await?;
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
                .await?;
            }
        }
        Ok(())
    }
}

impl CommandHandler {
    /// Decides the shipments of `new` orders all at once (the configured latency is each
    /// operation's, and the batch's run side by side) and stores them with one statement.
    async fn schedule_new(
        &self,
        tx: &OutboxTx<'_>,
        new: &[Uuid],
        shipments: &mut HashMap<Uuid, Shipment>,
    ) -> Result<(), HandleError> {
        if new.is_empty() {
            return Ok(());
        }
        let failed = futures::future::join_all(new.iter().map(|_| self.behaviour.decide())).await;
        let statuses: Vec<&str> = failed
            .iter()
            .map(|&failed| if failed { "FAILED" } else { "SCHEDULED" })
            .collect();
        let reasons: Vec<Option<&str>> = failed
            .iter()
            .map(|&failed| failed.then_some("no carrier available (injected failure)"))
            .collect();
        // ON CONFLICT: a concurrent schedule of the same order won; its outcome stands.
        tx.execute_prepared(
            "INSERT INTO shipments (order_id, status, reason)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
             ON CONFLICT (order_id) DO NOTHING",
            &[&new, &statuses, &reasons],
        )
        .await?;
        for ((order_id, status), reason) in new.iter().zip(statuses).zip(reasons) {
            shipments.insert(*order_id, (status.to_string(), reason.map(str::to_string)));
        }
        Ok(())
    }
}
