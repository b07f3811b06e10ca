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
//! - The relay does not wait for a batch's acknowledgements before sending the next: up to
//!   [`IN_FLIGHT_BATCHES`] are in flight ([`Window`]), each next one read after the highest
//!   `seq` sent, and their rows are deleted as their acknowledgements arrive, oldest batch
//!   first. The idempotent producer keeps a partition's records in the order they were
//!   handed to it, so a key's events stay in order. A row Kafka refuses stops the window:
//!   the relay waits for every batch in flight, then reads from its oldest unpublished row
//!   again, as it also does whenever the window is empty and at least every
//!   [`RESCAN_EVERY`] (a transaction can commit after another that took a later `seq`).
//!
//! Why polling and not `NOTIFY`: a transaction that issued `NOTIFY` holds PostgreSQL's
//! global notification lock from its pre-commit to its end, WAL flush included, so every
//! service's commits queued behind one another one fsync at a time (no group commit) and
//! the whole system's sagas were capped near 1 / (fsync time × commits per saga).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Transaction;
use futures::FutureExt;
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
/// Batches handed to the producer whose acknowledgements the relay has not all had, at
/// most: it reads and sends the next batch while Kafka acknowledges the ones before it.
const IN_FLIGHT_BATCHES: usize = 4;
/// The longest the relay reads past its cursor before reading from its oldest unpublished
/// row again: a transaction that took its `seq` before another's but committed after it
/// lies behind the cursor until then.
const RESCAN_EVERY: Duration = Duration::from_millis(20);

/// The acknowledgements of one batch, awaited in `seq` order: the `seq`s Kafka acknowledged,
/// and whether it refused any.
type Acks = Pin<Box<dyn Future<Output = (Vec<i64>, bool)> + Send>>;

/// The relay's batches in flight, oldest first, and how far it has read.
struct Window {
    in_flight: VecDeque<Acks>,
    /// The highest `seq` handed to the producer since the window was last empty: the next
    /// batch is read after it (0: from the oldest unpublished row).
    cursor: i64,
    /// When the window stops taking batches, to empty and read from the oldest again.
    rescan_at: tokio::time::Instant,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            in_flight: VecDeque::with_capacity(IN_FLIGHT_BATCHES),
            cursor: 0,
            rescan_at: tokio::time::Instant::now() + RESCAN_EVERY,
        }
    }
}

impl Window {
    /// Whether the next batch may be sent. An empty window reads from the oldest
    /// unpublished row again (every row behind the cursor is deleted or late); a window
    /// that has read past its cursor for [`RESCAN_EVERY`] takes nothing more until it is
    /// empty.
    fn ready_to_send(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self.in_flight.is_empty() {
            self.cursor = 0;
            self.rescan_at = now + RESCAN_EVERY;
            return true;
        }
        self.in_flight.len() < IN_FLIGHT_BATCHES && now < self.rescan_at
    }
}

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
/// [`OutboxTx::rollback`]) announces nothing, exactly as a rolled-back `INSERT` did. The
/// same holds for what a handler asks to run once its writes are visible
/// ([`OutboxTx::on_commit`]).
pub struct OutboxTx<'a> {
    tx: Transaction<'a>,
    /// Topic and event, in the order they were enqueued: the order they get their `seq`,
    /// so the relay publishes a key's events in the order they happened.
    staged: Mutex<Vec<(String, Envelope)>>,
    /// Run, in order, once the transaction committed.
    on_commit: Mutex<Vec<AfterCommit>>,
    _span: tracing::Span, // the transaction's span (telemetry), ended with it
}

/// Something to do once a transaction committed (e.g. wake the readers of what it wrote).
type AfterCommit = Box<dyn FnOnce() + Send>;

/// A panic while pushing cannot leave a vector half-written: take it as it is.
fn unpoisoned<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<'a> OutboxTx<'a> {
    /// Begins a transaction on `client`.
    pub async fn begin(
        client: &'a mut deadpool_postgres::Client,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(OutboxTx {
            _span: super::telemetry::transaction_span(), // first: BEGIN is in it
            tx: client.transaction().await?,
            staged: Mutex::new(Vec::new()),
            on_commit: Mutex::new(Vec::new()),
        })
    }

    /// Adds `event` for `topic` to the outbox when this transaction commits. It takes the
    /// event: every caller builds one only to enqueue it, and its payload is not copied.
    pub fn enqueue(&self, topic: &str, event: Envelope) {
        self.staged_events().push((topic.to_string(), event));
    }

    /// Runs `action` once this transaction committed; never if it does not.
    pub fn on_commit(&self, action: impl FnOnce() + Send + 'static) {
        unpoisoned(&self.on_commit).push(Box::new(action));
    }

    /// Writes the staged events (one `INSERT` for all of them), commits, then runs what
    /// was to run on commit.
    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        let staged = std::mem::take(&mut *self.staged_events());
        if !staged.is_empty() {
            insert_events(&self.tx, &staged).await?;
        }
        let on_commit = std::mem::take(&mut *unpoisoned(&self.on_commit));
        self.tx.commit().await?;
        for action in on_commit {
            action();
        }
        Ok(())
    }

    /// Rolls back: nothing staged is written.
    pub async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.tx.rollback().await
    }

    fn staged_events(&self) -> std::sync::MutexGuard<'_, Vec<(String, Envelope)>> {
        unpoisoned(&self.staged)
    }
}

