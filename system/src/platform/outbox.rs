//! The transactional outbox: a state change and the event announcing it commit together,
//! and a relay publishes committed events to Kafka afterwards (at least once, in order).
//!
//! - [`enqueue`] adds the event to the service's `outbox` table inside the caller's
//!   transaction ([`OutboxTx`], which writes a transaction's events in one statement as it
//!   commits), so a rolled-back change never announces anything, and there is no dual
//!   write.
//! - [`OutboxRelay`] holds a session advisory lock so that one replica of a service relays
//!   at a time (two relays would interleave a key's events), polls the unpublished rows
//!   (a partial index) back to back while there is a backlog, every [`IDLE_POLL`] just
//!   after one, and less often the longer it stays idle, up to [`IDLE_POLL_MAX`] (nine
//!   services polling every 5 ms would cost an idle system thousands of queries a
//!   second), publishes batches in `seq` order with an idempotent producer, and deletes
//!   them once Kafka acknowledged them (Kafka holds them from then on; deleting writes no
//!   new row version and no index entries, where marking them published wrote both for
//!   every event, and keeps the table small). A crash between the acknowledgement and the
//!   delete publishes the batch again: consumers deduplicate on the event id.
//!
//! Why polling and not `NOTIFY`: a transaction that issued `NOTIFY` holds PostgreSQL's
//! global notification lock from its pre-commit to its end, WAL flush included, so every
//! service's commits queued behind one another one fsync at a time (no group commit) and
//! the whole system's sagas were capped near 1 / (fsync time × commits per saga).

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Transaction;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::envelope::Envelope;
use super::metrics::Metrics;
use super::sql::Prepared;

/// The outbox table; part of every service's schema (see [`super::migrate`]).
pub const OUTBOX_SCHEMA: &str = "
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    key          TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    version      INT NOT NULL,
    payload      JSONB NOT NULL,
    traceparent  TEXT,
    occurred_at  TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
";

const BATCH: i64 = 500;
/// How long an idle relay waits before looking again: a ceiling on the delay the outbox
/// adds to each hop of an event.
pub const IDLE_POLL: Duration = Duration::from_millis(5);
/// The longest an idle relay waits: the delay the first event after a quiet spell can see.
pub const IDLE_POLL_MAX: Duration = Duration::from_millis(40);
/// How often the backlog gauge is refreshed (a count of the unpublished rows).
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// The relay's statements, prepared on its connection.
struct RelayStatements {
    unpublished: tokio_postgres::Statement,
    delete_published: tokio_postgres::Statement,
}

/// A database transaction whose outbox events are staged in memory and written together,
/// in one statement, just before it commits. A consumer's batch transaction announces up to
/// two events per record it applies: one `INSERT` each was a round trip each, and the
/// round trips (PostgreSQL woken per statement) were what the saga's profile was made of.
///
/// It derefs to the [`Transaction`], so handlers query through it as before; only
/// [`OutboxTx::commit`] writes the staged events, so dropping it (or
/// [`OutboxTx::rollback`]) announces nothing, exactly as a rolled-back `INSERT` did.
pub struct OutboxTx<'a> {
    tx: Transaction<'a>,
    /// Topic and event, in the order they were enqueued: the order they get their `seq`,
    /// so the relay publishes a key's events in the order they happened.
    staged: Mutex<Vec<(String, Envelope)>>,
}

impl<'a> OutboxTx<'a> {
    /// Begins a transaction on `client`.
    pub async fn begin(
        client: &'a mut deadpool_postgres::Client,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(OutboxTx {
            tx: client.transaction().await?,
            staged: Mutex::new(Vec::new()),
        })
    }

    /// Adds `event` for `topic` to the outbox when this transaction commits.
    pub fn enqueue(&self, topic: &str, event: &Envelope) {
        self.staged_events()
            .push((topic.to_string(), event.clone()));
    }

    /// Writes the staged events (one `INSERT` for all of them) and commits.
    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        let staged = std::mem::take(&mut *self.staged_events());
        if !staged.is_empty() {
            insert_events(&self.tx, &staged).await?;
        }
        self.tx.commit().await
    }

    /// Rolls back: nothing staged is written.
    pub async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.tx.rollback().await
    }

    fn staged_events(&self) -> std::sync::MutexGuard<'_, Vec<(String, Envelope)>> {
        // A panic while pushing cannot leave the vector half-written: take it as it is.
        self.staged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<'a> std::ops::Deref for OutboxTx<'a> {
    type Target = Transaction<'a>;

    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

/// Adds `event` for `topic` to the outbox of `tx`, written when `tx` commits.
pub fn enqueue(tx: &OutboxTx<'_>, topic: &str, event: &Envelope) {
    tx.enqueue(topic, event);
}

/// Inserts `events` into the outbox in one statement, `seq` following their order.
async fn insert_events(
    tx: &Transaction<'_>,
    events: &[(String, Envelope)],
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = events.iter().map(|(_, e)| e.id).collect();
    let topics: Vec<&str> = events.iter().map(|(topic, _)| topic.as_str()).collect();
    let keys: Vec<&str> = events.iter().map(|(_, e)| e.key.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|(_, e)| e.event_type.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|(_, e)| e.version as i32).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|(_, e)| &e.payload).collect();
    let traceparents: Vec<Option<&str>> = events
        .iter()
        .map(|(_, e)| e.traceparent.as_deref())
        .collect();
    let occurred: Vec<chrono::DateTime<chrono::Utc>> =
        events.iter().map(|(_, e)| e.occurred_at).collect();
    tx.execute_prepared(
        "INSERT INTO outbox (event_id, topic, key, event_type, version, payload, traceparent, occurred_at)
         SELECT id, topic, key, event_type, version, payload, traceparent, occurred_at
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::jsonb[], $7::text[], $8::timestamptz[])
              WITH ORDINALITY AS e(id, topic, key, event_type, version, payload, traceparent, occurred_at, ord)
         ORDER BY ord",
        &[&ids, &topics, &keys, &types, &versions, &payloads, &traceparents, &occurred],
    )
    .await?;
    Ok(())
}

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox relay: PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Publishes a service's outbox to Kafka; see the module documentation.
pub struct OutboxRelay {
    database_url: String,
    producer: FutureProducer,
    /// Name for the advisory lock and metrics, e.g. the service name.
    name: String,
    metrics: Metrics,
}

