//! The real stack under the reference system: Apache Kafka (KRaft), PostgreSQL and Redis,
//! and Jaeger when traces are asked for ([`StackSpec::tracing`], [`jaeger`]), and a
//! Prometheus server scraping the services when asked for ([`StackSpec::prometheus`],
//! [`prometheus`]).
//!
//! [`Stack::start`] brings each component up according to a [`StackSpec`]:
//!
//! - **local** (the default): a child process on a free loopback port with its data in a
//!   fresh temporary directory ([`postgres`], [`redis`], [`kafka`]), supervised by
//!   [`process`] so that none can outlive faultline;
//! - **external**: an address of a component someone else runs (a Kafka cluster's bootstrap
//!   servers, a PostgreSQL URL, a Redis URL), only checked for readiness;
//! - **containers** (cargo feature `containers`): Docker containers through testcontainers.
//!
//! Readiness is checked for real: a Kafka metadata request that lists every broker,
//! `SELECT 1`, `PING`. A component that fails to start ends in [`StackError::ComponentFailed`],
//! naming it, its port, its data directory and the last lines of its log.
//!
//! The result is a [`Stack`] with [`Endpoints`] (the three addresses clients need) and, for
//! local components, handles that fault injection can signal.

pub mod jaeger;
pub mod kafka;
pub mod kafka_auth;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod ready;
pub mod redis;
mod server;
pub mod smoke;

#[cfg(feature = "containers")]
pub mod containers;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use jaeger::{Jaeger, JaegerQuery};
pub use kafka::{KafkaBroker, KafkaCluster, KafkaSpec, KAFKA_VERSION};
pub use kafka_auth::{KafkaAuth, KafkaClient};
pub use postgres::{PostgresServer, PostgresSpec};
pub use prometheus::{
    MeshScrape, Prometheus, PrometheusQuery, PrometheusSpec, ScrapeScheme, ScrapeTarget,
};
pub use redis::{RedisServer, RedisSpec};
pub use server::Server;

/// How long an external component may take to answer before it is called unreachable
/// (capped by the stack's ready timeout).
pub(crate) const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything that can go wrong bringing the stack up or down.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "{component} failed to start on 127.0.0.1:{port} (data directory {data_dir}): {reason}\n\
         --- last lines of {log} ---\n{log_tail}"
    )]
    ComponentFailed {
        component: String,
        port: u16,
        data_dir: PathBuf,
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("port {port} asked for {component} is already in use on 127.0.0.1 ({reason})")]
    PortTaken {
        component: String,
        port: u16,
        reason: String,
    },

    #[error(
        "Apache Kafka {version} was not found in {path}: run `make setup` (scripts/setup) \
         to fetch its jars, or point FAULTLINE_KAFKA_HOME at a directory with libs/*.jar"
    )]
    KafkaMissing { version: String, path: PathBuf },

    #[error("{program} was not found: {hint}")]
    ProgramMissing { program: String, hint: String },

    #[error("external {component} at {address} is unreachable: {reason}")]
    ExternalUnreachable {
        component: String,
        address: String,
        reason: String,
    },

    #[error("invalid stack settings: {0}")]
    Invalid(String),

    #[error("could not start {name} ({program}): {reason}")]
    Spawn {
        name: String,
        program: PathBuf,
        reason: String,
    },

    #[error("could not signal {name}: {reason}")]
    Signal { name: String, reason: String },

    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{component}: {reason}")]
    Client { component: String, reason: String },
}

impl StackError {
    /// Whether the fault is in what was asked or installed (a port taken, a program or
    /// Kafka's jars missing, an external component unreachable, bad settings) rather
    /// than in a run: every command that starts the stack exits 2 on these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StackError::PortTaken { .. }
                | StackError::KafkaMissing { .. }
                | StackError::ProgramMissing { .. }
                | StackError::ExternalUnreachable { .. }
                | StackError::Invalid(_)
        )
    }

    pub(crate) fn io(doing: impl Into<String>, source: std::io::Error) -> Self {
        StackError::Io {
            doing: doing.into(),
            source,
        }
    }
}

/// What to bring up, component by component.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub kafka: KafkaSpec,
    pub postgres: PostgresSpec,
    pub redis: RedisSpec,
    /// Where local components keep their data; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory after stopping.
    pub keep_data: bool,
    /// How long each component may take to become ready.
    pub ready_timeout: Duration,
    /// Also start Jaeger (local, in memory), for the services' spans.
    pub tracing: bool,
    /// Also start Prometheus, scraping every service replica the supervisor names.
    pub prometheus: Option<PrometheusSpec>,
}

