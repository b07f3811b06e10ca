//! Trace context from the load generator, and the slowest requests kept by trace id.
//!
//! With tracing on, every request goes out with a W3C `traceparent` of the generator's own
//! ([`Exemplars::traceparent`]): a fresh trace id, and the sampled flag set for a share
//! `sample_ratio` of requests, which the services' parent-based samplers follow. So a
//! sampled request's whole trace is recorded, under a trace id the generator knows.
//!
//! Once answered, a sampled request is offered ([`Exemplars::offer`]); per endpoint, the
//! generator keeps the slowest [`ExemplarLimits::per_second`] of each second, the
//! slowest [`ExemplarLimits::slowest`] of the run, and one request of each second picked
//! at random (typical ones, to compare the slow ones with). That is a few trace ids a second, not
//! one per request, and the run's worst requests are all among them. At the end they go
//! into results ([`Exemplars::traces`]) for `faultline run` to fetch their spans.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use faultline_results::{Exemplar, Kept, Traces};
use rand::Rng;

use crate::LoadError;

/// How many requests are kept, per endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExemplarLimits {
    /// Share of requests sent with a sampled `traceparent`, 0 to 1.
    pub sample_ratio: f64,
    /// The slowest of each second.
    pub per_second: usize,
    /// The slowest of the run.
    pub slowest: usize,
}

impl ExemplarLimits {
    /// Every request sampled, three a second and the ten slowest kept.
    pub fn sampling(sample_ratio: f64) -> Result<ExemplarLimits, LoadError> {
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(LoadError::InvalidArgument {
                option: "trace sample ratio",
                reason: format!("{sample_ratio} is not between 0 and 1"),
            });
        }
        Ok(ExemplarLimits {
            sample_ratio,
            per_second: 3,
            slowest: 10,
        })
    }
}

/// The trace context one request is sent with.
#[derive(Debug, Clone)]
pub struct Traced {
    trace_id: u128,
    sampled: bool,
    /// The `traceparent` header's value.
    pub header: String,
}

/// A kept request.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    latency_us: u64,
    second: u64,
    trace_id: u128,
}

/// One endpoint's kept requests.
#[derive(Debug, Default)]
struct EndpointKept {
    slowest: Vec<Candidate>,
    seconds: BTreeMap<u64, Vec<Candidate>>,
    /// Per second, the request with the lowest trace id: trace ids are random, so that is
    /// one picked uniformly at random, without a random draw or a count.
    sampled: BTreeMap<u64, Candidate>,
}

/// Keeps `candidate` in `kept` if it is among the `limit` slowest.
fn keep(kept: &mut Vec<Candidate>, limit: usize, candidate: Candidate) {
    if kept.len() < limit {
        kept.push(candidate);
        return;
    }
    // `limit` is a handful: a scan is cheaper than a heap's upkeep.
    if let Some(fastest) = kept.iter_mut().min_by_key(|c| c.latency_us) {
        if candidate.latency_us > fastest.latency_us {
            *fastest = candidate;
        }
    }
}

/// The generator's trace context and kept requests for one run.
#[derive(Debug)]
pub struct Exemplars {
    limits: ExemplarLimits,
    /// By endpoint index. One lock for the run: it is taken once per answered sampled
    /// request, for a few comparisons.
    kept: Mutex<Vec<EndpointKept>>,
}

