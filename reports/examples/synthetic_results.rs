//! Synthetic results for the report benchmark (`scripts/bench-reports`): a 10-minute
//! open-model run at 2,000 requests/s over 20 endpoints, recorded through the load
//! generator's own recorder types, with random latencies (a log-normal body, a slow
//! tail, and a stall during a fault window), errors in that window, a consistency
//! window and scraped server series.
//!
//! Usage: `synthetic_results OUT.json [--endpoints N] [--seconds S] [--seed SEED]`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use faultline_loadgen::{
    classify::ErrorClass,
    histogram::{new_histogram, record, EncodedHistogram},
    recorder::{Bucket, Collected},
    results::{
        CheckerResults, FaultWindow, GateSpec, Machine, MetricKind, MetricSeries, RunMetadata,
        RunRecord, TargetSchedule, TimePoint,
    },
    Arrivals, HttpVersion, LatencyOrigin, Results, Schedule,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut output: Option<PathBuf> = None;
    let (mut endpoints, mut seconds, mut seed) = (20usize, 600u64, 7u64);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoints" => endpoints = args.next().unwrap_or_default().parse()?,
            "--seconds" => seconds = args.next().unwrap_or_default().parse()?,
            "--seed" => seed = args.next().unwrap_or_default().parse()?,
            path => output = Some(path.into()),
        }
    }
    let output = output.ok_or_else(|| {
        anyhow::anyhow!("usage: synthetic_results OUT.json [--endpoints N] [--seconds S]")
    })?;
    let rate_per_endpoint = 100u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let start_unix = 1_700_000_000u64;
    let fault = (seconds / 3, seconds / 3 + 30);

    let mut collected = Collected::default();
    for endpoint in 0..endpoints {
        // Each endpoint has its own typical latency, 1–20 ms.
        let typical_ms = 1.0 + 19.0 * endpoint as f64 / endpoints.max(1) as f64;
        for second in 0..seconds {
            let mut bucket = Bucket::default();
            let in_fault = (fault.0..fault.1).contains(&second);
            for _ in 0..rate_per_endpoint {
                // Log-normal body by Box-Muller, a 1% tail ten times slower.
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let mut ms = typical_ms * (0.4 * normal).exp();
                if rng.random::<f64>() < 0.01 {
                    ms *= 10.0;
                }
                if in_fault {
                    ms += 200.0 * rng.random::<f64>();
                }
                bucket.requests += 1;
                record(
                    &mut bucket.send_delay,
                    Duration::from_micros(rng.random_range(0..500)),
                );
                record(&mut bucket.latency, Duration::from_secs_f64(ms / 1000.0));
                if in_fault && rng.random::<f64>() < 0.05 {
                    bucket.errors.add(ErrorClass::Http5xx);
                } else if rng.random::<f64>() < 0.0005 {
                    bucket.errors.add(ErrorClass::Timeout);
                } else {
                    bucket.ok += 1;
                }
            }
            collected
                .buckets
                .insert((endpoint, start_unix + second), bucket);
        }
    }
    let names: Vec<String> = (0..endpoints)
        .map(|i| {
            format!(
                "{} /api/resource-{i:02}",
                if i % 3 == 0 { "POST" } else { "GET" }
            )
        })
        .collect();
    let rate = (rate_per_endpoint * endpoints as u64) as f64;
    let schedule = Schedule::constant(rate, Duration::from_secs(seconds), Arrivals::Uniform)?;
    let started_at =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_secs(start_unix))
            .to_string();
    let mut results = Results::build(RunRecord {
        metadata: RunMetadata {
            scenario: Some("synthetic-10min-20-endpoints".into()),
            target: "http://127.0.0.1:8080".into(),
            started_at,
            duration_secs: seconds as f64,
            machine: Machine::this(),
            faultline_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: None,
            http_version: HttpVersion::Http1,
            connections: 256,
            timeout_ms: 5000,
            latency_origin: LatencyOrigin::IntendedSendTime,
            workers: 1,
        },
        schedule: TargetSchedule::of(&schedule),
        endpoint_names: &names,
        collected: &collected,
        late_threshold_ms: 10.0,
        max_send_delay_ms: 5000.0,
    })?;

    results.faults = vec![FaultWindow {
        label: "partition kafka-1".into(),
        kind: "partition".into(),
        target: "kafka-1".into(),
        start: TimePoint::Offset(fault.0 as f64),
        end: Some(TimePoint::Offset(fault.1 as f64)),
    }];
    let mut window = new_histogram();
    for _ in 0..50_000 {
        record(
            &mut window,
            Duration::from_secs_f64(0.05 + 0.3 * rng.random::<f64>().powi(3)),
        );
    }
    results.consistency_window = Some(EncodedHistogram::encode(&window)?);
    for service in ["orders", "inventory", "payments", "analytics"] {
        let points = (0..seconds)
            .step_by(5)
            .map(|t| {
                let lag = if (fault.0..fault.1 + 20).contains(&t) {
                    5_000.0
                } else {
                    30.0
                };
                (t as f64, lag * rng.random::<f64>())
            })
            .collect();
        results.server_metrics.push(MetricSeries {
            name: "faultline_consumer_lag".into(),
            labels: BTreeMap::from([("service".into(), service.into())]),
            kind: Some(MetricKind::Gauge),
            points,
        });
    }
    results.checker = Some(CheckerResults {
        checked: 120_000,
        lost: 0,
        duplicated: 0,
        inconsistent: 0,
        settle_secs: Some(4.2),
        notes: Vec::new(),
    });
    results.gates = vec![GateSpec {
        metric: "http.p99".into(),
        max: Some("450ms".into()),
        min: None,
    }];
    results.write(&output)?;
    Ok(())
}
