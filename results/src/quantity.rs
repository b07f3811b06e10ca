//! Quantities as people write them in scenario files and flags, parsed one way for
//! every crate: `[load]`, `[[faults]]`, `[[gates]]`, the claims file and the command
//! line all read `250ms`, `64KB` or `0.1%` through this module, so one spelling means
//! one thing everywhere.
//!
//! What can be written (spaces, `,` and `_` between digits are ignored: `2,500/s`,
//! `64 KiB`):
//!
//! - durations: `ns`, `us` (`µs`), `ms`, `s` (`sec`), `m` (`min`), `h` (`hr`), `d`,
//!   with fractions (`1.5s`) and combined from largest to smallest (`1m30s`,
//!   `1h 30m`); a bare `0` is zero;
//! - sizes: `B`, then `KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`,
//!   `TiB` (powers of 1024); where a size is expected a plain number is bytes;
//! - byte rates: a size per second, `1MB/s`, `512KiB/s`; where one is expected a plain
//!   number is bytes per second;
//! - request rates: `2500/s`, `100000/min` (also `req/s`, `msg/s`, `rps`);
//! - percentages: `5%`, `0.1%`, held as fractions (`0.001`);
//! - plain numbers: counts, `0`, `1500`.
//!
//! **Case rule**: units are case-insensitive. `MS`, `Ms` and `ms` are milliseconds,
//! `kb`, `kB` and `KB` are kilobytes. It follows that a unit never depends on case to
//! say what it means: `m` alone is always minutes and `b` always bytes (there are no
//! bits), so a size always ends in `B` (`1MB`, not `1M`).
//!
//! A value is parsed into a [`Quantity`]: a number in its [`Dimension`]'s base unit
//! (seconds, per second, a fraction, a count, bytes, bytes per second). The typed
//! helpers [`parse_duration`], [`parse_bytes`] and [`parse_byte_rate`] give what a
//! setting needs. Every error quotes the text and says what was expected.

use std::{fmt, time::Duration};

/// What a number measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Seconds.
    Time,
    /// Per second (requests, messages, journeys).
    Rate,
    /// A fraction (0.001 is 0.1%).
    Ratio,
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
    /// Bytes per second.
    ByteRate,
}

impl Dimension {
    /// How the dimension is written, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Dimension::Time => "a time such as 250ms, 1.5s or 1m30s",
            Dimension::Rate => "a rate such as 2500/s or 100000/min",
            Dimension::Ratio => "a percentage such as 5% or 0.1%",
            Dimension::Count => "a plain count such as 0",
            Dimension::Bytes => "a size such as 64B, 1KB or 1MiB",
            Dimension::ByteRate => "a byte rate such as 1MB/s or 512KiB/s",
        }
    }
}

/// What [`Quantity::parse`] accepts, for error messages.
const ANY: &str = "a number with an optional unit: a time (250ms, 1.5s, 1m30s), a size \
                   (64B, 1KB, 1MiB), a byte rate (1MB/s), a rate (2500/s), a percentage \
                   (0.1%) or a plain number";

/// A quantity that does not parse, or is not what the setting needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{text:?}: {problem}; expected {expected}")]
pub struct QuantityError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
    /// What would have been right, with examples.
    pub expected: &'static str,
}

impl QuantityError {
    fn new(text: &str, problem: impl Into<String>, expected: &'static str) -> QuantityError {
        QuantityError {
            text: text.to_string(),
            problem: problem.into(),
            expected,
        }
    }
}

/// A number in a dimension's base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    pub value: f64,
    pub dimension: Dimension,
}

/// One number and the unit after it, as written (the unit lowercased).
struct Term<'a> {
    number: &'a str,
    unit: String,
}

/// Nanoseconds in a time unit, `None` when `unit` is not one.
fn time_unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" | "nsec" => 1,
        "us" | "µs" | "μs" | "usec" => 1_000,
        "ms" | "msec" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        _ => return None,
    })
}