impl Default for StackSpec {
    fn default() -> Self {
        StackSpec {
            kafka: KafkaSpec::default(),
            postgres: PostgresSpec::default(),
            redis: RedisSpec::default(),
            data_dir: None,
            keep_data: false,
            ready_timeout: Duration::from_secs(90),
            tracing: false,
            prometheus: None,
        }
    }
}

/// The addresses clients of the stack need, as `faultline stack up` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Comma-separated `host:port` list.
    pub kafka_bootstrap: String,
    /// `postgres://user@host:port/db` of the stack's default database.
    pub database_url: String,
    /// `redis://host:port`
    pub redis_url: String,
    /// The Kafka super user's credentials and property files; `None` for an open cluster.
    pub kafka_admin: Option<KafkaAdmin>,
    /// Jaeger's query API and UI, when the stack runs it.
    pub jaeger_url: Option<String>,
    /// Where services export spans to (Jaeger's OTLP/HTTP receiver), when it runs.
    pub otlp_endpoint: Option<String>,
    /// Prometheus' UI and HTTP API, when the stack runs it.
    pub prometheus_url: Option<String>,
    /// Where Prometheus keeps its files (the TSDB under `data/`), kept after the stack stops.
    pub prometheus_dir: Option<PathBuf>,
}

/// What a person or a tool needs to act as the Kafka super user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaAdmin {
    pub auth: KafkaAuth,
    /// librdkafka properties (`kcat -F`).
    pub client_properties: PathBuf,
    /// Java client properties (`--command-config` of Kafka's CLI tools).
    pub command_config: PathBuf,
}

impl Endpoints {
    /// The env-file lines, in a fixed order: the three addresses, then the Kafka super
    /// user's credentials when the cluster is secured.
    pub fn env_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("KAFKA_BOOTSTRAP={}", self.kafka_bootstrap),
            format!("DATABASE_URL={}", self.database_url),
            format!("REDIS_URL={}", self.redis_url),
        ];
        if let Some(admin) = &self.kafka_admin {
            lines.extend([
                format!("KAFKA_SASL_USERNAME={}", admin.auth.username),
                format!("KAFKA_SASL_PASSWORD={}", admin.auth.password()),
                format!(
                    "KAFKA_CLIENT_PROPERTIES={}",
                    admin.client_properties.display()
                ),
                format!("KAFKA_COMMAND_CONFIG={}", admin.command_config.display()),
            ]);
        }
        if let Some(url) = &self.jaeger_url {
            lines.push(format!("JAEGER_URL={url}"));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            lines.push(format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}"));
        }
        if let Some(url) = &self.prometheus_url {
            lines.push(format!("PROMETHEUS_URL={url}"));
        }
        if let Some(dir) = &self.prometheus_dir {
            lines.push(format!("PROMETHEUS_DATA_DIR={}", dir.display()));
        }
        lines
    }

    /// A Kafka client acting as the super user (anonymous on an open cluster).
    pub fn kafka_client(&self) -> KafkaClient {
        KafkaClient::new(
            self.kafka_bootstrap.clone(),
            self.kafka_admin.as_ref().map(|a| a.auth.clone()),
        )
    }
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.env_lines() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Checks what can be checked before anything starts, so that a taken port or a missing
/// Kafka cache is reported at once rather than after other components started.
fn preflight(spec: &StackSpec) -> Result<(), StackError> {
    if spec.tracing {
        jaeger::jaeger_program()?;
    }
    if spec.prometheus.is_some() {
        prometheus::prometheus_program()?;
    }
    if let KafkaSpec::Local(local) = &spec.kafka {
        kafka::kafka_home(local.home.as_deref())?;
        for (index, port) in local.client_ports.iter().enumerate() {
            ports::port_for(&format!("Kafka broker {}", index + 1), Some(*port))?;
        }
    }
    if let PostgresSpec::Local {
        port: Some(port), ..
    } = &spec.postgres
    {
        ports::port_for("PostgreSQL", Some(*port))?;
    }
    if let RedisSpec::Local {
        port: Some(port), ..
    } = &spec.redis
    {
        ports::port_for("Redis", Some(*port))?;
    }
    Ok(())
}

/// Writes the super user's property files into the data directory.
fn write_admin_properties(admin: &KafkaClient, data_dir: &Path) -> Result<KafkaAdmin, StackError> {
    let client_properties = data_dir.join("kafka-admin.librdkafka.properties");
    let command_config = data_dir.join("kafka-admin.java.properties");
    kafka_auth::write_private(&client_properties, &admin.kcat_properties())?;
    kafka_auth::write_private(&command_config, &admin.java_properties())?;
    let auth = admin.auth.clone().ok_or_else(|| {
        StackError::Invalid("a secured Kafka cluster without its super user".into())
    })?;
    Ok(KafkaAdmin {
        auth,
        client_properties,
        command_config,
    })
}

