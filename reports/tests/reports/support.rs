//! One run shared by the tests, recorded the way the load engine records it, and
//! helpers.
//!
//! The run is deterministic and made here, so reports depend on the results contract
//! alone (not on the load engine, which loadgen's own tests check against the same
//! schema): 150 requests/s for 4 s, in turn to `/`, `/stall` and `/flaky`. `/` answers
//! in about a millisecond; `/stall` holds every request due in the first 400 ms of a
//! second until 400 ms into it, and latency counts from when a request was due; `/flaky`
//! answers 503 between 1.5 s and 2.5 s, which is where the test's fault window is.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use faultline_results::{
    histogram::{new_histogram, record},
    Arrivals, Bucket, CheckerResults, EncodedHistogram, ErrorClass, FaultWindow, HttpVersion,
    LatencyOrigin, Machine, MetricKind, MetricSeries, Results, RunMetadata, RunRecord, Stage,
    TargetSchedule, TimePoint,
};

/// Requests per second, all endpoints together.
const RATE: f64 = 150.0;
/// How long the run lasts.
const SECONDS: u64 = 4;
/// 2026-01-01T00:00:00Z, the run's start.
const START_UNIX: u64 = 1_767_225_600;
const ENDPOINTS: [&str; 3] = ["GET /", "GET /stall", "GET /flaky"];

/// Seconds from when request `k` was due (at `due` seconds into the run, to
/// `endpoint`) to its answer, and whether the answer was an error.
fn answer(k: u64, due: f64, endpoint: usize) -> (f64, bool) {
    // About a millisecond of service, varied so that percentiles differ.
    let service = 0.0008 + 0.0004 * ((k * 7919) % 100) as f64 / 100.0;
    let into_second = due.fract();
    match endpoint {
        1 if into_second < 0.4 => (0.4 - into_second + service, false),
        2 => (service, (1.5..2.5).contains(&due)),
        _ => (service, false),
    }
}

/// The run, built from buckets per endpoint and wall-clock second of the answer.
fn load_run() -> Results {
    let mut buckets: BTreeMap<(usize, u64), Bucket> = BTreeMap::new();
    for k in 0..(RATE as u64 * SECONDS) {
        let due = k as f64 / RATE;
        let endpoint = (k % 3) as usize;
        let (latency, failed) = answer(k, due, endpoint);
        let finished = START_UNIX + (due + latency).floor() as u64;
        let bucket = buckets.entry((endpoint, finished)).or_default();
        bucket.requests += 1;
        record(&mut bucket.latency, Duration::from_secs_f64(latency));
        record(&mut bucket.send_delay, Duration::from_micros(50 + k % 150));
        if failed {
            bucket.errors.add(ErrorClass::Http5xx);
        } else {
            bucket.ok += 1;
        }
    }
    let names: Vec<String> = ENDPOINTS.iter().map(|n| n.to_string()).collect();
    Results::build(RunRecord {
        metadata: RunMetadata {
            scenario: Some("reports-acceptance".into()),
            target: "http://127.0.0.1:8080/".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            duration_secs: SECONDS as f64,
            machine: Machine::this(),
            faultline_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: Some("0123456789abcdef".into()),
            http_version: HttpVersion::Http1,
            connections: 4,
            streams: 1,
            timeout_ms: 5000,
            latency_origin: LatencyOrigin::IntendedSendTime,
            workers: 1,
        },
        schedule: TargetSchedule::open(
            vec![Stage::constant(Duration::from_secs(SECONDS), RATE)],
            Arrivals::Uniform,
        ),
        endpoint_names: &names,
        collected: &buckets,
        late_threshold_ms: 10.0,
        max_send_delay_ms: 5000.0,
    })
    .unwrap()
}

/// What the run will record later (chaos timeline, scrape, checker), made up here.
fn add_recorded_later(results: &mut Results) {
    results.faults = vec![
        FaultWindow {
            label: "pause flaky backend".into(),
            kind: "pause".into(),
            target: "flaky".into(),
            start: TimePoint::Offset(1.5),
            end: Some(TimePoint::Offset(2.5)),
            ready_after_secs: Some(0.4),
            steps: Vec::new(),
        },
        FaultWindow {
            label: "latency +50ms kafka".into(),
            kind: "latency".into(),
            target: "127.0.0.1:9092".into(),
            start: TimePoint::Offset(3.0),
            end: Some(TimePoint::Offset(3.6)),
            ready_after_secs: None,
            steps: Vec::new(),
        },
    ];
    let mut window = new_histogram();
    for i in 0..2000u64 {
        // A skewed spread from ~5 ms to ~400 ms, deterministic.
        let micros = 5_000 + (i * i * 97) % 395_000 / (1 + i % 7);
        window.record(micros).unwrap();
    }
    results.consistency_window = Some(EncodedHistogram::encode(&window).unwrap());
    let series = |name: &str, labels: &[(&str, &str)], kind, f: &dyn Fn(f64) -> f64| MetricSeries {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        kind: Some(kind),
        points: (0..=8).map(|i| i as f64 * 0.5).map(|t| (t, f(t))).collect(),
    };
    let during = |t: f64| (1.5..=2.5).contains(&t);
    results.server_metrics = vec![
        series(
            "faultline_consumer_lag",
            &[
                ("service", "analytics"),
                ("consumer", "orders-view"),
                ("partition", "0"),
            ],
            MetricKind::Gauge,
            &|t| if during(t) { 400.0 + 300.0 * t } else { 20.0 },
        ),
        series(
            "faultline_consumer_lag",
            &[
                ("service", "notifications"),
                ("consumer", "mailer"),
                ("partition", "0"),
            ],
            MetricKind::Gauge,
            &|t| 50.0 + 10.0 * t,
        ),
        series(
            "faultline_outbox_backlog",
            &[("service", "orders")],
            MetricKind::Gauge,
            &|t| if during(t) { 120.0 } else { 3.0 },
        ),
        series(
            "faultline_saga_orders",
            &[("service", "orders"), ("status", "running")],
            MetricKind::Gauge,
            &|t| 10.0 + 5.0 * t,
        ),
        series(
            "faultline_saga_orders",
            &[("service", "orders"), ("status", "compensating")],
            MetricKind::Gauge,
            &|t| if during(t) { 8.0 } else { 0.0 },
        ),
        series(
            "faultline_circuit_breaker_state",
            &[
                ("service", "gateway"),
                ("upstream", "orders"),
                ("replica", "1"),
            ],
            MetricKind::Gauge,
            &|t| if during(t) { 1.0 } else { 0.0 },
        ),
    ];
    results.checker = Some(CheckerResults {
        checked: 600,
        lost: 0,
        duplicated: 0,
        inconsistent: 0,
        settle_secs: Some(1.25),
        notes: vec!["every acknowledged order reached a terminal state".into()],
    });
    results.scenario_text = Some("[load]\nrate = 150\nduration = \"4s\"\n".into());
}

static RESULTS: OnceLock<Results> = OnceLock::new();

/// The shared run, with what the run will record later added.
pub fn real_results() -> &'static Results {
    RESULTS.get_or_init(|| {
        let mut results = load_run();
        add_recorded_later(&mut results);
        results
    })
}

/// The same run without anything but what the load engine itself recorded.
pub fn plain_results() -> Results {
    let mut results = real_results().clone();
    results.faults.clear();
    results.server_metrics.clear();
    results.checker = None;
    results.consistency_window = None;
    results.scenario_text = None;
    results
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Writes results into `dir` and returns the file's path.
pub fn write_results(results: &Results, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    results.write(&path).unwrap();
    path
}
