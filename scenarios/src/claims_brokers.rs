//! The claims suite's `brokers` family: `faultline broker-bench` for each broker of
//! document 002's Table 1 that one machine can run (RabbitMQ, NATS), one after the other,
//! into `DIR/brokers/` (`<broker>.json` and the table the command prints, `<broker>.txt`),
//! and those files read back by `faultline claims --report-only`.
//!
//! A broker whose run fails is recorded as failed with the reason and the next one runs.

use std::{future::Future, path::Path, time::Instant};

use faultline_brokerbench::{table, BrokerSpec};
use faultline_reports::claims_suite::{BrokerRun, BrokersRun, RunOutcome, BROKERS_FAMILY};
use faultline_results::{
    broker_bench::BrokerBenchResults,
    error::{read_text, write_text},
};

/// The report of one broker's run, relative to the claims report's directory.
fn report(spec: &BrokerSpec) -> String {
    format!("{BROKERS_FAMILY}/{}.txt", spec.broker)
}

/// Runs each broker's benchmark; `None` when interrupted (the broker being measured is
/// stopped as its run is dropped).
pub async fn run<F: Future<Output = ()>>(
    specs: &[BrokerSpec],
    output: &Path,
    interrupted: &impl Fn() -> F,
) -> Option<BrokersRun> {
    let dir = output.join(BROKERS_FAMILY);
    let mut runs = Vec::new();
    for spec in specs {
        let started = Instant::now();
        let mut progress = |line: &str| eprintln!("claims: broker-bench {}: {line}", spec.broker);
        let outcome = tokio::select! {
            outcome = faultline_brokerbench::run(spec, &mut progress) => outcome,
            _ = interrupted() => return None,
        };
        let outcome = outcome
            .map_err(|error| error.to_string())
            .and_then(|results| {
                faultline_brokerbench::write_json(&dir, &results).map_err(|e| e.to_string())?;
                let text = table::render(&results);
                write_text(&output.join(report(spec)), &text).map_err(|e| e.to_string())?;
                Ok(results)
            });
        let outcome = match outcome {
            Ok(results) => {
                eprintln!(
                    "claims: broker-bench {} done in {:.0} s: {:.0} msg/s published",
                    spec.broker,
                    started.elapsed().as_secs_f64(),
                    results.measured.msgs_per_sec
                );
                RunOutcome::Ran {
                    results: Box::new(results),
                    report: report(spec),
                }
            }
            Err(error) => {
                eprintln!("claims: broker-bench {} failed: {error}", spec.broker);
                RunOutcome::Failed(error)
            }
        };
        runs.push(BrokerRun {
            broker: spec.broker,
            outcome,
        });
    }
    Some(BrokersRun { runs })
}

/// Each broker's `<broker>.json` as a run left it in `output`.
pub fn read_back(specs: &[BrokerSpec], output: &Path) -> BrokersRun {
    let runs = specs
        .iter()
        .map(|spec| {
            let path = output
                .join(BROKERS_FAMILY)
                .join(format!("{}.json", spec.broker));
            let results = read_text(&path, "reading broker-bench results from")
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_str::<BrokerBenchResults>(&text)
                        .map_err(|e| format!("{}: {e}", path.display()))
                });
            let outcome = match results {
                Ok(results) => RunOutcome::Ran {
                    results: Box::new(results),
                    report: report(spec),
                },
                Err(error) => RunOutcome::Failed(format!("no results to report: {error}")),
            };
            BrokerRun {
                broker: spec.broker,
                outcome,
            }
        })
        .collect();
    BrokersRun { runs }
}

/// Every broker, not run (`--only` left the family out).
pub fn skipped(specs: &[BrokerSpec]) -> BrokersRun {
    BrokersRun {
        runs: specs
            .iter()
            .map(|spec| BrokerRun {
                broker: spec.broker,
                outcome: RunOutcome::Skipped,
            })
            .collect(),
    }
}
