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

/// `plain_results` with what the server side recorded over 10 s: the notifications
/// consumer's handling histogram (1,000 events: 500 within 5 ms, 400 more within 10 ms,
/// the last 100 within 20 ms; 6 s in all), its events consumed, and 50,000 statements
/// of the services' databases.
fn with_server_records() -> faultline_results::Results {
    use std::collections::BTreeMap;

    use faultline_results::{DatabaseResults, MetricSeries, ServerHistogram};

    let mut results = plain_results();
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    results.server_histograms = vec![ServerHistogram {
        name: "faultline_event_handling_seconds".into(),
        labels: labels(&[("consumer", "notifications"), ("service", "notifications")]),
        from_secs: 0.0,
        to_secs: 10.0,
        buckets: vec![(0.005, 500.0), (0.01, 900.0), (0.02, 1000.0)],
        sum: 6.0,
        count: 1000.0,
    }];
    results.server_metrics.push(MetricSeries {
        name: "faultline_events_consumed_total".into(),
        labels: labels(&[("service", "notifications"), ("outcome", "applied")]),
        kind: None,
        points: vec![(0.0, 0.0), (10.0, 1000.0)],
    });
    results.database = Some(DatabaseResults {
        secs: 10.0,
        statements: BTreeMap::from([("orders".into(), 30_000), ("inventory".into(), 20_000)]),
        exec_mean_secs: Some(0.0002),
        exec_cv: Some(0.8),
    });
    results
}

#[test]
fn the_notification_and_database_claims_are_measured_from_the_server_side_records() {
    let builtin = Claims::builtin().unwrap();
    let evaluate = |id: &str, results: &faultline_results::Results| {
        (builtin.claims.iter())
            .find(|c| c.raw.id == id)
            .unwrap_or_else(|| panic!("no claim {id}"))
            .evaluate(results, &builtin.groups)
    };
    let ids = [
        "000-notification-mean",
        "000-notification-p99",
        "001-database",
        "001-database-variance",
    ];
    // A run that recorded neither: not measured, never zero.
    for id in ids {
        let claim = evaluate(id, &plain_results());
        assert!(
            matches!(claim.status, ClaimStatus::NotMeasured(_)),
            "{id}: {:?}",
            claim.status
        );
    }

    // The records are results.json's, as its schema describes them.
    let recorded = with_server_records();
    let instance = serde_json::to_value(&recorded).unwrap();
    let validator = crate::schema::validator();
    let errors: Vec<String> = (validator.iter_errors(&instance))
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    // Without a capacity search, 100 events/s is not the table's 5,000/s.
    let mean = evaluate("000-notification-mean", &recorded);
    assert!(
        matches!(&mean.status, ClaimStatus::NotApplicable(why) if why.contains("5000/s")),
        "{:?}",
        mean.status
    );
    // The database ran 5,000 statements/s of the document's 10K, and varied by 80%.
    let database = evaluate("001-database", &recorded);
    assert_eq!(database.measured.unwrap().value, 5000.0);
    assert_eq!(database.status, ClaimStatus::Fail);
    let variance = evaluate("001-database-variance", &recorded);
    assert_eq!(variance.measured.unwrap().value, 0.8);
    assert_eq!(variance.status, ClaimStatus::Fail);

    // With a capacity searched, the figures are read at what the run reached.
    let mut searched = recorded.clone();
    searched.capacity = crate::capacity::searched().capacity;
    let mean = evaluate("000-notification-mean", &searched);
    assert_eq!(mean.measured.unwrap().value, 6.0 / 1000.0);
    let p99 = evaluate("000-notification-p99", &searched);
    // Rank 990 is 90 of the last bucket's 100, from 10 to 20 ms.
    assert!((p99.measured.unwrap().value - 0.019).abs() < 1e-9);
    for claim in [&mean, &p99] {
        match &claim.status {
            ClaimStatus::HoldsUpTo(text) => {
                assert!(text.starts_with("holds up to 100/s here"), "{text}")
            }
            other => panic!("{other:?}"),
        }
    }
    let database = evaluate("001-database", &searched);
    assert!(
        matches!(&database.status, ClaimStatus::HoldsUpTo(text) if text.contains("(document: 10000/s")),
        "{:?}",
        database.status
    );
}

#[test]
fn a_server_counters_rate_under_a_capacity_search_is_read_at_capacity_and_is_its_capacity() {
    use faultline_results::MetricSeries;

    let builtin = Claims::builtin().unwrap();
    let rate = (builtin.claims.iter())
        .find(|c| c.raw.id == "000-notification-rate")
        .unwrap();
    // A scrape each second on the run's time axis, whose zero is the start of the step
    // at capacity (4 s here): 200 events/s in the steps before it, 700/s in it, 3,000/s
    // in a step after it that broke the gates.
    let mut counted = 0.0;
    let mut points = Vec::new();
    for t in -6..=8 {
        points.push((f64::from(t), counted));
        counted += match t {
            ..=-1 => 200.0,
            0..=3 => 700.0,
            _ => 3000.0,
        };
    }
    let mut results = crate::capacity::searched();
    results.server_metrics.push(MetricSeries {
        name: "faultline_events_consumed_total".into(),
        labels: [("service", "notifications"), ("outcome", "applied")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        kind: None,
        points,
    });
    assert_eq!(results.metadata.duration_secs, 4.0);

    let result = rate.evaluate(&results, &builtin.groups);
    let measured = result.measured.unwrap().value;
    assert!((measured - 700.0).abs() < 1e-9, "{measured}");
    assert_eq!(result.capacity, Some(measured));
    match &result.status {
        ClaimStatus::HoldsUpTo(text) => {
            assert!(
                text.starts_with("holds up to 700/s here (document: 5000/s on not stated)"),
                "{text}"
            );
            assert!(text.contains("capacity search: 150/s offered"), "{text}");
        }
        other => panic!("{other:?}"),
    }

    // The same scrape without a search: the rate over the load (time zero to its
    // duration), not over the scrape's seconds before and after it; no capacity.
    results.capacity = None;
    let result = rate.evaluate(&results, &builtin.groups);
    let over_the_load = result.measured.unwrap().value;
    assert!((over_the_load - 700.0).abs() < 1e-9, "{over_the_load}");
    assert_eq!(result.capacity, None);
    assert_eq!(result.status, ClaimStatus::Fail);
}
