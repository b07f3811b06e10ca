//! Document 002's Table 5 claims held against a real `faultline kafka-bench --table5`
//! run (`kafka-bench.json`, 3 brokers, 10,000 records a row, from a `faultline claims
//! --quick`): every Table 5 claim gets its figure from the row it names, a rate short
//! of the document's is answered with the rate as this machine's capacity, and
//! "batching adds 50-100 ms" is the difference of two rows' paced end-to-end p50, held
//! at both ends of its range. The run predates paced phases, so the tests give its rows
//! paced phases of known latency.

use std::time::Duration;

use faultline_reports::{claims_kafka, ClaimResult, ClaimStatus, Claims};
use faultline_results::histogram::{new_histogram, record};
use faultline_results::kafka_bench::{KafkaBenchResults, PacedMeasurement, Table5Row};
use faultline_results::{EncodedHistogram, LatencySummary};

fn bench() -> KafkaBenchResults {
    serde_json::from_str(include_str!("kafka-bench.json")).unwrap()
}

/// The run with a paced phase in each row whose end-to-end latencies are `e2e_ms(row)`
/// (send→ack the same: the claims do not read it).
fn paced(e2e_ms: impl Fn(Table5Row) -> Vec<u64>) -> KafkaBenchResults {
    let mut bench = bench();
    for row in &mut bench.rows {
        let mut histogram = new_histogram();
        for ms in e2e_ms(row.table5.unwrap()) {
            record(&mut histogram, Duration::from_millis(ms));
        }
        let mut rdkafka = row.rdkafka.clone();
        rdkafka.end_to_end_latency = LatencySummary::of(&histogram);
        rdkafka.end_to_end_histogram = EncodedHistogram::encode(&histogram).unwrap();
        row.paced = Some(PacedMeasurement {
            rate_per_sec: 2000.0,
            duration_secs: 3.0,
            rdkafka,
        });
    }
    bench
}

/// Linger 0 adds nothing; a paced record waits up to the linger for its batch.
fn waits_for_linger(row: Table5Row) -> Vec<u64> {
    let linger = row.compression_and_linger().1;
    (0..=10).map(|i| 3 + linger * i / 10).collect()
}

fn batching(bench: &KafkaBenchResults) -> ClaimResult {
    let claims = Claims::builtin().unwrap();
    let claim = (claims.claims.iter())
        .find(|c| c.raw.id == "002-batching-latency")
        .unwrap();
    claims_kafka::evaluate(claim, bench)
}

fn paced_e2e_p50_secs(bench: &KafkaBenchResults, row: Table5Row) -> f64 {
    let row = bench.rows.iter().find(|r| r.table5 == Some(row)).unwrap();
    let paced = row.paced.as_ref().unwrap();
    let histogram = paced.rdkafka.end_to_end_histogram.decode().unwrap();
    histogram.value_at_quantile(0.5) as f64 / 1e6
}

#[test]
fn every_table5_claim_is_measured_from_the_row_it_names() {
    let bench = paced(waits_for_linger);
    let claims = Claims::builtin().unwrap();
    let kafka: Vec<_> = claims
        .claims
        .iter()
        .filter(|c| c.raw.family.as_deref() == Some("kafka"))
        .collect();
    assert!(kafka.len() >= 11, "{}", kafka.len());
    for claim in kafka {
        let result = claims_kafka::evaluate(claim, &bench);
        assert!(
            result.measured.is_some(),
            "{}: {:?}",
            claim.raw.id,
            result.status
        );
        assert!(
            !matches!(
                result.status,
                ClaimStatus::NotMeasured(_) | ClaimStatus::NotApplicable(_)
            ),
            "{}",
            claim.raw.id
        );
    }

    let baseline = claims
        .claims
        .iter()
        .find(|c| c.raw.id == "002-kafka-baseline-throughput")
        .unwrap();
    let result = claims_kafka::evaluate(baseline, &bench);
    let row = bench
        .rows
        .iter()
        .find(|r| r.table5 == Some(Table5Row::Baseline))
        .unwrap();
    assert_eq!(result.measured.unwrap().value, row.rdkafka.msgs_per_sec);
    if row.rdkafka.msgs_per_sec < 156_000.0 {
        assert_eq!(result.capacity, Some(row.rdkafka.msgs_per_sec));
        match &result.status {
            ClaimStatus::HoldsUpTo(text) => {
                assert!(
                    text.contains("(document: 156000/s on 3-node Kafka"),
                    "{text}"
                );
                assert!(text.contains("ProducerPerformance"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    let added = batching(&bench).measured.unwrap().value;
    let expected = paced_e2e_p50_secs(&bench, Table5Row::Batching50ms)
        - paced_e2e_p50_secs(&bench, Table5Row::Baseline);
    assert!((added - expected).abs() < 1e-9, "{added} vs {expected}");
}

#[test]
fn batching_adds_the_paced_rows_p50_difference_held_at_both_ends_of_its_range() {
    // The unpaced rows alone cannot answer: their latency is queueing.
    match batching(&bench()).status {
        ClaimStatus::NotMeasured(why) => assert!(why.contains("paced phase"), "{why}"),
        other => panic!("{other:?}"),
    }

    // 25 ms added (a 50 ms linger waits half of it at the median): below the range.
    let half_linger = paced(waits_for_linger);
    let result = batching(&half_linger);
    let added = result.measured.unwrap().value;
    assert!((added - 0.025).abs() < 0.001, "{added}");
    assert_eq!(result.status, ClaimStatus::Fail);
    assert_eq!(result.claimed, "50 ms to 100 ms");

    // Within the range it holds; above it, or less latency than the baseline (noise,
    // not an improvement the document could mean), it does not.
    let added_ms = |ms: u64| {
        paced(move |row| match row {
            Table5Row::Batching50ms => vec![10 + ms],
            _ => vec![10],
        })
    };
    assert_eq!(batching(&added_ms(70)).status, ClaimStatus::Pass);
    assert_eq!(batching(&added_ms(130)).status, ClaimStatus::Fail);
    let noise = paced(|row| match row {
        Table5Row::Baseline => vec![14],
        _ => vec![10],
    });
    let result = batching(&noise);
    assert!(result.measured.unwrap().value < 0.0);
    assert_eq!(result.status, ClaimStatus::Fail);
}

#[test]
fn a_row_the_benchmark_did_not_run_is_not_measured_naming_it() {
    let mut bench = bench();
    bench
        .rows
        .retain(|row| row.table5 != Some(Table5Row::CompressionLz4));
    let claims = Claims::builtin().unwrap();
    let lz4 = claims
        .claims
        .iter()
        .find(|c| c.raw.id == "002-kafka-lz4-throughput")
        .unwrap();
    match claims_kafka::evaluate(lz4, &bench).status {
        ClaimStatus::NotMeasured(why) => assert!(why.contains("compression_lz4"), "{why}"),
        other => panic!("{other:?}"),
    }
}
