//! Reading `results.json` with errors that say where it is wrong.
//!
//! `faultline_results::Results::read` reports serde's message only; a CI job whose
//! gate fails on a truncated or hand-edited file needs the file, the JSON path and
//! the line, so reports read results through `serde_path_to_error` here.

use std::path::Path;

use faultline_results::{error::read_text, Results, SCHEMA_VERSION};

use crate::error::ReportError;

/// Reads and checks a results file.
pub fn read_results(path: &Path) -> Result<Results, ReportError> {
    let text = read_text(path, "reading results from")?;
    parse_results(&text, path)
}

/// Parses results from text; `path` names it in errors.
pub fn parse_results(text: &str, path: &Path) -> Result<Results, ReportError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let results: Results =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let json_path = error.path().to_string();
            let inner = error.into_inner();
            ReportError::BadResultsJson {
                path: path.into(),
                json_path: match json_path.as_str() {
                    "." => "the top level".into(),
                    // serde_path_to_error's mark for "before any key was read".
                    "?" => "the start of the document".into(),
                    _ => json_path,
                },
                line: inner.line(),
                column: inner.column(),
                problem: strip_position(&inner.to_string()),
            }
        })?;
    // Trailing garbage after the document is a broken file too.
    deserializer
        .end()
        .map_err(|inner| ReportError::BadResultsJson {
            path: path.into(),
            json_path: "the end of the document".into(),
            line: inner.line(),
            column: inner.column(),
            problem: strip_position(&inner.to_string()),
        })?;
    if results.schema_version != SCHEMA_VERSION {
        return Err(ReportError::BadResults {
            path: path.into(),
            problem: format!(
                "schema_version is {}, this faultline reads version {SCHEMA_VERSION}",
                results.schema_version
            ),
        });
    }
    Ok(results)
}

/// serde_json appends " at line L column C"; the error shows those separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}
