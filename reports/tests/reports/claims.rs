//! Claims of the documents held against a real run: measured numbers come from the
//! results, and a metric the run did not record is "not measured in this run".

use std::path::Path;

use faultline_reports::{report::Report, ClaimStatus, Claims, GateReport, Metric};

use crate::support::{plain_results, real_results};

const CLAIMS: &str = r#"
[groups]
root = ["GET /"]
users = ["* /users*"]

[[claim]]
id = "p99"
document = "doc.txt"
section = "Performance"
quote = "P99: 450ms"
category = "latency"
metric = "http.p99"
comparator = "<="
value = "450ms"
hardware = "not stated"

[[claim]]
id = "root-rate"
document = "doc.txt"
section = "Throughput"
quote = "2,500 req/s"
category = "throughput"
metric = "group:root.rate"
comparator = ">="
value = "2500/s"
hardware = "8 cores"

[[claim]]
id = "users-p99"
document = "doc.txt"
section = "Throughput"
quote = "User Service p99 120ms"
category = "latency"
metric = "group:users.p99"
comparator = "<="
value = "120ms"
hardware = "not stated"

[[claim]]
id = "consistency-at-load"
document = "doc.txt"
section = "Table 3"
quote = "High (10K req/s) p99 1.2 s"
category = "consistency"
metric = "consistency.p99"
comparator = "<="
value = "1.2s"
condition = "http.rate>=10000/s"
hardware = "not stated"
"#;

#[test]
fn a_claim_whose_metric_was_measured_is_evaluated_with_the_measured_number() {
    let results = real_results();
    let claims = Claims::parse(CLAIMS, Path::new("claims.toml")).unwrap();
    let evaluated = claims.evaluate(results);

    let p99 = &evaluated[0];
    let measured = p99.measured.unwrap();
    // The number is the run's own p99, in seconds.
    let expected = results
        .totals
        .latency
        .decode()
        .unwrap()
        .value_at_quantile(0.99) as f64
        / 1e6;
    assert_eq!(measured.value, expected);
    assert_eq!(results.totals.latency_summary.p99_us as f64 / 1e6, expected);
    let expected_status = if expected <= 0.45 {
        ClaimStatus::Pass
    } else {
        ClaimStatus::Fail
    };
    assert_eq!(p99.status, expected_status);
    assert_eq!(p99.claimed, "≤ 450 ms");

    // 150 requests/s over three endpoints: "GET /" makes ~50/s, far from 2,500/s.
    let rate = &evaluated[1];
    assert_eq!(rate.status, ClaimStatus::Fail);
    let root_rate = results.endpoints["GET /"].totals.achieved_rate;
    assert_eq!(rate.measured.unwrap().value, root_rate);

    // The run's load is below the claim's condition.
    match &evaluated[3].status {
        ClaimStatus::NotApplicable(why) => assert!(why.contains("http.rate"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_claim_whose_metric_was_not_measured_is_reported_as_not_measured() {
    let results = plain_results();
    let claims = Claims::parse(CLAIMS, Path::new("claims.toml")).unwrap();
    let evaluated = claims.evaluate(&results);
    match &evaluated[2].status {
        ClaimStatus::NotMeasured(why) => {
            assert!(why.contains("no endpoint of group \"users\""), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(evaluated[2].measured, None);

    // The documents' claims on the checker and the consistency window: this run
    // recorded neither.
    let builtin = Claims::builtin().unwrap();
    let saga = builtin
        .claims
        .iter()
        .find(|c| c.raw.id == "002-saga-consistency")
        .unwrap()
        .evaluate(&results, &builtin.groups);
    assert_eq!(
        saga.status,
        ClaimStatus::NotMeasured("the consistency checker did not run".into())
    );
    let report = Report::build(&results, &builtin, GateReport::default()).unwrap();
    let html = report.html();
    let row = html
        .lines()
        .find(|l| l.contains("99.97% transaction consistency"))
        .unwrap();
    assert!(row.contains("not measured in this run"), "{row}");

    // With the checker's counts recorded, the same claim is measured.
    let measured = Metric::parse("checker.consistent_ratio")
        .unwrap()
        .measure(real_results(), &Default::default());
    assert_eq!(measured.value().unwrap().value, 1.0);
}

#[test]
fn a_claim_at_a_rate_the_run_did_not_reach_shows_the_capacity_searched() {
    let claims = Claims::parse(CLAIMS, Path::new("claims.toml")).unwrap();
    let mut results = real_results().clone();
    results.capacity = crate::capacity::searched().capacity;
    let evaluated = claims.evaluate(&results);

    // The rate claim: the run's rate at capacity, against the document's, on its hardware.
    let rate = &evaluated[1];
    let reached = results.endpoints["GET /"].totals.achieved_rate;
    assert_eq!(rate.measured.unwrap().value, reached);
    assert_eq!(rate.capacity, Some(150.0));
    match &rate.status {
        ClaimStatus::HoldsUpTo(text) => {
            assert!(text.starts_with("holds up to "), "{text}");
            assert!(text.contains("(document: 2500/s on 8 cores)"), "{text}");
            assert!(text.contains("capacity search: 150/s offered"), "{text}");
        }
        other => panic!("{other:?}"),
    }

    // Stated at 10K req/s, which the run did not reach: measured all the same, and
    // never "not applicable" once a capacity was searched.
    let consistency = &evaluated[3];
    let window = consistency.measured.unwrap().value;
    match &consistency.status {
        ClaimStatus::HoldsUpTo(text) => {
            assert!(window <= 1.2, "{window}");
            assert!(text.contains("(document: 10000/s on not stated)"), "{text}");
        }
        ClaimStatus::Fail => assert!(window > 1.2, "{window}"),
        other => panic!("{other:?}"),
    }

    // A scope the search did not load is evaluated as before.
    assert!(matches!(evaluated[2].status, ClaimStatus::NotMeasured(_)));
    assert_eq!(evaluated[2].capacity, None);
}
