//! [`LatencyHistogram`]: send latencies in microseconds, mergeable across cores.
//!
//! The recording structure (an HdrHistogram, 3 significant digits from 1 µs to 1 h) stays
//! private: the public type answers percentiles and hands out its buckets, so the crate makes no
//! promise about a third-party type.

use std::fmt;

use hdrhistogram::Histogram;

/// Largest latency recorded exactly enough (1 hour); longer ones are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// Send latencies (microseconds, retries included) with 3 significant digits.
///
/// ```
/// use rocketmq_tpc::LatencyHistogram;
///
/// let empty = LatencyHistogram::default();
/// assert!(empty.is_empty());
/// assert_eq!(empty.percentile_us(99.0), 0);
/// ```
#[derive(Clone)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            inner: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
        }
    }
}

impl LatencyHistogram {
    /// Records one latency (0 counts as 1 µs, past an hour as an hour).
    pub fn record(&mut self, micros: u64) {
        let _ = self.inner.record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let _ = self.inner.add(&other.inner);
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The latency at `percentile` (0–100) in µs; 0 when empty.
    pub fn percentile_us(&self, percentile: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let percentile = if percentile.is_nan() {
            0.0
        } else {
            percentile.clamp(0.0, 100.0)
        };
        self.inner.value_at_percentile(percentile)
    }

    /// Smallest recorded latency in µs (0 when empty).
    pub fn min_us(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.inner.min()
        }
    }

    /// Largest recorded latency in µs (0 when empty).
    pub fn max_us(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.inner.max()
        }
    }

    /// Mean latency in µs (0 when empty).
    pub fn mean_us(&self) -> f64 {
        self.inner.mean()
    }

    /// Every distinct recorded value (µs, at the histogram's precision) with its count, in
    /// increasing order: enough to rebuild the distribution elsewhere.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.inner.iter_recorded().map(|v| {
            let value = self.inner.highest_equivalent(v.value_iterated_to());
            (value, v.count_at_value())
        })
    }

    /// The recording structure, for the crate's metrics publisher.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn hdr(&self) -> &Histogram<u64> {
        &self.inner
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("len", &self.len())
            .field("p50_us", &self.percentile_us(50.0))
            .field("p99_us", &self.percentile_us(99.0))
            .field("max_us", &self.max_us())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_merge_and_buckets_agree() {
        let mut a = LatencyHistogram::default();
        for v in 1..=100 {
            a.record(v);
        }
        let mut b = LatencyHistogram::default();
        b.record(0);
        b.record(u64::MAX);
        a.merge(&b);
        assert_eq!(a.len(), 102);
        assert_eq!(a.min_us(), 1);
        assert!(a.max_us() >= MAX_MICROS, "{a:?}");
        assert_eq!(a.percentile_us(50.0), 50);
        assert_eq!(a.buckets().map(|(_, n)| n).sum::<u64>(), 102);
        assert_eq!(a.percentile_us(f64::NAN), a.percentile_us(0.0));
    }
}
