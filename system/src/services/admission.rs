//! Admission control for orders: take a new order only while the sagas already pending
//! can finish within a deadline.
//!
//! Without it an overload grows the PENDING backlog without bound, and every order,
//! old and new, waits longer and longer. With it the orders service answers 503 with
//! `Retry-After` to what it could not finish in time, and the orders it took keep their
//! deadline (Little's law: a backlog of `rate × deadline` drains within the deadline).
//!
//! [`Admission::observe`] is fed the PENDING and finished counts from the database every
//! refresh (the source of truth across replicas); between refreshes each admitted order
//! counts itself, so a burst cannot overshoot the limit by a refresh's worth of orders.
//! Nothing uncounts the ones that finish meanwhile, so the count drifts up by a refresh's
//! arrivals: the orders service refreshes often ([`REFRESH_EVERY`]) to keep that drift
//! well under [`MIN_PENDING_LIMIT`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::platform::http::ApiError;

/// The limit while no completion rate is known yet (just started, or nothing finished):
/// small enough to drain within any sane deadline on this kind of machine.
pub const MIN_PENDING_LIMIT: i64 = 500;
/// How often the orders service reads the counts into [`Admission::observe`]. At 1 s a
/// fresh system taking 500 orders/s shed hundreds in its first seconds (capacity-checkout:
/// 532 of 30,000, all in seconds 1 to 4) while its sagas took under 0.6 s: a second's
/// arrivals, counted locally on top of the pending ones, reached the limit before the
/// completion rate had been measured.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// Weight of one second's rate sample in the smoothed completion rate when the sample is
/// below it (a sample over a shorter time weighs less: the smoothing follows time, not the
/// number of refreshes). A falling rate may be the demand falling, not the capacity.
const RATE_SMOOTHING: f64 = 0.3;
/// The same weight when the sample is above it: sagas that did finish prove the capacity
/// at once. Rising as slowly as it falls, the estimate lagged a load that started on an
/// idle system by seconds, and the limit stayed at [`MIN_PENDING_LIMIT`] while a fresh
/// system's first sagas (slower while its JIT and plans warm up) already filled it.
const RATE_RISE: f64 = 0.9;

/// How the limit on pending sagas is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdmissionPolicy {
    /// Take every order.
    Off,
    /// At most this many pending sagas.
    Fixed(i64),
    /// As many as finish within this time at the recent completion rate (at least
    /// [`MIN_PENDING_LIMIT`]).
    Deadline(Duration),
}

/// The pending count and completion rate the limit is judged on; cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    policy: AdmissionPolicy,
    pending: Arc<AtomicI64>,
    /// Smoothed sagas finished per second, as f64 bits.
    finished_per_second: Arc<AtomicU64>,
    last: Arc<Mutex<Option<(Instant, i64)>>>,
}

impl Admission {
    pub fn new(policy: AdmissionPolicy) -> Admission {
        Admission {
            policy,
            pending: Arc::new(AtomicI64::new(0)),
            finished_per_second: Arc::new(AtomicU64::new(0f64.to_bits())),
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The database's counts: sagas pending, and sagas ever finished (completed or
    /// cancelled), whose growth is the completion rate.
    pub fn observe(&self, pending: i64, finished: i64) {
        self.observe_at(Instant::now(), pending, finished);
    }

    fn observe_at(&self, now: Instant, pending: i64, finished: i64) {
        self.pending.store(pending, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, before)) = *last {
            let seconds = now.duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                let sample = (finished - before).max(0) as f64 / seconds;
                let old = f64::from_bits(self.finished_per_second.load(Ordering::Relaxed));
                let per_second = if sample > old {
                    RATE_RISE
                } else {
                    RATE_SMOOTHING
                };
                let weight = 1.0 - (1.0 - per_second).powf(seconds.min(1e3));
                let smoothed = old + weight * (sample - old);
                self.finished_per_second
                    .store(smoothed.to_bits(), Ordering::Relaxed);
            }
        }
        *last = Some((now, finished));
    }

