//! The public API held to its own OpenAPI document: schemathesis (installed by
//! `scripts/setup`, pinned) runs every check over at least [`MIN_CASES`] generated cases
//! through the gateway on 127.0.0.1, as a user registered and logged in for it, with the
//! stateful phase following the document's links (register -> login -> order -> its view).
//! Any failure fails the test and prints schemathesis' report. Settings that concern one
//! operation (the view's long-poll) are in `schemathesis.toml` beside this file, each with
//! its reason.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::support::Harness;

/// The version `scripts/setup` installs; its venv is named after it.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Cases schemathesis must have generated for the run to count.
const MIN_CASES: u64 = 2_000;
/// Fuzzed cases per operation: with the coverage and stateful phases, a little over
/// [`MIN_CASES`] for the eleven operations.
const EXAMPLES_PER_OPERATION: &str = "250";
/// The whole run's bound. Measured against a debug build, with other builds running:
/// 152 s for 2,443 cases. It was 17 minutes while a made-up order id's view long-polled
/// for the whole drawn `wait` (45 requests, 879 s); such an id is now 404 at once.
const TIME_LIMIT: Duration = Duration::from_secs(600);

/// schemathesis' `st`: `$FAULTLINE_SCHEMATHESIS`, else the venv `scripts/setup` made.
fn schemathesis() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FAULTLINE_SCHEMATHESIS") {
        return Ok(path.into());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    let st = cache
        .join("faultline")
        .join(format!("schemathesis-{SCHEMATHESIS_VERSION}"))
        .join("bin/st");
    if !st.exists() {
        bail!(
            "schemathesis is not installed at {}: run scripts/setup (or set FAULTLINE_SCHEMATHESIS)",
            st.display()
        );
    }
    Ok(st)
}

/// Everything `pipe` gives until it closes (lossily decoded: it is for a person).
async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The number in the summary's `N generated, ...` line.
fn generated_cases(report: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|line| line.trim().split_once(" generated,")?.0.parse().ok())
}

pub async fn the_api_keeps_its_openapi_contract(h: Arc<Harness>) -> anyhow::Result<()> {
    let st = schemathesis()?;
    let user = h.user().await?;
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/system/schemathesis.toml"
    );
    let reports = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(&st);
    command
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/openapi.json", h.system.gateway_url))
        .args(["--checks", "all"])
        .args(["--phases", "coverage,fuzzing,stateful"])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        // Two cores: one worker each, the system shares them.
        .args(["--workers", "2"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", user.token))
        .arg("--report-dir")
        .arg(reports.path())
        // Every run starts afresh: no database of earlier examples (it would land in the
        // working directory, the repository).
        .args(["--generation-database", "none"])
        .arg("--no-color")
        .current_dir(reports.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", st.display()))?;
    // Read as it runs, so that a run cut short still shows how far it got.
    let stdout = child.stdout.take().context("schemathesis' stdout")?;
    let stderr = child.stderr.take().context("schemathesis' stderr")?;
    let report = tokio::spawn(read_all(stdout));
    let errors = tokio::spawn(read_all(stderr));
    let finished = tokio::time::timeout(TIME_LIMIT, child.wait()).await;
    if finished.is_err() {
        let _ = child.kill().await;
    }
    let report = report.await.unwrap_or_default();
    let errors = errors.await.unwrap_or_default();
    let status = match finished {
        Ok(status) => status.with_context(|| format!("waiting for {}", st.display()))?,
        Err(_) => bail!("schemathesis did not finish within {TIME_LIMIT:?}:\n{report}\n{errors}"),
    };
    if !status.success() {
        bail!("schemathesis found failures ({status}):\n{report}\n{errors}");
    }
    let cases = generated_cases(&report)
        .with_context(|| format!("no `N generated` line in schemathesis' report:\n{report}"))?;
    if cases < MIN_CASES {
        bail!("schemathesis generated {cases} cases, fewer than {MIN_CASES}:\n{report}");
    }
    let summary = report
        .lines()
        .rev()
        .find(|line| line.contains(" in "))
        .unwrap_or_default();
    println!(
        "schemathesis: {cases} cases; {}",
        summary.trim_matches(|c| c == '=' || c == ' ')
    );
    Ok(())
}
