//! Whether this consumer group member owns every partition of what it subscribes to.
//!
//! Analytics' long-polls are woken by their own replica's projector ([`super::notify`]);
//! an order projected by another replica wakes nobody here, so a waiter also looks again
//! every [`super::notify::Changes::POLL`]. When this replica's projector owns every
//! partition of its topics no other replica projects anything, and those looks only cost
//! the database a query each (about one per checkout, measured with
//! `scripts/profile-saga`). [`OwnershipContext`] keeps [`Ownership`] up to date from the
//! group's rebalances, so the waiters can tell.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

/// Shared flag: does this member own all partitions of its subscription right now?
/// False until a rebalance assigned them all, and again from the moment any is revoked.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    everything: Arc<AtomicBool>,
}

impl Ownership {
    pub fn new() -> Ownership {
        Ownership::default()
    }

    /// True while this member owns every partition of its topics.
    pub fn owns_everything(&self) -> bool {
        self.everything.load(Ordering::Acquire)
    }

    fn set(&self, everything: bool) {
        self.everything.store(everything, Ordering::Release);
    }
}

/// A consumer context that tracks [`Ownership`] across rebalances.
#[derive(Debug, Clone, Default)]
pub struct OwnershipContext {
    ownership: Ownership,
}

impl OwnershipContext {
    pub fn new(ownership: Ownership) -> OwnershipContext {
        OwnershipContext { ownership }
    }
}

impl ClientContext for OwnershipContext {}

/// How long a rebalance waits for the topics' partition counts.
const METADATA_TIMEOUT: Duration = Duration::from_millis(500);

impl ConsumerContext for OwnershipContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        // Whatever comes next, partitions are about to move: not the sole owner meanwhile.
        self.ownership.set(false);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        let mut owned: HashMap<String, usize> = HashMap::new();
        for element in assigned.elements() {
            *owned.entry(element.topic().to_string()).or_default() += 1;
        }
        let Ok(subscription) = consumer.subscription() else {
            return;
        };
        let mut topics: Vec<String> = (subscription.elements().iter())
            .map(|element| element.topic().to_string())
            .collect();
        topics.dedup();
        // Unknown counts (metadata not answered in time) count as not owning everything:
        // the waiters then keep looking on their own, which is always correct.
        let everything = !topics.is_empty()
            && topics.iter().all(|topic| {
                consumer
                    .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                    .ok()
                    .and_then(|metadata| {
                        (metadata.topics().iter())
                            .find(|t| t.name() == topic)
                            .map(|t| t.partitions().len())
                    })
                    .is_some_and(|partitions| {
                        partitions > 0 && owned.get(topic).copied() == Some(partitions)
                    })
            });
        tracing::debug!(
            everything,
            ?owned,
            "partitions assigned: owner of all of them"
        );
        self.ownership.set(everything);
    }
}
