//! A three-broker KRaft cluster under a broker crash: with replication factor 3,
//! min.insync.replicas 2 and acks=all, producing goes on after leader election and no
//! acknowledged message is lost. One cluster for the whole binary (the shared runner).
//! Set TEST_LOG=1 to see the stack's logs.

#![allow(clippy::unwrap_used)]

#[path = "../common/shared.rs"]
mod shared;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::stack::kafka::LocalKafka;
use faultline_system::stack::{KafkaClient, KafkaSpec, Stack, StackSpec};
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio::sync::Mutex;

const BROKERS: usize = 3;
const MESSAGES: usize = 6_000;
const KILL_AFTER_ACKS: usize = 1_500;
const PARTITIONS: i32 = 3;

impl shared::SharedHarness for Mutex<Stack> {
    async fn start() -> anyhow::Result<Mutex<Stack>> {
        let stack = Stack::start(StackSpec {
            kafka: KafkaSpec::Local(LocalKafka {
                brokers: BROKERS,
                ..LocalKafka::default()
            }),
            ready_timeout: Duration::from_secs(180),
            ..StackSpec::default()
        })
        .await?;
        Ok(Mutex::new(stack))
    }

    async fn stop(self) {
        self.into_inner().stop().await;
    }
}

fn main() -> ExitCode {
    shared::run(vec![(
        "killing_a_broker_mid_stream_loses_no_acknowledged_message",
        |stack| {
            Box::pin(killing_a_broker_mid_stream_loses_no_acknowledged_message(
                stack,
            ))
        },
    )])
}

async fn killing_a_broker_mid_stream_loses_no_acknowledged_message(
    stack: Arc<Mutex<Stack>>,
) -> anyhow::Result<()> {
    let kafka = stack.lock().await.endpoints().kafka_client();
    let bootstrap = kafka.bootstrap.clone();
    ensure!(
        bootstrap.split(',').count() == BROKERS,
        "bootstrap {bootstrap}"
    );
    let topic = format!("durable-{}", uuid::Uuid::new_v4().simple());
    let admin: AdminClient<DefaultClientContext> = kafka.config().create()?;
    let new_topic = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    for result in admin
        .create_topics(
            [&new_topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?
    {
        result.map_err(|(t, code)| anyhow::anyhow!("creating {t}: {code}"))?;
    }

    // The broker to kill: the leader of partition 0, so that an election must happen.
    let victim = partition_leader(&kafka, &topic, 0)?;

    let producer: FutureProducer = kafka
        .config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .create()?;
    let mut acknowledged: HashSet<usize> = HashSet::new();
    let mut acknowledged_after_kill = 0usize;
    let mut failed = 0usize;
    let mut killed_at: Option<Instant> = None;
    // Send in windows of 100 so that the kill lands while messages are in flight.
    for window in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
        let sends = window.iter().map(|&seq| {
            let producer = &producer;
            let topic = &topic;
            async move {
                let key = format!("k{}", seq % 31);
                let payload = seq.to_string();
                let outcome = producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&payload),
                        Duration::from_secs(60),
                    )
                    .await;
                (seq, outcome.is_ok())
            }
        });
        for (seq, ok) in futures::future::join_all(sends).await {
            if ok {
                acknowledged.insert(seq);
                if killed_at.is_some() {
                    acknowledged_after_kill += 1;
                }
            } else {
                failed += 1;
            }
        }
        if killed_at.is_none() && acknowledged.len() >= KILL_AFTER_ACKS {
            stack.lock().await.kafka_mut().kill_broker(victim)?;
            killed_at = Some(Instant::now());
        }
    }
    ensure!(killed_at.is_some(), "the broker was never killed");
    ensure!(
        acknowledged_after_kill > MESSAGES / 2,
        "producing did not go on after the kill: {acknowledged_after_kill} acknowledged after it, {failed} failed"
    );
    let new_leader = partition_leader(&kafka, &topic, 0)?;
    ensure!(
        new_leader != victim,
        "partition 0 is still led by the killed broker {victim}"
    );

    // Every acknowledged message must come back.
    let consumer: StreamConsumer = kafka
        .config()
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stream = consumer.stream();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !acknowledged.is_subset(&seen) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.next()).await {
            Ok(Some(message)) => {
                // librdkafka reports losing the killed broker's connection through the
                // stream; that is news, not a failure: keep reading until the deadline.
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        eprintln!("consumer: {error} (transient; reading on)");
                        continue;
                    }
                };
                let seq: usize =
                    std::str::from_utf8(message.payload().context("no payload")?)?.parse()?;
                seen.insert(seq);
            }
            Ok(None) => bail!("the consumer stream ended"),
            Err(_) => {
                let missing = acknowledged.difference(&seen).count();
                bail!(
                    "{missing} acknowledged messages never came back (of {})",
                    acknowledged.len()
                );
            }
        }
    }
    drop(stream);

    // The killed broker comes back on its ports and data, and the cluster lists it again.
    stack
        .lock()
        .await
        .kafka_mut()
        .restart_broker(victim, Duration::from_secs(120))
        .await?;
    Ok(())
}

/// Node id of the leader of `partition` of `topic`.
fn partition_leader(kafka: &KafkaClient, topic: &str, partition: i32) -> anyhow::Result<u32> {
    let consumer: BaseConsumer = kafka.config().create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let leader = metadata
            .topics()
            .first()
            .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
            .map(|p| p.leader());
        if let Some(leader) = leader.filter(|l| *l >= 0) {
            return Ok(leader as u32);
        }
        if Instant::now() >= deadline {
            bail!("partition {partition} of {topic} has no leader");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
