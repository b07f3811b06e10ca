//! Idempotent event consumers with a dead-letter topic.
//!
//! [`EventConsumer`] takes records off Kafka one at a time per consumer, in partition order:
//!
//! 1. A record that is not an [`Envelope`], or whose type and version the handler does not
//!    know ([`HandleError::Poison`]), goes to the dead-letter topic with headers saying why
//!    and where it came from; the consumer goes on with the next record.
//! 2. Otherwise, in **one** database transaction, the event id is recorded in
//!    `processed_events` and the handler applies the event. A duplicate (the id is already
//!    there, after a redelivery) changes nothing. An event the handler passes over
//!    ([`EventHandler::passes_over`]: one it would not act on) skips the transaction.
//! 3. Only after the commit (or the dead-letter acknowledgement) is the record's offset
//!    stored for committing, so a crash re-delivers rather than loses; the time since the
//!    record was taken off Kafka goes into the `event_handling_seconds` histogram.
//!
//! Partitions are applied in parallel by the handler's [`EventHandler::WORKERS`] workers
//! ([`PARTITION_WORKERS`] unless it says otherwise), each partition always by the same one,
//! so events of one key (one partition) keep their order.
//!
//! Under a backlog a worker applies the records already waiting for it (up to the handler's
//! [`EventHandler::BATCH`]) in one transaction: one commit, so one WAL flush, for many
//! events, instead of one each, which is what capped the system's sagas. If anything in
//! such a batch fails (a poison event, a conflict, the database), the transaction rolls back
//! and the batch is applied again one record at a time, through the path above, so each
//! record still gets its own dead-lettering and retries. A handler applies such a batch one
//! event at a time (pipelined per key, [`apply_each`]), or as a whole with a few statements
//! whatever its size ([`BatchHandler`]: the saga's participants and orchestrator), a single
//! event then being a batch of one.
//!
//! A transient failure ([`HandleError::Retry`], or the database being down) rolls back and
//! retries the same record with exponential backoff, never skipping it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outbox::OutboxTx;
use super::ownership::{learn_partition_counts, Ownership, OwnershipContext};
use deadpool_postgres::Pool;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::envelope::Envelope;
use super::lag::LagReporter;
use super::metrics::Metrics;
use super::sql::Prepared;
use super::telemetry;
use tracing::Instrument;

/// The consumer every [`EventConsumer`] runs on: it tracks whether it owns every
/// partition it subscribes to ([`OwnershipContext`]).
pub type GroupConsumer = StreamConsumer<OwnershipContext>;

/// The table recording which events a consumer applied; part of every consuming service's
/// schema.
pub const PROCESSED_EVENTS_SCHEMA: &str = "
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
";

/// Workers applying records in parallel, one partition always on the same worker, unless
/// the handler says otherwise ([`EventHandler::WORKERS`]).
pub const PARTITION_WORKERS: usize = 4;
/// Records waiting per worker (at least two of the handler's batches); a full queue stops
/// taking records off Kafka.
const WORKER_QUEUE: usize = 64;

/// Conflicts retried without a pause before the backoff starts.
const IMMEDIATE_CONFLICT_RETRIES: u32 = 5;

/// The system's dead-letter topic.
pub const DEAD_LETTER_TOPIC: &str = "faultline.dead-letter";

/// What a handler can say about an event it could not apply.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The event can never be applied (unknown version, invalid payload): dead-letter it.
    #[error("poison event: {0}")]
    Poison(String),
    /// Something transient failed (a database error, a timeout): retry the same event.
    #[error("transient failure: {0}")]
    Retry(String),
    /// An optimistic-concurrency conflict (another writer got there first): retry the same
    /// event at once from a fresh read, backing off only if it keeps losing.
    #[error("conflict: {0}")]
    Conflict(String),
}

/// A payload that does not decode can never be applied: it is poison, by definition.
impl From<super::envelope::EnvelopeError> for HandleError {
    fn from(error: super::envelope::EnvelopeError) -> Self {
        HandleError::Poison(error.to_string())
    }
}

