//! What can go wrong with results: reading, writing, merging, and the version.

use std::path::PathBuf;

use crate::{histogram::HistogramCodecError, SCHEMA_VERSION};

/// What went wrong reading, writing or merging results.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("schema version {found} is not {SCHEMA_VERSION}, the version this faultline reads")]
    SchemaVersion { found: u32 },
    #[error(transparent)]
    Histogram(#[from] HistogramCodecError),
    #[error("bad timestamp {0:?}: {1}")]
    Timestamp(String, String),
    /// A results file could not be read or written.
    #[error("{action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A results file that is not JSON of the results format.
    #[error("results {path}: {reason}")]
    Json { path: PathBuf, reason: String },
}
