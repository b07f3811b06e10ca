//! `faultline claims`: the claims suite. Arguments only; the suite is
//! `faultline_scenarios::claims::run`. The Kafka benchmark's Table 5 settings are
//! `faultline kafka-bench --table5`'s own, parsed by the same flags, so the two commands
//! cannot drift apart; so are the broker benchmarks' (`faultline broker-bench`). Exit 0 when the suite ran (the verdicts are the report's
//! content), 1 when a run failed to run, 2 for bad arguments or a bad scenario, 130
//! when interrupted.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use faultline_results::RunInfo;
use faultline_scenarios::claims::{self, SuiteError, SuiteOptions};

use super::broker_bench::BrokerBenchArgs;
use super::kafka_bench::KafkaBenchArgs;

/// Records per Table 5 row: enough for a steady rate, short enough for the suite's budget;
/// and the untimed records that warm the brokers up first. `--quick` (6 minutes in all)
/// keeps a fifth of both: its rows say which tool leads, not a steady rate.
const KAFKA_RECORDS: (&str, &str) = ("50000", "20000");
const KAFKA_RECORDS_QUICK: (&str, &str) = ("10000", "4000");
/// Each Table 5 row is then produced again at this fixed rate for this long (`--quick`:
/// 5 s), so that "batching adds 50-100 ms" reads what linger adds, not a queue. Low on
/// purpose: at linger 0 each record is a request of its own, and on 2 cores three
/// brokers spent 72% of the machine on 2,000 of them a second (6% at linger 50), so
/// the baseline's latency was their queue; at 200/s, 26-29% once warm (70% cold).
const KAFKA_PACED_RATE: &str = "200/s";
const KAFKA_PACED_DURATION: (&str, &str) = ("10s", "5s");
/// The rows `--quick` paces: the two that "batching adds 50-100 ms" reads (the baseline
/// and the 50 ms linger); the full suite paces every row for the table.
const KAFKA_PACED_ROWS_QUICK: &str = "1,5";
/// Each broker's run of the `brokers` family (NATS, then RabbitMQ, whose node takes
/// about 8 s to start): long enough for the JVM client to settle; `--quick` keeps 3 s.
const BROKER_DURATION: &str = "10s";
const BROKER_DURATION_QUICK: &str = "3s";
const BROKERS: [&str; 2] = ["nats", "rabbitmq"];

/// Arguments of `faultline claims`.
#[derive(Debug, clap::Args)]
#[command(after_help = "What it runs:
  every scenario under scenarios/claims/ (one per family of claims: analytics, consistency,
  cqrs, ingest, kpis, recovery, users), with a capacity search where this machine cannot reach
  the document's rate. Families with the same [system] share one reference system, started
  once (the families that kill services run last on it); between two families the suite
  waits until no event is left behind. Then `faultline kafka-bench --table5` (family `kafka`,
  document 002's Table 5) on three local brokers of its own, each row also paced at 200
  msg/s for 10 s (what batching adds below saturation), and `faultline broker-bench`
  for NATS and RabbitMQ (family `brokers`, document 002's Table 1), 10 s each.

What it writes:
  DIR/<family>/       each run's own report (index.html, results.json, summary.md, ...)
  DIR/kafka/          kafka-bench.json and the side-by-side table (table5.txt)
  DIR/brokers/        nats.json, rabbitmq.json and their tables (nats.txt, rabbitmq.txt)
  DIR/claims.html     every claim of the documents: quote, claimed value and hardware, the
  DIR/claims.md       measured value with this machine's hardware, the capacity found, the
  DIR/claims.json     verdict, and a link to the run's report

Examples:
  faultline claims -o reports/out/claims
  faultline claims --quick --only users -o /tmp/claims
  faultline claims --quick --only users,recovery -o /tmp/claims")]
pub struct ClaimsArgs {
    /// Directory for the claims report and each run's report.
    #[arg(
        long,
        short = 'o',
        value_name = "DIR",
        default_value = "reports/out/claims"
    )]
    pub output: PathBuf,

    /// Holds of 2 s and one bisection round per capacity search, 10,000 Kafka records a
    /// row instead of 50,000 (after 4,000 to warm the brokers up instead of 20,000) and
    /// paced phases of 5 s instead of 10 s, and
    /// 3 s instead of 10 s for each side of the CQRS comparison and each broker-bench run.
    #[arg(long)]
    pub quick: bool,

    /// Run these families only, comma-separated: scenarios of the suite's folder by their
    /// stem (e.g. `users,recovery`, which then share one system), `kafka` or `brokers`.
    /// The other families' claims say they were not run.
    #[arg(long, value_name = "FAMILY,...", value_delimiter = ',')]
    pub only: Vec<String>,

    /// The folder of the suite's scenarios.
    #[arg(long, value_name = "DIR", default_value = "scenarios/claims")]
    pub scenarios: PathBuf,

    /// Run nothing: write the claims report anew from the results already in DIR (each
    /// family's results.json, kafka/kafka-bench.json and brokers/*.json), e.g. after editing
    /// scenarios/claims.toml.
    #[arg(long)]
    pub report_only: bool,

    /// After each run's load, how long every acknowledged order may take to settle
    /// before the checker counts it as inconsistent.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub settle_deadline: Duration,
}

