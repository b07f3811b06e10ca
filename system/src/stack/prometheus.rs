//! Prometheus in the stack: Debian's `prometheus` binary as a supervised child process on a
//! free loopback port, scraping every service replica each second, with its time series
//! kept after the run for people (PromQL, Grafana) to read.
//!
//! [`start`] writes a configuration whose one scrape job reads its targets from a file
//! (`file_sd_configs`), since the stack starts before the services it will scrape: the
//! supervisor names them with [`Prometheus::set_targets`] once their ports are known, and
//! Prometheus picks the file up within a second. The process is started the way Jaeger is
//! ([`super::server::start_http_tool`]), so the stop and orphan rules are the stack's.
//!
//! Under mutual TLS (`platform::mesh`) the supervisor calls [`Prometheus::scrape_mesh`]
//! before naming any replica: the configuration gains one HTTPS job per service, each
//! presenting Prometheus' own client certificate and checking that the replica holds the
//! certificate of the service it is labelled as (`server_name` is a job's setting, not a
//! target's, hence a job per service), and Prometheus reloads it. Every job labels its
//! series `job="faultline"` all the same.
//!
//! A gateway serving HTTPS to the outside (`gateway_tls`) has a certificate of its own
//! CA, made when it starts: [`Prometheus::scrape_public_tls`] adds the HTTPS job that
//! trusts that CA, and the gateway's target goes in that job's file.
//!
//! Its directory (configuration, targets, log and the TSDB under `data/`) outlives the
//! stack: it is [`PrometheusSpec::dir`] when given (a scenario run's output directory),
//! the stack's own data directory when that one is kept, and otherwise a fresh kept
//! temporary directory. `FAULTLINE_PROMETHEUS` names another binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::process;
use super::server::{get_json, start_http_tool, write_config, HttpTool, Server};
use super::{ports, StackError};
use crate::platform::http::HttpClient;

/// How often every replica is scraped: a short run of a few seconds still gets a series.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// The scrape job's name (the `job` label of every series it takes).
pub const JOB: &str = "faultline";

/// What to start: where its directory goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrometheusSpec {
    /// Its directory, kept after the stack stops; chosen as the module says when `None`.
    pub dir: Option<PathBuf>,
}

/// A running Prometheus: its URL, and where its files are.
#[derive(Debug)]
pub struct Prometheus {
    server: Server,
    dir: PathBuf,
    /// Set once by [`Prometheus::scrape_mesh`].
    mesh: OnceLock<MeshScrape>,
    /// The CA of the replicas that serve HTTPS to the outside, set once by
    /// [`Prometheus::scrape_public_tls`].
    public_ca: OnceLock<PathBuf>,
}

/// One replica to scrape: `/metrics` on `127.0.0.1:port`, labelled `replica`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub port: u16,
    pub replica: usize,
    pub scheme: ScrapeScheme,
}

/// How a replica serves its `/metrics`, which decides the job that scrapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrapeScheme {
    /// Plain HTTP.
    Http,
    /// HTTPS with a certificate of the CA [`Prometheus::scrape_public_tls`] was given (the
    /// gateway with `gateway_tls`), scraped in that job.
    PublicTls,
    /// Mutual TLS, with a certificate bearing this name (one of
    /// [`MeshScrape::server_names`]), scraped in that name's job.
    Mesh(String),
}

/// Which job scrapes a target, and so which targets file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job<'a> {
    Plain,
    PublicTls,
    Mesh(&'a String),
}

impl ScrapeTarget {
    fn job(&self) -> Job<'_> {
        match &self.scheme {
            ScrapeScheme::Http => Job::Plain,
            ScrapeScheme::PublicTls => Job::PublicTls,
            ScrapeScheme::Mesh(name) => Job::Mesh(name),
        }
    }
}

/// How Prometheus scrapes the replicas that serve mutual TLS: the system CA it trusts,
/// the client certificate it presents, and the names of the services' certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshScrape {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// One scrape job each.
    pub server_names: Vec<String>,
}

