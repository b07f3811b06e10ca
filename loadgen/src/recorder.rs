//! Recording while the load runs: per worker, per endpoint, per wall-clock second.
//!
//! Each worker (one per connection) records into its own [`WorkerLog`] behind a
//! `std::sync::Mutex` (not a Tokio one: nothing is awaited while it is held, and the
//! lock is uncontended except for the one moment a second the collector takes the
//! finished seconds). So there is no message per request: the collector gathers
//! whole [`Bucket`]s once a second into a [`Collected`] map, merges them, hands
//! emptied buckets back for reuse, and the results are built from that map.
//!
//! Buckets are keyed by the wall-clock (Unix) second in which a request *finished*
//! (or was dropped). A worker's clock only moves forward, so once the wall clock
//! has passed a second, no worker will record into it again and the collector can
//! take it as final.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use faultline_results::{
    histogram::{micros, record},
    Bucket, ErrorClass,
};

/// The outcome of one request, as recorded.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// A response arrived; `error` is set for 4xx/5xx.
    Answered {
        latency: Duration,
        error: Option<ErrorClass>,
    },
    /// No response (connect failure, timeout, reset, bad HTTP).
    Failed(ErrorClass),
}

/// One worker's recording state.
#[derive(Debug, Default)]
pub struct WorkerLog {
    /// Per endpoint: the second being recorded and its bucket.
    current: Vec<CurrentSecond>,
    /// Seconds the worker has moved past, waiting for the collector.
    finished: Vec<(usize, u64, Bucket)>,
    /// Emptied buckets handed back by the collector.
    spare: Vec<Bucket>,
}

/// How many values wait before going into a bucket's histograms together.
const BATCH: usize = 256;

/// One endpoint's bucket of the second being recorded, and the histogram values
/// (microseconds, as [`micros`] makes them) of that second not yet recorded into it.
///
/// Each worker has two large histograms per endpoint and second, and the kernel's
/// networking runs between two requests of a worker: recording each request's values
/// at once misses the cache most of the time. A batch recorded together reuses the
/// few counters a second's values fall in. The values go in when the batch is full
/// and before the bucket leaves the current second or is handed to the collector,
/// so a bucket is always whole when collected.
#[derive(Debug, Default)]
struct CurrentSecond {
    open: Option<(u64, Bucket)>,
    latency: Vec<u64>,
    send_delay: Vec<u64>,
}

impl CurrentSecond {
    /// Takes the open bucket, with every waiting value recorded.
    fn take(&mut self) -> Option<(u64, Bucket)> {
        let (_, bucket) = self.open.as_mut()?;
        flush(bucket, &mut self.latency, &mut self.send_delay);
        self.open.take()
    }
}

/// Records waiting values into their bucket.
fn flush(bucket: &mut Bucket, latency: &mut Vec<u64>, send_delay: &mut Vec<u64>) {
    for value in latency.drain(..) {
        bucket.latency.saturating_record(value);
    }
    for value in send_delay.drain(..) {
        bucket.send_delay.saturating_record(value);
    }
}

/// Where a request's values go: the waiting values of the current second, or
/// straight into the bucket of an earlier one.
type Waiting<'a> = Option<(&'a mut Vec<u64>, &'a mut Vec<u64>)>;

impl WorkerLog {
    fn bucket(&mut self, endpoint: usize, second: u64) -> (&mut Bucket, Waiting<'_>) {
        if self.current.len() <= endpoint {
            self.current
                .resize_with(endpoint + 1, CurrentSecond::default);
        }
        let current = &mut self.current[endpoint];
        if let Some((current_second, _)) = &current.open {
            if *current_second != second {
                // A worker's clock only moves forward, but a recorder fed out of
                // order (or a second not yet collected) must not lose or split data.
                if let Some(index) = self
                    .finished
                    .iter()
                    .position(|(e, s, _)| *e == endpoint && *s == second)
                {
                    return (&mut self.finished[index].2, None);
                }
                if let Some((old_second, old)) = current.take() {
                    self.finished.push((endpoint, old_second, old));
                }
            }
        }
        let spare = &mut self.spare;
        let CurrentSecond {
            open,
            latency,
            send_delay,
        } = current;
        let bucket = &mut open
            .get_or_insert_with(|| (second, spare.pop().unwrap_or_default()))
            .1;
        (bucket, Some((latency, send_delay)))
    }

