//! Merging the results of several runs (load workers) exactly: histograms add,
//! counts add, per-second entries line up by wall-clock (Unix) second, and the
//! schedules of workers that ran the same stages add their rates.

use std::{collections::BTreeMap, time::SystemTime};

use crate::{
    build::rate,
    error::ResultsError,
    histogram::{EncodedHistogram, HistogramCodecError, LatencySummary},
    results::{
        EndpointResults, GeneratorHealth, JourneyResults, JourneySecond, Results, RunMetadata,
        SecondResults, Totals, WarmUp, SCHEMA_VERSION,
    },
    schedule::{LoadModel, Stage, TargetSchedule},
};

impl JourneyResults {
    /// Adds two journey runs' counts.
    pub fn merge(a: &JourneyResults, b: &JourneyResults) -> JourneyResults {
        let mut started = a.started.clone();
        for (name, count) in &b.started {
            *started.entry(name.clone()).or_default() += count;
        }
        let mut by_second: BTreeMap<u64, u64> = BTreeMap::new();
        for s in a.seconds.iter().chain(&b.seconds) {
            *by_second.entry(s.second).or_default() += s.started;
        }
        JourneyResults {
            driver: if a.driver == b.driver {
                a.driver.clone()
            } else {
                format!("{} + {}", a.driver, b.driver)
            },
            started,
            seconds: by_second
                .into_iter()
                .map(|(second, started)| JourneySecond { second, started })
                .collect(),
            dropped: a.dropped + b.dropped,
            consistency_unseen: a.consistency_unseen + b.consistency_unseen,
            consistency_deadline_ms: a.consistency_deadline_ms.max(b.consistency_deadline_ms),
        }
    }
}

