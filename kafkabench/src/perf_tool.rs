//! The Java side of a row: Apache Kafka's own `org.apache.kafka.tools.ProducerPerformance`
//! (`kafka-producer-perf-test`), run from the jars the stack's brokers run from, with the
//! row's settings, against the same brokers, on a topic of its own.
//!
//! One JVM per producer, all at once, each sending its share of the records with
//! `--throughput -1`; each prints a summary line that [`parse_summary`] reads, and
//! [`PerfToolMeasurement::from_instances`] adds them up. The JVMs' CPU is counted once
//! they are reaped ([`ChildrenMeter`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use faultline_results::kafka_bench::{PerfToolMeasurement, PerfToolSummary, ProducerSettings};

use crate::cpu::{ChildrenMeter, CpuMeter};
use crate::BenchError;

/// The tool's main class in `kafka-tools-*.jar`.
pub const MAIN_CLASS: &str = "org.apache.kafka.tools.ProducerPerformance";
/// Lines of the tool's output quoted when it fails.
const QUOTED_LINES: usize = 15;

/// Where the tool runs from and what it sends.
#[derive(Debug, Clone)]
pub struct PerfToolRow<'a> {
    pub java: &'a Path,
    /// Kafka's home (`libs/*.jar`), as [`faultline_system::stack::kafka::kafka_home`]
    /// finds it.
    pub kafka_home: &'a Path,
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub settings: &'a ProducerSettings,
    /// Records over all the JVMs.
    pub records: u64,
    pub broker_pids: Vec<u32>,
}

