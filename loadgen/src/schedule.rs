//! Load schedules: when each request is due.
//!
//! A [`Schedule`] is either *open* (an arrival rate made of linear [`Stage`]s, each
//! request having an intended send time) or *closed* (a fixed number of connections
//! sending back to back, no pacing). The engine has one loop; the schedule alone
//! decides the mode: [`Schedule::send_times`] yields the intended send offsets of an
//! open schedule, and a closed schedule yields none and is bounded by its duration.
//!
//! Arrival times come from the cumulative target count `N(t)` of the stages: with
//! uniform arrivals the k-th request is due when `N(t) = k`; with Poisson arrivals
//! the cumulative count advances by exponential(1) steps instead (time rescaling of a
//! non-homogeneous Poisson process), so ramps stay exact in both cases.
//!
//! Distributed load splits one open schedule over N processes without a coordinator: each
//! computes the same global arrivals (same stages, same seed) and keeps those whose index
//! is its own modulo N ([`WorkerShare`]), from the same wall-clock instant (`start_at`).
//! The union of the workers' arrivals is the single-machine schedule exactly, and each
//! worker's recorded target is its 1/N of the rate, so merged results add up to the whole.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use faultline_results::{quantity::parse_duration, Arrivals, Stage, TargetSchedule};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::Exp1;

use crate::error::{LoadError, StageParseError};

/// When requests are due.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Arrival-rate model: every request has an intended send time.
    Open {
        stages: Vec<Stage>,
        arrivals: Arrivals,
        /// The arrivals this process sends (all of them unless it is one of N workers).
        share: WorkerShare,
        /// The wall-clock instant the schedule starts at (`None`: as soon as the run is ready).
        start_at: Option<SystemTime>,
    },
    /// Fixed connections sending back to back for `duration` (maximum-rate finding).
    Closed { duration: Duration },
}

