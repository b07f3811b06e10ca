//! The one pacing loop of every mode: plain requests and journeys alike.
//!
//! A [`Pacer`] hands out arrivals: in an open schedule the next intended time not yet
//! taken by another worker (so an idle worker takes whatever is due next, and an
//! arrival due while every worker is busy waits and counts its wait), in a closed one
//! "now" until the run's end. An arrival still untaken more than the maximum send delay
//! after its time is dropped and counted, never started late. [`Pacer::pace`] is a
//! worker's loop: take the next arrival, wait for its time, hand it to the
//! [`Worker`], repeat. What an arrival *does* is the worker's business (send one
//! request on its connection, or run one journey); the pacing is written once.
//!
//! An open arrival is waited for on Tokio's timer until a millisecond before its time,
//! then on the run's [`FineTimer`] until just before its time: Tokio's timer fires on
//! millisecond ticks, which would send every arrival due within one millisecond at once
//! (bursts of four at 4,000/s, which a server then queues: a latency the schedule does
//! not ask for).
//!
//! The loop is generic over the worker, so each mode gets its own monomorphic copy:
//! the plain-request hot path has no dynamic dispatch, boxing or allocation added.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::{task::JoinSet, time::Instant};

use super::fine_timer::FineTimer;
use crate::recorder::Clock;
use crate::schedule::{Schedule, SendTimes};

/// How late Tokio's timer may fire after its deadline: it rounds a deadline up to its
/// next millisecond tick, and its driver then parks for whole milliseconds (epoll's
/// timeout), so a sleep ends up to about 2 ms after its deadline. Waking only 1 ms early
/// left a tenth or more of the arrivals of a 4,000/s schedule sent about 1 ms late
/// (`send_delay` p90 935 µs; `scripts/bench-distributed SERVICE_MS=10`).
const TIMER_RESOLUTION: Duration = Duration::from_millis(2);
/// How late the fine timer may wake: Linux's default timer slack. Its sleeps end this
/// much before an arrival's time, so a send is at most this early and seldom late
/// (latency is measured from the earlier of intended and actual send: waking late would
/// add the lag to the latency).
const FINE_TIMER_SLACK: Duration = Duration::from_micros(50);

/// One arrival: its number in the run and when it was due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Arrivals are numbered from 0 in the order they are handed out.
    pub index: u64,
    /// The intended time; in a closed schedule, when the worker became free for it
    /// (took the slot, or finished its previous arrival).
    pub intended: Instant,
    /// Whether `intended` comes from an open schedule (and may lie ahead).
    pub paced: bool,
}

/// What one arrival does, and what a worker does while it waits for the next.
pub(crate) trait Worker: Send + 'static {
    /// Counts arrival `index`, dropped in wall-clock `second` because it was overdue.
    fn dropped(&mut self, index: u64, second: u64);

    /// Whether the worker has nothing more to do before the schedule ends (a `once`
    /// feeder ran out).
    fn finished(&self) -> bool {
        false
    }

    /// Waits until `wake` (an open schedule's next arrival is due just after).
    fn idle_until(&mut self, wake: Instant) -> impl Future<Output = ()> + Send;

    /// Handles one arrival. Resolves to when the worker became free, if it did nothing
    /// after the arrival that a closed schedule should not count against the next one
    /// (`None`: the next closed arrival reads the clock).
    fn serve(
        &mut self,
        slot: Slot,
        seconds: &mut SecondClock,
    ) -> impl Future<Output = Option<Instant>> + Send;
}

/// Hands out arrivals: intended times of an open schedule, or "now" until the end.
pub(crate) struct Pacer {
    sequence: Sequence,
    clock: Clock,
    max_send_delay: Duration,
    /// The last millisecond before an open arrival; `None` for a closed schedule (its
    /// arrivals are due at once) or when no thread could be started.
    fine: Option<FineTimer>,
}

enum Sequence {
    /// The send times and how many were handed out. A `std::sync::Mutex`: it is held
    /// only to take the next time, never across an await. Boxed to keep the closed
    /// variant small.
    Open(Box<Mutex<(SendTimes, u64)>>),
    Closed {
        end: Instant,
        next: AtomicU64,
    },
}

impl Pacer {
    /// Arrivals of `schedule` on `clock`; an open arrival overdue by more than
    /// `max_send_delay` when a worker is free for it is dropped.
    pub(crate) fn new(schedule: &Schedule, clock: Clock, max_send_delay: Duration) -> Pacer {
        let (sequence, fine) = match schedule.send_times() {
            Some(times) => (
                Sequence::Open(Box::new(Mutex::new((times, 0)))),
                FineTimer::start(),
            ),
            None => (
                Sequence::Closed {
                    end: clock.start + schedule.duration(),
                    next: AtomicU64::new(0),
                },
                None,
            ),
        };
        Pacer {
            sequence,
            clock,
            max_send_delay,
            fine,
        }
    }

    /// Runs one worker per item of `workers` until the schedule ends.
    pub(crate) async fn run<W: Worker>(self, workers: impl IntoIterator<Item = W>) {
        let pacer = Arc::new(self);
        let mut running = JoinSet::new();
        for worker in workers {
            let pacer = pacer.clone();
            running.spawn(async move { pacer.pace(worker).await });
        }
        while let Some(joined) = running.join_next().await {
            // A worker that panicked loses only its own unrecorded arrival.
            if let Err(error) = joined {
                tracing::error!(%error, "load worker failed");
            }
        }
    }

