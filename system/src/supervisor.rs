//! `faultline system up`: the whole reference system on one machine.
//!
//! [`System::start`] brings the stack up (or uses external components), creates one
//! database per service, starts every service replica as its own OS process
//! (`faultline serve <service>`, through [`crate::stack::process`], so none outlives us),
//! waits until each answers `/health/ready`, seeds the catalogue, and starts the gateway in
//! front of the replicas. A supervision task restarts any process that dies, with
//! exponential backoff, on the same port (so the gateway's upstream list stays right).
//!
//! Each service connects as itself: to its database as its own role (which owns only that
//! database), to Kafka as its own principal (whose ACLs `topology::KAFKA_ACCESS` gives).
//! Secrets travel in the process' environment, never in argv. Seeding and the checker use
//! the admin connection ([`System::database_urls`]).
//!
//! With [`SystemSpec::mtls`], a CA made for this system signs a certificate per service
//! (`platform::mesh`, files in the services' log directory); each service then takes
//! calls over mutual TLS only, and the supervisor probes them with its own certificate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

use crate::platform::http::{answers_ready, http_client, https_client, HttpClient};
use crate::platform::mesh::{self, MeshFiles};
use crate::platform::migrate;
use crate::services::inventory;
use crate::services::ServiceKind;
use crate::stack::process::{self, ManagedProcess, ProcessSpec};
use crate::stack::{ports, MeshScrape, ScrapeScheme, ScrapeTarget, Stack, StackError, StackSpec};

mod deploy;
pub use deploy::Replacement;

impl From<StackError> for SystemError {
    fn from(error: StackError) -> Self {
        SystemError::Stack(Box::new(error))
    }
}

/// A process that has exited: why, and where its log is.
type Exited = Option<(String, PathBuf)>;

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(transparent)]
    Stack(#[from] Box<StackError>),
    #[error("{name} did not become ready within {timeout:?}: {reason}\n--- last lines of {log} ---\n{tail}")]
    NotReady {
        name: String,
        timeout: Duration,
        reason: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} was not ready again within {timeout:?} of its restart")]
    NotRestarted { name: String, timeout: Duration },
    #[error("seeding the catalogue: {0}")]
    Seed(String),
    #[error("invalid system settings: {0}")]
    Invalid(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SystemSpec {
    pub stack: StackSpec,
    /// The `faultline` binary whose `serve` subcommand runs each service.
    pub faultline_bin: PathBuf,
    /// Replicas per service (1 when absent); the gateway always runs one.
    pub replicas: HashMap<ServiceKind, usize>,
    pub payments_fail_rate: f64,
    pub shipping_fail_rate: f64,
    pub payments_latency_ms: u64,
    /// Gateway limit, requests per second per user (0: off).
    pub rate_limit: f64,
    pub burst: u32,
    /// Catalogue seeded at start: products `1..=products`, `stock` units each.
    pub products: i64,
    pub stock: i32,
    /// HS256 secret; a random one when `None`.
    pub jwt_secret: Option<String>,
    pub ready_timeout: Duration,
    /// Extra `serve` flags for one service (e.g. notifications' `--webhook-url`).
    pub extra_args: HashMap<ServiceKind, Vec<String>>,
    /// `host:port` the services reach PostgreSQL through instead of the server's own (a
    /// fault proxy, see [`SystemSpec::route_through`]); `None` to connect directly.
    /// Seeding, the checker and `database_urls` always use the direct address.
    pub(crate) postgres_route: Option<String>,
    /// The same for Redis.
    pub(crate) redis_route: Option<String>,
    /// The gateway serves HTTPS (TLS 1.3) with a throwaway CA's certificate.
    pub gateway_tls: bool,
    /// Mutual TLS between the services (`platform::mesh`): a CA for this system, a
    /// certificate per service, each service's callers checked.
    pub mtls: bool,
    /// Share of the traces starting in a service that are recorded (its
    /// `--trace-sample-ratio`); `None` leaves the services' default.
    pub trace_sample_ratio: Option<f64>,
}

impl SystemSpec {
    pub fn new(faultline_bin: PathBuf) -> SystemSpec {
        SystemSpec {
            stack: StackSpec::default(),
            faultline_bin,
            replicas: HashMap::new(),
            payments_fail_rate: 0.0,
            shipping_fail_rate: 0.0,
            payments_latency_ms: 0,
            rate_limit: 1000.0,
            burst: 2000,
            products: 100,
            stock: 1_000_000,
            jwt_secret: None,
            ready_timeout: Duration::from_secs(120),
            extra_args: HashMap::new(),
            postgres_route: None,
            redis_route: None,
            gateway_tls: false,
            mtls: false,
            trace_sample_ratio: None,
        }
    }
}

/// A fresh HS256 secret for one `system up`: 244 random bits, hex.
fn new_jwt_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `url` with its host and port replaced by `via` (`host:port`), or unchanged when `via` is
/// `None`.
fn routed_via(url: &str, via: Option<&str>) -> Result<String, SystemError> {
    let Some(via) = via else {
        return Ok(url.to_string());
    };
    let invalid = |what: &str| SystemError::Invalid(format!("routing {url} via {via}: {what}"));
    let (host, port) = via
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port is not a number"))?;
    let mut routed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    routed
        .set_host(Some(host))
        .map_err(|e| invalid(&e.to_string()))?;
    routed
        .set_port(Some(port))
        .map_err(|()| invalid("the URL cannot have a port"))?;
    Ok(routed.to_string())
}

/// One running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    pub kind: ServiceKind,
    pub replica: usize,
    pub port: u16,
    spec: ProcessSpec,
    process: Option<ManagedProcess>,
    pub restarts: u32,
    next_restart: Option<Instant>,
    /// The CA of its certificate when it serves HTTPS (the gateway with `gateway_tls`).
    pub tls_ca: Option<PathBuf>,
    /// It serves HTTPS to callers of the system CA only (`mtls`).
    pub mesh: bool,
}

impl ServiceProcess {
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() || self.mesh {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ManagedProcess::pid)
    }

    /// `SERVICE_<NAME>_<replica>`
    pub fn env_name(&self) -> String {
        format!(
            "SERVICE_{}_{}",
            self.kind.name().to_uppercase(),
            self.replica
        )
    }
}