impl Schedule {
    /// A constant rate for a duration.
    pub fn constant(rate: f64, duration: Duration, arrivals: Arrivals) -> Result<Self, LoadError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(LoadError::InvalidRate { rate });
        }
        Self::open(vec![Stage::constant(duration, rate)], arrivals)
    }

    /// An open schedule from stages; at least one stage must ask for requests.
    pub fn open(stages: Vec<Stage>, arrivals: Arrivals) -> Result<Self, LoadError> {
        if stages.is_empty() {
            return Err(LoadError::InvalidArgument {
                option: "stages",
                reason: "no stages given".into(),
            });
        }
        if let Some(stage) = stages.iter().find(|s| s.duration.is_zero()) {
            return Err(LoadError::InvalidArgument {
                option: "stages",
                reason: format!("stage {stage:?} has a zero duration"),
            });
        }
        for stage in &stages {
            for rate in [stage.from_rate, stage.to_rate] {
                if !(rate.is_finite() && rate >= 0.0) {
                    return Err(LoadError::InvalidRate { rate });
                }
            }
        }
        if stages.iter().all(|s| s.expected_requests() <= 0.0) {
            return Err(LoadError::InvalidRate { rate: 0.0 });
        }
        Ok(Schedule::Open {
            stages,
            arrivals,
            share: WorkerShare::WHOLE,
            start_at: None,
        })
    }

    /// This open schedule as worker `share` of several sends it, from `start_at`. A closed
    /// schedule has no arrivals to split and no intended times to align.
    pub fn distributed(
        self,
        share: WorkerShare,
        start_at: Option<SystemTime>,
    ) -> Result<Self, LoadError> {
        match self {
            Schedule::Open {
                stages, arrivals, ..
            } => Ok(Schedule::Open {
                stages,
                arrivals,
                share,
                start_at,
            }),
            Schedule::Closed { .. } => Err(LoadError::InvalidArgument {
                option: "--worker/--start-at",
                reason:
                    "a closed schedule has no arrival schedule to split; use --rate or --stages"
                        .into(),
            }),
        }
    }

    /// Waits until the schedule's start instant, if it has one still ahead: workers of one
    /// distributed run start their clocks together, whenever each finished its set-up.
    pub async fn wait_for_start(&self) {
        let Schedule::Open {
            start_at: Some(start_at),
            ..
        } = self
        else {
            return;
        };
        match start_at.duration_since(SystemTime::now()) {
            Ok(ahead) => tokio::time::sleep(ahead).await,
            Err(late) => tracing::warn!(
                late_ms = late.duration().as_millis() as u64,
                "the set-up ended after --start-at: this worker starts late"
            ),
        }
    }

    /// A closed schedule (no pacing) for a duration.
    pub fn closed(duration: Duration) -> Result<Self, LoadError> {
        if duration.is_zero() {
            return Err(LoadError::InvalidArgument {
                option: "duration",
                reason: "the duration must be longer than zero".into(),
            });
        }
        Ok(Schedule::Closed { duration })
    }

    /// How long the schedule runs.
    pub fn duration(&self) -> Duration {
        match self {
            Schedule::Open { stages, .. } => stages.iter().map(|s| s.duration).sum(),
            Schedule::Closed { duration } => *duration,
        }
    }

    /// The schedule as results record it.
    pub fn target(&self) -> TargetSchedule {
        match self {
            Schedule::Open {
                stages,
                arrivals,
                share,
                ..
            } => TargetSchedule::open(share.of_stages(stages), *arrivals),
            Schedule::Closed { duration } => TargetSchedule::closed(*duration),
        }
    }

    /// The target rate at `elapsed`, or `None` for a closed schedule.
    pub fn target_rate_at(&self, elapsed: Duration) -> Option<f64> {
        let Schedule::Open { stages, share, .. } = self else {
            return None;
        };
        let mut offset = elapsed.as_secs_f64();
        for stage in stages {
            let length = stage.duration.as_secs_f64();
            if offset < length {
                return Some(stage.rate_at(offset) / f64::from(share.count));
            }
            offset -= length;
        }
        Some(0.0)
    }

    /// The number of requests an open schedule asks for.
    pub fn expected_requests(&self) -> Option<f64> {
        match self {
            Schedule::Open { stages, share, .. } => Some(
                stages.iter().map(Stage::expected_requests).sum::<f64>() / f64::from(share.count),
            ),
            Schedule::Closed { .. } => None,
        }
    }

    /// The intended send offsets (from the run's start) of an open schedule, in
    /// order; `None` for a closed schedule.
    pub fn send_times(&self) -> Option<SendTimes> {
        let Schedule::Open {
            stages,
            arrivals,
            share,
            ..
        } = self
        else {
            return None;
        };
        let rng = match arrivals {
            Arrivals::Uniform => None,
            Arrivals::Poisson { seed } => Some(StdRng::seed_from_u64(*seed)),
        };
        let mut times = SendTimes {
            stages: stages.clone(),
            stage_index: 0,
            stage_start: 0.0,
            count_before_stage: 0.0,
            next_count: 0.0,
            rng,
            share: *share,
            next_index: 0,
        };
        // Uniform arrivals start with a request at t = 0; Poisson ones after a first
        // exponential gap, as a Poisson process does.
        if times.rng.is_some() {
            times.next_count = times.step();
        }
        Some(times)
    }
}

/// Iterator over the intended send offsets of an open schedule.
#[derive(Debug, Clone)]
pub struct SendTimes {
    stages: Vec<Stage>,
    stage_index: usize,
    /// Start of the current stage, in seconds from the run's start.
    stage_start: f64,
    /// Cumulative target count at the start of the current stage.
    count_before_stage: f64,
    /// The cumulative count at which the next request is due.
    next_count: f64,
    rng: Option<StdRng>,
    /// Which of the global arrivals are this process' to send.
    share: WorkerShare,
    /// The global index of the next arrival.
    next_index: u64,
}

impl SendTimes {
    /// How far the cumulative count advances to the next request: 1 for uniform
    /// arrivals (the first request is due at 0), exponential(1) for Poisson.
    fn step(&mut self) -> f64 {
        match &mut self.rng {
            None => 1.0,
            Some(rng) => rng.sample::<f64, _>(Exp1),
        }
    }
}

