//! Synthetic results for the report benchmark (`scripts/bench-reports`): a 10-minute
//! open-model run at 2,000 requests/s over 20 endpoints, recorded into the results
//! contract's own buckets (as the load generator records), with random latencies (a log-normal body, a slow
//! tail, and a stall during a fault window), errors in that window, a consistency
//! window and scraped server series.
//!
//! Usage: `synthetic_results OUT.json [--endpoints N] [--seconds S] [--seed SEED]`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use faultline_results::{
    histogram::{new_histogram, record},
    Arrivals, Bucket, CheckerResults, EncodedHistogram, ErrorClass, FaultWindow, GateSpec,
    HttpVersion, LatencyOrigin, Machine, MetricKind, MetricSeries, Results, RunMetadata, RunRecord,
    Stage, TargetSchedule, TimePoint,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// What to synthesize, from the command line.
struct Options {
    output: PathBuf,
    endpoints: usize,
    seconds: u64,
    seed: u64,
}

/// Requests per second to each endpoint.
const RATE_PER_ENDPOINT: u64 = 100;
/// Unix second the synthetic run starts at (fixed, so outputs are comparable).
const START_UNIX: u64 = 1_700_000_000;

fn options() -> anyhow::Result<Options> {
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
    Ok(Options {
        output,
        endpoints,
        seconds,
        seed,
    })
}

/// One second of one endpoint: a log-normal body around `typical_ms`, a 1% tail ten
/// times slower, and during the fault up to 200 ms more and 5% server errors.
fn second_bucket(rng: &mut StdRng, typical_ms: f64, in_fault: bool) -> Bucket {
    let mut bucket = Bucket::default();
    for _ in 0..RATE_PER_ENDPOINT {
        // Box-Muller.
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
    bucket
}

/// The requests of every endpoint and second, keyed as [`RunRecord`] wants them.
fn requests(
    rng: &mut StdRng,
    options: &Options,
    fault: (u64, u64),
) -> BTreeMap<(usize, u64), Bucket> {
    let mut buckets = BTreeMap::new();
    for endpoint in 0..options.endpoints {
        // Each endpoint has its own typical latency, 1–20 ms.
        let typical_ms = 1.0 + 19.0 * endpoint as f64 / options.endpoints.max(1) as f64;
        for second in 0..options.seconds {
            let in_fault = (fault.0..fault.1).contains(&second);
            let bucket = second_bucket(rng, typical_ms, in_fault);
            buckets.insert((endpoint, START_UNIX + second), bucket);
        }
    }
    buckets
}

fn metadata(seconds: u64) -> RunMetadata {
    RunMetadata {
        scenario: Some("synthetic-10min-20-endpoints".into()),
        target: "http://127.0.0.1:8080".into(),
        started_at: humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_secs(START_UNIX),
        )
        .to_string(),
        duration_secs: seconds as f64,
        machine: Machine::this(),
        faultline_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: None,
        http_version: HttpVersion::Http1,
        connections: 256,
        streams: 1,
        timeout_ms: 5000,
        latency_origin: LatencyOrigin::IntendedSendTime,
        workers: 1,
    }
}

/// What a full run adds beyond load: the fault, the consistency window, consumer
/// lag that rises during the fault, the checker and a gate.
fn add_run_extras(
    results: &mut Results,
    rng: &mut StdRng,
    seconds: u64,
    fault: (u64, u64),
) -> anyhow::Result<()> {
    results.faults = vec![FaultWindow {
        label: "partition kafka-1".into(),
        kind: "partition".into(),
        target: "kafka-1".into(),
        start: TimePoint::Offset(fault.0 as f64),
        end: Some(TimePoint::Offset(fault.1 as f64)),
        ready_after_secs: None,
        steps: Vec::new(),
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
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let fault = (options.seconds / 3, options.seconds / 3 + 30);
    let buckets = requests(&mut rng, &options, fault);
    let names: Vec<String> = (0..options.endpoints)
        .map(|i| {
            format!(
                "{} /api/resource-{i:02}",
                if i % 3 == 0 { "POST" } else { "GET" }
            )
        })
        .collect();
    let rate = (RATE_PER_ENDPOINT * options.endpoints as u64) as f64;
    let stage = Stage::constant(Duration::from_secs(options.seconds), rate);
    let mut results = Results::build(RunRecord {
        metadata: metadata(options.seconds),
        schedule: TargetSchedule::open(vec![stage], Arrivals::Uniform),
        endpoint_names: &names,
        collected: &buckets,
        late_threshold_ms: 10.0,
        max_send_delay_ms: 5000.0,
    })?;
    add_run_extras(&mut results, &mut rng, options.seconds, fault)?;
    results.write(&options.output)?;
    Ok(())
}