/// The running system; dropping it stops every process and the stack.
pub struct System {
    // Processes first: services stop before the stack they use.
    processes: Arc<Mutex<Vec<ServiceProcess>>>,
    supervision: CancellationToken,
    stack: Option<Stack>,
    pub gateway_url: String,
    /// The CA file a client of an HTTPS gateway trusts.
    pub gateway_ca_file: Option<PathBuf>,
    pub jwt_secret: String,
    pub database_urls: HashMap<ServiceKind, String>,
    /// What the services are given: `database_urls` routed as [`SystemSpec::route_through`] asked.
    service_database_urls: HashMap<ServiceKind, String>,
    /// With `mtls`: the system CA and every identity's certificate.
    pub mesh: Option<MeshFiles>,
    /// With `mtls`: how the supervisor calls the services (as [`mesh::SUPERVISOR`]).
    probe_tls: Option<Arc<rustls::ClientConfig>>,
    /// With `mtls`: how a scraper of the services' `/metrics` calls them (as
    /// [`mesh::PROMETHEUS`], the identity the mesh gives scrapers).
    scrape_tls: Option<Arc<rustls::ClientConfig>>,
    /// The gateway's upstreams file and its last generation (see [`deploy`]).
    upstreams_file: PathBuf,
    upstreams_generation: AtomicU64,
}

