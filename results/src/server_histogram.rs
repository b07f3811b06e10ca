//! A Prometheus histogram a service exports on `/metrics` (e.g. the consumers'
//! `faultline_event_handling_seconds`), as its change over a run: the reading at the run's
//! start subtracted from the one at its end, so a system that served other runs before
//! counts only this one's observations. Reports take its mean (exact: sum over count) and
//! its quantiles, interpolated linearly within a bucket as PromQL's `histogram_quantile`
//! does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One series of a histogram (a name and label set, an `instance` label naming the replica),
/// over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerHistogram {
    /// The histogram's name, without `_bucket`, `_sum` or `_count`.
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Seconds after `metadata.started_at` of the first and the last reading.
    pub from_secs: f64,
    pub to_secs: f64,
    /// `[upper bound, observations at or below it]` (cumulative), ascending; the `+Inf`
    /// bucket is `count`.
    pub buckets: Vec<(f64, f64)>,
    /// The observations' sum, in the histogram's unit (seconds for a `_seconds` name).
    pub sum: f64,
    pub count: f64,
}

impl ServerHistogram {
    /// The readings at `start` and `end` of the same series as one change; a series whose
    /// count went down was reset (its replica restarted) and counts from zero.
    pub fn delta(start: &ServerHistogram, end: &ServerHistogram) -> ServerHistogram {
        if end.count < start.count || bounds(end) != bounds(start) {
            return ServerHistogram {
                from_secs: start.from_secs,
                ..end.clone()
            };
        }
        ServerHistogram {
            name: end.name.clone(),
            labels: end.labels.clone(),
            from_secs: start.from_secs,
            to_secs: end.to_secs,
            buckets: (end.buckets.iter().zip(&start.buckets))
                .map(|((le, count), (_, before))| (*le, count - before))
                .collect(),
            sum: end.sum - start.sum,
            count: end.count - start.count,
        }
    }

    /// Several series (replicas) added up; `None` when their buckets differ.
    pub fn sum_of<'a>(
        series: impl IntoIterator<Item = &'a ServerHistogram>,
    ) -> Option<ServerHistogram> {
        let mut series = series.into_iter();
        let mut total = series.next()?.clone();
        for more in series {
            if bounds(more) != bounds(&total) {
                return None;
            }
            for (mine, theirs) in total.buckets.iter_mut().zip(&more.buckets) {
                mine.1 += theirs.1;
            }
            total.sum += more.sum;
            total.count += more.count;
            total.from_secs = total.from_secs.min(more.from_secs);
            total.to_secs = total.to_secs.max(more.to_secs);
        }
        Some(total)
    }

    /// The mean observation; `None` without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile (0–1), interpolated linearly within its bucket (from 0 in the
    /// first); in the `+Inf` bucket, the highest finite bound (the value is at least that).
    /// `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for (le, cumulative) in &self.buckets {
            if *cumulative >= rank && *cumulative > below {
                return Some(lower + (le - lower) * (rank - below) / (cumulative - below));
            }
            (lower, below) = (*le, *cumulative);
        }
        Some(lower)
    }
}

/// A histogram's bucket bounds.
fn bounds(histogram: &ServerHistogram) -> Vec<f64> {
    histogram.buckets.iter().map(|(le, _)| *le).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn histogram(buckets: &[(f64, f64)], sum: f64, count: f64) -> ServerHistogram {
        ServerHistogram {
            name: "h_seconds".into(),
            labels: BTreeMap::new(),
            from_secs: 0.0,
            to_secs: 10.0,
            buckets: buckets.to_vec(),
            sum,
            count,
        }
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket_as_promql_does() {
        // 100 observations: 50 up to 10 ms, 40 in (10, 20] ms, 10 in (20, 40] ms.
        let h = histogram(&[(0.01, 50.0), (0.02, 90.0), (0.04, 100.0)], 1.2, 100.0);
        assert!((h.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
        // Rank 70 is half way through the second bucket's 40.
        assert!((h.quantile(0.7).unwrap() - 0.015).abs() < 1e-12);
        assert!((h.quantile(0.99).unwrap() - 0.038).abs() < 1e-12);
        assert!((h.mean().unwrap() - 0.012).abs() < 1e-12);
        // Beyond the last finite bound: the bound, a lower limit.
        let over = histogram(&[(0.01, 1.0)], 5.0, 2.0);
        assert_eq!(over.quantile(0.99), Some(0.01));
        assert_eq!(histogram(&[(0.01, 0.0)], 0.0, 0.0).quantile(0.5), None);
    }

    #[test]
    fn a_delta_counts_only_what_happened_between_the_readings_unless_the_series_reset() {
        let start = histogram(&[(0.01, 10.0), (0.02, 20.0)], 0.3, 25.0);
        let end = histogram(&[(0.01, 15.0), (0.02, 30.0)], 0.5, 40.0);
        let delta = ServerHistogram::delta(&start, &end);
        assert_eq!(delta.buckets, vec![(0.01, 5.0), (0.02, 10.0)]);
        assert_eq!(delta.count, 15.0);
        assert!((delta.sum - 0.2).abs() < 1e-12);
        let restarted = histogram(&[(0.01, 1.0), (0.02, 2.0)], 0.02, 2.0);
        assert_eq!(ServerHistogram::delta(&start, &restarted), restarted);
    }

    #[test]
    fn replicas_add_up_bucket_by_bucket_and_different_buckets_do_not() {
        let a = histogram(&[(0.01, 1.0), (0.02, 2.0)], 0.03, 2.0);
        let b = histogram(&[(0.01, 3.0), (0.02, 3.0)], 0.02, 3.0);
        let total = ServerHistogram::sum_of([&a, &b]).unwrap();
        assert_eq!(total.buckets, vec![(0.01, 4.0), (0.02, 5.0)]);
        assert_eq!(total.count, 5.0);
        let other = histogram(&[(0.05, 1.0)], 0.01, 1.0);
        assert_eq!(ServerHistogram::sum_of([&a, &other]), None);
    }
}
