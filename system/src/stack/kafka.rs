//! Apache Kafka in KRaft mode (no ZooKeeper): one or more combined broker+controller JVMs
//! run from the jars `scripts/setup` fetched from Maven Central, or an external cluster.
//!
//! Each local broker has three loopback listeners:
//! - `CLIENT`, for producers and consumers. What it *advertises* is configurable, so that a
//!   fault proxy can stand in front of each broker: clients reconnect to whatever address
//!   the metadata gives them, so only an advertised proxy address sees all their traffic.
//! - `INTERNAL`, for replication between brokers (never proxied unless asked).
//! - `CONTROLLER`, for the KRaft quorum; every broker is a voter.
//!
//! A local cluster is secured unless asked not to ([`LocalKafka::secured`]): SASL on every
//! listener, the `StandardAuthorizer` denying what no ACL allows, a principal per service
//! ([`super::kafka_auth`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::kafka_auth::{self, KafkaClient, KafkaPrincipals};
use super::process::{self, ManagedProcess, ProcessSpec};
use super::ready::{self, Where, LOG_TAIL_LINES};
use super::{ports, StackError, EXTERNAL_TIMEOUT};

/// The Kafka release `scripts/setup` fetches (see `scripts/kafka/pom.xml`).
pub const KAFKA_VERSION: &str = "4.3.1";

/// Default and upper bound of each broker's JVM heap.
pub const MAX_HEAP_MB: u32 = 512;

/// Starts of a local cluster tried when a broker finds a chosen port taken.
const START_ATTEMPTS: u32 = 3;

/// Whether a failed start is a broker that could not bind one of its ports.
fn lost_a_port(error: &StackError) -> bool {
    matches!(error, StackError::ComponentFailed { log_tail, .. }
        if log_tail.contains("Address already in use"))
}

#[derive(Debug, Clone)]
pub enum KafkaSpec {
    Local(LocalKafka),
    External {
        /// Comma-separated `host:port` list.
        bootstrap: String,
    },
}

impl Default for KafkaSpec {
    fn default() -> Self {
        KafkaSpec::Local(LocalKafka::default())
    }
}

/// A cluster of local combined broker+controller processes.
#[derive(Debug, Clone)]
pub struct LocalKafka {
    /// Number of brokers, each also a controller voter.
    pub brokers: usize,
    /// JVM heap of each broker, at most [`MAX_HEAP_MB`].
    pub heap_mb: u32,
    /// Fixed client ports, one per broker; empty for free ports.
    pub client_ports: Vec<u16>,
    /// `host:port` each broker advertises to clients (e.g. a fault proxy's), one per broker;
    /// empty to advertise the broker's own client listener.
    pub advertised: Vec<String>,
    /// Partitions of auto-created topics.
    pub default_partitions: u32,
    /// Where Kafka's jars are (`libs/*.jar`); the cache `scripts/setup` fills when `None`.
    pub home: Option<PathBuf>,
    /// SASL/SCRAM and ACLs (the default). Off only for kafka-bench, which measures the
    /// broker's produce path with its own anonymous clients and runs no services.
    pub secured: bool,
}

impl Default for LocalKafka {
    fn default() -> Self {
        LocalKafka {
            brokers: 1,
            heap_mb: MAX_HEAP_MB,
            client_ports: Vec::new(),
            advertised: Vec::new(),
            default_partitions: 6,
            home: None,
            secured: true,
        }
    }
}

/// One local broker: its ports, its directory and its process.
#[derive(Debug)]
pub struct KafkaBroker {
    pub node_id: u32,
    pub client_port: u16,
    pub internal_port: u16,
    pub controller_port: u16,
    /// What clients are told to connect to.
    pub advertised: String,
    dir: PathBuf,
    spec: ProcessSpec,
    process: Option<ManagedProcess>,
}

impl KafkaBroker {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker's JVM, unless it was killed and not restarted.
    pub fn process(&self) -> Option<&ManagedProcess> {
        self.process.as_ref()
    }

    pub(crate) fn process_mut(&mut self) -> Option<&mut ManagedProcess> {
        self.process.as_mut()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ManagedProcess::pid)
    }
}

