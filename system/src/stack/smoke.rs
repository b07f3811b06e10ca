//! A smoke run through a running stack: keyed events through Kafka and back, a PostgreSQL
//! transaction, a Redis SET/GET; each timed and checked. `faultline stack smoke` (and for
//! now `make demo`) prints its [`SmokeReport`].

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use super::{postgres, Endpoints, KafkaClient, StackError};

/// How much to push through.
#[derive(Debug, Clone)]
pub struct SmokeSpec {
    pub events: usize,
    pub keys: usize,
    pub partitions: i32,
    pub replication: i32,
    /// How long consuming everything back may take.
    pub consume_timeout: Duration,
}

impl Default for SmokeSpec {
    fn default() -> Self {
        SmokeSpec {
            events: 10_000,
            keys: 100,
            partitions: 6,
            replication: 1,
            consume_timeout: Duration::from_secs(60),
        }
    }
}

/// What the smoke run measured and found.
#[derive(Debug, Clone)]
pub struct SmokeReport {
    pub topic: String,
    pub produced: usize,
    pub produce_time: Duration,
    pub consumed: usize,
    pub consume_time: Duration,
    pub missing: usize,
    pub duplicated: usize,
    /// Events that came back before an earlier event of the same key.
    pub out_of_order: usize,
    pub postgres_rows: i64,
    pub postgres_time: Duration,
    pub redis_value_matches: bool,
    pub redis_time: Duration,
}

impl SmokeReport {
    /// True when nothing was lost, duplicated or reordered and both stores answered right.
    pub fn passed(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.consumed == self.produced
            && self.redis_value_matches
    }
}

fn rate(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64().max(1e-9)
}

impl fmt::Display for SmokeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kafka     topic {}: produced {} keyed events (acks=all, idempotent) in {:.2} s ({:.0}/s)",
            self.topic,
            self.produced,
            self.produce_time.as_secs_f64(),
            rate(self.produced, self.produce_time)
        )?;
        writeln!(
            f,
            "kafka     consumed {} back in {:.2} s ({:.0}/s): {} missing, {} duplicated, {} out of order within a partition",
            self.consumed,
            self.consume_time.as_secs_f64(),
            rate(self.consumed, self.consume_time),
            self.missing,
            self.duplicated,
            self.out_of_order
        )?;
        writeln!(
            f,
            "postgres  inserted and counted {} rows in one transaction in {:.1} ms",
            self.postgres_rows,
            self.postgres_time.as_secs_f64() * 1e3
        )?;
        writeln!(
            f,
            "redis     SET then GET {} in {:.1} ms",
            if self.redis_value_matches {
                "returned the value"
            } else {
                "returned something else"
            },
            self.redis_time.as_secs_f64() * 1e3
        )?;
        write!(
            f,
            "result    {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

fn kafka_error(reason: impl fmt::Display) -> StackError {
    StackError::Client {
        component: "Kafka".into(),
        reason: reason.to_string(),
    }
}

/// Runs the smoke checks against `endpoints`.
pub async fn run(endpoints: &Endpoints, spec: &SmokeSpec) -> Result<SmokeReport, StackError> {
    let topic = format!("faultline.smoke.{}", uuid::Uuid::new_v4().simple());
    let kafka = endpoints.kafka_client();
    create_topic(&kafka, &topic, spec.partitions, spec.replication).await?;

    let producer: FutureProducer = kafka
        .config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(kafka_error)?;
    let started = Instant::now();
    let sends = (0..spec.events).map(|seq| {
        let producer = &producer;
        let topic = &topic;
        let key = format!("key-{}", seq % spec.keys.max(1));
        async move {
            let payload = seq.to_string();
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(error, _)| {
                    kafka_error(format!("event {seq} was not acknowledged: {error}"))
                })
        }
    });
    // Bounded concurrency keeps memory flat; the idempotent producer keeps per-partition order.
    let results: Vec<_> = futures::stream::iter(sends).buffered(1024).collect().await;
    for result in results {
        result?;
    }
    let produce_time = started.elapsed();

    let consumer: StreamConsumer = kafka
        .config()
        .set("group.id", format!("{topic}.reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka_error)?;
    consumer.subscribe(&[&topic]).map_err(kafka_error)?;
    let started = Instant::now();
    let deadline = started + spec.consume_timeout;
    let mut seen = vec![0u32; spec.events];
    let mut last_seq_of_key: HashMap<Vec<u8>, usize> = HashMap::new();
    let (mut consumed, mut out_of_order) = (0usize, 0usize);
    let mut stream = consumer.stream();
    while consumed < spec.events {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(next) = tokio::time::timeout(remaining, stream.next()).await else {
            break;
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(error)) => return Err(kafka_error(error)),
            None => break,
        };
        consumed += 1;
        let seq = message
            .payload()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|seq| *seq < spec.events)
            .ok_or_else(|| kafka_error("an event came back with a payload that was not sent"))?;
        seen[seq] += 1;
        let key = message.key().unwrap_or_default().to_vec();
        if let Some(previous) = last_seq_of_key.insert(key, seq) {
            if previous > seq {
                out_of_order += 1;
            }
        }
    }
    let consume_time = started.elapsed();
    drop(stream);
    let missing = seen.iter().filter(|n| **n == 0).count();
    let duplicated = seen.iter().map(|n| n.saturating_sub(1) as usize).sum();

    let (postgres_rows, postgres_time) = postgres_round_trip(&endpoints.database_url).await?;
    let (redis_value_matches, redis_time) = redis_round_trip(&endpoints.redis_url).await?;

    Ok(SmokeReport {
        topic,
        produced: spec.events,
        produce_time,
        consumed,
        consume_time,
        missing,
        duplicated,
        out_of_order,
        postgres_rows,
        postgres_time,
        redis_value_matches,
        redis_time,
    })
}