impl Prometheus {
    /// Its web UI and HTTP API, `http://127.0.0.1:PORT` (`PROMETHEUS_URL=`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Its directory: configuration, targets, log, and the TSDB under `data/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> Option<u16> {
        self.server.port()
    }

    /// Replaces the scraped replicas: each in the targets file of its job. The files are
    /// renamed into place so that Prometheus, which watches them, never reads half of one.
    pub fn set_targets(&self, targets: &[ScrapeTarget]) -> Result<(), StackError> {
        let mesh_names = self
            .mesh
            .get()
            .map_or(&[][..], |m| m.server_names.as_slice());
        let unscraped = (targets.iter())
            .filter_map(|target| match &target.scheme {
                ScrapeScheme::Mesh(name) => Some(name),
                _ => None,
            })
            .find(|name| !mesh_names.contains(*name));
        if let Some(name) = unscraped {
            return Err(StackError::Invalid(format!(
                "Prometheus has no scrape job for replicas named {name} (mutual TLS not set up \
                 with that name: Prometheus::scrape_mesh)"
            )));
        }
        let public_tls = self.public_ca.get().is_some();
        if !public_tls
            && targets
                .iter()
                .any(|target| target.scheme == ScrapeScheme::PublicTls)
        {
            return Err(StackError::Invalid(
                "Prometheus has no scrape job for replicas serving HTTPS with their own CA \
                 (Prometheus::scrape_public_tls not called)"
                    .into(),
            ));
        }
        let jobs = (std::iter::once(Job::Plain))
            .chain(public_tls.then_some(Job::PublicTls))
            .chain(mesh_names.iter().map(Job::Mesh));
        for job in jobs {
            let groups: Vec<serde_json::Value> = (targets.iter())
                .filter(|target| target.job() == job)
                .map(|target| {
                    serde_json::json!({
                        "targets": [format!("127.0.0.1:{}", target.port)],
                        "labels": { "replica": target.replica.to_string() },
                    })
                })
                .collect();
            let path = self.dir.join(targets_file(job));
            let staged = path.with_extension("json.new");
            let text = serde_json::Value::Array(groups).to_string();
            std::fs::write(&staged, text).map_err(|source| {
                StackError::io(format!("writing {}", staged.display()), source)
            })?;
            std::fs::rename(&staged, &path)
                .map_err(|source| StackError::io(format!("writing {}", path.display()), source))?;
        }
        Ok(())
    }

    /// From now on, scrapes the replicas [`ScrapeScheme::Mesh`] names over mutual
    /// TLS as `mesh` says: rewrites the configuration with a job per name, and has
    /// Prometheus reload it (an error quotes why it refused). Once per Prometheus.
    pub async fn scrape_mesh(&self, mesh: MeshScrape) -> Result<(), StackError> {
        if self.mesh.set(mesh.clone()).is_err() {
            return Err(StackError::Invalid(
                "Prometheus' mutual TLS scrape was set up twice".into(),
            ));
        }
        for name in &mesh.server_names {
            write_config(&self.dir, &targets_file(Job::Mesh(name)), "[]")?;
        }
        self.configure().await
    }

    /// From now on, scrapes the replicas marked [`ScrapeScheme::PublicTls`] over HTTPS,
    /// trusting the CA in `ca_file` (the gateway's, made when it started). Once per
    /// Prometheus.
    pub async fn scrape_public_tls(&self, ca_file: PathBuf) -> Result<(), StackError> {
        if self.public_ca.set(ca_file).is_err() {
            return Err(StackError::Invalid(
                "Prometheus' HTTPS scrape of the gateway was set up twice".into(),
            ));
        }
        write_config(&self.dir, &targets_file(Job::PublicTls), "[]")?;
        self.configure().await
    }

    /// Writes the configuration for the jobs set up so far and has Prometheus load it.
    async fn configure(&self) -> Result<(), StackError> {
        let text = config(&self.dir, self.mesh.get(), self.public_ca.get());
        write_config(&self.dir, CONFIG_FILE, &text)?;
        self.reload().await
    }

    /// Has Prometheus read its configuration file again (`--web.enable-lifecycle`).
    async fn reload(&self) -> Result<(), StackError> {
        let url = format!("{}/-/reload", self.url());
        let failed = |reason: String| StackError::Client {
            component: "Prometheus".into(),
            reason: format!("reloading its configuration ({url}): {reason}"),
        };
        let request = axum::http::Request::post(&url)
            .body(axum::body::Body::empty())
            .map_err(|e| failed(e.to_string()))?;
        let client = crate::platform::http::http_client();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .map_err(|_| failed("no answer within 10 s".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 << 10)
            .await
            .unwrap_or_default();
        Err(failed(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body)
        )))
    }

    pub(crate) fn process_mut(&mut self) -> Option<&mut process::ManagedProcess> {
        self.server.process_mut()
    }

    pub(crate) async fn stop(&mut self) {
        // Prometheus writes its head block out on SIGTERM; give it time to, so the data
        // kept is whole.
        self.server.stop(Duration::from_secs(15)).await;
    }
}

