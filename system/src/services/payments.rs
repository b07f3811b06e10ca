//! Payments: idempotent charge and refund keyed by order id, with a configurable failure
//! rate and latency ([`super::behaviour`]).
//!
//! The outcome of a charge is stored before it is announced, so a redelivered or repeated
//! `payments.charge` answers the same way and never charges twice: at most one payment row
//! per order, whose status moves CAPTURED -> REFUNDED at most once.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::behaviour::SharedBehaviour;
use super::messages::{self, types, Amount, Failed, OrderRef, V1};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::{expect_version, EventHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, Json};
use crate::platform::migrate::Migration;

pub const NAME: &str = "payments";

pub const MIGRATIONS: &[Migration] = &[
    Migration::outbox(1),
    Migration::processed_events(2),
    Migration {
        version: 3,
        name: "payments",
        sql: "
CREATE TABLE payments (
    order_id     UUID PRIMARY KEY,
    amount_cents BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('CAPTURED', 'FAILED', 'REFUNDED')),
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);",
    },
];

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
    let platform = ctx.platform(MIGRATIONS, TOPICS).await?;
    ctx.relay(&platform);
    let behaviour = ctx.behaviour()?;
    let handler = CommandHandler {
        behaviour: behaviour.clone(),
    };
    ctx.consume(
        &platform,
        "payments-commands",
        &[messages::PAYMENTS_COMMANDS],
        handler,
    )?;
    Ok(routes(platform.pool.clone()).merge(super::behaviour::routes(behaviour)))
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
        .query_opt(
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
    tx: &Transaction<'_>,
    request: &Envelope,
    event_type: &str,
    payload: &T,
) -> Result<(), HandleError> {
    messages::reply(tx, messages::PAYMENTS_REPLIES, request, event_type, payload).await
}

impl EventHandler for CommandHandler {
    async fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a Envelope,
    ) -> Result<(), HandleError> {
        expect_version(event, V1)?;
        match event.event_type.as_str() {
            types::CHARGE => {
                let Amount {
                    order_id,
                    amount_cents,
                } = event.payload_as()?;
                let existing = tx
                    .query_opt(
                        "SELECT status, reason FROM payments WHERE order_id = $1 FOR UPDATE",
                        &[&order_id],
                    )
                    .await?;
                match existing {
                    Some(row) if row.get::<_, String>(0) == "FAILED" => {
                        let reason: Option<String> = row.get(1);
                        reply(
                            tx,
                            event,
                            types::CHARGE_FAILED,
                            &Failed {
                                order_id,
                                reason: reason.unwrap_or_default(),
                            },
                        )
                        .await
                    }
                    Some(_) => reply(tx, event, types::CHARGED, &OrderRef { order_id }).await,
                    None => {
                        let failed = self.behaviour.decide().await;
                        let (status, reason) = if failed {
                            ("FAILED", Some("card declined (injected failure)"))
                        } else {
                            ("CAPTURED", None)
                        };
                        // ON CONFLICT: a concurrent charge of the same order won; its outcome stands.
                        tx.execute(
                            "INSERT INTO payments (order_id, amount_cents, status, reason) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (order_id) DO NOTHING",
                            &[&order_id, &amount_cents, &status, &reason],
                        )
                        .await?;
                        match reason {
                            Some(reason) => {
                                reply(
                                    tx,
                                    event,
                                    types::CHARGE_FAILED,
                                    &Failed {
                                        order_id,
                                        reason: reason.into(),
                                    },
                                )
                                .await
                            }
                            None => reply(tx, event, types::CHARGED, &OrderRef { order_id }).await,
                        }
                    }
                }
            }
            types::REFUND => {
                let OrderRef { order_id } = event.payload_as()?;
                tx.execute(
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
