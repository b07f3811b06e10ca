//! What PostgreSQL and Redis have in common once started: the URL clients use and, for a
//! server this stack runs itself, its port and process. [`super::PostgresServer`] and
//! [`super::RedisServer`] wrap one and add what is theirs.

use std::time::Duration;

use super::process::ManagedProcess;

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
