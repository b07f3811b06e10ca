//! Process faults: kill (SIGKILL), terminate (SIGTERM), pause (SIGSTOP until SIGCONT),
//! resume and restart.
//!
//! A fault acts on a [`ProcessControl`]: something that can signal a process and perhaps
//! restart it. [`PidProcess`] signals a bare pid (and cannot restart); the `faultline`
//! binary implements the trait over the reference system's supervisor, which signals a
//! replica's current process (its pid changes when the supervisor restarts it) and
//! restarts it. A pause is a [`PauseGuard`] that sends SIGCONT when dropped, so no error
//! path, cancellation or panic leaves a process stopped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use nix::sys::signal::Signal;

/// A boxed future, so [`ProcessControl`] can be used as `dyn ProcessControl`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of process faults.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("pid {0} cannot be signalled (0 would mean our own process group)")]
    BadPid(u32),
    #[error("sending {signal} to pid {pid}: {source}")]
    Signal {
        signal: Signal,
        pid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("{0} is not running")]
    NotRunning(String),
    #[error("{0} cannot be restarted: nothing supervises it")]
    RestartUnsupported(String),
    #[error("restarting {target}: {reason}")]
    Restart { target: String, reason: String },
    #[error("deploying {target}: {reason}")]
    Deploy { target: String, reason: String },
}

/// Something a process fault can act on.
///
/// Implementations must be cheap to call and must not block: the timeline calls
/// [`ProcessControl::signal`] from `Drop` to undo pauses.
pub trait ProcessControl: Send + Sync {
    /// Sends `signal` to the process (an implementation may send it to the process
    /// group). Returns the pid signalled.
    fn signal(&self, signal: Signal) -> Result<u32, ProcessError>;

    /// Whether [`ProcessControl::restart`] can work; checked before a timeline starts.
    fn can_restart(&self) -> bool {
        false
    }

    /// Stops the process and starts it again; resolves when the new one runs (how
    /// "runs" is judged, e.g. ready on its health endpoint, is the implementation's).
    fn restart(&self) -> BoxFuture<'_, Result<(), ProcessError>> {
        Box::pin(async { Err(ProcessError::RestartUnsupported("this process".into())) })
    }
}

/// A process known only by its pid: it can be signalled but not restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidProcess(pub u32);

impl ProcessControl for PidProcess {
    fn signal(&self, signal: Signal) -> Result<u32, ProcessError> {
        send_signal(self.0, signal)?;
        Ok(self.0)
    }

    fn restart(&self) -> BoxFuture<'_, Result<(), ProcessError>> {
        let target = format!("pid {}", self.0);
        Box::pin(async move { Err(ProcessError::RestartUnsupported(target)) })
    }
}

/// Sends `signal` to `pid`. Refuses pid 0 and pids above `i32::MAX`: `kill(2)` reads 0
/// as "my process group" and negative values as other groups, which no fault means.
pub fn send_signal(pid: u32, signal: Signal) -> Result<(), ProcessError> {
    let raw = i32::try_from(pid)
        .ok()
        .filter(|raw| *raw > 0)
        .ok_or(ProcessError::BadPid(pid))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal).map_err(|source| {
        ProcessError::Signal {
            signal,
            pid,
            source,
        }
    })
}

/// SIGKILL: the process dies at once, without cleanup.
pub fn kill(target: &dyn ProcessControl) -> Result<u32, ProcessError> {
    target.signal(Signal::SIGKILL)
}

/// SIGTERM: the process is asked to shut down gracefully.
pub fn terminate(target: &dyn ProcessControl) -> Result<u32, ProcessError> {
    target.signal(Signal::SIGTERM)
}

/// SIGCONT: a stopped process runs again (harmless on a running one).
pub fn resume(target: &dyn ProcessControl) -> Result<u32, ProcessError> {
    target.signal(Signal::SIGCONT)
}

/// SIGSTOP: the process stops until the returned guard is resumed or dropped.
pub fn pause(target: Arc<dyn ProcessControl>) -> Result<PauseGuard, ProcessError> {
    target.signal(Signal::SIGSTOP)?;
    Ok(PauseGuard {
        target: Some(target),
    })
}

/// Pauses for `duration`, then resumes. If this future is dropped early the guard still
/// resumes the process.
pub async fn pause_for(
    target: Arc<dyn ProcessControl>,
    duration: Duration,
) -> Result<(), ProcessError> {
    let guard = pause(target)?;
    tokio::time::sleep(duration).await;
    guard.resume()
}

/// A paused process; SIGCONT is sent when this is resumed or dropped.
#[must_use = "dropping the guard resumes the process at once"]
pub struct PauseGuard {
    target: Option<Arc<dyn ProcessControl>>,
}

impl PauseGuard {
    /// Resumes now and reports whether SIGCONT could be sent.
    pub fn resume(mut self) -> Result<(), ProcessError> {
        match self.target.take() {
            Some(target) => resume(target.as_ref()).map(|_| ()),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for PauseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseGuard")
            .field("resumed", &self.target.is_none())
            .finish()
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            if let Err(error) = resume(target.as_ref()) {
                // The process may have died meanwhile (a kill during the pause): then
                // there is nothing left stopped.
                tracing::warn!(%error, "resuming a paused process");
            }
        }
    }
}
