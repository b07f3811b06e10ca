//! Child processes that cannot outlive faultline.
//!
//! Every component of the stack (postgres, redis-server, each Kafka JVM) is started through
//! [`spawn`], which gives three guarantees:
//!
//! - **Parent death**: the child is started under `setpriv --pdeathsig KILL`, so the kernel
//!   kills it when faultline dies, even by SIGKILL, where no destructor runs. The parent-death
//!   signal fires when the *thread* that forked the child exits, not the process, so all forks
//!   happen on one spawner thread that lives as long as the process (a test thread or a tokio
//!   blocking thread would end early and take the children with it).
//! - **Process group**: the child leads a group of its own, so stopping it signals the whole
//!   group (postgres' backends included), and a terminal's Ctrl-C reaches faultline only,
//!   which then stops the children in order.
//! - **Stop**: [`ManagedProcess::stop`] sends SIGTERM, waits a grace period, then SIGKILL;
//!   [`Drop`] does the same with a short grace, so a panic leaves nothing behind either.
//!
//! `setpriv` (util-linux) is used rather than `prctl` in a `pre_exec` hook because the
//! workspace forbids unsafe code; it also drops root for PostgreSQL, which refuses to run
//! as root, and applies the parent-death signal *after* changing user (the kernel clears it
//! on a change of credentials).

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::StackError;

/// A user to run a child as, when faultline runs as root and the program refuses to.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// What to start: a program, its arguments, its environment, and where its output goes.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name for messages, e.g. `kafka-1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr of the child are appended here.
    pub log_path: PathBuf,
    pub run_as: Option<RunAs>,
}

impl ProcessSpec {
    /// A server of the stack that lives in `dir`: run there as faultline's user, with
    /// faultline's environment, its output in `dir/<name>.log`.
    pub fn in_dir(name: &str, program: PathBuf, args: Vec<String>, dir: &Path) -> ProcessSpec {
        ProcessSpec {
            name: name.to_string(),
            program,
            args,
            env: Vec::new(),
            cwd: Some(dir.to_path_buf()),
            log_path: dir.join(format!("{name}.log")),
            run_as: None,
        }
    }
}

type SpawnReply = mpsc::Sender<io::Result<Child>>;

/// Sender side of the spawner thread. A `Mutex` because `mpsc::Sender` is not `Sync` on
/// older toolchains' terms and the lock is held only to clone it.
static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Command, SpawnReply)>>> = OnceLock::new();

fn spawner() -> mpsc::Sender<(Command, SpawnReply)> {
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, SpawnReply)>();
        // This thread never returns while the process lives: it owns every fork, so the
        // parent-death signal of the children fires only when the whole process ends.
        let spawned = std::thread::Builder::new()
            .name("faultline-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // All senders are gone only when the static is dropped, i.e. never; park
                // anyway so the thread outlives any child it forked.
                loop {
                    std::thread::park();
                }
            });
        if let Err(error) = spawned {
            // Without the thread every spawn reports the failure below.
            tracing::error!(%error, "could not start the process spawner thread");
        }
        Mutex::new(tx)
    });
    match sender.lock() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Path of `setpriv`, checked once.
fn setpriv() -> Result<PathBuf, StackError> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| find_program("setpriv", &[]))
        .clone()
        .ok_or_else(|| StackError::ProgramMissing {
            program: "setpriv".into(),
            hint: "it comes with util-linux; run `make setup` (scripts/setup)".into(),
        })
}

/// Finds `name` on PATH or in one of `extra_dirs`.
pub fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .iter()
        .chain(extra_dirs.iter())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A running child process of the stack; stopped (and its group killed) on drop.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    pid: u32,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

/// Starts `spec` as described in the module documentation.
pub fn spawn(spec: &ProcessSpec) -> Result<ManagedProcess, StackError> {
    let setpriv = setpriv()?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(|source| StackError::io(format!("opening {}", spec.log_path.display()), source))?;
    let log_err = log
        .try_clone()
        .map_err(|source| StackError::io(format!("opening {}", spec.log_path.display()), source))?;

    let mut command = Command::new(setpriv);
    command.arg("--pdeathsig").arg("KILL");
    if let Some(user) = &spec.run_as {
        command
            .arg("--reuid")
            .arg(user.uid.to_string())
            .arg("--regid")
            .arg(user.gid.to_string())
            .arg("--clear-groups");
    }
    command.arg("--").arg(&spec.program).args(&spec.args);
    command
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }

    let (reply_tx, reply_rx) = mpsc::channel();
    let spawn_failed = |reason: String| StackError::Spawn {
        name: spec.name.clone(),
        program: spec.program.clone(),
        reason,
    };
    spawner()
        .send((command, reply_tx))
        .map_err(|_| spawn_failed("the spawner thread is gone".into()))?;
    let child = reply_rx
        .recv()
        .map_err(|_| spawn_failed("the spawner thread is gone".into()))?
        .map_err(|error| spawn_failed(error.to_string()))?;
    let pid = child.id();
    tracing::debug!(name = %spec.name, pid, program = %spec.program.display(), "started");
    Ok(ManagedProcess {
        name: spec.name.clone(),
        child: Some(child),
        pid,
        log_path: spec.log_path.clone(),
        exit: None,
    })
}

impl ManagedProcess {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                }
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit by itself (a one-shot tool such as
    /// `initdb`); `None` if it is still running then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `signal` to the process' whole group.
    pub fn signal_group(&self, signal: Signal) -> Result<(), StackError> {
        let pgid = i32::try_from(self.pid).map_err(|_| StackError::Signal {
            name: self.name.clone(),
            reason: format!("pid {} out of range", self.pid),
        })?;
        match killpg(Pid::from_raw(pgid), signal) {
            // ESRCH: the group is already gone, which is what a stop wants.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(errno) => Err(StackError::Signal {
                name: self.name.clone(),
                reason: errno.to_string(),
            }),
        }
    }

    /// SIGTERM to the group, then SIGKILL after `grace` if the leader has not exited.
    pub async fn stop(&mut self, grace: Duration) {
        if self.try_exit_status().is_none() {
            let _ = self.signal_group(Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.try_exit_status().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        self.kill_and_reap();
    }

    /// SIGKILL to the group (even when the leader is gone: its children may not be), then
    /// reap the leader.
    pub fn kill_and_reap(&mut self) {
        let _ = self.signal_group(Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            if let Ok(status) = child.wait() {
                self.exit.get_or_insert(status);
            }
        }
    }

    /// The last `lines` lines of the process' log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if self.try_exit_status().is_none() {
            let _ = self.signal_group(Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.try_exit_status().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill_and_reap();
    }
}

/// The last `lines` lines of a file, or a note saying why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            if all.is_empty() {
                "(the log is empty)".to_string()
            } else {
                all[start..].join("\n")
            }
        }
        Err(error) => format!("(could not read {}: {error})", path.display()),
    }
}
