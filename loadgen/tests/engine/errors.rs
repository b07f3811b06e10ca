//! Clear errors before a run, and classified errors during one.

use std::time::Duration;

use faultline_loadgen::{engine, LoadError, Schedule, Target};
use faultline_results::Arrivals;

use crate::support::TestServer;

#[tokio::test]
async fn an_unreachable_target_is_a_usage_error_before_the_run() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/");
    let schedule = Schedule::constant(10.0, Duration::from_secs(1), Arrivals::Uniform).unwrap();
    let err = engine::run(
        faultline_loadgen::LoadConfig::new(Target::parse(&url).unwrap(), schedule),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LoadError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn a_bad_url_is_a_usage_error() {
    let err = Target::parse("http//missing-colon").unwrap_err();
    assert!(matches!(err, LoadError::BadUrl { .. }), "{err}");
    assert!(err.to_string().contains("http//missing-colon"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn zero_and_negative_rates_are_usage_errors() {
    for rate in [0.0, -5.0] {
        let err = Schedule::constant(rate, Duration::from_secs(1), Arrivals::Uniform).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}

#[test]
fn a_malformed_stage_string_names_the_stage_and_column() {
    let err = LoadError::from(faultline_loadgen::parse_stages("10s:0->500, 60s:abc").unwrap_err());
    let message = err.to_string();
    assert!(message.contains("stage 2 at column 17"), "{message}");
    assert!(message.contains("\"abc\""), "{message}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified_per_endpoint() {
    let server = TestServer::start().await;
    let schedule = Schedule::constant(50.0, Duration::from_secs(1), Arrivals::Uniform).unwrap();
    let mut config = server.config("/", schedule);
    config.requests = ["/", "/status/404", "/status/503", "/reset", "/hang"]
        .iter()
        .map(|path| server.endpoint(path))
        .collect();
    config.connections = 16;
    config.timeout = Duration::from_millis(300);
    let results = engine::run(config, |_| {}).await.unwrap();
    let endpoint = |name: &str| &results.endpoints[name].totals;
    assert_eq!(endpoint("GET /").ok, 10);
    assert_eq!(endpoint("GET /status/404").errors.http_4xx, 10);
    assert_eq!(endpoint("GET /status/503").errors.http_5xx, 10);
    assert_eq!(
        endpoint("GET /reset").errors.reset,
        10,
        "{:?}",
        endpoint("GET /reset").errors
    );
    assert_eq!(
        endpoint("GET /hang").errors.timeout,
        10,
        "{:?}",
        endpoint("GET /hang").errors
    );
    assert_eq!(results.totals.requests, 50);
    assert_eq!(results.totals.errors.total(), 40);
    // Answered errors have a latency; failures without an answer do not.
    assert_eq!(
        faultline_results::EncodedHistogram::decode(&results.totals.latency)
            .unwrap()
            .len(),
        30
    );
}
