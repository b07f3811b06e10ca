//! RabbitMQ: a node of Debian's `rabbitmq-server` of our own (not the system service):
//! its AMQP listener and Erlang distribution on free loopback ports, an `epmd` of its own
//! on a third, and its database, logs, config, plugins list and Erlang cookie in the
//! run's data directory; then RabbitMQ's PerfTest against it for `--duration`.
//!
//! PerfTest runs its producers with one consumer: the messages go through the broker
//! (routed, queued, delivered) rather than piling up in a queue that grows by tens of MB
//! a second, which is the state the document's throughput is about, and PerfTest only
//! times publish→consume latency when something consumes. The rate held against the
//! document is the publishing rate (as for Kafka and NATS); the consuming rate is
//! recorded beside it. No publisher confirms (PerfTest's default): RabbitMQ's credit
//! flow holds a publisher back to what the queue takes.
//!
//! [`parse_summary`] reads the three summary lines PerfTest prints when it stops.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_results::broker_bench::{BrokerMeasurement, LatencyPoint, ToolLatency};
use faultline_system::stack::kafka::{default_cache_dir, java_program};
use faultline_system::stack::ports::free_port;
use faultline_system::stack::process::{find_program, spawn, ManagedProcess, ProcessSpec};
use faultline_system::stack::ready::{wait_until_ready, Where};

use crate::{BrokerBenchError, BrokerSpec, ToolRun};

/// PerfTest's version; scripts/rabbitmq/pom.xml pins the same (a test checks).
pub const PERF_TEST_VERSION: &str = "2.22.1";
/// PerfTest's main class in `perf-test-*.jar`.
pub const MAIN_CLASS: &str = "com.rabbitmq.perf.PerfTest";
const TOOL: &str = "PerfTest";
/// Debian's server script that runs the node as the caller; `/usr/sbin/rabbitmq-server`
/// would switch to the `rabbitmq` user and drop the environment that makes it ours.
const DEBIAN_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The consumer beside the producers (see the module comment).
const CONSUMERS: u32 = 1;

/// Where PerfTest's jars are: `$FAULTLINE_PERF_TEST_HOME/libs`, else the cache's.
fn perf_test_libs() -> Result<PathBuf, BrokerBenchError> {
    let home = match std::env::var_os("FAULTLINE_PERF_TEST_HOME") {
        Some(home) => PathBuf::from(home),
        None => default_cache_dir().join(format!("perf-test-{PERF_TEST_VERSION}")),
    };
    let libs = home.join("libs");
    let jar = libs.join(format!("perf-test-{PERF_TEST_VERSION}.jar"));
    if jar.is_file() {
        Ok(libs)
    } else {
        Err(BrokerBenchError::ProgramMissing {
            program: format!("RabbitMQ PerfTest {PERF_TEST_VERSION} ({})", jar.display()),
            hint: "scripts/setup fetches it from Maven Central; or set FAULTLINE_PERF_TEST_HOME"
                .into(),
        })
    }
}

fn rabbitmq_server() -> Result<PathBuf, BrokerBenchError> {
    let hint = "scripts/setup installs Debian's rabbitmq-server; or set FAULTLINE_RABBITMQ_SERVER";
    let path = std::env::var_os("FAULTLINE_RABBITMQ_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_SERVER));
    if path.is_file() {
        Ok(path)
    } else {
        Err(BrokerBenchError::ProgramMissing {
            program: format!("rabbitmq-server ({})", path.display()),
            hint: hint.into(),
        })
    }
}

/// The programs a run needs, found before anything starts.
struct Programs {
    server: PathBuf,
    epmd: PathBuf,
    java: PathBuf,
    libs: PathBuf,
}

impl Programs {
    fn find() -> Result<Programs, BrokerBenchError> {
        Ok(Programs {
            server: rabbitmq_server()?,
            epmd: find_program("epmd", &[]).ok_or_else(|| BrokerBenchError::ProgramMissing {
                program: "epmd".into(),
                hint:
                    "it comes with Erlang (Debian's erlang-base, a dependency of rabbitmq-server)"
                        .into(),
            })?,
            java: java_program()?,
            libs: perf_test_libs()?,
        })
    }
}

/// A node and the epmd it registers with; both stop on drop, the node first.
struct Node {
    server: ManagedProcess,
    epmd: ManagedProcess,
    port: u16,
}

impl Node {
    async fn start(programs: &Programs, data: &Path) -> Result<Node, BrokerBenchError> {
        let since = Instant::now();
        let port = free_port("rabbitmq")?;
        let dist_port = free_port("rabbitmq distribution")?;
        let epmd_port = free_port("epmd")?;
        let write = |name: &str, text: &str| {
            let path = data.join(name);
            std::fs::write(&path, text)
                .map_err(BrokerBenchError::io(format!("writing {}", path.display())))
                .map(|()| path)
        };
        // No plugin: the management plugin alone doubles the start-up time.
        let plugins = write("enabled_plugins", "[].\n")?;
        // Erlang refuses a cookie others may read.
        let cookie = write(".erlang.cookie", &uuid::Uuid::new_v4().simple().to_string())?;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))
            .map_err(BrokerBenchError::io("making the Erlang cookie private"))?;

        let epmd_args = ["-port", &epmd_port.to_string(), "-address", "127.0.0.1"];
        let epmd = spawn(&ProcessSpec::in_dir(
            "epmd",
            programs.epmd.clone(),
            epmd_args.map(String::from).to_vec(),
            data,
        ))?;
        let mut spec = ProcessSpec::in_dir("rabbitmq", programs.server.clone(), Vec::new(), data);
        let path = |name: &str| data.join(name).display().to_string();
        spec.env = [
            ("HOME", path("")),
            // Neither /etc/rabbitmq's files nor the caller's settings apply.
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                plugins.display().to_string(),
            ),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_PID_FILE", path("rabbitmq.pid")),
            // The log goes to stdout, which is the process' log file.
            ("RABBITMQ_LOGS", "-".into()),
            ("RABBITMQ_NODENAME", format!("faultline-{port}@localhost")),
            ("RABBITMQ_USE_LONGNAME", "false".into()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", port.to_string()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            // The distribution listens on loopback only.
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
        ]
        .map(|(key, value)| (key.to_string(), value))
        .to_vec();
        let mut server = spawn(&spec)?;
        let place = Where {
            component: "rabbitmq",
            port,
            data_dir: data,
        };
        wait_until_ready(&mut server, place, since, crate::READY_TIMEOUT, || {
            crate::accepts(port)
        })
        .await?;
        Ok(Node { server, epmd, port })
    }

    async fn stop(mut self) {
        self.server.stop(crate::STOP_GRACE).await;
        self.epmd.stop(crate::STOP_GRACE).await;
    }
}

