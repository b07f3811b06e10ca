//! Document 002's Table 1 claims (RabbitMQ's and NATS' throughput) held against
//! `faultline broker-bench` runs, one per broker.
//!
//! A claim on `broker_bench:<broker>.<stat>` (see [`crate::metric`]) is measured by the
//! run of that broker (`<broker>.json`, the results contract's `broker_bench` types):
//! `rate` is the messages the broker's own tool published per second, `pNN` a latency
//! percentile the tool printed. The tools publish unpaced, so a rate claim above the
//! measured rate is answered "holds up to X/s here", as Kafka's column is
//! ([`crate::claims_kafka`]).

use faultline_results::{
    broker_bench::{Broker, BrokerBenchResults},
    quantity::Quantity,
    Dimension,
};

use crate::{
    claims::{Claim, ClaimResult},
    claims_kafka::hold_bench_claim,
    metric::{Measured, Metric, Scope, Stat},
};

/// The scope of `broker_bench:<name>`: a broker broker-bench runs.
pub(crate) fn scope(name: &str) -> Result<Scope, String> {
    Broker::from_name(name)
        .map(Scope::BrokerBench)
        .ok_or(format!(
            "unknown broker {name:?} (known: {})",
            Broker::ALL.map(Broker::name).join(", ")
        ))
}

/// Measures a `broker_bench:` metric in its broker's run.
pub fn measure(metric: &Metric, bench: &BrokerBenchResults) -> Measured {
    let value = match (&metric.scope, metric.stat) {
        (Scope::BrokerBench(broker), _) if *broker != bench.broker => Err(format!(
            "{} is about {broker}, not {}",
            metric.text, bench.broker
        )),
        (Scope::BrokerBench(_), Stat::Rate) => Ok(bench.measured.msgs_per_sec),
        (Scope::BrokerBench(broker), Stat::Percentile(p)) => bench
            .measured
            .latency
            .as_ref()
            .and_then(|latency| latency.at(p))
            // The tools print microseconds; a Time quantity is seconds.
            .map(|us| us / 1e6)
            .ok_or_else(|| format!("{} printed no p{p} latency for {broker}", broker.tool())),
        _ => Err(format!("{} is not a broker-bench figure", metric.text)),
    };
    match value {
        Ok(value) => Measured::Value(Quantity::new(value, metric.dimension())),
        Err(reason) => Measured::NotMeasured(reason),
    }
}

/// Holds a Table 1 claim against its broker's run.
pub fn evaluate(claim: &Claim, bench: &BrokerBenchResults) -> ClaimResult {
    let Some(gate) = &claim.gate else {
        return claim.unanswered(String::new());
    };
    hold_bench_claim(claim, measure(&gate.metric, bench), || {
        bench.measured.received_per_sec.map(|received| {
            format!(
                "; {} consumed {} of it",
                bench.broker.tool(),
                Quantity::new(received, Dimension::Rate)
            )
        })
    })
}