/// A running Kafka cluster: local brokers, or an external cluster's bootstrap servers.
#[derive(Debug)]
pub struct KafkaCluster {
    bootstrap: String,
    brokers: Vec<KafkaBroker>,
    /// The principals of a secured local cluster.
    principals: Option<KafkaPrincipals>,
}

impl KafkaCluster {
    /// Starts local brokers (their directories under `data_root`) or checks an external
    /// cluster; [`Stack::start`](super::Stack::start) calls this alongside the other
    /// components, `kafka-bench` alone.
    pub async fn start(
        spec: &KafkaSpec,
        data_root: &Path,
        timeout: Duration,
    ) -> Result<KafkaCluster, StackError> {
        match spec {
            KafkaSpec::External { bootstrap } => {
                let bootstrap = bootstrap.clone();
                ready::wait_for_external(
                    "Kafka",
                    &bootstrap,
                    timeout.min(EXTERNAL_TIMEOUT),
                    || any_broker(KafkaClient::new(bootstrap.clone(), None)),
                )
                .await?;
                Ok(KafkaCluster::external_unchecked(&bootstrap))
            }
            KafkaSpec::Local(local) => {
                let mut attempt = 1;
                loop {
                    match start_local(local, data_root, timeout).await {
                        Err(error) if attempt < START_ATTEMPTS && lost_a_port(&error) => {
                            // Something outside faultline took a chosen port between the
                            // choice and the JVM's bind; fresh ports and fresh storage.
                            tracing::warn!(attempt, %error, "Kafka lost a port; starting again");
                            for node_id in 1..=local.brokers {
                                let _ = std::fs::remove_dir_all(
                                    data_root.join(format!("kafka-{node_id}")),
                                );
                            }
                            attempt += 1;
                        }
                        outcome => return outcome,
                    }
                }
            }
        }
    }

    pub(crate) fn external_unchecked(bootstrap: &str) -> KafkaCluster {
        KafkaCluster {
            bootstrap: bootstrap.to_string(),
            brokers: Vec::new(),
            principals: None,
        }
    }

    /// Comma-separated bootstrap servers, as clients should use them.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The principals of a secured local cluster; `None` when it takes anonymous clients.
    pub fn principals(&self) -> Option<&KafkaPrincipals> {
        self.principals.as_ref()
    }

    /// A client with the super user's credentials (anonymous on an open cluster).
    pub fn admin_client(&self) -> KafkaClient {
        KafkaClient::new(
            self.bootstrap.clone(),
            self.principals.as_ref().map(|p| p.admin.clone()),
        )
    }

    /// A client with service `name`'s credentials (anonymous on an open cluster).
    pub fn service_client(&self, name: &str) -> KafkaClient {
        KafkaClient::new(
            self.bootstrap.clone(),
            self.principals
                .as_ref()
                .and_then(|p| p.service(name))
                .cloned(),
        )
    }

    /// The local brokers (empty for an external cluster).
    pub fn brokers(&self) -> &[KafkaBroker] {
        &self.brokers
    }

    pub(crate) fn brokers_mut(&mut self) -> &mut [KafkaBroker] {
        &mut self.brokers
    }

    /// SIGKILLs broker `node_id` (a crash, for fault tests); it stays down until
    /// [`KafkaCluster::restart_broker`].
    pub fn kill_broker(&mut self, node_id: u32) -> Result<(), StackError> {
        let broker = self.broker_mut(node_id)?;
        if let Some(mut process) = broker.process.take() {
            process.kill_and_reap();
        }
        Ok(())
    }

    /// Starts broker `node_id` again on its ports and data, and waits until the cluster
    /// lists it again.
    pub async fn restart_broker(
        &mut self,
        node_id: u32,
        timeout: Duration,
    ) -> Result<(), StackError> {
        let expected = self.brokers.len();
        let admin = self.admin_client();
        let broker = self.broker_mut(node_id)?;
        if broker.process.is_some() {
            return Ok(());
        }
        broker.process = Some(process::spawn(&broker.spec)?);
        wait_for_cluster(&mut self.brokers, &admin, expected, Instant::now(), timeout).await
    }