    /// One worker's loop: take the next arrival, wait for its time, serve it.
    pub(crate) async fn pace<W: Worker>(&self, mut worker: W) {
        let mut seconds = SecondClock::new(self.clock);
        let mut free_since = None;
        while !worker.finished() {
            let Some(slot) = self.next_slot(&mut worker, &mut seconds, free_since.take()) else {
                break;
            };
            if slot.paced {
                // Tokio's timer fires up to 2 ms after its deadline: sleeping until
                // `intended` would start late every time and add that lag to every
                // latency. So it wakes the worker that much before (still watching its
                // idle connection), and the
                // fine timer the rest of the way, to within its slack. Without one,
                // starts stay within a millisecond of their time without that bias
                // (latency is measured from the earlier of intended and actual send).
                let wake = slot
                    .intended
                    .checked_sub(TIMER_RESOLUTION)
                    .unwrap_or(slot.intended);
                if wake > Instant::now() {
                    worker.idle_until(wake).await;
                    if worker.finished() {
                        break;
                    }
                }
                if let Some(fine) = &self.fine {
                    let wake = slot.intended.checked_sub(FINE_TIMER_SLACK);
                    fine.sleep_until(wake.unwrap_or(slot.intended)).await;
                }
            }
            free_since = worker.serve(slot, &mut seconds).await;
        }
    }

    /// The next arrival for an idle worker, dropping (and counting) arrivals that are
    /// already overdue by more than the maximum send delay. `free_since`: when the
    /// worker finished its last arrival, if it has done nothing since (a closed
    /// schedule's next arrival is due then, which saves reading the clock again).
    fn next_slot<W: Worker>(
        &self,
        worker: &mut W,
        seconds: &mut SecondClock,
        free_since: Option<Instant>,
    ) -> Option<Slot> {
        match &self.sequence {
            Sequence::Closed { end, next } => {
                let now = free_since.unwrap_or_else(Instant::now);
                if now >= *end {
                    return None;
                }
                Some(Slot {
                    index: next.fetch_add(1, Ordering::Relaxed),
                    intended: now,
                    paced: false,
                })
            }
            Sequence::Open(times) => loop {
                let (offset, index) = {
                    let mut guard = times
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    let offset = guard.0.next()?;
                    let index = guard.1;
                    guard.1 += 1;
                    (offset, index)
                };
                let intended = self.clock.start + offset;
                let now = Instant::now();
                if now.saturating_duration_since(intended) > self.max_send_delay {
                    worker.dropped(index, seconds.second_of(now));
                    continue;
                }
                return Some(Slot {
                    index,
                    intended,
                    paced: true,
                });
            },
        }
    }
}

/// The wall-clock second an instant falls in, as the recorder's [`Clock`] computes
/// it, with the current second's bounds kept so most arrivals need only two
/// comparisons.
pub(crate) struct SecondClock {
    start: Instant,
    start_unix_nanos: u128,
    /// Instants in `from..until` are in `second`.
    from: Instant,
    until: Instant,
    second: u64,
}

impl SecondClock {
    pub(crate) fn new(clock: Clock) -> SecondClock {
        SecondClock {
            start: clock.start,
            start_unix_nanos: clock.start_unix_nanos,
            from: clock.start,
            until: clock.start,
            second: 0,
        }
    }

    pub(crate) fn second_of(&mut self, at: Instant) -> u64 {
        if self.from <= at && at < self.until {
            return self.second;
        }
        let unix_nanos =
            self.start_unix_nanos + at.saturating_duration_since(self.start).as_nanos();
        let second = (unix_nanos / 1_000_000_000) as u64;
        if at >= self.start {
            let into_second = Duration::from_nanos((unix_nanos % 1_000_000_000) as u64);
            self.from = at
                .checked_sub(into_second)
                .unwrap_or(self.start)
                .max(self.start);
            self.until = at + (Duration::from_secs(1) - into_second);
            self.second = second;
        }
        second
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use faultline_results::Arrivals;

    use super::*;

    /// Counts its arrivals and those served before their intended time, by more than
    /// the fine timer's slack.
    struct Recording {
        served: Arc<AtomicU64>,
        early: Arc<AtomicU64>,
    }

    impl Worker for Recording {
        fn dropped(&mut self, _index: u64, _second: u64) {}

        async fn idle_until(&mut self, wake: Instant) {
            tokio::time::sleep_until(wake).await;
        }

        async fn serve(&mut self, slot: Slot, _seconds: &mut SecondClock) -> Option<Instant> {
            self.served.fetch_add(1, Ordering::Relaxed);
            if Instant::now() + FINE_TIMER_SLACK < slot.intended {
                self.early.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
    }

    #[tokio::test]
    async fn open_arrivals_start_within_the_fine_timers_slack_of_their_time() {
        // 8 arrivals per millisecond: Tokio's timer alone would start most of them
        // early, anywhere in the millisecond before their time.
        let schedule =
            Schedule::constant(8_000.0, Duration::from_millis(50), Arrivals::Uniform).unwrap();
        let (clock, _) = Clock::start_now();
        let pacer = Pacer::new(&schedule, clock, Duration::from_secs(10));
        let (served, early) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let workers = (0..4).map(|_| Recording {
            served: served.clone(),
            early: early.clone(),
        });
        pacer.run(workers).await;
        let arrivals = schedule.send_times().unwrap().count() as u64;
        assert!(arrivals >= 390, "{arrivals}");
        assert_eq!(served.load(Ordering::Relaxed), arrivals);
        assert_eq!(early.load(Ordering::Relaxed), 0, "arrivals served early");
    }
}
