//! Process faults on real child processes (`sleep 60`).

use std::os::unix::process::ExitStatusExt as _;
use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::process::{self, PidProcess, ProcessControl, ProcessError, Signal};
use tokio::process::{Child, Command};

use crate::within;

/// A `sleep 60` child, killed if the test ends first.
pub fn sleeper() -> (Child, u32) {
    let child = Command::new("sleep")
        .arg("60")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    (child, pid)
}

/// The state letter of /proc/PID/stat: `S` sleeping, `T` stopped, `Z` zombie...
pub fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may contain spaces: the state follows
    // the last ')'.
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.trim_start().chars().next().unwrap()
}

/// Waits until the process is stopped (`want_stopped`) or not; signals are delivered
/// asynchronously, so the state is polled (bounded by `within`).
pub async fn until_stopped(pid: u32, want_stopped: bool) {
    within(
        if want_stopped {
            "process stopped"
        } else {
            "process running"
        },
        async {
            while (state(pid) == 'T') != want_stopped {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
}

#[tokio::test]
async fn pause_stops_the_process_and_dropping_the_guard_resumes_it() {
    let (_child, pid) = sleeper();
    let target: Arc<dyn ProcessControl> = Arc::new(PidProcess(pid));
    assert_ne!(state(pid), 'T');

    let guard = process::pause(target.clone()).unwrap();
    until_stopped(pid, true).await;
    drop(guard);
    until_stopped(pid, false).await;

    let guard = process::pause(target.clone()).unwrap();
    until_stopped(pid, true).await;
    guard.resume().unwrap();
    until_stopped(pid, false).await;

    // Resume is a signal of its own too.
    target.signal(Signal::SIGSTOP).unwrap();
    until_stopped(pid, true).await;
    process::resume(target.as_ref()).unwrap();
    until_stopped(pid, false).await;
}

#[tokio::test]
async fn a_cancelled_pause_for_still_resumes_the_process() {
    let (_child, pid) = sleeper();
    let target: Arc<dyn ProcessControl> = Arc::new(PidProcess(pid));
    let pause = tokio::spawn(process::pause_for(target, Duration::from_secs(60)));
    until_stopped(pid, true).await;
    pause.abort();
    assert!(pause.await.unwrap_err().is_cancelled());
    until_stopped(pid, false).await;
}

#[tokio::test]
async fn pause_for_resumes_after_the_duration() {
    let (_child, pid) = sleeper();
    let target: Arc<dyn ProcessControl> = Arc::new(PidProcess(pid));
    let pause = tokio::spawn(process::pause_for(target, Duration::from_millis(300)));
    until_stopped(pid, true).await;
    within("pause_for", pause).await.unwrap().unwrap();
    until_stopped(pid, false).await;
}

#[tokio::test]
async fn kill_ends_the_process_with_sigkill_and_terminate_with_sigterm() {
    let (mut killed, pid) = sleeper();
    assert_eq!(process::kill(&PidProcess(pid)).unwrap(), pid);
    let status = within("killed child", killed.wait()).await.unwrap();
    assert_eq!(status.signal(), Some(libc_signal(Signal::SIGKILL)));

    let (mut terminated, pid) = sleeper();
    process::terminate(&PidProcess(pid)).unwrap();
    let status = within("terminated child", terminated.wait()).await.unwrap();
    assert_eq!(status.signal(), Some(libc_signal(Signal::SIGTERM)));
}

#[tokio::test]
async fn a_pid_that_would_signal_a_process_group_is_refused() {
    assert!(matches!(
        process::send_signal(0, Signal::SIGCONT),
        Err(ProcessError::BadPid(0))
    ));
    assert!(matches!(
        process::send_signal(u32::MAX, Signal::SIGCONT),
        Err(ProcessError::BadPid(_))
    ));
}

#[tokio::test]
async fn a_bare_pid_cannot_be_restarted() {
    let target = PidProcess(std::process::id());
    assert!(!target.can_restart());
    assert!(matches!(
        target.restart().await,
        Err(ProcessError::RestartUnsupported(_))
    ));
}

fn libc_signal(signal: Signal) -> i32 {
    signal as i32
}
