//! Building results from what a run recorded: [`Bucket`]s of counts and histograms
//! per endpoint and wall-clock second, turned into totals, per-second entries and
//! per-endpoint results ([`Results::build`]).
//!
//! The load engine and the user journeys record into buckets; anything else that
//! measures requests can too, and results built here are the same shape.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::{
    error_class::ErrorCounts,
    histogram::{new_histogram, EncodedHistogram, HistogramCodecError, LatencySummary},
    results::{
        EndpointResults, GeneratorHealth, Results, RunMetadata, SecondResults, Totals,
        SCHEMA_VERSION,
    },
    schedule::TargetSchedule,
};

/// What happened in one second at one endpoint, as seen by one or more workers.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Requests that were sent (answered or failed).
    pub requests: u64,
    /// Requests answered with a 1xx–3xx status.
    pub ok: u64,
    pub errors: ErrorCounts,
    /// Requests sent later than the late threshold after their intended time.
    pub late: u64,
    /// Requests never sent because they were overdue by more than the maximum send
    /// delay when a connection was free for them.
    pub dropped: u64,
    /// Latency of every answered request (any status), from the intended send time.
    pub latency: Histogram<u64>,
    /// Send delay (actual minus intended send time) of every sent request.
    pub send_delay: Histogram<u64>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            late: 0,
            dropped: 0,
            latency: new_histogram(),
            send_delay: new_histogram(),
        }
    }
}

impl Bucket {
    /// Adds another bucket into this one.
    pub fn merge(&mut self, other: &Bucket) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        self.late += other.late;
        self.dropped += other.dropped;
        // Both histograms have the one shape, so adding cannot go out of bounds.
        let _ = self.latency.add(&other.latency);
        let _ = self.send_delay.add(&other.send_delay);
    }

    /// Empties the bucket for reuse without reallocating its histograms.
    pub fn clear(&mut self) {
        self.requests = 0;
        self.ok = 0;
        self.errors = ErrorCounts::default();
        self.late = 0;
        self.dropped = 0;
        self.latency.reset();
        self.send_delay.reset();
    }
}

/// What a finished run recorded, to build results from (the engine fills it in;
/// other recorders, such as user journeys, can too).
pub struct RunRecord<'a> {
    pub metadata: RunMetadata,
    pub schedule: TargetSchedule,
    pub endpoint_names: &'a [String],
    /// `(endpoint index, Unix second) -> bucket`, merged across workers.
    pub collected: &'a BTreeMap<(usize, u64), Bucket>,
    pub late_threshold_ms: f64,
    pub max_send_delay_ms: f64,
}

impl Results {
    /// Builds results from what the collector gathered.
    pub fn build(record: RunRecord<'_>) -> Result<Results, HistogramCodecError> {
        let duration = record.metadata.duration_secs;
        let mut per_endpoint: BTreeMap<usize, Vec<(u64, &Bucket)>> = BTreeMap::new();
        let mut per_second: BTreeMap<u64, Bucket> = BTreeMap::new();
        for ((endpoint, second), bucket) in record.collected {
            per_endpoint
                .entry(*endpoint)
                .or_default()
                .push((*second, bucket));
            per_second.entry(*second).or_default().merge(bucket);
        }
        let mut endpoints = BTreeMap::new();
        let mut all = Bucket::default();
        for (index, name) in record.endpoint_names.iter().enumerate() {
            let mut sum = Bucket::default();
            let mut seconds = Vec::new();
            for (second, bucket) in per_endpoint.get(&index).into_iter().flatten() {
                sum.merge(bucket);
                seconds.push(SecondResults::of(*second, bucket)?);
            }
            all.merge(&sum);
            endpoints.insert(
                name.clone(),
                EndpointResults {
                    totals: Totals::of(&sum, duration)?,
                    seconds,
                },
            );
        }
        let totals = Totals::of(&all, duration)?;
        let seconds = per_second
            .iter()
            .map(|(second, bucket)| SecondResults::of(*second, bucket))
            .collect::<Result<_, _>>()?;
        Ok(Results {
            schema_version: SCHEMA_VERSION,
            generator: GeneratorHealth::judge(
                record.late_threshold_ms,
                record.max_send_delay_ms,
                &totals,
            ),
            metadata: record.metadata,
            schedule: record.schedule,
            totals,
            seconds,
            endpoints,
            consistency_window: None,
            write_ledger: None,
            journeys: None,
            faults: Vec::new(),
            server_metrics: Vec::new(),
            server_histograms: Vec::new(),
            database: None,
            checker: None,
            gates: Vec::new(),
            scenario_text: None,
            tls: None,
            capacity: None,
            resources: None,
            traces: None,
            prometheus: None,
            warm_up: None,
        })
    }
}

pub(crate) fn rate(requests: u64, duration_secs: f64) -> f64 {
    if duration_secs > 0.0 {
        requests as f64 / duration_secs
    } else {
        0.0
    }
}

impl Totals {
    pub(crate) fn of(bucket: &Bucket, duration_secs: f64) -> Result<Totals, HistogramCodecError> {
        Ok(Totals {
            requests: bucket.requests,
            ok: bucket.ok,
            errors: bucket.errors,
            late: bucket.late,
            dropped: bucket.dropped,
            achieved_rate: rate(bucket.requests, duration_secs),
            latency: EncodedHistogram::encode(&bucket.latency)?,
            latency_summary: LatencySummary::of(&bucket.latency),
            send_delay: EncodedHistogram::encode(&bucket.send_delay)?,
            send_delay_summary: LatencySummary::of(&bucket.send_delay),
        })
    }
}

impl SecondResults {
    fn of(second: u64, bucket: &Bucket) -> Result<SecondResults, HistogramCodecError> {
        Ok(SecondResults {
            second,
            requests: bucket.requests,
            ok: bucket.ok,
            errors: bucket.errors,
            late: bucket.late,
            dropped: bucket.dropped,
            latency: EncodedHistogram::encode(&bucket.latency)?,
        })
    }
}

/// An empty histogram in its stored form (for results with no requests).
pub fn empty_histogram() -> Result<EncodedHistogram, HistogramCodecError> {
    EncodedHistogram::encode(&new_histogram())
}