/// The data directory of a run: a temporary one removed on drop unless kept.
#[derive(Debug)]
struct DataDir {
    path: PathBuf,
    remove_on_drop: bool,
}

impl DataDir {
    fn create(spec: &StackSpec) -> Result<DataDir, StackError> {
        let (path, remove_on_drop) = match &spec.data_dir {
            Some(path) => {
                std::fs::create_dir_all(path).map_err(|source| {
                    StackError::io(
                        format!("creating data directory {}", path.display()),
                        source,
                    )
                })?;
                (path.clone(), false)
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("faultline-stack-")
                    .tempdir()
                    .map_err(|source| {
                        StackError::io("creating a temporary data directory", source)
                    })?;
                (dir.keep(), !spec.keep_data)
            }
        };
        // PostgreSQL runs as its own user and must be able to reach its subdirectory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|source| StackError::io(format!("opening up {}", path.display()), source))?;
        Ok(DataDir {
            path,
            remove_on_drop,
        })
    }
}

impl DataDir {
    /// Where Prometheus' files go: as asked, else under a data directory that is kept,
    /// else in a kept temporary directory of its own (its series outlive the stack).
    fn prometheus_dir(&self, spec: &PrometheusSpec) -> Result<PathBuf, StackError> {
        match &spec.dir {
            Some(dir) => Ok(dir.clone()),
            None if !self.remove_on_drop => Ok(self.path.join("prometheus")),
            None => prometheus::kept_temporary_dir(),
        }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove_on_drop {
            if let Err(error) = std::fs::remove_dir_all(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "could not remove the data directory");
            }
        }
    }
}

/// A running stack. Dropping it stops every local component and removes its data directory
/// (unless kept); [`Stack::stop`] does the same gracefully and asynchronously.
#[derive(Debug)]
pub struct Stack {
    // Field order is drop order: the servers stop before their data directory goes.
    kafka: KafkaCluster,
    redis: RedisServer,
    postgres: PostgresServer,
    jaeger: Option<Jaeger>,
    prometheus: Option<Prometheus>,
    #[cfg(feature = "containers")]
    containers: Option<containers::Containers>,
    data: DataDir,
    kafka_admin: Option<KafkaAdmin>,
}

impl Stack {
    /// Brings every component up and waits until each answers.
    ///
    /// PostgreSQL, Redis and Kafka start concurrently; Kafka, the slowest (a JVM per
    /// broker), sets the pace.
    pub async fn start(spec: StackSpec) -> Result<Stack, StackError> {
        preflight(&spec)?;
        let data = DataDir::create(&spec)?;
        let timeout = spec.ready_timeout;
        tracing::info!(data_dir = %data.path.display(), "starting the stack");
        let jaeger = async {
            match spec.tracing {
                true => jaeger::start(&data.path, timeout).await.map(Some),
                false => Ok(None),
            }
        };
        let prometheus = async {
            match &spec.prometheus {
                Some(wanted) => match data.prometheus_dir(wanted) {
                    Ok(dir) => prometheus::start(&dir, timeout).await.map(Some),
                    Err(error) => Err(error),
                },
                None => Ok(None),
            }
        };
        let (kafka, postgres, redis, jaeger, prometheus) = tokio::join!(
            KafkaCluster::start(&spec.kafka, &data.path, timeout),
            PostgresServer::start(&spec.postgres, &data.path, timeout),
            redis::start(&spec.redis, &data.path, timeout),
            jaeger,
            prometheus,
        );
        // On an error the others are dropped here, which stops them.
        let (kafka, postgres, redis, jaeger, prometheus) =
            (kafka?, postgres?, redis?, jaeger?, prometheus?);
        let kafka_admin = match kafka.principals() {
            Some(_) => Some(write_admin_properties(&kafka.admin_client(), &data.path)?),
            None => None,
        };
        Ok(Stack {
            kafka,
            redis,
            postgres,
            jaeger,
            prometheus,
            #[cfg(feature = "containers")]
            containers: None,
            data,
            kafka_admin,
        })
    }