impl OutboxRelay {
    pub fn new(
        name: &str,
        database_url: &str,
        producer: FutureProducer,
        metrics: Metrics,
    ) -> OutboxRelay {
        OutboxRelay {
            database_url: database_url.to_string(),
            producer,
            name: name.to_string(),
            metrics,
        }
    }

    /// Relays until `shutdown` is cancelled; reconnects after a lost connection.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.relay_while_connected(&shutdown).await {
                tracing::warn!(relay = %self.name, %error, "outbox relay lost its connection; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    async fn relay_while_connected(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let config: tokio_postgres::Config = self.database_url.parse()?;
        let (client, connection) = config.connect(NoTls).await?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "outbox relay connection ended");
            }
        });
        let result = async {
            // One relay per service database at a time, until this session ends.
            loop {
                let locked: bool = client
                    .query_one(
                        "SELECT pg_try_advisory_lock(hashtext($1))",
                        &[&format!("outbox-relay:{}", self.name)],
                    )
                    .await?
                    .get(0);
                if locked {
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            tracing::info!(relay = %self.name, "outbox relay is the active one");
            // Prepared once for this connection: the relay runs them back to back.
            let statements = RelayStatements {
                unpublished: client
                    .prepare(
                        "SELECT seq, event_id, topic, key, event_type, version, payload, traceparent, occurred_at
                         FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
                    )
                    .await?,
                delete_published: client.prepare("DELETE FROM outbox WHERE seq = ANY($1)")
                    .await?,
            };
            let mut backlog_at = tokio::time::Instant::now();
            let mut idle_poll = IDLE_POLL;
            loop {
                // Drain everything committed so far, then look again shortly: soon after
                // events, later and later while none come.
                let mut published = 0;
                loop {
                    let batch = self.publish_batch(&client, &statements).await?;
                    if batch == 0 {
                        break;
                    }
                    published += batch;
                }
                idle_poll = if published > 0 {
                    IDLE_POLL
                } else {
                    (idle_poll * 2).min(IDLE_POLL_MAX)
                };
                if backlog_at.elapsed() >= BACKLOG_EVERY {
                    self.update_backlog(&client).await?;
                    backlog_at = tokio::time::Instant::now();
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(idle_poll) => {}
                }
            }
        }
        .await;
        driver.abort();
        result
    }

    /// Publishes up to one batch; returns how many events were published (and deleted).
    async fn publish_batch(
        &self,
        client: &tokio_postgres::Client,
        statements: &RelayStatements,
    ) -> Result<usize, RelayError> {
        let rows = client.query(&statements.unpublished, &[&BATCH]).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut in_flight = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.get(0);
            let topic: String = row.get(2);
            let event = Envelope {
                id: row.get::<_, Uuid>(1),
                key: row.get(3),
                event_type: row.get(4),
                version: row.get::<_, i32>(5) as u32,
                payload: row.get(6),
                traceparent: row.get(7),
                occurred_at: row.get(8),
            };
            let bytes = event.to_bytes();
            let record = FutureRecord::to(&topic)
                .key(&event.key)
                .payload(&bytes)
                .headers(event.headers());
            // Enqueue in seq order without waiting, so the producer keeps the order.
            match self.producer.send_result(record) {
                Ok(delivery) => in_flight.push((seq, delivery)),
                Err((error, _)) => {
                    tracing::warn!(relay = %self.name, %error, "could not enqueue an outbox event");
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(in_flight.len());
        for (seq, delivery) in in_flight {
            match delivery.await {
                Ok(Ok(_)) => published.push(seq),
                Ok(Err((error, _))) => {
                    tracing::warn!(relay = %self.name, %error, seq, "Kafka did not acknowledge an outbox event");
                }
                Err(_) => tracing::warn!(relay = %self.name, seq, "delivery report lost"),
            }
        }
        if !published.is_empty() {
            client
                .execute(&statements.delete_published, &[&published])
                .await?;
            self.metrics.outbox_published.inc_by(published.len() as u64);
        }
        if published.len() < rows.len() {
            // Kafka is unwell: back off instead of spinning on the same rows.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(published.len())
    }

    async fn update_backlog(&self, client: &tokio_postgres::Client) -> Result<(), RelayError> {
        let backlog: i64 = client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        self.metrics.outbox_backlog.set(backlog);
        Ok(())
    }
}
