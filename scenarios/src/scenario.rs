//! The [`Scenario`] model: one TOML file, parsed once into the tables each crate owns
//! (`[system]`: [`Topology`], `[load]`: [`LoadSpec`], `[[faults]]`: [`FaultSpec`],
//! `[[gates]]`: [`GateSpec`]), then checked whole by [`Scenario::check`] before anything
//! starts. Every problem found is reported at once, each with its line, so a scenario
//! that passes the check cannot fail as a usage error after the system is up.
//!
//! ```toml
//! name = "checkout"
//! [system]
//! replicas = { orders = 2 }
//! [load]
//! rate = 20
//! duration = "30s"
//! [load.journeys]
//! mix = { browse = 6, checkout = 3 }
//! [[faults]]
//! at = "8s"
//! kind = "kill"
//! target = "orders-1"
//! [[gates]]
//! metric = "checker.lost"
//! max = "0"
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
};

use faultline_chaos::{spec::FaultSpec, Fault};
use faultline_loadgen::scenario::{LoadPlan, LoadSpec};
use faultline_reports::Gate;
use faultline_results::{GateSpec, RunInfo};
use faultline_system::{supervisor::SystemSpec, topology::Topology};
use serde::Deserialize;
use toml::Spanned;

use crate::targets;

/// The base URL the load plan is checked against before the system exists; the run
/// plans it again against the gateway, which differs only in its address.
const STAND_IN_TARGET: &str = "http://127.0.0.1:1";

/// A scenario file as written, each table kept with its place in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    description: Option<String>,
    system: Option<Spanned<Topology>>,
    load: Spanned<LoadSpec>,
    #[serde(default)]
    faults: Vec<Spanned<FaultSpec>>,
    #[serde(default)]
    gates: Vec<Spanned<GateSpec>>,
}

/// A parsed scenario: what the file says, not yet checked against itself.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `name`, or the file's stem.
    pub name: String,
    pub description: Option<String>,
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// The file as written (kept in results, so a report shows what was run).
    pub text: String,
    pub topology: Topology,
    pub load: LoadSpec,
    pub faults: Vec<FaultSpec>,
    pub gates: Vec<GateSpec>,
    lines: Lines,
}

/// The first line of each table, for problems found after parsing.
#[derive(Debug, Clone, Default)]
struct Lines {
    system: Option<usize>,
    load: usize,
    faults: Vec<usize>,
    gates: Vec<usize>,
}

/// One thing wrong with a scenario, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when the problem has one.
    pub line: Option<usize>,
    /// The table at fault, e.g. `[[faults]] #2` or `[load]`.
    pub table: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.table, self.message),
            None => write!(f, "{}: {}", self.table, self.message),
        }
    }
}

/// A scenario that cannot run: every problem found, each with its line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ScenarioError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.problems.as_slice() {
            [one] => write!(f, "scenario {path}: {one}"),
            many => {
                write!(f, "scenario {path} has {} problems:", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl ScenarioError {
    fn one(path: &Path, line: Option<usize>, table: &str, message: impl Into<String>) -> Self {
        ScenarioError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line,
                table: table.into(),
                message: message.into(),
            }],
        }
    }
}

/// A scenario checked whole: everything the run needs, typed.
#[derive(Debug, Clone)]
pub struct CheckedScenario {
    pub scenario: Scenario,
    /// The topology applied onto the system's defaults (the binary's path is the run's
    /// to set).
    pub system: SystemSpec,
    pub faults: Vec<Fault>,
    /// The dependencies faults act on, each to get fault proxies.
    pub proxied: Vec<faultline_system::Dependency>,
    pub gates: Vec<Gate>,
    /// The SLO gates of `[load.find_max]`, which every step of a capacity search must
    /// hold (empty without a search).
    pub capacity_gates: Vec<Gate>,
}

