//! The chart and the compose file say what the code does: each service's flags parse with
//! the services' own argument parser (`ServeArgs`) and listen on the container port; its
//! environment variables are ones the binary reads (its `--help` lists them); the probe
//! paths answer on the services' operational routes; the topics, their partitions and
//! each service's Kafka ACLs are the code's topic constants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::Parser;
use faultline_system::platform::consumer::DEAD_LETTER_TOPIC;
use faultline_system::platform::http::{operational_routes, Operational};
use faultline_system::platform::metrics::Metrics;
use faultline_system::services::runtime::{
    DATABASE_URL, JWT_SECRET, KAFKA_BOOTSTRAP, REDIS_URL, TOPIC_PARTITIONS,
};
use faultline_system::services::serve::ServeArgs;
use faultline_system::services::{self as code, messages, ServiceKind};
use serde_json::Value;

use crate::{check_rendered, helm, render, repo, succeed, validators_python};

/// `faultline serve`'s own parser, as the binary flattens it.
#[derive(Debug, Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

/// Parses a `faultline serve ...` command line (without the program name) as the binary
/// would, or panics naming `whose` flags do not parse.
fn parse_serve(whose: &str, command: &[String]) -> ServeArgs {
    assert_eq!(
        command.first().map(String::as_str),
        Some("serve"),
        "{whose}: {command:?}"
    );
    let argv = std::iter::once("faultline-serve").chain(command[1..].iter().map(String::as_str));
    match Serve::try_parse_from(argv) {
        Ok(serve) => serve.args,
        Err(error) => panic!(
            "{whose}: `faultline {}` does not parse: {error}",
            command.join(" ")
        ),
    }
}

