//! The `faultline` command line: parses arguments, sets up logging on stderr and calls into
//! the workspace's libraries. Each subcommand lives in `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faultline_system::platform::telemetry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Load testing, chaos and benchmarking for event-driven systems, with the reference
/// system it was built to exercise.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log filter for stderr (tracing's EnvFilter syntax, e.g. `info` or
    /// `faultline_system=debug`).
    #[arg(long, global = true, env = "FAULTLINE_LOG", default_value = "info")]
    log: String,

    /// Log format on stderr: `text` for people, `json` for machines (one object a line,
    /// with the trace id of the request being served).
    #[arg(long, global = true, env = "FAULTLINE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario end to end: the reference system on the real stack, load and a
    /// fault timeline together, a drain and a consistency check, then results.json, the
    /// HTML report, junit.xml and summary.md; exit 0 when every gate holds, 1 when one
    /// fails, 2 for a bad scenario.
    Run(cmd::run::RunArgs),
    /// Drive HTTP load at a URL (open model at a rate, or closed model), or the
    /// reference system's user journeys (--journeys), or a scenario file's [load]
    /// (--scenario), or find the highest rate at which SLO gates hold (--find-max), and
    /// write results.json; latency is measured from each request's intended send time.
    // Boxed: its many options would make every command as large as it.
    Load(Box<cmd::load::LoadArgs>),
    /// Turn a browser recording (HAR) into a requests file for `load --requests`, with
    /// the filters of `load --har` (third parties, static assets, browser-only headers).
    Har(cmd::har::HarArgs),
    /// Merge the results.json of several load workers exactly (histograms add).
    Merge(cmd::merge::MergeArgs),
    /// Write the HTML report of a run (one self-contained index.html) from results.json.
    Report(cmd::report::ReportArgs),
    /// CI gates: thresholds and baseline regressions; exit 0 pass, 1 fail, 2 bad input;
    /// writes junit.xml and summary.md.
    Gate(cmd::gate::GateArgs),
    /// A TCP fault proxy in front of any TCP service: latency with jitter, bandwidth,
    /// slicing, timeouts; runs until Ctrl-C and prints what passed through.
    Proxy(faultline_chaos::cli::ProxyArgs),
    /// Run one service of the reference system (the supervisor starts one per replica).
    // Boxed: the gateway's front-end options (TLS, limits) make it large.
    Serve(Box<faultline_system::services::serve::ServeArgs>),
    /// The whole reference system on this machine.
    #[command(subcommand)]
    System(cmd::system::SystemCommand),
    /// Kafka producer benchmark: rdkafka and Apache Kafka's own ProducerPerformance side
    /// by side on the same brokers, over a grid of settings (document 002's Table 5).
    KafkaBench(Box<cmd::kafka_bench::KafkaBenchArgs>),
    /// Message-broker benchmark: NATS' `nats bench pub` or RabbitMQ's PerfTest against a
    /// node of that broker started on loopback (document 002's Table 1).
    BrokerBench(cmd::broker_bench::BrokerBenchArgs),
    /// The claims suite: every scenario of scenarios/claims/ and the Kafka benchmark of
    /// Table 5, then one claims report (claims.html, claims.md, claims.json) holding every
    /// claim of the documents against what this machine measured; exit 0 when the suite
    /// ran, 1 when a run failed, 2 for bad arguments.
    Claims(cmd::claims::ClaimsArgs),
    /// Real infrastructure on loopback: Apache Kafka (KRaft), PostgreSQL, Redis.
    #[command(subcommand)]
    Stack(cmd::stack::StackCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A service exports its spans when given an OTLP endpoint; the guard flushes them at
    // the end, after the runtime stopped (the flush blocks).
    let (_telemetry, spans) = match &cli.command {
        Command::Serve(args) => match telemetry::init(&args.telemetry, args.service.name()) {
            Ok(Some((guard, layer))) => {
                (Some(guard), Some(layer.with_filter(telemetry::targets())))
            }
            Ok(None) => (None, None),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        },
        _ => (None, None),
    };
    // Logs go to stderr: stdout carries only what a command promises to print. The filter
    // is the logs' own: spans are exported whatever the log level.
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = telemetry::not_logged(filter);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let subscriber = tracing_subscriber::registry().with(spans);
    if cli.log_format == "json" {
        let logs = logs.json().with_current_span(true).with_filter(filter);
        subscriber.with(logs).init();
    } else {
        subscriber
            .with(logs.with_target(false).with_filter(filter))
            .init();
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cmd::run::run(args).await,
            Command::Load(args) => cmd::load::run(*args).await,
            Command::Har(args) => cmd::har::run(args).await,
            Command::Merge(args) => cmd::merge::run(args).await,
            Command::Report(args) => cmd::report::run(args).await,
            Command::Gate(args) => cmd::gate::run(args).await,
            Command::Proxy(args) => cmd::proxy::run(args).await,
            Command::Serve(args) => cmd::serve::run(*args).await,
            Command::Stack(command) => cmd::stack::run(command).await,
            Command::System(command) => cmd::system::run(command).await,
            Command::KafkaBench(args) => cmd::kafka_bench::run(*args).await,
            Command::BrokerBench(args) => cmd::broker_bench::run(args).await,
            Command::Claims(args) => cmd::claims::run(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
