//! PostgreSQL: a local server made by `initdb` and run as `postgres` (not the Debian cluster
//! service), with fsync on, or an external server given by URL.
//!
//! PostgreSQL refuses to run as root; when faultline is root, the server runs as the
//! `postgres` user that Debian's package creates, and owns its data directory.
//!
//! Each service gets its own role ([`PostgresServer::create_service_role`]): it owns only
//! its database, logs in with a password made per stack, and no other role but the admin
//! may connect to that database. The admin ([`LOCAL_USER`]) keeps trust authentication
//! on loopback, for the checker, seeding and profiling; every other role needs its
//! password (`pg_hba.conf`, written after `initdb`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::NoTls;

use super::process::{self, ProcessSpec, RunAs};
use super::ready::{self, Where};
use super::server::Server;
use super::{ports, StackError, EXTERNAL_TIMEOUT};

/// The role faultline connects as on a local server (trust authentication on loopback).
pub const LOCAL_USER: &str = "faultline";
/// The database created on every local server; DATABASE_URL points at it.
pub const DEFAULT_DATABASE: &str = "faultline";

/// Client authentication of a local server: the admin is trusted on loopback (as
/// before roles existed), every other role gives its SCRAM password.
const PG_HBA: &str = "\
# Written by faultline; see system/src/stack/postgres.rs.
local all faultline trust
host all faultline 127.0.0.1/32 trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
";

#[derive(Debug, Clone)]
pub enum PostgresSpec {
    Local {
        /// A fixed port, or `None` for a free one.
        port: Option<u16>,
        /// Databases to create once the server is ready (besides the default one).
        databases: Vec<String>,
    },
    External {
        url: String,
    },
}

impl Default for PostgresSpec {
    fn default() -> Self {
        PostgresSpec::Local {
            port: None,
            databases: Vec::new(),
        }
    }
}

/// A PostgreSQL server: its URL (of the default database), port and process are the
/// [`Server`]'s.
#[derive(Debug)]
pub struct PostgresServer(Server);

impl std::ops::Deref for PostgresServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl std::ops::DerefMut for PostgresServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.0
    }
}

impl PostgresServer {
    pub(crate) async fn start(
        spec: &PostgresSpec,
        data_root: &Path,
        timeout: Duration,
    ) -> Result<PostgresServer, StackError> {
        match spec {
            PostgresSpec::External { url } => {
                ready::wait_for_external("PostgreSQL", url, timeout.min(EXTERNAL_TIMEOUT), || {
                    select_one(url)
                })
                .await?;
                Ok(PostgresServer::external_unchecked(url))
            }
            PostgresSpec::Local { port, databases } => {
                let port = ports::port_for("PostgreSQL", *port)?;
                let server = start_local(port, data_root, timeout).await?;
                for name in databases {
                    server.create_database(name).await?;
                }
                Ok(server)
            }
        }
    }

    /// An external server whose readiness was checked elsewhere.
    pub(crate) fn external_unchecked(url: &str) -> PostgresServer {
        PostgresServer(Server::external_unchecked(url))
    }

    /// An admin connection, and whether `query` (taking `name` as `$1`) finds a row.
    async fn admin_finds(
        &self,
        query: &str,
        name: &str,
    ) -> Result<(tokio_postgres::Client, bool), StackError> {
        let client = connect(&self.url()).await.map_err(client_error)?;
        let found = client
            .query_opt(query, &[&name])
            .await
            .map_err(|e| client_error(e.to_string()))?
            .is_some();
        Ok((client, found))
    }

