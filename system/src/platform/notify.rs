//! Changes announced inside the process, after they committed: analytics' projector
//! announces each order whose view it changed, and long-polls waiting for that order wake
//! at once.
//!
//! Why not PostgreSQL's `NOTIFY`: a transaction that issues it holds the server's global
//! notification lock from pre-commit to its end, WAL flush included, so every projecting
//! transaction queued behind the one before, one fsync at a time. A waiter on another
//! replica than the one that projected its order is not woken by this; it looks again
//! every [`Changes::POLL`] instead.

use std::time::Duration;

use tokio::sync::broadcast;

/// Keys of changed things (e.g. order ids), for every subscriber of this process.
#[derive(Debug, Clone)]
pub struct Changes {
    sender: broadcast::Sender<String>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes::new()
    }
}

impl Changes {
    /// How long a waiter waits before looking again without being woken (a change made
    /// by another replica).
    pub const POLL: Duration = Duration::from_millis(100);

    pub fn new() -> Changes {
        let (sender, _) = broadcast::channel(4096);
        Changes { sender }
    }

    /// Wakes the subscribers: `key` changed and the change committed.
    pub fn announce(&self, key: String) {
        // No receiver is fine: nobody is waiting.
        let _ = self.sender.send(key);
    }

    /// Subscribe before looking, so a change between the look and the wait is not missed.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }
}
