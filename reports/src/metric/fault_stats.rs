//! Stats of the `faults` and `faults:<target>` scopes that read the fault records:
//! `ready_time`, and `error_rate` and `pNN` of the requests sent while the faults were in
//! force (a rollout's or a blue-green switch's change window, which is what a
//! "zero-downtime deployment" claim is about). `recovery_time` stays with the per-second
//! SLO judgement in the parent module.

use faultline_results::{histogram::new_histogram, FaultWindow, Results};

use super::{decode, latency_stat, offset_of, ratio, start_unix, Stat};

/// The stats the `faults` scopes take.
pub(super) fn takes(stat: Stat) -> bool {
    matches!(
        stat,
        Stat::RecoveryTime | Stat::ReadyTime | Stat::Count | Stat::ErrorRate | Stat::Percentile(_)
    )
}

/// The mean, over the faults `on_target` keeps, of the time from a fault's end to its
/// replica answering ready again.
pub(super) fn ready_time(
    results: &Results,
    on_target: impl Fn(&FaultWindow) -> bool,
) -> Result<f64, String> {
    let ready: Vec<f64> = results
        .faults
        .iter()
        .filter(|f| on_target(f))
        .filter_map(|f| f.ready_after_secs)
        .collect();
    if ready.is_empty() {
        return Err("no fault's replica was watched back to ready".into());
    }
    Ok(ready.iter().sum::<f64>() / ready.len() as f64)
}

/// The error share or a latency percentile of the requests sent in the whole seconds that
/// overlap the windows of the faults `on_target` keeps (a deployment's change window: a
/// fault still in force at the end counts to the last second).
pub(super) fn during(
    results: &Results,
    on_target: impl Fn(&FaultWindow) -> bool,
    stat: Stat,
) -> Result<f64, String> {
    let start = start_unix(results).ok_or("metadata.started_at does not parse")?;
    let started_at = &results.metadata.started_at;
    let windows: Vec<(f64, f64)> = results
        .faults
        .iter()
        .filter(|f| on_target(f))
        .filter_map(|f| {
            let from = offset_of(&f.start, started_at)?;
            let to = f
                .end
                .as_ref()
                .map_or(Some(f64::INFINITY), |e| offset_of(e, started_at))?;
            Some((from, to))
        })
        .collect();
    if windows.is_empty() {
        return Err("no fault was injected on that target".into());
    }
    let mut latency = new_histogram();
    let (mut requests, mut errors) = (0u64, 0u64);
    for second in &results.seconds {
        let from = second.second as f64 - start.floor();
        if windows.iter().any(|(s, e)| from + 1.0 > *s && from <= *e) {
            requests += second.requests;
            errors += second.errors.total();
            latency
                .add(decode(&second.latency, "per-second latency")?)
                .map_err(|e| format!("histograms do not add: {e:?}"))?;
        }
    }
    match stat {
        Stat::ErrorRate => ratio(errors, requests),
        _ => latency_stat(&latency, stat),
    }
}
