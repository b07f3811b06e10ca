//! Payments: idempotent charge and refund keyed by order id, with a configurable failure
//! rate and latency ([`super::behaviour`]).
//!
//! The outcome of a charge is stored before it is announced, so a redelivered or repeated
//! `payments.charge` answers the same way and never charges twice: at most one payment row
//! per order, whose status moves CAPTURED -> REFUNDED at most once.
//!
//! The consumer hands it a batch of commands at a time, applied with a statement each to
//! read, create and refund payments whatever the batch's size; a single command is a batch
//! of one.

use std::collections::HashMap;

use crate::platform::outbox::OutboxTx;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use super::behaviour::{start_participant, SharedBehaviour};
use super::messages::{self, types, Amount, Failed, OrderRef, V1};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{decode_each, not_handled, sorted_once, BatchHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, Json};
use crate::platform::migrate::Migration;
use crate::platform::sql::Prepared;

pub const NAME: &str = "payments";

pub const MIGRATIONS: &[Migration] = &Migration::with_event_tables(
    "payments",
    "
CREATE TABLE payments (
    order_id     UUID PRIMARY KEY,
    amount_cents BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('CAPTURED', 'FAILED', 'REFUNDED')),
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);",
);

pub const TOPICS: &[&str] = &[messages::PAYMENTS_COMMANDS, messages::PAYMENTS_REPLIES];

#[derive(Debug, Serialize)]
pub struct Payment {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub status: String,
    pub reason: Option<String>,
}

/// Starts payments: its database and outbox relay, its consumer of the saga's commands, and
/// the route that changes its failure rate and latency during a run.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let handler = |behaviour| CommandHandler { behaviour };
    let (pool, behaviour) = start_participant(ctx, MIGRATIONS, TOPICS, handler).await?;
    Ok(routes(pool).merge(super::behaviour::routes(behaviour)))
}

/// `GET /payments/{order_id}` (internal: the checker and tests read it).
pub fn routes(pool: Pool) -> Router {
    Router::new()
        .route("/payments/{order_id}", get(get_payment))
        .with_state(pool)
}

