//! What the server side recorded besides scraped series: the `server_histogram:<name>`
//! scope (results' `server_histograms`, a histogram's change over the run) and the
//! `database` scope (results' `database`, the statements the services' databases ran);
//! and the `name{label="value",...}` syntax the `server:` scopes share.

use faultline_results::{Results, ServerHistogram};

use super::{Scope, Stat};

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
        .filter(|h| {
            h.name == name
                && (labels.iter()).all(|(k, v)| h.labels.get(k).is_some_and(|have| have == v))
        })
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
