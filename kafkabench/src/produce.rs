//! faultline's side of a row: rdkafka producers, and a consumer for end-to-end latency.
//!
//! Each of the row's producers is a [`ThreadedProducer`] fed by its own OS thread as fast
//! as librdkafka takes records (like the Java tool's `--throughput -1`). Every record's
//! value starts with its send time, in nanoseconds since the row's origin instant, so
//! that no per-record state is kept: the delivery callback ([`DeliveryRecorder`]) reads
//! the time back from the acknowledged record to get send → ack, and the consumer thread
//! (reading every partition from the beginning, as the OpenMessaging Benchmark's
//! consumers do) gets send → consume. The rest of the value is random capital letters,
//! the Java tool's payload, so both compress alike.
//!
//! With a rate, each producer sends its share of it on a fixed schedule (a record late
//! on it goes at once, so the schedule catches up); the send time stamped is the actual
//! one, as the Java tool's.
//!
//! A record whose send finds librdkafka's queue full is retried with its first send
//! time, as Java's blocking `send()` counts its wait in the tool's latency; the queue is
//! bounded in bytes like the Java producer's `buffer.memory`. Before the clock starts,
//! each producer sends one unstamped warm-up record and waits for it, so that connecting,
//! fetching the new topic's metadata and getting an idempotent producer id are not
//! latency (the Java tool's first `send()` blocks on the same before its clock runs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use faultline_results::histogram::{self, new_histogram};
use faultline_results::kafka_bench::{ProducerSettings, RdkafkaMeasurement};
use faultline_results::{EncodedHistogram, LatencySummary};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use crate::cpu::CpuMeter;
use crate::spec::RowBound;
use crate::BenchError;

/// Bytes at the start of each value that hold its send time.
const STAMP_BYTES: usize = 8;
/// How long the last acknowledgements may take once every record was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a consumer poll waits; also how often it checks whether it is done.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// The Java producer's default `buffer.memory` (32 MiB), in librdkafka's KiB.
const BUFFER_KIB: u32 = 32 * 1024;
/// The value of a warm-up record: too short to hold a send time, so never measured.
const WARM_UP: &[u8] = b"warm-up";

/// One row's rdkafka phase: where, what and how long.
#[derive(Debug, Clone)]
pub struct RdkafkaRow<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub settings: &'a ProducerSettings,
    pub bound: RowBound,
    pub consume_timeout: Duration,
    /// Broker processes whose CPU the row records.
    pub broker_pids: Vec<u32>,
}

/// A value of `bytes` random capital letters, as `ProducerPerformance` makes its payload.
pub fn payload(bytes: u64) -> Vec<u8> {
    (0..bytes)
        .map(|_| b'A' + rand_below_26())
        .collect::<Vec<u8>>()
}

fn rand_below_26() -> u8 {
    // Uniform enough for a payload: the low bits of a fresh v4 UUID's random bytes.
    uuid::Uuid::new_v4().as_bytes()[0] % 26
}

fn stamp(value: &mut [u8], since_origin: Duration) {
    let nanos = u64::try_from(since_origin.as_nanos()).unwrap_or(u64::MAX);
    value[..STAMP_BYTES].copy_from_slice(&nanos.to_le_bytes());
}

/// The send time a record carries, if it carries one.
fn stamp_of(value: Option<&[u8]>) -> Option<Duration> {
    let bytes: [u8; STAMP_BYTES] = value?.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_le_bytes(bytes)))
}

/// Latency from a record's send time to now.
fn since_stamp(origin: Instant, value: Option<&[u8]>) -> Option<Duration> {
    Some(origin.elapsed().saturating_sub(stamp_of(value)?))
}

#[derive(Debug)]
struct Delivered {
    histogram: Histogram<u64>,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
    last_ack: Duration,
    /// When the first producer's clock started (after its warm-up).
    first_send: Option<Duration>,
}

/// The producers' delivery callback: send → ack into one histogram. The lock is held
/// for one record and only librdkafka's poll threads take it.
struct DeliveryRecorder {
    origin: Instant,
    delivered: Arc<Mutex<Delivered>>,
}

impl ClientContext for DeliveryRecorder {}

impl ProducerContext for DeliveryRecorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(message) => {
                // Warm-up records carry no send time and do not count.
                if let Some(latency) = since_stamp(self.origin, message.payload()) {
                    histogram::record(&mut delivered.histogram, latency);
                    delivered.acked += 1;
                    delivered.last_ack = self.origin.elapsed();
                }
            }
            Err((error, _)) => {
                delivered.failed += 1;
                delivered
                    .first_error
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }
}

fn producer_config(row: &RdkafkaRow<'_>) -> ClientConfig {
    let s = row.settings;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", row.bootstrap)
        .set("acks", &s.acks)
        .set("compression.type", &s.compression)
        .set("linger.ms", s.linger_ms.to_string())
        .set("queue.buffering.max.kbytes", BUFFER_KIB.to_string())
        // The Java client's default since Kafka 3.0 wherever acks=all; the same here so
        // that both sides pay for the same guarantees.
        .set("enable.idempotence", (s.acks == "all").to_string())
        .set("log_level", "3");
    if let Some(bytes) = s.batch_bytes {
        config.set("batch.size", bytes.to_string());
    }
    config
}