/// Starts the node, runs PerfTest and stops the node.
pub(crate) async fn run(
    spec: &BrokerSpec,
    data: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ToolRun, BrokerBenchError> {
    let programs = Programs::find()?;
    progress("starting a RabbitMQ node of its own");
    let node = Node::start(&programs, data).await?;
    let broker_version = std::fs::read_to_string(node.server.log_path())
        .ok()
        .and_then(|log| server_version(&log))
        .unwrap_or_else(|| "unknown".into());
    progress(&format!(
        "RabbitMQ {broker_version} on 127.0.0.1:{}; {TOOL}: {} producer(s), {CONSUMERS} consumer, {} bytes, {:?}",
        node.port, spec.producers, spec.message_bytes, spec.duration
    ));
    let command = command(spec, &programs, node.port);
    let args = crate::arguments(&command);
    let outcome = crate::run_tool(TOOL, command).await;
    node.stop().await;
    let output = outcome?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = parse_summary(&stdout)
        .map_err(|error| crate::tool_failed(TOOL, &output, &error.to_string()))?;
    Ok(ToolRun {
        broker_version,
        tool_command: args,
        consumers: CONSUMERS,
        messages: None,
        measured: BrokerMeasurement {
            msgs_per_sec: summary.sent_per_sec,
            received_per_sec: Some(summary.received_per_sec),
            mb_per_sec: summary.sent_per_sec * spec.message_bytes as f64 / (1024.0 * 1024.0),
            latency: summary.latency,
        },
    })
}

fn command(spec: &BrokerSpec, programs: &Programs, port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&programs.java);
    // PerfTest runs for whole seconds.
    let seconds = spec.duration.as_secs_f64().ceil() as u64;
    command
        .arg("-Xmx512m")
        // Its figures are printed in the JVM's locale; the parser reads digits and points.
        .args(["-Duser.language=en", "-Duser.country=US"])
        .arg("-cp")
        .arg(programs.libs.join("*"))
        .arg(MAIN_CLASS)
        .args(["--uri", &format!("amqp://guest:guest@127.0.0.1:{port}")])
        .args(["--producers", &spec.producers.to_string()])
        .args(["--consumers", &CONSUMERS.to_string()])
        .args(["--size", &spec.message_bytes.to_string()])
        .args(["--time", &seconds.to_string()]);
    command
}

/// `Starting RabbitMQ 3.10.8 on Erlang 25.2.3 [jit]` in the node's log.
fn server_version(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = line.split_once("Starting RabbitMQ ")?.1;
        rest.split_whitespace().next().map(str::to_string)
    })
}

/// PerfTest's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfTestSummary {
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    /// Publish→consume, when a consumer ran.
    pub latency: Option<ToolLatency>,
}

/// Why PerfTest's output is not a summary.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("no PerfTest summary in its output: {0}")]
pub struct SummaryError(String);

