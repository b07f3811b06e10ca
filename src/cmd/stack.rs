//! `faultline stack ...`: bring the real stack up on loopback and keep it there (`up`), or
//! push a batch of events through it and report (`smoke`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use faultline_system::stack::kafka::LocalKafka;
use faultline_system::stack::smoke::{self, SmokeSpec};
use faultline_system::stack::{
    KafkaSpec, PostgresSpec, PrometheusSpec, RedisSpec, Stack, StackError, StackSpec, KAFKA_VERSION,
};

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Start Kafka, PostgreSQL and Redis on free loopback ports, print their addresses to
    /// stdout as env-file lines (KAFKA_BOOTSTRAP, DATABASE_URL, REDIS_URL), and keep them
    /// running until Ctrl-C or SIGTERM. Progress and logs go to stderr.
    Up(UpArgs),
    /// Start the stack (or use external components), produce keyed events through Kafka and
    /// consume them back, round-trip PostgreSQL and Redis, print what happened, stop.
    Smoke(SmokeArgs),
}

/// Which components to run, and where.
#[derive(Debug, Args)]
pub struct StackArgs {
    /// Number of Kafka brokers (each also a KRaft controller voter).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    kafka_brokers: u16,

    /// JVM heap of each Kafka broker, in MiB (at most 512).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(64..=512))]
    kafka_heap_mb: u32,

    /// Fixed client ports for the Kafka brokers, comma-separated, one per broker
    /// (default: free ports).
    #[arg(long, value_delimiter = ',')]
    kafka_ports: Vec<u16>,

    /// The `host:port` each broker advertises to clients, comma-separated, one per broker:
    /// put a fault proxy's address here to route all client traffic through it.
    #[arg(long, value_delimiter = ',')]
    kafka_advertised: Vec<String>,

    /// Fixed PostgreSQL port (default: a free one).
    #[arg(long)]
    postgres_port: Option<u16>,

    /// Fixed Redis port (default: a free one).
    #[arg(long)]
    redis_port: Option<u16>,

    /// Turn on Redis append-only persistence (off by default: it is a cache here).
    #[arg(long)]
    redis_persistence: bool,

    /// Databases to create besides the default `faultline` one (repeatable).
    #[arg(long = "database", value_name = "NAME")]
    databases: Vec<String>,

    /// Use this existing Kafka cluster (bootstrap servers) instead of starting one.
    #[arg(long, env = "FAULTLINE_KAFKA_BOOTSTRAP", value_name = "HOST:PORT,...")]
    kafka_bootstrap: Option<String>,

    /// Use this existing PostgreSQL database instead of starting a server.
    #[arg(long, env = "FAULTLINE_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,

    /// Use this existing Redis instead of starting one.
    #[arg(long, env = "FAULTLINE_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,

    /// Keep local data here instead of in a fresh temporary directory (not removed).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Keep the temporary data directory after stopping.
    #[arg(long)]
    keep_data: bool,

    /// How long each component may take to become ready.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,

    /// Also start Jaeger (in memory, loopback ports) and print JAEGER_URL= and
    /// OTEL_EXPORTER_OTLP_ENDPOINT=; the services of `system up` export their spans to it.
    #[arg(long)]
    tracing: bool,

    /// Also start Prometheus (Debian's `prometheus`, a loopback port) scraping every
    /// service replica of `system up` each second; print PROMETHEUS_URL= and
    /// PROMETHEUS_DATA_DIR=, where its series stay after the stack stops.
    #[arg(long)]
    prometheus: bool,

    /// Start the components as Docker containers (testcontainers) instead of processes.
    #[cfg(feature = "containers")]
    #[arg(long)]
    containers: bool,
}

impl StackArgs {
    /// Takes external components from the variables `faultline stack up` prints
    /// (KAFKA_BOOTSTRAP, DATABASE_URL, REDIS_URL) where no flag named one, so that
    /// `source stack.env` points the next command at a running stack.
    pub fn use_env_file_variables(&mut self) {
        for (variable, slot) in [
            ("KAFKA_BOOTSTRAP", &mut self.kafka_bootstrap),
            ("DATABASE_URL", &mut self.database_url),
            ("REDIS_URL", &mut self.redis_url),
        ] {
            if slot.is_none() {
                if let Some(value) = std::env::var(variable).ok().filter(|v| !v.is_empty()) {
                    tracing::info!("using the external component in ${variable}");
                    *slot = Some(value);
                }
            }
        }
    }