fn rdkafka_error(doing: &str, error: KafkaError) -> BenchError {
    BenchError::Kafka {
        doing: doing.to_string(),
        reason: error.to_string(),
    }
}

/// Records each producer thread sends: the row's count split as evenly as it goes.
pub(crate) fn share(records: u64, producers: u32, index: u32) -> u64 {
    let n = u64::from(producers);
    records / n + u64::from(u64::from(index) < records % n)
}

/// Sends records until its share or the row's time is used up; returns how many it sent.
fn send_loop(
    producer: &ThreadedProducer<DeliveryRecorder>,
    row: &RdkafkaRow<'_>,
    origin: Instant,
    quota: Option<u64>,
) -> Result<u64, BenchError> {
    let mut value = payload(row.settings.message_bytes);
    let deadline = match row.bound {
        RowBound::Duration(d) => Some(Instant::now() + d),
        RowBound::Records(_) => None,
    };
    delivered_start(producer, origin);
    let started = Instant::now();
    let rate = row
        .settings
        .rate_per_sec
        .map(|total| total / f64::from(row.settings.producers.max(1)));
    let mut sent = 0_u64;
    while quota.is_none_or(|q| sent < q) && deadline.is_none_or(|d| Instant::now() < d) {
        if let Some(rate) = rate {
            let due = started + due_after(sent, rate);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        stamp(&mut value, origin.elapsed());
        let mut record = BaseRecord::<(), [u8]>::to(row.topic).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(rdkafka_error("sending a record", error)),
            }
        }
        sent += 1;
    }
    Ok(sent)
}

/// When record `index` of a producer sending `rate` records a second is due, after its
/// first.
fn due_after(index: u64, rate: f64) -> Duration {
    Duration::try_from_secs_f64(index as f64 / rate).unwrap_or(Duration::MAX)
}

/// Notes when this producer's clock started.
fn delivered_start(producer: &ThreadedProducer<DeliveryRecorder>, origin: Instant) {
    let now = origin.elapsed();
    let mut delivered = producer
        .context()
        .delivered
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    delivered.first_send = Some(delivered.first_send.map_or(now, |first| first.min(now)));
}

/// Sends the warm-up record and waits for its acknowledgement.
fn warm_up(producer: &ThreadedProducer<DeliveryRecorder>, topic: &str) -> Result<(), BenchError> {
    producer
        .send(BaseRecord::<(), [u8]>::to(topic).payload(WARM_UP))
        .map_err(|(e, _)| rdkafka_error("sending the warm-up record", e))?;
    producer
        .flush(FLUSH_TIMEOUT)
        .map_err(|e| rdkafka_error("waiting for the warm-up record", e))
}

/// Runs one producer to the end of its share and waits for its acknowledgements; every
/// producer's clock starts together, once all are warm.
fn run_producer(
    row: &RdkafkaRow<'_>,
    origin: Instant,
    delivered: Arc<Mutex<Delivered>>,
    quota: Option<u64>,
    warm: &Barrier,
) -> Result<u64, BenchError> {
    let context = DeliveryRecorder { origin, delivered };
    let producer: Result<ThreadedProducer<DeliveryRecorder>, BenchError> = producer_config(row)
        .create_with_context(context)
        .map_err(|e| rdkafka_error("creating a producer", e))
        .and_then(|producer| warm_up(&producer, row.topic).map(|()| producer));
    // Even a failed producer reaches the barrier, or the others would wait for ever.
    warm.wait();
    let producer = producer?;
    let sent = send_loop(&producer, row, origin, quota)?;
    producer
        .flush(FLUSH_TIMEOUT)
        .map_err(|e| rdkafka_error("waiting for the last acknowledgements", e))?;
    Ok(sent)
}

/// The end-to-end consumer: reads every partition from the start until it has seen
/// `expected` records (set once the producers are done), or the timeout after that.
fn consume(
    consumer: BaseConsumer,
    origin: Instant,
    expected: &AtomicU64,
    timeout: Duration,
) -> (Histogram<u64>, u64) {
    let mut histogram = new_histogram();
    let mut consumed = 0_u64;
    let mut give_up: Option<Instant> = None;
    loop {
        let target = expected.load(Ordering::Acquire);
        if consumed >= target {
            break;
        }
        if target != u64::MAX {
            let at = *give_up.get_or_insert_with(|| Instant::now() + timeout);
            if Instant::now() >= at {
                break;
            }
        }
        match consumer.poll(POLL_WAIT) {
            Some(Ok(message)) => {
                if let Some(latency) = since_stamp(origin, message.payload()) {
                    histogram::record(&mut histogram, latency);
                    consumed += 1;
                }
            }
            Some(Err(error)) => tracing::debug!(%error, "end-to-end consumer"),
            None => {}
        }
    }
    (histogram, consumed)
}

