//! The stack's dependencies as fault targets, and how a [`SystemSpec`] routes the services to
//! one of them through fault proxies.
//!
//! A proxy needs two things from the spec before the system starts: the dependency's own
//! listening ports, fixed so that the proxies can forward to them
//! ([`SystemSpec::fix_ports`]), and the services pointed at the proxies instead
//! ([`SystemSpec::route_through`]). Kafka is routed by making each broker advertise its
//! proxy's address, since clients reconnect to whatever the metadata names; PostgreSQL and
//! Redis by giving the services URLs with the proxy's host and port. Seeding,
//! [`crate::supervisor::System::database_urls`] and the checker still connect directly, so
//! a fault on the services' path does not blind the run's own bookkeeping.

use std::net::SocketAddr;

use crate::stack::{ports, KafkaSpec, PostgresSpec, RedisSpec, StackError};
use crate::supervisor::SystemSpec;

/// A part of the stack that faults reach through a fault proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    Kafka,
    Postgres,
    Redis,
}

impl Dependency {
    pub const ALL: [Dependency; 3] = [Dependency::Kafka, Dependency::Postgres, Dependency::Redis];

    /// The fault target's name.
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Kafka => "kafka",
            Dependency::Postgres => "postgres",
            Dependency::Redis => "redis",
        }
    }

    /// What a proxy needs the stack to run, for error messages.
    fn local_component(self) -> &'static str {
        match self {
            Dependency::Kafka => "Kafka cluster",
            Dependency::Postgres => "PostgreSQL",
            Dependency::Redis => "Redis",
        }
    }
}

/// Why a dependency cannot be routed through fault proxies.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Only a dependency the stack runs itself has ports faultline chooses.
    #[error("faults on {} need the local {}", .0.name(), .0.local_component())]
    External(Dependency),
    #[error("{dependency} listens on {expected} port(s), but {given} proxy address(es) were given", dependency = .dependency.name())]
    ProxyCount {
        dependency: Dependency,
        expected: usize,
        given: usize,
    },
    #[error("fixing the ports of {}: {source}", .dependency.name())]
    Port {
        dependency: Dependency,
        #[source]
        source: Box<StackError>,
    },
}

impl SystemSpec {
    /// Brokers of the local Kafka cluster (0 for an external one).
    pub fn kafka_brokers(&self) -> usize {
        match &self.stack.kafka {
            KafkaSpec::Local(local) => local.brokers,
            KafkaSpec::External { .. } => 0,
        }
    }

    /// Whether the stack runs `dependency` itself, as fault proxies need.
    pub fn check_local(&self, dependency: Dependency) -> Result<(), SpecError> {
        let local = match dependency {
            Dependency::Kafka => matches!(self.stack.kafka, KafkaSpec::Local(_)),
            Dependency::Postgres => matches!(self.stack.postgres, PostgresSpec::Local { .. }),
            Dependency::Redis => matches!(self.stack.redis, RedisSpec::Local { .. }),
        };
        local.then_some(()).ok_or(SpecError::External(dependency))
    }

    /// Chooses free ports for `dependency` to listen on (one per Kafka broker), so that
    /// proxies can be started in front of them before the stack is; returns them in broker
    /// order.
    pub fn fix_ports(&mut self, dependency: Dependency) -> Result<Vec<u16>, SpecError> {
        let free = |component: &str| {
            ports::free_port(component).map_err(|source| SpecError::Port {
                dependency,
                source: Box::new(source),
            })
        };
        let external = SpecError::External(dependency);
        match dependency {
            Dependency::Kafka => {
                let KafkaSpec::Local(local) = &mut self.stack.kafka else {
                    return Err(external);
                };
                local.client_ports = (1..=local.brokers)
                    .map(|broker| free(&format!("kafka-{broker}")))
                    .collect::<Result<_, _>>()?;
                Ok(local.client_ports.clone())
            }
            Dependency::Postgres => {
                let PostgresSpec::Local { port, .. } = &mut self.stack.postgres else {
                    return Err(external);
                };
                let fixed = free("postgres")?;
                *port = Some(fixed);
                Ok(vec![fixed])
            }
            Dependency::Redis => {
                let RedisSpec::Local { port, .. } = &mut self.stack.redis else {
                    return Err(external);
                };
                let fixed = free("redis")?;
                *port = Some(fixed);
                Ok(vec![fixed])
            }
        }
    }

