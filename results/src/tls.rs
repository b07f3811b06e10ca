//! What the TLS handshakes of an `https://` run cost (`results.json`'s `tls`).
//!
//! The load engine counts and times its handshakes apart from requests
//! (`faultline_loadgen::tls`); a TLS failure is its own error class (`tls`), and
//! [`TlsResults::failures`] counts it by cause (`unknown_ca`, `name_mismatch`,
//! `protocol_version`, `client_certificate`, `bad_certificate`, `alpn`, `other`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::histogram::{EncodedHistogram, HistogramCodecError, LatencySummary};

/// What a run's TLS handshakes cost (`results.json`'s `tls`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsResults {
    /// Completed handshakes (one per connection opened).
    pub handshakes: u64,
    /// Of those, how many resumed an earlier session (no certificate exchange).
    pub resumed: u64,
    /// Failed handshakes and TLS errors on open connections, by cause
    /// (`unknown_ca`, `name_mismatch`, `protocol_version`, `client_certificate`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Handshake time, from the TCP connection to the handshake's end, microseconds.
    pub handshake_latency: EncodedHistogram,
    pub handshake_summary: LatencySummary,
}

impl TlsResults {
    /// The handshakes of two runs' results, either of which may have none.
    pub fn merge_runs(
        a: &Option<TlsResults>,
        b: &Option<TlsResults>,
    ) -> Result<Option<TlsResults>, HistogramCodecError> {
        Ok(match (a, b) {
            (Some(x), Some(y)) => Some(TlsResults::merge(x, y)?),
            (x, y) => x.clone().or(y.clone()),
        })
    }

    /// The handshakes of two runs together, exactly.
    pub fn merge(a: &TlsResults, b: &TlsResults) -> Result<TlsResults, HistogramCodecError> {
        let mut failures = a.failures.clone();
        for (cause, count) in &b.failures {
            *failures.entry(cause.clone()).or_default() += count;
        }
        let handshake_latency =
            EncodedHistogram::merge(&a.handshake_latency, &b.handshake_latency)?;
        let handshake_summary = LatencySummary::of(&handshake_latency.decode()?);
        Ok(TlsResults {
            handshakes: a.handshakes + b.handshakes,
            resumed: a.resumed + b.resumed,
            failures,
            handshake_latency,
            handshake_summary,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::histogram::{new_histogram, record};

    fn handshakes(count: u64, resumed: u64, failures: &[(&str, u64)]) -> TlsResults {
        let mut histogram = new_histogram();
        for _ in 0..count {
            record(&mut histogram, Duration::from_millis(2));
        }
        TlsResults {
            handshakes: count,
            resumed,
            failures: failures.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            handshake_latency: EncodedHistogram::encode(&histogram).unwrap(),
            handshake_summary: LatencySummary::of(&histogram),
        }
    }

    #[test]
    fn two_runs_handshakes_add_and_a_run_without_tls_keeps_the_others() {
        let a = handshakes(4, 1, &[("unknown_ca", 2)]);
        let b = handshakes(6, 3, &[("unknown_ca", 1), ("alpn", 1)]);
        let merged = TlsResults::merge_runs(&Some(a.clone()), &Some(b))
            .unwrap()
            .unwrap();
        assert_eq!((merged.handshakes, merged.resumed), (10, 4));
        assert_eq!(merged.failures["unknown_ca"], 3);
        assert_eq!(merged.failures["alpn"], 1);
        assert_eq!(merged.handshake_summary.count, 10);
        assert_eq!(
            TlsResults::merge_runs(&None, &Some(a.clone())).unwrap(),
            Some(a)
        );
        assert_eq!(TlsResults::merge_runs(&None, &None).unwrap(), None);
    }
}