    /// Records a sent request.
    pub fn record(
        &mut self,
        endpoint: usize,
        second: u64,
        send_delay: Duration,
        late: bool,
        outcome: Outcome,
    ) {
        let (bucket, waiting) = self.bucket(endpoint, second);
        bucket.requests += 1;
        if late {
            bucket.late += 1;
        }
        let latency = match outcome {
            Outcome::Answered { latency, error } => {
                match error {
                    None => bucket.ok += 1,
                    Some(class) => bucket.errors.add(class),
                }
                Some(latency)
            }
            Outcome::Failed(class) => {
                bucket.errors.add(class);
                None
            }
        };
        match waiting {
            Some((latencies, send_delays)) => {
                send_delays.push(micros(send_delay));
                if let Some(latency) = latency {
                    latencies.push(micros(latency));
                }
                if send_delays.len() >= BATCH {
                    flush(bucket, latencies, send_delays);
                }
            }
            None => {
                record(&mut bucket.send_delay, send_delay);
                if let Some(latency) = latency {
                    record(&mut bucket.latency, latency);
                }
            }
        }
    }

    /// Records a request that was never sent.
    pub fn record_dropped(&mut self, endpoint: usize, second: u64) {
        self.bucket(endpoint, second).0.dropped += 1;
    }

    /// Takes every bucket of a second before `before` (all of them with `None`).
    fn take_finished(&mut self, before: Option<u64>) -> Vec<(usize, u64, Bucket)> {
        let mut taken = std::mem::take(&mut self.finished);
        for (endpoint, current) in self.current.iter_mut().enumerate() {
            let done = match (&current.open, before) {
                (Some((second, _)), Some(limit)) => *second < limit,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if done {
                if let Some((second, bucket)) = current.take() {
                    taken.push((endpoint, second, bucket));
                }
            }
        }
        taken
    }
}

/// Maps instants of a run to wall-clock (Unix) seconds, the keys of its buckets.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: tokio::time::Instant,
    pub start_unix_nanos: u128,
}

impl Clock {
    /// A clock started now.
    pub fn start_now() -> (Clock, std::time::SystemTime) {
        let wall = std::time::SystemTime::now();
        let clock = Clock {
            start: tokio::time::Instant::now(),
            start_unix_nanos: wall
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        };
        (clock, wall)
    }

    /// The Unix second `at` falls in.
    pub fn second_of(&self, at: tokio::time::Instant) -> u64 {
        ((self.start_unix_nanos + at.saturating_duration_since(self.start).as_nanos())
            / 1_000_000_000) as u64
    }

    /// Just after the first wall-clock second of the run ends: collecting then (and
    /// every second after) takes whole seconds.
    pub fn first_collection(&self) -> tokio::time::Instant {
        let into_second = Duration::from_nanos((self.start_unix_nanos % 1_000_000_000) as u64);
        self.start + (Duration::from_secs(1) - into_second) + Duration::from_millis(20)
    }
}

/// A worker's log, shared between the worker and the collector.
pub type SharedLog = Arc<Mutex<WorkerLog>>;

/// Locks a log, recovering it if a worker panicked while holding it (the data is
/// counters and histograms, still meaningful).
pub fn lock(log: &SharedLog) -> MutexGuard<'_, WorkerLog> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Everything collected so far, merged across workers: `(endpoint, second) -> bucket`.
#[derive(Debug, Default)]
pub struct Collected {
    pub buckets: BTreeMap<(usize, u64), Bucket>,
}

