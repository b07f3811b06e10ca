//! `faultline broker-bench`: how fast a message broker takes messages on this machine,
//! measured with the broker's own load tool against a node of it started here on
//! loopback: NATS with `nats bench pub` (natscli), RabbitMQ with PerfTest
//! (`com.rabbitmq.perf.PerfTest`). Document 002's Table 1 puts them beside Kafka, whose
//! column `faultline kafka-bench` answers.
//!
//! The parts, in the order a run uses them:
//!
//! - [`BrokerSpec`] (this file): the settings, checked whole before anything starts; a
//!   bad one is a [`BrokerBenchError::Setting`] naming its flag.
//! - [`nats`] / [`rabbitmq`]: find the programs (a missing one is a usage error, before
//!   anything starts), start the broker on a free loopback port with a data directory of
//!   its own, run the tool, read its output with a parser tested on captured output.
//! - [`table`]: the table printed on stdout.
//!
//! The broker is a child of faultline ([`faultline_system::stack::process`]): it is
//! stopped when the run ends, on an error, and when the run's future is dropped (Ctrl-C),
//! and killed by the kernel if faultline dies. The tool is a tokio process killed on drop.
//! The figures are `faultline_results::broker_bench` types, written as `<broker>.json`.

pub mod nats;
pub mod rabbitmq;
pub mod table;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use faultline_results::broker_bench::{
    Broker, BrokerBenchResults, BrokerBenchSettings, BrokerMeasurement, BROKER_BENCH_SCHEMA_VERSION,
};
use faultline_results::Machine;
use faultline_system::stack::StackError;

/// The flags a [`BrokerBenchError::Setting`] names.
pub mod flag {
    pub const DURATION: &str = "--duration";
    pub const SIZE: &str = "--size";
    pub const PRODUCERS: &str = "--producers";
}

/// How long a broker may take to start.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a broker may take to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The largest message: NATS' default `max_payload` (1 MiB).
pub const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;
/// Beyond this many producers the tools' clients, not the broker, fill two cores.
pub const MAX_PRODUCERS: u32 = 64;
/// Lines of a tool's output quoted when it fails.
const QUOTED_LINES: usize = 15;

/// Everything that can end a broker-bench run.
#[derive(Debug, thiserror::Error)]
pub enum BrokerBenchError {
    #[error("{flag} {value}: {reason}")]
    Setting {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("{program} was not found ({hint})")]
    ProgramMissing { program: String, hint: String },
    // Boxed: a stack error quoting a broker's log is large, every other variant small.
    #[error(transparent)]
    Stack(Box<StackError>),
    #[error("{tool}: {reason}")]
    Tool { tool: &'static str, reason: String },
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<StackError> for BrokerBenchError {
    fn from(error: StackError) -> Self {
        BrokerBenchError::Stack(Box::new(error))
    }
}

impl BrokerBenchError {
    /// Whether the fault is in what was asked or installed (exit 2) rather than in the
    /// run (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            BrokerBenchError::Setting { .. } | BrokerBenchError::ProgramMissing { .. } => true,
            BrokerBenchError::Stack(stack) => stack.is_usage(),
            _ => false,
        }
    }

    fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrokerBenchError {
        let doing = doing.into();
        move |source| BrokerBenchError::Io { doing, source }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSpec {
    pub broker: Broker,
    /// How long the tool publishes.
    pub duration: Duration,
    pub message_bytes: u64,
    /// Concurrent publishing clients.
    pub producers: u32,
}

impl BrokerSpec {
    /// Refuses settings the tools cannot run, naming the flag.
    pub fn check(&self) -> Result<(), BrokerBenchError> {
        let setting = |flag, value: String, reason: &str| {
            Err(BrokerBenchError::Setting {
                flag,
                value,
                reason: reason.to_string(),
            })
        };
        if self.duration < Duration::from_secs(1) || self.duration > Duration::from_secs(3600) {
            // PerfTest runs for whole seconds.
            return setting(
                flag::DURATION,
                format!("{:?}", self.duration),
                "must be from 1s to 1h",
            );
        }
        if self.message_bytes == 0 || self.message_bytes > MAX_MESSAGE_BYTES {
            return setting(
                flag::SIZE,
                self.message_bytes.to_string(),
                "must be from 1 byte to 1 MiB (NATS' default max_payload)",
            );
        }
        if self.producers == 0 || self.producers > MAX_PRODUCERS {
            return setting(
                flag::PRODUCERS,
                self.producers.to_string(),
                &format!("must be from 1 to {MAX_PRODUCERS}"),
            );
        }
        Ok(())
    }
}

/// What a broker's module hands back from one run.
pub(crate) struct ToolRun {
    pub broker_version: String,
    pub tool_command: Vec<String>,
    pub consumers: u32,
    pub messages: Option<u64>,
    pub measured: BrokerMeasurement,
}

/// Runs the spec's broker and tool and returns what the tool measured; `progress` hears
/// of each phase (the command prints it on stderr). The broker is stopped before it
/// returns, error or not.
pub async fn run(
    spec: &BrokerSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<BrokerBenchResults, BrokerBenchError> {
    spec.check()?;
    let started_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let data = tempfile::Builder::new()
        .prefix(&format!("faultline-broker-bench-{}-", spec.broker))
        .tempdir()
        .map_err(BrokerBenchError::io("creating the broker's data directory"))?;
    let run = match spec.broker {
        Broker::Nats => nats::run(spec, data.path(), progress).await?,
        Broker::Rabbitmq => rabbitmq::run(spec, data.path(), progress).await?,
    };
    Ok(BrokerBenchResults {
        schema_version: BROKER_BENCH_SCHEMA_VERSION,
        started_at,
        machine: Machine::this(),
        faultline_version: env!("CARGO_PKG_VERSION").to_string(),
        broker: spec.broker,
        broker_version: run.broker_version,
        tool_command: run.tool_command,
        settings: BrokerBenchSettings {
            message_bytes: spec.message_bytes,
            producers: spec.producers,
            consumers: run.consumers,
            duration_secs: spec.duration.as_secs_f64(),
            messages: run.messages,
        },
        measured: run.measured,
    })
}

/// Writes `<broker>.json` into `dir` (created if missing) and returns its path.
pub fn write_json(dir: &Path, results: &BrokerBenchResults) -> Result<PathBuf, BrokerBenchError> {
    std::fs::create_dir_all(dir)
        .map_err(BrokerBenchError::io(format!("creating {}", dir.display())))?;
    let path = dir.join(format!("{}.json", results.broker));
    let json = serde_json::to_string_pretty(results).map_err(|e| BrokerBenchError::Io {
        doing: "encoding the results".into(),
        source: e.into(),
    })?;
    std::fs::write(&path, json)
        .map_err(BrokerBenchError::io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// A program from `$env`, else the cache's link `link` (scripts/setup makes it), else
/// PATH; `hint` says how to install it.
pub(crate) fn find_program(
    env: &str,
    link: &str,
    name: &str,
    hint: &str,
) -> Result<PathBuf, BrokerBenchError> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(BrokerBenchError::ProgramMissing {
                program: format!("{name} at ${env} ({})", path.display()),
                hint: hint.to_string(),
            })
        };
    }
    let cached = faultline_system::stack::kafka::default_cache_dir().join(link);
    if cached.is_file() {
        return Ok(cached);
    }
    faultline_system::stack::process::find_program(name, &[]).ok_or_else(|| {
        BrokerBenchError::ProgramMissing {
            program: name.to_string(),
            hint: hint.to_string(),
        }
    })
}

/// Runs a tool to its end (killed if the run is dropped) and returns its output, or an
/// error quoting the end of it when it fails.
pub(crate) async fn run_tool(
    tool: &'static str,
    mut command: tokio::process::Command,
) -> Result<Output, BrokerBenchError> {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .map_err(|error| BrokerBenchError::Tool {
            tool,
            reason: format!(
                "could not run {}: {error}",
                command.as_std().get_program().to_string_lossy()
            ),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(tool_failed(
            tool,
            &output,
            &format!("ended with {}", output.status),
        ))
    }
}

/// A tool that ran but whose output says no figure: its reason and the end of its output.
pub(crate) fn tool_failed(tool: &'static str, output: &Output, reason: &str) -> BrokerBenchError {
    BrokerBenchError::Tool {
        tool,
        reason: format!(
            "{reason}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&String::from_utf8_lossy(&output.stdout)),
            tail(&String::from_utf8_lossy(&output.stderr))
        ),
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(QUOTED_LINES)..].join("\n")
}

/// The arguments of a command, as text, for the results.
pub(crate) fn arguments(command: &tokio::process::Command) -> Vec<String> {
    command
        .as_std()
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub(crate) async fn accepts(port: u16) -> Result<(), String> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec() -> BrokerSpec {
        BrokerSpec {
            broker: Broker::Nats,
            duration: Duration::from_secs(10),
            message_bytes: 1024,
            producers: 1,
        }
    }

    #[test]
    fn settings_the_tools_cannot_run_name_their_flag() {
        assert!(spec().check().is_ok());
        let cases = [
            (
                BrokerSpec {
                    message_bytes: 0,
                    ..spec()
                },
                "--size 0",
            ),
            (
                BrokerSpec {
                    message_bytes: MAX_MESSAGE_BYTES + 1,
                    ..spec()
                },
                "--size 1048577",
            ),
            (
                BrokerSpec {
                    producers: 0,
                    ..spec()
                },
                "--producers 0",
            ),
            (
                BrokerSpec {
                    duration: Duration::from_millis(500),
                    ..spec()
                },
                "--duration 500ms",
            ),
        ];
        for (bad, named) in cases {
            let error = bad.check().unwrap_err();
            assert!(error.is_usage(), "{error}");
            assert!(error.to_string().starts_with(named), "{error}");
        }
    }
}