impl Results {
    /// Merges the results of two runs (e.g. two load workers) exactly.
    pub fn merge(a: &Results, b: &Results) -> Result<Results, ResultsError> {
        for results in [a, b] {
            if results.schema_version != SCHEMA_VERSION {
                return Err(ResultsError::SchemaVersion {
                    found: results.schema_version,
                });
            }
        }
        let (start_a, end_a) = a.metadata.span()?;
        let (start_b, end_b) = b.metadata.span()?;
        let start = start_a.min(start_b);
        let end = end_a.max(end_b);
        let duration = end.duration_since(start).unwrap_or_default().as_secs_f64();

        let pick = |x: &Option<String>, y: &Option<String>| {
            if x == y {
                x.clone()
            } else {
                x.clone().or(y.clone())
            }
        };
        let metadata = RunMetadata {
            scenario: pick(&a.metadata.scenario, &b.metadata.scenario),
            target: if a.metadata.target == b.metadata.target {
                a.metadata.target.clone()
            } else {
                format!("{} + {}", a.metadata.target, b.metadata.target)
            },
            started_at: humantime::format_rfc3339_millis(start).to_string(),
            duration_secs: duration,
            machine: a.metadata.machine.clone(),
            faultline_version: a.metadata.faultline_version.clone(),
            git_commit: pick(&a.metadata.git_commit, &b.metadata.git_commit),
            http_version: a.metadata.http_version,
            connections: a.metadata.connections + b.metadata.connections,
            // Per connection, so not summed: the workers of one distributed run share it.
            streams: a.metadata.streams.max(b.metadata.streams),
            timeout_ms: a.metadata.timeout_ms.max(b.metadata.timeout_ms),
            latency_origin: a.metadata.latency_origin,
            workers: a.metadata.workers + b.metadata.workers,
        };

        let mut endpoints = a.endpoints.clone();
        for (name, theirs) in &b.endpoints {
            let merged = match endpoints.get(name) {
                Some(ours) => EndpointResults {
                    totals: Totals::merge(&ours.totals, &theirs.totals, duration)?,
                    seconds: merge_seconds(&ours.seconds, &theirs.seconds)?,
                },
                None => theirs.clone(),
            };
            endpoints.insert(name.clone(), merged);
        }
        // Endpoints only in `a` keep their totals but need the new duration's rate.
        for endpoint in endpoints.values_mut() {
            endpoint.totals.achieved_rate = rate(endpoint.totals.requests, duration);
        }
        let totals = Totals::merge(&a.totals, &b.totals, duration)?;
        let consistency_window = match (&a.consistency_window, &b.consistency_window) {
            (Some(x), Some(y)) => Some(EncodedHistogram::merge(x, y)?),
            (x, y) => x.clone().or(y.clone()),
        };
        let generator = GeneratorHealth::judge(
            a.generator.late_threshold_ms,
            a.generator.max_send_delay_ms,
            &totals,
        );
        Ok(Results {
            schema_version: SCHEMA_VERSION,
            metadata,
            schedule: merge_schedules(&a.schedule, &b.schedule),
            seconds: merge_seconds(&a.seconds, &b.seconds)?,
            totals,
            endpoints,
            generator,
            consistency_window,
            write_ledger: a.write_ledger.clone().or(b.write_ledger.clone()),
            journeys: match (&a.journeys, &b.journeys) {
                (Some(x), Some(y)) => Some(JourneyResults::merge(x, y)),
                (x, y) => x.clone().or(y.clone()),
            },
            // Workers of one run share its faults, scrape and checker; they are
            // recorded once, by the run, so the first worker's are kept.
            faults: if a.faults.is_empty() {
                b.faults.clone()
            } else {
                a.faults.clone()
            },
            server_metrics: if a.server_metrics.is_empty() {
                b.server_metrics.clone()
            } else {
                a.server_metrics.clone()
            },
            server_histograms: if a.server_histograms.is_empty() {
                b.server_histograms.clone()
            } else {
                a.server_histograms.clone()
            },
            database: a.database.clone().or_else(|| b.database.clone()),
            checker: a.checker.clone().or(b.checker.clone()),
            gates: if a.gates.is_empty() {
                b.gates.clone()
            } else {
                a.gates.clone()
            },
            scenario_text: a.scenario_text.clone().or(b.scenario_text.clone()),
            tls: crate::tls::TlsResults::merge_runs(&a.tls, &b.tls)?,
            // A search is one worker's sequence of runs; adding two searches step by
            // step would mean nothing, so the first one recorded is kept.
            capacity: a.capacity.clone().or(b.capacity.clone()),
            // Sampled once, by the run, like the scrape.
            resources: a.resources.clone().or(b.resources.clone()),
            traces: crate::traces::Traces::merge_runs(&a.traces, &b.traces),
            prometheus: a.prometheus.clone().or_else(|| b.prometheus.clone()),
            warm_up: WarmUp::merge_runs(&a.warm_up, &b.warm_up),
        })
    }
}

impl WarmUp {
    /// Each worker warmed up with its share of the arrivals: their counts add up.
    fn merge_runs(a: &Option<WarmUp>, b: &Option<WarmUp>) -> Option<WarmUp> {
        match (a, b) {
            (Some(x), Some(y)) => Some(WarmUp {
                duration_secs: x.duration_secs.max(y.duration_secs),
                rate: x.rate,
                requests: x.requests + y.requests,
                ok: x.ok + y.ok,
                ledger: x.ledger.clone().or(y.ledger.clone()),
            }),
            (x, y) => x.clone().or(y.clone()),
        }
    }
}

