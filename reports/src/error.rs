//! The one error type of the reports crate.
//!
//! Every variant names the file (or flag) and what is wrong in it, so the binary
//! prints it as is. Every error means the report or gate could not be produced, which
//! the gate command maps to exit code 2 ([`ReportError::EXIT_CODE`]), apart from a
//! breached gate (exit code 1), which is not an error but an outcome.

use std::path::PathBuf;

/// What went wrong reading input or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] faultline_results::FileError),

    /// A results file that is not valid JSON or not of the results format.
    #[error("results {path}: {problem} at {json_path} (line {line}, column {column})")]
    BadResultsJson {
        path: PathBuf,
        /// Where in the document serde stopped, e.g. `totals.latency_summary.p99_us`.
        json_path: String,
        line: usize,
        column: usize,
        problem: String,
    },

    /// A results file that parses but cannot be used (version, histogram, timestamp).
    #[error("results {path}: {problem}")]
    BadResults { path: PathBuf, problem: String },

    /// A TOML file (claims, scenario) that does not parse or holds a bad entry.
    #[error("{path}: {problem}")]
    BadToml { path: PathBuf, problem: String },

    /// A gate, metric or quantity written wrongly (in a flag or a file).
    #[error("bad {what} {text:?}: {problem}")]
    BadSpec {
        what: &'static str,
        text: String,
        problem: String,
    },

    /// Drawing a chart failed (plotters reports it; this is a bug, not bad input).
    #[error("drawing the {chart} chart: {problem}")]
    Chart { chart: String, problem: String },
}

impl From<faultline_results::QuantityError> for ReportError {
    fn from(error: faultline_results::QuantityError) -> ReportError {
        ReportError::BadSpec {
            what: "quantity",
            problem: format!("{}; expected {}", error.problem, error.expected),
            text: error.text,
        }
    }
}

impl ReportError {
    /// The gate command's exit code for any error: the gates could not be judged.
    pub const EXIT_CODE: u8 = 2;

    /// A [`ReportError::BadSpec`].
    pub fn spec(what: &'static str, text: &str, problem: impl Into<String>) -> ReportError {
        ReportError::BadSpec {
            what,
            text: text.to_string(),
            problem: problem.into(),
        }
    }
}
