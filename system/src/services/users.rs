//! Users: registration (argon2 password hashes), login (issues JWTs), and profiles read
//! through Redis cache-aside: a read tries Redis, falls back to the database and fills the
//! cache; an update writes the database, then deletes the cached copy so the next read
//! fills it afresh. Registration announces `user.registered` through the outbox.

use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use prometheus::{IntCounterVec, Opts};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::messages::{self, types, UserRegistered, V1};
use super::orders::caller;
use super::runtime::{redis_probe, ServiceContext, ServiceError, REDIS_URL};
use crate::platform::auth::Tokens;
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, ErrorBody, Json, TraceContext};
use crate::platform::metrics::Metrics;
use crate::platform::migrate::Migration;
use crate::platform::outbox;
use crate::platform::sql::Prepared;

pub const NAME: &str = "users";
/// How long a cached profile lives even if nothing invalidates it.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

pub const MIGRATIONS: &[Migration] = &[
    Migration::outbox(1),
    Migration {
        version: 2,
        name: "users",
        sql: "
CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);",
    },
];

pub const TOPICS: &[&str] = &[messages::USERS_EVENTS];

#[derive(Clone)]
pub struct UsersState {
    pub pool: Pool,
    pub redis: ConnectionManager,
    pub tokens: Tokens,
    pub cache: IntCounterVec,
}

impl UsersState {
    pub fn new(
        pool: Pool,
        redis: ConnectionManager,
        tokens: Tokens,
        metrics: &Metrics,
    ) -> UsersState {
        let cache = metrics.register(IntCounterVec::new(
            Opts::new("profile_cache_total", "Profile reads by cache outcome"),
            &["outcome"],
        ));
        UsersState {
            pool,
            redis,
            tokens,
            cache,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Register {
    pub email: String,
    pub password: String,
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateProfile {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /users/register`, `POST /users/login`, `GET` and `PUT /users/me`.
/// Starts users: its database and outbox relay, the JWT issuer, the Redis profile cache.
/// Password hashes computed at once: one per core. Argon2 (OWASP's m=19 MiB, t=2, p=1,
/// the crate's default) is deliberately slow CPU work; a burst of logins run all at once
/// only thrashed the cores and 19 MiB each of memory, and every one finished late.
static PASSWORD_WORKERS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// Runs password hashing off the async workers, at most [`PASSWORD_WORKERS`] at a time.
async fn password_work<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = PASSWORD_WORKERS
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let platform = ctx.platform(MIGRATIONS, TOPICS).await?;
    ctx.relay(&platform);
    let tokens = ctx.tokens()?;
    let redis_url = ctx.required(&ctx.args.redis_url, REDIS_URL)?;
    let redis_error = |e: redis::RedisError| ServiceError::Redis {
        service: NAME.into(),
        reason: e.to_string(),
    };
    let client = redis::Client::open(redis_url).map_err(redis_error)?;
    let connection = ConnectionManager::new(client).await.map_err(redis_error)?;
    ctx.add_probe("redis", redis_probe(connection.clone()));
    Ok(routes(UsersState::new(
        platform.pool.clone(),
        connection,
        tokens,
        &platform.metrics,
    )))
}

pub fn routes(state: UsersState) -> Router {
    Router::new()
        .route("/users/register", post(register))
        .route("/users/login", post(login))
        .route("/users/me", get(me).put(update_me))
        .with_state(state)
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::BadRequest(format!(
            "email: {email:?} is not an email address"
        )))
    }
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "name: give 1 to 100 characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// Registers a user.
#[utoipa::path(post, path = "/api/users/register", tag = "users", request_body = Register,
    responses((status = 201, description = "Registered; the body is `{\"id\"}`"),
              (status = 409, description = "The email is taken", body = ErrorBody),
              (status = 400, description = "Invalid input; the message names the field", body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<UsersState>,
    Extension(trace): Extension<TraceContext>,
    Json(request): Json<Register>,
) -> Result<impl IntoResponse, ApiError> {
    let email = check_email(&request.email)?;
    let name = check_name(&request.name)?;
    if request.password.chars().count() < 8 || request.password.len() > 1024 {
        return Err(ApiError::BadRequest(
            "password: use 8 to 1024 characters".into(),
        ));
    }
    let password = request.password;
    let hash = password_work(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await?
    .map_err(ApiError::internal)?;

    let id = Uuid::new_v4();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let inserted = tx
        .execute_prepared(
            "INSERT INTO users (id, email, password_hash, name) VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING",
            &[&id, &email, &hash, &name],
        )
        .await?;
    if inserted == 0 {
        return Err(ApiError::Conflict(format!(
            "a user with email {email} exists"
        )));
    }
    let event = Envelope::new(
        types::USER_REGISTERED,
        V1,
        id.to_string(),
        serde_json::to_value(UserRegistered {
            user_id: id,
            email,
            name,
        })
        .map_err(ApiError::internal)?,
    )
    .with_traceparent(Some(trace.traceparent));
    outbox::enqueue(&tx, messages::USERS_EVENTS, &event).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

/// Logs in: a bearer token (HS256 JWT) for the other calls.
#[utoipa::path(post, path = "/api/users/login", tag = "users", request_body = Login,
    responses((status = 200, description = "`{\"token\", \"user_id\"}`"),
              (status = 401, description = "Wrong email or password", body = ErrorBody)))]
pub(crate) async fn login(
    State(state): State<UsersState>,
    Json(request): Json<Login>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let refused = || ApiError::Unauthorized("wrong email or password".into());
    let email = request.email.trim().to_lowercase();
    let client = state.pool.get().await?;
    let row = client
        .query_opt_prepared(
            "SELECT id, password_hash FROM users WHERE email = $1",
            &[&email],
        )
        .await?
        .ok_or_else(refused)?;
    let (id, hash): (Uuid, String) = (row.get(0), row.get(1));
    let password = request.password;
    let matches = password_work(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await?;
    if !matches {
        return Err(refused());
    }
    let token = state.tokens.issue(id).map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "token": token, "user_id": id })))
}

fn cache_key(id: Uuid) -> String {
    format!("faultline:user:{id}")
}

/// The caller's profile (read through the Redis cache).
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody)))]
pub(crate) async fn me(
    State(mut state): State<UsersState>,
    headers: HeaderMap,
) -> Result<Json<Profile>, ApiError> {
    let id = caller(&headers)?;
    // A cache that does not answer is skipped, not fatal: the database is the truth.
    let cached: Option<String> = redis::cmd("GET")
        .arg(cache_key(id))
        .query_async(&mut state.redis)
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "profile cache read failed");
            None
        });
    if let Some(profile) = cached.and_then(|json| serde_json::from_str::<Profile>(&json).ok()) {
        state.cache.with_label_values(&["hit"]).inc();
        return Ok(Json(profile));
    }
    state.cache.with_label_values(&["miss"]).inc();
    let client = state.pool.get().await?;
    let row = client
        .query_opt_prepared(
            "SELECT id, email, name, created_at FROM users WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    let profile = Profile {
        id: row.get(0),
        email: row.get(1),
        name: row.get(2),
        created_at: row.get(3),
    };
    if let Ok(json) = serde_json::to_string(&profile) {
        let stored: Result<(), _> = redis::cmd("SET")
            .arg(cache_key(id))
            .arg(json)
            .arg("EX")
            .arg(CACHE_TTL.as_secs())
            .query_async(&mut state.redis)
            .await;
        if let Err(error) = stored {
            tracing::warn!(%error, "profile cache write failed");
        }
    }
    Ok(Json(profile))
}