impl Totals {
    fn merge(a: &Totals, b: &Totals, duration_secs: f64) -> Result<Totals, HistogramCodecError> {
        let mut latency = a.latency.decode()?;
        latency
            .add(b.latency.decode()?)
            .map_err(HistogramCodecError::Add)?;
        let mut send_delay = a.send_delay.decode()?;
        send_delay
            .add(b.send_delay.decode()?)
            .map_err(HistogramCodecError::Add)?;
        let mut errors = a.errors;
        errors.merge(&b.errors);
        let requests = a.requests + b.requests;
        Ok(Totals {
            requests,
            ok: a.ok + b.ok,
            errors,
            late: a.late + b.late,
            dropped: a.dropped + b.dropped,
            achieved_rate: rate(requests, duration_secs),
            latency: EncodedHistogram::encode(&latency)?,
            latency_summary: LatencySummary::of(&latency),
            send_delay: EncodedHistogram::encode(&send_delay)?,
            send_delay_summary: LatencySummary::of(&send_delay),
        })
    }
}

impl RunMetadata {
    /// Start and end of the run as wall-clock times.
    fn span(&self) -> Result<(SystemTime, SystemTime), ResultsError> {
        let start = humantime::parse_rfc3339(&self.started_at)
            .map_err(|e| ResultsError::Timestamp(self.started_at.clone(), e.to_string()))?;
        let length =
            std::time::Duration::try_from_secs_f64(self.duration_secs.max(0.0)).unwrap_or_default();
        Ok((start, start + length))
    }
}

/// Merges two per-second series, aligned by wall-clock second.
fn merge_seconds(
    a: &[SecondResults],
    b: &[SecondResults],
) -> Result<Vec<SecondResults>, HistogramCodecError> {
    let mut by_second: BTreeMap<u64, SecondResults> =
        a.iter().map(|s| (s.second, s.clone())).collect();
    for theirs in b {
        let merged = match by_second.get(&theirs.second) {
            Some(ours) => {
                let mut errors = ours.errors;
                errors.merge(&theirs.errors);
                SecondResults {
                    second: ours.second,
                    requests: ours.requests + theirs.requests,
                    ok: ours.ok + theirs.ok,
                    errors,
                    late: ours.late + theirs.late,
                    dropped: ours.dropped + theirs.dropped,
                    latency: EncodedHistogram::merge(&ours.latency, &theirs.latency)?,
                }
            }
            None => theirs.clone(),
        };
        by_second.insert(theirs.second, merged);
    }
    Ok(by_second.into_values().collect())
}

/// Workers that ran the same stages side by side asked for the sum of their rates;
/// schedules of other shapes cannot be added, and the first one is kept.
fn merge_schedules(a: &TargetSchedule, b: &TargetSchedule) -> TargetSchedule {
    let same_shape = a.model == b.model
        && a.stages.len() == b.stages.len()
        && a.stages
            .iter()
            .zip(&b.stages)
            .all(|(x, y)| x.duration == y.duration);
    if !same_shape || a.model == LoadModel::Closed {
        return a.clone();
    }
    TargetSchedule {
        stages: a
            .stages
            .iter()
            .zip(&b.stages)
            .map(|(x, y)| Stage {
                duration: x.duration,
                from_rate: x.from_rate + y.from_rate,
                to_rate: x.to_rate + y.to_rate,
            })
            .collect(),
        ..a.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journeys(started: u64, seconds: &[(u64, u64)]) -> JourneyResults {
        JourneyResults {
            driver: "open".into(),
            started: BTreeMap::from([("browse".to_string(), started)]),
            seconds: seconds
                .iter()
                .map(|&(second, started)| JourneySecond { second, started })
                .collect(),
            dropped: 1,
            consistency_unseen: 0,
            consistency_deadline_ms: 30_000.0,
        }
    }

    #[test]
    fn merged_journeys_add_their_starts_second_by_second() {
        let merged = JourneyResults::merge(
            &journeys(5, &[(100, 2), (101, 3)]),
            &journeys(4, &[(101, 1), (102, 3)]),
        );
        assert_eq!(merged.started["browse"], 9);
        assert_eq!(merged.dropped, 2);
        let seconds: Vec<(u64, u64)> = merged
            .seconds
            .iter()
            .map(|s| (s.second, s.started))
            .collect();
        assert_eq!(seconds, [(100, 2), (101, 4), (102, 3)]);
    }
}