impl<'a> std::ops::Deref for OutboxTx<'a> {
    type Target = Transaction<'a>;

    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

/// Adds `event` for `topic` to the outbox of `tx`, written when `tx` commits.
pub fn enqueue(tx: &OutboxTx<'_>, topic: &str, event: Envelope) {
    tx.enqueue(topic, event);
}

/// Inserts `events` into the outbox in one statement, `seq` following their order.
async fn insert_events(
    tx: &Transaction<'_>,
    events: &[(String, Envelope)],
) -> Result<(), tokio_postgres::Error> {
    static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(1, "TRUE"));
    tx.execute_prepared(INSERT.as_str(), &OutboxColumns::of(events).params())
        .await?;
    Ok(())
}

/// `INSERT INTO outbox` of the rows of [`OutboxColumns::params`], given as the parameters
/// `$first` to `$first + 7`, `seq` following their order, if `condition` holds: the
/// statement on its own, or part of one that writes a row and its events at once (the
/// condition then says whether that row was written).
pub fn insert_sql(first: usize, condition: &str) -> String {
    let types = [
        "uuid",
        "text",
        "text",
        "text",
        "int",
        "jsonb",
        "text",
        "timestamptz",
    ];
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, kind)| format!("${}::{kind}[]", first + i))
        .collect();
    format!(
        "INSERT INTO outbox (event_id, topic, key, event_type, version, payload, traceparent, occurred_at)
         SELECT id, topic, key, event_type, version, payload, traceparent, occurred_at
         FROM unnest({}) WITH ORDINALITY AS e(id, topic, key, event_type, version, payload, traceparent, occurred_at, ord)
         WHERE {condition} ORDER BY ord",
        arrays.join(", ")
    )
}

/// Events as the outbox's columns, one array each (what `unnest` takes).
pub struct OutboxColumns<'e> {
    ids: Vec<Uuid>,
    topics: Vec<&'e str>,
    keys: Vec<&'e str>,
    types: Vec<&'e str>,
    versions: Vec<i32>,
    payloads: Vec<&'e serde_json::Value>,
    traceparents: Vec<Option<&'e str>>,
    occurred: Vec<chrono::DateTime<chrono::Utc>>,
}

impl<'e> OutboxColumns<'e> {
    /// The columns of `events`, each a topic and its event.
    pub fn of(events: &'e [(String, Envelope)]) -> Self {
        OutboxColumns {
            ids: events.iter().map(|(_, e)| e.id).collect(),
            topics: events.iter().map(|(topic, _)| topic.as_str()).collect(),
            keys: events.iter().map(|(_, e)| e.key.as_str()).collect(),
            types: events.iter().map(|(_, e)| e.event_type.as_str()).collect(),
            versions: events.iter().map(|(_, e)| e.version as i32).collect(),
            payloads: events.iter().map(|(_, e)| &e.payload).collect(),
            traceparents: events
                .iter()
                .map(|(_, e)| e.traceparent.as_deref())
                .collect(),
            occurred: events.iter().map(|(_, e)| e.occurred_at).collect(),
        }
    }

