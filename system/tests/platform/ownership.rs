//! A consumer group member knows when it owns every partition of its topics (analytics'
//! long-polls then stop looking on their own), and stops believing it once another member
//! takes a share. The partition counts ownership is decided by are learned beside the
//! polling, never in a rebalance; a member assigned everything before it knows them learns
//! that it owns everything once it does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use faultline_system::platform::consumer::GroupConsumer;
use faultline_system::platform::ownership::{learn_partition_counts, Ownership};
use faultline_system::stack::{smoke::create_topic, Stack};
use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use crate::support;

/// Polls `consumer` (rebalances are served while polling) until `stop`.
fn drive(consumer: Arc<GroupConsumer>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()) => {}
            }
        }
    })
}

/// Waits up to 60 s for `condition`, naming `what` if it never holds.
async fn until(what: &str, condition: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        if Instant::now() >= deadline {
            bail!("not within 60 s: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub async fn a_member_knows_when_it_owns_every_partition(stack: Arc<Stack>) -> anyhow::Result<()> {
    let kafka = stack.endpoints().kafka_client();
    let topic = "ownership-test.events";
    create_topic(&kafka, topic, 3, 1).await?;
    let group = "ownership-test";

    let first = Ownership::new();
    let stop_first = CancellationToken::new();
    let first_consumer = Arc::new(support::owning_consumer(
        &kafka,
        group,
        &[topic],
        first.clone(),
    )?);
    let first_task = drive(first_consumer.clone(), stop_first.clone());
    until("the only member is assigned all 3 partitions", || {
        (first_consumer.assignment()).is_ok_and(|assigned| assigned.count() == 3)
    })
    .await?;
    if first.owns_everything() {
        bail!("owner of everything before the topic's partition count was known");
    }
    let first_counts = tokio::spawn(learn_partition_counts(
        first_consumer.clone(),
        stop_first.clone(),
    ));
    until("the only member owns all 3 partitions", || {
        first.owns_everything()
    })
    .await?;

    let second = Ownership::new();
    let stop_second = CancellationToken::new();
    let second_consumer = Arc::new(support::owning_consumer(
        &kafka,
        group,
        &[topic],
        second.clone(),
    )?);
    let second_counts = tokio::spawn(learn_partition_counts(
        second_consumer.clone(),
        stop_second.clone(),
    ));
    let second_task = drive(second_consumer, stop_second.clone());
    until("the first member gives up sole ownership", || {
        !first.owns_everything()
    })
    .await?;
    // Settled: 3 partitions between two members, neither owns everything.
    tokio::time::sleep(Duration::from_secs(5)).await;
    if first.owns_everything() || second.owns_everything() {
        bail!(
            "two members of one group, yet one owns everything (first {}, second {})",
            first.owns_everything(),
            second.owns_everything()
        );
    }

    // The second leaves (closing the consumer leaves the group): the first owns all again.
    stop_second.cancel();
    second_task.await?;
    second_counts.await?;
    until("the remaining member owns all 3 partitions again", || {
        first.owns_everything()
    })
    .await?;
    stop_first.cancel();
    first_task.await?;
    first_counts.await?;
    Ok(())
}
