//! Document 002's Table 5 claims held against a `faultline kafka-bench --table5` run.
//!
//! A claim on `kafka_bench:<row>.<stat>` (see [`crate::metric`]) is not measured by a
//! scenario's run but by the Kafka benchmark, whose figures (`kafka-bench.json`, the
//! results contract's `kafka_bench` types) are read here: the row is found by its
//! Table 5 label, the rate is rdkafka's acknowledged messages per second, the
//! percentiles come from its send→ack and send→consumed histograms. `paced_e2e_pNN`
//! reads the row's paced phase (the same settings at a fixed rate below saturation), and
//! `paced_e2e_added_pNN` is that percentile above the baseline row's paced one: the
//! "batching adds 50–100 ms" claim. Unpaced rows cannot answer it: their producers
//! saturate the brokers, so their latency is mostly queueing, and the baseline's queue
//! is the longer one (no linger, smaller batches). An unpaced benchmark measures the
//! most the producer sends on these brokers, so a rate claim above it is answered
//! "holds up to X/s here", with the rate as the capacity, and Apache Kafka's own tool
//! on the same row beside it.

use faultline_results::{
    kafka_bench::{KafkaBenchResults, KafkaBenchRow},
    quantity::Quantity,
    EncodedHistogram,
};

use crate::{
    claims::{Claim, ClaimResult, ClaimStatus},
    metric::{latency_stat, Measured, Metric, Scope, Stat},
};

/// The row of `bench` whose Table 5 label is `name` (`baseline`, `batching10ms`, ...).
fn row<'a>(bench: &'a KafkaBenchResults, name: &str) -> Option<&'a KafkaBenchRow> {
    bench.rows.iter().find(|row| {
        row.table5
            .and_then(|label| serde_json::to_value(label).ok())
            .is_some_and(|label| label.as_str() == Some(name))
    })
}

fn percentile(encoded: &EncodedHistogram, p: f64, what: &str) -> Result<f64, String> {
    let histogram = encoded
        .decode()
        .map_err(|e| format!("the {what} histogram does not decode: {e}"))?;
    latency_stat(&histogram, Stat::Percentile(p)).map_err(|_| format!("no {what} was recorded"))
}

/// Measures a `kafka_bench:` metric in a kafka-bench run.
pub fn measure(metric: &Metric, bench: &KafkaBenchResults) -> Measured {
    let Scope::KafkaBench(name) = &metric.scope else {
        return Measured::NotMeasured(format!("{} is not a kafka-bench figure", metric.text));
    };
    let find = |name: &str| {
        row(bench, name).ok_or_else(|| format!("kafka-bench ran no Table 5 row {name:?}"))
    };
    let paced_e2e = |row: &KafkaBenchRow, name: &str, p: f64| {
        let paced = row.paced.as_ref().ok_or_else(|| {
            format!("kafka-bench ran no paced phase for row {name:?} (--paced-rate)")
        })?;
        percentile(
            &paced.rdkafka.end_to_end_histogram,
            p,
            "paced end-to-end latency",
        )
    };
    let value = find(name).and_then(|row| {
        let measured = &row.rdkafka;
        match metric.stat {
            Stat::Rate => Ok(measured.msgs_per_sec),
            Stat::Percentile(p) => percentile(&measured.produce_histogram, p, "send→ack latency"),
            Stat::EndToEnd(p) => {
                percentile(&measured.end_to_end_histogram, p, "end-to-end latency")
            }
            Stat::PacedEndToEnd(p) => paced_e2e(row, name, p),
            Stat::PacedAddedEndToEnd(p) => {
                let base = find("baseline")?;
                Ok(paced_e2e(row, name, p)? - paced_e2e(base, "baseline", p)?)
            }
            _ => Err(format!("{} is not a kafka-bench stat", metric.text)),
        }
    });
    match value {
        Ok(value) => Measured::Value(Quantity::new(value, metric.dimension())),
        Err(reason) => Measured::NotMeasured(reason),
    }
}

/// Holds a Table 5 claim against the kafka-bench run.
pub fn evaluate(claim: &Claim, bench: &KafkaBenchResults) -> ClaimResult {
    let Some(gate) = &claim.gate else {
        return claim.unanswered(String::new());
    };
    hold_bench_claim(claim, measure(&gate.metric, bench), || {
        match &gate.metric.scope {
            Scope::KafkaBench(name) => {
                row(bench, name)
                    .and_then(|row| row.perf_tool.as_ref())
                    .map(|tool| {
                        format!(
                            "; Apache Kafka's ProducerPerformance on the same row: {}/s",
                            tool.msgs_per_sec.round()
                        )
                    })
            }
            _ => None,
        }
    })
}

/// A benchmark's verdict on a claim: pass or fail, except that a rate claim above an
/// unpaced benchmark's rate is answered "holds up to X/s here", with the rate as this
/// machine's capacity and `beside` (e.g. another tool's figure) after it.
pub(crate) fn hold_bench_claim(
    claim: &Claim,
    measured: Measured,
    beside: impl FnOnce() -> Option<String>,
) -> ClaimResult {
    let Some(gate) = &claim.gate else {
        return claim.unanswered(String::new());
    };
    let value = match measured {
        Measured::Value(value) => value,
        Measured::NotMeasured(reason) => return claim.unanswered(reason),
    };
    let mut result = claim.unanswered(String::new());
    result.measured = Some(value);
    let holds = claim.holds(value.value);
    result.status = if holds {
        ClaimStatus::Pass
    } else if gate.metric.stat == Stat::Rate {
        result.capacity = Some(value.value);
        ClaimStatus::HoldsUpTo(format!(
            "holds up to {value} here (document: {} on {}); an unpaced producer's rate is this machine's capacity{}",
            gate.limit,
            claim.raw.hardware,
            beside().unwrap_or_default()
        ))
    } else {
        ClaimStatus::Fail
    };
    result
}