/// The configuration file, in Prometheus' directory.
const CONFIG_FILE: &str = "prometheus.yml";

/// The targets file of a job.
fn targets_file(job: Job<'_>) -> String {
    match job {
        Job::Plain => "targets.json".into(),
        Job::PublicTls => "targets-https.json".into(),
        Job::Mesh(name) => format!("targets-{name}.json"),
    }
}

/// The `prometheus` binary: `FAULTLINE_PROMETHEUS`, or the path (Debian's package).
pub fn prometheus_program() -> Result<PathBuf, StackError> {
    if let Some(path) = std::env::var_os("FAULTLINE_PROMETHEUS") {
        return Ok(PathBuf::from(path));
    }
    process::find_program("prometheus", &[]).ok_or_else(|| StackError::ProgramMissing {
        program: "prometheus".into(),
        hint: "run `make setup` (scripts/setup installs Debian's prometheus package), or point \
               FAULTLINE_PROMETHEUS at a prometheus binary"
            .into(),
    })
}

/// A YAML single-quoted string.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// Scrapes every [`SCRAPE_INTERVAL`]: one job for the replicas `dir`'s targets file names
/// (plain HTTP), with `public_ca` an HTTPS job trusting it, and with `mesh` one HTTPS job
/// per name; each job has its own targets file.
fn config(dir: &Path, mesh: Option<&MeshScrape>, public_ca: Option<&PathBuf>) -> String {
    let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
    let targets = |job: Job<'_>| {
        format!(
            "    file_sd_configs:
      - files: [{}]
        refresh_interval: {interval}
",
            quoted(&dir.join(targets_file(job)))
        )
    };
    let mut text = format!(
        "global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: {JOB}
    metrics_path: /metrics
{}",
        targets(Job::Plain)
    );
    if let Some(ca_file) = public_ca {
        text.push_str(&format!(
            "  - job_name: '{JOB}-https'
    metrics_path: /metrics
    scheme: https
    tls_config:
      ca_file: {}
{}    relabel_configs:
      - target_label: job
        replacement: {JOB}
",
            quoted(ca_file),
            targets(Job::PublicTls),
        ));
    }
    let Some(mesh) = mesh else { return text };
    for name in &mesh.server_names {
        text.push_str(&format!(
            "  - job_name: '{JOB}-{name}'
    metrics_path: /metrics
    scheme: https
    tls_config:
      ca_file: {}
      cert_file: {}
      key_file: {}
      server_name: '{name}'
{}    relabel_configs:
      - target_label: job
        replacement: {JOB}
",
            quoted(&mesh.ca_file),
            quoted(&mesh.cert_file),
            quoted(&mesh.key_file),
            targets(Job::Mesh(name)),
        ));
    }
    text
}

