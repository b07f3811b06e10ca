//! What the server side recorded: the `server:<name>` scope (results' `server_metrics`,
//! the scraped series), the `server_histogram:<name>` scope (results'
//! `server_histograms`, a histogram's change over the run) and the `database` scope
//! (results' `database`, the statements the services' databases ran); and the
//! `name{label="value",...}` syntax the `server:` scopes share.
//!
//! A counter's `rate` is its increase per second over the run, from the load's start (the
//! series' time zero) to its end: the scrape starts before the load and goes on after it,
//! and those seconds of no load would dilute the rate. Under a capacity search, over the
//! step at capacity alone: the results of a search are that step's, and its start is the
//! series' time zero, but the scrape ran through the whole search.

use faultline_results::{Results, ServerHistogram};

use super::{server_sum, Scope, Stat};

/// A stat of the scraped series named `name` whose labels include `labels`: a
/// counter's `rate` (added over the series), or `max`, `mean`, `last` of their sum.
pub(super) fn series(
    results: &Results,
    name: &str,
    labels: &[(String, String)],
    stat: Stat,
) -> Result<f64, String> {
    let missing = || format!("no series {name} was scraped");
    if stat == Stat::Rate {
        let window = (0.0, results.metadata.duration_secs);
        let mut total = 0.0;
        let (mut scraped, mut any) = (false, false);
        let matching = (results.server_metrics.iter())
            .filter(|s| s.name == name && super::has_labels(&s.labels, labels));
        for series in matching {
            scraped = true;
            if let Some(rate) = counter_rate(&series.points, Some(window)) {
                total += rate;
                any = true;
            }
        }
        let secs = window.1;
        return match (any, &results.capacity) {
            (true, _) => Ok(total),
            (false, Some(_)) => Err(format!(
                "{name} was not scraped twice during the capacity search's step at capacity ({secs} s)"
            )),
            (false, None) if scraped => Err(format!(
                "{name} was not scraped twice during the load ({secs} s)"
            )),
            (false, None) => Err(missing()),
        };
    }
    let sum = server_sum(results, name, labels).ok_or_else(missing)?;
    let values: Vec<f64> = sum.values().copied().collect();
    if values.is_empty() {
        return Err(missing());
    }
    match stat {
        Stat::Max => Ok(values.iter().copied().fold(f64::MIN, f64::max)),
        Stat::Mean => Ok(values.iter().sum::<f64>() / values.len() as f64),
        Stat::Last => Ok(values[values.len() - 1]),
        _ => Err("not a server stat".into()),
    }
}

/// A counter's increase per second between the times of `window` (the whole series
/// when `None`), its value at each end read between the scrapes either side; a window
/// wider than the series is cut to it. `None` with fewer than two points inside.
fn counter_rate(points: &[(f64, f64)], window: Option<(f64, f64)>) -> Option<f64> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    let (from, to) = window.map_or((first, last), |(from, to)| (from.max(first), to.min(last)));
    if to <= from {
        return None;
    }
    let increase = counter_at(points, to)? - counter_at(points, from)?;
    // A counter that went down was reset (its process restarted): no negative rate.
    Some(increase.max(0.0) / (to - from))
}

/// The counter's value at `t`, linear between the scrapes before and after it.
fn counter_at(points: &[(f64, f64)], t: f64) -> Option<f64> {
    let after = points.iter().position(|(at, _)| *at >= t)?;
    let (t1, v1) = points[after];
    let Some(&(t0, v0)) = after.checked_sub(1).and_then(|before| points.get(before)) else {
        return Some(v1);
    };
    if t1 <= t0 {
        return Some(v1);
    }
    Some(v0 + (v1 - v0) * (t - t0) / (t1 - t0))
}