/// Every environment variable the binary reads, as its `--help` pages list them.
fn environment_the_binary_reads() -> BTreeSet<String> {
    let faultline = Path::new(env!("CARGO_BIN_EXE_faultline"));
    let mut names = BTreeSet::new();
    let pages: [&[&str]; 4] = [
        &["--help"],
        &["serve", "--help"],
        &["system", "seed", "--help"],
        &["load", "--help"],
    ];
    for command in pages {
        let help = succeed(faultline, command);
        for part in help.split("[env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The facts of the default render (see deploy/tools/check-rendered.py).
fn chart_facts() -> Option<Value> {
    let (helm, python) = (helm("drift")?, validators_python("drift")?);
    let dir = tempfile::tempdir().unwrap();
    let rendered = render(&helm, "faultline", &[], dir.path());
    Some(check_rendered(
        &python,
        &["facts", rendered.to_str().unwrap()],
    ))
}

fn strings(value: &Value) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap()
}

/// Names in `env` the binary does not read, leaving out those only composed into another
/// value (`$(DB_PASSWORD)` inside DATABASE_URL).
fn unknown_environment(env: &[String], values: &[String], known: &BTreeSet<String>) -> Vec<String> {
    env.iter()
        .filter(|name| !known.contains(*name))
        .filter(|name| !values.iter().any(|v| v.contains(&format!("$({name})"))))
        .cloned()
        .collect()
}

#[test]
fn chart_services_run_flags_ports_and_environment_the_code_has() {
    let Some(facts) = chart_facts() else {
        return;
    };
    let known = environment_the_binary_reads();
    for (setting, _, env) in [DATABASE_URL, KAFKA_BOOTSTRAP, REDIS_URL, JWT_SECRET] {
        assert!(
            known.contains(env),
            "{setting}: {env} not in the binary's --help"
        );
    }
    let services = facts["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    let kinds: BTreeSet<&str> = ServiceKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names, kinds, "one Deployment per service");
    let configmap = strings(&facts["configmap"]);
    for kind in ServiceKind::ALL {
        let service = &services[kind.name()];
        let args = parse_serve(kind.name(), &strings(&service["args"]));
        assert_eq!(args.service, kind);
        let ports: Vec<u16> = serde_json::from_value(service["ports"].clone()).unwrap();
        assert_eq!(
            ports,
            vec![args.listen.port()],
            "{}: container port",
            kind.name()
        );
        let grace = service["grace"].as_u64().unwrap();
        assert!(
            grace > args.drain_timeout.as_secs(),
            "{}: grace {grace}s",
            kind.name()
        );

        let mut env = strings(&service["env"]);
        let values = strings(&service["env_values"]);
        let unknown = unknown_environment(&env, &values, &known);
        assert!(
            unknown.is_empty(),
            "{}: the binary reads no {unknown:?}",
            kind.name()
        );
        env.extend(configmap.iter().cloned());
        let mut needed = vec![KAFKA_BOOTSTRAP.2];
        if kind.has_database() {
            needed.push(DATABASE_URL.2);
        }
        if matches!(kind, ServiceKind::Users | ServiceKind::Gateway) {
            needed.push(JWT_SECRET.2);
        }
        if kind == ServiceKind::Users {
            needed.push(REDIS_URL.2);
        }
        for name in needed {
            assert!(env.iter().any(|e| e == name), "{}: no {name}", kind.name());
        }
    }
    let unknown = unknown_environment(&configmap, &[], &known);
    assert!(
        unknown.is_empty(),
        "ConfigMap: the binary reads no {unknown:?}"
    );
}

#[test]
fn chart_probe_paths_answer_on_the_services_operational_routes() {
    let Some(facts) = chart_facts() else {
        return;
    };
    let paths: BTreeSet<String> = facts["services"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|s| strings(&s["probes"]))
        .collect();
    assert_eq!(paths.len(), 2, "readiness and liveness: {paths:?}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let routes = operational_routes(Operational {
            metrics: Metrics::new("drift-test"),
            probes: Vec::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let client = reqwest::Client::new();
        for path in &paths {
            let status = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{path}");
        }
        let missing = client
            .get(format!("http://{addr}/health/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404, "the check itself tells paths apart");
    });
}

#[test]
fn chart_topics_and_kafka_acls_are_the_codes() {
    let Some(facts) = chart_facts() else {
        return;
    };
    let topics: BTreeMap<String, i64> = serde_json::from_value(facts["topics"].clone()).unwrap();
    let mut expected: BTreeMap<String, i64> = messages::ALL_TOPICS
        .iter()
        .map(|t| (t.to_string(), i64::from(TOPIC_PARTITIONS)))
        .collect();
    expected.insert(DEAD_LETTER_TOPIC.into(), i64::from(TOPIC_PARTITIONS));
    assert_eq!(topics, expected, "KafkaTopics and their partitions");

    // The topics each service makes sure of at start (and so must be allowed to).
    let service_topics: [(ServiceKind, &[&str]); 8] = [
        (ServiceKind::Users, code::users::TOPICS),
        (ServiceKind::Inventory, code::inventory::TOPICS),
        (ServiceKind::Payments, code::payments::TOPICS),
        (ServiceKind::Shipping, code::shipping::TOPICS),
        (ServiceKind::Orders, code::orders::TOPICS),
        (ServiceKind::Analytics, code::analytics::TOPICS),
        (ServiceKind::Notifications, code::notifications::TOPICS),
        (ServiceKind::Ingest, code::ingest::TOPICS),
    ];
    let users = facts["kafka_users"].as_object().unwrap();
    for (kind, topics) in service_topics {
        let acl: BTreeSet<String> = strings(&users[kind.name()]).into_iter().collect();
        let code: BTreeSet<String> = topics
            .iter()
            .chain([&DEAD_LETTER_TOPIC])
            .map(|t| t.to_string())
            .collect();
        assert_eq!(acl, code, "{}: topics in its KafkaUser's ACLs", kind.name());
    }
}

#[test]
fn compose_services_run_flags_and_environment_the_code_has() {
    let Some(python) = validators_python("compose drift") else {
        return;
    };
    let compose = repo().join("deploy/compose.yaml");
    let facts = check_rendered(&python, &["compose-facts", compose.to_str().unwrap()]);
    let known = environment_the_binary_reads();
    let services = facts["services"].as_object().unwrap();
    for kind in ServiceKind::ALL {
        let service = services
            .get(kind.name())
            .unwrap_or_else(|| panic!("no {}", kind.name()));
        let args = parse_serve(kind.name(), &strings(&service["command"]));
        assert_eq!(args.service, kind);
        assert_eq!(
            args.listen.port(),
            8080,
            "the port the image's HEALTHCHECK asks"
        );
    }
    for (name, service) in services {
        let unknown = unknown_environment(&strings(&service["env"]), &[], &known);
        assert!(
            unknown.is_empty(),
            "compose {name}: the binary reads no {unknown:?}"
        );
    }
}