    /// Creates database `name` unless it exists; returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, StackError> {
        check_identifier("database", name)?;
        let (client, exists) = self
            .admin_finds("SELECT 1 FROM pg_database WHERE datname = $1", name)
            .await?;
        if !exists {
            // Identifiers cannot be bound as parameters; the name was checked above.
            match client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
            {
                Ok(()) => {}
                // Two callers raced to create it: the database exists, which is the goal.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => return Err(client_error(e.to_string())),
            }
        }
        Ok(with_database(&self.url(), name))
    }

    /// Makes role `name` (a fresh random password) the owner of database `name`, and the
    /// only role besides superusers that may connect to it: `CONNECT` is revoked from
    /// `PUBLIC` on every database but the templates. Returns the database's URL as that
    /// role. Tables the role creates are its own; the admin connection still reads them.
    pub async fn create_service_role(&self, name: &str) -> Result<String, StackError> {
        check_identifier("role", name)?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        let (client, exists) = self
            .admin_finds("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
            .await?;
        let verb = if exists { "ALTER" } else { "CREATE" };
        // Identifiers and the password cannot be bound as parameters in DDL; the name was
        // checked above and the password is hex.
        let mut sql = format!(
            "{verb} ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}';\n\
             ALTER DATABASE \"{name}\" OWNER TO \"{name}\";\n"
        );
        let databases = client
            .query(
                "SELECT datname FROM pg_database WHERE NOT datistemplate",
                &[],
            )
            .await
            .map_err(|e| client_error(e.to_string()))?;
        for row in databases {
            let database: String = row.try_get(0).map_err(|e| client_error(e.to_string()))?;
            sql.push_str(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE \"{}\" FROM PUBLIC;\n",
                database.replace('"', "\"\"")
            ));
        }
        // Since PostgreSQL 15 the `public` schema belongs to `pg_database_owner`, so the
        // new owner of the database may create its tables there.
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| client_error(format!("role {name}: {e}")))?;
        with_credentials(&with_database(&self.url(), name), name, &password)
    }

    pub(crate) async fn stop(&mut self) {
        // SIGTERM is PostgreSQL's "smart" shutdown; the grace covers a checkpoint.
        self.0.stop(Duration::from_secs(10)).await;
    }
}

/// The server's settings beyond the address and socket (`postgres -c` each).
const SETTINGS: &[&str] = &[
    "fsync=on",
    "max_connections=300",
    "logging_collector=off",
    // Autovacuum visits each database every 5 s, not every minute, so a table growing from
    // empty is analyzed as it grows. Until then a prepared statement keeps the generic plan
    // made on a few rows: a sequential scan for `order_id = ANY($1)`, most of the services'
    // query time in a run's first minute at 400 sagas/s.
    "autovacuum_naptime=5s",
    // ANALYZE samples 300 × this many rows and sorts every column's sample: at the default
    // (100) that sort was 4.5% of the machine's CPU at 500 sagas/s (jsonb payloads). The
    // services' statements are key lookups that need row counts, not fine histograms.
    "default_statistics_target=10",
    // Per-statement timings for profiling (`CREATE EXTENSION pg_stat_statements` in any
    // database to read them); it costs about a percent.
    "shared_preload_libraries=pg_stat_statements",
];

