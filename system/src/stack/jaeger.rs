//! Jaeger in the stack: the `jaeger` binary (v2, all-in-one: OTLP in, in-memory storage,
//! query API out) as a supervised child process on free loopback ports, and a small
//! client of its query API for tests and run reports.
//!
//! [`start`] writes a collector configuration with the ports it picked (the binary's
//! built-in one listens on fixed ports, and ten other ones besides), starts the process
//! through [`super::server::start_http_tool`] (so the stop and orphan rules are those of
//! Kafka or Redis, and Prometheus starts the same way),
//! and waits until the query API answers. The services export to [`Jaeger::otlp_endpoint`];
//! people and `faultline run` read [`Jaeger::url`].
//!
//! The binary is built from the Go module proxy by `scripts/setup` into
//! `~/.cache/faultline/jaeger-<version>/`; `FAULTLINE_JAEGER` names another one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::process;
use super::server::{get_json, start_http_tool, write_config, HttpTool, Server};
use super::{ports, StackError};
use crate::platform::http::HttpClient;

/// The Jaeger release `scripts/setup` builds (`tools/jaeger/go.mod`).
pub const JAEGER_VERSION: &str = "v1.76.0";

/// Traces the in-memory store keeps before it drops the oldest: a checkout's trace is
/// about 25 spans, so this bounds Jaeger's memory near half a GiB; a long run at a high
/// rate keeps its last minutes.
const MAX_TRACES: usize = 20_000;

/// A running Jaeger: its query URL, and where spans go in.
#[derive(Debug)]
pub struct Jaeger {
    server: Server,
    otlp_port: u16,
}

impl Jaeger {
    /// The query API and UI, `http://127.0.0.1:PORT` (`JAEGER_URL=`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// What services export to (OTLP/HTTP; `/v1/traces` is appended by them).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }

    pub(crate) fn process_mut(&mut self) -> Option<&mut process::ManagedProcess> {
        self.server.process_mut()
    }

    pub fn port(&self) -> Option<u16> {
        self.server.port()
    }

    pub(crate) async fn stop(&mut self) {
        self.server.stop(Duration::from_secs(5)).await;
    }
}

/// The `jaeger` binary: `FAULTLINE_JAEGER`, the cache `scripts/setup` fills, or the path.
pub fn jaeger_program() -> Result<PathBuf, StackError> {
    if let Some(path) = std::env::var_os("FAULTLINE_JAEGER") {
        return Ok(PathBuf::from(path));
    }
    let cached = super::kafka::default_cache_dir().join(format!("jaeger-{JAEGER_VERSION}"));
    process::find_program("jaeger", &[cached]).ok_or_else(|| StackError::ProgramMissing {
        program: format!("jaeger {JAEGER_VERSION}"),
        hint: "run `make setup` (scripts/setup) to build it from the Go module proxy, or point \
               FAULTLINE_JAEGER at a jaeger v2 binary"
            .into(),
    })
}

/// The collector configuration: OTLP/HTTP in, memory storage, the query API (HTTP and
/// gRPC, both on ports of ours), and no other listener (its own metrics are off).
fn config(otlp: u16, query: u16, query_grpc: u16) -> String {
    format!(
        "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: {MAX_TRACES}
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"
    )
}

/// Starts Jaeger with its files under `data_root/jaeger` and waits until its query API
/// answers and its OTLP port accepts.
pub(crate) async fn start(data_root: &Path, timeout: Duration) -> Result<Jaeger, StackError> {
    let since = std::time::Instant::now();
    let program = jaeger_program()?;
    let otlp = ports::free_port("Jaeger OTLP")?;
    let query = ports::free_port("Jaeger query")?;
    let query_grpc = ports::free_port("Jaeger query gRPC")?;
    let dir = data_root.join("jaeger");
    let config_path = write_config(&dir, "jaeger.yaml", &config(otlp, query, query_grpc))?;
    let args = vec!["--config".into(), format!("file:{}", config_path.display())];
    let services = format!("http://127.0.0.1:{query}/api/services");
    let client = crate::platform::http::http_client();
    let tool = HttpTool {
        component: "Jaeger",
        name: "jaeger",
        program,
        args,
        dir: &dir,
        port: query,
    };
    let server = start_http_tool(tool, since, timeout, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", otlp))
            .await
            .map_err(|e| format!("OTLP port {otlp}: {e}"))?;
        get_json::<serde_json::Value>(&client, &services)
            .await
            .map(|_| ())
    })
    .await?;
    Ok(Jaeger {
        server,
        otlp_port: otlp,
    })
}