/// Reads the lines PerfTest prints when it stops, e.g.
/// `id: test-112358-690, sending rate avg: 34242 msg/s`, the same with `receiving`, and
/// `id: ..., consumer latency min/median/75th/95th/99th 2685/18748/25414/40329/52351 µs`
/// (the per-second lines have a colon after the labels and are skipped).
pub fn parse_summary(stdout: &str) -> Result<PerfTestSummary, SummaryError> {
    let rate = |label: &str| {
        let found = stdout.lines().find_map(|line| line.split_once(label));
        let (_, rest) = found.ok_or_else(|| SummaryError(format!("no `{label}` line")))?;
        let number = rest.trim().trim_end_matches("msg/s").trim();
        number
            .parse::<f64>()
            .map_err(|_| SummaryError(format!("`{number}` after `{label}` is not a rate")))
    };
    Ok(PerfTestSummary {
        sent_per_sec: rate("sending rate avg:")?,
        received_per_sec: rate("receiving rate avg:")?,
        latency: stdout.lines().find_map(parse_latency),
    })
}

const LATENCY_LABELS: &str = "consumer latency min/median/75th/95th/99th ";

/// The summary's latency line, in µs (PerfTest's `--use-millis` prints ms).
fn parse_latency(line: &str) -> Option<ToolLatency> {
    let (_, rest) = line.split_once(LATENCY_LABELS)?;
    let (figures, unit) = rest.trim().split_once(' ')?;
    let scale = match unit.trim() {
        "µs" => 1.0,
        "ms" => 1000.0,
        _ => return None,
    };
    let values: Vec<f64> = figures
        .split('/')
        .map(|n| n.parse::<f64>().map(|v| v * scale))
        .collect::<Result<_, _>>()
        .ok()?;
    let [min_us, p50, p75, p95, p99] = values[..] else {
        return None;
    };
    let point = |percentile, us| LatencyPoint { percentile, us };
    Some(ToolLatency {
        what: "publish → consume (the consumer's clock minus the producer's timestamp)".into(),
        min_us,
        percentiles: vec![
            point(50.0, p50),
            point(75.0, p75),
            point(95.0, p95),
            point(99.0, p99),
        ],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Printed by PerfTest 2.22.1 (`-x 1 -y 1 -s 1024 -z 5`) against RabbitMQ 3.10.8 on
    // this machine.
    const OUTPUT: &str = "id: test-112358-690, starting consumer #0
id: test-112358-690, starting producer #0
id: test-112358-690, time 4.001 s, sent: 40507 msg/s, received: 40367 msg/s, min/median/75th/95th/99th consumer latency: 152/17275/20878/25874/29561 µs
id: test-112358-690, time 5.004 s, sent: 47131 msg/s, received: 47520 msg/s, min/median/75th/95th/99th consumer latency: 1440/13222/17668/26010/28959 µs
test stopped (Reached time limit)
id: test-112358-690, sending rate avg: 34242 msg/s
id: test-112358-690, receiving rate avg: 34241 msg/s
id: test-112358-690, consumer latency min/median/75th/95th/99th 2685/18748/25414/40329/52351 µs
";

    #[test]
    fn the_summary_gives_both_rates_and_the_consumers_percentiles() {
        let summary = parse_summary(OUTPUT).unwrap();
        assert_eq!(summary.sent_per_sec, 34242.0);
        assert_eq!(summary.received_per_sec, 34241.0);
        let latency = summary.latency.unwrap();
        assert_eq!(latency.min_us, 2685.0);
        assert_eq!(latency.at(50.0), Some(18748.0));
        assert_eq!(latency.at(99.0), Some(52351.0));
    }

    #[test]
    fn per_second_lines_are_not_a_summary() {
        let running: String = OUTPUT.lines().take(4).collect::<Vec<_>>().join("\n");
        let error = parse_summary(&running).unwrap_err();
        assert!(error.to_string().contains("sending rate avg"), "{error}");
        assert!(parse_summary("").is_err());
    }

    #[test]
    fn latencies_in_milliseconds_are_kept_in_microseconds() {
        let line = "id: x, consumer latency min/median/75th/95th/99th 2/18/25/40/52 ms";
        let latency = parse_latency(line).unwrap();
        assert_eq!(latency.at(95.0), Some(40_000.0));
        assert!(
            parse_latency("id: x, consumer latency min/median/75th/95th/99th 1/2 µs").is_none()
        );
    }

    #[test]
    fn the_nodes_version_is_read_from_its_log() {
        let log = "2026-12-02 11:23:53.087862+00:00 [info] <0.223.0>  Starting RabbitMQ 3.10.8 on Erlang 25.2.3 [jit]";
        assert_eq!(server_version(log).as_deref(), Some("3.10.8"));
    }

    #[test]
    fn setup_pins_the_perf_test_version_this_crate_runs() {
        let pom = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rabbitmq/pom.xml");
        let pom = std::fs::read_to_string(pom).unwrap();
        assert!(
            pom.contains(&format!(
                "<perf-test.version>{PERF_TEST_VERSION}</perf-test.version>"
            )),
            "scripts/rabbitmq/pom.xml pins another PerfTest"
        );
    }
}
