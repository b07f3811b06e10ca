//! Helpers shared by the platform tests: clients and a topic reader.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use faultline_system::platform::consumer::GroupConsumer;
use faultline_system::platform::lag;
use faultline_system::platform::ownership::{Ownership, OwnershipContext};
use faultline_system::stack::KafkaClient;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;

pub fn producer(kafka: &KafkaClient) -> anyhow::Result<FutureProducer> {
    Ok(kafka
        .config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?)
}

/// A consumer the way services create theirs: offsets stored only after processing.
pub fn service_consumer(
    kafka: &KafkaClient,
    group: &str,
    topics: &[&str],
) -> anyhow::Result<GroupConsumer> {
    owning_consumer(kafka, group, topics, Ownership::new())
}

/// [`service_consumer`] keeping whether it owns every partition in `ownership`.
pub fn owning_consumer(
    kafka: &KafkaClient,
    group: &str,
    topics: &[&str],
    ownership: Ownership,
) -> anyhow::Result<GroupConsumer> {
    let consumer: GroupConsumer = kafka
        .config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", lag::STATISTICS_INTERVAL)
        .create_with_context(OwnershipContext::new(ownership))?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// Reads `topic` from the start until `done` says the records so far are enough.
pub async fn read_until(
    kafka: &KafkaClient,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[OwnedMessage]) -> bool,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let consumer: StreamConsumer = kafka
        .config()
        .set(
            "group.id",
            format!("reader-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut stream = consumer.stream();
    let mut records = Vec::new();
    let deadline = Instant::now() + timeout;
    while !done(&records) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.next()).await {
            Ok(Some(message)) => records.push(message.context("reading")?.detach()),
            Ok(None) => bail!("the stream of {topic} ended"),
            Err(_) => bail!(
                "{topic}: condition not met within {timeout:?}; got {} records",
                records.len()
            ),
        }
    }
    Ok(records)
}

pub fn header<'a>(message: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}
