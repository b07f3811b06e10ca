//! The open model keeps its rate; the closed model sends as fast as it can.

use std::time::{Duration, Instant};

use faultline_loadgen::{engine, Schedule};
use faultline_results::{Arrivals, Stage};

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_is_achieved_within_one_percent_over_ten_seconds() {
    let server = TestServer::start().await;
    let schedule = Schedule::constant(1000.0, Duration::from_secs(10), Arrivals::Uniform).unwrap();
    let began = Instant::now();
    let results = engine::run(server.config("/", schedule), |_| {})
        .await
        .unwrap();
    let wall = began.elapsed().as_secs_f64();
    let totals = &results.totals;
    assert!(
        (totals.achieved_rate - 1000.0).abs() <= 10.0,
        "achieved {}/s",
        totals.achieved_rate
    );
    assert_eq!(totals.ok, totals.requests);
    assert_eq!(totals.dropped, 0);
    assert!(results.generator.kept_up, "{:?}", results.generator.message);
    // The requests were spread over the ten seconds, not sent in a burst.
    assert!((10.0..10.5).contains(&wall), "took {wall} s");
    let seconds = &results.seconds;
    for second in &seconds[1..seconds.len() - 1] {
        assert!(
            (980..=1020).contains(&second.requests),
            "second {}: {}",
            second.second,
            second.requests
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramped_stages_send_the_area_under_the_rate_line() {
    let server = TestServer::start().await;
    let stages = vec![
        Stage {
            duration: Duration::from_secs(1),
            from_rate: 0.0,
            to_rate: 400.0,
        },
        Stage::constant(Duration::from_millis(500), 400.0),
    ];
    let schedule = Schedule::open(stages, Arrivals::Uniform).unwrap();
    let results = engine::run(server.config("/", schedule), |_| {})
        .await
        .unwrap();
    assert_eq!(results.totals.requests, 200 + 200);
    assert_eq!(results.schedule.stages.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisson_arrivals_keep_the_mean_rate_end_to_end() {
    let server = TestServer::start().await;
    let schedule = Schedule::constant(
        500.0,
        Duration::from_secs(2),
        Arrivals::Poisson { seed: 11 },
    )
    .unwrap();
    let results = engine::run(server.config("/", schedule), |_| {})
        .await
        .unwrap();
    // 1000 expected; a Poisson count's standard deviation is about 32.
    assert!(
        (results.totals.requests as f64 - 1000.0).abs() < 130.0,
        "{}",
        results.totals.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_sends_back_to_back_on_every_connection() {
    let server = TestServer::start().await;
    let schedule = Schedule::closed(Duration::from_secs(1)).unwrap();
    let mut config = server.config("/", schedule);
    config.connections = 4;
    let results = engine::run(config, |_| {}).await.unwrap();
    // Far above any paced rate used here: a local hello server answers in well under 1 ms.
    assert!(
        results.totals.requests > 2000,
        "{}",
        results.totals.requests
    );
    assert_eq!(results.totals.errors.total(), 0);
    assert_eq!(results.totals.late, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_runs_the_same_engine() {
    let server = TestServer::start().await;
    let schedule = Schedule::constant(200.0, Duration::from_secs(1), Arrivals::Uniform).unwrap();
    let mut config = server.config("/", schedule);
    config.http_version = faultline_results::HttpVersion::Http2;
    config.connections = 2;
    let results = engine::run(config, |_| {}).await.unwrap();
    assert_eq!(results.totals.requests, 200);
    assert_eq!(results.totals.ok, 200, "{:?}", results.totals.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_reported_once_a_second() {
    let server = TestServer::start().await;
    let schedule = Schedule::constant(100.0, Duration::from_secs(2), Arrivals::Uniform).unwrap();
    let mut reports = Vec::new();
    engine::run(server.config("/", schedule), |p| reports.push(p.clone()))
        .await
        .unwrap();
    assert!(
        !reports.is_empty() && reports.len() <= 3,
        "{}",
        reports.len()
    );
    assert_eq!(reports[0].target_rate, Some(100.0));
    assert!(reports.iter().any(|p| p.last_second_requests > 0));
    assert!(reports.last().unwrap().requests > 0);
}