async fn start_local(
    port: u16,
    data_root: &Path,
    timeout: Duration,
) -> Result<PostgresServer, StackError> {
    let since = std::time::Instant::now();
    let bin = pg_bin_dir()?;
    let dir = data_root.join("postgres");
    let data = dir.join("data");
    std::fs::create_dir_all(&dir)
        .map_err(|source| StackError::io(format!("creating {}", dir.display()), source))?;
    let run_as = run_as_for_postgres()?;
    if let Some(user) = &run_as {
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).map_err(|source| {
            StackError::io(format!("handing {} to postgres", dir.display()), source)
        })?;
    }
    let log_path = dir.join("postgres.log");

    // initdb: trust authentication, since the server listens on loopback only and holds
    // throw-away data; --no-sync because the directory is temporary (the server itself
    // runs with fsync on).
    let mut initdb = process::spawn(&ProcessSpec {
        name: "initdb".into(),
        program: bin.join("initdb"),
        args: vec![
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            LOCAL_USER.into(),
            "-A".into(),
            "trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
            "--no-instructions".into(),
        ],
        env: Vec::new(),
        cwd: Some(dir.clone()),
        log_path: log_path.clone(),
        run_as: run_as.clone(),
    })?;
    let place = Where {
        component: "PostgreSQL",
        port,
        data_dir: &data,
    };
    match initdb.wait_exit(timeout).await {
        Some(status) if status.success() => {}
        Some(status) => {
            return Err(ready::failed(
                &mut initdb,
                &place,
                format!("initdb exited with {status}"),
            ))
        }
        None => {
            return Err(ready::failed(
                &mut initdb,
                &place,
                format!("initdb did not finish within {timeout:?}"),
            ))
        }
    }

    // Overwritten in place, so the file keeps initdb's owner and mode.
    std::fs::write(data.join("pg_hba.conf"), PG_HBA).map_err(|source| {
        StackError::io(
            format!("writing {}", data.join("pg_hba.conf").display()),
            source,
        )
    })?;

    let mut server = process::spawn(&ProcessSpec {
        name: "postgres".into(),
        program: bin.join("postgres"),
        args: [
            "-D",
            &data.display().to_string(),
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("unix_socket_directories={}", dir.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(
            SETTINGS
                .iter()
                .flat_map(|s| ["-c".to_string(), s.to_string()]),
        )
        .collect(),
        env: Vec::new(),
        cwd: Some(dir.clone()),
        log_path,
        run_as,
    })?;
    let admin_url = format!("postgres://{LOCAL_USER}@127.0.0.1:{port}/postgres");
    ready::wait_until_ready(&mut server, place, since, timeout, || {
        select_one(&admin_url)
    })
    .await?;
    let admin = PostgresServer(Server::local(admin_url, port, server));
    let url = admin.create_database(DEFAULT_DATABASE).await?;
    Ok(PostgresServer(admin.0.with_url(url)))
}

/// The directory holding `initdb` and `postgres`: FAULTLINE_PG_BIN, PATH, or the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps the server binaries off PATH).
fn pg_bin_dir() -> Result<PathBuf, StackError> {
    if let Some(dir) = std::env::var_os("FAULTLINE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(initdb) = process::find_program("initdb", &[]) {
        // Resolve symlinks so that `postgres` is looked up beside the real initdb.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| StackError::ProgramMissing {
            program: "initdb (PostgreSQL server)".into(),
            hint: "run `make setup` (scripts/setup) to install PostgreSQL, or set FAULTLINE_PG_BIN"
                .into(),
        })
}

/// `Some(postgres user)` when faultline runs as root.
fn run_as_for_postgres() -> Result<Option<RunAs>, StackError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        _ => Err(StackError::ProgramMissing {
            program: "the 'postgres' user".into(),
            hint: "PostgreSQL refuses to run as root and faultline is root; \
                   Debian's postgresql package creates that user (`make setup`)"
                .into(),
        }),
    }
}

/// Connects with a short timeout and drives the connection on a task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    config.connect_timeout(Duration::from_secs(2));
    // The server's own message ("permission denied for database ..."), not only "db error".
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{e}: {db}"),
            None => e.to_string(),
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}

/// `SELECT 1` must answer 1.
async fn select_one(url: &str) -> Result<(), String> {
    let client = connect(url).await?;
    let row = client
        .query_one("SELECT 1::INT4", &[])
        .await
        .map_err(|e| e.to_string())?;
    let one: i32 = row.try_get(0).map_err(|e| e.to_string())?;
    if one == 1 {
        Ok(())
    } else {
        Err(format!("SELECT 1 answered {one}"))
    }
}

/// Database and role names: lower-case letters, digits and '_' (so quoting is enough).
fn check_identifier(what: &str, name: &str) -> Result<(), StackError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StackError::Invalid(format!(
            "{what} name {name:?}: use lower-case letters, digits and '_'"
        )));
    }
    Ok(())
}

/// `url` with `user:password@` as its credentials.
fn with_credentials(url: &str, user: &str, password: &str) -> Result<String, StackError> {
    let invalid = || StackError::Invalid(format!("{url} cannot take credentials"));
    let mut parsed = url::Url::parse(url).map_err(|_| invalid())?;
    parsed.set_username(user).map_err(|()| invalid())?;
    parsed
        .set_password(Some(password))
        .map_err(|()| invalid())?;
    Ok(parsed.to_string())
}

fn client_error(reason: String) -> StackError {
    StackError::Client {
        component: "PostgreSQL".into(),
        reason,
    }
}

/// `url` with its database (the path) replaced by `database`; the query string is kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    // The path starts at the first '/' after "scheme://".
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{}", &base[..authority_end], database);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "orders"),
            "postgres://u@h:5/orders"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5?sslmode=disable", "orders"),
            "postgres://u:p@h:5/orders?sslmode=disable"
        );
    }
}
