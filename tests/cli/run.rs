//! `faultline run`: a bad scenario is refused before anything starts; a good one runs the
//! system under load and faults and leaves results, report and JUnit behind.

use std::path::Path;

use crate::programs::faultline_run;

fn run(scenario: &Path, out: &Path) -> std::process::Output {
    faultline_run(scenario, out, "30s")
        .output()
        .expect("faultline runs")
}

/// Runs a scenario that must pass its gates; its results, its output directory (kept while
/// the first value lives) and its stderr.
fn run_passing(
    text: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    serde_json::Value,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, text).unwrap();
    let out = dir.path().join("out");
    let output = run(&scenario, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let results =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    (dir, out, results, stderr)
}

/// The targets of the fault windows recorded, in order.
fn fault_targets(results: &serde_json::Value) -> Vec<String> {
    results["faults"]
        .as_array()
        .expect("faults recorded")
        .iter()
        .map(|f| f["target"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_bad_scenario_exits_2_naming_the_problem_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let load = "[load]\nrate = 5\nduration = \"2s\"\n[load.journeys]\nmix = { browse = 1 }\n";
    for (text, expected) in [
        (
            format!("{load}[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"ordrs\"\n"),
            "targets \"ordrs\"",
        ),
        (
            format!("{load}[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"orders-2\"\n"),
            "targets \"orders-2\"",
        ),
        (
            format!("{load}[[faults]]\nat = \"1s\"\nkind = \"latency\"\ntarget = \"kafka\"\n"),
            "latency",
        ),
        (
            format!("{load}[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"kafka-1\"\n"),
            "(kill) on \"kafka-1\"",
        ),
        (
            format!("{load}[[faults]]\nat = \"1s\"\nkind = \"partition\"\ntarget = \"orders\"\n"),
            "(partition) on \"orders\"",
        ),
        (
            format!("{load}[[faults]]\nat = \"1s\"\nkind = \"partition\"\ntarget = \"kafka-2\"\n"),
            "targets \"kafka-2\"",
        ),
        (
            format!("{load}[system]\nreplicas = {{ orders = 0 }}\n"),
            "system.replicas.orders",
        ),
        (format!("{load}[system]\nreplica = 2\n"), "replica"),
        ("[load]\nrate = 5\n".to_string(), "load.duration is missing"),
    ] {
        let scenario = dir.path().join("bad.toml");
        std::fs::write(&scenario, &text).unwrap();
        let started = std::time::Instant::now();
        let output = run(&scenario, &dir.path().join("out"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{text}\nexpected {expected:?} in: {stderr}"
        );
        assert!(
            !stderr.contains("starting the reference system"),
            "{stderr}"
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "refused only after {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_scenario_runs_with_its_faults_and_writes_results_report_and_junit() {
    let (_dir, out, results, _) = run_passing(
        r#"name = "short"
[system]
replicas = { orders = 2 }
rate_limit = 0
[load]
rate = 6
duration = "6s"
[load.journeys]
mix = { browse = 1, checkout = 1 }
users = 3
[[faults]]
at = "2s"
kind = "kill"
target = "orders-1"
[[faults]]
at = "3s"
duration = "1s"
kind = "pause"
target = "inventory"
[[gates]]
metric = "http.requests"
min = "1"
[[gates]]
metric = "checker.lost"
max = "0"
"#,
    );
    assert_eq!(results["metadata"]["scenario"], "short");
    let faults = results["faults"].as_array().expect("faults recorded");
    let kinds: Vec<&str> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["kill", "pause"], "{faults:?}");
    assert!(faults[1]["end"].is_string(), "the pause ended: {faults:?}");
    assert!(!results["server_metrics"].as_array().unwrap().is_empty());
    assert!(results["scenario_text"]
        .as_str()
        .unwrap()
        .contains("orders-1"));
    let placed = results["endpoints"]["POST /api/orders"]["totals"]["ok"]
        .as_u64()
        .unwrap();
    let ledger = std::fs::read_to_string(out.join("ledger.jsonl")).unwrap();
    let acknowledged = ledger
        .lines()
        .filter(|l| l.contains("\"acknowledged\""))
        .count() as u64;
    assert!(
        placed > 0 && acknowledged == placed,
        "{placed} placed, {acknowledged} in the ledger"
    );
    // A write whose answer the kill cut off is indeterminate: the checker checks it too
    // if it turns out to have been written, so the count lies between the two.
    let indeterminate = ledger
        .lines()
        .filter(|l| l.contains("\"indeterminate\""))
        .count() as u64;
    let checker = &results["checker"];
    let checked = checker["checked"].as_u64().expect("checked is a count");
    assert!(
        (placed..=placed + indeterminate).contains(&checked),
        "{placed} placed, {indeterminate} indeterminate: {checker}"
    );
    assert_eq!(checker["lost"], 0, "{checker}");
    assert_eq!(checker["duplicated"], 0, "{checker}");
    for file in ["index.html", "junit.xml", "summary.md"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("kill orders-1"), "the report names the fault");
}

#[test]
fn a_warm_up_runs_before_the_load_and_its_orders_are_checked_with_the_load_s() {
    let (_dir, out, results, stderr) = run_passing(
        r#"name = "warmed"
[system]
rate_limit = 0
[load]
rate = 4
duration = "2s"
warm_up = "2s"
seed = 7
[load.journeys]
mix = { checkout = 1 }
users = 2
[[gates]]
metric = "checker.lost"
max = "0"
"#,
    );
    let warm_up = &results["warm_up"];
    assert_eq!(warm_up["rate"], 4.0, "{warm_up}");
    assert!(warm_up["ok"].as_u64().unwrap() > 0, "{warm_up}");
    let acknowledged = |file: &str| {
        std::fs::read_to_string(out.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}\nstderr:\n{stderr}"))
            .lines()
            .filter(|l| l.contains("\"acknowledged\""))
            .count() as u64
    };
    let (load, warming) = (
        acknowledged("ledger.jsonl"),
        acknowledged("warm-up-ledger.jsonl"),
    );
    // The results hold the load's orders only; the checker checked the warm-up's too.
    let placed = results["endpoints"]["POST /api/orders"]["totals"]["ok"]
        .as_u64()
        .unwrap();
    assert!(
        load > 0 && warming > 0 && placed == load,
        "{placed} placed, ledgers {load} + {warming}"
    );
    let checker = &results["checker"];
    let checked = checker["checked"].as_u64().unwrap();
    assert!(
        checked >= load + warming,
        "checked {checked} of {load} + {warming}"
    );
    // With a seed, the warm-up's idempotency keys are not the load's.
    assert_eq!(checker["duplicated"], 0, "{checker}");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("warm-up"),
        "the report does not say there was a warm-up"
    );
}

#[test]
fn faults_on_postgres_and_redis_act_through_proxies_the_services_use() {
    // Checkouts only: each order's insert is a round trip to PostgreSQL, so 150 ms each way
    // shows in every POST /api/orders only if the services go through the proxy. The
    // latency has no duration, so it lasts until the last journey has ended (a window that
    // ended at 5 s would heal under orders still in flight).
    let (_dir, _, results, stderr) = run_passing(
        r#"name = "dependencies"
[system]
rate_limit = 0
[load]
rate = 4
duration = "5s"
[load.journeys]
mix = { checkout = 1 }
users = 2
[[faults]]
at = "0s"
kind = "latency"
latency = "150ms"
target = "postgres"
[[faults]]
at = "1s"
duration = "1s"
kind = "partition"
target = "redis"
[[gates]]
metric = "checker.lost"
max = "0"
"#,
    );
    assert_eq!(fault_targets(&results), ["postgres", "redis"]);
    assert!(
        results["faults"][1]["end"].is_string(),
        "the partition ended: {}",
        results["faults"]
    );
    let orders = &results["endpoints"]["POST /api/orders"]["totals"];
    assert!(orders["ok"].as_u64().unwrap() > 0, "{orders}");
    // Every order is at least one round trip to PostgreSQL, 150 ms each way.
    let fastest_us = orders["latency_summary"]["min_us"].as_u64().unwrap();
    assert!(
        fastest_us >= 300_000,
        "the fastest POST /api/orders took {fastest_us} µs: it did not go through PostgreSQL's proxy\n{orders}\nstderr:\n{stderr}"
    );
    assert_eq!(results["checker"]["lost"], 0, "{}", results["checker"]);
}

#[test]
fn each_kafka_broker_gets_a_proxy_that_kafka_and_kafka_n_faults_act_on() {
    // Ingest is acknowledged only once Kafka has every event (acks=all), so a partition of
    // every broker from its clients holds the ingests sent meanwhile until it heals.
    let (_dir, _, results, _) = run_passing(
        r#"name = "brokers"
[system]
kafka_brokers = 2
rate_limit = 0
[load]
rate = 6
duration = "6s"
[load.journeys]
mix = { checkout = 1, ingest = 2 }
users = 2
[[faults]]
at = "1s"
duration = "2s"
kind = "partition"
target = "kafka"
[[faults]]
at = "4s"
duration = "1s"
kind = "latency"
latency = "50ms"
target = "kafka-2"
[[gates]]
metric = "checker.lost"
max = "0"
"#,
    );
    assert_eq!(fault_targets(&results), ["kafka", "kafka-2"]);
    let ingest = &results["endpoints"]["POST /api/ingest/events"]["totals"];
    let slowest_us = ingest["latency_summary"]["max_us"].as_u64().unwrap();
    assert!(
        slowest_us >= 1_000_000,
        "the slowest ingest took {slowest_us} µs: the brokers' clients did not go through the proxies\n{ingest}"
    );
    assert_eq!(results["checker"]["lost"], 0, "{}", results["checker"]);
}

#[test]
fn a_run_under_mutual_tls_scrapes_every_services_server_metrics() {
    let (_dir, _out, results, stderr) = run_passing(
        r#"name = "mtls"
[system]
mtls = true
rate_limit = 0
[load]
rate = 4
duration = "4s"
[load.journeys]
mix = { browse = 1 }
users = 2
"#,
    );
    // Every service exports its outbox backlog; only the gateway serves plain HTTP, so
    // without the mesh's scraper identity the others' series would be missing.
    let scraped: std::collections::BTreeSet<&str> = (results["server_metrics"].as_array())
        .expect("server metrics recorded")
        .iter()
        .filter(|series| series["name"] == "faultline_outbox_backlog")
        .filter(|series| !series["points"].as_array().unwrap().is_empty())
        .filter_map(|series| series["labels"]["service"].as_str())
        .collect();
    let services: std::collections::BTreeSet<&str> = (faultline_system::services::ServiceKind::ALL
        .iter())
    .map(|kind| kind.name())
    .collect();
    assert_eq!(scraped, services, "{stderr}");
}
