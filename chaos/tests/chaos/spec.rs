//! The `[[faults]]` part of a scenario file: what parses, and what each error names.

use std::time::Duration;

use faultline_chaos::proxy::{Direction, Latency};
use faultline_chaos::spec::{parse_faults, FaultAction, SpecError};

/// The error message for `text`, which must not validate.
fn error_of(text: &str) -> (SpecError, String) {
    let error = parse_faults(text).unwrap_err();
    let message = error.to_string();
    (error, message)
}

#[test]
fn a_full_scenario_parses_into_typed_faults() {
    let faults = parse_faults(
        r#"
        name = "checkout under faults"   # other keys belong to other crates

        [[faults]]
        at = "10s"
        duration = "5s"
        kind = "latency"
        target = "kafka"
        latency = "200ms"
        jitter = "50ms"

        [[faults]]
        at = "20s"
        kind = "kill"
        target = "orders-1"

        [[faults]]
        at = "30s"
        duration = "10s"
        kind = "bandwidth"
        target = "postgres"
        bandwidth = "1MB/s"
        direction = "downstream"

        [[faults]]
        at = "45s"
        duration = "2s"
        kind = "slicer"
        target = "redis"
        size = 64
        delay = "1ms"

        [[faults]]
        at = "50s"
        kind = "partition"
        target = "kafka"
        "#,
    )
    .unwrap();
    assert_eq!(faults.len(), 5);
    assert_eq!(faults[0].number, 1);
    assert_eq!(faults[0].at, Duration::from_secs(10));
    assert_eq!(faults[0].duration, Some(Duration::from_secs(5)));
    assert_eq!(
        faults[0].action,
        FaultAction::Latency {
            direction: Direction::Both,
            latency: Latency {
                delay: Duration::from_millis(200),
                jitter: Duration::from_millis(50)
            }
        }
    );
    let labels: Vec<String> = faults.iter().map(|f| f.label()).collect();
    assert_eq!(
        labels,
        [
            "latency 200ms±50ms kafka",
            "kill orders-1",
            "bandwidth 1MB/s downstream postgres",
            "slicer 64B/1ms redis",
            "partition kafka",
        ]
    );
    assert_eq!(
        faults[2].action,
        FaultAction::Bandwidth {
            direction: Direction::Downstream,
            bytes_per_second: 1_000_000
        }
    );
    // No duration on a partition: until the run ends.
    assert_eq!(faults[4].duration, None);
}

