//! Property tests of the scenario parser ([`Scenario::parse`] then [`Scenario::check`]).
//!
//! A scenario file is written by hand, so the parser meets every kind of mistake. Whatever
//! the text — arbitrary TOML-ish characters, or the demo scenario with pieces cut out,
//! pasted in or values swapped for hostile ones — parsing and checking end in a scenario
//! or in an error whose every problem has a line inside the file, never a panic.
//! `PROPTEST_CASES` sets other case counts (`make fuzz`).

use std::path::Path;

use faultline_scenarios::{Scenario, ScenarioError};
use proptest::prelude::*;

const DEMO: &str = include_str!("../demo/checkout.toml");
/// The sustained-checkout scenario (issue 10's targets as gates); checked, not mutated.
const CAPACITY: &str = include_str!("../capacity/checkout.toml");

/// A small scenario with every table, so that mutations reach each table's parser.
const SMALL: &str = r#"name = "small"
[system]
replicas = { orders = 2 }
rate_limit = 0
[load]
rate = 20
duration = "2s"
timeout = "1s"
[[load.requests]]
method = "POST"
path = "/api/orders"
body = "{}"
[[faults]]
at = "1s"
duration = "1s"
kind = "latency"
target = "kafka"
latency = "10ms"
[[gates]]
metric = "http.p99"
max = "200ms"
"#;

/// Pieces of TOML, valid and not, that a mutation pastes in.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("[".to_string()),
        Just("]]".to_string()),
        Just("{".to_string()),
        Just("\n".to_string()),
        Just("\n[[faults]]\n".to_string()),
        Just("\n[load]\n".to_string()),
        Just("\n[system]\n".to_string()),
        Just("\n[[gates]]\nmetric = \"http.p99\"\n".to_string()),
        Just("kind = \"kill\"\n".to_string()),
        Just("target = \"nobody-9\"\n".to_string()),
        Just("at = \"-1s\"\n".to_string()),
        Just("1e999".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("18446744073709551616".to_string()),
        Just("\"999999999999999h\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("nan".to_string()),
        Just("\"\u{1F4A5}\"".to_string()),
        "[ -~]{1,12}",
    ]
}

/// A value hostile to whichever field it lands in.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("inf".to_string()),
        Just("18446744073709551615".to_string()),
        Just("\"\"".to_string()),
        Just("\"0\"".to_string()),
        Just("\"1e30s\"".to_string()),
        Just("\"100%\"".to_string()),
        Just("\"-5ms\"".to_string()),
        Just("\"10s:0->\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        "\"[ -~&&[^\"\\\\]]{0,16}\"",
        (-100_000i64..100_000).prop_map(|n| n.to_string()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete {
        at: prop::sample::Index,
        length: usize,
    },
    Insert {
        at: prop::sample::Index,
        text: String,
    },
    /// The value of the `nth` `key = value` line becomes `value`.
    Value {
        nth: prop::sample::Index,
        value: String,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1..40usize)
            .prop_map(|(at, length)| Mutation::Delete { at, length }),
        (any::<prop::sample::Index>(), fragment())
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        (any::<prop::sample::Index>(), hostile_value())
            .prop_map(|(nth, value)| Mutation::Value { nth, value }),
    ]
}

/// The nearest char boundary at or before `at`.
fn boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::Delete { at, length } => {
            let start = boundary(text, at.index(text.len() + 1));
            let end = boundary(text, start + length);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::Insert { at, text: inserted } => {
            let at = boundary(text, at.index(text.len() + 1));
            format!("{}{inserted}{}", &text[..at], &text[at..])
        }
        Mutation::Value { nth, value } => {
            let assignments: Vec<usize> = text
                .lines()
                .enumerate()
                .filter(|(_, line)| line.contains(" = ") && !line.trim_start().starts_with('#'))
                .map(|(index, _)| index)
                .collect();
            if assignments.is_empty() {
                return text.to_string();
            }
            let target = assignments[nth.index(assignments.len())];
            text.lines()
                .enumerate()
                .map(|(index, line)| match line.split_once(" = ") {
                    Some((key, _)) if index == target => format!("{key} = {value}\n"),
                    _ => format!("{line}\n"),
                })
                .collect()
        }
    }
}

/// Parses and checks `text`: every problem must have a line within the file.
fn parse_and_check(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("mutated.toml");
    let outcome = Scenario::parse(text, path).and_then(|scenario| scenario.check().map(drop));
    if let Err(error) = outcome {
        assert_every_problem_has_a_line(text, &error)?;
    }
    Ok(())
}

fn assert_every_problem_has_a_line(text: &str, error: &ScenarioError) -> Result<(), TestCaseError> {
    prop_assert!(!error.problems.is_empty(), "an error without a problem");
    let last_line = text.split('\n').count();
    for problem in &error.problems {
        let line = problem
            .line
            .ok_or_else(|| TestCaseError::fail(format!("no line: {problem}\n---\n{text}")))?;
        prop_assert!(
            (1..=last_line).contains(&line),
            "line {line} of {last_line}: {problem}"
        );
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES, when set, overrides the count (`make fuzz`).
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_toml_ish_text_is_a_scenario_or_an_error_with_a_line(
        text in "([a-z_]{1,8}( ?= ?)?(\"[ -~]{0,8}\"|[0-9.e+-]{1,6}|\\[|\\]|\\{|\\}|,|\\[\\[[a-z.]{1,8}\\]\\])?\n?){0,30}"
    ) {
        parse_and_check(&text)?;
    }

    #[test]
    fn mutated_scenarios_are_a_scenario_or_an_error_with_a_line(
        small in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut text = if small { SMALL } else { DEMO }.to_string();
        for mutation in &mutations {
            text = apply(&text, mutation);
        }
        parse_and_check(&text)?;
    }
}

#[test]
fn the_seeds_and_the_shipped_scenarios_are_valid() {
    for seed in [SMALL, DEMO, CAPACITY] {
        let scenario = Scenario::parse(seed, Path::new("seed.toml"));
        let checked = scenario.and_then(|s| s.check().map(drop));
        assert!(checked.is_ok(), "{checked:?}");
    }
}
