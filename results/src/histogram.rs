//! Latency histograms: one shape everywhere, and their text form in results.
//!
//! Every histogram is an HdrHistogram of microseconds from 1 µs to 60 s with 3
//! significant digits, so any two can be added exactly. In `results.json` a
//! histogram is its HdrHistogram V2 compressed (deflate) serialization in base64
//! ([`EncodedHistogram`]), which other HdrHistogram implementations can read.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hdrhistogram::{
    serialization::{Deserializer, Serializer as _, V2DeflateSerializer},
    Histogram,
};
use serde::{Deserialize, Serialize};

/// Lowest value tracked, in microseconds.
pub const LOWEST_MICROS: u64 = 1;
/// Highest value tracked, in microseconds (60 s); longer values are clamped to it.
pub const HIGHEST_MICROS: u64 = 60_000_000;
/// Significant decimal digits kept.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A new empty histogram of the one shape.
pub fn new_histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
        // The bounds are constants that satisfy the crate's rules (low >= 1,
        // high >= 2·low, digits <= 5), so this cannot fail.
        .expect("constant histogram bounds are valid")
}

/// Records a duration in microseconds, clamped into the tracked range.
pub fn record(histogram: &mut Histogram<u64>, value: Duration) {
    histogram.saturating_record(micros(value));
}

/// A duration as the value [`record`] records (microseconds, at least
/// [`LOWEST_MICROS`]; values above the range are clamped when recorded).
pub fn micros(value: Duration) -> u64 {
    u64::try_from(value.as_micros())
        .unwrap_or(u64::MAX)
        .max(LOWEST_MICROS)
}

/// Whether a latency of `latency_us` counts as at or above `quantile_us`, a quantile read
/// from a histogram of the one shape. A quantile is the highest value of its bucket, so
/// the very request that set it was usually a few µs below it: a latency in the same
/// bucket (3 significant digits: within 1/1024 of the value) reaches it.
pub fn reaches(latency_us: u64, quantile_us: u64) -> bool {
    latency_us >= lowest_equivalent(quantile_us)
}

/// The lowest value a histogram of the one shape counts in the same bucket as `value`.
/// With 3 significant digits a bucket holds 2,048 sub-buckets, so values below 2,048 µs
/// are exact and above that a bucket is 2^(⌊log2 value⌋ − 10) µs wide.
pub fn lowest_equivalent(value: u64) -> u64 {
    const EXACT_BELOW: u64 = 2048;
    if value < EXACT_BELOW {
        return value;
    }
    let width = 1u64 << (value.ilog2() - 10);
    value & !(width - 1)
}

/// Why a histogram could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistogramCodecError {
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("not an HdrHistogram V2 serialization: {0:?}")]
    Deserialize(hdrhistogram::serialization::DeserializeError),
    #[error("cannot serialize histogram: {0:?}")]
    Serialize(hdrhistogram::serialization::V2DeflateSerializeError),
    #[error("cannot add histograms: {0:?}")]
    Add(hdrhistogram::errors::AdditionError),
}

/// A histogram as stored in results: base64 of the V2 compressed serialization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncodedHistogram(pub String);

impl EncodedHistogram {
    /// Serializes a histogram.
    pub fn encode(histogram: &Histogram<u64>) -> Result<EncodedHistogram, HistogramCodecError> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(histogram, &mut bytes)
            .map_err(HistogramCodecError::Serialize)?;
        Ok(EncodedHistogram(STANDARD.encode(bytes)))
    }

    /// Reads the histogram back.
    pub fn decode(&self) -> Result<Histogram<u64>, HistogramCodecError> {
        let bytes = STANDARD.decode(&self.0)?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(HistogramCodecError::Deserialize)?;
        // Rebuild in the one shape so later additions never fail on bounds, even for
        // a histogram written by another tool with other bounds.
        let mut histogram = new_histogram();
        for value in decoded.iter_recorded() {
            histogram.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
        Ok(histogram)
    }

    /// Adds two encoded histograms.
    pub fn merge(
        a: &EncodedHistogram,
        b: &EncodedHistogram,
    ) -> Result<EncodedHistogram, HistogramCodecError> {
        let mut sum = a.decode()?;
        sum.add(b.decode()?).map_err(HistogramCodecError::Add)?;
        EncodedHistogram::encode(&sum)
    }
}

/// The usual percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarizes a histogram (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: histogram.len(),
            min_us: histogram.min(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p99_9_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn lowest_equivalent_is_hdrhistograms_own() {
        let histogram = new_histogram();
        let values = (0..40_000u64).chain((1..2_000).map(|k| k * 29_989)).chain([
            2_047,
            2_048,
            4_095,
            4_096,
            612_345,
            HIGHEST_MICROS,
        ]);
        for value in values {
            assert_eq!(
                lowest_equivalent(value),
                histogram.lowest_equivalent(value),
                "{value}"
            );
        }
    }

    #[test]
    fn the_request_that_set_the_p99_reaches_it() {
        // Two slow requests 100 µs apart in one 512 µs bucket: the p99 of 100 requests is
        // the bucket's top, above both.
        let mut histogram = new_histogram();
        for _ in 0..98 {
            histogram.record(10_000).unwrap();
        }
        histogram.record(612_100).unwrap();
        histogram.record(612_200).unwrap();
        let p99 = histogram.value_at_quantile(0.99);
        assert!(p99 > 612_200, "{p99}");
        assert!(reaches(612_100, p99) && reaches(612_200, p99));
        assert!(!reaches(611_000, p99));
    }

    #[test]
    fn an_encoded_histogram_decodes_to_the_same_counts() {
        let mut histogram = new_histogram();
        for micros in [1, 50, 999, 12_345, 500_000, 59_000_000] {
            histogram.record(micros).unwrap();
        }
        record(&mut histogram, Duration::from_secs(3600));
        let decoded = EncodedHistogram::encode(&histogram)
            .unwrap()
            .decode()
            .unwrap();
        assert_eq!(decoded, histogram);
        assert_eq!(decoded.max(), histogram.highest_equivalent(HIGHEST_MICROS));
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(EncodedHistogram("!!".into()).decode().is_err());
        assert!(EncodedHistogram("aGVsbG8=".into()).decode().is_err());
    }
}