    fn broker_mut(&mut self, node_id: u32) -> Result<&mut KafkaBroker, StackError> {
        self.brokers
            .iter_mut()
            .find(|b| b.node_id == node_id)
            .ok_or_else(|| StackError::Invalid(format!("there is no local Kafka broker {node_id}")))
    }

    /// Stops every local broker: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(&mut self) {
        // All at once: a broker waiting for its controlled shutdown would otherwise wait for
        // peers that are still up, one grace period each.
        let stops = self
            .brokers
            .iter_mut()
            .filter_map(|b| b.process.as_mut())
            .map(|p| p.stop(Duration::from_secs(8)));
        futures::future::join_all(stops).await;
    }
}

/// Where Kafka's jars are: `FAULTLINE_KAFKA_HOME`, or the cache `scripts/setup` fills.
pub fn kafka_home(configured: Option<&Path>) -> Result<PathBuf, StackError> {
    let home = match configured {
        Some(path) => path.to_path_buf(),
        None => match std::env::var_os("FAULTLINE_KAFKA_HOME") {
            Some(path) => PathBuf::from(path),
            None => default_cache_dir().join(format!("kafka-{KAFKA_VERSION}")),
        },
    };
    let has_jars = std::fs::read_dir(home.join("libs"))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-"))
        })
        .unwrap_or(false);
    if has_jars {
        Ok(home)
    } else {
        Err(StackError::KafkaMissing {
            version: KAFKA_VERSION.to_string(),
            path: home,
        })
    }
}

/// `$XDG_CACHE_HOME/faultline`, else `~/.cache/faultline`: where scripts/setup installs tools.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("faultline");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("faultline")
}

/// The `java` that runs Kafka: `$JAVA_HOME/bin/java`, else the one on the path.
pub fn java_program() -> Result<PathBuf, StackError> {
    if let Some(java_home) = std::env::var_os("JAVA_HOME") {
        let java = PathBuf::from(java_home).join("bin").join("java");
        if java.is_file() {
            return Ok(java);
        }
    }
    process::find_program("java", &[]).ok_or_else(|| StackError::ProgramMissing {
        program: "java".into(),
        hint: "Kafka needs Java 17 or newer; run `make setup` or set JAVA_HOME".into(),
    })
}

/// A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's `Uuid`).
/// Like Kafka's own generator, never one that starts with '-': the storage tool's argument
/// parser would take it for an option.
fn new_cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

struct BrokerPorts {
    client: u16,
    internal: u16,
    controller: u16,
}