/// Bytes in a size unit, `None` when `unit` is not one.
fn size_unit_bytes(unit: &str) -> Option<f64> {
    Some(match unit {
        "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// The scale and dimension of a unit that is not a time.
fn other_unit(unit: &str) -> Option<(f64, Dimension)> {
    if let Some(bytes) = size_unit_bytes(unit) {
        return Some((bytes, Dimension::Bytes));
    }
    if let Some(bytes) = unit.strip_suffix("/s").and_then(size_unit_bytes) {
        return Some((bytes, Dimension::ByteRate));
    }
    Some(match unit {
        "" => (1.0, Dimension::Count),
        "/s" | "/sec" | "req/s" | "msg/s" | "rps" => (1.0, Dimension::Rate),
        "/min" | "req/min" => (1.0 / 60.0, Dimension::Rate),
        "%" => (0.01, Dimension::Ratio),
        _ => return None,
    })
}

/// Splits cleaned text into number-unit terms (`1m30s` is two).
fn terms<'a>(text: &str, cleaned: &'a str) -> Result<Vec<Term<'a>>, QuantityError> {
    let mut terms = Vec::new();
    let mut rest = cleaned;
    while !rest.is_empty() {
        let signed = terms.is_empty() && (rest.starts_with('-') || rest.starts_with('+'));
        let digits_from = usize::from(signed);
        let number_end = rest[digits_from..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(rest.len(), |i| i + digits_from);
        let unit_end = rest[number_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| i + number_end);
        let number = &rest[..number_end];
        if number.is_empty() || number == "-" || number == "+" {
            return Err(QuantityError::new(
                text,
                "does not start with a number",
                ANY,
            ));
        }
        terms.push(Term {
            number,
            unit: rest[number_end..unit_end].to_lowercase(),
        });
        rest = &rest[unit_end..];
    }
    if terms.is_empty() {
        return Err(QuantityError::new(text, "is empty", ANY));
    }
    Ok(terms)
}

/// `text` without the spaces, `,` and `_` people put between digits.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != ',' && *c != '_')
        .collect()
}

fn number(text: &str, term: &Term<'_>) -> Result<f64, QuantityError> {
    let value: f64 = term
        .number
        .parse()
        .map_err(|_| QuantityError::new(text, format!("{:?} is not a number", term.number), ANY))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(QuantityError::new(text, "is not a finite number", ANY))
    }
}

/// Exact nanoseconds of a non-negative decimal number of `unit_nanos` (no binary
/// rounding: `0.3s` is 300 ms exactly).
fn decimal_nanos(text: &str, number: &str, unit_nanos: u128) -> Result<u128, QuantityError> {
    let too_large = || QuantityError::new(text, "is too large", Dimension::Time.example());
    let not_number = || {
        QuantityError::new(
            text,
            format!("{number:?} is not a number"),
            Dimension::Time.example(),
        )
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(not_number());
    }
    // Digits below a nanosecond of a day cannot matter; 18 keep u128 far from overflow.
    let fraction = &fraction[..fraction.len().min(18)];
    let parse = |digits: &str| -> Result<u128, QuantityError> {
        if digits.is_empty() {
            Ok(0)
        } else {
            digits.parse().map_err(|_| not_number())
        }
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let (whole, fraction) = (parse(whole)?, parse(fraction)?);
    let scaled = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .and_then(|n| n.checked_mul(unit_nanos))
        .ok_or_else(too_large)?;
    Ok(scaled / scale)
}

impl Quantity {
    pub fn new(value: f64, dimension: Dimension) -> Quantity {
        Quantity { value, dimension }
    }

    /// Parses `text`; the unit decides the dimension (none: a count).
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let cleaned = clean(text);
        let terms = terms(text, &cleaned)?;
        if terms.len() == 1 && time_unit_nanos(&terms[0].unit).is_none() {
            let term = &terms[0];
            let (scale, dimension) = other_unit(&term.unit).ok_or_else(|| {
                QuantityError::new(text, format!("unknown unit {:?}", term.unit), ANY)
            })?;
            return Ok(Quantity::new(number(text, term)? * scale, dimension));
        }
        let negative = cleaned.starts_with('-');
        let nanos = time_nanos(text, &terms)?;
        let seconds = nanos as f64 / 1e9;
        Ok(Quantity::new(
            if negative { -seconds } else { seconds },
            Dimension::Time,
        ))
    }

    /// Parses `text` and checks it is in `dimension`. Where bytes or bytes per second
    /// are expected a plain number is taken as such, and a bare `0` is any zero.
    pub fn parse_in(text: &str, dimension: Dimension) -> Result<Quantity, QuantityError> {
        let mut quantity = Quantity::parse(text).map_err(|e| QuantityError {
            expected: dimension.example(),
            ..e
        })?;
        let plain_bytes = matches!(dimension, Dimension::Bytes | Dimension::ByteRate);
        if quantity.dimension == Dimension::Count && (plain_bytes || quantity.value == 0.0) {
            quantity.dimension = dimension;
        }
        if quantity.dimension != dimension {
            return Err(QuantityError::new(
                text,
                format!("is {}", article(quantity.dimension)),
                dimension.example(),
            ));
        }
        Ok(quantity)
    }
}

