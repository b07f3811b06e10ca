//! What a service process holds once it started: its database pool (migrated), a Kafka
//! producer, its metrics, and helpers to start its outbox relay and consumers; and the
//! [`ServiceContext`] each service's `start` builds itself from.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, Producer};
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::admission::AdmissionPolicy;
use super::behaviour::{Behaviour, SharedBehaviour};
use super::serve::ServeArgs;
use crate::platform::auth::{Secret, Tokens};
use crate::platform::consumer::{EventConsumer, EventHandler, GroupConsumer, DEAD_LETTER_TOPIC};
use crate::platform::http::ReadinessProbe;
use crate::platform::lag;
use crate::platform::metrics::Metrics;
use crate::platform::migrate::{self, Migration};
use crate::platform::outbox::OutboxRelay;
use crate::platform::ownership::OwnershipContext;
use crate::platform::sql::Prepared;
use crate::stack::{KafkaAuth, KafkaClient};

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
    /// How this service reaches Kafka, as its own principal.
    pub kafka: KafkaClient,
    pub database_url: String,
}

impl Platform {
    /// Connects, migrates the service's schema and makes sure its topics exist.
    pub async fn start(
        service: &'static str,
        database_url: &str,
        kafka: &KafkaClient,
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
        ensure_topics(kafka, topics)
            .await
            .map_err(|reason| ServiceError::Kafka {
                service: service.to_string(),
                reason,
            })?;
        let producer = producer(kafka).map_err(|reason| ServiceError::Kafka {
            service: service.to_string(),
            reason,
        })?;
        Ok(Platform {
            service,
            pool,
            producer,
            metrics: Metrics::new(service),
            kafka: kafka.clone(),
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
        let context = OwnershipContext::new(handler.ownership().unwrap_or_default());
        let consumer: GroupConsumer = self
            .kafka
            .config()
            .set("group.id", name)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", lag::STATISTICS_INTERVAL)
            // A subscribed topic the broker does not know yet (created a moment ago, its
            // metadata not yet on every broker) holds the whole subscription back until the
            // next metadata refresh: 5 minutes by default, so a saga consumer that started
            // in that moment stalled every saga for minutes (seen in CI).
            .set("topic.metadata.refresh.interval.ms", "2000")
            .create_with_context(context)
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
                    .query_one_prepared("SELECT 1", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            })
        });
        vec![
            ("database", database),
            ("kafka", kafka_probe(&self.producer)),
        ]
    }
}

/// Readiness of Kafka: a metadata request on `producer`'s own connections lists a broker.
///
/// Not a new client per probe: each one authenticated afresh (SCRAM's key derivation on
/// both ends) and started librdkafka's threads, and the gateway asks every replica every
/// second, which cost about a tenth of a core on the machine, services and broker together.
pub fn kafka_probe(producer: &FutureProducer) -> ReadinessProbe {
    let producer = producer.clone();
    Arc::new(move || {
        let producer = producer.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let metadata = producer
                    .client()
                    .fetch_metadata(None, KAFKA_PROBE_TIMEOUT)
                    .map_err(|e| e.to_string())?;
                match metadata.brokers().len() {
                    0 => Err("metadata lists no broker".to_string()),
                    _ => Ok(()),
                }
            })
            .await
            .map_err(|e| e.to_string())?
        })
    })
}

/// Under `/health/ready`'s 2 s per probe, so that a broker that does not answer is said as
/// Kafka's own error rather than the probe's timeout.
const KAFKA_PROBE_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Readiness of Redis: it answers `PING` on `connection`.
pub fn redis_probe(connection: ConnectionManager) -> ReadinessProbe {
    Arc::new(move || {
        let mut connection = connection.clone();
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    })
}

