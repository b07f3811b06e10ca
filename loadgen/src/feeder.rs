//! Feeders: rows of data, from a CSV or JSON-lines file, that fill the `{{column}}`
//! placeholders of request templates (module `template`).
//!
//! A [`Feeder`] is read whole at start (the header row of a CSV, or the keys of a
//! JSON-lines file's first object, name the columns), so a missing column is found
//! before anything is sent. During the run every templated request that uses a column
//! takes one row, shared by all its templates (path, headers and body of one request
//! agree), in the order of its [`FeederMode`]. A `once` feeder ends the run when its
//! rows run out; the engine then says so in the results.

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use rand::Rng;

use crate::error::LoadError;

/// The order rows are handed out in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeederMode {
    /// In file order, starting again at the first row after the last.
    #[default]
    Circular,
    /// In file order, each row once; the run ends when they run out.
    Once,
    /// A row picked at random for each request.
    Random,
}

/// The rows of a feeder file and the cursor into them.
pub struct Feeder {
    /// The file, for messages.
    pub path: String,
    pub mode: FeederMode,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Rows handed out so far (`circular` and `once`).
    taken: AtomicU64,
}

impl std::fmt::Debug for Feeder {
    // The rows themselves can be large: a feeder prints as its file and shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("columns", &self.columns)
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl Feeder {
    /// Reads a feeder file: `.csv` (with a header row) or `.jsonl` / `.ndjson` (one
    /// JSON object a line).
    pub fn read(path: &Path, mode: FeederMode) -> Result<Feeder, LoadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Feeder {
            path: name.clone(),
            reason: format!("cannot be read: {e}"),
        })?;
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match extension.to_ascii_lowercase().as_str() {
            "csv" => Feeder::from_csv(&name, &text, mode),
            "jsonl" | "ndjson" => Feeder::from_json_lines(&name, &text, mode),
            _ => Err(LoadError::Feeder {
                path: name,
                reason: "unknown format: name it .csv (header row first) or .jsonl".into(),
            }),
        }
    }

    /// Parses CSV text whose first row names the columns.
    pub fn from_csv(path: &str, text: &str, mode: FeederMode) -> Result<Feeder, LoadError> {
        let bad = |reason: String| LoadError::Feeder {
            path: path.to_string(),
            reason,
        };
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| bad(format!("header row: {e}")))?
            .iter()
            .map(|c| c.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            // The csv crate checks every row has the header's number of fields.
            let record = record.map_err(|e| bad(e.to_string()))?;
            rows.push(record.iter().map(str::to_string).collect());
        }
        Feeder::new(path, columns, rows, mode)
    }

    /// Parses JSON lines: the first object's keys name the columns, and every later
    /// object must have them. Strings are used as they are, other values as JSON.
    pub fn from_json_lines(path: &str, text: &str, mode: FeederMode) -> Result<Feeder, LoadError> {
        let bad = |line: usize, reason: String| LoadError::Feeder {
            path: path.to_string(),
            reason: format!("line {line}: {reason}"),
        };
        let mut columns: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            if line.trim().is_empty() {
                continue;
            }
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).map_err(|e| bad(number, e.to_string()))?;
            if columns.is_empty() {
                columns = object.keys().cloned().collect();
            }
            let row = columns
                .iter()
                .map(|column| match object.get(column) {
                    Some(serde_json::Value::String(text)) => Ok(text.clone()),
                    Some(other) => Ok(other.to_string()),
                    None => Err(bad(number, format!("no key {column:?}"))),
                })
                .collect::<Result<Vec<String>, LoadError>>()?;
            rows.push(row);
        }
        Feeder::new(path, columns, rows, mode)
    }

    fn new(
        path: &str,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
        mode: FeederMode,
    ) -> Result<Feeder, LoadError> {
        if rows.is_empty() {
            return Err(LoadError::Feeder {
                path: path.to_string(),
                reason: "no rows of data".into(),
            });
        }
        Ok(Feeder {
            path: path.to_string(),
            mode,
            columns,
            rows,
            taken: AtomicU64::new(0),
        })
    }

    /// The column names, in file order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// How many rows the file has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Always false: a feeder without rows is refused when read.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The next row for one request (`None`: a `once` feeder has run out).
    pub(crate) fn take(&self, rng: &mut impl Rng) -> Option<&[String]> {
        let rows = self.rows.len();
        let index = match self.mode {
            FeederMode::Random => rng.random_range(0..rows),
            FeederMode::Circular => (self.taken.fetch_add(1, Ordering::Relaxed) as usize) % rows,
            FeederMode::Once => {
                let taken = self.taken.fetch_add(1, Ordering::Relaxed) as usize;
                if taken >= rows {
                    return None;
                }
                taken
            }
        };
        self.rows.get(index).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn csv_and_json_lines_give_the_same_columns_and_rows() {
        let csv =
            Feeder::from_csv("u.csv", "id,name\n1,ann\n2,\"b, c\"\n", FeederMode::Once).unwrap();
        let json = Feeder::from_json_lines(
            "u.jsonl",
            "{\"id\": 1, \"name\": \"ann\"}\n{\"id\": 2, \"name\": \"b, c\"}\n",
            FeederMode::Once,
        )
        .unwrap();
        let mut rng = rand::rng();
        for feeder in [csv, json] {
            assert_eq!(feeder.columns(), ["id", "name"]);
            assert_eq!(feeder.take(&mut rng).unwrap(), ["1", "ann"]);
            assert_eq!(feeder.take(&mut rng).unwrap(), ["2", "b, c"]);
            assert!(feeder.take(&mut rng).is_none(), "once: two rows, then none");
        }
    }

    #[test]
    fn a_circular_feeder_wraps_around() {
        let feeder = Feeder::from_csv("f.csv", "n\na\nb\n", FeederMode::Circular).unwrap();
        let mut rng = rand::rng();
        let taken: Vec<String> = (0..5)
            .map(|_| feeder.take(&mut rng).unwrap()[0].clone())
            .collect();
        assert_eq!(taken, ["a", "b", "a", "b", "a"]);
    }

    #[test]
    fn bad_feeder_files_name_the_file_and_the_line() {
        let err = Feeder::from_json_lines("f.jsonl", "{\"a\":1}\n{\"b\":2}\n", FeederMode::Once)
            .unwrap_err();
        assert!(err.is_usage());
        assert!(
            err.to_string().contains("f.jsonl") && err.to_string().contains("line 2"),
            "{err}"
        );
        let err = Feeder::from_csv("f.csv", "a,b\n1\n", FeederMode::Once).unwrap_err();
        assert!(err.to_string().contains("f.csv"), "{err}");
        let err = Feeder::from_csv("e.csv", "a,b\n", FeederMode::Once).unwrap_err();
        assert!(err.to_string().contains("no rows"), "{err}");
        let err = Feeder::read(Path::new("/nonexistent/f.csv"), FeederMode::Once).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/f.csv"), "{err}");
    }
}
