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
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaFormat, Type};
use uuid::Uuid;

use super::messages::{self, types, UserRegistered, V1};
use super::orders::caller;
use super::runtime::{redis_probe, ServiceContext, ServiceError, REDIS_URL};
use crate::platform::auth::Tokens;
use crate::platform::envelope::Envelope;
use crate::platform::http::{ApiError, ErrorBody, Json, TraceContext};
use crate::platform::metrics::Metrics;
use crate::platform::migrate::Migration;
use crate::platform::outbox::{self, OutboxTx};
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

/// The limits [`check_email`], [`check_name`] and [`check_password`] enforce; the schemas
/// of the fields are built from the same numbers ([`email_schema`] and the others).
pub const MAX_EMAIL: usize = 254;
pub const MAX_NAME: usize = 100;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

/// A name holds at least one character that is neither whitespace nor a control character,
/// and no NUL (PostgreSQL's text cannot hold one), as [`check_name`] asks.
pub const NAME_PATTERN: &str = r"^[^\x00]*[^\s\x00-\x1f\x7f-\x9f][^\x00]*$";

/// A string of `min..=max` characters (JSON Schema counts characters, as the checks do).
fn text_schema(min: usize, max: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
}

fn email_schema() -> Object {
    text_schema(1, MAX_EMAIL, "`local@domain.tld`; compared without case")
        .format(Some(SchemaFormat::Custom("email".into())))
        .build()
}

fn password_schema() -> Object {
    text_schema(MIN_PASSWORD, MAX_PASSWORD, "The password").build()
}

fn name_schema() -> Object {
    text_schema(1, MAX_NAME, "Stored without surrounding whitespace")
        .pattern(Some(NAME_PATTERN))
        .build()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Register {
    #[schema(schema_with = email_schema)]
    pub email: String,
    #[schema(schema_with = password_schema)]
    pub password: String,
    #[schema(schema_with = name_schema)]
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateProfile {
    #[schema(schema_with = name_schema)]
    pub name: String,
}

/// The answer to a registration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub id: Uuid,
}

/// The answer to a login: the bearer token for the other calls.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoggedIn {
    pub token: String,
    pub user_id: Uuid,
}

/// The answer to a name change: the name as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Renamed {
    pub id: Uuid,
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

/// The email as stored (trimmed, lower case), if it looks like one and is at most
/// [`MAX_EMAIL`] characters as sent.
fn check_email(email: &str) -> Result<String, ApiError> {
    let too_long = email.chars().count() > MAX_EMAIL;
    let email = email.trim().to_lowercase();
    let valid = !too_long
        && !email.chars().any(char::is_control)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::BadRequest(format!(
            "email: {email:?} is not an email address of at most {MAX_EMAIL} characters"
        )))
    }
}

/// The name as stored (trimmed), if it is 1 to [`MAX_NAME`] characters as sent and holds
/// one that is neither whitespace nor a control character ([`NAME_PATTERN`]).
fn check_name(name: &str) -> Result<String, ApiError> {
    let visible = name.chars().any(|c| !c.is_whitespace() && !c.is_control());
    if name.contains('\0') {
        return Err(ApiError::BadRequest("name: holds a NUL character".into()));
    }
    if !visible || name.chars().count() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "name: give 1 to {MAX_NAME} characters, not all of them blank"
        )));
    }
    Ok(name.trim().to_string())
}

/// Lengths count characters, as the document's `minLength`/`maxLength` do.
fn check_password(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(ApiError::BadRequest(format!(
            "password: use {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// Registers a user.
#[utoipa::path(post, path = "/api/users/register", tag = "users", request_body = Register,
    responses((status = 201, description = "Registered", body = Registered),
              (status = 409, description = "The email is taken", body = ErrorBody),
              (status = 400, description = "Invalid input; the message names the field", body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<UsersState>,
    Extension(trace): Extension<TraceContext>,
    Json(request): Json<Register>,
) -> Result<impl IntoResponse, ApiError> {
    let email = check_email(&request.email)?;
    let name = check_name(&request.name)?;
    check_password(&request.password)?;
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
    let tx = OutboxTx::begin(&mut client).await?;
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
    outbox::enqueue(&tx, messages::USERS_EVENTS, event);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Registered { id })))
}

/// Logs in: a bearer token (HS256 JWT) for the other calls.
#[utoipa::path(post, path = "/api/users/login", tag = "users", request_body = Login,
    responses((status = 200, description = "Logged in", body = LoggedIn),
              (status = 401, description = "Wrong email or password", body = ErrorBody)))]
pub(crate) async fn login(
    State(state): State<UsersState>,
    Json(request): Json<Login>,
) -> Result<Json<LoggedIn>, ApiError> {
    let refused = || ApiError::Unauthorized("wrong email or password".into());
    let email = request.email.trim().to_lowercase();
    // Registration refuses control characters, so such an email is nobody's (and a NUL
    // would not even reach PostgreSQL's text).
    if email.chars().any(char::is_control) {
        return Err(refused());
    }
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
    Ok(Json(LoggedIn { token, user_id: id }))
}

fn cache_key(id: Uuid) -> String {
    format!("faultline:user:{id}")
}

/// The caller's profile (read through the Redis cache).
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody),
              (status = 404, description = "The caller's account is gone", body = ErrorBody)))]
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
    responses((status = 200, description = "Renamed", body = Renamed), (status = 401, body = ErrorBody),
              (status = 404, description = "The caller's account is gone", body = ErrorBody),
              (status = 400, description = "Invalid input; the message names the field", body = ErrorBody)))]
pub(crate) async fn update_me(
    State(mut state): State<UsersState>,
    headers: HeaderMap,
    Json(request): Json<UpdateProfile>,
) -> Result<Json<Renamed>, ApiError> {
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
    Ok(Json(Renamed { id, name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_in_emails_and_nul_in_names() {
        assert!(check_email("a\0b@example.com").is_err());
        assert!(check_email("a\u{7}b@example.com").is_err());
        assert!(check_name("Ada\0").is_err());
        assert!(
            check_name("Ada\u{7}").is_ok(),
            "only NUL among the controls"
        );
    }

    #[test]
    fn names_are_counted_in_characters_and_need_one_that_shows() {
        assert_eq!(check_name("  Ada  ").ok().as_deref(), Some("Ada"));
        assert!(
            check_name(&"é".repeat(MAX_NAME)).is_ok(),
            "characters, not bytes"
        );
        assert!(check_name(&"a".repeat(MAX_NAME + 1)).is_err());
        for blank in ["", "   ", "\t\n", "\u{1c}", "\u{0}", " \u{85} "] {
            assert!(check_name(blank).is_err(), "{blank:?}");
        }
    }

    #[test]
    fn passwords_are_counted_in_characters() {
        assert!(check_password(&"é".repeat(MIN_PASSWORD - 1)).is_err());
        assert!(
            check_password(&"é".repeat(MAX_PASSWORD)).is_ok(),
            "2 bytes each"
        );
        assert!(check_password(&"a".repeat(MAX_PASSWORD + 1)).is_err());
    }

    #[test]
    fn emails_past_the_limit_are_refused_before_trimming() {
        let local = "a".repeat(MAX_EMAIL - "@example.com".len());
        assert!(check_email(&format!("{local}@example.com")).is_ok());
        assert!(check_email(&format!(" {local}@example.com")).is_err());
        assert!(check_email("nobody").is_err());
    }
}
