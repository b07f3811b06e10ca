//! The `[system]` table of a scenario file: how the reference system is laid out for a
//! run (replicas, the payments and shipping behaviour, the catalogue, Kafka brokers),
//! applied onto a [`SystemSpec`]. `faultline system up` takes the same settings as flags.
//!
//! It also holds [`KAFKA_ACCESS`]: which topics each service writes and reads, the one
//! table the local stack's Kafka principals and ACLs are made from.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::platform::consumer::DEAD_LETTER_TOPIC;
use crate::services::messages::{
    INGEST_TELEMETRY, INVENTORY_COMMANDS, INVENTORY_REPLIES, ORDERS_EVENTS, PAYMENTS_COMMANDS,
    PAYMENTS_REPLIES, SHIPPING_COMMANDS, SHIPPING_REPLIES, USERS_EVENTS,
};
use crate::{services::ServiceKind, stack::KafkaSpec, supervisor::SystemSpec};

/// What one service may do on Kafka, as its own principal (`User:<service>`).
///
/// A service that reads also writes the dead-letter topic (its consumer's poison path) and
/// joins consumer groups whose id starts with its name; every service may create the topics
/// it names here and the dead-letter topic, since each makes sure they exist when it starts.
#[derive(Debug, Clone, Copy)]
pub struct KafkaAccess {
    pub service: ServiceKind,
    /// Topics it produces to (its outbox relay or its producer).
    pub writes: &'static [&'static str],
    /// Topics it consumes.
    pub reads: &'static [&'static str],
}

impl KafkaAccess {
    /// The prefix of the consumer groups it may join: its name (`orders-saga`, ...).
    pub fn group_prefix(&self) -> &'static str {
        self.service.name()
    }

    /// Every topic it writes, the dead-letter topic included when it consumes.
    pub fn all_writes(&self) -> Vec<&'static str> {
        let mut topics = self.writes.to_vec();
        if !self.reads.is_empty() {
            topics.push(DEAD_LETTER_TOPIC);
        }
        topics
    }

    /// Every topic it may create: those it writes or reads, and the dead-letter topic,
    /// which every service makes sure of ([`crate::services::runtime::ensure_topics`]).
    pub fn creates(&self) -> Vec<&'static str> {
        let mut topics = self.writes.to_vec();
        topics.extend(self.reads);
        topics.push(DEAD_LETTER_TOPIC);
        topics
    }
}

/// Who produces and consumes each topic (the gateway uses no Kafka).
pub const KAFKA_ACCESS: &[KafkaAccess] = &[
    KafkaAccess {
        service: ServiceKind::Users,
        writes: &[USERS_EVENTS],
        reads: &[],
    },
    KafkaAccess {
        service: ServiceKind::Orders,
        writes: &[
            ORDERS_EVENTS,
            INVENTORY_COMMANDS,
            PAYMENTS_COMMANDS,
            SHIPPING_COMMANDS,
        ],
        reads: &[INVENTORY_REPLIES, PAYMENTS_REPLIES, SHIPPING_REPLIES],
    },
    KafkaAccess {
        service: ServiceKind::Inventory,
        writes: &[INVENTORY_REPLIES],
        reads: &[INVENTORY_COMMANDS],
    },
    KafkaAccess {
        service: ServiceKind::Payments,
        writes: &[PAYMENTS_REPLIES],
        reads: &[PAYMENTS_COMMANDS],
    },
    KafkaAccess {
        service: ServiceKind::Shipping,
        writes: &[SHIPPING_REPLIES],
        reads: &[SHIPPING_COMMANDS],
    },
    KafkaAccess {
        service: ServiceKind::Notifications,
        writes: &[],
        reads: &[ORDERS_EVENTS, USERS_EVENTS],
    },
    KafkaAccess {
        service: ServiceKind::Analytics,
        writes: &[],
        reads: &[ORDERS_EVENTS],
    },
    KafkaAccess {
        service: ServiceKind::Ingest,
        writes: &[INGEST_TELEMETRY],
        reads: &[],
    },
];

/// The Kafka access of `service`, `None` for one that uses no Kafka.
pub fn kafka_access(service: ServiceKind) -> Option<&'static KafkaAccess> {
    KAFKA_ACCESS.iter().find(|a| a.service == service)
}

/// The system's topology, as a scenario writes it. Every field is optional; the
/// defaults are `faultline system up`'s.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Replicas per service, e.g. `{ orders = 2, inventory = 2 }` (1 to 8; the gateway runs one).
    #[serde(default)]
    pub replicas: BTreeMap<String, usize>,
    pub payments_fail_rate: Option<f64>,
    pub payments_latency_ms: Option<u64>,
    pub shipping_fail_rate: Option<f64>,
    /// Products seeded into the catalogue, and stock of each.
    pub products: Option<i64>,
    pub stock: Option<i32>,
    /// Gateway: requests per second per user (0: no limit).
    pub rate_limit: Option<f64>,
    /// Kafka brokers (each also a KRaft controller voter).
    pub kafka_brokers: Option<usize>,
    /// Start Jaeger with the stack; the services export their spans to it.
    pub tracing: Option<bool>,
    /// Mutual TLS between the services (`system up --mtls`).
    pub mtls: Option<bool>,
    /// Share of requests traced, 0 to 1 (1 when absent): the load generator's sampled
    /// `traceparent`, which the services follow, and the services' own ratio.
    pub trace_sample_ratio: Option<f64>,
    /// Start Prometheus with the stack, scraping every replica; a run keeps its series.
    pub prometheus: Option<bool>,
}