    /// The eight parameters of [`insert_sql`], in its order.
    pub fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.ids,
            &self.topics,
            &self.keys,
            &self.types,
            &self.versions,
            &self.payloads,
            &self.traceparents,
            &self.occurred,
        ]
    }
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
                         FROM outbox WHERE published_at IS NULL AND seq > $2 ORDER BY seq LIMIT $1",
                    )
                    .await?,
                delete_published: client.prepare("DELETE FROM outbox WHERE seq = ANY($1)")
                    .await?,
            };
            let mut backlog_at = tokio::time::Instant::now();
            let mut idle_poll = IDLE_POLL;
            let mut window = Window::default();
            loop {
                // Send the next batch without waiting for the acknowledgements of the ones
                // before it, and settle those Kafka acknowledged; wait for the oldest only
                // when there is nothing else to do (the window full, or nothing new).
                let sent = window.ready_to_send()
                    && self.send_batch(&client, &statements, &mut window).await?;
                let wait = !window.in_flight.is_empty()
                    && (!sent || window.in_flight.len() >= IN_FLIGHT_BATCHES);
                let settled = self.settle(&client, &statements, &mut window, wait).await?;
                if backlog_at.elapsed() >= BACKLOG_EVERY {
                    self.update_backlog(&client).await?;
                    backlog_at = tokio::time::Instant::now();
                }
                if sent || !window.in_flight.is_empty() {
                    if shutdown.is_cancelled() {
                        // Settle what Kafka was sent, so its rows are deleted now rather
                        // than sent again by the next relay (bounded by the producer's
                        // message timeout).
                        while !window.in_flight.is_empty() {
                            self.settle(&client, &statements, &mut window, true).await?;
                        }
                        return Ok(());
                    }
                    continue;
                }
                // Everything read so far is published: look again shortly after events,
                // later and later while none come.
                idle_poll = if settled > 0 {
                    IDLE_POLL
                } else {
                    (idle_poll * 2).min(IDLE_POLL_MAX)
                };
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

    /// Reads the unpublished rows after the window's cursor (one batch) and hands them to
    /// the producer in `seq` order, which it keeps; false if there were none.
    async fn send_batch(
        &self,
        client: &tokio_postgres::Client,
        statements: &RelayStatements,
        window: &mut Window,
    ) -> Result<bool, RelayError> {
        let rows = client
            .query(&statements.unpublished, &[&BATCH, &window.cursor])
            .await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.get(0);
            let topic: String = row.get(2);
            let mut event = Envelope {
                id: row.get::<_, Uuid>(1),
                key: row.get(3),
                event_type: row.get(4),
                version: row.get::<_, i32>(5) as u32,
                payload: row.get(6),
                traceparent: row.get(7),
                occurred_at: row.get(8),
            };
            let publishing = super::telemetry::publish_span(&self.name, &topic, &mut event);
            let bytes = event.to_bytes();
            let record = FutureRecord::to(&topic)
                .key(&event.key)
                .payload(&bytes)
                .headers(event.headers());
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push((seq, delivery, publishing)),
                Err((error, _)) => {
                    // The producer's queue is full: the rest is read again next time.
                    tracing::warn!(relay = %self.name, %error, "could not enqueue an outbox event");
                    break;
                }
            }
        }
        let Some(&(last, _, _)) = deliveries.last() else {
            if !rows.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            return Ok(false);
        };
        window.cursor = last;
        let name = self.name.clone();
        window.in_flight.push_back(Box::pin(async move {
            let mut published = Vec::with_capacity(deliveries.len());
            let mut refused = false;
            // A publish span ends when its event's acknowledgement arrives (dropped here).
            for (seq, delivery, _publishing) in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => published.push(seq),
                    Ok(Err((error, _))) => {
                        refused = true;
                        tracing::warn!(relay = %name, %error, seq, "Kafka did not acknowledge an outbox event");
                    }
                    Err(_) => {
                        refused = true;
                        tracing::warn!(relay = %name, seq, "delivery report lost");
                    }
                }
            }
            (published, refused)
        }));
        Ok(true)
    }

    /// Deletes the rows of the batches Kafka acknowledged, oldest first (waiting for the
    /// oldest when `wait`), with one statement; returns how many. A row Kafka did not
    /// acknowledge makes the relay wait for every batch in flight and read again from its
    /// oldest unpublished row, after a pause (Kafka is unwell): at least once, never lost.
    async fn settle(
        &self,
        client: &tokio_postgres::Client,
        statements: &RelayStatements,
        window: &mut Window,
        wait: bool,
    ) -> Result<usize, RelayError> {
        let mut published = Vec::new();
        let mut refused = false;
        let mut wait = wait;
        while let Some(acks) = window.in_flight.front_mut() {
            let settled = if wait || refused {
                Some(acks.await)
            } else {
                acks.now_or_never()
            };
            let Some((seqs, refused_any)) = settled else {
                break;
            };
            window.in_flight.pop_front();
            published.extend(seqs);
            refused |= refused_any;
            wait = false;
        }
        if !published.is_empty() {
            client
                .execute(&statements.delete_published, &[&published])
                .await?;
            self.metrics.outbox_published.inc_by(published.len() as u64);
        }
        if refused {
            window.cursor = 0;
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
