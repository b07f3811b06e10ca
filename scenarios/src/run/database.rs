//! The statements the services' databases ran during a run: `pg_stat_statements` (the
//! local server preloads it; `system::stack::postgres`) read through the admin connection
//! when the load starts and when it ends, into results' `database`
//! ([`faultline_results::database`] does the arithmetic).
//!
//! Counted: statements that read or write rows, run by any role but the admin (the
//! services' own roles), in the services' databases. A server without the extension, or
//! an admin that may not create it, costs the run only that section: it says so.

use std::collections::BTreeMap;
use std::time::Instant;

use faultline_results::{DatabaseResults, StatementReading};
use faultline_system::{services::ServiceKind, stack::postgres, supervisor::System};

/// A statement in `pg_stat_statements`: role, database, query id, top level or nested.
type StatementKey = (u32, u32, i64, bool);

/// The statements that read or write rows: `BEGIN`, `COMMIT`, `SET` and the like are
/// the transactions' bookkeeping, not queries.
const STATEMENTS: &str = "
SELECT s.userid, s.dbid, s.queryid, s.toplevel, d.datname, s.calls,
       s.total_exec_time, s.stddev_exec_time
  FROM pg_stat_statements s
  JOIN pg_database d ON d.oid = s.dbid
 WHERE d.datname = ANY($1)
   AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
   AND s.queryid IS NOT NULL
   AND s.query ~* '^\\s*(select|insert|update|delete|with|merge|values|table|copy)\\M'";

/// The reading at the run's start, and where to read again at its end.
pub(super) struct StatementCounter {
    started: Option<Started>,
}

struct Started {
    /// The admin's URL of a service database (the view covers every database).
    url: String,
    databases: Vec<String>,
    at: Instant,
    reading: BTreeMap<StatementKey, StatementReading>,
}

impl StatementCounter {
    /// Reads the counters now; a failure is said on stderr and leaves the section out.
    pub(super) async fn start(system: &System) -> StatementCounter {
        let databases: Vec<String> = (system.database_urls.keys())
            .map(|kind: &ServiceKind| kind.name().to_string())
            .collect();
        let Some(url) = system.database_urls.values().next().cloned() else {
            return StatementCounter { started: None };
        };
        let started = async {
            let client = postgres::connect(&url).await?;
            // Quiet: every run after the first would log the "already exists" notice.
            client
                .batch_execute(
                    "SET client_min_messages = warning;
                     CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
                )
                .await
                .map_err(|e| db_error(&e))?;
            read(&client, &databases).await
        }
        .await;
        match started {
            Ok(reading) => StatementCounter {
                started: Some(Started {
                    url,
                    databases,
                    at: Instant::now(),
                    reading,
                }),
            },
            Err(error) => {
                eprintln!("run: the databases' statements are not counted: {error}");
                StatementCounter { started: None }
            }
        }
    }

    /// Reads the counters again: what ran in between.
    pub(super) async fn finish(self) -> Option<DatabaseResults> {
        let started = self.started?;
        let secs = started.at.elapsed().as_secs_f64();
        let end = async {
            let client = postgres::connect(&started.url).await?;
            read(&client, &started.databases).await
        }
        .await;
        match end {
            Ok(end) => Some(DatabaseResults::between(&started.reading, &end, secs)),
            Err(error) => {
                eprintln!("run: the databases' statements could not be read again: {error}");
                None
            }
        }
    }
}

async fn read(
    client: &tokio_postgres::Client,
    databases: &[String],
) -> Result<BTreeMap<StatementKey, StatementReading>, String> {
    let rows = client
        .query(STATEMENTS, &[&databases])
        .await
        .map_err(|e| db_error(&e))?;
    rows.iter()
        .map(|row| {
            let key = (
                row.try_get::<_, u32>(0)?,
                row.try_get::<_, u32>(1)?,
                row.try_get::<_, i64>(2)?,
                row.try_get::<_, bool>(3)?,
            );
            let reading = StatementReading {
                database: row.try_get(4)?,
                calls: row.try_get::<_, i64>(5)?.max(0) as u64,
                total_ms: row.try_get(6)?,
                stddev_ms: row.try_get(7)?,
            };
            Ok((key, reading))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| format!("reading pg_stat_statements: {e}"))
}

/// The server's own message, not only "db error".
fn db_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{error}: {db}"),
        None => error.to_string(),
    }
}