#[test]
fn a_latency_fault_without_latency_names_the_fault_and_the_field() {
    let (error, message) = error_of(
        r#"
        [[faults]]
        at = "1s"
        kind = "kill"
        target = "orders-1"

        [[faults]]
        at = "2s"
        duration = "1s"
        kind = "latency"
        target = "kafka"
        "#,
    );
    assert_eq!(error.fault_number(), Some(2));
    assert!(
        matches!(
            error,
            SpecError::Invalid {
                field: "latency",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(message.contains("fault #2"), "{message}");
    assert!(message.contains("latency on \"kafka\""), "{message}");
    assert!(message.contains("latency: is missing"), "{message}");
}

#[test]
fn a_duration_on_an_instantaneous_fault_is_an_error() {
    let (error, message) = error_of(
        "[[faults]]\nat = \"1s\"\nduration = \"5s\"\nkind = \"kill\"\ntarget = \"orders-1\"\n",
    );
    assert!(matches!(
        error,
        SpecError::Invalid {
            field: "duration",
            number: 1,
            ..
        }
    ));
    assert!(
        message.contains("fault #1 (kill on \"orders-1\"): duration"),
        "{message}"
    );
}

#[test]
fn deployments_take_their_own_settings_with_defaults_and_no_others() {
    let faults = faultline_chaos::spec::parse_faults(
        "[[faults]]\nat = \"1s\"\nkind = \"rollout\"\ntarget = \"orders\"\npause = \"2s\"\n\n\
         [[faults]]\nat = \"9s\"\nkind = \"blue-green\"\ntarget = \"orders\"\ndrain = \"500ms\"\n",
    )
    .unwrap();
    assert_eq!(
        faults[0].action,
        FaultAction::Rollout {
            pause: Duration::from_secs(2),
            drain: faultline_chaos::spec::DEFAULT_DRAIN,
        }
    );
    assert_eq!(
        faults[1].action,
        FaultAction::BlueGreen {
            drain: Duration::from_millis(500),
        }
    );
    assert_eq!(faults[1].label(), "blue-green orders");

    let (_, message) = error_of(
        "[[faults]]\nat = \"1s\"\nkind = \"blue-green\"\ntarget = \"orders\"\npause = \"1s\"\n",
    );
    assert!(message.contains("pause: does not apply"), "{message}");
    let (_, message) = error_of(
        "[[faults]]\nat = \"1s\"\nduration = \"5s\"\nkind = \"rollout\"\ntarget = \"orders\"\n",
    );
    assert!(
        message.contains("until every replica is replaced"),
        "{message}"
    );
    let (_, message) = error_of(
        "[[faults]]\nat = \"1s\"\nkind = \"rollout\"\ntarget = \"orders\"\ndrain = \"soon\"\n",
    );
    assert!(message.contains("drain"), "{message}");
}

#[test]
fn zero_and_negative_rates_and_durations_are_errors() {
    let cases = [
        ("bandwidth = 0", "bandwidth"),
        ("bandwidth = -5", "bandwidth"),
        ("bandwidth = \"-1MB/s\"", "bandwidth"),
        ("bandwidth = \"0KB/s\"", "bandwidth"),
        ("bandwidth = \"fast\"", "bandwidth"),
    ];
    for (line, field) in cases {
        let text =
            format!("[[faults]]\nat = \"1s\"\nkind = \"bandwidth\"\ntarget = \"db\"\n{line}\n");
        let (error, message) = error_of(&text);
        assert!(
            matches!(&error, SpecError::Invalid { field: f, .. } if *f == field),
            "{line}: {error:?}"
        );
        assert!(message.contains("fault #1"), "{message}");
    }
    let (error, _) = error_of(
        "[[faults]]\nat = \"1s\"\nduration = \"0s\"\nkind = \"partition\"\ntarget = \"db\"\n",
    );
    assert!(matches!(
        error,
        SpecError::Invalid {
            field: "duration",
            ..
        }
    ));
    let (error, _) = error_of("[[faults]]\nat = \"-1s\"\nkind = \"partition\"\ntarget = \"db\"\n");
    assert!(matches!(error, SpecError::Invalid { field: "at", .. }));
    let (error, message) =
        error_of("[[faults]]\nat = \"10 parsecs\"\nkind = \"partition\"\ntarget = \"db\"\n");
    assert!(matches!(error, SpecError::Invalid { field: "at", .. }));
    assert!(message.contains("10 parsecs"), "{message}");
}

#[test]
fn a_field_of_another_kind_is_an_error() {
    let (error, message) = error_of(
        "[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"orders-1\"\nlatency = \"1s\"\n",
    );
    assert!(matches!(
        error,
        SpecError::Invalid {
            field: "latency",
            ..
        }
    ));
    assert!(
        message.contains("does not apply to a kill fault"),
        "{message}"
    );
}

#[test]
fn unknown_fields_and_kinds_are_refused_by_name() {
    let (_, message) = error_of(
        "[[faults]]\nat = \"1s\"\nkind = \"partition\"\ntarget = \"db\"\nlatncy = \"1s\"\n",
    );
    assert!(message.contains("latncy"), "{message}");
    let (_, message) = error_of("[[faults]]\nat = \"1s\"\nkind = \"explode\"\ntarget = \"db\"\n");
    assert!(
        message.contains("explode") && message.contains("partition"),
        "{message}"
    );
}

#[test]
fn overlapping_faults_of_one_kind_on_one_target_are_an_error() {
    let latency = |at: &str, duration: &str, target: &str, direction: &str| {
        format!(
            "[[faults]]\nat = \"{at}\"\nduration = \"{duration}\"\nkind = \"latency\"\n\
             target = \"{target}\"\nlatency = \"100ms\"\ndirection = \"{direction}\"\n"
        )
    };
    let overlapping =
        latency("1s", "5s", "kafka", "both") + &latency("3s", "5s", "kafka", "upstream");
    let (error, message) = error_of(&overlapping);
    assert!(
        matches!(
            error,
            SpecError::Overlap {
                first: 1,
                second: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(message.contains("#1 and #2"), "{message}");

    // Back to back, other targets, other directions: fine.
    let fine = latency("1s", "2s", "kafka", "both")
        + &latency("3s", "2s", "kafka", "both")
        + &latency("1s", "5s", "redis", "both")
        + &latency("10s", "5s", "db", "upstream")
        + &latency("10s", "5s", "db", "downstream");
    assert_eq!(parse_faults(&fine).unwrap().len(), 5);

    // Without a duration a fault lasts to the end, so a later one overlaps it.
    let open = "[[faults]]\nat = \"1s\"\nkind = \"pause\"\ntarget = \"w\"\n\
                [[faults]]\nat = \"1h\"\nduration = \"1s\"\nkind = \"pause\"\ntarget = \"w\"\n";
    assert!(matches!(error_of(open).0, SpecError::Overlap { .. }));
}

#[test]
fn faults_read_quantities_as_every_scenario_table_does() {
    let faults = parse_faults(
        r#"
        [[faults]]
        at = "1.5s"
        duration = "1m30s"
        kind = "latency"
        target = "kafka"
        latency = "250MS"

        [[faults]]
        at = "0"
        kind = "bandwidth"
        target = "db"
        bandwidth = "512kib/s"
        "#,
    )
    .unwrap();
    assert_eq!(faults[0].at, Duration::from_millis(1500));
    assert_eq!(faults[0].duration, Some(Duration::from_secs(90)));
    assert_eq!(
        faults[0].action,
        FaultAction::Latency {
            direction: Direction::Both,
            latency: Latency {
                delay: Duration::from_millis(250),
                jitter: Duration::ZERO,
            },
        }
    );
    assert_eq!(faults[1].at, Duration::ZERO);
    assert!(matches!(
        faults[1].action,
        FaultAction::Bandwidth {
            bytes_per_second: 524_288,
            ..
        }
    ));
    let (_, message) = error_of(
        "[[faults]]\nat = \"1s\"\nkind = \"bandwidth\"\ntarget = \"db\"\nbandwidth = \"1MB\"\n",
    );
    assert!(
        message.contains("\"1MB\": is a size; expected a byte rate such as 1MB/s"),
        "{message}"
    );
}
