//! What a scenario's faults act on, by name, and how each name is bound.
//!
//! [`names`] lists every fault target a topology has: each service (`orders`, its first
//! replica) and replica (`orders-2`) for process faults; `kafka` (every broker at once),
//! `kafka-<n>` (one broker), `postgres` and `redis` for link faults through a fault
//! proxy. The same list serves the dry run in [`Scenario::check`](crate::Scenario::check)
//! ([`check_target`]) and the binding of the real run ([`bind`]), so the two cannot
//! disagree.

use std::{sync::Arc, time::Duration};

use faultline_chaos::{
    process::BoxFuture, Fault, FaultProxy, ProcessControl, ProcessError, Signal, Targets,
};
use faultline_system::{
    services::serve::ServiceKind,
    stack::{ports::free_port, KafkaSpec, PostgresSpec, RedisSpec},
    supervisor::{System, SystemSpec},
};

/// A part of the stack that faults reach through fault proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    Kafka,
    Postgres,
    Redis,
}

impl Proxied {
    pub const ALL: [Proxied; 3] = [Proxied::Kafka, Proxied::Postgres, Proxied::Redis];

    /// The fault target's name.
    pub fn name(self) -> &'static str {
        match self {
            Proxied::Kafka => "kafka",
            Proxied::Postgres => "postgres",
            Proxied::Redis => "redis",
        }
    }

    /// Whether the stack in `spec` runs this dependency locally, as a proxy needs.
    fn proxyable(self, spec: &SystemSpec) -> Result<(), String> {
        let local = match self {
            Proxied::Kafka => matches!(spec.stack.kafka, KafkaSpec::Local(_)),
            Proxied::Postgres => matches!(spec.stack.postgres, PostgresSpec::Local { .. }),
            Proxied::Redis => matches!(spec.stack.redis, RedisSpec::Local { .. }),
        };
        if local {
            Ok(())
        } else {
            Err(format!(
                "faults on {} need the local one that faultline starts",
                self.name()
            ))
        }
    }
}

/// What one fault target name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// A replica of a service (1-based), for kill, terminate, pause and restart.
    Process(ServiceKind, usize),
    /// Fault proxies in front of a dependency: all of them, or one Kafka broker's
    /// (1-based), for partition, reset, latency, bandwidth, slicer and timeout.
    Proxy(Proxied, Option<usize>),
}

/// Brokers of the local Kafka cluster in `spec` (0 for an external one).
pub fn kafka_brokers(spec: &SystemSpec) -> usize {
    match &spec.stack.kafka {
        KafkaSpec::Local(local) => local.brokers,
        KafkaSpec::External { .. } => 0,
    }
}

/// Every fault target the topology in `spec` has, with what it stands for.
pub fn names(spec: &SystemSpec) -> Vec<(String, Named)> {
    let mut names = Vec::new();
    for kind in ServiceKind::ALL {
        let replicas = spec.replicas.get(&kind).copied().unwrap_or(1);
        names.push((kind.name().to_string(), Named::Process(kind, 1)));
        for replica in 1..=replicas {
            names.push((
                format!("{}-{replica}", kind.name()),
                Named::Process(kind, replica),
            ));
        }
    }
    for dependency in Proxied::ALL {
        names.push((
            dependency.name().to_string(),
            Named::Proxy(dependency, None),
        ));
    }
    for broker in 1..=kafka_brokers(spec) {
        names.push((
            format!("kafka-{broker}"),
            Named::Proxy(Proxied::Kafka, Some(broker)),
        ));
    }
    names
}

/// What `name` stands for in the topology of `spec`.
fn lookup(spec: &SystemSpec, name: &str) -> Option<Named> {
    names(spec)
        .into_iter()
        .find_map(|(known, named)| (known == name).then_some(named))
}

/// Checks that `fault`'s target exists in the topology, takes the fault's kind, and (for
/// a dependency) is local, so a proxy can be put in front of it.
pub fn check_target(spec: &SystemSpec, fault: &Fault) -> Result<(), String> {
    let kind = fault.kind();
    let wrong_kind = || {
        format!(
            "fault #{} ({}) on {:?}: kill, terminate, pause and restart act on services; partition, reset, latency, bandwidth, slicer and timeout on {} or a broker such as kafka-1",
            fault.number,
            kind.name(),
            fault.target,
            Proxied::ALL.map(Proxied::name).join(", ")
        )
    };
    match lookup(spec, &fault.target) {
        None => Err(format!(
            "fault #{} targets {:?}, which this topology does not have: name a service ({}), a replica such as orders-1, one of {}, or a broker such as kafka-1",
            fault.number,
            fault.target,
            ServiceKind::ALL.map(|k| k.name()).join(", "),
            Proxied::ALL.map(Proxied::name).join(", "),
        )),
        Some(Named::Process(..)) if !kind.is_process() => Err(wrong_kind()),
        Some(Named::Proxy(..)) if kind.is_process() => Err(wrong_kind()),
        Some(Named::Proxy(dependency, _)) => dependency.proxyable(spec).map_err(|why| {
            format!(
                "fault #{} ({}) on {:?}: {why}",
                fault.number,
                kind.name(),
                fault.target
            )
        }),
        Some(Named::Process(..)) => Ok(()),
    }
}

/// The dependencies the faults act on (checked with [`check_target`]), each to get
/// fault proxies.
pub fn proxied(spec: &SystemSpec, faults: &[Fault]) -> Vec<Proxied> {
    let mut proxied = Vec::new();
    for fault in faults {
        if let Some(Named::Proxy(dependency, _)) = lookup(spec, &fault.target) {
            if !proxied.contains(&dependency) {
                proxied.push(dependency);
            }
        }
    }
    proxied
}