    /// Starts the three components as Docker containers (needs a Docker daemon).
    #[cfg(feature = "containers")]
    pub async fn start_containers(spec: StackSpec) -> Result<Stack, StackError> {
        let data = DataDir::create(&spec)?;
        let (started, endpoints) = containers::Containers::start().await?;
        Ok(Stack {
            kafka: KafkaCluster::external_unchecked(&endpoints.kafka_bootstrap),
            redis: RedisServer::external_unchecked(&endpoints.redis_url),
            postgres: PostgresServer::external_unchecked(&endpoints.database_url),
            jaeger: None,
            prometheus: None,
            containers: Some(started),
            data,
            kafka_admin: None,
        })
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            kafka_bootstrap: self.kafka.bootstrap(),
            database_url: self.postgres.url(),
            redis_url: self.redis.url(),
            kafka_admin: self.kafka_admin.clone(),
            jaeger_url: self.jaeger.as_ref().map(Jaeger::url),
            otlp_endpoint: self.jaeger.as_ref().map(Jaeger::otlp_endpoint),
            prometheus_url: self.prometheus.as_ref().map(Prometheus::url),
            prometheus_dir: (self.prometheus.as_ref()).map(|p| p.dir().to_path_buf()),
        }
    }

    /// Prometheus, when the stack runs it.
    pub fn prometheus(&self) -> Option<&Prometheus> {
        self.prometheus.as_ref()
    }

    /// Jaeger, when the stack runs it.
    pub fn jaeger(&self) -> Option<&Jaeger> {
        self.jaeger.as_ref()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data.path
    }

    pub fn kafka(&self) -> &KafkaCluster {
        &self.kafka
    }

    pub fn kafka_mut(&mut self) -> &mut KafkaCluster {
        &mut self.kafka
    }

    pub fn postgres(&self) -> &PostgresServer {
        &self.postgres
    }

    pub fn redis(&self) -> &RedisServer {
        &self.redis
    }

    /// Creates a database (if it does not exist) and returns its URL: one database per
    /// service.
    pub async fn create_database(&self, name: &str) -> Result<String, StackError> {
        self.postgres.create_database(name).await
    }

    /// The first local component found dead, as an error quoting its log; `None` while all
    /// run. A broker stopped on purpose with [`KafkaCluster::kill_broker`] does not count.
    pub fn exited_component(&mut self) -> Option<StackError> {
        let data_dir = self.data.path.clone();
        let mut candidates: Vec<(&str, u16, &mut process::ManagedProcess)> = Vec::new();
        for broker in self.kafka.brokers_mut() {
            let port = broker.client_port;
            if let Some(process) = broker.process_mut() {
                candidates.push(("Kafka", port, process));
            }
        }
        let postgres_port = self.postgres.port().unwrap_or(0);
        if let Some(process) = self.postgres.process_mut() {
            candidates.push(("PostgreSQL", postgres_port, process));
        }
        let redis_port = self.redis.port().unwrap_or(0);
        if let Some(process) = self.redis.process_mut() {
            candidates.push(("Redis", redis_port, process));
        }
        if let Some(jaeger) = self.jaeger.as_mut() {
            let port = jaeger.port().unwrap_or(0);
            if let Some(process) = jaeger.process_mut() {
                candidates.push(("Jaeger", port, process));
            }
        }
        if let Some(prometheus) = self.prometheus.as_mut() {
            let port = prometheus.port().unwrap_or(0);
            if let Some(process) = prometheus.process_mut() {
                candidates.push(("Prometheus", port, process));
            }
        }
        for (component, port, process) in candidates {
            if let Some(status) = process.try_exit_status() {
                return Some(StackError::ComponentFailed {
                    component: format!("{component} ({})", process.name()),
                    port,
                    data_dir,
                    reason: format!("it exited with {status} while the stack was up"),
                    log: process.log_path().to_path_buf(),
                    log_tail: process.log_tail(ready::LOG_TAIL_LINES),
                });
            }
        }
        None
    }

    /// Stops Kafka first (so clients see a clean shutdown), then Redis and PostgreSQL, each
    /// with SIGTERM and a grace period before SIGKILL.
    pub async fn stop(mut self) {
        tracing::info!("stopping the stack");
        self.kafka.stop().await;
        let jaeger = async {
            if let Some(jaeger) = self.jaeger.as_mut() {
                jaeger.stop().await;
            }
        };
        let prometheus = async {
            if let Some(prometheus) = self.prometheus.as_mut() {
                prometheus.stop().await;
            }
        };
        tokio::join!(
            self.redis.stop(Duration::from_secs(5)),
            self.postgres.stop(),
            jaeger,
            prometheus
        );
        #[cfg(feature = "containers")]
        if let Some(containers) = self.containers.take() {
            containers.stop().await;
        }
        // Dropping `self` removes the data directory.
    }
}
