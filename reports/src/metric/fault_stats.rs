//! Stats of the `faults` and `faults:<target>` scopes that read the fault records:
//! `ready_time`, and `error_rate` and `pNN` of the requests sent while the faults were in
//! force (a rollout's or a blue-green switch's change window, which is what a
//! "zero-downtime deployment" claim is about). `recovery_time` stays with the per-second
//! SLO judgement in the parent module.

use faultline_results::{histogram::new_histogram, FaultWindow, Results, SecondResults};

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
    let mut latency = new_histogram();
    let (mut requests, mut errors) = (0u64, 0u64);
    for second in in_force(results, on_target)? {
        requests += second.requests;
        errors += second.errors.total();
        latency
            .add(decode(&second.latency, "per-second latency")?)
            .map_err(|e| format!("histograms do not add: {e:?}"))?;
    }
    match stat {
        Stat::ErrorRate => ratio(errors, requests),
        _ => latency_stat(&latency, stat),
    }
}

/// The seconds of `results` that overlap a window of a fault `on_target` keeps, each once.
/// A second spans `[second, second + 1)` of Unix time and a fault `[start, end]`, both
/// placed from the run's exact start (fault times are offsets from it).
fn in_force(
    results: &Results,
    on_target: impl Fn(&FaultWindow) -> bool,
) -> Result<Vec<&SecondResults>, String> {
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
    Ok((results.seconds.iter())
        .filter(|second| {
            let from = second.second as f64 - start;
            windows.iter().any(|(s, e)| from + 1.0 > *s && from <= *e)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::time::Duration;

    use faultline_results::histogram::record;
    use faultline_results::{
        Arrivals, Bucket, ErrorClass, RunInfo, RunMetadata, RunRecord, Stage, TargetSchedule,
        TimePoint,
    };

    use super::*;

    /// 2026-01-01T00:00:00Z: the first second of the run, which starts a quarter second
    /// into it, so that offsets from the start and from the first second differ.
    const FIRST_SECOND: u64 = 1_767_225_600;
    const STARTED_AT: &str = "2026-01-01T00:00:00.250Z";
    const SECONDS: u64 = 8;

    /// Second `k` of the run: two requests answered in `k + 1` ms, one of them an error
    /// in odd seconds.
    fn latency(k: u64) -> Duration {
        Duration::from_millis(k + 1)
    }

    fn errors(k: u64) -> u64 {
        k % 2
    }

    fn run(faults: Vec<FaultWindow>) -> Results {
        run_with(faults, |k| (latency(k), errors(k)))
    }

    /// A run whose second `k` has two requests answered in `second(k).0`, `second(k).1`
    /// of them errors.
    fn run_with(faults: Vec<FaultWindow>, second: impl Fn(u64) -> (Duration, u64)) -> Results {
        let mut collected = BTreeMap::new();
        for k in 0..SECONDS {
            let (latency, errors) = second(k);
            let mut bucket = Bucket {
                requests: 2,
                ok: 2 - errors,
                ..Bucket::default()
            };
            for _ in 0..errors {
                bucket.errors.add(ErrorClass::Http5xx);
            }
            for _ in 0..2 {
                record(&mut bucket.latency, latency);
            }
            collected.insert((0, FIRST_SECOND + k), bucket);
        }
        let schedule = TargetSchedule::open(
            vec![Stage::constant(Duration::from_secs(SECONDS), 2.0)],
            Arrivals::Uniform,
        );
        let started = humantime::parse_rfc3339(STARTED_AT).unwrap();
        let mut results = Results::build(RunRecord {
            metadata: RunMetadata::of_run(
                &RunInfo::default(),
                "http://127.0.0.1:8080/",
                started,
                &schedule,
            ),
            schedule,
            endpoint_names: &["GET /".to_string()],
            collected: &collected,
            late_threshold_ms: 10.0,
            max_send_delay_ms: 5000.0,
        })
        .unwrap();
        results.faults = faults;
        results
    }

    /// A fault on `target` from `start` to `end` seconds after the run's start.
    fn fault(target: &str, start: f64, end: Option<f64>) -> FaultWindow {
        FaultWindow {
            label: format!("pause {target}"),
            kind: "pause".into(),
            target: target.into(),
            start: TimePoint::Offset(start),
            end: end.map(TimePoint::Offset),
            ready_after_secs: None,
            steps: Vec::new(),
        }
    }

    /// Which seconds of the run (0 for its first) [`in_force`] keeps.
    fn kept(faults: Vec<FaultWindow>) -> Vec<u64> {
        let results = run(faults);
        in_force(&results, |f| f.target == "a")
            .unwrap()
            .iter()
            .map(|second| second.second - FIRST_SECOND)
            .collect()
    }

    #[test]
    fn a_window_is_placed_from_the_exact_start_not_from_the_first_whole_second() {
        // From 1.05 s to 2.05 s into the first second: seconds 1 and 2, not 0.
        assert_eq!(kept(vec![fault("a", 0.8, Some(1.8))]), [1, 2]);
    }

    #[test]
    fn a_second_ending_as_the_fault_starts_is_out_and_one_starting_as_it_ends_is_in() {
        // From exactly 1 s to exactly 3 s into the first second.
        assert_eq!(kept(vec![fault("a", 0.75, Some(2.75))]), [1, 2, 3]);
        // Just after a second ended, until just before the next one starts.
        assert_eq!(kept(vec![fault("a", 0.76, Some(1.74))]), [1]);
    }

    #[test]
    fn a_fault_without_an_end_runs_to_the_last_second() {
        let to_the_end: Vec<u64> = (5..SECONDS).collect();
        assert_eq!(kept(vec![fault("a", 4.9, None)]), to_the_end);
    }

    #[test]
    fn overlapping_faults_count_each_second_once_and_a_gap_between_faults_not_at_all() {
        let overlapping = vec![fault("a", 1.0, Some(3.0)), fault("a", 2.0, Some(4.0))];
        assert_eq!(kept(overlapping), [1, 2, 3, 4]);
        let apart = vec![fault("a", 0.8, Some(1.0)), fault("a", 4.8, Some(5.0))];
        assert_eq!(kept(apart), [1, 5]);
    }

    #[test]
    fn only_faults_on_the_target_cut_the_window() {
        let faults = vec![fault("b", 0.0, Some(7.0)), fault("a", 2.8, Some(3.0))];
        assert_eq!(kept(faults), [3]);
        let results = run(vec![fault("b", 0.0, None)]);
        let error = in_force(&results, |f| f.target == "a").unwrap_err();
        assert!(error.contains("no fault"), "{error}");
    }

    #[test]
    fn stats_during_a_fault_read_only_the_seconds_it_overlaps() {
        let results = run(vec![fault("a", 0.8, Some(1.8))]);
        let a = |f: &FaultWindow| f.target == "a";
        let window = [1, 2];
        let sent = 2 * window.len() as u64;
        let failed: u64 = window.iter().map(|&k| errors(k)).sum();
        let error_rate = during(&results, a, Stat::ErrorRate).unwrap();
        assert_eq!(error_rate, failed as f64 / sent as f64);
        // Histograms keep values to within a thousandth.
        let near = |measured: f64, k: u64| (measured / latency(k).as_secs_f64() - 1.0).abs() < 1e-3;
        let min = during(&results, a, Stat::Min).unwrap();
        let max = during(&results, a, Stat::Max).unwrap();
        assert!(near(min, window[0]), "min {min}");
        assert!(near(max, window[1]), "max {max}");
    }

    /// Recovery is looked for from the second the fault ended in. The run starts at .250,
    /// so second 4 spans [3.75, 4.75) of the run: a fault ending at 3.9 ended in it, and
    /// it was slow. Counted from the whole second before the start, second 3 looked like
    /// [3, 4) and the fault recovered "at once", in a second that was over before it ended.
    #[test]
    fn recovery_starts_from_the_second_the_fault_ended_in() {
        let slow_fourth = |k| match k {
            4 => (Duration::from_millis(100), 0),
            _ => (Duration::from_millis(1), 0),
        };
        let results = run_with(vec![fault("a", 1.9, Some(3.9))], slow_fourth);
        let recoveries = crate::metric::slo_recoveries(&results).unwrap();
        let took = recoveries[0].unwrap();
        // Second 5 begins at 4.75: the first normal second after the end.
        assert!(
            (took - (4.75 - 3.9)).abs() < 1e-6,
            "recovered after {took} s"
        );
    }
}
