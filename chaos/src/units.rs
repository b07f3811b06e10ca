//! Byte sizes and rates as people write them (`64KB`, `1MiB`, `1MB/s`), shared by the
//! scenario file and the `faultline proxy` flags, and the short forms used in fault labels.

use std::fmt::Write as _;
use std::time::Duration;

/// Parses a byte count: a plain number of bytes (`65536`) or a number with a unit:
/// `B`, `KB`/`MB`/`GB` (powers of 1000) or `KiB`/`MiB`/`GiB` (powers of 1024),
/// case-insensitive. Fractions are allowed (`1.5MB`); the result is rounded down.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 64KB, 1MiB, 1500)"))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (expected B, KB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes <= 0.0 {
        return Err(format!("{text:?}: a size must be greater than zero"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    // `as` saturates and truncates; the range was checked above.
    let whole = bytes as u64;
    if whole == 0 {
        return Err(format!("{text:?} is less than one byte"));
    }
    Ok(whole)
}

/// Parses a rate in bytes per second: a size as [`parse_bytes`] reads it, optionally
/// followed by `/s` (`1MB/s`, `512KiB/s`, `100000`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let size = trimmed
        .strip_suffix("/s")
        .or_else(|| trimmed.strip_suffix("/S"))
        .unwrap_or(trimmed);
    parse_bytes(size).map_err(|e| format!("{e}; a rate is bytes per second, e.g. 1MB/s"))
}

/// `1MB`, `64KiB` or `1500B`: the largest unit that divides the count exactly.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (1 << 30, "GiB"),
        (1_000_000_000, "GB"),
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
        (1 << 10, "KiB"),
        (1_000, "KB"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// `1MB/s`.
pub fn format_rate(bytes_per_second: u64) -> String {
    format!("{}/s", format_bytes(bytes_per_second))
}

/// `200ms`, `1s 500ms` without spaces (`1s500ms`), so labels stay one word per value.
pub fn format_duration(duration: Duration) -> String {
    let mut out = String::new();
    // Below a millisecond humantime prints µs and ns; keep them, they are rare.
    let text = humantime::format_duration(duration).to_string();
    for part in text.split_whitespace() {
        let _ = write!(out, "{part}");
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sizes_and_rates_parse_with_units() {
        assert_eq!(parse_bytes("1500").unwrap(), 1500);
        assert_eq!(parse_bytes("64KB").unwrap(), 64_000);
        assert_eq!(parse_bytes("64 KiB").unwrap(), 65_536);
        assert_eq!(parse_bytes("1.5mb").unwrap(), 1_500_000);
        assert_eq!(parse_rate("1MB/s").unwrap(), 1_000_000);
        assert_eq!(parse_rate("2MiB/s").unwrap(), 2 * 1024 * 1024);
        assert!(parse_rate("0MB/s").is_err());
        assert!(parse_rate("-1MB/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_bytes("10 parsecs").is_err());
    }

    #[test]
    fn formats_pick_the_unit_that_divides() {
        assert_eq!(format_rate(1_000_000), "1MB/s");
        assert_eq!(format_rate(1024 * 1024), "1MiB/s");
        assert_eq!(format_bytes(1500), "1500B");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
