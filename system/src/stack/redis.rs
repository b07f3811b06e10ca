//! Redis: a local `redis-server` without persistence (unless asked), or an external one.

use std::path::Path;
use std::time::Duration;

use super::process::{self, ProcessSpec};
use super::ready::{self, Where};
use super::server::Server;
use super::{ports, StackError, EXTERNAL_TIMEOUT};

#[derive(Debug, Clone)]
pub enum RedisSpec {
    Local {
        /// A fixed port, or `None` for a free one.
        port: Option<u16>,
        /// Append-only file persistence (off by default: Redis is a cache here).
        persistence: bool,
    },
    External {
        url: String,
    },
}

impl Default for RedisSpec {
    fn default() -> Self {
        RedisSpec::Local {
            port: None,
            persistence: false,
        }
    }
}

/// A Redis server: nothing more than a [`Server`].
pub type RedisServer = Server;

/// Starts a local Redis or checks an external one.
pub(crate) async fn start(
    spec: &RedisSpec,
    data_root: &Path,
    timeout: Duration,
) -> Result<RedisServer, StackError> {
    match spec {
        RedisSpec::External { url } => {
            ready::wait_for_external("Redis", url, timeout.min(EXTERNAL_TIMEOUT), || ping(url))
                .await?;
            Ok(Server::external_unchecked(url))
        }
        RedisSpec::Local { port, persistence } => {
            let since = std::time::Instant::now();
            let port = ports::port_for("Redis", *port)?;
            let dir = data_root.join("redis");
            std::fs::create_dir_all(&dir)
                .map_err(|source| StackError::io(format!("creating {}", dir.display()), source))?;
            let program = process::find_program("redis-server", &[]).ok_or_else(|| {
                StackError::ProgramMissing {
                    program: "redis-server".into(),
                    hint: "run `make setup` (scripts/setup) to install Redis".into(),
                }
            })?;
            let mut args = vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.display().to_string(),
                "--save".into(),
                String::new(),
                "--daemonize".into(),
                "no".into(),
                "--protected-mode".into(),
                "no".into(),
            ];
            args.extend(
                ["--appendonly", if *persistence { "yes" } else { "no" }]
                    .iter()
                    .map(|s| s.to_string()),
            );
            let mut server = process::spawn(&ProcessSpec::in_dir("redis", program, args, &dir))?;
            let url = format!("redis://127.0.0.1:{port}");
            let place = Where {
                component: "Redis",
                port,
                data_dir: &dir,
            };
            ready::wait_until_ready(&mut server, place, since, timeout, || ping(&url)).await?;
            Ok(Server::local(url, port, server))
        }
    }
}

/// `PING` must answer `PONG`.
async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {pong:?}"))
    }
}
