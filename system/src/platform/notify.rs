//! Changes announced inside the process, after they committed: analytics' projector
//! announces each order whose view it changed, with the view's new version and the view as
//! written, and the long-polls waiting for that order (and only those) wake once it reached
//! the version they wait for and answer with the view they were handed: no second look at
//! the database for an answer the projector just wrote.
//!
//! A waiter [`Changes::watch`]es its key before it looks, so a change committed between its
//! look and its wait still wakes it. Each watched key has one `watch` channel, created by
//! its first waiter and dropped with its last; an announcement for a key nobody waits for
//! costs one map lookup. (A broadcast of every key to every waiter cost each waiter a wake
//! per projected event: waiters × events per second.)
//!
//! Why not PostgreSQL's `NOTIFY`: a transaction that issues it holds the server's global
//! notification lock from pre-commit to its end, WAL flush included, so every projecting
//! transaction queued behind the one before, one fsync at a time. A waiter on another
//! replica than the one that projected its order is not woken by this; it looks again
//! every [`Changes::POLL`] instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::ownership::Ownership;

/// The newest change announced for a key: its version and what it changed to.
#[derive(Debug, Clone)]
struct Announced<V> {
    version: i64,
    value: Option<V>,
}

/// Each watched key's channel holds the newest change announced since it was created.
type Waiting<V> = HashMap<String, watch::Sender<Announced<V>>>;

/// The keys (e.g. order ids) someone in this process waits on, each with its channel; `V`
/// is what a change hands its waiters (analytics: the view as written).
#[derive(Debug, Clone)]
pub struct Changes<V = ()> {
    waiting: Arc<Mutex<Waiting<V>>>,
    /// Whether this replica's projector owns every partition it projects from.
    ownership: Ownership,
}

impl<V> Default for Changes<V> {
    fn default() -> Self {
        Changes {
            waiting: Arc::new(Mutex::new(HashMap::new())),
            ownership: Ownership::default(),
        }
    }
}

impl<V: Clone> Changes<V> {
    /// How long a waiter waits before looking again without being woken (a change made
    /// by another replica).
    pub const POLL: Duration = Duration::from_millis(100);

    /// The same while this replica's projector owns every partition.
    pub const SOLE_POLL: Duration = Duration::from_secs(1);

    pub fn new() -> Changes<V> {
        Changes::default()
    }

    /// Tells the waiters of `key` that it changed to `value` at `version` and the change
    /// committed; those waiting for that version or an older one wake with `value`.
    pub fn announce(&self, key: &str, version: i64, value: V) {
        if let Some(sender) = lock(&self.waiting).get(key) {
            sender.send_if_modified(|newest| {
                let newer = version > newest.version;
                if newer {
                    *newest = Announced {
                        version,
                        value: Some(value),
                    };
                }
                newer
            });
        }
    }

    /// Starts watching `key`; do it before looking, so that no change is missed.
    pub fn watch(&self, key: &str) -> Watch<V> {
        let receiver = lock(&self.waiting)
            .entry(key.to_string())
            .or_insert_with(|| {
                let nothing_yet = Announced {
                    version: i64::MIN,
                    value: None,
                };
                watch::channel(nothing_yet).0
            })
            .subscribe();
        Watch {
            key: key.to_string(),
            receiver: Some(receiver),
            waiting: self.waiting.clone(),
        }
    }

    /// The flag the projector's consumer keeps (see [`Ownership`]).
    pub fn ownership(&self) -> Ownership {
        self.ownership.clone()
    }

    /// How long a waiter waits before looking again without being woken.
    pub fn poll_interval(&self) -> Duration {
        if self.ownership.owns_everything() {
            Self::SOLE_POLL
        } else {
            Self::POLL
        }
    }

    /// How many keys are watched now.
    pub fn watched(&self) -> usize {
        lock(&self.waiting).len()
    }
}

/// One waiter's interest in one key; dropping it forgets the key once nobody else waits.
#[derive(Debug)]
pub struct Watch<V = ()> {
    key: String,
    receiver: Option<watch::Receiver<Announced<V>>>,
    waiting: Arc<Mutex<Waiting<V>>>,
}

impl<V: Clone> Watch<V> {
    /// Returns, once a change of at least `version` was announced for the key since the
    /// watch began (at once if one already was), what that change handed its waiters.
    pub async fn reached(&mut self, version: i64) -> Option<V> {
        let receiver = self.receiver.as_mut()?;
        // The sender lives in the map as long as this receiver does: no error.
        let newest = receiver
            .wait_for(|newest| newest.version >= version)
            .await
            .ok()?;
        newest.value.clone()
    }
}

impl<V> Drop for Watch<V> {
    fn drop(&mut self) {
        let mut waiting = lock(&self.waiting);
        drop(self.receiver.take());
        if waiting
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            waiting.remove(&self.key);
        }
    }
}

/// The map is only touched in short sections that cannot panic half-way; a poisoned lock
/// still holds a consistent map.
fn lock<V>(waiting: &Mutex<Waiting<V>>) -> MutexGuard<'_, Waiting<V>> {
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_announced_between_watch_and_wait_wakes_the_waiter() {
        let changes: Changes<&str> = Changes::new();
        let mut watch = changes.watch("order-1");
        changes.announce("order-1", 1, "v1");
        let handed = tokio::time::timeout(Duration::from_secs(5), watch.reached(1))
            .await
            .expect("woken by the announcement made before the wait");
        assert_eq!(
            handed,
            Some("v1"),
            "the waiter gets what the change announced"
        );
    }

    #[tokio::test]
    async fn a_waiter_sleeps_through_versions_older_than_the_one_it_waits_for() {
        let changes: Changes<&str> = Changes::new();
        let mut watch = changes.watch("order-1");
        changes.announce("order-1", 2, "v2");
        changes.announce("order-1", 1, "v1"); // late and older: changes nothing
        assert!(
            tokio::time::timeout(Duration::from_millis(50), watch.reached(3))
                .await
                .is_err(),
            "woken by version 2 while waiting for 3"
        );
        changes.announce("order-1", 3, "v3");
        let handed = tokio::time::timeout(Duration::from_secs(5), watch.reached(3))
            .await
            .expect("woken by version 3");
        assert_eq!(handed, Some("v3"));
    }

    #[tokio::test]
    async fn only_the_waiters_of_the_announced_key_wake() {
        let changes: Changes<&str> = Changes::new();
        let mut other = changes.watch("order-2");
        changes.announce("order-1", 1, "v1");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), other.reached(1))
                .await
                .is_err(),
            "a waiter of another key was woken"
        );
    }

    #[tokio::test]
    async fn a_key_is_forgotten_with_its_last_waiter() {
        let changes: Changes<&str> = Changes::new();
        let first = changes.watch("order-1");
        let second = changes.watch("order-1");
        assert_eq!(changes.watched(), 1);
        drop(first);
        assert_eq!(changes.watched(), 1, "forgotten while a waiter remains");
        drop(second);
        assert_eq!(changes.watched(), 0);
        changes.announce("order-1", 1, "v1"); // nobody waits: nothing to do, nothing kept
        assert_eq!(changes.watched(), 0);
    }
}
