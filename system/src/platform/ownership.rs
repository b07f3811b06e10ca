//! Whether this consumer group member owns every partition of what it subscribes to.
//!
//! Analytics' long-polls are woken by their own replica's projector ([`super::notify`]);
//! an order projected by another replica wakes nobody here, so a waiter also looks again
//! every [`super::notify::Changes::POLL`]. When this replica's projector owns every
//! partition of its topics no other replica projects anything, and those looks only cost
//! the database a query each (about one per checkout, measured with
//! `scripts/profile-saga`). [`OwnershipContext`] keeps [`Ownership`] up to date from the
//! group's rebalances, so the waiters can tell.
//!
//! A rebalance callback runs where the consumer is polled, on an async worker, so it must
//! not wait on the network: the topics' partition counts are learned once beside it
//! ([`learn_partition_counts`]) and the callback only compares.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;

use super::lag::LagReporter;

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

/// What ownership is decided from, changed by rebalances and by learned counts.
#[derive(Debug, Default)]
struct Partitions {
    /// Each subscribed topic's partition count, once learned.
    counts: HashMap<String, usize>,
    /// The subscribed topics, as of the last rebalance or count learned.
    topics: Vec<String>,
    /// How many partitions of each topic the last rebalance assigned; `None` from the
    /// moment partitions start to move until they are assigned again.
    assigned: Option<HashMap<String, usize>>,
}

impl Partitions {
    /// Unknown counts count as not owning everything: the waiters then keep looking on
    /// their own, which is always correct.
    fn owns_everything(&self) -> bool {
        let Some(assigned) = &self.assigned else {
            return false;
        };
        !self.topics.is_empty()
            && self.topics.iter().all(|topic| {
                self.counts.get(topic).is_some_and(|&partitions| {
                    partitions > 0 && assigned.get(topic) == Some(&partitions)
                })
            })
    }
}

/// A consumer context that tracks [`Ownership`] across rebalances.
#[derive(Debug, Clone, Default)]
pub struct OwnershipContext {
    ownership: Ownership,
    partitions: Arc<Mutex<Partitions>>,
    /// Set by the consumer that runs on this context ([`Self::report_lag_to`]).
    lag: Arc<OnceLock<LagReporter>>,
}

impl OwnershipContext {
    pub fn new(ownership: Ownership) -> OwnershipContext {
        OwnershipContext {
            ownership,
            partitions: Arc::default(),
            lag: Arc::default(),
        }
    }

    /// Sends the lag in librdkafka's statistics to `reporter` (set once; later ones are
    /// ignored). The consumer needs `statistics.interval.ms` for any to come.
    pub fn report_lag_to(&self, reporter: LagReporter) {
        let _ = self.lag.set(reporter);
    }

    /// A std mutex, not a tokio one: nothing is awaited while it is held. A panic while
    /// it was held left plain values, each still meaningful, so poisoning is ignored.
    fn partitions(&self) -> MutexGuard<'_, Partitions> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes what ownership is decided from, and the flag with it (under the same lock,
    /// so a rebalance and a learned count cannot publish out of order).
    fn update(&self, change: impl FnOnce(&mut Partitions)) -> bool {
        let mut partitions = self.partitions();
        change(&mut partitions);
        let everything = partitions.owns_everything();
        self.ownership.set(everything);
        everything
    }
}

impl ClientContext for OwnershipContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(reporter) = self.lag.get() {
            reporter.report(statistics);
        }
    }
}

impl ConsumerContext for OwnershipContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        // Whatever comes next, partitions are about to move: not the sole owner meanwhile.
        self.update(|partitions| partitions.assigned = None);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        let mut owned: HashMap<String, usize> = HashMap::new();
        for element in assigned.elements() {
            *owned.entry(element.topic().to_string()).or_default() += 1;
        }
        // The subscription is local state: no round trip.
        let topics = subscribed(consumer);
        let everything = self.update(|partitions| {
            partitions.topics = topics;
            partitions.assigned = Some(owned.clone());
        });
        tracing::debug!(
            everything,
            ?owned,
            "partitions assigned: owner of all of them"
        );
    }
}

/// The topics `consumer` subscribes to (none if it cannot say).
fn subscribed<C: Consumer<OwnershipContext>>(consumer: &C) -> Vec<String> {
    consumer.subscription().map_or_else(
        |_| Vec::new(),
        |subscription| {
            (subscription.elements().iter())
                .map(|element| element.topic().to_string())
                .collect()
        },
    )
}

/// How long one metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait before asking again for counts the broker did not give yet (a topic
/// created a moment ago may not be in every broker's metadata).
const METADATA_RETRY: Duration = Duration::from_secs(1);

/// Learns the partition count of every topic `consumer` subscribes to, off the async
/// workers, asking again until each is known or `shutdown`; ownership is decided again
/// once they are, so a rebalance that came first counts too. Run it beside the loop that
/// polls `consumer`.
pub async fn learn_partition_counts<C>(consumer: Arc<C>, shutdown: CancellationToken)
where
    C: Consumer<OwnershipContext> + Send + Sync + 'static,
{
    loop {
        let asked = consumer.clone();
        let learned = tokio::task::spawn_blocking(move || partition_counts(asked.as_ref()));
        let complete = match learned.await {
            Ok((topics, counts)) => {
                let complete = !topics.is_empty() && topics.iter().all(|t| counts.contains_key(t));
                let everything = consumer.context().update(|partitions| {
                    partitions.topics = topics;
                    partitions.counts.extend(counts);
                });
                tracing::debug!(everything, complete, "partition counts learned");
                complete
            }
            Err(error) => {
                tracing::warn!(%error, "partition counts: metadata task failed");
                false
            }
        };
        if complete {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(METADATA_RETRY) => {}
        }
    }
}

/// The subscribed topics and the partition counts the broker gives for them (a topic it
/// does not answer for, or lists without partitions, is left out). Blocks on the network.
fn partition_counts<C: Consumer<OwnershipContext>>(
    consumer: &C,
) -> (Vec<String>, HashMap<String, usize>) {
    let topics = subscribed(consumer);
    let counts = (topics.iter())
        .filter_map(|topic| {
            let metadata = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .ok()?;
            let partitions = (metadata.topics().iter())
                .find(|t| t.name() == topic)
                .map(|t| t.partitions().len())
                .filter(|&partitions| partitions > 0)?;
            Some((topic.clone(), partitions))
        })
        .collect();
    (topics, counts)
}
