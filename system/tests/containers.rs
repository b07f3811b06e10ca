//! The testcontainers backend (cargo feature `containers`): the stack as Docker containers,
//! checked with the same round trip as the local stack. Skips, saying why, where no Docker
//! daemon answers (this project's own machines have none).

#![cfg(feature = "containers")]
#![allow(clippy::unwrap_used)]

use std::process::Command;

use faultline_system::stack::smoke::{self, SmokeSpec};
use faultline_system::stack::{Stack, StackSpec};

/// `Some(reason)` when no Docker daemon answers.
fn docker_unavailable() -> Option<String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Err(error) => Some(format!("the docker client could not run: {error}")),
        Ok(output) if !output.status.success() => Some(format!(
            "no Docker daemon answers: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn the_containers_backend_passes_the_smoke_run() {
    if let Some(reason) = docker_unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    let stack = Stack::start_containers(StackSpec::default()).await.unwrap();
    let report = smoke::run(
        &stack.endpoints(),
        &SmokeSpec {
            events: 1_000,
            ..SmokeSpec::default()
        },
    )
    .await
    .unwrap();
    stack.stop().await;
    assert!(report.passed(), "{report}");
}
