//! Poison events: dead-lettered, and the consumer goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::platform::consumer::DEAD_LETTER_TOPIC;
use faultline_system::services::messages::ORDERS_EVENTS;
use faultline_system::services::ServiceKind;
use faultline_system::stack::KafkaClient;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::Harness;

/// Reads `topic` from the start until `wanted` records were found by `matches`.
async fn find_records(
    kafka: &KafkaClient,
    topic: &str,
    wanted: usize,
    matches: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    let reader: StreamConsumer = kafka
        .config()
        .set(
            "group.id",
            format!("reader-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .create()?;
    reader.subscribe(&[topic])?;
    let mut stream = reader.stream();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = Vec::new();
    while found.len() < wanted {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.next()).await {
            Ok(Some(message)) => {
                let message = message?;
                if matches(&message) {
                    found.push(message.detach());
                }
            }
            _ => bail!(
                "{} of {wanted} records found in {topic} within 30 s",
                found.len()
            ),
        }
    }
    Ok(found)
}

fn header(message: &rdkafka::message::OwnedMessage, key: &str) -> Option<String> {
    message
        .headers()
        .and_then(|h| h.iter().find(|x| x.key == key).and_then(|x| x.value))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub async fn ingest_acknowledges_only_what_kafka_has(h: Arc<Harness>) -> anyhow::Result<()> {
    let user = h.user().await?;
    let source = format!("sensor-{}", uuid::Uuid::new_v4().simple());
    let batch: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({ "source": source, "seq": i, "temperature": 20.5 }))
        .collect();
    let response = h
        .http
        .post(h.api("/ingest/events"))
        .bearer_auth(&user.token)
        .json(&batch)
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::ACCEPTED,
        "{}",
        response.status()
    );
    let body: serde_json::Value = response.json().await?;
    ensure!(body["accepted"] == 100, "{body}");
    let kafka = h
        .system
        .stack()
        .context("stack")?
        .endpoints()
        .kafka_client();
    let records = find_records(
        &kafka,
        faultline_system::services::messages::INGEST_TELEMETRY,
        100,
        |m| m.key() == Some(source.as_bytes()),
    )
    .await?;
    let seqs: Vec<i64> = records
        .iter()
        .filter_map(|r| {
            serde_json::from_slice::<serde_json::Value>(r.payload()?).ok()?["seq"].as_i64()
        })
        .collect();
    ensure!(
        seqs == (0..100).collect::<Vec<_>>(),
        "one source's events out of order or missing: {seqs:?}"
    );
    let empty = h
        .http
        .post(h.api("/ingest/events"))
        .bearer_auth(&user.token)
        .json(&json!([]))
        .send()
        .await?;
    ensure!(
        empty.status() == StatusCode::BAD_REQUEST,
        "empty batch: {}",
        empty.status()
    );
    let not_a_batch = h
        .http
        .post(h.api("/ingest/events"))
        .bearer_auth(&user.token)
        .json(&json!({"a": 1}))
        .send()
        .await?;
    ensure!(
        not_a_batch.status() == StatusCode::BAD_REQUEST,
        "object instead of array: {}",
        not_a_batch.status()
    );
    Ok(())
}

pub async fn notifications_reach_the_webhook_and_dead_letter_after_retries(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    // Delivered: a completed order is announced on the webhook.
    let user = h.user().await?;
    let (status, placed) = h
        .place_order(
            &user,
            "notify-me",
            json!([{ "product_id": 6, "quantity": 1 }]),
        )
        .await?;
    ensure!(status == StatusCode::ACCEPTED);
    let order_id = placed["id"].as_str().context("id")?.to_string();
    let notification = h
        .webhook
        .wait_for(Duration::from_secs(30), |n| {
            n["kind"] == "order.completed"
                && n["message"].as_str().is_some_and(|m| m.contains(&order_id))
        })
        .await?;
    ensure!(
        notification["subject"] == user.id.as_str(),
        "{notification}"
    );

    // Not delivered: the webhook fails every attempt, so the welcome of a new user is
    // dead-lettered after the configured three attempts, and the consumer goes on.
    h.webhook.set_failing(true);
    let outcome = async {
        let unlucky = h.user().await?;
        let kafka = h
            .system
            .stack()
            .context("stack")?
            .endpoints()
            .kafka_client();
        let dead = find_records(&kafka, DEAD_LETTER_TOPIC, 1, |m| {
            m.key() == Some(unlucky.id.as_bytes())
        })
        .await?;
        anyhow::Ok(dead)
    }
    .await;
    h.webhook.set_failing(false);
    let dead = outcome?;
    let reason = header(&dead[0], "dlq.reason").unwrap_or_default();
    ensure!(
        reason.contains("webhook gave up after 3 attempts"),
        "reason: {reason}"
    );
    ensure!(header(&dead[0], "dlq.consumer").as_deref() == Some("notifications"));

    // And the consumer went on: the next user's welcome arrives.
    let next = h.user().await?;
    h.webhook
        .wait_for(Duration::from_secs(30), |n| {
            n["kind"] == "user.welcome" && n["subject"] == next.id.as_str()
        })
        .await?;
    Ok(())
}

