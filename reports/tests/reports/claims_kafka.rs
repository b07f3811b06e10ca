//! Document 002's Table 5 claims held against a real `faultline kafka-bench --table5`
//! run (`kafka-bench.json`, 3 brokers, 10,000 records a row, from a `faultline claims
//! --quick`): every Table 5 claim gets its figure from the row it names, a rate short
//! of the document's is answered with the rate as this machine's capacity, and
//! "batching adds 50-100 ms" is the difference of two rows' end-to-end p50.

use faultline_reports::{claims_kafka, ClaimStatus, Claims};
use faultline_results::kafka_bench::{KafkaBenchResults, Table5Row};

fn bench() -> KafkaBenchResults {
    serde_json::from_str(include_str!("kafka-bench.json")).unwrap()
}

fn e2e_p50_secs(bench: &KafkaBenchResults, row: Table5Row) -> f64 {
    let row = bench.rows.iter().find(|r| r.table5 == Some(row)).unwrap();
    let histogram = row.rdkafka.end_to_end_histogram.decode().unwrap();
    histogram.value_at_quantile(0.5) as f64 / 1e6
}

#[test]
fn every_table5_claim_is_measured_from_the_row_it_names() {
    let bench = bench();
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

    let batching = claims
        .claims
        .iter()
        .find(|c| c.raw.id == "002-batching-latency")
        .unwrap();
    let added = claims_kafka::evaluate(batching, &bench)
        .measured
        .unwrap()
        .value;
    let expected =
        e2e_p50_secs(&bench, Table5Row::Batching50ms) - e2e_p50_secs(&bench, Table5Row::Baseline);
    assert!((added - expected).abs() < 1e-9, "{added} vs {expected}");
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