/// Poison unless `event` has the schema version a handler reads.
pub fn expect_version(event: &Envelope, version: u32) -> Result<(), HandleError> {
    if event.version == version {
        Ok(())
    } else {
        Err(HandleError::Poison(format!(
            "{} v{} is not known (this consumer reads v{version})",
            event.event_type, event.version
        )))
    }
}

impl From<tokio_postgres::Error> for HandleError {
    fn from(error: tokio_postgres::Error) -> Self {
        HandleError::Retry(error.to_string())
    }
}

/// Applies events inside the consumer's transaction. A handler that wakes readers of what
/// it wrote does it through [`OutboxTx::on_commit`], when they can see it.
pub trait EventHandler: Send + Sync + 'static {
    /// The most records one transaction applies under a backlog (one commit, one WAL flush
    /// for all of them).
    const BATCH: usize = 32;

    /// Workers applying this consumer's partitions side by side. Workers overlap one
    /// transaction's commit wait with another's work; but a handler whose batches lock the
    /// same rows whatever their partition (a product's stock) only makes them queue on
    /// each other's locks, so it runs one worker, whose batches grow with the load instead.
    const WORKERS: usize = PARTITION_WORKERS;

    /// Whether a batch's events of different keys may be applied at once by
    /// [`apply_each`] (their statements pipelined on the transaction's connection). False
    /// for a handler whose events of different keys read and write the same rows, or that
    /// calls out in order.
    const PIPELINED: bool = true;

    /// Applies a batch of events (each new: duplicates are already taken out) in `tx`.
    /// The default applies them one by one with [`EventHandler::handle`] ([`apply_each`]);
    /// a handler whose events of different keys write the same rows (a product's stock)
    /// applies the batch as a whole instead, locking those rows once, in one order.
    fn handle_batch(
        &self,
        tx: &OutboxTx<'_>,
        events: &[&Envelope],
    ) -> impl Future<Output = Result<(), HandleError>> + Send
    where
        Self: Sized,
    {
        apply_each(self, tx, events)
    }

    fn handle(
        &self,
        tx: &OutboxTx<'_>,
        event: &Envelope,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// Whether `event` is one this handler passes over, changing nothing (notifications and
    /// a saga's intermediate steps): the consumer then stores its offset without opening a
    /// transaction or recording the event id, since applying it again is as harmless as
    /// applying it once. False for anything the handler acts on or refuses (a poison event
    /// still goes to the dead-letter topic through [`EventHandler::handle`]).
    fn passes_over(&self, _event: &Envelope) -> bool {
        false
    }

    /// Where the consumer keeps whether it owns every partition of its topics, for a
    /// handler whose readers care (analytics' long-polls); `None` for the others.
    fn ownership(&self) -> Option<Ownership> {
        None
    }
}

/// A handler that applies a polled batch as a whole (e.g. its rows read with one statement,
/// the events decided in memory in order, the rows written with one), and a single event
/// as a batch of one, so that one path decides both. Every such type is an
/// [`EventHandler`].
pub trait BatchHandler: Send + Sync + 'static {
    /// See [`EventHandler::BATCH`]. Larger than [`EventHandler`]'s: a batch costs these
    /// handlers the same few statements whatever its size, so under a backlog a bigger one
    /// catches up with fewer commits (at 32, the analytics projector's batches averaged 24
    /// events at 500 checkouts/s and its lag grew).
    const BATCH: usize = 256;
    /// See [`EventHandler::WORKERS`].
    const WORKERS: usize = PARTITION_WORKERS;

    /// Applies `events` (each new, at least one: duplicates are already taken out) in `tx`,
    /// in order.
    fn apply(
        &self,
        tx: &OutboxTx<'_>,
        events: &[&Envelope],
    ) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// See [`EventHandler::ownership`].
    fn ownership(&self) -> Option<Ownership> {
        None
    }
}

impl<T: BatchHandler> EventHandler for T {
    const BATCH: usize = <T as BatchHandler>::BATCH;
    const WORKERS: usize = <T as BatchHandler>::WORKERS;

    async fn handle_batch(
        &self,
        tx: &OutboxTx<'_>,
        events: &[&Envelope],
    ) -> Result<(), HandleError> {
        self.apply(tx, events).await
    }

    async fn handle(&self, tx: &OutboxTx<'_>, event: &Envelope) -> Result<(), HandleError> {
        self.apply(tx, &[event]).await
    }

