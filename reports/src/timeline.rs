//! The run as time series and distributions, derived from `results.json` alone.
//!
//! Times are seconds after `metadata.started_at`. A per-second entry of the results
//! covers a wall-clock (Unix) second, so it is placed at that second's middle.

use std::collections::BTreeMap;

use faultline_results::{EncodedHistogram, ErrorClass, LoadModel, Results, TargetSchedule};
use hdrhistogram::Histogram;

use crate::{
    charts::Band,
    error::ReportError,
    metric::{offset_of, start_unix},
};

/// The run's time base and decoded per-second data.
pub struct Timeline<'a> {
    pub results: &'a Results,
    /// Unix time of `metadata.started_at`.
    pub start: f64,
    /// Length of the time axis: the run, or the last recorded second if later.
    pub end: f64,
}

impl<'a> Timeline<'a> {
    pub fn new(results: &'a Results) -> Result<Timeline<'a>, ReportError> {
        let start = start_unix(results).ok_or_else(|| ReportError::BadResults {
            path: "(results)".into(),
            problem: format!(
                "metadata.started_at {:?} is not an RFC 3339 time",
                results.metadata.started_at
            ),
        })?;
        let last = results
            .seconds
            .last()
            .map_or(0.0, |s| s.second as f64 + 1.0 - start);
        let end = results.metadata.duration_secs.max(last).max(1.0);
        Ok(Timeline {
            results,
            start,
            end,
        })
    }

    /// Where a per-second entry is drawn.
    pub fn x_of(&self, unix_second: u64) -> f64 {
        (unix_second as f64 + 0.5 - self.start).max(0.0)
    }

    /// The target rate of an open schedule, exact at stage boundaries (its pieces
    /// are linear); `None` for a closed schedule.
    pub fn target_rate(&self) -> Option<Vec<(f64, f64)>> {
        target_points(&self.results.schedule)
    }

    /// Requests finished per second, all endpoints.
    pub fn achieved_rate(&self) -> Vec<(f64, f64)> {
        self.results
            .seconds
            .iter()
            .map(|s| (self.x_of(s.second), s.requests as f64))
            .collect()
    }

    /// Journeys started per second, for a journey run that recorded them.
    pub fn journey_rate(&self) -> Option<Vec<(f64, f64)>> {
        let journeys = self.results.journeys.as_ref()?;
        if journeys.seconds.is_empty() {
            return None;
        }
        Some(
            journeys
                .seconds
                .iter()
                .map(|s| (self.x_of(s.second), s.started as f64))
                .collect(),
        )
    }

    /// Requests finished per second of one endpoint.
    pub fn endpoint_rate(&self, name: &str) -> Vec<(f64, f64)> {
        self.results
            .endpoints
            .get(name)
            .map(|e| {
                e.seconds
                    .iter()
                    .map(|s| (self.x_of(s.second), s.requests as f64))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Errors per second by class, for the classes that occurred at all.
    pub fn errors_by_class(&self) -> Vec<(ErrorClass, Vec<(f64, f64)>)> {
        ErrorClass::ALL
            .iter()
            .filter(|class| self.results.totals.errors.get(**class) > 0)
            .map(|class| {
                let points = self
                    .results
                    .seconds
                    .iter()
                    .map(|s| (self.x_of(s.second), s.errors.get(*class) as f64))
                    .collect();
                (*class, points)
            })
            .collect()
    }

    /// p50, p90, p99 and max per second, in microseconds.
    pub fn latency_percentiles(&self) -> Result<[Vec<(f64, f64)>; 4], ReportError> {
        let mut out: [Vec<(f64, f64)>; 4] = Default::default();
        for second in &self.results.seconds {
            let histogram = decode(&second.latency, "per-second latency")?;
            if histogram.is_empty() {
                continue;
            }
            let x = self.x_of(second.second);
            out[0].push((x, histogram.value_at_quantile(0.50) as f64));
            out[1].push((x, histogram.value_at_quantile(0.90) as f64));
            out[2].push((x, histogram.value_at_quantile(0.99) as f64));
            out[3].push((x, histogram.max() as f64));
        }
        Ok(out)
    }

    /// The faults as bands on the time axis (a fault without an end lasts to the
    /// end of the axis; one whose times do not parse is left out of the charts).
    pub fn bands(&self) -> Vec<Band> {
        let started_at = &self.results.metadata.started_at;
        self.results
            .faults
            .iter()
            .filter_map(|fault| {
                let start = offset_of(&fault.start, started_at)?;
                let end = match &fault.end {
                    Some(end) => offset_of(end, started_at)?,
                    None => self.end,
                };
                Some(Band {
                    label: fault.label.clone(),
                    start,
                    end,
                })
            })
            .collect()
    }

    /// Server series whose name ends in `suffix` (whatever the service's prefix),
    /// summed per group of the kept labels and per whole second; groups sorted by
    /// their peak, largest first.
    pub fn server_groups(&self, suffix: &str, keep: &[&str]) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut groups: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
        for series in &self.results.server_metrics {
            if !series.name.ends_with(suffix) {
                continue;
            }
            let kept: Vec<String> = series
                .labels
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let key = if kept.is_empty() {
                series.name.clone()
            } else {
                kept.join(", ")
            };
            let sums = groups.entry(key).or_default();
            for (t, v) in &series.points {
                *sums.entry(t.round() as i64).or_default() += v;
            }
        }
        let mut out: Vec<(String, Vec<(f64, f64)>)> = groups
            .into_iter()
            .map(|(key, sums)| (key, sums.into_iter().map(|(t, v)| (t as f64, v)).collect()))
            .collect();
        out.sort_by(|a, b| peak(&b.1).total_cmp(&peak(&a.1)));
        out
    }
}

fn peak(points: &[(f64, f64)]) -> f64 {
    points.iter().map(|p| p.1).fold(f64::MIN, f64::max)
}

/// The stages as a polyline of `(offset, rate)`.
pub fn target_points(schedule: &TargetSchedule) -> Option<Vec<(f64, f64)>> {
    if schedule.model == LoadModel::Closed || schedule.stages.is_empty() {
        return None;
    }
    let mut points = Vec::new();
    let mut at = 0.0;
    for stage in &schedule.stages {
        points.push((at, stage.from_rate));
        at += stage.duration.as_secs_f64();
        points.push((at, stage.to_rate));
    }
    Some(points)
}

pub fn decode(encoded: &EncodedHistogram, what: &str) -> Result<Histogram<u64>, ReportError> {
    encoded.decode().map_err(|e| ReportError::BadResults {
        path: "(results)".into(),
        problem: format!("a {what} histogram does not decode: {e}"),
    })
}

/// The HDR percentile curve: x is `-log10(1 - q)` (0 = 0%, 2 = 99%, 3 = 99.9%),
/// y the latency in microseconds; `None` for an empty histogram.
pub fn percentile_curve(histogram: &Histogram<u64>) -> Option<Vec<(f64, f64)>> {
    if histogram.is_empty() {
        return None;
    }
    // Beyond log10(count) nines the curve is just the max repeated.
    let x_max = (histogram.len() as f64).log10().clamp(1.0, 5.0);
    let steps = (x_max / 0.02).ceil() as usize;
    Some(
        (0..=steps)
            .map(|i| {
                let x = (i as f64 * 0.02).min(x_max);
                let q = 1.0 - 10f64.powf(-x);
                (x, histogram.value_at_quantile(q) as f64)
            })
            .collect(),
    )
}

/// Counts in log-spaced bins, ten per decade of milliseconds: `(log10 from, log10 to, count)`.
pub fn log_bins(histogram: &Histogram<u64>) -> Vec<(f64, f64, f64)> {
    let mut bins: BTreeMap<i64, u64> = BTreeMap::new();
    for value in histogram.iter_recorded() {
        let ms = (value.value_iterated_to() as f64 / 1000.0).max(0.001);
        let bin = (ms.log10() * 10.0).floor() as i64;
        *bins.entry(bin).or_default() += value.count_at_value();
    }
    bins.into_iter()
        .map(|(bin, count)| (bin as f64 / 10.0, (bin + 1) as f64 / 10.0, count as f64))
        .collect()
}
