//! Keyed messages through the real broker: none lost, none duplicated, order kept within
//! each partition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::stack::smoke::create_topic;
use faultline_system::stack::Stack;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

const MESSAGES: usize = 10_000;
const KEYS: usize = 257;
const PARTITIONS: i32 = 6;

pub async fn ten_thousand_keyed_messages_come_back_in_order(
    stack: Arc<Stack>,
) -> anyhow::Result<()> {
    let bootstrap = stack.endpoints().kafka_client();
    let topic = format!("roundtrip-{}", uuid::Uuid::new_v4().simple());
    create_topic(&bootstrap, &topic, PARTITIONS, 1).await?;

    let producer: FutureProducer = bootstrap
        .config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    // Enqueue strictly in sequence order (send_result does not wait), then await the acks.
    let mut deliveries = Vec::with_capacity(MESSAGES);
    for seq in 0..MESSAGES {
        let key = format!("k{}", seq % KEYS);
        let payload = seq.to_string();
        let delivery = producer
            .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
            .map_err(|(e, _)| anyhow::anyhow!("enqueueing message {seq}: {e}"))?;
        deliveries.push(delivery);
    }
    // Where each message landed, by partition, in offset order.
    let mut produced_by_partition: HashMap<i32, Vec<(i64, usize)>> = HashMap::new();
    for (seq, delivery) in deliveries.into_iter().enumerate() {
        let delivered = tokio::time::timeout(Duration::from_secs(60), delivery)
            .await
            .context("waiting for an acknowledgement")?
            .context("delivery future cancelled")?;
        let (partition, offset) = match delivered {
            Ok(delivery) => (delivery.partition, delivery.offset),
            Err((error, _)) => bail!("message {seq} was not acknowledged: {error}"),
        };
        produced_by_partition
            .entry(partition)
            .or_default()
            .push((offset, seq));
    }
    ensure!(
        produced_by_partition.len() == PARTITIONS as usize,
        "keys spread over {} of {PARTITIONS} partitions",
        produced_by_partition.len()
    );

    let consumer: StreamConsumer = bootstrap
        .config()
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut consumed_by_partition: HashMap<i32, Vec<usize>> = HashMap::new();
    let mut stream = consumer.stream();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut consumed = 0;
    while consumed < MESSAGES {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(remaining, stream.next()).await {
            Ok(Some(message)) => message?,
            Ok(None) => bail!("the consumer stream ended after {consumed} messages"),
            Err(_) => bail!("only {consumed} of {MESSAGES} messages came back within 90 s"),
        };
        let seq: usize =
            std::str::from_utf8(message.payload().context("a message without payload")?)?
                .parse()?;
        consumed_by_partition
            .entry(message.partition())
            .or_default()
            .push(seq);
        consumed += 1;
    }

    for (partition, mut produced) in produced_by_partition {
        produced.sort_unstable();
        let expected: Vec<usize> = produced.iter().map(|(_, seq)| *seq).collect();
        let got = consumed_by_partition.remove(&partition).unwrap_or_default();
        ensure!(
            got == expected,
            "partition {partition}: consumed {} messages, expected {} in offset order",
            got.len(),
            expected.len()
        );
        // Enqueued in sequence order, so within a partition sequence numbers only grow.
        ensure!(
            expected.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: the broker's offset order differs from the send order"
        );
    }
    ensure!(
        consumed_by_partition.is_empty(),
        "messages came back from partitions never written"
    );
    Ok(())
}