/// "a time", "a size", ... for saying what a value was instead.
fn article(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Time => "a time",
        Dimension::Rate => "a rate",
        Dimension::Ratio => "a percentage",
        Dimension::Count => "a plain number",
        Dimension::Bytes => "a size",
        Dimension::ByteRate => "a byte rate",
    }
}

/// The nanoseconds of time terms, each a time unit (a sign only on the first).
fn time_nanos(text: &str, terms: &[Term<'_>]) -> Result<u128, QuantityError> {
    let mut total: u128 = 0;
    for term in terms {
        let unit_nanos = time_unit_nanos(&term.unit).ok_or_else(|| {
            let problem = if term.unit.is_empty() {
                format!("{:?} has no unit", term.number)
            } else {
                format!("{:?} is not a time unit", term.unit)
            };
            QuantityError::new(
                text,
                format!("{problem}; only times combine, as in 1m30s"),
                Dimension::Time.example(),
            )
        })?;
        let digits = term.number.trim_start_matches(['-', '+']);
        let nanos = decimal_nanos(text, digits, unit_nanos)?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| QuantityError::new(text, "is too large", Dimension::Time.example()))?;
    }
    Ok(total)
}

/// Parses a duration (`250ms`, `1.5s`, `1m30s`, `0`); negative ones are refused.
pub fn parse_duration(text: &str) -> Result<Duration, QuantityError> {
    let expected = Dimension::Time.example();
    let cleaned = clean(text);
    if cleaned.starts_with('-') {
        return Err(QuantityError::new(text, "is negative", expected));
    }
    let terms = terms(text, &cleaned).map_err(|e| QuantityError { expected, ..e })?;
    if let [term] = terms.as_slice() {
        if term.unit.is_empty() && number(text, term).is_ok_and(|n| n == 0.0) {
            return Ok(Duration::ZERO);
        }
        if time_unit_nanos(&term.unit).is_none() {
            // Says what the text is instead, when it is something else.
            Quantity::parse_in(text, Dimension::Time)?;
        }
    }
    let nanos = time_nanos(text, &terms)?;
    let seconds = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| QuantityError::new(text, "is too large", expected))?;
    // The remainder is below 10⁹, so it fits.
    Ok(Duration::new(seconds, (nanos % 1_000_000_000) as u32))
}

/// A whole, positive number of bytes from a quantity in bytes (rounded down).
fn whole_bytes(text: &str, value: f64, expected: &'static str) -> Result<u64, QuantityError> {
    if value <= 0.0 {
        return Err(QuantityError::new(
            text,
            "must be greater than zero",
            expected,
        ));
    }
    if value >= u64::MAX as f64 {
        return Err(QuantityError::new(text, "is too large", expected));
    }
    // `as` truncates, which is the rounding down wanted; the range was checked above.
    match value as u64 {
        0 => Err(QuantityError::new(text, "is less than one byte", expected)),
        bytes => Ok(bytes),
    }
}

/// Parses a size in bytes (`64KB`, `1MiB`, `1500`), greater than zero; a fraction
/// of a byte is rounded down.
pub fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    let quantity = Quantity::parse_in(text, Dimension::Bytes)?;
    whole_bytes(text, quantity.value, Dimension::Bytes.example())
}

/// Parses a rate in bytes per second (`1MB/s`, `512KiB/s`, `100000`), greater than
/// zero.
pub fn parse_byte_rate(text: &str) -> Result<u64, QuantityError> {
    let quantity = Quantity::parse_in(text, Dimension::ByteRate)?;
    whole_bytes(text, quantity.value, Dimension::ByteRate.example())
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        match self.dimension {
            Dimension::Time => {
                // The unit follows the size, whatever the sign: a difference of two
                // latencies (kafka-bench's "batching adds") may be negative.
                let size = v.abs();
                if v == 0.0 {
                    write!(f, "0 ms")
                } else if size < 1e-3 {
                    write!(f, "{} µs", trim(v * 1e6))
                } else if size < 1.0 {
                    write!(f, "{} ms", trim(v * 1e3))
                } else if size < 120.0 {
                    write!(f, "{} s", trim(v))
                } else {
                    write!(f, "{} min", trim(v / 60.0))
                }
            }
            Dimension::Rate => write!(f, "{}/s", trim(v)),
            Dimension::Ratio => write!(f, "{}%", trim(v * 100.0)),
            Dimension::Count => write!(f, "{}", trim(v)),
            Dimension::Bytes => write!(f, "{}", bytes(v)),
            Dimension::ByteRate => write!(f, "{}/s", bytes(v)),
        }
    }
}

