//! Request templates, feeders, weighted mixes and several hosts, checked by what a
//! [`TestServer`] (what it counts) receives, not by the engine's own counters.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use faultline_loadgen::{
    engine,
    feeder::{Feeder, FeederMode},
    target::Host,
    LoadConfig, RequestSpec, Schedule, Target,
};
use faultline_results::{Arrivals, HttpVersion};
use http::Method;

use crate::support::TestServer;

/// A config of `requests` against `server` at `rate` for `duration`, in which no
/// arrival is dropped however busy the machine is (the counts must be whole).
fn config(server: &TestServer, rate: f64, duration: Duration) -> LoadConfig {
    let schedule = Schedule::constant(rate, duration, Arrivals::Uniform).unwrap();
    let mut config = LoadConfig::new(Target::parse(&server.url("/")).unwrap(), schedule);
    config.connections = 8;
    config.max_send_delay = Some(Duration::from_secs(30));
    config.timeout = Duration::from_secs(30);
    config
}

fn request(server: &TestServer, method: Method, path: &str, body: &str) -> RequestSpec {
    let target = Target::parse(&server.url(path)).unwrap();
    let body = Bytes::copy_from_slice(body.as_bytes());
    RequestSpec::for_target(&target, method, Default::default(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randint_in_the_path_reaches_all_hundred_values_evenly() {
    let server = TestServer::start().await;
    let mut config = config(&server, 5000.0, Duration::from_secs(2));
    config.requests = vec![request(&server, Method::GET, "/n/{{randint 1 100}}", "")];
    let results = engine::run(config, |_| {}).await.unwrap();

    let seen = server.seen();
    assert_eq!(server.total(), 10_000, "{:?}", results.generator.message);
    assert_eq!(
        seen.len(),
        100,
        "every value 1..=100 once at least: {seen:?}"
    );
    // Each count is binomial (n = 10,000, p = 1/100): mean 100, sd about 10. A ±30% band
    // is ±3 sd, which one of the hundred values leaves about a quarter of the time (CI saw
    // 132). ±50% (±5 sd) fails by chance about once in 15,000 runs, and still catches a
    // skewed or stuck generator.
    for value in 1..=100 {
        let count = seen.get(&format!("GET /n/{value}")).copied().unwrap_or(0);
        assert!((50..=150).contains(&count), "/n/{value}: {count} of 10,000");
    }
    // Results keep the template's text as the name, not the values.
    assert!(results.endpoints.contains_key("GET /n/{{randint 1 100}}"));
}

fn users() -> Feeder {
    let rows = "id,name\n1,ann\n2,bo\n3,cy\n4,di\n5,ed\n";
    Feeder::from_csv("users.csv", rows, FeederMode::Once).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_feeder_of_five_rows_sends_five_requests_and_says_so() {
    let server = TestServer::start().await;
    let schedule = Schedule::closed(Duration::from_secs(10)).unwrap();
    let mut config = LoadConfig::new(Target::parse(&server.url("/")).unwrap(), schedule);
    config.connections = 4;
    config.requests = vec![request(&server, Method::POST, "/u/{{id}}", "{{name}}")];
    config.feeder = Some(Arc::new(users()));
    let began = std::time::Instant::now();
    let results = engine::run(config, |_| {}).await.unwrap();

    assert!(
        began.elapsed() < Duration::from_secs(5),
        "the run ended early"
    );
    let seen = server.seen();
    let expected: Vec<String> = ["1 ann", "2 bo", "3 cy", "4 di", "5 ed"]
        .iter()
        .map(|row| {
            let (id, name) = row.split_once(' ').unwrap();
            format!("POST /u/{id} {name}")
        })
        .collect();
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(seen.values().all(|n| *n == 1), "each row once: {seen:?}");
    assert_eq!(results.totals.requests, 5);
    let summary = faultline_loadgen::summary::summary_table(&results);
    assert!(
        summary.contains("feeder users.csv exhausted after 5 rows"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circular_feeder_sends_each_of_three_rows_three_times_in_nine_requests() {
    let server = TestServer::start().await;
    let mut config = config(&server, 30.0, Duration::from_millis(300));
    config.requests = vec![request(
        &server,
        Method::POST,
        "/u/{{id}}?n={{name}}",
        "{\"id\": {{id}}, \"name\": \"{{name}}\"}",
    )];
    let rows = "id,name\n1,ann\n2,bo\n3,cy\n";
    let feeder = Feeder::from_csv("three.csv", rows, FeederMode::Circular).unwrap();
    config.feeder = Some(Arc::new(feeder));
    engine::run(config, |_| {}).await.unwrap();

    let seen = server.seen();
    // Path and body of one request come from the same row.
    let expected: Vec<(String, u64)> = [(1, "ann"), (2, "bo"), (3, "cy")]
        .iter()
        .map(|(id, name)| {
            let key = format!("POST /u/{id}?n={name} {{\"id\": {id}, \"name\": \"{name}\"}}");
            (key, 3)
        })
        .collect();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_to_one_mix_is_three_quarters_and_one_quarter_at_the_server() {
    let server = TestServer::start().await;
    let mut config = config(&server, 2000.0, Duration::from_secs(2));
    let mut orders = request(&server, Method::POST, "/orders", "{}");
    orders.weight = 3;
    let products = request(&server, Method::GET, "/products", "");
    config.requests = vec![orders, products];
    let results = engine::run(config, |_| {}).await.unwrap();

    let seen = server.seen();
    let total = server.total() as f64;
    assert!(total >= 3900.0, "{total} of 4000 arrived");
    let share = |key: &str| seen.get(key).copied().unwrap_or(0) as f64 / total;
    assert!((share("POST /orders {}") - 0.75).abs() <= 0.02, "{seen:?}");
    assert!((share("GET /products") - 0.25).abs() <= 0.02, "{seen:?}");
    // Each request is recorded under its own name.
    assert_eq!(
        results.endpoints.keys().collect::<Vec<_>>(),
        ["GET /products", "POST /orders"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_in_round_robin_get_half_each_and_results_name_them() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let mut config = config(&a, 2000.0, Duration::from_secs(2));
    config.hosts = Host::parse_list([format!("{},{}", a.url("/"), b.url("/")).as_str()]).unwrap();
    let results = engine::run(config, |_| {}).await.unwrap();

    let (at_a, at_b) = (a.total() as f64, b.total() as f64);
    let total = at_a + at_b;
    assert!(total >= 3900.0, "{total} of 4000 arrived");
    assert!((at_a / total - 0.5).abs() <= 0.02, "{at_a} and {at_b}");
    assert!((at_b / total - 0.5).abs() <= 0.02, "{at_a} and {at_b}");
    let names: Vec<&String> = results.endpoints.keys().collect();
    let mut expected = [format!("GET / @ {}", a.addr), format!("GET / @ {}", b.addr)];
    expected.sort();
    assert_eq!(names, expected.iter().collect::<Vec<_>>());
    assert!(results.metadata.target.contains(&b.addr.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_requests_are_filled_in_over_http2_too() {
    let server = TestServer::start().await;
    let mut config = config(&server, 200.0, Duration::from_millis(500));
    config.http_version = HttpVersion::Http2;
    config.requests = vec![request(&server, Method::POST, "/s/{{seq}}", "{{choice x}}")];
    engine::run(config, |_| {}).await.unwrap();

    let seen = server.seen();
    // HTTP/2 carries the whole URI: the server sees scheme and authority too.
    let prefix = format!("POST http://{}/s/", server.addr);
    let mut numbers: Vec<u64> = seen
        .keys()
        .map(|key| {
            let rest = key.strip_prefix(&prefix).unwrap_or_else(|| panic!("{key}"));
            rest.strip_suffix(" x").unwrap().parse().unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (0..100).collect::<Vec<u64>>(), "one per arrival");
    assert!(seen.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_run_ends_when_its_once_feeder_runs_out_not_when_idle_workers_wake() {
    let server = TestServer::start().await;
    // 64 connections at 10/s: idle workers hold arrivals up to 6.4 s ahead.
    let mut config = config(&server, 10.0, Duration::from_secs(20));
    config.connections = 64;
    config.requests = vec![request(&server, Method::GET, "/u/{{id}}", "")];
    config.feeder = Some(Arc::new(users()));
    let began = std::time::Instant::now();
    let results = engine::run(config, |_| {}).await.unwrap();

    let took = began.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(server.total(), 5);
    assert!(results
        .generator
        .message
        .is_some_and(|m| m.contains("exhausted after 5 rows")));
}