async fn start_local(
    spec: &LocalKafka,
    data_root: &Path,
    timeout: Duration,
) -> Result<KafkaCluster, StackError> {
    let since = Instant::now();
    validate(spec)?;
    let home = kafka_home(spec.home.as_deref())?;
    let java = java_program()?;

    let mut all_ports = Vec::with_capacity(spec.brokers);
    for index in 0..spec.brokers {
        let name = format!("Kafka broker {}", index + 1);
        all_ports.push(BrokerPorts {
            client: ports::port_for(&name, spec.client_ports.get(index).copied())?,
            internal: ports::free_port(&name)?,
            controller: ports::free_port(&name)?,
        });
    }
    let voters = all_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.controller))
        .collect::<Vec<_>>()
        .join(",");
    let cluster_id = new_cluster_id();
    let principals = spec.secured.then(KafkaPrincipals::generate);
    let classpath = format!("{}/libs/*", home.display());

    let mut brokers = Vec::with_capacity(spec.brokers);
    let mut formatters = Vec::with_capacity(spec.brokers);
    for (index, ports) in all_ports.iter().enumerate() {
        let node_id = index as u32 + 1;
        let dir = data_root.join(format!("kafka-{node_id}"));
        std::fs::create_dir_all(&dir)
            .map_err(|source| StackError::io(format!("creating {}", dir.display()), source))?;
        let advertised = spec
            .advertised
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("127.0.0.1:{}", ports.client));
        let mut properties = server_properties(spec, node_id, ports, &advertised, &voters, &dir);
        if let Some(principals) = &principals {
            properties.push_str(&principals.server_properties());
        }
        kafka_auth::write_private(&dir.join("server.properties"), &properties)?;
        write_file(&dir.join("log4j2.properties"), LOG4J2_PROPERTIES)?;
        let log_path = dir.join("kafka.log");

        let format_args = storage_format_args(&dir, &classpath, &cluster_id, &principals);
        formatters.push((
            node_id,
            ports.client,
            dir.clone(),
            process::spawn(&ProcessSpec {
                name: format!("kafka-storage-format-{node_id}"),
                program: java.clone(),
                args: format_args,
                env: Vec::new(),
                cwd: Some(dir.clone()),
                log_path: dir.join("format.log"),
                run_as: None,
            })?,
        ));

        // Split on whitespace; after the defaults, so that a flag given here wins (e.g. a
        // heap, a GC, or `-XX:TieredStopAtLevel=1` for C1 only).
        let extra = std::env::var("FAULTLINE_KAFKA_JVM_OPTS").unwrap_or_default();
        let extra: Vec<&str> = extra.split_whitespace().collect();
        let mut server_args = jvm_args(spec.heap_mb, &dir, &classpath, &extra);
        server_args.extend([
            "kafka.Kafka".into(),
            dir.join("server.properties").display().to_string(),
        ]);
        brokers.push(KafkaBroker {
            node_id,
            client_port: ports.client,
            internal_port: ports.internal,
            controller_port: ports.controller,
            advertised,
            spec: ProcessSpec {
                name: format!("kafka-{node_id}"),
                program: java.clone(),
                args: server_args,
                env: Vec::new(),
                cwd: Some(dir.clone()),
                log_path,
                run_as: None,
            },
            dir,
            process: None,
        });
    }

    // The formatters run concurrently (a JVM start each); every one must succeed.
    await_formatters(formatters, timeout).await?;

    for broker in &mut brokers {
        broker.process = Some(process::spawn(&broker.spec)?);
    }
    let bootstrap = brokers
        .iter()
        .map(|b| b.advertised.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = KafkaCluster {
        bootstrap,
        brokers,
        principals,
    };
    let admin = cluster.admin_client();
    wait_for_cluster(&mut cluster.brokers, &admin, spec.brokers, since, timeout).await?;
    if cluster.principals.is_some() {
        let dir = data_root.join("kafka-acls");
        kafka_auth::grant_acls(&java, &classpath, &dir, &admin, timeout).await?;
    }
    Ok(cluster)
}

/// The storage tool's JVM and arguments for the broker in `dir`; a secured cluster's SCRAM
/// credentials are bootstrapped here, KRaft's only way before a controller runs.
fn storage_format_args(
    dir: &Path,
    classpath: &str,
    cluster_id: &str,
    principals: &Option<KafkaPrincipals>,
) -> Vec<String> {
    let mut args = jvm_args(256, dir, classpath, &[]);
    args.extend([
        "kafka.tools.StorageTool".into(),
        "format".into(),
        // One argument, so that no id can be mistaken for an option.
        format!("--cluster-id={cluster_id}"),
        "--config".into(),
        dir.join("server.properties").display().to_string(),
        "--ignore-formatted".into(),
    ]);
    args.extend(
        principals
            .iter()
            .flat_map(KafkaPrincipals::scram_format_args),
    );
    args
}

/// A broker's storage formatter: node id, client port and directory (for errors), process.
type Formatter = (u32, u16, PathBuf, ManagedProcess);

/// Waits until every formatter succeeded; the first that failed or hung is the error.
async fn await_formatters(formatters: Vec<Formatter>, timeout: Duration) -> Result<(), StackError> {
    for (node_id, port, dir, mut formatter) in formatters {
        let place = Where {
            component: &format!("Kafka broker {node_id} (storage format)"),
            port,
            data_dir: &dir,
        };
        match formatter.wait_exit(timeout).await {
            Some(status) if status.success() => {}
            Some(status) => {
                return Err(ready::failed(
                    &mut formatter,
                    &place,
                    format!("exited with {status}"),
                ))
            }
            None => {
                return Err(ready::failed(
                    &mut formatter,
                    &place,
                    format!("did not finish within {timeout:?}"),
                ))
            }
        }
    }
    Ok(())
}

