//! The one error type of the load engine.
//!
//! Every variant names what was wrong and where, so the CLI can print it as is.
//! [`LoadError::is_usage`] tells the usage errors (bad input, unreachable target),
//! which the binary maps to exit code 2, from failures while running or writing.

/// What went wrong before, during or after a load run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target URL does not parse or names something the engine cannot drive.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    /// Connecting once to the target before the run failed.
    #[error("target {target} is unreachable: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: std::io::Error,
    },

    /// The TLS handshake before the run failed (unknown CA, name mismatch, protocol
    /// version, ...): `cause` says which and what to do.
    #[error("TLS handshake with {target} failed: {cause} ({source})")]
    TlsHandshake {
        target: String,
        cause: String,
        #[source]
        source: std::io::Error,
    },

    /// A request rate that is zero, negative or not a number.
    #[error("bad rate {rate}: the rate must be a positive number of requests per second")]
    InvalidRate { rate: f64 },

    /// A `--stages` string that does not parse.
    #[error(transparent)]
    Stages(#[from] StageParseError),

    /// Any other invalid option (names the option and the problem).
    #[error("bad {option}: {reason}")]
    InvalidArgument {
        option: &'static str,
        reason: String,
    },

    /// Reading or writing a file (body, ledger).
    #[error(transparent)]
    File(#[from] faultline_results::FileError),

    /// A journey run could not set itself up against the target (catalogue, users).
    #[error("journey set-up, {step}: {reason}")]
    JourneySetup { step: String, reason: String },

    /// Goose refused its configuration or failed while running.
    #[error("goose: {0}")]
    Goose(String),

    /// A scenario file that cannot be read or is not valid (names the file and the field).
    #[error("scenario {path}: {reason}")]
    Scenario { path: String, reason: String },

    /// A request template that does not compile: names the request and the part
    /// (`request 2 (POST /orders) body`) and the 1-based column of the `{{`.
    #[error("template in {place}, column {column}: {reason}")]
    Template {
        place: String,
        column: usize,
        reason: String,
    },

    /// A feeder file that cannot be read or parsed (names the file and the line).
    #[error("feeder {path}: {reason}")]
    Feeder { path: String, reason: String },

    /// A results file that is not valid JSON or does not match the schema this version reads.
    #[error("results {path}: {reason}")]
    BadResults { path: String, reason: String },

    /// Reading, writing or merging results files.
    #[error(transparent)]
    Results(#[from] faultline_results::ResultsError),
}

impl LoadError {
    /// True for errors caused by the user's input or target (exit code 2), as opposed
    /// to failures while running or writing results.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            LoadError::BadUrl { .. }
                | LoadError::Unreachable { .. }
                | LoadError::TlsHandshake { .. }
                | LoadError::InvalidRate { .. }
                | LoadError::Stages(_)
                | LoadError::InvalidArgument { .. }
                | LoadError::JourneySetup { .. }
                | LoadError::Scenario { .. }
                | LoadError::Template { .. }
                | LoadError::Feeder { .. }
        )
    }

    /// The process exit code for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.is_usage() {
            2
        } else {
            1
        }
    }
}

/// A malformed stage string, with the stage and the column where parsing stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed stage string {input:?}: stage {stage} at column {column}: {problem}")]
pub struct StageParseError {
    /// The whole string as given.
    pub input: String,
    /// 1-based index of the stage (comma-separated part) that is wrong; 0 when the
    /// problem concerns the whole string.
    pub stage: usize,
    /// 1-based column (in characters) in `input` where the problem starts.
    pub column: usize,
    /// What is wrong, in words.
    pub problem: String,
}
