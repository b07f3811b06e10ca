//! `faultline broker-bench`: the flags of the message-broker benchmark, turned into a
//! `faultline_brokerbench::BrokerSpec`; the run is `faultline_brokerbench::run`. Prints
//! the table on stdout, progress on stderr, and writes `<broker>.json` with `-o DIR`.
//! Exit 2 for a bad setting or a missing program (before anything starts), 1 when the
//! run fails, 130 when interrupted (the broker is stopped).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use faultline_brokerbench::{flag, table, BrokerBenchError, BrokerSpec};
use faultline_results::broker_bench::Broker;
use faultline_results::quantity::{parse_bytes, parse_duration};

/// Arguments of `faultline broker-bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "What it runs:
  nats      nats-server on a free loopback port, then natscli's `nats bench pub` with no
            subscriber (core NATS: the server takes, routes and drops each message). The
            tool counts messages, not time: a 100,000-message probe sizes the measured run
            to last about --duration.
  rabbitmq  a RabbitMQ node of its own (free loopback ports, its own epmd, data directory
            and Erlang cookie; never the system service), then RabbitMQ's PerfTest with
            --producers producers and one consumer, so that messages flow through the
            queue instead of piling up, and publish->consume latency is timed.
  The broker is stopped at the end, on an error and on Ctrl-C. scripts/setup installs
  both brokers and both tools.

What it prints:
  published msg/s and MiB/s (the figure document 002's Table 1 is held against), the
  consumed rate where something consumes, and the tool's latency percentiles.

Examples:
  faultline broker-bench --broker nats
  faultline broker-bench --broker rabbitmq --duration 20s --producers 2 -o out/brokers")]
pub struct BrokerBenchArgs {
    /// The broker: `nats` or `rabbitmq`.
    #[arg(long, value_parser = parse_broker)]
    broker: Broker,

    /// How long the tool publishes, e.g. `10s` (at least 1s).
    #[arg(long, default_value = "10s")]
    duration: String,

    /// Size of each message body, e.g. `1024`, `1KiB` or `100B` (at most 1 MiB).
    #[arg(long, default_value = "1024")]
    size: String,

    /// Concurrent publishing clients, e.g. `1` or `4`.
    #[arg(long, default_value_t = 1)]
    producers: u32,

    /// Write `<broker>.json` (the settings, the tool's command line and figures) into
    /// this directory.
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,
}

fn parse_broker(text: &str) -> Result<Broker, String> {
    Broker::from_name(text).ok_or_else(|| {
        let known: Vec<&str> = Broker::ALL.iter().map(|b| b.name()).collect();
        format!("no such broker (known: {})", known.join(", "))
    })
}

fn setting<T, E: std::fmt::Display>(
    flag: &'static str,
    text: &str,
    parsed: Result<T, E>,
) -> Result<T, BrokerBenchError> {
    parsed.map_err(|error| BrokerBenchError::Setting {
        flag,
        value: text.to_string(),
        reason: error.to_string(),
    })
}

impl BrokerBenchArgs {
    /// The spec these flags ask for, checked whole.
    pub(crate) fn spec(&self) -> Result<BrokerSpec, BrokerBenchError> {
        let duration: Duration = setting(
            flag::DURATION,
            &self.duration,
            parse_duration(&self.duration),
        )?;
        let message_bytes = setting(flag::SIZE, &self.size, parse_bytes(&self.size))?;
        let spec = BrokerSpec {
            broker: self.broker,
            duration,
            message_bytes,
            producers: self.producers,
        };
        spec.check()?;
        Ok(spec)
    }
}

/// Runs the benchmark; a bad setting prints a message and exits with code 2.
pub async fn run(args: BrokerBenchArgs) -> anyhow::Result<ExitCode> {
    let spec = match args.spec() {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut progress = |line: &str| eprintln!("broker-bench: {line}");
    let outcome = tokio::select! {
        outcome = faultline_brokerbench::run(&spec, &mut progress) => outcome,
        // Dropping the run drops the broker and the tool, which kills them.
        _ = super::terminated() => {
            eprintln!("\nbroker-bench: interrupted; the broker was stopped");
            return Ok(ExitCode::from(130));
        }
    };
    super::finish_bench(
        "broker-bench",
        outcome,
        BrokerBenchError::is_usage,
        table::render,
        args.output.as_deref(),
        faultline_brokerbench::write_json,
    )
}
