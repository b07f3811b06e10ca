//! What PostgreSQL and Redis have in common once started: the URL clients use and, for a
//! server this stack runs itself, its port and process. [`super::PostgresServer`] and
//! [`super::RedisServer`] wrap one and add what is theirs.
//!
//! The stack's HTTP tools (Jaeger, Prometheus) also share how they start: a directory with
//! a generated configuration ([`write_config`]), one supervised process
//! ([`start_http_tool`]) and a JSON API read with a deadline ([`get_json`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::process::{self, ManagedProcess, ProcessSpec};
use super::ready::{self, Check, Where};
use super::StackError;
use crate::platform::http::HttpClient;

/// A single-process component of the stack, local or external.
#[derive(Debug)]
pub struct Server {
    url: String,
    /// The local port, `None` for an external server.
    port: Option<u16>,
    process: Option<ManagedProcess>,
}

impl Server {
    /// A server this stack started on `port`.
    pub(crate) fn local(url: String, port: u16, process: ManagedProcess) -> Server {
        Server {
            url,
            port: Some(port),
            process: Some(process),
        }
    }

    /// An external server whose readiness was checked elsewhere.
    pub(crate) fn external_unchecked(url: &str) -> Server {
        Server {
            url: url.to_string(),
            port: None,
            process: None,
        }
    }

    /// The URL clients connect to (PostgreSQL: its default database).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The same server, with clients pointed at `url` (PostgreSQL: another database).
    pub(crate) fn with_url(self, url: String) -> Server {
        Server { url, ..self }
    }

    /// The local process, if this stack started one.
    pub fn process(&self) -> Option<&ManagedProcess> {
        self.process.as_ref()
    }

    pub(crate) fn process_mut(&mut self) -> Option<&mut ManagedProcess> {
        self.process.as_mut()
    }

    /// The local port, `None` for an external server.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Stops a local server (SIGTERM, SIGKILL after `grace`); an external one is left alone.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        if let Some(server) = self.process.as_mut() {
            server.stop(grace).await;
        }
    }
}

/// Creates `dir` and writes `text` into `dir/file`, the configuration a tool is started with.
pub(crate) fn write_config(dir: &Path, file: &str, text: &str) -> Result<PathBuf, StackError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| StackError::io(format!("creating {}", dir.display()), source))?;
    let path = dir.join(file);
    std::fs::write(&path, text)
        .map_err(|source| StackError::io(format!("writing {}", path.display()), source))?;
    Ok(path)
}

/// An HTTP tool of the stack to run: `program args` in `dir` (its log there too), serving
/// on `port` of 127.0.0.1.
pub(crate) struct HttpTool<'a> {
    /// For messages: "Jaeger", "Prometheus".
    pub component: &'a str,
    /// The process' (and its log's) name.
    pub name: &'a str,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub dir: &'a Path,
    pub port: u16,
}

/// Starts `tool` through [`process`] (so the stop and orphan rules are those of Kafka or
/// Redis) and waits until `check` passes, or fails quoting its log.
pub(crate) async fn start_http_tool(
    tool: HttpTool<'_>,
    since: Instant,
    timeout: Duration,
    check: impl Check,
) -> Result<Server, StackError> {
    let spec = ProcessSpec::in_dir(tool.name, tool.program, tool.args, tool.dir);
    let mut child = process::spawn(&spec)?;
    let place = Where {
        component: tool.component,
        port: tool.port,
        data_dir: tool.dir,
    };
    ready::wait_until_ready(&mut child, place, since, timeout, check).await?;
    let url = format!("http://127.0.0.1:{}", tool.port);
    Ok(Server::local(url, tool.port, child))
}

/// A GET of `url` whose answer must be 200 with a JSON body of type `T`.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    client: &HttpClient,
    url: &str,
) -> Result<T, String> {
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| format!("{url}: no answer within 10 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    // A trace of a few thousand spans is a few MiB of JSON.
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 << 20)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not the expected JSON: {e}"))
}
