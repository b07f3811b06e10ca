//! What can go wrong with results: reading, writing, merging, and the version; and
//! [`FileError`], the one shape of "this file could not be read or written" that the
//! crates reading and writing scenario, results and report files share.

use std::path::{Path, PathBuf};

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
    #[error(transparent)]
    File(#[from] FileError),
    /// A results file that is not JSON of the results format.
    #[error("results {path}: {reason}")]
    Json { path: PathBuf, reason: String },
}

/// A file or directory that could not be read, written or created, with what was
/// being done (`reading results from`, `writing`, ...).
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FileError {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Reads a whole text file; `action` says why, e.g. `reading claims from`.
pub fn read_text(path: &Path, action: &'static str) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::new(action, path, source))
}

/// Writes `text` to `path`, creating the directory it goes in.
pub fn write_text(path: &Path, text: &str) -> Result<(), FileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| FileError::new("creating directory", dir, source))?;
    }
    std::fs::write(path, text).map_err(|source| FileError::new("writing", path, source))
}