/// Changes the caller's name (and invalidates the cached profile).
#[utoipa::path(put, path = "/api/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateProfile,
    responses((status = 200, description = "`{\"id\", \"name\"}`"), (status = 401, body = ErrorBody), (status = 400, description = "Invalid input; the message names the field", body = ErrorBody)))]
pub(crate) async fn update_me(
    State(mut state): State<UsersState>,
    headers: HeaderMap,
    Json(request): Json<UpdateProfile>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = caller(&headers)?;
    let name = check_name(&request.name)?;
    let client = state.pool.get().await?;
    let updated = client
        .execute_prepared(
            "UPDATE users SET name = $2, updated_at = now() WHERE id = $1",
            &[&id, &name],
        )
        .await?;
    if updated == 0 {
        return Err(ApiError::NotFound("no such user".into()));
    }
    // After the commit, so a reader cannot refill the cache with the old row in between
    // (a reader that read before the commit can, until the TTL: that window is the price of
    // cache-aside).
    let deleted: Result<(), _> = redis::cmd("DEL")
        .arg(cache_key(id))
        .query_async(&mut state.redis)
        .await;
    if let Err(error) = deleted {
        return Err(ApiError::Unavailable(format!(
            "profile updated, but the cache could not be invalidated: {error}"
        )));
    }
    Ok(Json(serde_json::json!({ "id": id, "name": name })))
}
