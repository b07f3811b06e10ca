//! The outbox relay: what commits is published, in order; what rolls back never is.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use faultline_system::platform::envelope::Envelope;
use faultline_system::platform::metrics::Metrics;
use faultline_system::platform::migrate::{self, Migration};
use faultline_system::platform::outbox::{self, OutboxRelay, OutboxTx, OUTBOX_SCHEMA};
use faultline_system::stack::{smoke::create_topic, Stack};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use crate::support;

pub async fn publishes_committed_events_in_order_and_never_rolled_back_ones(
    stack: Arc<Stack>,
) -> anyhow::Result<()> {
    let url = stack.create_database("outbox_test").await?;
    let bootstrap = stack.endpoints().kafka_client();
    let topic = "outbox-test.events";
    create_topic(&bootstrap, topic, 3, 1).await?;
    let pool = migrate::pool(&url, 4)?;
    let mut client = pool.get().await?;
    let schema = [Migration {
        version: 1,
        name: "outbox",
        sql: OUTBOX_SCHEMA,
    }];
    migrate::migrate(&mut client, "outbox_test", &schema).await?;
    // Migrating again applies nothing.
    ensure!(migrate::migrate(&mut client, "outbox_test", &schema)
        .await?
        .is_empty());

    let metrics = Metrics::new("outbox_test");
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(
        "outbox_test",
        &url,
        support::producer(&bootstrap)?,
        metrics.clone(),
    );
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));

    // 10 transactions of 20 events for one key; one more transaction rolls back.
    let mut sent = Vec::new();
    for batch in 0..10 {
        let tx = OutboxTx::begin(&mut client).await?;
        for i in 0..20 {
            let seq = batch * 20 + i;
            let event = Envelope::new(
                "test.counted",
                1,
                "the-key",
                serde_json::json!({ "seq": seq }),
            );
            sent.push(event.id);
            outbox::enqueue(&tx, topic, event);
        }
        tx.commit().await?;
        if batch == 4 {
            let tx = OutboxTx::begin(&mut client).await?;
            let ghost = Envelope::new("test.ghost", 1, "the-key", serde_json::json!({ "seq": -1 }));
            outbox::enqueue(&tx, topic, ghost);
            tx.rollback().await?;
        }
    }
    let records = support::read_until(&bootstrap, topic, Duration::from_secs(60), |records| {
        records.len() >= sent.len()
    })
    .await?;
    let received: Vec<Envelope> = records
        .iter()
        .map(|r| Envelope::decode(r.payload(), r.headers()))
        .collect::<Result<_, _>>()?;
    ensure!(
        received.iter().all(|e| e.event_type == "test.counted"),
        "a rolled-back event was published"
    );
    let ids: Vec<_> = received.iter().map(|e| e.id).collect();
    ensure!(
        ids == sent,
        "events came out of order or duplicated: {} received",
        ids.len()
    );

    let unpublished: i64 = client
        .query_one(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            &[],
        )
        .await?
        .get(0);
    ensure!(
        unpublished == 0,
        "{unpublished} events still unpublished after Kafka acknowledged them"
    );
    ensure!(metrics.outbox_published.get() == sent.len() as u64);
    shutdown.cancel();
    relay_task.await?;
    Ok(())
}

/// A transaction can take its `seq` before another's and commit after it. The relay reads
/// on from the highest `seq` it sent while batches are in flight; the early row must still
/// be published once it commits.
pub async fn an_event_committed_after_a_later_one_is_still_published(
    stack: Arc<Stack>,
) -> anyhow::Result<()> {
    let url = stack.create_database("outbox_late").await?;
    let bootstrap = stack.endpoints().kafka_client();
    let topic = "outbox-late.events";
    create_topic(&bootstrap, topic, 1, 1).await?;
    let pool = migrate::pool(&url, 4)?;
    let schema = [Migration {
        version: 1,
        name: "outbox",
        sql: OUTBOX_SCHEMA,
    }];
    let mut client = pool.get().await?;
    migrate::migrate(&mut client, "outbox_late", &schema).await?;
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(
        "outbox_late",
        &url,
        support::producer(&bootstrap)?,
        Metrics::new("outbox_late"),
    );
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));

    // Takes its seq first, and holds it uncommitted.
    let mut early_client = pool.get().await?;
    let early = early_client.transaction().await?;
    let early_id = uuid::Uuid::new_v4();
    early
        .execute(
            "INSERT INTO outbox (event_id, topic, key, event_type, version, payload, occurred_at)
             VALUES ($1, $2, 'k', 'test.early', 1, $3, now())",
            &[&early_id, &topic, &serde_json::json!({})],
        )
        .await?;
    // A later seq commits and is published: the relay has read past the early one.
    let mut late_client = pool.get().await?;
    let tx = OutboxTx::begin(&mut late_client).await?;
    outbox::enqueue(
        &tx,
        topic,
        Envelope::new("test.late", 1, "k", serde_json::json!({})),
    );
    tx.commit().await?;
    support::read_until(&bootstrap, topic, Duration::from_secs(60), |records| {
        !records.is_empty()
    })
    .await?;
    early.commit().await?;
    let records = support::read_until(&bootstrap, topic, Duration::from_secs(60), |records| {
        records.len() >= 2
    })
    .await?;
    let types: Vec<String> = records
        .iter()
        .map(|r| Envelope::decode(r.payload(), r.headers()).map(|e| e.event_type))
        .collect::<Result<_, _>>()?;
    ensure!(
        types == ["test.late", "test.early"],
        "published, in order: {types:?}"
    );
    shutdown.cancel();
    relay_task.await?;
    Ok(())
}