fn lock(processes: &Mutex<Vec<ServiceProcess>>) -> std::sync::MutexGuard<'_, Vec<ServiceProcess>> {
    processes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl System {
    pub async fn start(spec: SystemSpec) -> Result<System, SystemError> {
        if !spec.faultline_bin.is_file() {
            return Err(SystemError::Invalid(format!(
                "{} is not the faultline binary",
                spec.faultline_bin.display()
            )));
        }
        let stack = Stack::start(spec.stack.clone()).await?;
        let endpoints = stack.endpoints();
        let jwt_secret = spec.jwt_secret.clone().unwrap_or_else(new_jwt_secret);
        let logs = stack.data_dir().join("services");
        std::fs::create_dir_all(&logs)
            .map_err(|e| SystemError::Invalid(format!("creating {}: {e}", logs.display())))?;

        let mut database_urls = HashMap::new();
        let mut role_urls = HashMap::new();
        for kind in ServiceKind::ALL.into_iter().filter(|k| k.has_database()) {
            database_urls.insert(kind, stack.create_database(kind.name()).await?);
            role_urls.insert(
                kind,
                stack.postgres().create_service_role(kind.name()).await?,
            );
        }
        let service_database_urls = role_urls
            .iter()
            .map(|(kind, url)| Ok((*kind, routed_via(url, spec.postgres_route.as_deref())?)))
            .collect::<Result<HashMap<_, _>, SystemError>>()?;
        let service_redis_url = routed_via(&endpoints.redis_url, spec.redis_route.as_deref())?;
        let mut system = System {
            processes: Arc::new(Mutex::new(Vec::new())),
            supervision: CancellationToken::new(),
            stack: Some(stack),
            gateway_url: String::new(),
            gateway_ca_file: None,
            jwt_secret,
            database_urls,
            service_database_urls,
            mesh: None,
            probe_tls: None,
            scrape_tls: None,
            upstreams_file: logs.join("upstreams.json"),
            upstreams_generation: AtomicU64::new(0),
        };
        if spec.mtls {
            system.start_mesh(&logs).await?;
        }

        // Everything but the gateway, concurrently; each service migrates its own schema.
        let mut started = Vec::new();
        for kind in ServiceKind::ALL
            .into_iter()
            .filter(|k| *k != ServiceKind::Gateway)
        {
            let count = spec.replicas.get(&kind).copied().unwrap_or(1).max(1);
            for replica in 1..=count {
                let port = ports::free_port(kind.name())?;
                let args = system.service_args(
                    &spec,
                    kind,
                    port,
                    &endpoints.kafka_bootstrap,
                    &service_redis_url,
                    &[],
                );
                started.push(system.spawn_service(&spec, &logs, kind, replica, port, args)?);
            }
        }
        lock(&system.processes).extend(started);
        system.wait_all_ready(spec.ready_timeout).await?;

        system.seed(&spec).await?;

        let mut gateway_args = system.gateway_args(&spec);
        if spec.gateway_tls {
            let files = crate::services::gateway::tls::throwaway_files(&logs)
                .map_err(|e| SystemError::Invalid(e.to_string()))?;
            for (flag, path) in [("--tls-cert", &files.cert), ("--tls-key", &files.key)] {
                gateway_args.extend([flag.to_string(), path.display().to_string()]);
            }
            if let Some(prometheus) = system.stack.as_ref().and_then(Stack::prometheus) {
                prometheus.scrape_public_tls(files.ca.clone()).await?;
            }
            system.gateway_ca_file = Some(files.ca);
        }
        let port = ports::free_port("gateway")?;
        let args = system.service_args(
            &spec,
            ServiceKind::Gateway,
            port,
            &endpoints.kafka_bootstrap,
            &service_redis_url,
            &gateway_args,
        );
        let mut gateway =
            system.spawn_service(&spec, &logs, ServiceKind::Gateway, 1, port, args)?;
        gateway.tls_ca = system.gateway_ca_file.clone();
        system.gateway_url = gateway.url();
        lock(&system.processes).push(gateway);
        system.wait_all_ready(spec.ready_timeout).await?;
        system.scrape_by_prometheus()?;

        tokio::spawn(supervise(
            system.processes.clone(),
            system.supervision.clone(),
        ));
        Ok(system)
    }

    /// Makes the system CA and every identity's certificate in `dir`, the supervisor's
    /// own client of them and the scrapers', and has the stack's Prometheus (when it runs
    /// one) scrape with its certificate.
    async fn start_mesh(&mut self, dir: &Path) -> Result<(), SystemError> {
        let invalid = |e: crate::platform::tls::TlsError| SystemError::Invalid(e.to_string());
        let files = mesh::write_mesh(dir).map_err(invalid)?;
        let client = |identity| {
            let identity = mesh::MeshIdentity::of(&files, identity).map_err(invalid)?;
            identity.client_config().map_err(invalid)
        };
        self.probe_tls = Some(client(mesh::SUPERVISOR)?);
        self.scrape_tls = Some(client(mesh::PROMETHEUS)?);
        if let Some(prometheus) = self.stack.as_ref().and_then(Stack::prometheus) {
            let server_names = (ServiceKind::ALL.into_iter())
                .filter(|kind| mesh::serves_mesh(*kind))
                .map(|kind| mesh::dns_name(kind.name()))
                .collect();
            let scrape = MeshScrape {
                ca_file: files.ca.clone(),
                cert_file: files.cert(mesh::PROMETHEUS),
                key_file: files.key(mesh::PROMETHEUS),
                server_names,
            };
            prometheus.scrape_mesh(scrape).await?;
        }
        self.mesh = Some(files);
        Ok(())
    }

    /// How a scraper of the services' `/metrics` calls them: with the mesh's scraper
    /// identity and CA under mutual TLS, `None` when they serve plain HTTP.
    pub fn scrape_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.scrape_tls.clone()
    }

    /// The client readiness is asked with: as the supervisor under mutual TLS.
    pub fn probe_client(&self) -> HttpClient {
        match &self.probe_tls {
            Some(tls) => https_client(tls.clone()),
            None => http_client(),
        }
    }

    /// Names every replica to the stack's Prometheus, when it runs one. A restarted
    /// replica keeps its port; a rollout or blue-green names its new replicas again.
    /// Replicas under mutual TLS are named with their certificate's name, which their
    /// scrape job checks; an HTTPS gateway goes to the job that trusts its own CA
    /// ([`System::start`] set it up).
    fn scrape_by_prometheus(&self) -> Result<(), SystemError> {
        let Some(prometheus) = self.stack.as_ref().and_then(Stack::prometheus) else {
            return Ok(());
        };
        let targets: Vec<ScrapeTarget> = lock(&self.processes)
            .iter()
            .map(|service| ScrapeTarget {
                port: service.port,
                replica: service.replica,
                scheme: if service.tls_ca.is_some() {
                    ScrapeScheme::PublicTls
                } else if service.mesh {
                    ScrapeScheme::Mesh(mesh::dns_name(service.kind.name()))
                } else {
                    ScrapeScheme::Http
                },
            })
            .collect();
        Ok(prometheus.set_targets(&targets)?)
    }

    /// Seeds inventory's catalogue directly, not through a fault proxy.
    async fn seed(&self, spec: &SystemSpec) -> Result<(), SystemError> {
        let inventory_url = self
            .database_urls
            .get(&ServiceKind::Inventory)
            .cloned()
            .unwrap_or_default();
        let pool =
            migrate::pool(&inventory_url, 2).map_err(|e| SystemError::Seed(e.to_string()))?;
        let seeded = inventory::seed(&pool, spec.products, spec.stock)
            .await
            .map_err(|e| SystemError::Seed(e.to_string()))?;
        tracing::info!(products = seeded, stock = spec.stock, "catalogue seeded");
        Ok(())
    }

    /// The gateway's own flags: every replica of each upstream, and the rate limit.
    fn gateway_args(&self, spec: &SystemSpec) -> Vec<String> {
        let mut args = Vec::new();
        for kind in [
            ServiceKind::Users,
            ServiceKind::Inventory,
            ServiceKind::Orders,
            ServiceKind::Analytics,
            ServiceKind::Ingest,
        ] {
            let urls: Vec<String> = lock(&self.processes)
                .iter()
                .filter(|p| p.kind == kind)
                .map(ServiceProcess::url)
                .collect();
            args.push("--upstream".to_string());
            args.push(format!("{}={}", kind.name(), urls.join(",")));
        }
        args.extend([
            "--upstreams-file".into(),
            self.upstreams_file.display().to_string(),
            "--rate-limit".into(),
            spec.rate_limit.to_string(),
            "--burst".into(),
            spec.burst.to_string(),
        ]);
        args
    }

    fn service_args(
        &self,
        spec: &SystemSpec,
        kind: ServiceKind,
        port: u16,
        bootstrap: &str,
        redis_url: &str,
        extra: &[String],
    ) -> Vec<String> {
        let mut args = vec![
            "--log-format".to_string(),
            "json".into(),
            "serve".into(),
            kind.name().into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--kafka-bootstrap".into(),
            bootstrap.into(),
        ];
        if let Some(url) = self.service_database_urls.get(&kind) {
            args.extend(["--database-url".into(), url.clone()]);
        }
        if kind == ServiceKind::Users {
            args.extend(["--redis-url".into(), redis_url.into()]);
        }
        match kind {
            ServiceKind::Payments => args.extend([
                "--fail-rate".into(),
                spec.payments_fail_rate.to_string(),
                "--latency-ms".into(),
                spec.payments_latency_ms.to_string(),
            ]),
            ServiceKind::Shipping => {
                args.extend(["--fail-rate".into(), spec.shipping_fail_rate.to_string()])
            }
            _ => {}
        }
        args.extend(extra.iter().cloned());
        if let Some(mesh) = &self.mesh {
            args.extend(mesh.serve_args(kind.name()));
        }
        if let Some(more) = spec.extra_args.get(&kind) {
            args.extend(more.iter().cloned());
        }
        args
    }

    fn spawn_service(
        &self,
        spec: &SystemSpec,
        logs: &Path,
        kind: ServiceKind,
        replica: usize,
        port: u16,
        args: Vec<String>,
    ) -> Result<ServiceProcess, SystemError> {
        let mut env = self.service_env(kind);
        if let Some(ratio) = spec.trace_sample_ratio {
            env.push(("FAULTLINE_TRACE_SAMPLE_RATIO".into(), ratio.to_string()));
        }
        let process_spec = ProcessSpec {
            name: format!("{}-{replica}", kind.name()),
            program: spec.faultline_bin.clone(),
            args,
            // Secrets travel in the environment, not in argv where `ps` shows them.
            env,
            cwd: None,
            log_path: logs.join(format!("{}-{replica}.log", kind.name())),
            run_as: None,
        };
        let process = process::spawn(&process_spec)?;
        Ok(ServiceProcess {
            kind,
            replica,
            port,
            spec: process_spec,
            process: Some(process),
            restarts: 0,
            next_restart: None,
            tls_ca: None,
            mesh: self.mesh.is_some() && mesh::serves_mesh(kind),
        })
    }

    /// The environment of a service process: the JWT secret and its Kafka principal.
    fn service_env(&self, kind: ServiceKind) -> Vec<(String, String)> {
        let mut env = vec![
            ("FAULTLINE_JWT_SECRET".into(), self.jwt_secret.clone()),
            ("FAULTLINE_LOG".into(), "info".into()),
        ];
        let auth = self
            .stack
            .as_ref()
            .and_then(|stack| stack.kafka().service_client(kind.name()).auth);
        if let Some(auth) = auth {
            env.push(("KAFKA_SASL_USERNAME".into(), auth.username.clone()));
            env.push(("KAFKA_SASL_PASSWORD".into(), auth.password().to_string()));
        }
        if let Some(jaeger) = self.stack.as_ref().and_then(|stack| stack.jaeger()) {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), jaeger.otlp_endpoint()));
        }
        env
    }

    /// Waits until every process answers `/health/ready`, or says which did not and why.
    pub async fn wait_all_ready(&self, timeout: Duration) -> Result<(), SystemError> {
        let client = self.probe_client();
        let deadline = Instant::now() + timeout;
        loop {
            let targets: Vec<(String, (String, Option<PathBuf>), Exited)> = {
                let mut processes = lock(&self.processes);
                processes
                    .iter_mut()
                    .map(|p| {
                        let exited = p
                            .process
                            .as_mut()
                            .and_then(|m| m.try_exit_status())
                            .map(|s| (format!("it exited with {s}"), p.spec.log_path.clone()));
                        (p.spec.name.clone(), (p.url(), p.tls_ca.clone()), exited)
                    })
                    .collect()
            };
            let mut waiting = None;
            for (name, url, exited) in targets {
                if let Some((reason, log)) = exited {
                    return Err(SystemError::NotReady {
                        name,
                        timeout,
                        reason,
                        tail: process::log_tail(&log, 20),
                        log,
                    });
                }
                if !ready(&client, &url, Duration::from_secs(2)).await {
                    waiting = Some(name);
                    break;
                }
            }
            let Some(name) = waiting else { return Ok(()) };
            if Instant::now() >= deadline {
                let log = lock(&self.processes)
                    .iter()
                    .find(|p| p.spec.name == name)
                    .map(|p| p.spec.log_path.clone())
                    .unwrap_or_default();
                return Err(SystemError::NotReady {
                    name,
                    timeout,
                    reason: "/health/ready did not answer 200".into(),
                    tail: process::log_tail(&log, 20),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn stack(&self) -> Option<&Stack> {
        self.stack.as_ref()
    }

    /// (env name, URL, pid) of every process, in start order.
    pub fn services(&self) -> Vec<(String, String, Option<u32>)> {
        lock(&self.processes)
            .iter()
            .map(|p| (p.env_name(), p.url(), p.pid()))
            .collect()
    }

    /// The database URL service `kind` is given: as its own role, through a fault proxy
    /// when one was asked for.
    pub fn service_database_url(&self, kind: ServiceKind) -> Option<&str> {
        self.service_database_urls.get(&kind).map(String::as_str)
    }

    /// The URL of one replica (1-based).
    pub fn service_url(&self, kind: ServiceKind, replica: usize) -> Option<String> {
        lock(&self.processes)
            .iter()
            .find(|p| p.kind == kind && p.replica == replica)
            .map(ServiceProcess::url)
    }

    /// Sends `signal` to a replica's process group (a fault: SIGKILL, SIGSTOP, SIGCONT...).
    /// A killed process is restarted by the supervisor.
    pub fn signal(
        &self,
        kind: ServiceKind,
        replica: usize,
        signal: Signal,
    ) -> Result<u32, SystemError> {
        let processes = lock(&self.processes);
        let target = processes
            .iter()
            .find(|p| p.kind == kind && p.replica == replica)
            .ok_or_else(|| {
                SystemError::Invalid(format!("no replica {replica} of {}", kind.name()))
            })?;
        let process = target
            .process
            .as_ref()
            .ok_or_else(|| SystemError::Invalid(format!("{} is not running", target.spec.name)))?;
        process.signal_group(signal)?;
        Ok(process.pid())
    }

    /// Restarts one replica gracefully: SIGTERM, then waits until the supervisor has
    /// started it again and it answers `/health/ready`, for at most `timeout`.
    pub async fn restart_and_wait(
        &self,
        kind: ServiceKind,
        replica: usize,
        timeout: Duration,
    ) -> Result<(), SystemError> {
        let before = self.restarts(kind, replica);
        self.signal(kind, replica, Signal::SIGTERM)?;
        let name = format!("{}-{replica}", kind.name());
        let url = self
            .service_url(kind, replica)
            .ok_or_else(|| SystemError::Invalid(format!("{name} has no URL")))?;
        let client = self.probe_client();
        let ca = (kind == ServiceKind::Gateway)
            .then(|| self.gateway_ca_file.clone())
            .flatten();
        // Tokio's clock, so that tests with paused time can drive the deadline.
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.restarts(kind, replica) > before
                && ready(&client, &(url.clone(), ca.clone()), Duration::from_secs(1)).await
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(SystemError::NotRestarted { name, timeout })
    }

    /// Restarts of one replica so far.
    pub fn restarts(&self, kind: ServiceKind, replica: usize) -> u32 {
        lock(&self.processes)
            .iter()
            .find(|p| p.kind == kind && p.replica == replica)
            .map_or(0, |p| p.restarts)
    }

    /// Stops every service (SIGTERM, then SIGKILL after a grace), then the stack.
    pub async fn stop(mut self) {
        self.supervision.cancel();
        let processes: Vec<ServiceProcess> = std::mem::take(&mut *lock(&self.processes));
        // The gateway first, so no new work enters while the others drain, all at once.
        let (mut gateway, mut services): (Vec<_>, Vec<_>) = processes
            .into_iter()
            .partition(|p| p.kind == ServiceKind::Gateway);
        deploy::stop_all(&mut gateway, Duration::from_secs(15)).await;
        deploy::stop_all(&mut services, Duration::from_secs(15)).await;
        if let Some(stack) = self.stack.take() {
            stack.stop().await;
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.supervision.cancel();
        // ManagedProcess' own Drop stops each process; the stack's Drop stops the stack.
        lock(&self.processes).clear();
    }
}

/// Restarts dead processes with exponential backoff (0.25 s, 0.5 s, 1 s, ... up to 30 s).
/// Whether the process at `url` answers `/health/ready`: over HTTPS trusting its CA when it
/// has one.
async fn ready(
    client: &HttpClient,
    (url, ca): &(String, Option<PathBuf>),
    timeout: Duration,
) -> bool {
    match ca {
        Some(ca) => crate::services::gateway::tls::answers_ready_over_tls(url, ca, timeout).await,
        None => answers_ready(client, url, timeout).await,
    }
}

async fn supervise(processes: Arc<Mutex<Vec<ServiceProcess>>>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut processes = lock(&processes);
        for service in processes.iter_mut() {
            let exited = service.process.as_mut().and_then(|p| p.try_exit_status());
            if let Some(status) = exited {
                let backoff = Duration::from_millis(250 << service.restarts.min(7))
                    .min(Duration::from_secs(30));
                tracing::warn!(service = %service.spec.name, %status, ?backoff, "service died; restarting");
                if let Some(mut dead) = service.process.take() {
                    dead.kill_and_reap();
                }
                service.next_restart = Some(Instant::now() + backoff);
            }
            if service.process.is_none()
                && service.next_restart.is_some_and(|at| Instant::now() >= at)
            {
                match process::spawn(&service.spec) {
                    Ok(process) => {
                        service.process = Some(process);
                        service.restarts += 1;
                        service.next_restart = None;
                        tracing::info!(service = %service.spec.name, restarts = service.restarts, "restarted");
                    }
                    Err(error) => {
                        tracing::error!(service = %service.spec.name, %error, "could not restart; will try again");
                        service.next_restart = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{new_jwt_secret, routed_via};

    #[test]
    fn every_system_up_makes_its_own_jwt_secret_of_at_least_32_bytes() {
        let (one, two) = (new_jwt_secret(), new_jwt_secret());
        assert_ne!(one, two);
        assert!(one.len() >= 32, "{one}");
    }

    #[test]
    fn routing_via_replaces_only_host_and_port() {
        assert_eq!(
            routed_via(
                "postgres://faultline@127.0.0.1:5432/orders",
                Some("127.0.0.1:6000")
            )
            .unwrap(),
            "postgres://faultline@127.0.0.1:6000/orders"
        );
        assert_eq!(
            routed_via("redis://127.0.0.1:6379", Some("127.0.0.1:7000")).unwrap(),
            "redis://127.0.0.1:7000"
        );
        assert_eq!(
            routed_via("redis://127.0.0.1:6379", None).unwrap(),
            "redis://127.0.0.1:6379"
        );
        let error = routed_via("redis://127.0.0.1:6379", Some("no-port")).unwrap_err();
        assert!(error.to_string().contains("host:port"), "{error}");
    }
}