    /// Makes the services reach `dependency` through `proxies`: one address per Kafka
    /// broker (each broker advertises its own proxy), one for PostgreSQL or Redis.
    pub fn route_through(
        &mut self,
        dependency: Dependency,
        proxies: &[SocketAddr],
    ) -> Result<(), SpecError> {
        self.check_local(dependency)?;
        let expected = match dependency {
            Dependency::Kafka => self.kafka_brokers(),
            Dependency::Postgres | Dependency::Redis => 1,
        };
        if proxies.len() != expected {
            return Err(SpecError::ProxyCount {
                dependency,
                expected,
                given: proxies.len(),
            });
        }
        let mut addresses = proxies.iter().map(SocketAddr::to_string);
        match dependency {
            Dependency::Kafka => {
                if let KafkaSpec::Local(local) = &mut self.stack.kafka {
                    local.advertised = addresses.collect();
                }
            }
            Dependency::Postgres => self.postgres_route = addresses.next(),
            Dependency::Redis => self.redis_route = addresses.next(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stack::kafka::LocalKafka;

    fn spec_with_brokers(brokers: usize) -> SystemSpec {
        let mut spec = SystemSpec::new("faultline".into());
        spec.stack.kafka = KafkaSpec::Local(LocalKafka {
            brokers,
            ..LocalKafka::default()
        });
        spec
    }

    fn proxies(count: u16) -> Vec<SocketAddr> {
        (0..count)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect()
    }

    #[test]
    fn dependencies_are_named_as_fault_targets() {
        let names: Vec<&str> = Dependency::ALL.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["kafka", "postgres", "redis"]);
    }

    #[test]
    fn an_external_kafka_has_no_brokers_to_fault() {
        let mut spec = spec_with_brokers(3);
        assert_eq!(spec.kafka_brokers(), 3);
        spec.stack.kafka = KafkaSpec::External {
            bootstrap: "kafka.example:9092".into(),
        };
        assert_eq!(spec.kafka_brokers(), 0);
        let error = spec.fix_ports(Dependency::Kafka).unwrap_err();
        assert_eq!(
            error.to_string(),
            "faults on kafka need the local Kafka cluster"
        );
    }

    #[test]
    fn each_kafka_broker_gets_a_fixed_port_and_advertises_its_proxy() {
        let mut spec = spec_with_brokers(3);
        let ports = spec.fix_ports(Dependency::Kafka).unwrap();
        assert_eq!(ports.len(), 3);
        let KafkaSpec::Local(local) = &spec.stack.kafka else {
            panic!("the spec's Kafka is local");
        };
        assert_eq!(local.client_ports, ports);

        spec.route_through(Dependency::Kafka, &proxies(3)).unwrap();
        let KafkaSpec::Local(local) = &spec.stack.kafka else {
            panic!("the spec's Kafka is local");
        };
        assert_eq!(
            local.advertised,
            ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
        );
    }

    #[test]
    fn kafka_needs_one_proxy_per_broker() {
        let mut spec = spec_with_brokers(3);
        let error = spec
            .route_through(Dependency::Kafka, &proxies(2))
            .unwrap_err();
        assert!(
            matches!(
                error,
                SpecError::ProxyCount {
                    expected: 3,
                    given: 2,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn postgres_gets_a_fixed_port_and_the_services_its_proxy() {
        let mut spec = spec_with_brokers(1);
        let ports = spec.fix_ports(Dependency::Postgres).unwrap();
        assert_eq!(ports.len(), 1);
        assert!(
            matches!(spec.stack.postgres, PostgresSpec::Local { port: Some(p), .. } if p == ports[0])
        );
        spec.route_through(Dependency::Postgres, &proxies(1))
            .unwrap();
        assert_eq!(spec.postgres_route.as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(spec.redis_route, None);
    }

    #[test]
    fn an_external_redis_or_postgres_cannot_be_routed() {
        let mut spec = spec_with_brokers(1);
        spec.stack.redis = RedisSpec::External {
            url: "redis://cache.example:6379".into(),
        };
        spec.stack.postgres = PostgresSpec::External {
            url: "postgres://db.example/faultline".into(),
        };
        let error = spec
            .route_through(Dependency::Redis, &proxies(1))
            .unwrap_err();
        assert_eq!(error.to_string(), "faults on redis need the local Redis");
        let error = spec.fix_ports(Dependency::Postgres).unwrap_err();
        assert_eq!(
            error.to_string(),
            "faults on postgres need the local PostgreSQL"
        );
        assert_eq!(spec.redis_route, None);
    }
}
