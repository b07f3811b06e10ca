//! The ledger of writes: every order the system acknowledged, and every order whose
//! fate the client could not know (no response, or a 5xx that may have come after
//! the commit), one JSON object per line.
//!
//! The consistency checker reads it after the drain: an acknowledged order must be
//! found in a terminal state; an indeterminate one may or may not exist (Jepsen's
//! `:info` operations), and is looked up by its idempotency key. Each line is
//! written and flushed as it happens, so a run that dies still leaves every
//! acknowledgement it saw.

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use faultline_results::{error::read_text, FileError};

use crate::error::LoadError;

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub outcome: WriteOutcome,
    /// The order's id (acknowledged writes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The `Idempotency-Key` the order was placed with.
    pub idempotency_key: String,
    /// The user (email) who placed it.
    pub user: String,
    pub product_id: i64,
    pub quantity: i64,
    /// When the response (or the failure) arrived, RFC 3339 with microseconds.
    pub at: String,
    /// HTTP status of the acknowledgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The response body of the acknowledgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
    /// Why the outcome is unknown (indeterminate writes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether the system acknowledged a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    Acknowledged,
    Indeterminate,
}

/// The ledger file, shared by every journey of a run.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: Mutex<File>,
}

impl Ledger {
    /// Creates (or truncates) the ledger file.
    pub fn create(path: &Path) -> Result<Ledger, LoadError> {
        let file = File::create(path)
            .map_err(|source| FileError::new("creating the write ledger", path, source))?;
        Ok(Ledger {
            path: path.into(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an order the system acknowledged.
    pub fn acknowledged(
        &self,
        order_id: &str,
        key: &str,
        user: &str,
        product_id: i64,
        status: u16,
        response: serde_json::Value,
    ) {
        self.append(LedgerEntry {
            outcome: WriteOutcome::Acknowledged,
            order_id: Some(order_id.into()),
            idempotency_key: key.into(),
            user: user.into(),
            product_id,
            quantity: 1,
            at: now(),
            status: Some(status),
            response: Some(response),
            error: None,
        });
    }

    /// Records an order whose fate the client does not know.
    pub fn indeterminate(&self, key: &str, user: &str, product_id: i64, error: &str) {
        self.append(LedgerEntry {
            outcome: WriteOutcome::Indeterminate,
            order_id: None,
            idempotency_key: key.into(),
            user: user.into(),
            product_id,
            quantity: 1,
            at: now(),
            status: None,
            response: None,
            error: Some(error.into()),
        });
    }

    fn append(&self, entry: LedgerEntry) {
        let mut line = match serde_json::to_vec(&entry) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "ledger entry could not be serialized");
                return;
            }
        };
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // One write per line, so a crash leaves whole lines; a failure is loud, since
        // a ledger with holes would make the checker report losses that are not real.
        if let Err(error) = file.write_all(&line) {
            tracing::error!(%error, path = %self.path.display(), "writing the ledger failed");
        }
    }

    /// Reads a ledger file back (for the checker and tests).
    pub fn read(path: &Path) -> Result<Vec<LedgerEntry>, LoadError> {
        let text = read_text(path, "reading the write ledger")?;
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                serde_json::from_str(line).map_err(|e| LoadError::BadResults {
                    path: format!("{}:{}", path.display(), index + 1),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}

fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}