impl Scenario {
    /// Reads and parses a scenario file.
    pub fn read(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::one(path, None, "file", format!("cannot be read: {e}")))?;
        Scenario::parse(&text, path)
    }

    /// Parses scenario text; `path` names it in messages and gives the default name.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| parse_error(text, path, &e))?;
        let line = |span: std::ops::Range<usize>| line_of(text, span.start);
        let lines = Lines {
            system: file.system.as_ref().map(|s| line(s.span())),
            load: line(file.load.span()),
            faults: file.faults.iter().map(|f| line(f.span())).collect(),
            gates: file.gates.iter().map(|g| line(g.span())).collect(),
        };
        let name = file.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into())
        });
        Ok(Scenario {
            name,
            description: file.description,
            path: path.to_path_buf(),
            text: text.to_string(),
            topology: file.system.map(Spanned::into_inner).unwrap_or_default(),
            load: file.load.into_inner(),
            faults: file.faults.into_iter().map(Spanned::into_inner).collect(),
            gates: file.gates.into_iter().map(Spanned::into_inner).collect(),
            lines,
        })
    }

    /// Checks the scenario whole, without starting anything: the topology, the load
    /// plan, every fault (its values, and its target bound against the topology in a dry
    /// run), every gate's metric and limit. Every problem is reported, each with its line.
    pub fn check(&self) -> Result<CheckedScenario, ScenarioError> {
        let mut problems = Vec::new();
        let mut system = SystemSpec::new(PathBuf::new());
        if let Err(message) = self.topology.apply(&mut system) {
            problems.push(self.problem(self.lines.system, "[system]", message));
        }
        if let Err(error) = self.plan(STAND_IN_TARGET, RunInfo::default()) {
            problems.push(self.problem(Some(self.lines.load), "[load]", error.to_string()));
        }
        let faults = self.check_faults(&system, &mut problems);
        let proxied = faults
            .as_deref()
            .map(|faults| targets::proxied(&system, faults))
            .unwrap_or_default();
        let capacity_gates = self.check_capacity_gates(&mut problems);
        let mut gates = Vec::new();
        for (index, spec) in self.gates.iter().enumerate() {
            match Gate::from_spec(spec, &self.path.display().to_string()) {
                Ok(judged) => gates.extend(judged),
                Err(error) => problems.push(self.problem(
                    self.lines.gates.get(index).copied(),
                    &format!("[[gates]] #{}", index + 1),
                    error.to_string(),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(ScenarioError {
                path: self.path.clone(),
                problems,
            });
        }
        Ok(CheckedScenario {
            scenario: self.clone(),
            system,
            faults: faults.unwrap_or_default(),
            proxied,
            gates,
            capacity_gates,
        })
    }

    /// The gates of `[load.find_max]`, each parsed as `--gate` parses it; a bad one is
    /// a problem of `[load]`.
    fn check_capacity_gates(&self, problems: &mut Vec<Problem>) -> Vec<Gate> {
        let Some(find_max) = &self.load.find_max else {
            return Vec::new();
        };
        let origin = format!("{} [load.find_max]", self.path.display());
        let mut gates = Vec::new();
        for text in &find_max.gates {
            match Gate::parse_expression(text, &origin) {
                Ok(gate) => gates.push(gate),
                Err(error) => problems.push(self.problem(
                    Some(self.lines.load),
                    "[load.find_max]",
                    format!("gates: {error}"),
                )),
            }
        }
        gates
    }

    /// The `[load]` planned against `base_url` (the gateway's, in a run).
    pub fn plan(
        &self,
        base_url: &str,
        run_info: RunInfo,
    ) -> Result<LoadPlan, faultline_loadgen::LoadError> {
        self.load
            .plan(Some(base_url), run_info, &self.path.display().to_string())
    }

    /// Validates each fault on its own (so each problem gets its line), then the set
    /// (overlaps), then binds every target against the topology. `None` when any fault
    /// is wrong.
    fn check_faults(&self, system: &SystemSpec, problems: &mut Vec<Problem>) -> Option<Vec<Fault>> {
        let before = problems.len();
        for (index, spec) in self.faults.iter().enumerate() {
            if let Err(error) = spec.validate(index + 1) {
                problems.push(self.fault_problem(index + 1, error.to_string()));
            }
        }
        if problems.len() > before {
            return None;
        }
        let faults = match faultline_chaos::spec::validate(&self.faults) {
            Ok(faults) => faults,
            Err(error) => {
                let number = error.fault_number().unwrap_or(1);
                problems.push(self.fault_problem(number, error.to_string()));
                return None;
            }
        };
        for fault in &faults {
            if let Err(message) = targets::check_target(system, fault) {
                problems.push(self.fault_problem(fault.number, message));
            }
        }
        (problems.len() == before).then_some(faults)
    }

    fn fault_problem(&self, number: usize, message: String) -> Problem {
        self.problem(
            self.lines.faults.get(number.saturating_sub(1)).copied(),
            "[[faults]]",
            message,
        )
    }

    fn problem(&self, line: Option<usize>, table: &str, message: String) -> Problem {
        Problem {
            line,
            table: table.into(),
            message,
        }
    }
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML or schema error with its line; `[[gate]]` (an old spelling) gets a hint.
fn parse_error(text: &str, path: &Path, error: &toml::de::Error) -> ScenarioError {
    let line = error.span().map(|span| line_of(text, span.start));
    let mut message = error.message().trim().to_string();
    if message.contains("unknown field `gate`") {
        message = "[[gate]] is not a table of a scenario file: write [[gates]]".into();
    }
    ScenarioError::one(path, line, "file", message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const BASE: &str = r#"
name = "t"
[system]
replicas = { orders = 2 }
kafka_brokers = 1
[load]
rate = 5
duration = "10s"
[load.journeys]
mix = { browse = 1, checkout = 1 }
"#;

    fn check(extra: &str) -> Result<CheckedScenario, ScenarioError> {
        let text = format!("{BASE}{extra}");
        Scenario::parse(&text, Path::new("t.toml"))?.check()
    }

    /// The one problem of a scenario that must be refused, with its line.
    fn refused(extra: &str) -> Problem {
        let error = check(extra).unwrap_err();
        assert_eq!(error.problems.len(), 1, "{error}");
        error.problems[0].clone()
    }

    fn base_lines() -> usize {
        BASE.lines().count()
    }

    #[test]
    fn a_good_scenario_is_checked_into_faults_proxies_and_gates() {
        let checked = check(
            r#"
[[faults]]
at = "2s"
kind = "kill"
target = "orders-2"
[[faults]]
at = "3s"
duration = "1s"
kind = "latency"
target = "postgres"
latency = "20ms"
[[gates]]
metric = "http.p99"
max = "500ms"
"#,
        )
        .unwrap();
        assert_eq!(checked.faults.len(), 2);
        assert_eq!(checked.proxied.len(), 1);
        assert_eq!(checked.gates.len(), 1);
        assert_eq!(checked.scenario.name, "t");
    }

    #[test]
    fn a_target_that_names_nothing_is_refused_with_its_line() {
        let problem = refused("[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"ordrs\"\n");
        assert_eq!(problem.line, Some(base_lines() + 1), "{problem}");
        assert!(problem.message.contains("ordrs"), "{problem}");
        assert_eq!(problem.table, "[[faults]]");
        assert!(problem.message.starts_with("fault #1 "), "{problem}");
    }

    #[test]
    fn a_replica_the_topology_lacks_is_refused() {
        let problem = refused("[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"orders-3\"\n");
        assert!(problem.message.contains("orders-3"), "{problem}");
        assert_eq!(problem.line, Some(base_lines() + 1));
    }

    #[test]
    fn a_fault_kind_on_the_wrong_target_is_refused_with_its_line() {
        let kill_kafka = refused("[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"kafka\"\n");
        assert!(kill_kafka.message.contains("kill"), "{kill_kafka}");
        assert_eq!(kill_kafka.line, Some(base_lines() + 1));
        let latency_orders = refused(
            "[[faults]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"latency\"\ntarget = \"orders\"\nlatency = \"5ms\"\n",
        );
        assert!(
            latency_orders.message.contains("orders"),
            "{latency_orders}"
        );
    }

    #[test]
    fn a_broker_the_topology_lacks_is_refused_with_its_line() {
        let problem = refused(
            "[[faults]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"partition\"\ntarget = \"kafka-2\"\n",
        );
        assert!(problem.message.contains("kafka-2"), "{problem}");
        assert_eq!(problem.line, Some(base_lines() + 1));
    }

    #[test]
    fn mtls_in_the_system_table_turns_mutual_tls_on_and_is_off_without_it() {
        assert!(!check("").unwrap().system.mtls);
        let with = |value: &str| BASE.replace("[system]\n", &format!("[system]\nmtls = {value}\n"));
        let on = Scenario::parse(&with("true"), Path::new("t.toml")).unwrap();
        assert!(on.check().unwrap().system.mtls);
        let error = Scenario::parse(&with("\"yes\""), Path::new("t.toml")).unwrap_err();
        // The line of `mtls = "yes"`, the one after `[system]`.
        let system_line = BASE.lines().position(|l| l == "[system]").unwrap() + 1;
        assert_eq!(error.problems[0].line, Some(system_line + 1), "{error}");
        assert!(error.problems[0].message.contains("bool"), "{error}");
    }

    #[test]
    fn a_gate_on_an_unknown_metric_is_refused_with_its_line() {
        let problem = refused("\n[[gates]]\nmetric = \"http.p999x\"\nmax = \"1s\"\n");
        assert_eq!(problem.line, Some(base_lines() + 2), "{problem}");
        assert_eq!(problem.table, "[[gates]] #1");
        assert!(problem.message.contains("http.p999x"), "{problem}");
    }

    #[test]
    fn a_bad_quantity_is_refused_with_its_line() {
        let latency = refused(
            "[[faults]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"latency\"\ntarget = \"postgres\"\nlatency = \"fast\"\n",
        );
        assert!(latency.message.contains("fast"), "{latency}");
        assert_eq!(latency.line, Some(base_lines() + 1));
        let gate = refused("[[gates]]\nmetric = \"http.p99\"\nmax = \"5 parsecs\"\n");
        assert!(gate.message.contains("parsecs"), "{gate}");
        assert_eq!(gate.line, Some(base_lines() + 1));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let error = check(
            "[[faults]]\nat = \"1s\"\nkind = \"kill\"\ntarget = \"nobody\"\n[[gates]]\nmetric = \"nothing\"\nmax = \"1\"\n",
        )
        .unwrap_err();
        assert_eq!(error.problems.len(), 2, "{error}");
        assert!(error.to_string().contains("2 problems"), "{error}");
    }

    #[test]
    fn the_old_gate_spelling_is_an_error_that_names_its_line() {
        let error = check("[[gate]]\nmetric = \"http.p99\"\nmax = \"1s\"\n").unwrap_err();
        let problem = &error.problems[0];
        assert!(problem.message.contains("[[gates]]"), "{problem}");
        assert_eq!(problem.line, Some(base_lines() + 1), "{problem}");
    }

    #[test]
    fn a_load_file_keeps_its_gates_and_faults_beside_its_load() {
        let text = "name = \"checkout\"\n[load]\ntarget = \"http://127.0.0.1:8080\"\nstages = \"5s:0->10, 10s:10\"\n[load.journeys]\nmix = { browse = 6, checkout = 3 }\n[[gates]]\nmetric = \"http.p99\"\nmax = \"500ms\"\n[[faults]]\nat = \"5s\"\nkind = \"kill\"\ntarget = \"orders\"\n";
        let scenario = Scenario::parse(text, Path::new("t.toml")).unwrap();
        assert_eq!(scenario.gates.len(), 1);
        assert_eq!(scenario.faults.len(), 1);
        assert!(scenario.check().is_ok());
    }

    #[test]
    fn a_capacity_search_sets_its_own_rates_and_checks_its_gates() {
        let search = "[load]\ntarget = \"http://127.0.0.1:1\"\n[load.find_max]\nstart = 10\nfactor = 2\nmax = 100\nhold = \"1s\"\ngates = [\"http.p99<120ms\", \"http.error_rate<0.1%\"]\n";
        let checked = Scenario::parse(search, Path::new("t.toml"))
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(checked.capacity_gates.len(), 2);

        let with_rate = search.replace(
            "[load.find_max]",
            "rate = 5\nduration = \"1s\"\n[load.find_max]",
        );
        let error = Scenario::parse(&with_rate, Path::new("t.toml"))
            .unwrap()
            .check()
            .unwrap_err();
        assert!(error.to_string().contains("sets its own rates"), "{error}");
        assert_eq!(error.problems[0].line, Some(1), "{error}");

        let bad_gate = search.replace("http.p99<120ms", "http.p99<120 parsecs");
        let error = Scenario::parse(&bad_gate, Path::new("t.toml"))
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(error.problems[0].table, "[load.find_max]", "{error}");
        assert!(error.to_string().contains("parsecs"), "{error}");
    }

    #[test]
    fn a_bad_load_is_refused_with_the_line_of_load() {
        let text = "[load]\nrate = 5\n[load.journeys]\nmix = { browse = 1 }\n";
        let error = Scenario::parse(text, Path::new("t.toml"))
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(error.problems[0].line, Some(1), "{error}");
        assert!(error.to_string().contains("duration"), "{error}");
    }

    #[test]
    fn the_system_table_turns_prometheus_on_and_sets_the_trace_sample_ratio() {
        let text = BASE.replace(
            "kafka_brokers = 1\n",
            "kafka_brokers = 1\nprometheus = true\ntrace_sample_ratio = 0.25\n",
        );
        let checked = Scenario::parse(&text, Path::new("t.toml"))
            .unwrap()
            .check()
            .unwrap();
        assert!(checked.system.stack.prometheus.is_some());
        assert_eq!(checked.system.trace_sample_ratio, Some(0.25));

        let text = BASE.replace(
            "kafka_brokers = 1\n",
            "kafka_brokers = 1\ntrace_sample_ratio = 2\n",
        );
        let error = Scenario::parse(&text, Path::new("t.toml"))
            .unwrap()
            .check()
            .unwrap_err();
        assert!(error.to_string().contains("trace_sample_ratio"), "{error}");
    }
}