/// The JVM's flags for a broker's tools and server, whose files are in `dir`, then
/// `extra` ones, then the classpath.
fn jvm_args(heap_mb: u32, dir: &Path, classpath: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("-Xms{}m", heap_mb / 2),
        format!("-Xmx{heap_mb}m"),
        "-XX:+UseG1GC".into(),
        "-XX:MaxGCPauseMillis=20".into(),
        "-XX:+ExitOnOutOfMemoryError".into(),
        "-Djava.awt.headless=true".into(),
        format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ),
    ];
    args.extend(extra.iter().map(|flag| flag.to_string()));
    args.extend(["-cp".into(), classpath.to_string()]);
    args
}

fn validate(spec: &LocalKafka) -> Result<(), StackError> {
    if spec.brokers == 0 {
        return Err(StackError::Invalid(
            "Kafka needs at least one broker".into(),
        ));
    }
    if spec.heap_mb == 0 || spec.heap_mb > MAX_HEAP_MB {
        return Err(StackError::Invalid(format!(
            "Kafka heap of {} MiB: use 1 to {MAX_HEAP_MB} MiB per broker",
            spec.heap_mb
        )));
    }
    for (what, given) in [
        ("client ports", spec.client_ports.len()),
        ("advertised addresses", spec.advertised.len()),
    ] {
        if given != 0 && given != spec.brokers {
            return Err(StackError::Invalid(format!(
                "{given} Kafka {what} for {} brokers: give one per broker or none",
                spec.brokers
            )));
        }
    }
    Ok(())
}

fn server_properties(
    spec: &LocalKafka,
    node_id: u32,
    ports: &BrokerPorts,
    advertised: &str,
    voters: &str,
    dir: &Path,
) -> String {
    // A secured cluster says how each listener authenticates (kafka_auth's part).
    let protocols = if spec.secured {
        String::new()
    } else {
        "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
            .into()
    };
    let replication = spec.brokers.min(3);
    let min_isr = spec.brokers.min(2);
    format!(
        "# Written by faultline for one run; see system/src/stack/kafka.rs.\n\
         process.roles=broker,controller\n\
         node.id={node_id}\n\
         controller.quorum.voters={voters}\n\
         listeners=CLIENT://127.0.0.1:{client},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller}\n\
         advertised.listeners=CLIENT://{advertised},INTERNAL://127.0.0.1:{internal}\n\
         {protocols}\
         controller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=INTERNAL\n\
         log.dirs={logs}\n\
         num.partitions={partitions}\n\
         default.replication.factor={replication}\n\
         offsets.topic.replication.factor={replication}\n\
         transaction.state.log.replication.factor={replication}\n\
         transaction.state.log.min.isr={min_isr}\n\
         share.coordinator.state.topic.replication.factor={replication}\n\
         share.coordinator.state.topic.min.isr={min_isr}\n\
         group.initial.rebalance.delay.ms=0\n\
         auto.create.topics.enable=true\n\
         num.network.threads=2\n\
         num.io.threads=4\n",
        client = ports.client,
        internal = ports.internal,
        controller = ports.controller,
        logs = dir.join("data").display(),
        partitions = spec.default_partitions,
    )
}

/// Kafka's log4j2 configuration: everything to stdout, which goes to the broker's log file.
const LOG4J2_PROPERTIES: &str = "\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
";

fn write_file(path: &Path, contents: &str) -> Result<(), StackError> {
    std::fs::write(path, contents)
        .map_err(|source| StackError::io(format!("writing {}", path.display()), source))
}

