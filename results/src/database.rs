//! What the services' PostgreSQL databases ran during a run: `pg_stat_statements`, read
//! through the admin connection at the run's start and end ([`StatementReading`]), gives
//! each distinct statement's calls and execution time; [`DatabaseResults::between`] turns
//! the two readings into the statements run per database and how much their execution
//! times varied.
//!
//! Only statements that read or write rows count as queries (the reader leaves out
//! `BEGIN`, `COMMIT` and other utility statements), and only the services' own roles'
//! (not the checker's or this reading's, made as the admin).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One distinct statement's counters at one reading, as `pg_stat_statements` keeps them
/// (cumulative since the server started).
#[derive(Debug, Clone, PartialEq)]
pub struct StatementReading {
    /// The database it ran in.
    pub database: String,
    pub calls: u64,
    /// `total_exec_time` and `stddev_exec_time` (population), in milliseconds.
    pub total_ms: f64,
    pub stddev_ms: f64,
}

impl StatementReading {
    /// The sum of the squared execution times, which `stddev` and `total` give back:
    /// n·(σ² + μ²).
    fn sum_of_squares(&self) -> f64 {
        if self.calls == 0 {
            return 0.0;
        }
        let n = self.calls as f64;
        let mean = self.total_ms / n;
        n * (self.stddev_ms * self.stddev_ms + mean * mean)
    }
}

/// The run's statements, from two readings of `pg_stat_statements`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseResults {
    /// Seconds between the two readings.
    pub secs: f64,
    /// Statements run, by database.
    pub statements: BTreeMap<String, u64>,
    /// Their mean execution time, in seconds (server-side: parse and network excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_mean_secs: Option<f64>,
    /// How much execution times varied: for each distinct statement called at least twice,
    /// its standard deviation over its mean in the run; the mean of those, weighted by
    /// calls. 0.01 is 1%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_cv: Option<f64>,
}

impl DatabaseResults {
    /// What ran between the readings `start` and `end` (keyed by statement), `secs` apart.
    /// A statement missing at the start counts from zero; one whose calls went down was
    /// evicted and counted again, and counts from zero too.
    pub fn between<K: Ord>(
        start: &BTreeMap<K, StatementReading>,
        end: &BTreeMap<K, StatementReading>,
        secs: f64,
    ) -> DatabaseResults {
        let mut statements: BTreeMap<String, u64> = BTreeMap::new();
        let (mut total_ms, mut weighted_cv, mut cv_calls) = (0.0, 0.0, 0.0);
        for (key, after) in end {
            let before = start.get(key).filter(|before| before.calls <= after.calls);
            let calls = after.calls - before.map_or(0, |b| b.calls);
            if calls == 0 {
                continue;
            }
            *statements.entry(after.database.clone()).or_default() += calls;
            let sum = after.total_ms - before.map_or(0.0, |b| b.total_ms);
            let squares = after.sum_of_squares() - before.map_or(0.0, |b| b.sum_of_squares());
            total_ms += sum;
            let n = calls as f64;
            let mean = sum / n;
            if calls >= 2 && mean > 0.0 {
                let variance = (squares / n - mean * mean).max(0.0);
                weighted_cv += n * variance.sqrt() / mean;
                cv_calls += n;
            }
        }
        let count: u64 = statements.values().sum();
        DatabaseResults {
            secs,
            exec_mean_secs: (count > 0).then(|| total_ms / count as f64 / 1000.0),
            exec_cv: (cv_calls > 0.0).then(|| weighted_cv / cv_calls),
            statements,
        }
    }

    /// Every database's statements.
    pub fn total(&self) -> u64 {
        self.statements.values().sum()
    }

    /// Statements per second; `None` when the readings were not apart.
    pub fn rate(&self) -> Option<f64> {
        (self.secs > 0.0).then(|| self.total() as f64 / self.secs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn reading(database: &str, times_ms: &[f64]) -> StatementReading {
        let n = times_ms.len() as f64;
        let total: f64 = times_ms.iter().sum();
        let mean = if n > 0.0 { total / n } else { 0.0 };
        let variance = times_ms.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n.max(1.0);
        StatementReading {
            database: database.into(),
            calls: times_ms.len() as u64,
            total_ms: total,
            stddev_ms: variance.sqrt(),
        }
    }

    #[test]
    fn the_run_counts_only_the_calls_between_the_readings_with_their_own_spread() {
        // Before the run: two calls of 10 ms. In the run: calls of 1 and 3 ms.
        let start = BTreeMap::from([(1, reading("orders", &[10.0, 10.0]))]);
        let end = BTreeMap::from([
            (1, reading("orders", &[10.0, 10.0, 1.0, 3.0])),
            // New in the run.
            (2, reading("payments", &[2.0, 2.0, 2.0])),
        ]);
        let run = DatabaseResults::between(&start, &end, 2.0);
        assert_eq!(run.statements["orders"], 2);
        assert_eq!(run.statements["payments"], 3);
        assert_eq!(run.rate(), Some(2.5));
        // 10 ms over 5 calls.
        assert!((run.exec_mean_secs.unwrap() - 0.002).abs() < 1e-12);
        // The run's 1 and 3 ms vary by 1/2 of their mean; the payments calls not at all.
        assert!((run.exec_cv.unwrap() - (2.0 * 0.5) / 5.0).abs() < 1e-9);
    }

    #[test]
    fn a_statement_evicted_and_counted_again_counts_from_zero() {
        let start = BTreeMap::from([("q", reading("orders", &[1.0; 10]))]);
        let end = BTreeMap::from([("q", reading("orders", &[1.0; 3]))]);
        let run = DatabaseResults::between(&start, &end, 1.0);
        assert_eq!(run.total(), 3);
    }
}