/// An idempotent, acks=all producer.
pub fn producer(kafka: &KafkaClient) -> Result<FutureProducer, String> {
    kafka
        .config()
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
pub async fn ensure_topics(kafka: &KafkaClient, topics: &[&str]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        kafka.config().create().map_err(|e| e.to_string())?;
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

/// A setting of [`ServeArgs`] a service may need: what it is, its flag and its environment
/// variable, for the error that says it is missing.
pub type Setting = (&'static str, &'static str, &'static str);
pub const DATABASE_URL: Setting = ("a database", "database-url", "DATABASE_URL");
pub const KAFKA_BOOTSTRAP: Setting = ("Kafka", "kafka-bootstrap", "KAFKA_BOOTSTRAP");
pub const KAFKA_SASL_PASSWORD: Setting = (
    "the Kafka principal's password (with a username)",
    "kafka-sasl-password",
    "KAFKA_SASL_PASSWORD",
);
pub const REDIS_URL: Setting = ("Redis", "redis-url", "REDIS_URL");
pub const JWT_SECRET: Setting = ("a JWT secret", "jwt-secret", "FAULTLINE_JWT_SECRET");

/// What a service's `start` builds itself from, and what it leaves for the part every
/// service shares: the settings, the background work to stop after the HTTP server drained,
/// the readiness probes and the metrics.
pub struct ServiceContext<'a> {
    pub args: &'a ServeArgs,
    pub name: &'static str,
    /// Cancelled only after the HTTP server drained, so consumers still commit offsets.
    background: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    probes: Vec<(&'static str, ReadinessProbe)>,
    /// The platform's metrics once [`ServiceContext::platform`] started it.
    metrics: Option<Metrics>,
}

/// What [`ServiceContext::finish`] hands to the shared part of `serve`.
pub struct Started {
    pub background: CancellationToken,
    pub tasks: Vec<JoinHandle<()>>,
    pub probes: Vec<(&'static str, ReadinessProbe)>,
    pub metrics: Metrics,
}

impl<'a> ServiceContext<'a> {
    pub fn new(args: &'a ServeArgs) -> ServiceContext<'a> {
        ServiceContext {
            args,
            name: args.service.name(),
            background: CancellationToken::new(),
            tasks: Vec::new(),
            probes: Vec::new(),
            metrics: None,
        }
    }

    /// A setting the service cannot start without: `value`, or an error naming it.
    pub fn required(
        &self,
        value: &'a Option<String>,
        (what, flag, env): Setting,
    ) -> Result<&'a str, ServiceError> {
        value.as_deref().ok_or(ServiceError::Missing {
            service: self.name.to_string(),
            what,
            flag,
            env,
        })
    }

    /// How this service reaches Kafka: the bootstrap servers and, when a username is given,
    /// its SASL/SCRAM credentials (a username without a password is an error).
    pub fn kafka(&self) -> Result<KafkaClient, ServiceError> {
        let bootstrap = self.required(&self.args.kafka_bootstrap, KAFKA_BOOTSTRAP)?;
        let auth = match &self.args.kafka_sasl_username {
            Some(username) => {
                let password =
                    self.required(&self.args.kafka_sasl_password, KAFKA_SASL_PASSWORD)?;
                Some(KafkaAuth::new(username.clone(), password))
            }
            None => None,
        };
        Ok(KafkaClient::new(bootstrap, auth))
    }

    /// Under mutual TLS (`--mesh-*`), how this service calls others: presenting its own
    /// certificate, trusting only the system CA. `None` without it.
    pub fn mesh_client(&self) -> Result<Option<Arc<rustls::ClientConfig>>, ServiceError> {
        let invalid = |e: crate::platform::tls::TlsError| self.invalid(e.to_string());
        let identity = self.args.mesh.identity().map_err(invalid)?;
        identity
            .map(|m| m.client_config())
            .transpose()
            .map_err(invalid)
    }

    pub fn invalid(&self, reason: impl Into<String>) -> ServiceError {
        ServiceError::Invalid {
            service: self.name.to_string(),
            reason: reason.into(),
        }
    }

    pub fn kafka_error(&self, reason: String) -> ServiceError {
        ServiceError::Kafka {
            service: self.name.to_string(),
            reason,
        }
    }

    /// The token issuer and checker of the shared JWT secret.
    pub fn tokens(&self) -> Result<Tokens, ServiceError> {
        let secret = self.required(&self.args.jwt_secret, JWT_SECRET)?;
        Tokens::new(&Secret::new(secret), self.args.token_ttl)
            .map_err(|e| self.invalid(e.to_string()))
    }

    /// How orders limits its pending sagas ([`AdmissionPolicy`]).
    pub fn admission_policy(&self) -> AdmissionPolicy {
        match self.args.max_pending_orders {
            Some(limit) => AdmissionPolicy::Fixed(limit),
            None if self.args.saga_deadline.is_zero() => AdmissionPolicy::Off,
            None => AdmissionPolicy::Deadline(self.args.saga_deadline),
        }
    }

    /// The failure rate and latency of payments or shipping, checked.
    pub fn behaviour(&self) -> Result<SharedBehaviour, ServiceError> {
        let behaviour = Behaviour {
            fail_rate: self.args.fail_rate,
            latency_ms: self.args.latency_ms,
        };
        behaviour
            .validate()
            .map(|()| SharedBehaviour::new(behaviour))
            .map_err(|reason| self.invalid(reason))
    }

    /// Connects to the service's database and Kafka, migrates its schema and makes sure
    /// its topics exist; their probes join readiness, its metrics are the process'.
    pub async fn platform(
        &mut self,
        migrations: &[Migration],
        topics: &[&str],
    ) -> Result<Platform, ServiceError> {
        let database_url = self.required(&self.args.database_url, DATABASE_URL)?;
        let kafka = self.kafka()?;
        let platform = Platform::start(self.name, database_url, &kafka, migrations, topics).await?;
        self.probes.extend(platform.probes());
        self.metrics = Some(platform.metrics.clone());
        Ok(platform)
    }

    /// The process' metrics: the platform's, or new ones for a service without a database.
    pub fn metrics(&mut self) -> Metrics {
        self.metrics
            .get_or_insert_with(|| Metrics::new(self.name))
            .clone()
    }

    pub fn add_probe(&mut self, name: &'static str, probe: ReadinessProbe) {
        self.probes.push((name, probe));
    }

    /// The token that stops background work, for work that watches it itself.
    pub fn background(&self) -> CancellationToken {
        self.background.clone()
    }

    /// Runs `work` in the background; `serve` waits for it on shutdown.
    pub fn spawn(&mut self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(work));
    }

    /// Starts the outbox relay of the platform's database.
    pub fn relay(&mut self, platform: &Platform) {
        let relay = platform.spawn_relay(self.background.clone());
        self.tasks.push(relay);
    }

    /// Starts an idempotent consumer named `name` (also its consumer group) on `topics`.
    pub fn consume<H: EventHandler>(
        &mut self,
        platform: &Platform,
        name: &str,
        topics: &[&str],
        handler: H,
    ) -> Result<(), ServiceError> {
        let consumer = platform.spawn_consumer(name, topics, handler, self.background.clone())?;
        self.tasks.push(consumer);
        Ok(())
    }

    /// What the shared part of `serve` needs once the service started.
    pub fn finish(mut self) -> Started {
        let metrics = self.metrics();
        Started {
            background: self.background,
            tasks: self.tasks,
            probes: self.probes,
            metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe asks on the producer's connections: with no broker behind them it must say
    /// so (within `/health/ready`'s 2 s), not answer from what the client last knew.
    #[tokio::test]
    async fn the_kafka_probe_fails_when_no_broker_answers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        drop(listener); // nothing listens there now
        let kafka = KafkaClient::new(format!("127.0.0.1:{port}"), None);
        let producer = producer(&kafka).expect("a producer needs no broker to be made");
        let probe = kafka_probe(&producer);
        let outcome = tokio::time::timeout(Duration::from_secs(2), probe())
            .await
            .expect("the probe answers within 2 s");
        assert!(outcome.is_err(), "ready with no broker: {outcome:?}");
    }
}
