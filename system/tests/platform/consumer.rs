//! The idempotent consumer: each event applied once, in one transaction with its dedup
//! record; poison records dead-lettered without stopping the consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use faultline_system::platform::consumer::{
    EventConsumer, EventHandler, HandleError, DEAD_LETTER_TOPIC, PROCESSED_EVENTS_SCHEMA,
};
use faultline_system::platform::envelope::Envelope;
use faultline_system::platform::metrics::Metrics;
use faultline_system::platform::migrate::{self, Migration};
use faultline_system::platform::outbox::OutboxTx;
use faultline_system::stack::{smoke::create_topic, Stack};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::support;

/// Counts `counter.incremented` v1 events per key and passes over `counter.noted`;
/// anything else is poison.
struct Counter;

impl EventHandler for Counter {
    fn passes_over(&self, event: &Envelope) -> bool {
        event.event_type == "counter.noted"
    }

    async fn handle(&self, tx: &OutboxTx<'_>, event: &Envelope) -> Result<(), HandleError> {
        if event.event_type != "counter.incremented" || event.version != 1 {
            return Err(HandleError::Poison(format!(
                "unknown event {} v{}",
                event.event_type, event.version
            )));
        }
        tx.execute(
            "INSERT INTO counters (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = counters.n + 1",
            &[&event.key],
        )
        .await?;
        Ok(())
    }
}

pub async fn applies_each_event_once_and_dead_letters_what_it_cannot_read(
    stack: Arc<Stack>,
) -> anyhow::Result<()> {
    let url = stack.create_database("consumer_test").await?;
    let bootstrap = stack.endpoints().kafka_client();
    let topic = "consumer-test.events";
    create_topic(&bootstrap, topic, 1, 1).await?;
    let pool = migrate::pool(&url, 4)?;
    migrate::migrate(
        &mut *pool.get().await?,
        "consumer_test",
        &[
            Migration {
                version: 1,
                name: "processed events",
                sql: PROCESSED_EVENTS_SCHEMA,
            },
            Migration {
                version: 2,
                name: "counters",
                sql: "CREATE TABLE counters (key TEXT PRIMARY KEY, n INT NOT NULL)",
            },
        ],
    )
    .await?;

    let producer = support::producer(&bootstrap)?;
    let send = |key: &'static str, bytes: Vec<u8>| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(key).payload(&bytes),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("{e}"))
        }
    };
    let a = Envelope::new("counter.incremented", 1, "a", serde_json::json!({}));
    let b = Envelope::new("counter.incremented", 1, "b", serde_json::json!({}));
    let from_the_future = Envelope::new("counter.incremented", 99, "a", serde_json::json!({}));
    let noted = Envelope::new("counter.noted", 1, "b", serde_json::json!({}));
    let c = Envelope::new("counter.incremented", 1, "c", serde_json::json!({}));
    send("a", a.to_bytes()).await?;
    send("a", a.to_bytes()).await?; // the same event again: a redelivery
    send("b", b.to_bytes()).await?;
    send("x", b"\x00 this is not an envelope".to_vec()).await?;
    send("a", from_the_future.to_bytes()).await?;
    send("b", noted.to_bytes()).await?;
    send("c", c.to_bytes()).await?;

    let metrics = Metrics::new("consumer_test");
    let shutdown = CancellationToken::new();
    let consumer = EventConsumer::new(
        "counter",
        support::service_consumer(&bootstrap, "consumer-test", &[topic])?,
        producer.clone(),
        pool.clone(),
        Counter,
        metrics.clone(),
    );
    let task = tokio::spawn(consumer.run(shutdown.clone()));

    // c is last: once it is applied, everything before it was handled.
    let client = pool.get().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = client
            .query_opt("SELECT n FROM counters WHERE key = 'c'", &[])
            .await?;
        if row.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the event after the poison records was never applied");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (key, expected) in [("a", 1), ("b", 1), ("c", 1)] {
        let n: i32 = client
            .query_one("SELECT n FROM counters WHERE key = $1", &[&key])
            .await?
            .get(0);
        ensure!(n == expected, "counter {key} is {n}, expected {expected}");
    }
    let dead = support::read_until(
        &bootstrap,
        DEAD_LETTER_TOPIC,
        Duration::from_secs(30),
        |records| {
            records
                .iter()
                .filter(|r| support::header(r, "dlq.source.topic") == Some(topic))
                .count()
                >= 2
        },
    )
    .await?;
    let ours: Vec<_> = dead
        .iter()
        .filter(|r| support::header(r, "dlq.source.topic") == Some(topic))
        .collect();
    ensure!(ours.len() == 2, "{} dead letters, expected 2", ours.len());
    ensure!(
        support::header(ours[0], "dlq.reason").is_some_and(|r| r.contains("not an event envelope"))
    );
    ensure!(support::header(ours[1], "dlq.reason").is_some_and(|r| r.contains("v99")));
    ensure!(support::header(ours[0], "dlq.consumer") == Some("counter"));
    ensure!(
        metrics
            .events_consumed
            .with_label_values(&["counter", "duplicate"])
            .get()
            == 1
    );
    // Passed over: counted, but no transaction recorded its id.
    ensure!(
        metrics
            .events_consumed
            .with_label_values(&["counter", "passed_over"])
            .get()
            == 1
    );
    let recorded: i64 = client
        .query_one(
            "SELECT count(*) FROM processed_events WHERE event_id = $1",
            &[&noted.id],
        )
        .await?
        .get(0);
    ensure!(recorded == 0, "the passed-over event's id was recorded");

    // The lag reporter saw the partition, and it is caught up.
    let caught_up = format!("faultline_consumer_lag{{consumer=\"counter\",partition=\"0\",topic=\"{topic}\",service=\"consumer_test\"}} 0");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !metrics.render().contains(&caught_up) {
        if Instant::now() >= deadline {
            bail!(
                "no caught-up consumer_lag series ({caught_up}) in:\n{}",
                metrics.render()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    shutdown.cancel();
    task.await??;

    // The group's committed position is past the last record (7 were sent), so a restart
    // would not read any of them again.
    let group = support::service_consumer(&bootstrap, "consumer-test", &[topic])?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions.add_partition(topic, 0);
    let committed = rdkafka::consumer::Consumer::committed_offsets(
        &group,
        partitions,
        Duration::from_secs(10),
    )?;
    let offset = committed.find_partition(topic, 0).map(|p| p.offset());
    ensure!(
        offset == Some(rdkafka::Offset::Offset(7)),
        "committed offset {offset:?}, expected 7"
    );
    Ok(())
}