fn start_consumer(row: &RdkafkaRow<'_>) -> Result<BaseConsumer, BenchError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", row.bootstrap)
        .set("group.id", format!("{}-e2e", row.topic))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| rdkafka_error("creating the end-to-end consumer", e))?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..i32::try_from(row.settings.partitions).unwrap_or(i32::MAX) {
        partitions
            .add_partition_offset(row.topic, partition, Offset::Beginning)
            .map_err(|e| rdkafka_error("assigning partitions", e))?;
    }
    consumer
        .assign(&partitions)
        .map_err(|e| rdkafka_error("assigning partitions", e))?;
    // Connected before the first record goes out, so that its first fetches do not
    // count as latency.
    consumer
        .fetch_metadata(Some(row.topic), Duration::from_secs(10))
        .map_err(|e| rdkafka_error("reading the topic's metadata", e))?;
    Ok(consumer)
}

/// Runs the row's producers and the end-to-end consumer; blocks until both are done.
pub fn run_row(row: &RdkafkaRow<'_>) -> Result<RdkafkaMeasurement, BenchError> {
    let producers = row.settings.producers;
    let consumer = start_consumer(row)?;
    let origin = Instant::now();
    let delivered = Arc::new(Mutex::new(Delivered {
        histogram: new_histogram(),
        acked: 0,
        failed: 0,
        first_error: None,
        last_ack: Duration::ZERO,
        first_send: None,
    }));
    let warm = Barrier::new(producers as usize);
    let expected = AtomicU64::new(u64::MAX);
    let brokers = CpuMeter::start(row.broker_pids.clone());
    let client = CpuMeter::start(vec![std::process::id()]);
    let (sent, (end_to_end, consumed)) = thread::scope(|scope| {
        let reader = scope.spawn(|| consume(consumer, origin, &expected, row.consume_timeout));
        let senders: Vec<_> = (0..producers)
            .map(|index| {
                let quota = match row.bound {
                    RowBound::Records(n) => Some(share(n, producers, index)),
                    RowBound::Duration(_) => None,
                };
                let delivered = Arc::clone(&delivered);
                let warm = &warm;
                scope.spawn(move || run_producer(row, origin, delivered, quota, warm))
            })
            .collect();
        let sent: Result<u64, BenchError> = senders
            .into_iter()
            .map(|sender| sender.join().unwrap_or(Err(BenchError::Panicked)))
            .sum();
        let acked = delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .acked;
        // On a failed producer the consumer waits for what was acknowledged, then stops.
        expected.store(acked, Ordering::Release);
        let read = reader.join().unwrap_or_else(|_| (new_histogram(), 0));
        (sent, read)
    });
    sent?;
    let (broker_cpu, client_cpu) = (brokers.stop(), client.stop());
    let delivered = delivered.lock().unwrap_or_else(PoisonError::into_inner);
    if delivered.acked == 0 {
        return Err(BenchError::Kafka {
            doing: format!("producing to {}", row.topic),
            reason: delivered
                .first_error
                .clone()
                .unwrap_or_else(|| "no record was acknowledged".into()),
        });
    }
    let started = delivered.first_send.unwrap_or_default();
    let elapsed_secs = delivered
        .last_ack
        .saturating_sub(started)
        .as_secs_f64()
        .max(1e-6);
    let msgs_per_sec = delivered.acked as f64 / elapsed_secs;
    Ok(RdkafkaMeasurement {
        acked: delivered.acked,
        failed: delivered.failed,
        elapsed_secs,
        msgs_per_sec,
        mb_per_sec: msgs_per_sec * row.settings.message_bytes as f64 / 1e6,
        produce_latency: LatencySummary::of(&delivered.histogram),
        produce_histogram: EncodedHistogram::encode(&delivered.histogram)?,
        end_to_end_latency: LatencySummary::of(&end_to_end),
        end_to_end_histogram: EncodedHistogram::encode(&end_to_end)?,
        consumed,
        broker_cpu,
        client_cpu,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_stamped_value_gives_back_its_send_time() {
        let mut value = payload(64);
        stamp(&mut value, Duration::from_micros(1_234_567));
        assert_eq!(
            stamp_of(Some(&value)),
            Some(Duration::from_micros(1_234_567))
        );
        assert!(value[STAMP_BYTES..].iter().all(u8::is_ascii_uppercase));
        assert_eq!(stamp_of(Some(&value[..4])), None);
        assert_eq!(stamp_of(None), None);
    }

    #[test]
    fn a_paced_producer_sends_on_a_fixed_schedule() {
        assert_eq!(due_after(0, 500.0), Duration::ZERO);
        assert_eq!(due_after(500, 500.0), Duration::from_secs(1));
        assert_eq!(due_after(3, 2000.0), Duration::from_micros(1500));
    }

    #[test]
    fn producers_share_the_records_of_a_row_exactly() {
        let shares: Vec<u64> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(shares, [4, 3, 3]);
        assert_eq!((0..7).map(|i| share(1000, 7, i)).sum::<u64>(), 1000);
    }
}