/// Starts Prometheus in `dir` and waits until its API answers. Its targets file starts
/// empty: [`Prometheus::set_targets`] fills it.
pub(crate) async fn start(dir: &Path, timeout: Duration) -> Result<Prometheus, StackError> {
    let since = std::time::Instant::now();
    let program = prometheus_program()?;
    // The process runs in `dir`: a relative path in its flags would be read from there.
    let absolute = std::path::absolute(dir)
        .map_err(|source| StackError::io(format!("resolving {}", dir.display()), source))?;
    let dir = absolute.as_path();
    let port = ports::free_port("Prometheus")?;
    let config_path = write_config(dir, CONFIG_FILE, &config(dir, None, None))?;
    write_config(dir, &targets_file(Job::Plain), "[]")?;
    let args = vec![
        format!("--config.file={}", config_path.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        // POST /-/reload: the scrape jobs of mutual TLS come after it started.
        "--web.enable-lifecycle".into(),
    ];
    let build_info = format!("http://127.0.0.1:{port}/api/v1/status/buildinfo");
    let client = crate::platform::http::http_client();
    let tool = HttpTool {
        component: "Prometheus",
        name: "prometheus",
        program,
        args,
        dir,
        port,
    };
    let server = start_http_tool(tool, since, timeout, || async {
        get_json::<serde_json::Value>(&client, &build_info)
            .await
            .map(|_| ())
    })
    .await?;
    Ok(Prometheus {
        server,
        dir: dir.to_path_buf(),
        mesh: OnceLock::new(),
        public_ca: OnceLock::new(),
    })
}

/// A kept directory for Prometheus when nobody chose one: `faultline-prometheus-*` in the
/// temporary directory, left in place when the stack stops.
pub(crate) fn kept_temporary_dir() -> Result<PathBuf, StackError> {
    tempfile::Builder::new()
        .prefix("faultline-prometheus-")
        .tempdir()
        .map(|dir| dir.keep())
        .map_err(|source| StackError::io("creating Prometheus' data directory", source))
}

/// One series of a range query: its labels and `(unix seconds, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: std::collections::BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct Answer<T> {
    status: String,
    // Absent fields read as `None` (serde's rule for `Option`).
    data: Option<T>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Matrix {
    result: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    metric: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// One scrape target as `/api/v1/targets` gives it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActiveTarget {
    pub scrape_url: String,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Reads Prometheus' HTTP API at `url` (its [`Prometheus::url`], or any Prometheus').
#[derive(Clone)]
pub struct PrometheusQuery {
    url: String,
    client: HttpClient,
}

impl PrometheusQuery {
    pub fn new(url: &str) -> PrometheusQuery {
        PrometheusQuery {
            url: url.trim_end_matches('/').to_string(),
            client: crate::platform::http::http_client(),
        }
    }

    async fn api<T: serde::de::DeserializeOwned>(&self, path_and_query: &str) -> Result<T, String> {
        let url = format!("{}/api/v1/{path_and_query}", self.url);
        let answer: Answer<T> = get_json(&self.client, &url).await?;
        match (answer.status.as_str(), answer.data) {
            ("success", Some(data)) => Ok(data),
            _ => Err(format!(
                "{url}: {}",
                answer.error.unwrap_or_else(|| answer.status.clone())
            )),
        }
    }

    /// The scrape targets Prometheus knows, with their health.
    pub async fn active_targets(&self) -> Result<Vec<ActiveTarget>, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Targets {
            active_targets: Vec<ActiveTarget>,
        }
        let targets: Targets = self.api("targets?state=active").await?;
        Ok(targets.active_targets)
    }

    /// Every metric name Prometheus holds a series of.
    pub async fn metric_names(&self) -> Result<Vec<String>, String> {
        self.api("label/__name__/values").await
    }

    /// An instant query: each series' labels and its one value.
    pub async fn query(&self, promql: &str) -> Result<Vec<RangeSeries>, String> {
        #[derive(Deserialize)]
        struct Vector {
            result: Vec<RawSeries>,
        }
        let vector: Vector = self.api(&format!("query?query={}", encode(promql))).await?;
        Ok(vector.result.into_iter().map(series).collect())
    }

    /// A range query from `start` to `end` (unix seconds) every `step`.
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, String> {
        let path = format!(
            "query_range?query={}&start={start:.3}&end={end:.3}&step={}",
            encode(promql),
            step.as_secs_f64()
        );
        let matrix: Matrix = self.api(&path).await?;
        Ok(matrix.result.into_iter().map(series).collect())
    }
}

fn series(raw: RawSeries) -> RangeSeries {
    let points = raw
        .values
        .into_iter()
        .chain(raw.value)
        .filter_map(|(at, value)| Some((at, value.parse::<f64>().ok()?)))
        .collect();
    RangeSeries {
        labels: raw.metric,
        points,
    }
}