/// The command line of one JVM sending `records`.
fn command(row: &PerfToolRow<'_>, records: u64) -> Command {
    let s = row.settings;
    let classpath: PathBuf = row.kafka_home.join("libs").join("*");
    let mut command = Command::new(row.java);
    command
        .arg("-Xmx512m")
        // printf's decimal separator follows the locale; the parser reads a point.
        .arg("-Duser.language=en")
        .arg("-Duser.country=US")
        .arg("-cp")
        .arg(classpath)
        .arg(MAIN_CLASS)
        .args(["--bootstrap-server", row.bootstrap, "--topic", row.topic])
        .args(["--num-records", &records.to_string()])
        .args(["--record-size", &s.message_bytes.to_string()])
        .args(["--throughput", &throughput(s)])
        // Last: it takes every argument after it.
        .arg("--command-property")
        .arg(format!("acks={}", s.acks))
        .arg(format!("compression.type={}", s.compression))
        .arg(format!("linger.ms={}", s.linger_ms))
        .args(s.batch_bytes.map(|bytes| format!("batch.size={bytes}")));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The tool's `--throughput` for one JVM: its share of the row's rate, or -1 (no limit).
fn throughput(s: &ProducerSettings) -> String {
    match s.rate_per_sec {
        Some(rate) => format!("{:.3}", rate / f64::from(s.producers.max(1))),
        None => "-1".into(),
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(QUOTED_LINES)..].join("\n")
}

/// Runs the row's JVMs to the end and adds up their summaries.
pub fn run_row(row: &PerfToolRow<'_>) -> Result<PerfToolMeasurement, BenchError> {
    let producers = row.settings.producers;
    let brokers = CpuMeter::start(row.broker_pids.clone());
    let children = ChildrenMeter::start();
    let mut jvms = Vec::new();
    for index in 0..producers {
        let records = crate::produce::share(row.records, producers, index);
        let child = command(row, records)
            .spawn()
            .map_err(|error| BenchError::PerfTool {
                reason: format!("could not start {}: {error}", row.java.display()),
            })?;
        jvms.push(child);
    }
    let mut instances = Vec::new();
    for jvm in jvms {
        let output = jvm
            .wait_with_output()
            .map_err(|error| BenchError::PerfTool {
                reason: format!("waiting for the JVM: {error}"),
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout
            .lines()
            .rev()
            .find_map(|line| parse_summary(line).ok());
        match summary {
            Some(summary) if output.status.success() => instances.push(summary),
            _ => {
                return Err(BenchError::PerfTool {
                    reason: format!(
                        "{MAIN_CLASS} ended with {} and no summary line\n--- stdout ---\n{}\n\
                         --- stderr ---\n{}",
                        output.status,
                        tail(&stdout),
                        tail(&String::from_utf8_lossy(&output.stderr))
                    ),
                })
            }
        }
    }
    let mut measurement = PerfToolMeasurement::from_instances(instances);
    measurement.broker_cpu = brokers.stop();
    measurement.client_cpu = children.stop();
    Ok(measurement)
}

/// Why a line is not the tool's summary.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not a ProducerPerformance summary line ({problem}): {line}")]
pub struct SummaryError {
    problem: String,
    line: String,
}

/// Reads the tool's final line, e.g. `50000 records sent, 12345.678 records/sec (12.06
/// MB/sec), 2048.12 ms avg latency, 3001.00 ms max latency, 2100 ms 50th, 2900 ms 95th,
/// 2990 ms 99th, 3000 ms 99.9th.` Every figure is a number before its label; the
/// periodic progress lines lack the percentiles and are refused.
pub fn parse_summary(line: &str) -> Result<PerfToolSummary, SummaryError> {
    let fail = |problem: String| SummaryError {
        problem,
        line: line.to_string(),
    };
    let mut figures: Vec<(&str, f64)> = Vec::new();
    for part in line.trim().trim_end_matches('.').split([',', '(', ')']) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (number, label) = part
            .split_once(' ')
            .ok_or_else(|| fail(format!("`{part}` is not a number and a label")))?;
        let value: f64 = number
            .parse()
            .map_err(|_| fail(format!("`{number}` is not a number")))?;
        figures.push((label.trim(), value));
    }
    let get = |label: &str| {
        figures
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, v)| *v)
            .ok_or_else(|| fail(format!("no `{label}`")))
    };
    let records = get("records sent")?;
    Ok(PerfToolSummary {
        records: records as u64,
        records_per_sec: get("records/sec")?,
        mb_per_sec: get("MB/sec")?,
        avg_ms: get("ms avg latency")?,
        max_ms: get("ms max latency")?,
        p50_ms: get("ms 50th")?,
        p95_ms: get("ms 95th")?,
        p99_ms: get("ms 99th")?,
        p99_9_ms: get("ms 99.9th")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Printed by Kafka 4.3.1's ProducerPerformance on this machine (one broker; 200,000
    // records of 1 KiB with lz4 and linger 10 ms, then 3,000 of 100 B with acks=1).
    const SUMMARY_LZ4: &str = "200000 records sent, 20132.876988 records/sec (19.66 MB/sec), \
        1183.95 ms avg latency, 2235.00 ms max latency, 1033 ms 50th, 2146 ms 95th, \
        2211 ms 99th, 2228 ms 99.9th.";
    const SUMMARY_SMALL: &str = "3000 records sent, 2881.844380 records/sec (0.27 MB/sec), \
        229.74 ms avg latency, 668.00 ms max latency, 239 ms 50th, 284 ms 95th, 288 ms 99th, \
        288 ms 99.9th.";
    const PROGRESS: &str = "42626 records sent, 8515.0 records/sec (8.32 MB/sec), 1444.3 ms \
        avg latency, 2182.0 ms max latency.";

    #[test]
    fn the_tools_summary_lines_parse_to_their_figures() {
        let lz4 = parse_summary(SUMMARY_LZ4).unwrap();
        assert_eq!(lz4.records, 200_000);
        assert!((lz4.records_per_sec - 20132.876988).abs() < 1e-6);
        assert!((lz4.mb_per_sec - 19.66).abs() < 1e-9);
        assert!((lz4.avg_ms - 1183.95).abs() < 1e-9);
        assert!((lz4.max_ms - 2235.0).abs() < 1e-9);
        assert_eq!(
            [lz4.p50_ms, lz4.p95_ms, lz4.p99_ms, lz4.p99_9_ms],
            [1033.0, 2146.0, 2211.0, 2228.0]
        );
        let small = parse_summary(SUMMARY_SMALL).unwrap();
        assert_eq!(small.records, 3000);
        assert!((small.p99_ms - 288.0).abs() < 1e-9);
    }

    #[test]
    fn progress_lines_and_other_output_are_not_summaries() {
        let error = parse_summary(PROGRESS).unwrap_err();
        assert!(error.to_string().contains("ms 50th"), "{error}");
        assert!(parse_summary("").is_err());
        assert!(parse_summary("Exception in thread \"main\" ...").is_err());
        // A decimal comma (a JVM in a German locale) does not pass for other figures.
        assert!(parse_summary(&SUMMARY_LZ4.replace("20132.876988", "20132,876988")).is_err());
    }

    #[test]
    fn the_tool_gets_the_rows_settings_last_on_its_command_line() {
        let settings = ProducerSettings {
            message_bytes: 1024,
            partitions: 6,
            replication_factor: 3,
            acks: "all".into(),
            producers: 1,
            compression: "lz4".into(),
            linger_ms: 10,
            batch_bytes: None,
            rate_per_sec: Some(3000.0),
            records: Some(1000),
            duration_secs: None,
        };
        let row = PerfToolRow {
            java: Path::new("/usr/bin/java"),
            kafka_home: Path::new("/kafka"),
            bootstrap: "127.0.0.1:9092",
            topic: "t",
            settings: &settings,
            records: 1000,
            broker_pids: Vec::new(),
        };
        let command = command(&row, 500);
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let tail = &args[args.len() - 4..];
        assert_eq!(
            tail,
            [
                "--command-property",
                "acks=all",
                "compression.type=lz4",
                "linger.ms=10"
            ]
        );
        let records = args.iter().position(|a| a == "--num-records").unwrap();
        assert_eq!(args[records + 1], "500");
        let throughput = args.iter().position(|a| a == "--throughput").unwrap();
        assert_eq!(args[throughput + 1], "3000.000");
    }
}
