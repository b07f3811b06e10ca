//! Gates as a scenario file writes them: `[[gates]]` tables of a metric and a bound.
//!
//! ```toml
//! [[gates]]
//! metric = "http.p99"
//! max = "450ms"
//! ```
//!
//! A [`GateSpec`] keeps the bounds as written (quantities, see [`crate::quantity`]),
//! because results record the gates a run was asked to hold and a report regenerated
//! from results alone judges them again. `faultline-reports` turns them into gates
//! with a metric and a limit and judges them. `[[gates]]` is the one spelling: a
//! `[[gate]]` table is refused with its line, not ignored.

use serde::{Deserialize, Serialize};

/// A gate as written in a scenario: a metric and a bound (`max` or `min`, with
/// units, e.g. `450ms`, `1%`, `900/s`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
}

/// A gate of a scenario file and the line its table starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioGate {
    /// 1-based.
    pub line: usize,
    pub spec: GateSpec,
}

/// Why the gates of a scenario file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatesError {
    /// The text is not TOML, or a `[[gates]]` table is malformed (toml's message
    /// names the line).
    #[error("{0}")]
    Toml(String),
    /// A `[[gate]]` table: the spelling is `[[gates]]`.
    #[error("line {line}: [[gate]] is not a table of scenario files; gates are [[gates]] tables")]
    Singular { line: usize },
}

/// Reads the `[[gates]]` tables of scenario text; the other tables are other
/// crates' and are left to them, but a `[[gate]]` table is an error.
pub fn scenario_gates(text: &str) -> Result<Vec<ScenarioGate>, GatesError> {
    #[derive(Deserialize)]
    struct Document {
        #[serde(default)]
        gates: Vec<toml::Spanned<GateSpec>>,
        #[serde(default)]
        gate: Option<toml::Spanned<toml::Value>>,
    }
    let document: Document = toml::from_str(text).map_err(|e| GatesError::Toml(e.to_string()))?;
    if let Some(gate) = document.gate {
        return Err(GatesError::Singular {
            line: header_line(text, "gate", gate.span().start),
        });
    }
    Ok(document
        .gates
        .into_iter()
        .map(|spanned| ScenarioGate {
            line: line_of(text, spanned.span().start),
            spec: spanned.into_inner(),
        })
        .collect())
}

/// The line of the first `[[name]]` header, or of `offset` when there is none (an
/// inline `gate = ...` key).
fn header_line(text: &str, name: &str, offset: usize) -> usize {
    let header = format!("[[{name}]]");
    text.lines()
        .position(|line| line.trim_start().starts_with(&header))
        .map_or_else(|| line_of(text, offset), |index| index + 1)
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn gates_tables_are_read_with_their_lines() {
        let text = "[load]\nrate = 5\n\n[[gates]]\nmetric = \"http.p99\"\nmax = \"450ms\"\n";
        let gates = scenario_gates(text).unwrap();
        assert_eq!(gates.len(), 1);
        assert_eq!(gates[0].line, 4);
        assert_eq!(gates[0].spec.max.as_deref(), Some("450ms"));
    }

    #[test]
    fn a_gate_table_is_an_error_that_names_its_line_and_the_spelling() {
        let text = "[load]\nrate = 5\n\n[[gate]]\nmetric = \"http.p99\"\nmax = \"450ms\"\n";
        let error = scenario_gates(text).unwrap_err();
        assert_eq!(error, GatesError::Singular { line: 4 });
        assert!(error.to_string().contains("[[gates]]"), "{error}");
    }

    #[test]
    fn an_unknown_key_in_a_gate_is_an_error() {
        let text = "[[gates]]\nmetric = \"http.p99\"\nmaximum = \"450ms\"\n";
        let error = scenario_gates(text).unwrap_err().to_string();
        assert!(error.contains("maximum"), "{error}");
    }
}