/// `faultline broker-bench`'s flags, parsed on their own.
#[derive(Debug, Parser)]
struct BrokerBenchLine {
    #[command(flatten)]
    args: BrokerBenchArgs,
}

/// `faultline kafka-bench`'s flags, parsed on their own.
#[derive(Debug, Parser)]
struct KafkaBenchLine {
    #[command(flatten)]
    args: KafkaBenchArgs,
}

pub async fn run(args: ClaimsArgs) -> anyhow::Result<ExitCode> {
    let ((records, warm_up), paced_duration) = if args.quick {
        (KAFKA_RECORDS_QUICK, KAFKA_PACED_DURATION.1)
    } else {
        (KAFKA_RECORDS, KAFKA_PACED_DURATION.0)
    };
    let mut kafka_line = vec![
        "kafka-bench",
        "--table5",
        "--records",
        records,
        "--warm-up-records",
        warm_up,
        "--paced-rate",
        KAFKA_PACED_RATE,
        "--paced-duration",
        paced_duration,
    ];
    if args.quick {
        kafka_line.extend(["--paced-rows", KAFKA_PACED_ROWS_QUICK]);
    }
    let kafka = KafkaBenchLine::try_parse_from(kafka_line)
        .context("the Table 5 flags of kafka-bench")?
        .args
        .spec()
        .context("the Table 5 settings of kafka-bench")?;
    let duration = if args.quick {
        BROKER_DURATION_QUICK
    } else {
        BROKER_DURATION
    };
    let brokers = BROKERS
        .iter()
        .map(|broker| {
            let line = ["broker-bench", "--broker", broker, "--duration", duration];
            BrokerBenchLine::try_parse_from(line)
                .context("the flags of broker-bench")?
                .args
                .spec()
                .context("the settings of broker-bench")
        })
        .collect::<anyhow::Result<_>>()?;
    let options = SuiteOptions {
        scenarios: args.scenarios,
        output: args.output,
        quick: args.quick,
        only: args.only,
        faultline_bin: std::env::current_exe().context("finding the faultline binary")?,
        run_info: RunInfo {
            scenario: None,
            faultline_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            // build.rs stamps the commit the binary was built from.
            git_commit: option_env!("FAULTLINE_GIT_COMMIT").map(str::to_string),
        },
        settle_deadline: args.settle_deadline,
        kafka,
        brokers,
    };
    let outcome = if args.report_only {
        claims::report_again(&options)
    } else {
        claims::run(options, super::terminated).await
    };
    match outcome {
        Ok(outcome) => {
            println!("{}", outcome.report.markdown());
            println!("claims report: {}", outcome.written.html.display());
            println!("               {}", outcome.written.markdown.display());
            println!("               {}", outcome.written.json.display());
            if outcome.failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error: these runs failed to run: {}",
                    outcome.failed.join(", ")
                );
                Ok(ExitCode::FAILURE)
            }
        }
        Err(SuiteError::Interrupted) => {
            eprintln!("\nclaims: interrupted; every fault was healed");
            Ok(ExitCode::from(130))
        }
        Err(error) if error.is_usage() => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(2))
        }
        Err(error) => Err(error.into()),
    }
}
