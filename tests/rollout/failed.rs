//! A deployment that fails part way stops the new replicas it started and leaves the old
//! set serving, supervised as before.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use faultline_system::services::ServiceKind;

use crate::Harness;

/// (name, URL, pid) of each supervised inventory replica.
fn inventory(h: &Harness) -> Vec<(String, String, Option<u32>)> {
    let mut replicas: Vec<_> = (h.system.services().into_iter())
        .filter(|(name, _, _)| name.starts_with("SERVICE_INVENTORY_"))
        .collect();
    replicas.sort();
    replicas
}

/// Pids of the `faultline serve inventory` processes this test process started (the
/// supervisor's children), whether supervised or not.
fn inventory_processes() -> anyhow::Result<BTreeSet<u32>> {
    let me = std::process::id();
    let mut pids = BTreeSet::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = (entry?.file_name().to_str()).and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Gone since the listing: not one of ours any more.
        let (Ok(stat), Ok(cmdline)) = (
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
            std::fs::read(format!("/proc/{pid}/cmdline")),
        ) else {
            continue;
        };
        // The parent pid is the second field after the command name, which is in parentheses.
        let parent = (stat.rsplit_once(')'))
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let serves_inventory = args.windows(2).any(|w| w == [&b"serve"[..], b"inventory"]);
        // A stopped child not yet reaped is no longer serving.
        let zombie =
            (stat.rsplit_once(')')).is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if parent == Some(me) && serves_inventory && !zombie {
            pids.insert(pid);
        }
    }
    Ok(pids)
}

pub async fn a_blue_green_that_cannot_start_every_new_replica_stops_those_it_did(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let before = inventory(&h);
    ensure!(
        before.len() >= 2,
        "two inventory replicas to replace: {before:?}"
    );
    let running: BTreeSet<u32> = before.iter().filter_map(|(_, _, pid)| *pid).collect();
    ensure!(
        inventory_processes()? == running,
        "before: processes {:?}, supervised {running:?}",
        inventory_processes()?
    );
    // New replicas take the numbers after the highest; the last of them cannot start,
    // because a directory stands where its log file goes.
    let logs = (h.system.stack().context("a local stack")?)
        .data_dir()
        .join("services");
    let highest = (before.iter())
        .filter_map(|(name, _, _)| name.rsplit('_').next()?.parse::<usize>().ok())
        .max()
        .context("inventory replica numbers")?;
    let blocked = logs.join(format!("inventory-{}.log", highest + before.len()));
    std::fs::create_dir(&blocked).with_context(|| format!("creating {}", blocked.display()))?;
    let outcome = h
        .system
        .blue_green(ServiceKind::Inventory, Duration::from_secs(1))
        .await;
    std::fs::remove_dir(&blocked)?;
    let error = match outcome {
        Ok(step) => bail!("the deployment went through: {step:?}"),
        Err(error) => error.to_string(),
    };
    ensure!(
        error.contains(&blocked.display().to_string()),
        "the error names what failed: {error}"
    );

    // The old set is still the one supervised, and nothing else of it runs.
    let after = inventory(&h);
    ensure!(after == before, "before {before:?}, after {after:?}");
    let processes = inventory_processes()?;
    ensure!(
        processes == running,
        "inventory processes {processes:?}, expected only the old {running:?}"
    );
    // And it serves through the gateway.
    let answer = h.uncached_product().send().await?;
    ensure!(
        answer.status().is_success(),
        "a product through the gateway: {}",
        answer.status()
    );
    Ok(())
}