/// The value of the sample of `/metrics` text whose line starts with `series` and holds
/// every one of `labels`.
fn sample(metrics: &str, series: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(series))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

pub async fn notifications_time_each_event_they_handle(h: Arc<Harness>) -> anyhow::Result<()> {
    let url = h
        .system
        .service_url(ServiceKind::Notifications, 1)
        .context("notifications' URL")?;
    let read = || h.metrics(&url);
    let consumer = "consumer=\"notifications\"";
    let count = |text: &str| sample(text, "faultline_event_handling_seconds_count", &[consumer]);
    let before = count(&read().await?).unwrap_or(0.0);

    // A completed order: its created and updated events reach notifications.
    let user = h.user().await?;
    let (status, placed) = h
        .place_order(
            &user,
            "timed-notification",
            json!([{ "product_id": 11, "quantity": 1 }]),
        )
        .await?;
    ensure!(status == StatusCode::ACCEPTED, "{status}: {placed}");
    let order_id = placed["id"].as_str().context("id")?;
    let view = h.terminal_view(&user, order_id).await?;
    ensure!(view["status"] == "COMPLETED", "view {view}");

    // The consumer commits after the view shows the order: wait for its count to move.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = read().await?;
        if count(&text).is_some_and(|after| after > before) {
            break text;
        }
        ensure!(
            Instant::now() < deadline,
            "no event handled by notifications was timed in /metrics within 30 s:\n{}",
            (text.lines())
                .filter(|l| l.contains("faultline_event"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A whole Prometheus histogram: buckets up to +Inf holding every event, and a sum.
    let handled = count(&text).context("count")?;
    let inf = sample(
        &text,
        "faultline_event_handling_seconds_bucket",
        &[consumer, "le=\"+Inf\""],
    );
    ensure!(inf == Some(handled), "+Inf bucket {inf:?}, count {handled}");
    let sum = sample(&text, "faultline_event_handling_seconds_sum", &[consumer])
        .context("no faultline_event_handling_seconds_sum")?;
    ensure!(sum > 0.0, "the events took {sum} s in all");
    let finite_buckets = (text.lines())
        .filter(|l| {
            l.starts_with("faultline_event_handling_seconds_bucket") && l.contains(consumer)
        })
        .count();
    ensure!(finite_buckets > 10, "{finite_buckets} buckets");
    Ok(())
}

pub async fn undecodable_event_is_dead_lettered(h: Arc<Harness>) -> anyhow::Result<()> {
    let kafka = h
        .system
        .stack()
        .context("stack")?
        .endpoints()
        .kafka_client();
    let marker = format!("poison-{}", uuid::Uuid::new_v4().simple());
    let producer: FutureProducer = kafka.config().create()?;
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

    // And the poison record is in the dead-letter topic, saying who gave up on it and why:
    // both consumers of orders.events (analytics and notifications) dead-letter it.
    let dead = find_records(&kafka, DEAD_LETTER_TOPIC, 2, |m| {
        m.key() == Some(marker.as_bytes())
    })
    .await?;
    let mut consumers = Vec::new();
    for record in &dead {
        let reason = header(record, "dlq.reason");
        ensure!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("not an event envelope")),
            "reason {reason:?}"
        );
        consumers.push(header(record, "dlq.consumer").unwrap_or_default());
    }
    consumers.sort();
    if consumers != ["analytics-projector", "notifications"] {
        bail!("dead letters of the poison record came from {consumers:?}");
    }
    Ok(())
}