    /// The most pending sagas allowed now; `None` when every order is taken.
    pub fn limit(&self) -> Option<i64> {
        match self.policy {
            AdmissionPolicy::Off => None,
            AdmissionPolicy::Fixed(limit) => Some(limit),
            AdmissionPolicy::Deadline(deadline) => {
                let rate = f64::from_bits(self.finished_per_second.load(Ordering::Relaxed));
                Some(((rate * deadline.as_secs_f64()) as i64).max(MIN_PENDING_LIMIT))
            }
        }
    }

    /// Takes one more order, or says why not (503 with `Retry-After`). The order counts
    /// as pending until the ticket is dropped, unless [`Ticket::keep`] says it was created.
    pub fn admit(&self) -> Result<Ticket<'_>, ApiError> {
        if let Some(limit) = self.limit() {
            let pending = self.pending.load(Ordering::Relaxed);
            if pending >= limit {
                return Err(ApiError::Overloaded {
                    message: format!(
                        "orders are arriving faster than they complete: {pending} pending, \
                         the limit is {limit}; retry later"
                    ),
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            admission: Some(self),
        })
    }
}

/// An admitted order; dropped without [`Ticket::keep`] (an error, an idempotent replay),
/// it stops counting as pending.
#[derive(Debug)]
pub struct Ticket<'a> {
    admission: Option<&'a Admission>,
}

impl Ticket<'_> {
    /// The order was created: it stays pending until the database says otherwise.
    pub fn keep(mut self) {
        self.admission = None;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(admission) = self.admission {
            admission.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_limit_sheds_the_order_past_it_until_the_backlog_shrinks() {
        let admission = Admission::new(AdmissionPolicy::Fixed(3));
        for _ in 0..3 {
            admission.admit().expect("under the limit").keep();
        }
        let refused = admission.admit().expect_err("the fourth pending order");
        assert!(
            matches!(refused, ApiError::Overloaded { retry_after, .. } if retry_after >= Duration::from_secs(1))
        );
        admission.observe(1, 2); // two finished
        let ticket = admission.admit().expect("room again");
        drop(ticket); // not created after all: no longer pending
        admission
            .admit()
            .expect("the dropped ticket freed its place")
            .keep(); // 2 pending
        admission.admit().expect("the third place").keep();
        assert!(admission.admit().is_err(), "a fourth while 3 are pending");
    }

    #[test]
    fn the_deadline_limit_follows_the_completion_rate() {
        let admission = Admission::new(AdmissionPolicy::Deadline(Duration::from_secs(5)));
        assert_eq!(
            admission.limit(),
            Some(MIN_PENDING_LIMIT),
            "no rate known yet"
        );
        admission.observe(0, 0);
        std::thread::sleep(Duration::from_millis(100));
        admission.observe(0, 1_000); // about 10,000 finished per second
        let limit = admission.limit().unwrap_or(0);
        assert!(
            limit > 5 * MIN_PENDING_LIMIT,
            "limit {limit} did not grow with the rate"
        );
    }

    #[test]
    fn the_rate_rises_within_a_second_and_falls_over_several() {
        let admission = Admission::new(AdmissionPolicy::Deadline(Duration::from_secs(5)));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Idle for a second, then 400 sagas finished per second, read every 250 ms.
        admission.observe_at(at(0), 0, 0);
        admission.observe_at(at(1_000), 0, 0);
        for quarter in 1..=4 {
            admission.observe_at(at(1_000 + 250 * quarter), 300, 100 * quarter as i64);
        }
        let risen = admission.limit().unwrap_or(0);
        assert!(
            (1_700..=2_000).contains(&risen),
            "after a second at 400/s the limit is {risen}, not near 400/s x 5 s"
        );
        // Then nothing finishes for a second: the estimate falls by about 30%.
        for quarter in 1..=4 {
            admission.observe_at(at(2_000 + 250 * quarter), 300, 400);
        }
        let fallen = admission.limit().unwrap_or(0);
        assert!(
            fallen < risen && fallen > risen / 2,
            "after a second with none finished the limit went from {risen} to {fallen}"
        );
    }

    #[test]
    fn off_takes_everything() {
        let admission = Admission::new(AdmissionPolicy::Off);
        admission.observe(1_000_000, 0);
        assert!(admission.admit().is_ok());
    }
}