impl Iterator for SendTimes {
    type Item = Duration;

    /// The next arrival of this worker's share. Every worker steps through the whole
    /// schedule (the Poisson draws must stay in step), keeping one arrival in N.
    fn next(&mut self) -> Option<Duration> {
        loop {
            let due = self.next_global()?;
            let index = self.next_index;
            self.next_index += 1;
            if self.share.takes(index) {
                return Some(due);
            }
        }
    }
}

impl SendTimes {
    /// The next arrival of the global schedule.
    fn next_global(&mut self) -> Option<Duration> {
        loop {
            let stage = *self.stages.get(self.stage_index)?;
            let in_stage = self.next_count - self.count_before_stage;
            if in_stage < stage.expected_requests() {
                let offset = self.stage_start + offset_of_count(&stage, in_stage);
                self.next_count += self.step();
                return Some(Duration::from_secs_f64(offset.max(0.0)));
            }
            self.count_before_stage += stage.expected_requests();
            self.stage_start += stage.duration.as_secs_f64();
            self.stage_index += 1;
        }
    }
}

/// Worker `index` of `count` in a distributed load (`--worker I/N`, 0-based): it sends the
/// arrivals whose global index is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerShare {
    pub index: u32,
    pub count: u32,
}

impl WorkerShare {
    /// One process sending the whole schedule.
    pub const WHOLE: WorkerShare = WorkerShare { index: 0, count: 1 };

    /// Whether global arrival `index` is this worker's.
    pub fn takes(&self, index: u64) -> bool {
        index % u64::from(self.count) == u64::from(self.index)
    }

    /// This worker's part of `stages`: the same shape at 1/count of the rates, so the
    /// merged targets of all workers add up to the stages.
    fn of_stages(&self, stages: &[Stage]) -> Vec<Stage> {
        let count = f64::from(self.count);
        stages
            .iter()
            .map(|stage| Stage {
                duration: stage.duration,
                from_rate: stage.from_rate / count,
                to_rate: stage.to_rate / count,
            })
            .collect()
    }
}

impl FromStr for WorkerShare {
    type Err = String;

    /// `I/N`, with `0 <= I < N`; the error says what is wrong with the text.
    fn from_str(text: &str) -> Result<Self, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not I/N (worker I of N, from 0, e.g. 0/4)"))?;
        let number = |part: &str, what: &str| -> Result<u32, String> {
            part.trim()
                .parse()
                .map_err(|_| format!("{text:?}: the {what} {part:?} is not a whole number"))
        };
        let (index, count) = (number(index, "index")?, number(count, "worker count")?);
        if count == 0 {
            return Err(format!("{text:?}: the worker count must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "{text:?}: workers are numbered 0 to {} of {count}",
                count - 1
            ));
        }
        Ok(WorkerShare { index, count })
    }
}