/// Creates `topic` and waits for the broker's answer.
pub async fn create_topic(
    kafka: &KafkaClient,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), StackError> {
    let admin: AdminClient<DefaultClientContext> = kafka.config().create().map_err(kafka_error)?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let results = admin
        .create_topics(
            [&new_topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(kafka_error)?;
    for result in results {
        result.map_err(|(topic, code)| kafka_error(format!("creating topic {topic}: {code}")))?;
    }
    Ok(())
}

async fn postgres_round_trip(url: &str) -> Result<(i64, Duration), StackError> {
    let pg_error = |reason: String| StackError::Client {
        component: "PostgreSQL".into(),
        reason,
    };
    let started = Instant::now();
    let mut client = postgres::connect(url).await.map_err(pg_error)?;
    let table = format!("smoke_{}", uuid::Uuid::new_v4().simple());
    let transaction = client
        .transaction()
        .await
        .map_err(|e| pg_error(e.to_string()))?;
    transaction
        .batch_execute(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
             INSERT INTO {table} SELECT n, 'row ' || n FROM generate_series(1, 100) AS n;"
        ))
        .await
        .map_err(|e| pg_error(e.to_string()))?;
    let row = transaction
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map_err(|e| pg_error(e.to_string()))?;
    let rows: i64 = row.try_get(0).map_err(|e| pg_error(e.to_string()))?;
    transaction
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .map_err(|e| pg_error(e.to_string()))?;
    transaction
        .commit()
        .await
        .map_err(|e| pg_error(e.to_string()))?;
    Ok((rows, started.elapsed()))
}

async fn redis_round_trip(url: &str) -> Result<(bool, Duration), StackError> {
    let redis_error = |e: redis::RedisError| StackError::Client {
        component: "Redis".into(),
        reason: e.to_string(),
    };
    let started = Instant::now();
    let client = redis::Client::open(url).map_err(redis_error)?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_error)?;
    let key = format!("faultline:smoke:{}", uuid::Uuid::new_v4().simple());
    let value = "the value that went in";
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(value)
        .query_async(&mut connection)
        .await
        .map_err(redis_error)?;
    let back: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .map_err(redis_error)?;
    Ok((back.as_deref() == Some(value), started.elapsed()))
}
