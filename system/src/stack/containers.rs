//! The stack as Docker containers (cargo feature `containers`), for users who have Docker:
//! the official `apache/kafka` (JVM image, the same Kafka release as the local stack),
//! `postgres` (fsync on) and `redis` images, through testcontainers. The containers are
//! removed when [`Containers`] is dropped.

use testcontainers_modules::kafka::apache::{Kafka, KAFKA_PORT};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::redis::{Redis, REDIS_PORT};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

use super::kafka::KAFKA_VERSION;
use super::{Endpoints, StackError};

/// The running containers; dropping them stops and removes them.
pub struct Containers {
    kafka: ContainerAsync<Kafka>,
    postgres: ContainerAsync<Postgres>,
    redis: ContainerAsync<Redis>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("kafka", &self.kafka.id())
            .field("postgres", &self.postgres.id())
            .field("redis", &self.redis.id())
            .finish()
    }
}

fn container_error(component: &str, error: impl std::fmt::Display) -> StackError {
    StackError::Client {
        component: format!("{component} container"),
        reason: format!("{error} (is a Docker daemon running and reachable?)"),
    }
}

impl Containers {
    /// Starts the three containers and returns their endpoints on the host.
    pub async fn start() -> Result<(Containers, Endpoints), StackError> {
        let kafka = Kafka::default()
            .with_jvm_image()
            .with_tag(KAFKA_VERSION)
            .start()
            .await
            .map_err(|e| container_error("Kafka", e))?;
        let postgres = Postgres::default()
            .with_user("faultline")
            .with_password("faultline")
            .with_db_name("faultline")
            .with_fsync_enabled()
            .start()
            .await
            .map_err(|e| container_error("PostgreSQL", e))?;
        let redis = Redis::default()
            .start()
            .await
            .map_err(|e| container_error("Redis", e))?;

        let kafka_port = kafka
            .get_host_port_ipv4(KAFKA_PORT)
            .await
            .map_err(|e| container_error("Kafka", e))?;
        let postgres_port = postgres
            .get_host_port_ipv4(5432)
            .await
            .map_err(|e| container_error("PostgreSQL", e))?;
        let redis_port = redis
            .get_host_port_ipv4(REDIS_PORT)
            .await
            .map_err(|e| container_error("Redis", e))?;
        let endpoints = Endpoints {
            kafka_bootstrap: format!("127.0.0.1:{kafka_port}"),
            database_url: format!(
                "postgres://faultline:faultline@127.0.0.1:{postgres_port}/faultline"
            ),
            redis_url: format!("redis://127.0.0.1:{redis_port}"),
            kafka_admin: None,
            jaeger_url: None,
            otlp_endpoint: None,
            prometheus_url: None,
            prometheus_dir: None,
        };
        Ok((
            Containers {
                kafka,
                postgres,
                redis,
            },
            endpoints,
        ))
    }

    /// Stops and removes the containers.
    pub async fn stop(self) {
        for (name, result) in [
            ("Kafka", self.kafka.rm().await),
            ("PostgreSQL", self.postgres.rm().await),
            ("Redis", self.redis.rm().await),
        ] {
            if let Err(error) = result {
                tracing::warn!(%error, "could not remove the {name} container");
            }
        }
    }
}
