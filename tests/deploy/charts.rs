//! Both charts lint, render for every values combination, and every rendered object
//! passes its schema; a missing required value fails naming it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{
    check_rendered, helm, render, repo, run, succeed, template_args, validators_python,
    KUBERNETES_VERSION,
};

/// The values combinations of the issue: default, replicas=3, KEDA on, external Kafka.
pub const COMBINATIONS: &[(&str, &[&str])] = &[
    ("default", &[]),
    ("replicas=3", &["replicas=3"]),
    ("KEDA on", &["keda.enabled=true"]),
    (
        "external Kafka",
        &[
            "kafka.external.enabled=true",
            "kafka.external.bootstrapServers=kafka-0.example.net:9092",
        ],
    ),
];

/// The load chart's one required value.
pub const LOAD_VALUES: &[&str] = &["target.url=http://test-gateway.default:8080/api/products"];

/// Validates a rendered file: (objects per kind, errors).
fn validate(python: &Path, rendered: &Path) -> (BTreeMap<String, u64>, Vec<String>) {
    let schemas = repo().join("deploy/schemas");
    let report = check_rendered(
        python,
        &[
            "validate",
            "--k8s-version",
            KUBERNETES_VERSION,
            "--schemas",
            schemas.to_str().unwrap(),
            rendered.to_str().unwrap(),
        ],
    );
    let kinds = serde_json::from_value(report["kinds"].clone()).unwrap();
    let errors = serde_json::from_value(report["errors"].clone()).unwrap();
    (kinds, errors)
}

#[test]
fn both_charts_pass_helm_lint_in_every_combination() {
    let Some(helm) = helm("helm lint") else {
        return;
    };
    for (name, sets) in COMBINATIONS {
        let mut args = vec!["lint", "--strict", "deploy/helm/faultline"];
        for set in *sets {
            args.extend(["--set", set]);
        }
        let output = succeed(&helm, &args);
        assert!(output.contains("0 chart(s) failed"), "{name}: {output}");
    }
    let mut args = vec!["lint", "--strict", "deploy/helm/faultline-load"];
    for set in LOAD_VALUES {
        args.extend(["--set", set]);
    }
    succeed(&helm, &args);
}

#[test]
fn every_rendered_object_passes_its_schema_in_every_combination() {
    let (Some(helm), Some(python)) = (helm("schemas"), validators_python("schemas")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut renders: Vec<(String, BTreeMap<String, u64>)> = Vec::new();
    for (name, sets) in COMBINATIONS {
        let rendered = render(&helm, "faultline", sets, dir.path());
        let (kinds, errors) = validate(&python, &rendered);
        assert!(
            errors.is_empty(),
            "{name}: {} errors:\n{}",
            errors.len(),
            errors.join("\n")
        );
        eprintln!(
            "faultline chart, {name}: {} objects valid, 0 errors: {kinds:?}",
            kinds.values().sum::<u64>()
        );
        renders.push((name.to_string(), kinds));
    }
    let rendered = render(&helm, "faultline-load", LOAD_VALUES, dir.path());
    let (kinds, errors) = validate(&python, &rendered);
    assert!(errors.is_empty(), "faultline-load: {}", errors.join("\n"));
    eprintln!(
        "faultline-load chart: {} objects valid, 0 errors: {kinds:?}",
        kinds.values().sum::<u64>()
    );
    assert_eq!(
        kinds.get("Job"),
        Some(&2),
        "the workers' Indexed Job and the merge Job"
    );

    // The combinations render what they say.
    let count =
        |combination: usize, kind: &str| renders[combination].1.get(kind).copied().unwrap_or(0);
    let services = count(0, "Deployment");
    assert_eq!(services, 9, "one Deployment per service");
    for kind in [
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    ] {
        assert!(count(0, kind) >= services, "{kind}: one per service");
    }
    assert_eq!(count(0, "Kafka"), 1);
    assert_eq!(count(0, "KafkaNodePool"), 1);
    assert_eq!(
        count(0, "KafkaUser"),
        8,
        "every service but the gateway uses Kafka"
    );
    assert_eq!(count(0, "Cluster"), 1);
    assert_eq!(count(0, "ScaledObject"), 0);
    let scaled = count(2, "ScaledObject");
    assert!(scaled > 0, "KEDA on renders ScaledObjects");
    assert_eq!(
        count(2, "HorizontalPodAutoscaler") + scaled,
        services,
        "KEDA replaces their HPAs"
    );
    for kind in ["Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"] {
        assert_eq!(count(3, kind), 0, "external Kafka renders no {kind}");
    }
}

#[test]
fn a_missing_required_value_fails_naming_it() {
    let Some(helm) = helm("required values") else {
        return;
    };
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "faultline",
            &["kafka.external.enabled=true"],
            "kafka.external.bootstrapServers",
        ),
        (
            "faultline",
            &["secrets.create=false"],
            "secrets.existingSecret",
        ),
        ("faultline", &["image.repository="], "image.repository"),
        ("faultline-load", &[], "target.url"),
    ];
    for (chart, sets, named) in cases {
        let chart_dir = format!("deploy/helm/{chart}");
        let mut args = template_args(&chart_dir);
        for set in *sets {
            args.extend(["--set", set]);
        }
        let output = run(&helm, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{chart} {sets:?} rendered");
        assert!(stderr.contains(named), "{chart} {sets:?}: {stderr}");
    }
}

