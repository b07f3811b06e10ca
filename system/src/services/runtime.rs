//! What a service process holds once it started: its database pool (migrated), a Kafka
//! producer, its metrics, and helpers to start its outbox relay and consumers.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::platform::consumer::{EventConsumer, EventHandler, DEAD_LETTER_TOPIC};
use crate::platform::http::ReadinessProbe;
use crate::platform::metrics::Metrics;
use crate::platform::migrate::{self, Migration};
use crate::platform::outbox::OutboxRelay;

/// Why a service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{service}: {what} is required (flag --{flag} or env {env})")]
    Missing {
        service: String,
        what: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error("{service}: database: {source}")]
    Database {
        service: String,
        #[source]
        source: migrate::DbError,
    },
    #[error("{service}: database connection: {reason}")]
    Connect { service: String, reason: String },
    #[error("{service}: Kafka: {reason}")]
    Kafka { service: String, reason: String },
    #[error("{service}: Redis: {reason}")]
    Redis { service: String, reason: String },
    #[error("{service}: HTTP server: {source}")]
    Http {
        service: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{service}: {reason}")]
    Invalid { service: String, reason: String },
}

/// The infrastructure of one service process.
#[derive(Clone)]
pub struct Platform {
    pub service: &'static str,
    pub pool: Pool,
    pub producer: FutureProducer,
    pub metrics: Metrics,
    pub bootstrap: String,
    pub database_url: String,
}

impl Platform {
    /// Connects, migrates the service's schema and makes sure its topics exist.
    pub async fn start(
        service: &'static str,
        database_url: &str,
        bootstrap: &str,
        migrations: &[Migration],
        topics: &[&str],
    ) -> Result<Platform, ServiceError> {
        let database = |source| ServiceError::Database {
            service: service.to_string(),
            source,
        };
        let pool = migrate::pool(database_url, 16).map_err(database)?;
        let mut client = pool.get().await.map_err(|e| ServiceError::Connect {
            service: service.to_string(),
            reason: e.to_string(),
        })?;
        let applied = migrate::migrate(&mut client, service, migrations)
            .await
            .map_err(database)?;
        if !applied.is_empty() {
            tracing::info!(service, ?applied, "migrated");
        }
        drop(client);
        ensure_topics(bootstrap, topics)
            .await
            .map_err(|reason| ServiceError::Kafka {
                service: service.to_string(),
                reason,
            })?;
        let producer = producer(bootstrap).map_err(|reason| ServiceError::Kafka {
            service: service.to_string(),
            reason,
        })?;
        Ok(Platform {
            service,
            pool,
            producer,
            metrics: Metrics::new(service),
            bootstrap: bootstrap.to_string(),
            database_url: database_url.to_string(),
        })
    }

    /// Starts the outbox relay of this service's database.
    pub fn spawn_relay(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let relay = OutboxRelay::new(
            self.service,
            &self.database_url,
            self.producer.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(relay.run(shutdown))
    }

    /// Starts an idempotent consumer named `name` (also its consumer group) on `topics`.
    pub fn spawn_consumer<H: EventHandler>(
        &self,
        name: &str,
        topics: &[&str],
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, ServiceError> {
        let kafka = |e: rdkafka::error::KafkaError| ServiceError::Kafka {
            service: self.service.to_string(),
            reason: e.to_string(),
        };
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", name)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .map_err(kafka)?;
        consumer.subscribe(topics).map_err(kafka)?;
        let consumer = EventConsumer::new(
            name,
            consumer,
            self.producer.clone(),
            self.pool.clone(),
            handler,
            self.metrics.clone(),
        );
        let name = name.to_string();
        Ok(tokio::spawn(async move {
            if let Err(error) = consumer.run(shutdown).await {
                tracing::error!(consumer = %name, %error, "consumer stopped");
            }
        }))
    }

    /// Readiness: the database answers and Kafka lists a broker.
    pub fn probes(&self) -> Vec<(&'static str, ReadinessProbe)> {
        let pool = self.pool.clone();
        let database: ReadinessProbe = Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                client
                    .query_one("SELECT 1", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            })
        });
        let bootstrap = self.bootstrap.clone();
        let kafka: ReadinessProbe = Arc::new(move || {
            let bootstrap = bootstrap.clone();
            Box::pin(async move {
                match crate::stack::kafka::broker_count(bootstrap).await? {
                    0 => Err("no broker listed".to_string()),
                    _ => Ok(()),
                }
            })
        });
        vec![("database", database), ("kafka", kafka)]
    }
}

/// An idempotent, acks=all producer.
pub fn producer(bootstrap: &str) -> Result<FutureProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(|e| e.to_string())
}

/// Partitions of the system's topics when a service has to create them.
pub const TOPIC_PARTITIONS: i32 = 6;

/// Creates `topics` (and the dead-letter topic) unless they exist. Replication is the
/// cluster's default (`default.replication.factor`).
pub async fn ensure_topics(bootstrap: &str, topics: &[&str]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let mut all: Vec<&str> = topics.to_vec();
    all.push(DEAD_LETTER_TOPIC);
    let new_topics: Vec<NewTopic<'_>> = all
        .iter()
        .map(|t| NewTopic::new(t, TOPIC_PARTITIONS, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new_topics.iter(), &options)
        .await
        .map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("creating topic {topic}: {code}")),
        }
    }
    Ok(())
}