/// The stats the `server_histogram:` and `database` scopes take.
pub(super) fn takes(scope: &Scope, stat: Stat) -> bool {
    match scope {
        Scope::ServerHistogram { .. } => matches!(
            stat,
            Stat::Mean | Stat::Percentile(_) | Stat::Count | Stat::Rate
        ),
        _ => matches!(stat, Stat::Rate | Stat::Count | Stat::Mean | Stat::ExecCv),
    }
}

/// `name` or `name{key="value",...}` after a `scope` prefix.
pub(super) fn name_and_labels(
    text: &str,
    scope: &str,
) -> Result<(String, Vec<(String, String)>), String> {
    let (name, labels) = match text.split_once('{') {
        None => (text, Vec::new()),
        Some((name, block)) => {
            let block = block
                .strip_suffix('}')
                .ok_or("a label block must end with }")?;
            let mut labels = Vec::new();
            for pair in block.split(',').filter(|p| !p.trim().is_empty()) {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or(format!("label {pair:?} is not key=\"value\""))?;
                labels.push((
                    key.trim().to_string(),
                    value.trim().trim_matches('"').to_string(),
                ));
            }
            (name, labels)
        }
    };
    if name.is_empty() {
        return Err(format!("{scope} needs a metric name"));
    }
    Ok((name.to_string(), labels))
}

/// A stat of the histograms named `name` whose labels include `labels`, added up.
pub(super) fn histogram(
    results: &Results,
    name: &str,
    labels: &[(String, String)],
    stat: Stat,
) -> Result<f64, String> {
    let matching: Vec<&ServerHistogram> = (results.server_histograms.iter())
        .filter(|h| h.name == name && super::has_labels(&h.labels, labels))
        .collect();
    if matching.is_empty() {
        return Err(format!("no histogram {name} was read from /metrics"));
    }
    let total = ServerHistogram::sum_of(matching)
        .ok_or(format!("the series of {name} have different buckets"))?;
    let none = || format!("{name} observed nothing during the run");
    match stat {
        Stat::Count => Ok(total.count),
        Stat::Rate => {
            let secs = total.to_secs - total.from_secs;
            if secs <= 0.0 {
                return Err(format!("{name} was read only once"));
            }
            Ok(total.count / secs)
        }
        Stat::Mean => total.mean().ok_or_else(none),
        Stat::Percentile(p) => total.quantile(p / 100.0).ok_or_else(none),
        _ => Err("not a histogram stat".into()),
    }
}

/// A stat of the databases' statements.
pub(super) fn database(results: &Results, stat: Stat) -> Result<f64, String> {
    let database = results
        .database
        .as_ref()
        .ok_or("the databases' statements were not counted (pg_stat_statements)")?;
    let none = || "the services' databases ran no statement".to_string();
    match stat {
        Stat::Count => Ok(database.total() as f64),
        Stat::Rate => database
            .rate()
            .ok_or("the two readings were not apart".into()),
        Stat::Mean => database.exec_mean_secs.ok_or_else(none),
        Stat::ExecCv => database
            .exec_cv
            .ok_or("no statement ran twice during the run".into()),
        _ => Err("not a database stat".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_counters_rate_over_a_window_reads_its_ends_between_scrapes() {
        // 100/s until 10 s, then 700/s.
        let points = [(-1.0, 0.0), (0.5, 150.0), (10.0, 1100.0), (11.0, 1800.0)];
        assert_eq!(counter_at(&points, 0.0), Some(100.0));
        let whole = counter_rate(&points, None).unwrap();
        assert!((whole - 1800.0 / 12.0).abs() < 1e-9, "{whole}");
        let late = counter_rate(&points, Some((10.0, 11.0))).unwrap();
        assert!((late - 700.0).abs() < 1e-9, "{late}");
        // Cut to the series; nothing inside is no rate, never zero.
        let cut = counter_rate(&points, Some((10.0, 20.0))).unwrap();
        assert!((cut - 700.0).abs() < 1e-9, "{cut}");
        assert_eq!(counter_rate(&points, Some((12.0, 20.0))), None);
    }
}
