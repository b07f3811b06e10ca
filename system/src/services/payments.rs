//! Payments: idempotent charge and refund keyed by order id, with a configurable failure
//! rate and latency ([`super::behaviour`]).
//!
//! The outcome of a charge is stored before it is announced, so a redelivered or repeated
//! `payments.charge` answers the same way and never charges twice: at most one payment row
//! per order, whose status moves CAPTURED -> REFUNDED at most once.

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
use crate::platform::consumer::{expect_version, EventHandler, HandleError};
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

impl CommandHandler {
    /// Charges an order at most once: a repeated charge answers as the first did.
    async fn charge(
        &self,
        tx: &OutboxTx<'_>,
        event: &Envelope,
        Amount {
            order_id,
            amount_cents,
        }: Amount,
    ) -> Result<(), HandleError> {
        let existing = tx
            .query_opt_prepared(
                "SELECT status, reason FROM payments WHERE order_id = $1 FOR UPDATE",
                &[&order_id],
            )
            .await?;
        // Why the charge failed, or `None` when it was captured.
        let declined: Option<String> = match existing {
            Some(row) if row.get::<_, String>(0) == "FAILED" => {
                Some(row.get::<_, Option<String>>(1).unwrap_or_default())
            }
            Some(_) => None,
            None => {
                let declined = (self.behaviour.decide().await)
                    .then(|| "card declined (injected failure)".to_string());
                let status = if declined.is_some() {
                    "FAILED"
                } else {
                    "CAPTURED"
                };
                // ON CONFLICT: a concurrent charge of the same order won; its outcome stands.
                tx.execute_prepared(
                    "INSERT INTO payments (order_id, amount_cents, status, reason) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (order_id) DO NOTHING",
                    &[&order_id, &amount_cents, &status, &declined],
                )
                .await?;
                declined
            }
        };
        match declined {
            Some(reason) => {
                let failed = Failed { order_id, reason };
                reply(tx, event, types::CHARGE_FAILED, &failed).await
            }
            None => reply(tx, event, types::CHARGED, &OrderRef { order_id }).await,
        }
    }
}

impl EventHandler for CommandHandler {
    async fn handle(&self, tx: &OutboxTx<'_>, event: &Envelope) -> Result<(), HandleError> {
        expect_version(event, V1)?;
        match event.event_type.as_str() {
            types::CHARGE => self.charge(tx, event, event.payload_as()?).await,
            types::REFUND => {
                let OrderRef { order_id } = event.payload_as()?;
                tx.execute_prepared(
                    "UPDATE payments SET status = 'REFUNDED', updated_at = now() WHERE order_id = $1 AND status = 'CAPTURED'",
                    &[&order_id],
                )
                .await?;
                reply(tx, event, types::REFUNDED, &OrderRef { order_id }).await
            }
            other => Err(HandleError::Poison(format!(
                "payments does not handle {other}"
            ))),
        }
    }
}