async fn get_payment(
    State(pool): State<Pool>,
    Path(order_id): Path<Uuid>,
) -> Result<Json<Payment>, ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt_prepared(
            "SELECT order_id, amount_cents, status, reason FROM payments WHERE order_id = $1",
            &[&order_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no payment for order {order_id}")))?;
    Ok(Json(Payment {
        order_id: row.get(0),
        amount_cents: row.get(1),
        status: row.get(2),
        reason: row.get(3),
    }))
}

/// Handles `payments.charge` and `payments.refund`.
pub struct CommandHandler {
    pub behaviour: SharedBehaviour,
}

async fn reply<T: Serialize>(
    tx: &OutboxTx<'_>,
    request: &Envelope,
    event_type: &str,
    payload: &T,
) -> Result<(), HandleError> {
    messages::reply(tx, messages::PAYMENTS_REPLIES, request, event_type, payload).await
}

/// A payment command of the batch, decoded.
enum Command {
    Charge(Amount),
    Refund(Uuid),
}

impl Command {
    fn order_id(&self) -> Uuid {
        match self {
            Command::Charge(charge) => charge.order_id,
            Command::Refund(order_id) => *order_id,
        }
    }
}

/// An order's payment as the batch moves it.
struct Outcome {
    status: &'static str,
    reason: Option<String>,
    /// `Some(amount)` for a payment this batch creates (inserted), `None` for a stored one.
    new_amount: Option<i64>,
    /// A stored payment this batch refunded (updated).
    refunded: bool,
}

impl BatchHandler for CommandHandler {
    /// Applies payment commands (a batch of one or more) in order, with a statement each
    /// to read, create and refund payments. A charge happens at most once per order: a
    /// repeated charge answers as the first did.
    async fn apply(&self, tx: &OutboxTx<'_>, events: &[&Envelope]) -> Result<(), HandleError> {
        let commands = decode_each(events, V1, |event| match event.event_type.as_str() {
            types::CHARGE => Ok(Command::Charge(event.payload_as()?)),
            types::REFUND => Ok(Command::Refund(event.payload_as::<OrderRef>()?.order_id)),
            _ => Err(not_handled(NAME, event)),
        })?;
        let ids = sorted_once(commands.iter().map(|(_, c)| c.order_id()));
        let stored = tx
            .query_prepared(
                "SELECT order_id, status, reason FROM payments WHERE order_id = ANY($1)
                 ORDER BY order_id FOR UPDATE",
                &[&ids],
            )
            .await?;
        let mut payments: HashMap<Uuid, Outcome> = HashMap::with_capacity(ids.len());
        for row in &stored {
            let status = match row.get::<_, &str>(1) {
                "FAILED" => "FAILED",
                "REFUNDED" => "REFUNDED",
                _ => "CAPTURED",
            };
            let outcome = Outcome {
                status,
                reason: row.get(2),
                new_amount: None,
                refunded: false,
            };
            payments.insert(row.get(0), outcome);
        }
        self.charge_new(&commands, &mut payments).await;
        for (event, command) in &commands {
            match command {
                Command::Charge(Amount { order_id, .. }) => {
                    let order_id = *order_id;
                    match payments.get(&order_id) {
                        Some(Outcome {
                            status: "FAILED",
                            reason,
                            ..
                        }) => {
                            let reason = reason.clone().unwrap_or_default();
                            let failed = Failed { order_id, reason };
                            reply(tx, event, types::CHARGE_FAILED, &failed).await?;
                        }
                        _ => reply(tx, event, types::CHARGED, &OrderRef { order_id }).await?,
                    }
                }
                Command::Refund(order_id) => {
                    if let Some(payment) = payments.get_mut(order_id) {
                        if payment.status == "CAPTURED" {
                            payment.status = "REFUNDED";
                            payment.refunded = payment.new_amount.is_none();
                        }
                    }
                    let refunded = OrderRef {
                        order_id: *order_id,
                    };
                    reply(tx, event, types::REFUNDED, &refunded).await?;
                }
            }
        }
        write(tx, &payments).await
    }
}

impl CommandHandler {
    /// Decides the charges of orders without a payment, all at once: the configured
    /// latency is each operation's, and the batch's operations run side by side.
    async fn charge_new(
        &self,
        commands: &[(&Envelope, Command)],
        payments: &mut HashMap<Uuid, Outcome>,
    ) {
        let mut new: Vec<&Amount> = Vec::new();
        for (_, command) in commands {
            if let Command::Charge(charge) = command {
                if !payments.contains_key(&charge.order_id)
                    && !new.iter().any(|n| n.order_id == charge.order_id)
                {
                    new.push(charge);
                }
            }
        }
        let declined = futures::future::join_all(new.iter().map(|_| self.behaviour.decide())).await;
        for (charge, declined) in new.into_iter().zip(declined) {
            let outcome = Outcome {
                status: if declined { "FAILED" } else { "CAPTURED" },
                reason: declined.then(|| "card declined (injected failure)".to_string()),
                new_amount: Some(charge.amount_cents),
                refunded: false,
            };
            payments.insert(charge.order_id, outcome);
        }
    }
}

/// Stores the payments the batch created (one `INSERT`) and refunded (one `UPDATE`).
async fn write(tx: &OutboxTx<'_>, payments: &HashMap<Uuid, Outcome>) -> Result<(), HandleError> {
    let created: Vec<(&Uuid, &Outcome, i64)> = payments
        .iter()
        .filter_map(|(id, p)| Some((id, p, p.new_amount?)))
        .collect();
    if !created.is_empty() {
        let ids: Vec<Uuid> = created.iter().map(|(id, _, _)| **id).collect();
        let amounts: Vec<i64> = created.iter().map(|(_, _, amount)| *amount).collect();
        let statuses: Vec<&str> = created.iter().map(|(_, p, _)| p.status).collect();
        let reasons: Vec<Option<&str>> = created
            .iter()
            .map(|(_, p, _)| p.reason.as_deref())
            .collect();
        // ON CONFLICT: a concurrent charge of the same order won; its outcome stands.
        tx.execute_prepared(
            "INSERT INTO payments (order_id, amount_cents, status, reason)
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[])
             ON CONFLICT (order_id) DO NOTHING",
            &[&ids, &amounts, &statuses, &reasons],
        )
        .await?;
    }
    let refunded: Vec<Uuid> = payments
        .iter()
        .filter(|(_, p)| p.refunded)
        .map(|(id, _)| *id)
        .collect();
    if !refunded.is_empty() {
        tx.execute_prepared(
            "UPDATE payments SET status = 'REFUNDED', updated_at = now()
             WHERE order_id = ANY($1) AND status = 'CAPTURED'",
            &[&refunded],
        )
        .await?;
    }
    Ok(())
}
