//! Merging results of two workers is exact: the same as recording both into one.

use std::time::Duration;

use faultline_loadgen::{
    engine,
    recorder::{lock, Collected, Outcome, SharedLog},
    Schedule,
};
use faultline_results::{
    Arrivals, ErrorClass, HttpVersion, LatencyOrigin, Machine, Results, RunMetadata, RunRecord,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::support::{decode, TestServer};

/// Results of one worker that recorded `requests` (second, latency µs, error).
fn results_of(requests: &[(u64, u64, Option<ErrorClass>)], started_at: &str) -> Results {
    let log = SharedLog::default();
    for (second, micros, error) in requests {
        let endpoint = (*micros % 2) as usize;
        let outcome = match error {
            Some(ErrorClass::Timeout) => Outcome::Failed(ErrorClass::Timeout),
            error => Outcome::Answered {
                latency: Duration::from_micros(*micros),
                error: *error,
            },
        };
        lock(&log).record(
            endpoint,
            *second,
            Duration::from_micros(micros / 10),
            *micros > 100_000,
            outcome,
        );
    }
    let mut collected = Collected::default();
    collected.collect(&[log], None);
    let schedule = Schedule::constant(100.0, Duration::from_secs(5), Arrivals::Uniform).unwrap();
    Results::build(RunRecord {
        metadata: RunMetadata {
            scenario: None,
            target: "http://127.0.0.1:1/".into(),
            started_at: started_at.into(),
            duration_secs: 5.0,
            machine: Machine::this(),
            faultline_version: "test".into(),
            git_commit: None,
            http_version: HttpVersion::Http1,
            connections: 1,
            streams: 1,
            timeout_ms: 5000,
            latency_origin: LatencyOrigin::IntendedSendTime,
            workers: 1,
        },
        schedule: schedule.target(),
        endpoint_names: &["GET /a".to_string(), "GET /b".to_string()],
        collected: &collected.buckets,
        late_threshold_ms: 10.0,
        max_send_delay_ms: 5000.0,
    })
    .unwrap()
}

fn random_requests(
    rng: &mut StdRng,
    count: usize,
    first_second: u64,
) -> Vec<(u64, u64, Option<ErrorClass>)> {
    let mut requests: Vec<_> = (0..count)
        .map(|_| {
            let second = first_second + rng.random_range(0..5);
            // Log-uniform from 10 µs to 10 s, so every bucket range of the histogram is used.
            let micros = 10f64.powf(rng.random_range(1.0..7.0)) as u64;
            let error = match rng.random_range(0..100) {
                0 => Some(ErrorClass::Timeout),
                1 => Some(ErrorClass::Http5xx),
                _ => None,
            };
            (second, micros, error)
        })
        .collect();
    // In finishing order, as a worker records them.
    requests.sort_by_key(|r| r.0);
    requests
}

/// Through JSON, as `faultline merge` reads files.
fn round_trip(results: &Results) -> Results {
    serde_json::from_str(&serde_json::to_string(results).unwrap()).unwrap()
}

#[test]
fn merging_two_results_equals_recording_both_runs_in_one_histogram() {
    let mut rng = StdRng::seed_from_u64(42);
    let a = random_requests(&mut rng, 20_000, 1_700_000_000);
    let b = random_requests(&mut rng, 15_000, 1_700_000_003);
    let both: Vec<_> = a.iter().chain(&b).copied().collect();

    let merged = Results::merge(
        &round_trip(&results_of(&a, "2024-01-01T00:00:00Z")),
        &round_trip(&results_of(&b, "2024-01-01T00:00:03Z")),
    )
    .unwrap();
    let single = results_of(&both, "2024-01-01T00:00:00Z");

    let (m, s) = (&merged.totals, &single.totals);
    assert_eq!(
        (m.requests, m.ok, m.errors, m.late, m.dropped),
        (s.requests, s.ok, s.errors, s.late, s.dropped)
    );
    let (merged_latency, single_latency) = (decode(&m.latency), decode(&s.latency));
    assert_eq!(merged_latency.len(), single_latency.len());
    // Equal counts in every bucket mean every percentile is equal; a few are checked
    // by name as well.
    assert_eq!(merged_latency, single_latency);
    for q in [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0] {
        assert_eq!(
            merged_latency.value_at_quantile(q),
            single_latency.value_at_quantile(q),
            "quantile {q}"
        );
    }
    assert_eq!(m.latency_summary, s.latency_summary);
    assert_eq!(decode(&m.send_delay), decode(&s.send_delay));

    // Seconds line up by wall-clock second, overlapping ones added.
    assert_eq!(merged.seconds.len(), single.seconds.len());
    for (ms, ss) in merged.seconds.iter().zip(&single.seconds) {
        assert_eq!(
            (ms.second, ms.requests, ms.ok, ms.errors),
            (ss.second, ss.requests, ss.ok, ss.errors)
        );
        assert_eq!(decode(&ms.latency), decode(&ss.latency));
    }
    for (name, endpoint) in &single.endpoints {
        let merged_endpoint = &merged.endpoints[name];
        assert_eq!(merged_endpoint.totals.requests, endpoint.totals.requests);
        assert_eq!(
            decode(&merged_endpoint.totals.latency),
            decode(&endpoint.totals.latency)
        );
    }
    // Side-by-side workers: the span covers both, the target rates add.
    assert_eq!(merged.metadata.workers, 2);
    assert_eq!(merged.metadata.duration_secs, 8.0);
    assert_eq!(merged.schedule.stages[0].from_rate, 200.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_two_real_runs_adds_their_requests() {
    let server = TestServer::start().await;
    let schedule = Schedule::constant(300.0, Duration::from_secs(2), Arrivals::Uniform).unwrap();
    let (a, b) = tokio::join!(
        engine::run(server.config("/", schedule.clone()), |_| {}),
        engine::run(server.config("/", schedule), |_| {}),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let merged = Results::merge(&a, &b).unwrap();
    assert_eq!(merged.totals.requests, 1200);
    let mut union = decode(&a.totals.latency);
    union.add(decode(&b.totals.latency)).unwrap();
    assert_eq!(
        decode(&merged.totals.latency).value_at_quantile(0.99),
        union.value_at_quantile(0.99)
    );
    assert_eq!(merged.seconds.iter().map(|s| s.requests).sum::<u64>(), 1200);
    assert!(
        merged.totals.achieved_rate > 500.0,
        "{}",
        merged.totals.achieved_rate
    );
}
