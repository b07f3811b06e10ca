//! A server that stalls 500 ms once a second must show in the p99, because latency
//! is measured from each request's intended send time. Measuring from the actual
//! send time (the coordinated-omission mistake) hides the stall in the same
//! scenario, which proves the first test tells the two apart.

use std::time::Duration;

use faultline_loadgen::{engine, Schedule};
use faultline_results::{Arrivals, LatencyOrigin};

use crate::support::{decode, TestServer};

/// 200 requests/s for 4 s over a single connection against `/stall`. With one
/// connection, exactly one request a second meets the stall, and the ~100 requests
/// due during it wait for the connection.
async fn stalled_run(origin: LatencyOrigin) -> faultline_results::Results {
    let server = TestServer::start().await;
    let schedule = Schedule::constant(200.0, Duration::from_secs(4), Arrivals::Uniform).unwrap();
    let mut config = server.config("/stall", schedule);
    config.connections = 1;
    config.latency_origin = origin;
    engine::run(config, |_| {}).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_server_shows_in_p99_when_measured_from_intended_time() {
    let results = stalled_run(LatencyOrigin::IntendedSendTime).await;
    let totals = &results.totals;
    assert_eq!(
        totals.requests, 800,
        "every scheduled request is sent, late or not"
    );
    assert_eq!(totals.dropped, 0);
    let latency = decode(&totals.latency);
    assert!(
        latency.value_at_quantile(0.99) >= 250_000,
        "p99 {} µs must reflect the 500 ms stall",
        latency.value_at_quantile(0.99)
    );
    // The waiting shows in the send delay too: requests due during a stall left late.
    let send_delay = decode(&totals.send_delay);
    assert!(
        send_delay.value_at_quantile(0.99) >= 250_000,
        "send delay p99 {}",
        send_delay.value_at_quantile(0.99)
    );
    assert!(totals.late >= 200, "{} late", totals.late);
    assert!(
        !results.generator.kept_up,
        "a stalled single connection cannot keep the schedule"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measuring_from_the_actual_send_time_hides_the_same_stall() {
    let results = stalled_run(LatencyOrigin::ActualSendTime).await;
    let latency = decode(&results.totals.latency);
    assert_eq!(results.totals.requests, 800);
    // The stall is still there (the max), but only one request a second saw it.
    assert!(latency.max() >= 250_000, "max {}", latency.max());
    assert!(
        latency.value_at_quantile(0.99) < 250_000,
        "p99 {} µs: measured from the send time the stall hides",
        latency.value_at_quantile(0.99)
    );
}
