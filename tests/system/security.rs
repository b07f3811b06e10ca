//! What the running system refuses: Kafka clients outside their ACLs or without valid
//! credentials, a service's database role in another service's database, and operational
//! endpoints asked through the gateway. Each refusal is checked beside what the same
//! identity may do, so a test fails if the refusal came from something else.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use faultline_system::services::messages::{INVENTORY_COMMANDS, INVENTORY_REPLIES};
use faultline_system::services::ServiceKind;
use faultline_system::stack::kafka::listed_brokers;
use faultline_system::stack::{postgres, KafkaAuth, KafkaClient};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;

use crate::support::Harness;

fn kafka_of(h: &Harness, service: &str) -> anyhow::Result<KafkaClient> {
    let client = h
        .system
        .stack()
        .context("stack")?
        .kafka()
        .service_client(service);
    ensure!(client.auth.is_some(), "{service} has no Kafka principal");
    Ok(client)
}

/// The error code of a produce to `topic` as `kafka`, `None` when it was acknowledged.
async fn produce_error(
    kafka: &KafkaClient,
    topic: &str,
) -> anyhow::Result<Option<RDKafkaErrorCode>> {
    let producer: FutureProducer = kafka.config().set("message.timeout.ms", "15000").create()?;
    let outcome = producer
        .send(
            FutureRecord::to(topic)
                .key("security-test")
                .payload("not an event"),
            Duration::from_secs(15),
        )
        .await;
    match outcome {
        Ok(_) => Ok(None),
        Err((KafkaError::MessageProduction(code), _)) => Ok(Some(code)),
        Err((other, _)) => bail!("producing to {topic}: {other}"),
    }
}

pub async fn orders_principal_cannot_produce_to_inventory_topics(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let orders = kafka_of(&h, "orders")?;
    // Inventory's replies, and a topic nobody was granted: refused by authorization, which
    // also shows that orders' credentials were accepted.
    for topic in [INVENTORY_REPLIES, "inventory.events"] {
        let code = produce_error(&orders, topic).await?;
        ensure!(
            code == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
            "orders producing to {topic}: {code:?}"
        );
    }
    Ok(())
}

pub async fn a_consumer_in_a_group_not_its_own_is_refused(h: Arc<Harness>) -> anyhow::Result<()> {
    let orders = kafka_of(&h, "orders")?;
    // Orders may read inventory's replies, but only in groups named after itself.
    let group = format!("analytics-intruder-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer = orders
        .config()
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[INVENTORY_REPLIES])?;
    // The first thing the stream yields: the refusal, before any record.
    let mut stream = consumer.stream();
    match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        Ok(Some(Err(KafkaError::MessageConsumption(
            RDKafkaErrorCode::GroupAuthorizationFailed,
        )))) => Ok(()),
        Ok(Some(Err(other))) => bail!("group {group}: {other}"),
        Ok(Some(Ok(_))) => bail!("orders read inventory's replies in group {group}"),
        Ok(None) | Err(_) => bail!("group {group} was not refused within 30 s"),
    }
}

pub async fn anonymous_and_wrong_password_clients_are_refused(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let orders = kafka_of(&h, "orders")?;
    listed_brokers(orders.clone())
        .await
        .map_err(|e| anyhow::anyhow!("orders' own credentials: {e}"))?;
    let anonymous = KafkaClient::new(orders.bootstrap.clone(), None);
    let wrong = KafkaClient::new(
        orders.bootstrap.clone(),
        Some(KafkaAuth::new("orders", "not-the-password")),
    );
    for (who, client) in [("anonymous", anonymous), ("a wrong password", wrong)] {
        if let Ok(count) = listed_brokers(client).await {
            bail!("{who} listed {count} brokers");
        }
    }
    // Nor can a wrong password produce where orders may.
    let wrong = KafkaClient::new(
        orders.bootstrap.clone(),
        Some(KafkaAuth::new("orders", "not-the-password")),
    );
    let code = produce_error(&wrong, INVENTORY_COMMANDS).await?;
    ensure!(
        code.is_some(),
        "a wrong password produced to {INVENTORY_COMMANDS}"
    );
    Ok(())
}

pub async fn orders_role_cannot_connect_to_the_payments_database(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let orders_url = h
        .system
        .service_database_url(ServiceKind::Orders)
        .context("orders' database URL")?;
    ensure!(
        !orders_url.contains("//faultline@"),
        "orders connects as the admin: {orders_url}"
    );
    let own = postgres::connect(orders_url)
        .await
        .map_err(|e| anyhow::anyhow!("orders' role in its own database: {e}"))?;
    own.query_one("SELECT count(*) FROM orders", &[]).await?;

    let payments_database = h
        .system
        .database_urls
        .get(&ServiceKind::Payments)
        .context("payments' database")?
        .rsplit('/')
        .next()
        .context("database name")?
        .to_string();
    let (base, _) = orders_url.rsplit_once('/').context("orders' URL")?;
    let intruder = format!("{base}/{payments_database}");
    match postgres::connect(&intruder).await {
        Ok(client) => {
            let read = client.query("SELECT * FROM payments LIMIT 1", &[]).await;
            bail!("orders' role connected to the payments database (read: {read:?})");
        }
        Err(error) => ensure!(
            error.contains("permission denied"),
            "refused for another reason: {error}"
        ),
    }
    // Without a password, orders' role is refused even its own database.
    let host_and_database = orders_url.split_once('@').context("credentials")?.1;
    let without_password = format!("postgres://orders@{host_and_database}");
    ensure!(
        postgres::connect(&without_password).await.is_err(),
        "orders' role connected without its password"
    );
    Ok(())
}

pub async fn metrics_and_admin_are_not_reachable_through_the_gateway(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let gateway = &h.system.gateway_url;
    for path in [
        "/api/orders/metrics",
        "/api/users/metrics",
        "/api/payments/admin/behaviour",
        "/admin/behaviour",
    ] {
        let response = h.http.get(format!("{gateway}{path}")).send().await?;
        let status = response.status();
        let body = response.text().await?;
        ensure!(
            status != StatusCode::OK || !(body.contains("# TYPE") || body.contains("fail_rate")),
            "{path} through the gateway answered {status}: {body:.200}"
        );
    }
    // The services themselves still serve both.
    let payments = h
        .system
        .service_url(ServiceKind::Payments, 1)
        .context("payments")?;
    for path in ["/metrics", "/admin/behaviour"] {
        h.http
            .get(format!("{payments}{path}"))
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("payments {path}"))?;
    }
    Ok(())
}
