//! Broken input ends in a clear error that names what and where.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use faultline_system::stack::kafka::LocalKafka;
use faultline_system::stack::{KafkaSpec, PostgresSpec, RedisSpec, Stack, StackError, StackSpec};

/// PostgreSQL and Redis of the shared stack, used as "external" so that an error test
/// starts nothing it does not need.
fn external_stores(stack: &Stack) -> (PostgresSpec, RedisSpec) {
    let endpoints = stack.endpoints();
    (
        PostgresSpec::External {
            url: endpoints.database_url,
        },
        RedisSpec::External {
            url: endpoints.redis_url,
        },
    )
}

pub async fn an_unreachable_external_bootstrap_is_a_clear_error(
    stack: Arc<Stack>,
) -> anyhow::Result<()> {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let bootstrap = format!("127.0.0.1:{port}");
    let (postgres, redis) = external_stores(&stack);
    let started = Instant::now();
    let outcome = Stack::start(StackSpec {
        kafka: KafkaSpec::External {
            bootstrap: bootstrap.clone(),
        },
        postgres,
        redis,
        ready_timeout: Duration::from_secs(3),
        ..StackSpec::default()
    })
    .await;
    match outcome {
        Err(error @ StackError::ExternalUnreachable { .. }) => {
            let message = error.to_string();
            ensure!(message.contains("Kafka"), "{message}");
            ensure!(message.contains(&bootstrap), "{message}");
        }
        Err(other) => bail!("expected ExternalUnreachable, got: {other}"),
        Ok(_) => bail!("a stack started against a bootstrap server that does not exist"),
    }
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "the check did not honour its timeout"
    );
    Ok(())
}

pub async fn a_taken_port_is_a_clear_error_and_starts_nothing() -> anyhow::Result<()> {
    let squatter = TcpListener::bind("127.0.0.1:0")?;
    let port = squatter.local_addr()?.port();
    let root = tempfile::tempdir()?;
    let data_dir = root.path().join("never-created");
    let outcome = Stack::start(StackSpec {
        postgres: PostgresSpec::Local {
            port: Some(port),
            databases: Vec::new(),
        },
        data_dir: Some(data_dir.clone()),
        ..StackSpec::default()
    })
    .await;
    match outcome {
        Err(StackError::PortTaken {
            component,
            port: reported,
            ..
        }) => {
            ensure!(component == "PostgreSQL", "named {component}");
            ensure!(reported == port, "reported port {reported}, taken {port}");
        }
        Err(other) => bail!("expected PortTaken, got: {other}"),
        Ok(_) => bail!("the stack started on a taken port"),
    }
    ensure!(
        !data_dir.exists(),
        "something was started before the port check"
    );
    drop(squatter);
    Ok(())
}

pub async fn a_missing_kafka_cache_tells_to_run_setup() -> anyhow::Result<()> {
    let empty = tempfile::tempdir()?;
    let outcome = Stack::start(StackSpec {
        kafka: KafkaSpec::Local(LocalKafka {
            home: Some(empty.path().to_path_buf()),
            ..LocalKafka::default()
        }),
        ..StackSpec::default()
    })
    .await;
    match outcome {
        Err(error @ StackError::KafkaMissing { .. }) => {
            let message = error.to_string();
            ensure!(message.contains("make setup"), "{message}");
            ensure!(
                message.contains(&empty.path().display().to_string()),
                "{message}"
            );
        }
        Err(other) => bail!("expected KafkaMissing, got: {other}"),
        Ok(_) => bail!("a stack started without Kafka's jars"),
    }
    Ok(())
}

pub async fn a_component_that_cannot_start_is_named_with_its_log(
    stack: Arc<Stack>,
) -> anyhow::Result<()> {
    // A Kafka "installation" whose only jar is empty: the JVM starts and cannot find
    // Kafka's classes, so the storage formatter fails and says why in its log.
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("libs"))?;
    std::fs::write(home.path().join("libs").join("kafka_2.13-0.0.0.jar"), b"")?;
    let (postgres, redis) = external_stores(&stack);
    let outcome = Stack::start(StackSpec {
        kafka: KafkaSpec::Local(LocalKafka {
            home: Some(home.path().to_path_buf()),
            ..LocalKafka::default()
        }),
        postgres,
        redis,
        ready_timeout: Duration::from_secs(60),
        ..StackSpec::default()
    })
    .await;
    match outcome {
        Err(StackError::ComponentFailed {
            component,
            port,
            data_dir,
            log_tail,
            ..
        }) => {
            ensure!(component.contains("Kafka broker 1"), "named {component}");
            ensure!(port > 0);
            ensure!(
                data_dir.to_string_lossy().contains("kafka-1"),
                "data dir {}",
                data_dir.display()
            );
            ensure!(
                log_tail.contains("kafka.tools.StorageTool"),
                "the log tail does not say what failed:\n{log_tail}"
            );
        }
        Err(other) => bail!("expected ComponentFailed, got: {other}"),
        Ok(_) => bail!("Kafka started from an empty jar"),
    }
    Ok(())
}
