//! A timer finer than Tokio's millisecond, for the last millisecond before an open
//! schedule's arrival (module `pacing`).
//!
//! Tokio's timer fires on millisecond ticks, so every arrival due within the same
//! millisecond went out together: at 4,000 requests/s one process sent bursts of four,
//! which the server then queued, where four processes of 1,000/s each (their ticks at
//! other phases) sent one at a time. The schedule has no such bursts. The pacer
//! therefore sleeps on Tokio's timer until a millisecond before an arrival, and then
//! on this one until just before the arrival's time (by the timer slack, module
//! `pacing`).
//!
//! One thread per run keeps the deadlines in a heap behind a mutex and waits on a
//! condition variable with a timeout (a futex, so it wakes within the kernel's timer
//! slack, some tens of microseconds, not on a millisecond tick), then wakes the tasks
//! whose time has come. A [`FineSleep`] registers its task's waker when polled early;
//! the thread is told only when the new deadline is the earliest, so arrivals taken in
//! order cost no extra system call. The thread ends when the [`FineTimer`] is dropped.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    future::Future,
    pin::Pin,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
    time::Instant,
};

/// The timer of one run: a handle to its thread.
pub(crate) struct FineTimer {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// The earliest deadline on top (`Due` orders in reverse).
    due: BinaryHeap<Due>,
    stopped: bool,
}

/// A task to wake at `at`.
struct Due {
    at: Instant,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    // Reversed: `BinaryHeap` is a max-heap, and the earliest deadline comes first.
    fn cmp(&self, other: &Due) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding it leaves deadlines that are still deadlines.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The thread's loop: wake what is due, then wait for the next deadline or for
    /// an earlier one to be added.
    fn run(&self) {
        let mut woken = Vec::new();
        let mut queue = self.queue();
        loop {
            if queue.stopped {
                return;
            }
            let now = Instant::now();
            while queue.due.peek().is_some_and(|first| first.at <= now) {
                if let Some(due) = queue.due.pop() {
                    woken.push(due.waker);
                }
            }
            if !woken.is_empty() {
                // Woken without the lock held, so the tasks can register again at once.
                drop(queue);
                woken.drain(..).for_each(Waker::wake);
                queue = self.queue();
                continue;
            }
            let next = queue.due.peek().map(|first| first.at - now);
            queue = match next {
                Some(wait) => {
                    self.changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
                None => self
                    .changed
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }
}

impl FineTimer {
    /// Starts the timer's thread; `None` when no thread can be started (the caller
    /// then keeps Tokio's timer).
    pub(crate) fn start() -> Option<FineTimer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let running = shared.clone();
        match std::thread::Builder::new()
            .name("faultline-pacer".into())
            .spawn(move || running.run())
        {
            Ok(_) => Some(FineTimer { shared }),
            Err(error) => {
                tracing::warn!(%error, "no fine timer thread: arrivals are paced to the millisecond");
                None
            }
        }
    }

    /// Resolves at `deadline` (or just after, by the kernel's timer slack).
    pub(crate) fn sleep_until(&self, deadline: tokio::time::Instant) -> FineSleep<'_> {
        FineSleep {
            timer: self,
            at: deadline.into_std(),
        }
    }
}

impl Drop for FineTimer {
    fn drop(&mut self) {
        self.shared.queue().stopped = true;
        self.shared.changed.notify_one();
    }
}

/// The future of [`FineTimer::sleep_until`].
pub(crate) struct FineSleep<'a> {
    timer: &'a FineTimer,
    at: Instant,
}

impl Future for FineSleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let shared = &self.timer.shared;
        let mut queue = shared.queue();
        let earliest = queue.due.peek().is_none_or(|first| self.at < first.at);
        // Registered on every early poll: the thread popped the last registration when
        // it woke this task, so there is at most one (a spurious wake adds a second,
        // whose wake is then spurious too).
        queue.due.push(Due {
            at: self.at,
            waker: cx.waker().clone(),
        });
        drop(queue);
        if earliest {
            shared.changed.notify_one();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn sleeps_end_at_their_deadlines_not_before() {
        let timer = Arc::new(FineTimer::start().unwrap());
        let start = tokio::time::Instant::now() + Duration::from_millis(5);
        // Deadlines 100 µs apart, registered out of order: several fall within one of
        // Tokio's millisecond ticks, which would end them together, early or late.
        let mut sleeps = tokio::task::JoinSet::new();
        for offset in [7u64, 0, 3, 9, 1, 5, 2, 8, 4, 6] {
            let timer = timer.clone();
            let deadline = start + Duration::from_micros(100 * offset);
            sleeps.spawn(async move {
                timer.sleep_until(deadline).await;
                (offset, tokio::time::Instant::now() >= deadline)
            });
        }
        let mut ended = 0;
        while let Some(joined) = sleeps.join_next().await {
            let (offset, on_time) = joined.unwrap();
            assert!(on_time, "sleep {offset} ended before its deadline");
            ended += 1;
        }
        assert_eq!(ended, 10);
    }

    #[test]
    fn the_earliest_deadline_is_on_top() {
        let now = Instant::now();
        let mut queue = BinaryHeap::new();
        for micros in [300, 100, 200] {
            queue.push(Due {
                at: now + Duration::from_micros(micros),
                waker: Waker::noop().clone(),
            });
        }
        let popped: Vec<Instant> = std::iter::from_fn(|| queue.pop().map(|d| d.at)).collect();
        let micros: Vec<u128> = popped.iter().map(|at| (*at - now).as_micros()).collect();
        assert_eq!(micros, [100, 200, 300]);
    }

    #[tokio::test]
    async fn a_past_deadline_is_ready_at_once_and_a_dropped_timer_stops_its_thread() {
        let timer = FineTimer::start().unwrap();
        timer.sleep_until(tokio::time::Instant::now()).await;
        let shared = timer.shared.clone();
        drop(timer);
        assert!(shared.queue().stopped);
    }
}
