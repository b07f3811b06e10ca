//! Poison events: dead-lettered, and the consumer goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::platform::consumer::DEAD_LETTER_TOPIC;
use faultline_system::services::messages::ORDERS_EVENTS;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::Harness;

pub async fn undecodable_event_is_dead_lettered(h: Arc<Harness>) -> anyhow::Result<()> {
    let bootstrap = h
        .system
        .stack()
        .context("stack")?
        .endpoints()
        .kafka_bootstrap;
    let marker = format!("poison-{}", uuid::Uuid::new_v4().simple());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    producer
        .send(
            FutureRecord::to(ORDERS_EVENTS)
                .key(&marker)
                .payload(b"{ this is not an event envelope"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;

    // Events after the poison one are still projected.
    let user = h.user().await?;
    let (status, placed) = h
        .place_order(
            &user,
            "after-poison",
            json!([{ "product_id": 4, "quantity": 1 }]),
        )
        .await?;
    ensure!(status == StatusCode::ACCEPTED);
    h.terminal_view(&user, placed["id"].as_str().context("id")?)
        .await?;

    // And the poison record is in the dead-letter topic, saying who gave up on it and why.
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("dlq-reader-{marker}"))
        .set("auto.offset.reset", "earliest")
        .create()?;
    reader.subscribe(&[DEAD_LETTER_TOPIC])?;
    let mut stream = reader.stream();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut consumers = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(message)) = tokio::time::timeout(remaining, stream.next()).await else {
            break;
        };
        let message = message?;
        if message.key() != Some(marker.as_bytes()) {
            continue;
        }
        let header = |key: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|x| x.key == key).and_then(|x| x.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        ensure!(
            header("dlq.reason").is_some_and(|r| r.contains("not an event envelope")),
            "reason {:?}",
            header("dlq.reason")
        );
        consumers.push(header("dlq.consumer").unwrap_or_default());
        // Both consumers of orders.events (analytics and notifications) dead-letter it.
        if consumers.len() == 2 {
            break;
        }
    }
    consumers.sort();
    if consumers != ["analytics-projector", "notifications"] {
        bail!("dead letters of the poison record came from {consumers:?}");
    }
    Ok(())
}