/// Parses stages such as `10s:0->500, 60s:500, 10s:500->0`: comma-separated
/// `DURATION:RATE` (constant) or `DURATION:FROM->TO` (linear ramp), durations as
/// [`faultline_results::quantity`] reads them (`500ms`, `10s`, `1m30s`), rates in requests per second.
pub fn parse_stages(input: &str) -> Result<Vec<Stage>, StageParseError> {
    let fail = |stage: usize, byte_offset: usize, problem: String| StageParseError {
        input: input.to_string(),
        stage,
        column: input[..byte_offset.min(input.len())].chars().count() + 1,
        problem,
    };
    if input.trim().is_empty() {
        return Err(fail(
            0,
            0,
            "the string is empty; expected e.g. \"10s:0->500, 60s:500\"".into(),
        ));
    }
    let mut stages = Vec::new();
    let mut part_start = 0;
    for (index, part) in input.split(',').enumerate() {
        let number = index + 1;
        let leading = part.len() - part.trim_start().len();
        let text = part.trim();
        let start = part_start + leading;
        part_start += part.len() + 1;
        if text.is_empty() {
            return Err(fail(
                number,
                start,
                "empty stage (two commas, or a trailing comma?)".into(),
            ));
        }
        let Some(colon) = text.find(':') else {
            return Err(fail(
                number,
                start,
                format!(
                    "{text:?} has no ':' between duration and rate (expected e.g. \"60s:500\")"
                ),
            ));
        };
        let duration_text = text[..colon].trim();
        let duration = parse_duration(duration_text)
            .map_err(|e| fail(number, start, format!("bad duration {e}")))?;
        if duration.is_zero() {
            return Err(fail(
                number,
                start,
                "the duration must be longer than zero".into(),
            ));
        }
        let rates_start = start + colon + 1;
        let rates_text = &text[colon + 1..];
        let (from_text, to_text, to_start) = match rates_text.find("->") {
            Some(arrow) => (
                &rates_text[..arrow],
                Some(&rates_text[arrow + 2..]),
                rates_start + arrow + 2,
            ),
            None => (rates_text, None, rates_start),
        };
        let parse_rate = |raw: &str, at: usize| -> Result<f64, StageParseError> {
            let trimmed = raw.trim();
            let at = at + (raw.len() - raw.trim_start().len());
            let rate: f64 = trimmed.parse().map_err(|_| {
                fail(
                    number,
                    at,
                    format!("bad rate {trimmed:?}: expected requests per second, e.g. 500"),
                )
            })?;
            if !rate.is_finite() || rate < 0.0 {
                return Err(fail(
                    number,
                    at,
                    format!("bad rate {trimmed:?}: a rate must be zero or positive"),
                ));
            }
            Ok(rate)
        };
        let from_rate = parse_rate(from_text, rates_start)?;
        let to_rate = match to_text {
            Some(to) => parse_rate(to, to_start)?,
            None => from_rate,
        };
        stages.push(Stage {
            duration,
            from_rate,
            to_rate,
        });
    }
    if stages.iter().all(|s| s.expected_requests() <= 0.0) {
        return Err(fail(
            0,
            0,
            "every stage has rate 0: nothing would be sent".into(),
        ));
    }
    Ok(stages)
}