    fn ownership(&self) -> Option<Ownership> {
        BatchHandler::ownership(self)
    }
}

/// Decodes each event of a batch with `decode` once its schema version is `version`. The
/// first that cannot be decoded fails the batch as poison: the consumer then applies the
/// batch's events one at a time, and dead-letters that one.
pub fn decode_each<'a, C>(
    events: &[&'a Envelope],
    version: u32,
    decode: impl Fn(&Envelope) -> Result<C, HandleError>,
) -> Result<Vec<(&'a Envelope, C)>, HandleError> {
    events
        .iter()
        .map(|event| {
            expect_version(event, version)?;
            Ok((*event, decode(event)?))
        })
        .collect()
}

/// Poison: `consumer` has no use for events of `event`'s type.
pub fn not_handled(consumer: &str, event: &Envelope) -> HandleError {
    HandleError::Poison(format!("{consumer} does not handle {}", event.event_type))
}

/// `items` sorted, each once: the order in which a batch locks its rows, so two
/// transactions locking some of the same rows queue, never deadlock.
pub fn sorted_once<T: Ord>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_unstable();
    items.dedup();
    items
}

/// Applies `events` one by one with `handler`. When the handler is
/// [`EventHandler::PIPELINED`], one chain per key, in the batch's order, and the chains run
/// at once on the one connection, whose statements tokio-postgres pipelines: the batch costs
/// about as many round trips as its longest chain, not the sum of all of them.
pub async fn apply_each<H: EventHandler>(
    handler: &H,
    tx: &OutboxTx<'_>,
    events: &[&Envelope],
) -> Result<(), HandleError> {
    if !H::PIPELINED {
        for event in events {
            handler.handle(tx, event).await?;
        }
        return Ok(());
    }
    let mut chains: Vec<(&str, Vec<&Envelope>)> = Vec::new();
    for event in events {
        match chains.iter_mut().find(|(key, _)| *key == event.key) {
            Some((_, chain)) => chain.push(event),
            None => chains.push((&event.key, vec![event])),
        }
    }
    futures::future::try_join_all(chains.into_iter().map(|(_, chain)| async move {
        for event in chain {
            handler.handle(tx, event).await?;
        }
        Ok::<(), HandleError>(())
    }))
    .await?;
    Ok(())
}

/// A consumer group member applying events through an [`EventHandler`].
pub struct EventConsumer<H> {
    /// Consumer name: the dedup namespace and the metrics label.
    name: String,
    consumer: Arc<GroupConsumer>,
    dead_letters: FutureProducer,
    pool: Pool,
    handler: H,
    metrics: Metrics,
}