impl Exemplars {
    pub fn new(limits: ExemplarLimits) -> Exemplars {
        Exemplars {
            limits,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// A new trace for one request: random ids, sampled with the run's ratio.
    pub fn traceparent(&self, rng: &mut impl Rng) -> Traced {
        // Neither id may be all zeros (W3C: invalid).
        let trace_id = rng.random::<u128>() | 1;
        let span_id = rng.random::<u64>() | 1;
        let sampled = rng.random::<f64>() < self.limits.sample_ratio;
        Traced {
            trace_id,
            sampled,
            header: format!(
                "00-{trace_id:032x}-{span_id:016x}-{}",
                if sampled { "01" } else { "00" }
            ),
        }
    }

    /// A request of `endpoint` sent with `traced` was answered in `latency`, in the Unix
    /// `second`; kept if sampled and among the slowest.
    pub fn offer(&self, endpoint: usize, second: u64, latency: Duration, traced: &Traced) {
        if !traced.sampled {
            return;
        }
        let candidate = Candidate {
            latency_us: latency.as_micros().min(u128::from(u64::MAX)) as u64,
            second,
            trace_id: traced.trace_id,
        };
        // Nothing can panic while it is held: a poisoned lock still holds whole vectors.
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() <= endpoint {
            kept.resize_with(endpoint + 1, EndpointKept::default);
        }
        let endpoint = &mut kept[endpoint];
        keep(&mut endpoint.slowest, self.limits.slowest, candidate);
        let of_second = endpoint.seconds.entry(second).or_default();
        keep(of_second, self.limits.per_second, candidate);
        let sampled = endpoint.sampled.entry(second).or_insert(candidate);
        if candidate.trace_id < sampled.trace_id {
            *sampled = candidate;
        }
    }

    /// What was kept, for results; `names` are the endpoints' names by index. A request
    /// both among the slowest and of its second is listed once, as one of the slowest.
    pub fn traces(&self, names: &[String]) -> Traces {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut exemplars = Vec::new();
        for (index, endpoint) in kept.iter().enumerate() {
            let Some(name) = names.get(index) else {
                continue;
            };
            let exemplar = |candidate: &Candidate, kept: Kept| Exemplar {
                endpoint: name.clone(),
                second: candidate.second,
                latency_us: candidate.latency_us,
                trace_id: format!("{:032x}", candidate.trace_id),
                kept,
                spans: Vec::new(),
            };
            exemplars.extend(endpoint.slowest.iter().map(|c| exemplar(c, Kept::Slowest)));
            exemplars.extend(
                endpoint
                    .seconds
                    .values()
                    .flatten()
                    .filter(|c| !endpoint.slowest.contains(c))
                    .map(|c| exemplar(c, Kept::OfItsSecond)),
            );
            let listed = |c: &&Candidate| {
                endpoint.slowest.contains(c) || endpoint.seconds.values().flatten().any(|k| k == *c)
            };
            exemplars.extend(
                (endpoint.sampled.values())
                    .filter(|c| !listed(c))
                    .map(|c| exemplar(c, Kept::Sampled)),
            );
        }
        faultline_results::traces::sort(&mut exemplars);
        Traces {
            sample_ratio: self.limits.sample_ratio,
            source: None,
            exemplars,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_slowest_of_the_run_and_of_each_second_are_kept_once_each() {
        let exemplars = Exemplars::new(ExemplarLimits {
            sample_ratio: 1.0,
            per_second: 2,
            slowest: 3,
        });
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut sent = Vec::new();
        // Second 1: 10..=19 ms; second 2: 1..=5 ms.
        for (second, millis) in (10..20).map(|ms| (1, ms)).chain((1..6).map(|ms| (2, ms))) {
            let traced = exemplars.traceparent(&mut rng);
            exemplars.offer(0, second, Duration::from_millis(millis), &traced);
            sent.push((traced.header.clone(), millis, second));
        }
        let traces = exemplars.traces(&["GET /a".to_string()]);
        let kept: Vec<(u64, Kept)> = traces
            .exemplars
            .iter()
            .filter(|e| e.kept != Kept::Sampled)
            .map(|e| (e.latency_us / 1000, e.kept))
            .collect();
        assert_eq!(
            kept,
            [
                (19, Kept::Slowest),
                (18, Kept::Slowest),
                (17, Kept::Slowest),
                (5, Kept::OfItsSecond),
                (4, Kept::OfItsSecond),
            ]
        );
        // Each kept trace id is the one its request was sent with, listed once.
        for exemplar in &traces.exemplars {
            let millis = exemplar.latency_us / 1000;
            let header = &sent.iter().find(|(_, m, _)| *m == millis).expect("sent").0;
            assert!(header.contains(&exemplar.trace_id), "{header} {exemplar:?}");
        }
        let ids: std::collections::HashSet<&str> = traces
            .exemplars
            .iter()
            .map(|e| e.trace_id.as_str())
            .collect();
        assert_eq!(ids.len(), traces.exemplars.len());
        // Each second's random pick is its lowest trace id, listed unless listed already.
        for second in [1, 2] {
            let lowest = (sent.iter().filter(|(_, _, s)| *s == second))
                .map(|(header, _, _)| header[3..35].to_string())
                .min()
                .expect("sent that second");
            assert!(ids.contains(lowest.as_str()), "second {second}: {lowest}");
        }
        let sampled = traces.exemplars.iter().filter(|e| e.kept == Kept::Sampled);
        assert!(sampled.count() <= 2, "at most one a second");
    }

    #[test]
    fn unsampled_requests_say_so_in_their_header_and_are_never_kept() {
        let exemplars = Exemplars::new(ExemplarLimits::sampling(0.0).expect("a ratio"));
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let traced = exemplars.traceparent(&mut rng);
        assert!(traced.header.starts_with("00-") && traced.header.ends_with("-00"));
        assert_eq!(traced.header.len(), 55);
        exemplars.offer(0, 1, Duration::from_secs(9), &traced);
        assert!(exemplars.traces(&["GET /a".into()]).exemplars.is_empty());
        assert!(ExemplarLimits::sampling(1.5).is_err());
    }
}
