//! The `[system]` table of a scenario file: how the reference system is laid out for a
//! run (replicas, the payments and shipping behaviour, the catalogue, Kafka brokers),
//! applied onto a [`SystemSpec`]. `faultline system up` takes the same settings as flags.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{services::ServiceKind, stack::KafkaSpec, supervisor::SystemSpec};

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