/// Bytes in the decimal unit that keeps the number short.
fn bytes(v: f64) -> String {
    if v >= 1e9 {
        format!("{} GB", trim(v / 1e9))
    } else if v >= 1e6 {
        format!("{} MB", trim(v / 1e6))
    } else {
        format!("{} B", trim(v))
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
        let q = Quantity::parse("1MB/s").unwrap();
        assert_eq!((q.value, q.dimension), (1e6, Dimension::ByteRate));
    }

    #[test]
    fn a_wrong_unit_or_dimension_is_an_error_that_says_what_is_expected() {
        let error = Quantity::parse("450 parsecs").unwrap_err().to_string();
        assert!(error.contains("unknown unit"), "{error}");
        assert!(error.contains("\"450 parsecs\""), "{error}");
        let error = Quantity::parse_in("450", Dimension::Time)
            .unwrap_err()
            .to_string();
        assert!(error.contains("a time such as"), "{error}");
        let error = parse_duration("5%").unwrap_err().to_string();
        assert_eq!(
            error,
            "\"5%\": is a percentage; expected a time such as 250ms, 1.5s or 1m30s"
        );
        let error = parse_bytes("fast").unwrap_err().to_string();
        assert!(
            error.starts_with("\"fast\": does not start with a number"),
            "{error}"
        );
        assert!(
            error.ends_with("expected a size such as 64B, 1KB or 1MiB"),
            "{error}"
        );
    }

    #[test]
    fn durations_parse_exactly_with_fractions_and_compounds() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.3s").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45min").unwrap(), Duration::from_secs(2700));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn durations_that_are_not_are_refused_with_the_text() {
        let error = parse_duration("-1s").unwrap_err();
        assert_eq!(error.problem, "is negative");
        let error = parse_duration("5").unwrap_err().to_string();
        assert!(error.starts_with("\"5\": is a plain number"), "{error}");
        let error = parse_duration("1m30").unwrap_err().to_string();
        assert!(error.contains("\"30\" has no unit"), "{error}");
        let error = parse_duration("1s5%").unwrap_err().to_string();
        assert!(error.contains("\"%\" is not a time unit"), "{error}");
        assert!(parse_duration("").unwrap_err().problem.contains("empty"));
        assert!(parse_duration("five").is_err());
    }

    #[test]
    fn units_are_case_insensitive_and_m_is_always_minutes() {
        assert_eq!(parse_duration("250MS").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_bytes("1.5mb").unwrap(), 1_500_000);
        assert_eq!(parse_bytes("1kB").unwrap(), parse_bytes("1KB").unwrap());
        assert_eq!(parse_duration("2M").unwrap(), Duration::from_secs(120));
        assert!(parse_bytes("1M").is_err());
    }

    #[test]
    fn sizes_and_rates_parse_with_units() {
        assert_eq!(parse_bytes("1500").unwrap(), 1500);
        assert_eq!(parse_bytes("64B").unwrap(), 64);
        assert_eq!(parse_bytes("64KB").unwrap(), 64_000);
        assert_eq!(parse_bytes("64 KiB").unwrap(), 65_536);
        assert_eq!(parse_bytes("1.5mb").unwrap(), 1_500_000);
        assert_eq!(parse_byte_rate("1MB/s").unwrap(), 1_000_000);
        assert_eq!(parse_byte_rate("2MiB/s").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_byte_rate("100000").unwrap(), 100_000);
        assert!(parse_byte_rate("0MB/s").is_err());
        assert!(parse_byte_rate("-1MB/s").is_err());
        assert!(parse_byte_rate("fast").is_err());
        assert!(parse_bytes("10 parsecs").is_err());
        let error = parse_byte_rate("1MB").unwrap_err().to_string();
        assert!(error.contains("is a size"), "{error}");
        assert_eq!(
            parse_bytes("0.5").unwrap_err().problem,
            "is less than one byte"
        );
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
        assert_eq!(
            Quantity::new(2e6, Dimension::ByteRate).to_string(),
            "2 MB/s"
        );
    }

    #[test]
    fn a_negative_time_prints_in_the_unit_of_its_size() {
        assert_eq!(
            Quantity::new(-0.0123, Dimension::Time).to_string(),
            "-12.3 ms"
        );
        assert_eq!(Quantity::new(-2.5, Dimension::Time).to_string(), "-2.5 s");
        assert_eq!(
            Quantity::new(-0.0001234, Dimension::Time).to_string(),
            "-123.4 µs"
        );
    }
}