/// Waits until a metadata request lists `expected` brokers, while every broker process
/// stays alive.
/// `since` is when the cluster's start began (before formatting), for the logged time.
async fn wait_for_cluster(
    brokers: &mut [KafkaBroker],
    client: &KafkaClient,
    expected: usize,
    since: Instant,
    timeout: Duration,
) -> Result<(), StackError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last;
    loop {
        for broker in brokers.iter_mut() {
            let Some(process) = broker.process.as_mut() else {
                continue;
            };
            if let Some(status) = process.try_exit_status() {
                let place = Where {
                    component: &format!("Kafka broker {}", broker.node_id),
                    port: broker.client_port,
                    data_dir: &broker.dir,
                };
                return Err(ready::failed(
                    process,
                    &place,
                    format!("it exited with {status}"),
                ));
            }
        }
        match listed_brokers(client.clone()).await {
            Ok(count) if count >= expected => {
                tracing::info!(
                    component = "Kafka",
                    brokers = count,
                    bootstrap = client.bootstrap,
                    ready_after_ms = since.elapsed().as_millis() as u64,
                    "ready"
                );
                return Ok(());
            }
            Ok(count) => last = format!("metadata lists {count} of {expected} brokers"),
            Err(error) => last = error,
        }
        if Instant::now() >= deadline {
            // Name the first broker and quote its log; the others' logs sit beside it.
            let reason = format!("not ready after {timeout:?}; last check said: {last}");
            return Err(match brokers.first_mut() {
                Some(broker) => {
                    let log = broker.spec.log_path.clone();
                    if let Some(process) = broker.process.as_mut() {
                        process.kill_and_reap();
                    }
                    StackError::ComponentFailed {
                        component: format!("Kafka ({expected} broker(s))"),
                        port: broker.client_port,
                        data_dir: broker.dir.clone(),
                        reason,
                        log_tail: process::log_tail(&log, LOG_TAIL_LINES),
                        log,
                    }
                }
                None => StackError::Invalid(reason),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How many brokers a metadata request through `bootstrap` lists, asked anonymously.
pub async fn broker_count(bootstrap: String) -> Result<usize, String> {
    listed_brokers(KafkaClient::new(bootstrap, None)).await
}

/// How many brokers a metadata request by `client` lists.
pub async fn listed_brokers(client: KafkaClient) -> Result<usize, String> {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client
            .config()
            .set("socket.connection.setup.timeout.ms", "2000")
            .set("log_level", "0")
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        Ok(metadata.brokers().len())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Reachable, and the metadata lists at least one broker.
pub async fn any_broker(client: KafkaClient) -> Result<(), String> {
    match listed_brokers(client).await? {
        0 => Err("metadata lists no broker".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_version_matches_the_setup_pom() {
        let pom = include_str!("../../../scripts/kafka/pom.xml");
        let pinned = format!("<kafka.version>{KAFKA_VERSION}</kafka.version>");
        assert!(
            pom.contains(&pinned),
            "scripts/kafka/pom.xml must pin {pinned}"
        );
    }

    #[test]
    fn cluster_ids_are_22_url_safe_characters_never_starting_with_a_dash() {
        // 1 in 64 random ids would start with '-': 2000 tries make a regression show.
        for _ in 0..2000 {
            let id = new_cluster_id();
            assert_eq!(id.len(), 22);
            assert!(id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn a_missing_kafka_home_tells_to_run_setup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = kafka_home(Some(dir.path())).expect_err("no jars there");
        let message = error.to_string();
        assert!(message.contains("make setup"), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn only_a_broker_that_could_not_bind_starts_again() {
        let failed = |log_tail: &str| StackError::ComponentFailed {
            component: "Kafka broker 1".into(),
            port: 1,
            data_dir: PathBuf::from("/tmp"),
            reason: "it exited".into(),
            log: PathBuf::from("/tmp/kafka.log"),
            log_tail: log_tail.into(),
        };
        assert!(lost_a_port(&failed(
            "Caused by: java.net.BindException: Address already in use"
        )));
        assert!(!lost_a_port(&failed("java.lang.OutOfMemoryError")));
        assert!(!lost_a_port(&StackError::Invalid(
            "Address already in use".into()
        )));
    }

    #[test]
    fn mismatched_advertised_addresses_are_rejected() {
        let spec = LocalKafka {
            brokers: 3,
            advertised: vec!["127.0.0.1:1".into()],
            ..LocalKafka::default()
        };
        assert!(validate(&spec).is_err());
    }
}
