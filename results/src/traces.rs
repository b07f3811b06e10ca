//! The traces of a run's slowest requests: which requests the load generator kept as
//! exemplars (per endpoint, the slowest of each second and the slowest overall, and one
//! typical request a second, each with the W3C trace id it sent), and, once a run with tracing on fetched them from
//! Jaeger, their spans, so that a report can show where a slow request's time went.
//!
//! [`Traces`] is an optional part of [`crate::Results`] (`traces`, absent in results of
//! runs without tracing, which stay readable as before). Workers' traces merge by putting
//! their exemplars together ([`Traces::merge_runs`]).

use serde::{Deserialize, Serialize};

/// A run's exemplars and where their traces came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traces {
    /// Share of requests the generator sent with a sampled `traceparent` (0 to 1): only
    /// those are recorded by the services, so only those can be exemplars.
    pub sample_ratio: f64,
    /// Jaeger's query URL the spans were read from, when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Per endpoint, slowest first.
    pub exemplars: Vec<Exemplar>,
}

/// Why a request was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kept {
    /// Among the slowest of the whole run, for its endpoint.
    Slowest,
    /// Among the slowest of its second, for its endpoint (so every part of the run has
    /// some, not only its worst moment).
    OfItsSecond,
    /// Picked at random among its second's sampled requests, for its endpoint: typical
    /// requests, against which the slow ones are compared.
    Sampled,
}

/// One kept request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    /// The endpoint's name, as in `endpoints`.
    pub endpoint: String,
    /// Unix second in which the request finished.
    pub second: u64,
    /// Its latency as recorded (µs, from its intended send time).
    pub latency_us: u64,
    /// The W3C trace id it was sent with (32 hex digits).
    pub trace_id: String,
    pub kept: Kept,
    /// The trace's spans, ordered by start, once fetched; empty when the tracing
    /// backend had none of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<TraceSpan>,
}

/// One span of an exemplar's trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSpan {
    pub span_id: String,
    /// The span it is a child of; `None` for the trace's root (or a parent outside it,
    /// such as the generator's own span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The service that recorded it.
    pub service: String,
    pub operation: String,
    /// Start, µs after the trace's first span started.
    pub start_us: u64,
    pub duration_us: u64,
}

impl Traces {
    /// Traces of workers of one run: their exemplars together, slowest first per
    /// endpoint; the sample ratio and source are the run's (the first worker's).
    pub fn merge_runs(a: &Option<Traces>, b: &Option<Traces>) -> Option<Traces> {
        match (a, b) {
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (Some(a), Some(b)) => {
                let mut exemplars = a.exemplars.clone();
                exemplars.extend(b.exemplars.iter().cloned());
                sort(&mut exemplars);
                Some(Traces {
                    sample_ratio: a.sample_ratio,
                    source: a.source.clone().or_else(|| b.source.clone()),
                    exemplars,
                })
            }
        }
    }
}

/// By endpoint, then slowest first.
pub fn sort(exemplars: &mut [Exemplar]) {
    exemplars.sort_by(|x, y| {
        x.endpoint
            .cmp(&y.endpoint)
            .then(y.latency_us.cmp(&x.latency_us))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exemplar(endpoint: &str, latency_us: u64) -> Exemplar {
        Exemplar {
            endpoint: endpoint.into(),
            second: 1,
            latency_us,
            trace_id: format!("{latency_us:032x}"),
            kept: Kept::Slowest,
            spans: Vec::new(),
        }
    }

    #[test]
    fn merged_exemplars_are_all_kept_slowest_first_per_endpoint() {
        let a = Some(Traces {
            sample_ratio: 0.5,
            source: None,
            exemplars: vec![exemplar("GET /a", 10), exemplar("POST /b", 7)],
        });
        let b = Some(Traces {
            sample_ratio: 0.5,
            source: Some("http://127.0.0.1:1".into()),
            exemplars: vec![exemplar("GET /a", 30)],
        });
        let merged = Traces::merge_runs(&a, &b).expect("both had traces");
        let order: Vec<(&str, u64)> = merged
            .exemplars
            .iter()
            .map(|e| (e.endpoint.as_str(), e.latency_us))
            .collect();
        assert_eq!(order, [("GET /a", 30), ("GET /a", 10), ("POST /b", 7)]);
        assert_eq!(merged.source.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(Traces::merge_runs(&None, &b), b);
    }
}