/// Seconds into the stage at which the cumulative count reaches `count`
/// (`0 <= count <= expected_requests()`): the inverse of
/// `N(t) = from·t + slope/2·t²`.
fn offset_of_count(stage: &Stage, count: f64) -> f64 {
    if count <= 0.0 {
        return 0.0;
    }
    let length = stage.duration.as_secs_f64();
    let half_slope = (stage.to_rate - stage.from_rate) / (2.0 * length);
    if half_slope == 0.0 {
        return count / stage.from_rate;
    }
    // 2n / (r0 + sqrt(r0² + 4an)) is the root of a·t² + r0·t − n = 0 written so it
    // stays exact when a is tiny and when the ramp goes down (a < 0).
    let discriminant = (stage.from_rate * stage.from_rate + 4.0 * half_slope * count).max(0.0);
    let denominator = stage.from_rate + discriminant.sqrt();
    if denominator <= 0.0 {
        return length;
    }
    (2.0 * count / denominator).min(length)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A stage going from `from` to `to` requests/s over `seconds`.
    fn ramp(seconds: f64, from: f64, to: f64) -> Stage {
        Stage {
            duration: secs(seconds),
            from_rate: from,
            to_rate: to,
        }
    }

    #[test]
    fn stages_parse_constants_and_ramps() {
        let stages = parse_stages("10s:0->500, 60s:500, 10s:500->0").unwrap();
        assert_eq!(
            stages,
            vec![
                ramp(10.0, 0.0, 500.0),
                Stage::constant(secs(60.0), 500.0),
                ramp(10.0, 500.0, 0.0),
            ]
        );
    }

    #[test]
    fn stages_accept_compound_durations_and_fractional_rates() {
        let stages = parse_stages("1m30s:2.5,500ms:10 -> 20").unwrap();
        assert_eq!(stages[0], Stage::constant(secs(90.0), 2.5));
        assert_eq!(stages[1], ramp(0.5, 10.0, 20.0));
    }

    #[test]
    fn a_stage_without_colon_names_the_stage_and_column() {
        let err = parse_stages("10s:0->500, 60s500").unwrap_err();
        assert_eq!(err.stage, 2);
        assert_eq!(err.column, 13);
        assert!(err.problem.contains("no ':'"), "{err}");
        assert!(err.to_string().contains("stage 2 at column 13"), "{err}");
    }

    #[test]
    fn a_bad_rate_or_duration_is_rejected_where_it_stands() {
        // (stages, where the error points if it says, what the problem names)
        let cases = [
            ("10s:0->fast", Some((1, 8)), "\"fast\""),
            ("10s:-5", None, "zero or positive"),
            ("10x:5", Some((1, 1)), "bad duration \"10x\""),
        ];
        for (text, at, problem) in cases {
            let err = parse_stages(text).unwrap_err();
            if let Some(at) = at {
                assert_eq!((err.stage, err.column), at, "{text}");
            }
            assert!(err.problem.contains(problem), "{text}: {err}");
        }
    }

    #[test]
    fn empty_parts_and_all_zero_stages_are_rejected() {
        assert!(parse_stages("").unwrap_err().problem.contains("empty"));
        assert_eq!(parse_stages("10s:5,,5s:1").unwrap_err().stage, 2);
        assert!(parse_stages("10s:0, 5s:0")
            .unwrap_err()
            .problem
            .contains("rate 0"));
        assert!(parse_stages("0s:5")
            .unwrap_err()
            .problem
            .contains("longer than zero"));
    }

    #[test]
    fn constant_rate_sends_rate_times_duration_evenly() {
        let schedule = Schedule::constant(100.0, secs(2.0), Arrivals::Uniform).unwrap();
        let times: Vec<Duration> = schedule.send_times().unwrap().collect();
        assert_eq!(times.len(), 200);
        assert_eq!(times[0], Duration::ZERO);
        assert!((times[1].as_secs_f64() - 0.01).abs() < 1e-9);
        assert!((times[199].as_secs_f64() - 1.99).abs() < 1e-9);
    }

    #[test]
    fn a_ramp_sends_the_area_under_the_rate_line() {
        let schedule = Schedule::open(
            vec![
                ramp(10.0, 0.0, 100.0),
                Stage::constant(secs(5.0), 100.0),
                ramp(10.0, 100.0, 0.0),
            ],
            Arrivals::Uniform,
        )
        .unwrap();
        let times: Vec<f64> = schedule
            .send_times()
            .unwrap()
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(times.len(), 500 + 500 + 500);
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "send times must be ordered"
        );
        // During the up-ramp, requests in the first half are a quarter of the stage.
        let first_half = times.iter().filter(|t| **t < 5.0).count();
        assert!((124..=126).contains(&first_half), "{first_half}");
        let plateau = times.iter().filter(|t| (10.0..15.0).contains(*t)).count();
        assert_eq!(plateau, 500);
        assert!(times.last().unwrap() < &25.0);
    }

    #[test]
    fn poisson_arrivals_keep_the_mean_rate() {
        let schedule =
            Schedule::constant(1000.0, secs(20.0), Arrivals::Poisson { seed: 7 }).unwrap();
        let times: Vec<f64> = schedule
            .send_times()
            .unwrap()
            .map(|d| d.as_secs_f64())
            .collect();
        // 20,000 expected; a Poisson count has standard deviation sqrt(20,000) ≈ 141.
        let count = times.len() as f64;
        assert!((count - 20_000.0).abs() < 600.0, "{count}");
        // Gaps are exponential: their standard deviation equals their mean.
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.001).abs() < 0.00005, "{mean}");
        assert!(
            (variance.sqrt() / mean - 1.0).abs() < 0.05,
            "{}",
            variance.sqrt() / mean
        );
    }

    #[test]
    fn poisson_arrivals_follow_a_ramp() {
        let stages = vec![ramp(10.0, 0.0, 2000.0)];
        let schedule = Schedule::open(stages, Arrivals::Poisson { seed: 3 }).unwrap();
        let times: Vec<f64> = schedule
            .send_times()
            .unwrap()
            .map(|d| d.as_secs_f64())
            .collect();
        let late_half = times.iter().filter(|t| **t >= 5.0).count() as f64;
        // 10,000 expected, three quarters in the second half.
        assert!((late_half / times.len() as f64 - 0.75).abs() < 0.02);
    }

    #[test]
    fn zero_negative_and_nan_rates_are_rejected() {
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let err = Schedule::constant(rate, secs(1.0), Arrivals::Uniform).unwrap_err();
            assert!(
                matches!(err, LoadError::InvalidRate { .. }),
                "{rate}: {err}"
            );
        }
    }

    #[test]
    fn the_target_rate_follows_the_stages() {
        let schedule = Schedule::open(
            vec![ramp(10.0, 0.0, 100.0), Stage::constant(secs(5.0), 40.0)],
            Arrivals::Uniform,
        )
        .unwrap();
        assert_eq!(schedule.target_rate_at(secs(5.0)), Some(50.0));
        assert_eq!(schedule.target_rate_at(secs(12.0)), Some(40.0));
        assert_eq!(schedule.target_rate_at(secs(20.0)), Some(0.0));
        assert_eq!(
            Schedule::closed(secs(1.0))
                .unwrap()
                .target_rate_at(secs(0.5)),
            None
        );
        assert!(Schedule::closed(secs(1.0)).unwrap().send_times().is_none());
    }

    /// Every send time of `schedule` split over `count` workers, merged and sorted.
    fn union_of_workers(schedule: &Schedule, count: u32) -> Vec<Duration> {
        let mut union: Vec<Duration> = (0..count)
            .flat_map(|index| {
                let share = WorkerShare { index, count };
                let worker = schedule.clone().distributed(share, None).unwrap();
                worker.send_times().unwrap().collect::<Vec<_>>()
            })
            .collect();
        union.sort();
        union
    }

    #[test]
    fn workers_together_send_the_single_machine_schedule_exactly() {
        let stages = vec![ramp(2.0, 0.0, 300.0), Stage::constant(secs(3.0), 300.0)];
        for arrivals in [Arrivals::Uniform, Arrivals::Poisson { seed: 11 }] {
            let whole = Schedule::open(stages.clone(), arrivals).unwrap();
            let alone: Vec<Duration> = whole.send_times().unwrap().collect();
            for count in [1, 3, 4, 7] {
                assert_eq!(
                    union_of_workers(&whole, count),
                    alone,
                    "{arrivals:?}, N={count}"
                );
            }
        }
    }

    #[test]
    fn a_worker_takes_every_nth_arrival_and_records_its_part_of_the_rate() {
        let whole = Schedule::constant(100.0, secs(1.0), Arrivals::Uniform).unwrap();
        let share = "1/4".parse::<WorkerShare>().unwrap();
        let worker = whole.distributed(share, None).unwrap();
        let times: Vec<f64> = worker
            .send_times()
            .unwrap()
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(times.len(), 25);
        assert!((times[0] - 0.01).abs() < 1e-9 && (times[1] - 0.05).abs() < 1e-9);
        assert_eq!(worker.target().stages[0].from_rate, 25.0);
        assert_eq!(worker.target_rate_at(secs(0.5)), Some(25.0));
    }

    #[test]
    fn bad_worker_shares_say_what_is_wrong() {
        for (text, problem) in [
            ("4/4", "numbered 0 to 3"),
            ("1/0", "at least 1"),
            ("x/4", "not a whole number"),
            ("3", "not I/N"),
        ] {
            let error = text.parse::<WorkerShare>().unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
        let closed = Schedule::closed(secs(1.0)).unwrap();
        assert!(closed.distributed(WorkerShare::WHOLE, None).is_err());
    }
}