impl Collected {
    /// Moves the finished seconds (before `before`, or all with `None`) of every
    /// worker into this map, hands emptied buckets back, and returns the seconds
    /// that received data.
    pub fn collect(&mut self, logs: &[SharedLog], before: Option<u64>) -> Vec<u64> {
        let mut seconds = Vec::new();
        for log in logs {
            let taken = lock(log).take_finished(before);
            let mut emptied = Vec::with_capacity(taken.len());
            for (endpoint, second, mut bucket) in taken {
                self.buckets
                    .entry((endpoint, second))
                    .or_default()
                    .merge(&bucket);
                seconds.push(second);
                bucket.clear();
                emptied.push(bucket);
            }
            // Keep a few spares per worker; more would only hold memory.
            let mut guard = lock(log);
            let room = 4usize.saturating_sub(guard.spare.len());
            guard.spare.extend(emptied.into_iter().take(room));
        }
        seconds.sort_unstable();
        seconds.dedup();
        seconds
    }

    /// The buckets of one second, merged across endpoints.
    pub fn second(&self, second: u64) -> Bucket {
        let mut sum = Bucket::default();
        for ((_, s), bucket) in &self.buckets {
            if *s == second {
                sum.merge(bucket);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use faultline_results::histogram::new_histogram;

    use super::*;

    fn answered(ms: u64) -> Outcome {
        Outcome::Answered {
            latency: Duration::from_millis(ms),
            error: None,
        }
    }

    #[test]
    fn batched_values_are_all_in_the_collected_histograms() {
        let log: SharedLog = Arc::default();
        let mut expected_latency = new_histogram();
        let mut expected_delay = new_histogram();
        for i in 0..(3 * BATCH as u64 + 7) {
            let delay = Duration::from_micros(i % 13);
            record(&mut expected_delay, delay);
            let latency = Duration::from_micros(100 + i);
            let outcome = if i % 10 == 0 {
                Outcome::Failed(ErrorClass::Reset)
            } else {
                record(&mut expected_latency, latency);
                Outcome::Answered {
                    latency,
                    error: None,
                }
            };
            lock(&log).record(0, 100, delay, false, outcome);
        }
        // A late request of an earlier, finished second goes straight into its bucket.
        lock(&log).record(0, 101, Duration::ZERO, false, answered(1));
        lock(&log).record(0, 100, Duration::from_micros(5), false, answered(2));
        record(&mut expected_delay, Duration::from_micros(5));
        record(&mut expected_latency, Duration::from_millis(2));
        let mut collected = Collected::default();
        assert_eq!(
            collected.collect(std::slice::from_ref(&log), Some(101)),
            vec![100]
        );
        let second = collected.second(100);
        assert_eq!(second.requests, 3 * BATCH as u64 + 8);
        assert_eq!(second.latency, expected_latency);
        assert_eq!(second.send_delay, expected_delay);
        assert_eq!(collected.collect(&[log], None), vec![101]);
        assert_eq!(collected.second(101).latency.len(), 1);
    }

    #[test]
    fn the_collector_takes_only_seconds_the_clock_has_passed() {
        let log: SharedLog = Arc::default();
        lock(&log).record(0, 100, Duration::ZERO, false, answered(1));
        lock(&log).record(0, 101, Duration::ZERO, false, answered(2));
        let mut collected = Collected::default();
        assert_eq!(
            collected.collect(std::slice::from_ref(&log), Some(101)),
            vec![100]
        );
        assert_eq!(
            collected.collect(std::slice::from_ref(&log), Some(101)),
            Vec::<u64>::new()
        );
        lock(&log).record(
            0,
            101,
            Duration::ZERO,
            true,
            Outcome::Failed(ErrorClass::Timeout),
        );
        lock(&log).record_dropped(1, 101);
        assert_eq!(collected.collect(&[log], None), vec![101]);
        let second = collected.second(101);
        assert_eq!(
            (second.requests, second.ok, second.late, second.dropped),
            (2, 1, 1, 1)
        );
        assert_eq!(second.errors.timeout, 1);
        assert_eq!(second.latency.len(), 1);
    }
}