#[test]
fn the_load_chart_runs_an_indexed_job_whose_index_is_the_worker() {
    let Some(helm) = helm("load chart") else {
        return;
    };
    let mut args = template_args("deploy/helm/faultline-load");
    args.extend(["--set", "workers=5"]);
    for set in LOAD_VALUES {
        args.extend(["--set", set]);
    }
    let rendered = succeed(&helm, &args);
    for expected in [
        "completionMode: Indexed",
        "completions: 5",
        "parallelism: 5",
        "batch.kubernetes.io/job-completion-index",
        "\"$(JOB_COMPLETION_INDEX)/5\"",
        "--start-at",
        "faultline merge /results/worker-*.json",
        "faultline report /results/merged.json",
        "exec faultline gate /results/merged.json",
    ] {
        assert!(
            rendered.contains(expected),
            "no {expected:?} in:\n{rendered}"
        );
    }
}

/// `faultline load`'s own parser, as the binary flattens it.
#[derive(Debug, clap::Parser)]
struct Load {
    #[command(flatten)]
    args: faultline_loadgen::cli::LoadArgs,
}

#[test]
fn each_load_worker_runs_a_valid_share_of_one_schedule() {
    let (Some(helm), Some(python)) = (helm("load workers"), validators_python("load workers"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sets = [LOAD_VALUES[0], "workers=5", "rate=2000", "duration=30s"];
    let rendered = render(&helm, "faultline-load", &sets, dir.path());
    let facts = check_rendered(&python, &["facts", rendered.to_str().unwrap()]);
    let args: Vec<String> = serde_json::from_value(facts["jobs"]["test-workers"].clone()).unwrap();
    assert_eq!(args.first().map(String::as_str), Some("load"), "{args:?}");
    // What the Job controller's index makes of the arguments in pod 3.
    let pod_args = args[1..]
        .iter()
        .map(|a| a.replace("$(JOB_COMPLETION_INDEX)", "3"));
    let load =
        <Load as clap::Parser>::try_parse_from(std::iter::once("load".to_string()).chain(pod_args))
            .unwrap_or_else(|e| panic!("the workers' arguments do not parse: {e}\n{args:?}"));
    let config = load.args.to_config(Default::default()).unwrap();
    let share = faultline_loadgen::WorkerShare { index: 3, count: 5 };
    match config.schedule {
        faultline_loadgen::Schedule::Open {
            share: got,
            start_at,
            ..
        } => {
            assert_eq!(got, share);
            assert!(start_at.is_some(), "the workers start together");
        }
        other => panic!("not an open schedule: {other:?}"),
    }
    assert_eq!(
        config.schedule.expected_requests(),
        Some(2000.0 * 30.0 / 5.0)
    );
}
