//! Configurable failure rate and latency of a saga participant (payments, shipping), for
//! experiments: set at start by flags, changed at runtime with `PUT /admin/behaviour`; and
//! how such a participant starts ([`start_participant`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use deadpool_postgres::Pool;

use super::runtime::{ServiceContext, ServiceError};
use crate::platform::consumer::EventHandler;
use crate::platform::http::{ApiError, Json};
use crate::platform::migrate::Migration;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// Probability in [0, 1] that an operation fails (decided once per order and stored).
    pub fail_rate: f64,
    /// Time each operation takes, in milliseconds.
    pub latency_ms: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            fail_rate: 0.0,
            latency_ms: 0,
        }
    }
}

impl Behaviour {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fail_rate) || self.fail_rate.is_nan() {
            return Err(format!(
                "fail_rate {} is not between 0 and 1",
                self.fail_rate
            ));
        }
        if self.latency_ms > 60_000 {
            return Err(format!("latency_ms {} is above 60000", self.latency_ms));
        }
        Ok(())
    }
}

/// The current behaviour, shared by the handler and the admin route. A `std` lock: it is
/// only read or written, never held across an await.
#[derive(Debug, Clone, Default)]
pub struct SharedBehaviour(Arc<RwLock<Behaviour>>);

impl SharedBehaviour {
    pub fn new(behaviour: Behaviour) -> SharedBehaviour {
        SharedBehaviour(Arc::new(RwLock::new(behaviour)))
    }

    pub fn get(&self) -> Behaviour {
        *self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, behaviour: Behaviour) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = behaviour;
    }

    /// Waits the configured latency, then says whether this operation fails.
    pub async fn decide(&self) -> bool {
        let behaviour = self.get();
        if behaviour.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
        }
        behaviour.fail_rate > 0.0 && rand::random::<f64>() < behaviour.fail_rate
    }
}

/// Starts a saga participant whose outcomes follow a [`Behaviour`]: its database and outbox
/// relay, and its consumer (`<service>-commands`) of the first of its `topics`, the saga's
/// commands to it, with the handler `handler` makes from the behaviour. Returns its pool
/// and the behaviour, for its routes.
pub(crate) async fn start_participant<H: EventHandler>(
    ctx: &mut ServiceContext<'_>,
    migrations: &[Migration],
    topics: &[&str],
    handler: impl FnOnce(SharedBehaviour) -> H,
) -> Result<(Pool, SharedBehaviour), ServiceError> {
    let platform = ctx.platform(migrations, topics).await?;
    ctx.relay(&platform);
    let behaviour = ctx.behaviour()?;
    let consumer = format!("{}-commands", ctx.name);
    let commands = topics.get(..1).unwrap_or_default();
    ctx.consume(&platform, &consumer, commands, handler(behaviour.clone()))?;
    Ok((platform.pool.clone(), behaviour))
}

/// `GET` and `PUT /admin/behaviour`.
pub fn routes(behaviour: SharedBehaviour) -> Router {
    Router::new()
        .route("/admin/behaviour", get(show).put(change))
        .with_state(behaviour)
}

async fn show(State(behaviour): State<SharedBehaviour>) -> Json<Behaviour> {
    Json(behaviour.get())
}

async fn change(
    State(shared): State<SharedBehaviour>,
    Json(behaviour): Json<Behaviour>,
) -> Result<Json<Behaviour>, ApiError> {
    behaviour.validate().map_err(ApiError::BadRequest)?;
    shared.set(behaviour);
    tracing::info!(?behaviour, "behaviour changed");
    Ok(Json(behaviour))
}