/// Why the consumer loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("consumer {name}: Kafka: {source}")]
    Kafka {
        name: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl<H: EventHandler> EventConsumer<H> {
    /// `consumer` must be created with `enable.auto.offset.store=false` (offsets are stored
    /// after each event is applied) and already subscribed.
    pub fn new(
        name: &str,
        consumer: GroupConsumer,
        dead_letters: FutureProducer,
        pool: Pool,
        handler: H,
        metrics: Metrics,
    ) -> EventConsumer<H> {
        consumer
            .context()
            .report_lag_to(LagReporter::new(name, metrics.clone()));
        EventConsumer {
            name: name.to_string(),
            consumer: Arc::new(consumer),
            dead_letters,
            pool,
            handler,
            metrics,
        }
    }

    /// Consumes until `shutdown` is cancelled, then commits the stored offsets.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumeError> {
        // Only a handler that reads ownership needs the partition counts it is decided by.
        let counts = (self.handler.ownership().is_some()).then(|| {
            tokio::spawn(learn_partition_counts(
                self.consumer.clone(),
                shutdown.clone(),
            ))
        });
        // The series exists, at zero, before the first event: a run reading it at its start
        // and end then counts every event it saw handled.
        self.metrics.event_handling.with_label_values(&[&self.name]);
        let this = Arc::new(self);
        let outcome = this.clone().consume(&shutdown).await;
        if let Some(counts) = counts {
            counts.abort();
        }
        outcome
    }

    /// Takes records off Kafka and hands each to the worker of its partition: partitions
    /// are applied in parallel (each transaction waits on its commit, not on the CPU), and
    /// in order within each partition, which is all the ordering events have.
    async fn consume(self: Arc<Self>, shutdown: &CancellationToken) -> Result<(), ConsumeError> {
        let mut workers = Vec::with_capacity(H::WORKERS);
        let mut queues = Vec::with_capacity(H::WORKERS);
        let queue_len = WORKER_QUEUE.max(2 * H::BATCH);
        for _ in 0..H::WORKERS.max(1) {
            // Each record with the instant it was taken off Kafka, for `event_handling`.
            let (queue, mut records) = mpsc::channel::<(OwnedMessage, Instant)>(queue_len);
            let this = self.clone();
            let shutdown = shutdown.clone();
            queues.push(queue);
            workers.push(tokio::spawn(async move {
                let handling = this.metrics.event_handling.with_label_values(&[&this.name]);
                let mut batch = Vec::with_capacity(H::BATCH);
                let mut received = Vec::with_capacity(H::BATCH);
                while let Some((message, at)) = records.recv().await {
                    batch.push(message);
                    received.push(at);
                    while batch.len() < H::BATCH {
                        match records.try_recv() {
                            Ok((message, at)) => {
                                batch.push(message);
                                received.push(at);
                            }
                            Err(_) => break,
                        }
                    }
                    if !this.process_batch(&batch, &shutdown).await {
                        break; // shutting down in the middle of retries: redelivered later
                    }
                    for at in received.drain(..) {
                        handling.observe(at.elapsed().as_secs_f64());
                    }
                    for message in batch.drain(..) {
                        // Stored only once the record is applied. librdkafka's offset store
                        // adds the 1 itself (it commits the next offset to read).
                        if let Err(error) = this.consumer.store_offset(
                            message.topic(),
                            message.partition(),
                            message.offset(),
                        ) {
                            // A partition revoked in a rebalance: its new owner reads the
                            // record again, and the event id makes that harmless.
                            tracing::debug!(consumer = %this.name, %error, "offset not stored");
                        }
                    }
                }
            }));
        }
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => (message.detach(), Instant::now()),
                Err(error) => {
                    // Broker-side trouble is reported here and retried by librdkafka.
                    tracing::warn!(consumer = %self.name, %error, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let worker = message.0.partition().unsigned_abs() as usize % queues.len();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                sent = queues[worker].send(message) => if sent.is_err() { break },
            }
        }
        drop(queues);
        for worker in workers {
            let _ = worker.await;
        }
        // Commit what was applied, so a restart does not replay it (it would be deduplicated
        // anyway, but replaying costs time after every deploy).
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(consumer = %self.name, %error, "final offset commit");
        }
        Ok(())
    }

    /// Applies `batch` in one transaction if every record decodes and applies; otherwise
    /// one record at a time ([`Self::process`]). False if interrupted by shutdown.
    async fn process_batch(&self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        if batch.len() > 1 {
            let mut events: Result<Vec<Envelope>, _> = batch
                .iter()
                .map(|message| Envelope::decode(message.payload(), message.headers()))
                .collect();
            if let Ok(events) = events.as_mut() {
                let before = events.len();
                events.retain(|event| !self.handler.passes_over(event));
                self.count((before - events.len()) as u64, "passed_over");
                if events.is_empty() {
                    return true;
                }
            }
            // After the filter: an event passed over gets no span, as in `process`.
            let consuming = telemetry::consume_spans(&self.name, events.as_deref_mut().ok());
            match events {
                Ok(events) => match self
                    .apply_batch(&events)
                    .instrument(consuming.current())
                    .await
                {
                    Ok(applied) => {
                        self.count(applied as u64, "applied");
                        self.count((events.len() - applied) as u64, "duplicate");
                        return true;
                    }
                    Err(error) => {
                        tracing::debug!(consumer = %self.name, records = batch.len(), %error, "batch rolled back; applying one at a time");
                    }
                },
                Err(error) => {
                    tracing::debug!(consumer = %self.name, %error, "a record in the batch does not decode; applying one at a time");
                }
            }
        }
        for message in batch {
            if !self.process(message, shutdown).await {
                return false;
            }
        }
        true
    }

    /// Applies every event not applied before in one transaction; returns how many were new.
    async fn apply_batch(&self, events: &[Envelope]) -> Result<usize, HandleError> {
        let mut client = self.connection().await?;
        let tx = OutboxTx::begin(&mut client).await?;
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        let mut new_ids: HashSet<Uuid> = tx
            .query_prepared(
                "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[])
                 ON CONFLICT DO NOTHING RETURNING event_id",
                &[&self.name, &ids],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut applied = Vec::with_capacity(new_ids.len());
        for event in events {
            // Removed once taken: a record redelivered within the batch is applied once.
            if new_ids.remove(&event.id) {
                applied.push(event);
            }
        }
        if !applied.is_empty() {
            self.handler.handle_batch(&tx, &applied).await?;
        }
        tx.commit().await?;
        Ok(applied.len())
    }

    fn count(&self, records: u64, outcome: &str) {
        if records > 0 {
            self.metrics
                .events_consumed
                .with_label_values(&[&self.name, outcome])
                .inc_by(records);
        }
    }

    /// Applies, deduplicates or dead-letters one record; false if interrupted by shutdown.
    async fn process(&self, message: &OwnedMessage, shutdown: &CancellationToken) -> bool {
        let mut event = match Envelope::decode(message.payload(), message.headers()) {
            Ok(event) => event,
            Err(error) => {
                return self
                    .dead_letter(message, &error.to_string(), shutdown)
                    .await
            }
        };
        if self.handler.passes_over(&event) {
            self.count(1, "passed_over");
            return true;
        }
        let consuming =
            telemetry::consume_spans(&self.name, Some(std::slice::from_mut(&mut event)));
        let mut backoff = Duration::from_millis(50);
        let mut conflicts = 0;
        loop {
            match self.apply(&event).instrument(consuming.current()).await {
                Ok(true) => {
                    self.count(1, "applied");
                    return true;
                }
                Ok(false) => {
                    self.count(1, "duplicate");
                    return true;
                }
                Err(HandleError::Poison(reason)) => {
                    return self.dead_letter(message, &reason, shutdown).await
                }
                Err(HandleError::Conflict(reason)) if conflicts < IMMEDIATE_CONFLICT_RETRIES => {
                    conflicts += 1;
                    self.metrics
                        .event_retries
                        .with_label_values(&[&self.name])
                        .inc();
                    tracing::debug!(consumer = %self.name, event_id = %event.id, %reason, conflicts, "conflict; retrying at once");
                }
                Err(HandleError::Retry(reason) | HandleError::Conflict(reason)) => {
                    self.metrics
                        .event_retries
                        .with_label_values(&[&self.name])
                        .inc();
                    tracing::warn!(consumer = %self.name, event_id = %event.id, %reason, ?backoff, "retrying event");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// A pooled connection; none free (the database down) is a transient failure.
    async fn connection(&self) -> Result<deadpool_postgres::Client, HandleError> {
        self.pool
            .get()
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))
    }

    /// Ok(true) if applied now, Ok(false) if it had been applied before.
    async fn apply(&self, event: &Envelope) -> Result<bool, HandleError> {
        let mut client = self.connection().await?;
        let tx = OutboxTx::begin(&mut client).await?;
        let inserted = tx
            .execute_prepared(
                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&self.name, &event.id],
            )
            .await?;
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        self.handler.handle(&tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Copies the record to the dead-letter topic; retries until Kafka acknowledges it.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(
            consumer = %self.name,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            %reason,
            "dead-lettering a record"
        );
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        for (key, value) in [
            ("dlq.reason", reason),
            ("dlq.consumer", self.name.as_str()),
            ("dlq.source.topic", message.topic()),
            ("dlq.source.partition", partition.as_str()),
            ("dlq.source.offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(DEAD_LETTER_TOPIC).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self
                .dead_letters
                .send(record, Duration::from_secs(10))
                .await
            {
                Ok(_) => {
                    self.count(1, "dead_lettered");
                    return true;
                }
                Err((error, _)) => {
                    tracing::warn!(consumer = %self.name, %error, "could not dead-letter; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
