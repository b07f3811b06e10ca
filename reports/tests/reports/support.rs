//! A local test server, one real load run shared by the tests, and helpers.
//!
//! The server (hyper, 127.0.0.1 port 0) answers `/` at once, stalls `/stall` for
//! the first 400 ms of every second, and answers `/flaky` with 503 between 1.5 s and
//! 2.5 s after it started, which is where the test's fault window is.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use bytes::Bytes;
use faultline_loadgen::{engine, LoadConfig, RequestSpec, Schedule, Target};
use faultline_results::{
    histogram::new_histogram, Arrivals, CheckerResults, EncodedHistogram, FaultWindow, MetricKind,
    MetricSeries, Results, TimePoint,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, time::Instant};

async fn respond(
    request: Request<Incoming>,
    started: Instant,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let since = started.elapsed();
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
    match request.uri().path() {
        "/stall" => {
            let into_second = Duration::from_nanos((since.as_nanos() % 1_000_000_000) as u64);
            let stall = Duration::from_millis(400);
            if into_second < stall {
                tokio::time::sleep(stall - into_second).await;
            }
        }
        "/flaky" if (1500..2500).contains(&since.as_millis()) => {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        _ => {}
    }
    Ok(response)
}

/// Runs the load engine for 4 s at 150 requests/s over `/`, `/stall` and `/flaky`.
async fn load_run() -> Results {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |request| respond(request, started));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let endpoint = |path: &str| {
        let target = Target::parse(&format!("http://{addr}{path}")).unwrap();
        RequestSpec::for_target(&target, Method::GET, Default::default(), Bytes::new())
    };
    let schedule = Schedule::constant(150.0, Duration::from_secs(4), Arrivals::Uniform).unwrap();
    let mut config = LoadConfig::new(Target::parse(&format!("http://{addr}/")).unwrap(), schedule);
    config.requests = vec![endpoint("/"), endpoint("/stall"), endpoint("/flaky")];
    config.connections = 4;
    config.run_info.scenario = Some("reports-acceptance".into());
    config.run_info.git_commit = Some("0123456789abcdef".into());
    let results = engine::run(config, |_| {}).await.unwrap();
    server.abort();
    results
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
        },
        FaultWindow {
            label: "latency +50ms kafka".into(),
            kind: "latency".into(),
            target: "127.0.0.1:9092".into(),
            start: TimePoint::Offset(3.0),
            end: Some(TimePoint::Offset(3.6)),
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

/// The shared real run, with what the run will record later added.
pub fn real_results() -> &'static Results {
    RESULTS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut results = runtime.block_on(load_run());
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
