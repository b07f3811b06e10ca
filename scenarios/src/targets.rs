//! What a scenario's faults act on, by name, and how each name is bound.
//!
//! [`names`] lists every fault target a topology has: each service (`orders`, its first
//! replica) and replica (`orders-2`) for process faults; `kafka` (every broker at once),
//! `kafka-<n>` (one broker), `postgres` and `redis` for link faults through a fault
//! proxy. Rollout and blue-green faults name a service (`orders`: every replica of it),
//! any but the gateway. The same list serves the dry run in [`Scenario::check`](crate::Scenario::check)
//! ([`check_target`]) and the binding of the real run ([`bind`]), so the two cannot
//! disagree.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use faultline_chaos::{
    process::BoxFuture, Deployable, Deployment, Fault, FaultProxy, ProcessControl, ProcessError,
    ReplicaStep, Signal, Targets,
};
use faultline_system::{
    services::ServiceKind,
    supervisor::{System, SystemSpec},
    Dependency, SpecError,
};

/// What one fault target name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// A replica of a service (1-based), for kill, terminate, pause and restart.
    Process(ServiceKind, usize),
    /// Fault proxies in front of a dependency: all of them, or one Kafka broker's
    /// (1-based), for partition, reset, latency, bandwidth, slicer and timeout.
    Proxy(Dependency, Option<usize>),
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
    for dependency in Dependency::ALL {
        names.push((
            dependency.name().to_string(),
            Named::Proxy(dependency, None),
        ));
    }
    for broker in 1..=spec.kafka_brokers() {
        names.push((
            format!("kafka-{broker}"),
            Named::Proxy(Dependency::Kafka, Some(broker)),
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
    if kind.is_deployment() {
        return deployable(&fault.target).map(|_| ()).ok_or_else(|| {
            format!(
                "fault #{} ({}) targets {:?}, which is not a service a deployment can replace: name one of {}",
                fault.number,
                kind.name(),
                fault.target,
                deployable_services().map(|k| k.name()).collect::<Vec<_>>().join(", "),
            )
        });
    }
    let wrong_kind = || {
        format!(
            "fault #{} ({}) on {:?}: kill, terminate, pause and restart act on services; partition, reset, latency, bandwidth, slicer and timeout on {} or a broker such as kafka-1",
            fault.number,
            kind.name(),
            fault.target,
            Dependency::ALL.map(Dependency::name).join(", ")
        )
    };
    match lookup(spec, &fault.target) {
        None => Err(format!(
            "fault #{} targets {:?}, which this topology does not have: name a service ({}), a replica such as orders-1, one of {}, or a broker such as kafka-1",
            fault.number,
            fault.target,
            ServiceKind::ALL.map(|k| k.name()).join(", "),
            Dependency::ALL.map(Dependency::name).join(", "),
        )),
        Some(Named::Process(..)) if !kind.is_process() => Err(wrong_kind()),
        Some(Named::Proxy(..)) if kind.is_process() => Err(wrong_kind()),
        Some(Named::Proxy(dependency, _)) => spec.check_local(dependency).map_err(|why| {
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

/// Every service but the gateway: nothing in front of it could switch its traffic.
fn deployable_services() -> impl Iterator<Item = ServiceKind> {
    ServiceKind::ALL
        .into_iter()
        .filter(|k| *k != ServiceKind::Gateway)
}

/// The service a rollout or blue-green fault on `name` replaces.
fn deployable(name: &str) -> Option<ServiceKind> {
    deployable_services().find(|k| k.name() == name)
}

/// The dependencies the faults act on (checked with [`check_target`]), each to get
/// fault proxies.
pub fn proxied(spec: &SystemSpec, faults: &[Fault]) -> Vec<Dependency> {
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
    pub dependency: Dependency,
    pub proxies: Vec<FaultProxy>,
}

/// Starts fault proxies in front of each dependency in `proxied` (one per Kafka broker)
/// and routes the services in `spec` through them: the dependency gets fixed ports, the
/// proxies' upstreams.
pub async fn start_proxies(
    spec: &mut SystemSpec,
    proxied: &[Dependency],
) -> Result<Vec<Proxies>, ProxyStartError> {
    let mut all = Vec::new();
    for &dependency in proxied {
        let mut proxies = Vec::new();
        for port in spec.fix_ports(dependency)? {
            let listen = SocketAddr::from(([127, 0, 0, 1], 0));
            let upstream = SocketAddr::from(([127, 0, 0, 1], port));
            let proxy = FaultProxy::start(listen, upstream)
                .await
                .map_err(|e| ProxyStartError::Proxy(dependency.name(), e))?;
            proxies.push(proxy);
        }
        let addresses: Vec<SocketAddr> = proxies.iter().map(FaultProxy::local_addr).collect();
        spec.route_through(dependency, &addresses)?;
        all.push(Proxies {
            dependency,
            proxies,
        });
    }
    Ok(all)
}

/// A fault proxy that could not be put in front of its dependency.
#[derive(Debug, thiserror::Error)]
pub enum ProxyStartError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("starting the fault proxy for {0}: {1}")]
    Proxy(&'static str, faultline_chaos::proxy::ProxyError),
}

/// Binds every name of the topology to the running system's processes and proxies.
pub fn bind(system: &Arc<System>, spec: &SystemSpec, proxies: &[Proxies]) -> Targets {
    let mut targets = Targets::new();
    for kind in deployable_services() {
        let service: Arc<dyn Deployable> = Arc::new(ServiceDeployment {
            system: system.clone(),
            kind,
        });
        targets.add_deployable(kind.name(), service);
    }
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
            self.system
                .restart_and_wait(self.kind, self.replica, RESTART_DEADLINE)
                .await
                .map_err(|e| ProcessError::Restart {
                    target: self.name(),
                    reason: e.to_string(),
                })
        })
    }
}

/// Every replica of a service, as the target of rollout and blue-green faults.
struct ServiceDeployment {
    system: Arc<System>,
    kind: ServiceKind,
}

impl Deployable for ServiceDeployment {
    fn deploy(
        &self,
        deployment: Deployment,
    ) -> BoxFuture<'_, Result<Vec<ReplicaStep>, ProcessError>> {
        Box::pin(async move {
            let replaced = match deployment {
                Deployment::Rollout { pause, drain } => {
                    self.system.rollout(self.kind, pause, drain).await
                }
                Deployment::BlueGreen { drain } => self
                    .system
                    .blue_green(self.kind, drain)
                    .await
                    .map(|step| vec![step]),
            };
            // The supervisor's replacements are the timeline's steps: one type.
            replaced.map_err(|e| ProcessError::Deploy {
                target: self.kind.name().to_string(),
                reason: e.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use faultline_system::stack::KafkaSpec;

    use super::*;

    #[test]
    fn names_follow_the_topology_brokers_and_replicas() {
        let mut spec = SystemSpec::new(PathBuf::new());
        spec.replicas.insert(ServiceKind::Orders, 2);
        if let KafkaSpec::Local(local) = &mut spec.stack.kafka {
            local.brokers = 2;
        }
        let named = |name: &str| lookup(&spec, name);
        assert_eq!(
            named("orders"),
            Some(Named::Process(ServiceKind::Orders, 1))
        );
        assert_eq!(
            named("orders-2"),
            Some(Named::Process(ServiceKind::Orders, 2))
        );
        assert_eq!(named("orders-3"), None);
        assert_eq!(named("inventory-2"), None);
        assert_eq!(
            named("postgres"),
            Some(Named::Proxy(Dependency::Postgres, None))
        );
        assert_eq!(named("kafka"), Some(Named::Proxy(Dependency::Kafka, None)));
        assert_eq!(
            named("kafka-2"),
            Some(Named::Proxy(Dependency::Kafka, Some(2)))
        );
        assert_eq!(named("kafka-3"), None);
        assert_eq!(named("kafka-0"), None);
    }

    #[test]
    fn a_deployment_names_a_service_and_not_the_gateway_a_replica_or_a_proxy() {
        let spec = SystemSpec::new(PathBuf::new());
        let faults = |target: &str| {
            faultline_chaos::spec::parse_faults(&format!(
                "[[faults]]\nat = \"1s\"\nkind = \"rollout\"\ntarget = \"{target}\"\n"
            ))
            .map(|mut faults| faults.remove(0))
        };
        let check = |target: &str| check_target(&spec, &faults(target).expect("a rollout"));
        assert_eq!(check("orders"), Ok(()));
        for wrong in ["ordres", "orders-1", "gateway", "kafka"] {
            let error = check(wrong).expect_err(wrong);
            assert!(error.contains(&format!("{wrong:?}")), "{error}");
            assert!(error.contains("orders"), "the services are listed: {error}");
        }
    }
}