/// One span of a trace as Jaeger's query API gives it, reduced to what a waterfall needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpan {
    pub span_id: String,
    /// The span it is a child of (`CHILD_OF`), `None` for the root.
    pub parent_id: Option<String>,
    pub service: String,
    pub operation: String,
    /// Microseconds since the Unix epoch.
    pub start_us: u64,
    pub duration_us: u64,
}

#[derive(Deserialize)]
struct TracesAnswer {
    #[serde(default)]
    data: Vec<RawTrace>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrace {
    spans: Vec<RawSpan>,
    processes: std::collections::HashMap<String, RawProcess>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpan {
    #[serde(rename = "spanID")]
    span_id: String,
    operation_name: String,
    #[serde(default)]
    references: Vec<RawReference>,
    start_time: u64,
    duration: u64,
    #[serde(rename = "processID")]
    process_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReference {
    ref_type: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProcess {
    service_name: String,
}

/// Reads Jaeger's query API at `url` (its [`Jaeger::url`], or any Jaeger's).
#[derive(Clone)]
pub struct JaegerQuery {
    url: String,
    client: HttpClient,
}

impl JaegerQuery {
    pub fn new(url: &str) -> JaegerQuery {
        JaegerQuery {
            url: url.trim_end_matches('/').to_string(),
            client: crate::platform::http::http_client(),
        }
    }

    /// The spans of trace `trace_id` (32 hex digits), ordered by start; empty when Jaeger
    /// has none of it (yet: spans arrive in batches).
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<TraceSpan>, String> {
        if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{trace_id:?} is not a trace id (32 hex digits)"));
        }
        let url = format!("{}/api/traces/{trace_id}", self.url);
        let answer: TracesAnswer = match get_json(&self.client, &url).await {
            Ok(answer) => answer,
            // Jaeger answers 404 for a trace it does not hold.
            Err(error) if error.contains("404") => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut spans: Vec<TraceSpan> = answer
            .data
            .into_iter()
            .flat_map(|trace| {
                let processes = trace.processes;
                trace.spans.into_iter().map(move |span| TraceSpan {
                    parent_id: span
                        .references
                        .iter()
                        .find(|r| r.ref_type == "CHILD_OF")
                        .map(|r| r.span_id.clone()),
                    service: processes
                        .get(&span.process_id)
                        .map(|p| p.service_name.clone())
                        .unwrap_or_default(),
                    span_id: span.span_id,
                    operation: span.operation_name,
                    start_us: span.start_time,
                    duration_us: span.duration,
                })
            })
            .collect();
        spans.sort_by_key(|span| span.start_us);
        Ok(spans)
    }

    /// The services Jaeger holds spans of.
    pub async fn services(&self) -> Result<Vec<String>, String> {
        #[derive(Deserialize)]
        struct Services {
            #[serde(default)]
            data: Option<Vec<String>>,
        }
        let url = format!("{}/api/services", self.url);
        let answer: Services = get_json(&self.client, &url).await?;
        Ok(answer.data.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_listens_only_on_the_ports_given() {
        let yaml = config(40001, 40002, 40003);
        let endpoints: Vec<&str> = yaml
            .lines()
            .filter_map(|line| line.trim().strip_prefix("endpoint: "))
            .collect();
        assert_eq!(
            endpoints,
            ["127.0.0.1:40002", "127.0.0.1:40003", "127.0.0.1:40001"]
        );
        assert!(yaml.contains("level: none"), "no metrics listener on 8888");
    }
}