impl Topology {
    /// Checks the topology and writes it into `spec`; the error names the field.
    pub fn apply(&self, spec: &mut SystemSpec) -> Result<(), String> {
        for (name, count) in &self.replicas {
            let kind = ServiceKind::ALL
                .into_iter()
                .find(|k| k.name() == name.as_str())
                .ok_or_else(|| format!("system.replicas: unknown service {name:?}"))?;
            if kind == ServiceKind::Gateway {
                return Err("system.replicas: the gateway runs one replica".into());
            }
            if !(1..=8).contains(count) {
                return Err(format!(
                    "system.replicas.{name}: give 1 to 8 replicas, not {count}"
                ));
            }
            spec.replicas.insert(kind, *count);
        }
        for (field, rate) in [
            ("payments_fail_rate", self.payments_fail_rate),
            ("shipping_fail_rate", self.shipping_fail_rate),
        ] {
            if let Some(rate) = rate {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("system.{field}: {rate} is not between 0 and 1"));
                }
            }
        }
        if let Some(rate) = self.payments_fail_rate {
            spec.payments_fail_rate = rate;
        }
        if let Some(rate) = self.shipping_fail_rate {
            spec.shipping_fail_rate = rate;
        }
        if let Some(latency) = self.payments_latency_ms {
            spec.payments_latency_ms = latency;
        }
        if let Some(products) = self.products {
            if products < 1 {
                return Err("system.products: at least 1".into());
            }
            spec.products = products;
        }
        if let Some(stock) = self.stock {
            if stock < 0 {
                return Err("system.stock: at least 0".into());
            }
            spec.stock = stock;
        }
        if let Some(rate) = self.rate_limit {
            if rate < 0.0 || !rate.is_finite() {
                return Err(format!(
                    "system.rate_limit: {rate} is not a rate (0 turns the limit off)"
                ));
            }
            spec.rate_limit = rate;
        }
        if let Some(mtls) = self.mtls {
            spec.mtls = mtls;
        }
        if let Some(tracing) = self.tracing {
            spec.stack.tracing = tracing;
        }
        if let Some(ratio) = self.trace_sample_ratio {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!(
                    "system.trace_sample_ratio: {ratio} is not between 0 and 1"
                ));
            }
            spec.trace_sample_ratio = Some(ratio);
        }
        match self.prometheus {
            Some(true) => {
                (spec.stack.prometheus).get_or_insert_with(Default::default);
            }
            Some(false) => spec.stack.prometheus = None,
            None => {}
        }
        if let Some(brokers) = self.kafka_brokers {
            if !(1..=5).contains(&brokers) {
                return Err(format!("system.kafka_brokers: give 1 to 5, not {brokers}"));
            }
            match &mut spec.stack.kafka {
                KafkaSpec::Local(local) => local.brokers = brokers,
                _ => return Err("system.kafka_brokers: Kafka is external here".into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Each service makes sure the topics its module lists exist (and the dead-letter
    /// topic); with ACLs on it may create exactly those, or it would not start.
    #[test]
    fn every_service_may_create_the_topics_it_makes_sure_of() {
        use crate::services::{
            analytics, ingest, inventory, notifications, orders, payments, shipping, users,
        };
        use std::collections::BTreeSet;
        for (kind, topics) in [
            (ServiceKind::Users, users::TOPICS),
            (ServiceKind::Orders, orders::TOPICS),
            (ServiceKind::Inventory, inventory::TOPICS),
            (ServiceKind::Payments, payments::TOPICS),
            (ServiceKind::Shipping, shipping::TOPICS),
            (ServiceKind::Notifications, notifications::TOPICS),
            (ServiceKind::Analytics, analytics::TOPICS),
            (ServiceKind::Ingest, ingest::TOPICS),
        ] {
            let access = kafka_access(kind).unwrap();
            let granted: BTreeSet<&str> = access.creates().into_iter().collect();
            let mut made: BTreeSet<&str> = topics.iter().copied().collect();
            made.insert(DEAD_LETTER_TOPIC);
            let unmade: Vec<&&str> = granted.difference(&made).collect();
            let ungranted: Vec<&&str> = made.difference(&granted).collect();
            assert!(
                ungranted.is_empty(),
                "{kind:?} may not create {ungranted:?}"
            );
            assert!(
                unmade.is_empty(),
                "{kind:?} may create {unmade:?} it never uses"
            );
        }
        assert_eq!(
            kafka_access(ServiceKind::Orders).unwrap().reads,
            orders::REPLY_TOPICS
        );
        assert!(kafka_access(ServiceKind::Gateway).is_none());
    }

    #[test]
    fn a_topology_applies_and_bad_fields_are_named() {
        let mut spec = SystemSpec::new("/bin/true".into());
        let topology: Topology = toml::from_str(
            "replicas = { orders = 2 }\npayments_fail_rate = 0.1\nkafka_brokers = 3\n",
        )
        .unwrap();
        topology.apply(&mut spec).unwrap();
        assert_eq!(spec.replicas.get(&ServiceKind::Orders), Some(&2));
        assert!((spec.payments_fail_rate - 0.1).abs() < 1e-9);

        for (text, expected) in [
            ("replicas = { order = 2 }", "unknown service \"order\""),
            ("replicas = { orders = 9 }", "system.replicas.orders"),
            ("payments_fail_rate = 1.5", "system.payments_fail_rate"),
            ("replicas = { gateway = 2 }", "the gateway runs one"),
        ] {
            let topology: Topology = toml::from_str(text).unwrap();
            let error = topology
                .apply(&mut SystemSpec::new("/bin/true".into()))
                .unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(toml::from_str::<Topology>("replica = {}").is_err());
    }
}
