//! Waiting for a component to answer, with a deadline and a useful error.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use super::process::ManagedProcess;
use super::StackError;

/// Lines of a component's log quoted in a start-up error.
pub const LOG_TAIL_LINES: usize = 20;

/// One try of a readiness check; `Err` says what is wrong. Any closure returning such a
/// future is one.
pub trait Check {
    fn check(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

impl<F, Fut> Check for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send,
{
    fn check(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        self()
    }
}

/// Where a local component lives, for error messages.
pub struct Where<'a> {
    pub component: &'a str,
    pub port: u16,
    pub data_dir: &'a Path,
}

/// Runs `check` until it succeeds, the process exits, or `timeout` passes. `since` is
/// when the component's start began (before initdb, say), for the logged start-up time.
pub async fn wait_until_ready(
    process: &mut ManagedProcess,
    place: Where<'_>,
    since: Instant,
    timeout: Duration,
    mut check: impl Check,
) -> Result<(), StackError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last_error;
    loop {
        if let Some(status) = process.try_exit_status() {
            return Err(failed(process, &place, format!("it exited with {status}")));
        }
        match check.check().await {
            Ok(()) => {
                tracing::info!(
                    component = place.component,
                    port = place.port,
                    ready_after_ms = since.elapsed().as_millis() as u64,
                    "ready"
                );
                return Ok(());
            }
            Err(error) => last_error = error,
        }
        if Instant::now() >= deadline {
            return Err(failed(
                process,
                &place,
                format!("not ready after {timeout:?}; last check said: {last_error}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The error for a component that did not come up: stops it and quotes its log.
pub fn failed(process: &mut ManagedProcess, place: &Where<'_>, reason: String) -> StackError {
    process.kill_and_reap();
    StackError::ComponentFailed {
        component: place.component.to_string(),
        port: place.port,
        data_dir: place.data_dir.to_path_buf(),
        reason,
        log: process.log_path().to_path_buf(),
        log_tail: process.log_tail(LOG_TAIL_LINES),
    }
}

/// Runs `check` against an external component until it succeeds or `timeout` passes.
pub async fn wait_for_external(
    component: &str,
    address: &str,
    timeout: Duration,
    mut check: impl Check,
) -> Result<(), StackError> {
    let deadline = Instant::now() + timeout;
    loop {
        match check.check().await {
            Ok(()) => return Ok(()),
            Err(reason) if Instant::now() >= deadline => {
                return Err(StackError::ExternalUnreachable {
                    component: component.to_string(),
                    address: address.to_string(),
                    reason: format!("{reason} (tried for {timeout:?})"),
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
