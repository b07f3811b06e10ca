//! Schema migrations of a service's own database, and its connection pool.
//!
//! A few lines rather than a migration framework because replicas of a service start at
//! the same moment and must not race: the whole run holds a transaction-scoped advisory
//! lock, so the second replica waits and then finds nothing left to do.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::consumer::PROCESSED_EVENTS_SCHEMA;
use super::outbox::OUTBOX_SCHEMA;

/// One forward-only step of a schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The tables every service shares, so that their schema is written once: a service's
/// migrations start with the ones it needs, at the versions it always had.
impl Migration {
    /// The transactional outbox ([`crate::platform::outbox`]) of a service that publishes
    /// events.
    pub const fn outbox(version: i32) -> Migration {
        Migration {
            version,
            name: "outbox",
            sql: OUTBOX_SCHEMA,
        }
    }

    /// The whole schema of a service that publishes and consumes events: the outbox
    /// (version 1), the processed-event ids (version 2), then its own tables, `name` and
    /// `sql`, as version 3.
    pub const fn with_event_tables(name: &'static str, sql: &'static str) -> [Migration; 3] {
        [
            Migration::outbox(1),
            Migration::processed_events(2),
            Migration {
                version: 3,
                name,
                sql,
            },
        ]
    }

    /// The processed-event ids ([`crate::platform::consumer`]) of a service that consumes
    /// events idempotently.
    pub const fn processed_events(version: i32) -> Migration {
        Migration {
            version,
            name: "processed events",
            sql: PROCESSED_EVENTS_SCHEMA,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL {url:?} is invalid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("migration {version} ({name}) of {service} failed: {source}")]
    Migration {
        service: String,
        version: i32,
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migrating {service}: {source}")]
    Postgres {
        service: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database pool: {0}")]
    Pool(String),
}

/// A pool of up to `max_size` connections to `url`.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config =
        url.parse()
            .map_err(|e: tokio_postgres::Error| DbError::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Applies the migrations of `service` not yet applied, in version order; returns the
/// versions applied now.
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    service: &str,
    migrations: &[Migration],
) -> Result<Vec<i32>, DbError> {
    let pg = |source| DbError::Postgres {
        service: service.to_string(),
        source,
    };
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("migrate:{service}")],
    )
    .await
    .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg)?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(pg)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut pending: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !done.contains(&m.version))
        .collect();
    pending.sort_by_key(|m| m.version);
    let mut applied = Vec::new();
    for migration in pending {
        let failed = |source| DbError::Migration {
            service: service.to_string(),
            version: migration.version,
            name: migration.name.to_string(),
            source,
        };
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(failed)?;
        applied.push(migration.version);
    }
    tx.commit().await.map_err(pg)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_service_schema_is_outbox_then_processed_events_then_its_own() {
        const SCHEMA: [Migration; 3] = Migration::with_event_tables("orders", "CREATE TABLE x ()");
        let versions: Vec<(i32, &str)> = SCHEMA.iter().map(|m| (m.version, m.name)).collect();
        assert_eq!(
            versions,
            [(1, "outbox"), (2, "processed events"), (3, "orders")]
        );
        assert_eq!(SCHEMA[0].sql, OUTBOX_SCHEMA);
        assert_eq!(SCHEMA[1].sql, PROCESSED_EVENTS_SCHEMA);
        assert_eq!(SCHEMA[2].sql, "CREATE TABLE x ()");
        assert_eq!(Migration::processed_events(1).version, 1);
    }
}
