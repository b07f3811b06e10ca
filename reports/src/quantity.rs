//! Quantities with units: `450ms`, `2,500/s`, `99.9%`, `2.5GB`, `0`.
//!
//! Gates and claims are written by people, in the units the documents use; they are
//! parsed once into a [`Quantity`] whose value is in the dimension's base unit
//! (seconds, per second, a fraction, a count, bytes), so that comparing a limit with
//! a measured value never mixes units, and a limit in the wrong dimension (a time
//! for an error rate) is an error that names both.

use std::fmt;

use crate::error::ReportError;

/// What a number measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Seconds.
    Time,
    /// Per second.
    Rate,
    /// A fraction (0.001 is 0.1%).
    Ratio,
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
}

impl Dimension {
    /// How the dimension is written, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Dimension::Time => "a time such as 450ms or 1.2s",
            Dimension::Rate => "a rate such as 2500/s or 100000/min",
            Dimension::Ratio => "a percentage such as 0.1%",
            Dimension::Count => "a plain count such as 0",
            Dimension::Bytes => "a size such as 512MB or 2.5GB",
        }
    }
}

/// A number in a dimension's base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    pub value: f64,
    pub dimension: Dimension,
}

impl Quantity {
    pub fn new(value: f64, dimension: Dimension) -> Quantity {
        Quantity { value, dimension }
    }

    /// Parses `text`; the unit decides the dimension (none: a count).
    pub fn parse(text: &str) -> Result<Quantity, ReportError> {
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ',' && *c != '_')
            .collect();
        let split = cleaned
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(cleaned.len());
        let (number, unit) = cleaned.split_at(split);
        let value: f64 = number.parse().map_err(|_| {
            ReportError::spec("quantity", text, "expected a number followed by a unit")
        })?;
        if !value.is_finite() {
            return Err(ReportError::spec("quantity", text, "not a finite number"));
        }
        let (scale, dimension) = match unit {
            "" => (1.0, Dimension::Count),
            "us" | "µs" => (1e-6, Dimension::Time),
            "ms" => (1e-3, Dimension::Time),
            "s" | "sec" => (1.0, Dimension::Time),
            "min" => (60.0, Dimension::Time),
            "h" => (3600.0, Dimension::Time),
            "/s" | "/sec" | "req/s" | "msg/s" | "rps" => (1.0, Dimension::Rate),
            "/min" | "req/min" => (1.0 / 60.0, Dimension::Rate),
            "%" => (0.01, Dimension::Ratio),
            "B" => (1.0, Dimension::Bytes),
            "KB" | "kB" => (1e3, Dimension::Bytes),
            "MB" => (1e6, Dimension::Bytes),
            "GB" => (1e9, Dimension::Bytes),
            "KiB" => (1024.0, Dimension::Bytes),
            "MiB" => (1024.0 * 1024.0, Dimension::Bytes),
            "GiB" => (1024.0 * 1024.0 * 1024.0, Dimension::Bytes),
            other => {
                return Err(ReportError::spec(
                    "quantity",
                    text,
                    format!(
                        "unknown unit {other:?} (known: us ms s min h, /s /min, %, B KB MB GB KiB MiB GiB, or none for a count)"
                    ),
                ))
            }
        };
        Ok(Quantity::new(value * scale, dimension))
    }

    /// Parses `text` and checks it is in `dimension`.
    pub fn parse_in(text: &str, dimension: Dimension) -> Result<Quantity, ReportError> {
        let quantity = Quantity::parse(text)?;
        if quantity.dimension != dimension {
            return Err(ReportError::spec(
                "quantity",
                text,
                format!("this metric needs {}", dimension.example()),
            ));
        }
        Ok(quantity)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        match self.dimension {
            Dimension::Time => {
                if v == 0.0 {
                    write!(f, "0 ms")
                } else if v < 1e-3 {
                    write!(f, "{} µs", trim(v * 1e6))
                } else if v < 1.0 {
                    write!(f, "{} ms", trim(v * 1e3))
                } else if v < 120.0 {
                    write!(f, "{} s", trim(v))
                } else {
                    write!(f, "{} min", trim(v / 60.0))
                }
            }
            Dimension::Rate => write!(f, "{}/s", trim(v)),
            Dimension::Ratio => write!(f, "{}%", trim(v * 100.0)),
            Dimension::Count => write!(f, "{}", trim(v)),
            Dimension::Bytes => {
                if v >= 1e9 {
                    write!(f, "{} GB", trim(v / 1e9))
                } else if v >= 1e6 {
                    write!(f, "{} MB", trim(v / 1e6))
                } else {
                    write!(f, "{} B", trim(v))
                }
            }
        }
    }
}

/// Up to three decimals, without trailing zeros, with thousands kept readable.
fn trim(value: f64) -> String {
    let digits = if value.abs() >= 100.0 {
        1
    } else if value.abs() >= 1.0 {
        2
    } else {
        4
    };
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn units_decide_the_dimension_and_the_scale() {
        let q = Quantity::parse("450ms").unwrap();
        assert_eq!(q.dimension, Dimension::Time);
        assert!((q.value - 0.45).abs() < 1e-12);
        let q = Quantity::parse("2,500/s").unwrap();
        assert_eq!((q.value, q.dimension), (2500.0, Dimension::Rate));
        let q = Quantity::parse("100000/min").unwrap();
        assert!((q.value - 1666.666).abs() < 0.01);
        let q = Quantity::parse("99.9%").unwrap();
        assert!((q.value - 0.999).abs() < 1e-12);
        assert_eq!(Quantity::parse("0").unwrap().dimension, Dimension::Count);
        assert_eq!(Quantity::parse("2.5GB").unwrap().value, 2.5e9);
    }

    #[test]
    fn a_wrong_unit_or_dimension_is_an_error_that_says_what_is_expected() {
        let error = Quantity::parse("450 parsecs").unwrap_err().to_string();
        assert!(error.contains("unknown unit"), "{error}");
        let error = Quantity::parse_in("450", Dimension::Time)
            .unwrap_err()
            .to_string();
        assert!(error.contains("a time such as"), "{error}");
    }

    #[test]
    fn quantities_print_in_a_readable_unit() {
        assert_eq!(Quantity::new(0.45, Dimension::Time).to_string(), "450 ms");
        assert_eq!(
            Quantity::new(0.0001234, Dimension::Time).to_string(),
            "123.4 µs"
        );
        assert_eq!(Quantity::new(0.001, Dimension::Ratio).to_string(), "0.1%");
        assert_eq!(Quantity::new(2500.0, Dimension::Rate).to_string(), "2500/s");
    }
}