/// The fault proxies of one dependency (one per Kafka broker, in broker order).
pub struct Proxies {
    pub dependency: Proxied,
    pub proxies: Vec<FaultProxy>,
}

/// Starts fault proxies in front of each dependency in `proxied` and points `spec` at
/// them: the dependency gets fixed ports (the proxies' upstreams), and the services the
/// proxies' addresses.
pub async fn start_proxies(
    spec: &mut SystemSpec,
    proxied: &[Proxied],
) -> Result<Vec<Proxies>, ProxyStartError> {
    let mut all = Vec::new();
    for &dependency in proxied {
        let mut proxies = Vec::new();
        match dependency {
            Proxied::Kafka => {
                let brokers = kafka_brokers(spec);
                let mut client_ports = Vec::with_capacity(brokers);
                let mut advertised = Vec::with_capacity(brokers);
                for broker in 1..=brokers {
                    let name = format!("kafka-{broker}");
                    let port =
                        free_port(&name).map_err(|e| ProxyStartError::Port(name.clone(), e))?;
                    let proxy = proxy_to(&name, port).await?;
                    client_ports.push(port);
                    advertised.push(proxy.local_addr().to_string());
                    proxies.push(proxy);
                }
                if let KafkaSpec::Local(local) = &mut spec.stack.kafka {
                    local.client_ports = client_ports;
                    local.advertised = advertised;
                }
            }
            Proxied::Postgres => {
                let upstream_port = free_port("postgres")
                    .map_err(|e| ProxyStartError::Port("postgres".into(), e))?;
                let proxy = proxy_to("postgres", upstream_port).await?;
                if let PostgresSpec::Local { port, .. } = &mut spec.stack.postgres {
                    *port = Some(upstream_port);
                    spec.postgres_via = Some(proxy.local_addr().to_string());
                }
                proxies.push(proxy);
            }
            Proxied::Redis => {
                let upstream_port =
                    free_port("redis").map_err(|e| ProxyStartError::Port("redis".into(), e))?;
                let proxy = proxy_to("redis", upstream_port).await?;
                if let RedisSpec::Local { port, .. } = &mut spec.stack.redis {
                    *port = Some(upstream_port);
                    spec.redis_via = Some(proxy.local_addr().to_string());
                }
                proxies.push(proxy);
            }
        }
        all.push(Proxies {
            dependency,
            proxies,
        });
    }
    Ok(all)
}

/// Starts a fault proxy on 127.0.0.1 in front of `upstream_port`.
async fn proxy_to(name: &str, upstream_port: u16) -> Result<FaultProxy, ProxyStartError> {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], upstream_port));
    FaultProxy::start(listen, upstream)
        .await
        .map_err(|e| ProxyStartError::Proxy(name.to_string(), e))
}

/// A fault proxy that could not be put in front of its dependency.
#[derive(Debug, thiserror::Error)]
pub enum ProxyStartError {
    #[error("choosing a port for {0}: {1}")]
    Port(String, faultline_system::stack::StackError),
    #[error("starting the fault proxy for {0}: {1}")]
    Proxy(String, faultline_chaos::proxy::ProxyError),
}

/// Binds every name of the topology to the running system's processes and proxies.
pub fn bind(system: &Arc<System>, spec: &SystemSpec, proxies: &[Proxies]) -> Targets {
    let mut targets = Targets::new();
    for (name, named) in names(spec) {
        match named {
            Named::Process(kind, replica) => {
                let control: Arc<dyn ProcessControl> = Arc::new(ServiceFaults {
                    system: system.clone(),
                    kind,
                    replica,
                });
                targets.add_process(name, control);
            }
            Named::Proxy(dependency, broker) => {
                let Some(group) = proxies.iter().find(|p| p.dependency == dependency) else {
                    continue;
                };
                let handles = group.proxies.iter().map(FaultProxy::handle);
                let handles = match broker {
                    Some(broker) => handles.skip(broker - 1).take(1).collect(),
                    None => handles.collect(),
                };
                targets.add_proxies(name, handles);
            }
        }
    }
    targets
}

/// How long a restarted service may take to be ready again.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);

/// One replica of a service, as a target of process faults.
struct ServiceFaults {
    system: Arc<System>,
    kind: ServiceKind,
    replica: usize,
}

impl ServiceFaults {
    fn name(&self) -> String {
        format!("{}-{}", self.kind.name(), self.replica)
    }
}

impl ProcessControl for ServiceFaults {
    fn signal(&self, signal: Signal) -> Result<u32, ProcessError> {
        self.system
            .signal(self.kind, self.replica, signal)
            .map_err(|e| ProcessError::NotRunning(format!("{}: {e}", self.name())))
    }

    fn can_restart(&self) -> bool {
        true
    }

    /// SIGTERM, then wait until the supervisor has started it again and it is ready.
    fn restart(&self) -> BoxFuture<'_, Result<(), ProcessError>> {
        Box::pin(async move {
            let failed = |reason: String| ProcessError::Restart {
                target: self.name(),
                reason,
            };
            let before = self.system.restarts(self.kind, self.replica);
            self.signal(Signal::SIGTERM)?;
            let deadline = tokio::time::Instant::now() + RESTART_DEADLINE;
            while self.system.restarts(self.kind, self.replica) <= before {
                if tokio::time::Instant::now() > deadline {
                    return Err(failed("not restarted within 60 s".into()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.system
                .wait_all_ready(left)
                .await
                .map_err(|e| failed(e.to_string()))
        })
    }
}