    pub fn spec(&self) -> StackSpec {
        let kafka = match &self.kafka_bootstrap {
            Some(bootstrap) => KafkaSpec::External {
                bootstrap: bootstrap.clone(),
            },
            None => KafkaSpec::Local(LocalKafka {
                brokers: usize::from(self.kafka_brokers),
                heap_mb: self.kafka_heap_mb,
                client_ports: self.kafka_ports.clone(),
                advertised: self.kafka_advertised.clone(),
                ..LocalKafka::default()
            }),
        };
        let postgres = match &self.database_url {
            Some(url) => PostgresSpec::External { url: url.clone() },
            None => PostgresSpec::Local {
                port: self.postgres_port,
                databases: self.databases.clone(),
            },
        };
        let redis = match &self.redis_url {
            Some(url) => RedisSpec::External { url: url.clone() },
            None => RedisSpec::Local {
                port: self.redis_port,
                persistence: self.redis_persistence,
            },
        };
        StackSpec {
            kafka,
            postgres,
            redis,
            data_dir: self.data_dir.clone(),
            keep_data: self.keep_data,
            ready_timeout: self.ready_timeout,
            tracing: self.tracing,
            prometheus: self.prometheus.then(PrometheusSpec::default),
        }
    }

    async fn start(&self) -> Result<Stack, StackError> {
        let spec = self.spec();
        #[cfg(feature = "containers")]
        if self.containers {
            return Stack::start_containers(spec).await;
        }
        Stack::start(spec).await
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    stack: StackArgs,

    /// Events to produce and consume back.
    #[arg(long, default_value_t = 10_000)]
    events: usize,

    /// Distinct keys among the events (order is checked per key).
    #[arg(long, default_value_t = 100)]
    keys: usize,
}

pub async fn run(command: StackCommand) -> anyhow::Result<ExitCode> {
    match command {
        StackCommand::Up(args) => up(args).await,
        StackCommand::Smoke(args) => smoke(args).await,
    }
}

/// Bad input or a missing prerequisite exits 2; a component that broke exits 1.
pub fn exit_code_for(error: &StackError) -> ExitCode {
    if error.is_usage() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

async fn start_or_report(args: &StackArgs) -> Result<Stack, ExitCode> {
    let started = std::time::Instant::now();
    match args.start().await {
        Ok(stack) => {
            tracing::info!(
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                kafka = KAFKA_VERSION,
                data_dir = %stack.data_dir().display(),
                "stack is up"
            );
            Ok(stack)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Err(exit_code_for(&error))
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut stack = match start_or_report(&args.stack).await {
        Ok(stack) => stack,
        Err(code) => return Ok(code),
    };
    {
        let mut stdout = std::io::stdout().lock();
        for line in stack.endpoints().env_lines() {
            writeln!(stdout, "{line}").context("writing the endpoints to stdout")?;
        }
        stdout.flush().context("writing the endpoints to stdout")?;
    }
    tracing::info!("press Ctrl-C (or send SIGTERM) to stop");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let mut watch = tokio::time::interval(Duration::from_millis(500));
    let code = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
            _ = terminate.recv() => break ExitCode::SUCCESS,
            _ = watch.tick() => {
                if let Some(error) = stack.exited_component() {
                    eprintln!("error: {error}");
                    break ExitCode::FAILURE;
                }
            }
        }
    };
    stack.stop().await;
    Ok(code)
}

async fn smoke(args: SmokeArgs) -> anyhow::Result<ExitCode> {
    if args.events == 0 {
        eprintln!("error: --events must be at least 1");
        return Ok(ExitCode::from(2));
    }
    let stack = match start_or_report(&args.stack).await {
        Ok(stack) => stack,
        Err(code) => return Ok(code),
    };
    let brokers = match &args.stack.kafka_bootstrap {
        Some(_) => 1,
        None => i32::from(args.stack.kafka_brokers),
    };
    let spec = SmokeSpec {
        events: args.events,
        keys: args.keys.max(1),
        replication: brokers.min(3),
        ..SmokeSpec::default()
    };
    let endpoints = stack.endpoints();
    println!("{endpoints}");
    let outcome = smoke::run(&endpoints, &spec).await;
    stack.stop().await;
    match outcome {
        Ok(report) => {
            println!("{report}");
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
