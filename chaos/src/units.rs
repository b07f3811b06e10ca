//! Byte sizes, rates and durations written back for people: the short forms used in
//! fault labels and the proxy's messages (`1MB/s`, `64KiB`, `1s500ms`). Reading them is
//! `faultline_results::quantity`'s, the one parser every scenario table and flag uses.

use std::fmt::Write as _;
use std::time::Duration;

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
    fn formats_pick_the_unit_that_divides() {
        assert_eq!(format_rate(1_000_000), "1MB/s");
        assert_eq!(format_rate(1024 * 1024), "1MiB/s");
        assert_eq!(format_bytes(1500), "1500B");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