/// Percent-encodes a PromQL expression for a query string.
pub fn encode(promql: &str) -> String {
    percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_configuration_scrapes_the_targets_file_each_second() {
        let yaml = config(Path::new("/tmp/p"), None, None);
        assert!(yaml.contains("files: ['/tmp/p/targets.json']"), "{yaml}");
        assert!(yaml.contains("scrape_interval: 1s"), "{yaml}");
        assert!(!yaml.contains("https"), "{yaml}");
    }

    fn mesh_scrape(names: &[&str]) -> MeshScrape {
        MeshScrape {
            ca_file: "/m/ca.pem".into(),
            cert_file: "/m/prometheus.pem".into(),
            key_file: "/m/prometheus-key.pem".into(),
            server_names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn under_mutual_tls_each_name_has_an_https_job_checking_it() {
        let mesh = mesh_scrape(&["orders.x", "users.x"]);
        let yaml = config(Path::new("/tmp/p"), Some(&mesh), None);
        let jobs: Vec<&str> = yaml.split("  - job_name: ").skip(1).collect();
        assert_eq!(jobs.len(), 3, "{yaml}");
        assert!(!jobs[0].contains("https"), "{yaml}");
        for (job, name) in jobs[1..].iter().zip(["orders.x", "users.x"]) {
            for line in [
                "scheme: https".to_string(),
                "ca_file: '/m/ca.pem'".into(),
                "cert_file: '/m/prometheus.pem'".into(),
                "key_file: '/m/prometheus-key.pem'".into(),
                format!("server_name: '{name}'"),
                format!("files: ['/tmp/p/targets-{name}.json']"),
                format!("replacement: {JOB}"),
            ] {
                assert!(job.contains(&line), "no {line} in {job}");
            }
        }
    }

    fn prometheus_in(dir: &Path) -> Prometheus {
        Prometheus {
            server: Server::external_unchecked("http://127.0.0.1:1"),
            dir: dir.to_path_buf(),
            mesh: OnceLock::new(),
            public_ca: OnceLock::new(),
        }
    }

    fn read_targets(path: PathBuf) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn target(port: u16, replica: usize, server_name: Option<&str>) -> ScrapeTarget {
        ScrapeTarget {
            port,
            replica,
            scheme: server_name.map_or(ScrapeScheme::Http, |name| {
                ScrapeScheme::Mesh(name.to_string())
            }),
        }
    }

    #[test]
    fn targets_are_written_as_file_service_discovery_groups() {
        let dir = tempfile::tempdir().unwrap();
        let prometheus = prometheus_in(dir.path());
        let targets = [target(4001, 1, None), target(4002, 2, None)];
        prometheus.set_targets(&targets).unwrap();
        let written = read_targets(dir.path().join("targets.json"));
        assert_eq!(written[1]["targets"][0], "127.0.0.1:4002");
        assert_eq!(written[1]["labels"]["replica"], "2");
        assert_eq!(written.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn mutual_tls_targets_go_to_their_names_job_and_an_unknown_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let prometheus = prometheus_in(dir.path());
        let orders = [target(4003, 1, Some("orders.x"))];
        let error = prometheus.set_targets(&orders).unwrap_err();
        assert!(error.to_string().contains("orders.x"), "{error}");
        prometheus
            .mesh
            .set(mesh_scrape(&["orders.x", "users.x"]))
            .unwrap();
        let targets = [target(4001, 1, None), orders[0].clone()];
        prometheus.set_targets(&targets).unwrap();
        let plain = read_targets(dir.path().join("targets.json"));
        assert_eq!(plain[0]["targets"][0], "127.0.0.1:4001");
        assert_eq!(plain.as_array().map(Vec::len), Some(1));
        let meshed = read_targets(dir.path().join("targets-orders.x.json"));
        assert_eq!(meshed[0]["targets"][0], "127.0.0.1:4003");
        // A name with no replica now gets an empty file, not its old targets.
        let users = read_targets(dir.path().join("targets-users.x.json"));
        assert_eq!(users.as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn the_gateways_own_ca_gets_an_https_job_of_its_own() {
        let ca = PathBuf::from("/g/gateway-ca.pem");
        let yaml = config(Path::new("/tmp/p"), None, Some(&ca));
        let jobs: Vec<&str> = yaml.split("  - job_name: ").skip(1).collect();
        assert_eq!(jobs.len(), 2, "{yaml}");
        for line in [
            "scheme: https".to_string(),
            "ca_file: '/g/gateway-ca.pem'".into(),
            "files: ['/tmp/p/targets-https.json']".into(),
            format!("replacement: {JOB}"),
        ] {
            assert!(jobs[1].contains(&line), "no {line} in {}", jobs[1]);
        }
        // No client certificate: the gateway's front door asks for none.
        assert!(!jobs[1].contains("cert_file"), "{yaml}");
    }

    #[test]
    fn a_public_tls_target_needs_its_job_and_then_goes_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let prometheus = prometheus_in(dir.path());
        let gateway = ScrapeTarget {
            scheme: ScrapeScheme::PublicTls,
            ..target(4005, 1, None)
        };
        let targets = [target(4001, 1, None), gateway];
        let error = prometheus.set_targets(&targets).unwrap_err();
        assert!(error.to_string().contains("scrape_public_tls"), "{error}");
        prometheus
            .public_ca
            .set(PathBuf::from("/g/ca.pem"))
            .unwrap();
        prometheus.set_targets(&targets).unwrap();
        let plain = read_targets(dir.path().join("targets.json"));
        assert_eq!(plain.as_array().map(Vec::len), Some(1));
        let https = read_targets(dir.path().join("targets-https.json"));
        assert_eq!(https[0]["targets"][0], "127.0.0.1:4005");
        assert_eq!(https.as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn promql_is_encoded_for_a_query_string() {
        assert_eq!(
            encode("sum by (service) (rate(x[30s]))"),
            "sum%20by%20%28service%29%20%28rate%28x%5B30s%5D%29%29"
        );
    }
}
