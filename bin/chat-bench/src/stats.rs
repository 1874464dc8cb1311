//! Latency recording and percentiles.
//!
//! Latencies are recorded in microseconds in HdrHistograms (3 significant figures, growing to
//! the largest value seen), so memory stays small however many samples a run takes and
//! percentiles of merged histograms are exact to the histogram's precision.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant figures kept by every histogram: 0.1 % precision.
const SIGFIG: u8 = 3;

/// A latency distribution in microseconds.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // `Histogram::new` fails only for more than 5 significant figures.
        match Histogram::new(SIGFIG) {
            Ok(histogram) => Self(histogram),
            Err(error) => unreachable!("{SIGFIG} significant figures are supported: {error}"),
        }
    }

    pub fn record_us(&mut self, micros: u64) {
        // Zero is a legal latency on a fast loopback; the histogram's lowest value is 1.
        // `record` grows the histogram as needed (`saturating_record` would clamp instead).
        let micros = micros.max(1);
        if self.0.record(micros).is_err() {
            self.0.saturating_record(micros);
        }
    }

    pub fn record(&mut self, elapsed: Duration) {
        self.record_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both sides are auto-resizing with the same precision, so adding cannot fail; if it
        // ever did, the values are re-recorded one bucket at a time.
        if self.0.add(&other.0).is_err() {
            for bucket in other.0.iter_recorded() {
                self.0.saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value());
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p90_ms: ms(self.0.value_at_quantile(0.90)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
        }
    }

    /// `(quantile, milliseconds)` points along the distribution, denser in the tail, for plots.
    pub fn quantile_curve(&self) -> Vec<(f64, f64)> {
        self.0.iter_quantiles(5).map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1000.0)).collect()
    }
}

/// The figures every report gives for a latency distribution, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// A latency distribution written to by many tasks at once.
///
/// Receivers record every delivery; one histogram per receiver would cost tens of KiB each
/// for thousands of receivers, so they share a few mutex-guarded shards instead. A shard's
/// lock is held for one `record` call only, never across `.await`.
#[derive(Debug)]
pub struct SharedLatency {
    shards: Box<[Mutex<Latency>]>,
}

impl SharedLatency {
    pub fn new(shards: usize) -> Self {
        Self { shards: (0..shards.max(1)).map(|_| Mutex::new(Latency::new())).collect() }
    }

    /// Records into the shard picked by `hint` (a receiver's index spreads the load).
    pub fn record_us(&self, hint: usize, micros: u64) {
        let shard = &self.shards[hint % self.shards.len()];
        shard.lock().unwrap_or_else(PoisonError::into_inner).record_us(micros);
    }

    pub fn merged(&self) -> Latency {
        let mut all = Latency::new();
        for shard in &self.shards {
            all.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        all
    }
}

/// `count / seconds`, 0 when no time passed.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency_of(values_us: impl IntoIterator<Item = u64>) -> Latency {
        let mut latency = Latency::new();
        for value in values_us {
            latency.record_us(value);
        }
        latency
    }

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected.abs() * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_one_to_ten_thousand_microseconds() {
        let summary = latency_of(1..=10_000).summary();
        assert_eq!(summary.count, 10_000);
        assert!(close(summary.p50_ms, 5.0), "{summary:?}");
        assert!(close(summary.p90_ms, 9.0), "{summary:?}");
        assert!(close(summary.p99_ms, 9.9), "{summary:?}");
        assert!(close(summary.max_ms, 10.0), "{summary:?}");
        assert!(close(summary.mean_ms, 5.0005), "{summary:?}");
    }

    #[test]
    fn a_single_outlier_is_the_max_but_not_the_p99() {
        let mut values: Vec<u64> = vec![1_000; 999];
        values.push(2_000_000);
        let summary = latency_of(values).summary();
        assert!(close(summary.p99_ms, 1.0), "{summary:?}");
        assert!(close(summary.max_ms, 2000.0), "{summary:?}");
    }

    #[test]
    fn empty_distribution_is_all_zero() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn zero_latency_is_recorded_as_one_microsecond() {
        let summary = latency_of([0]).summary();
        assert_eq!(summary.count, 1);
        assert!(close(summary.max_ms, 0.001));
    }

    #[test]
    fn merging_keeps_every_sample() {
        let mut a = latency_of(1..=500);
        let b = latency_of(501..=1000);
        a.merge(&b);
        let summary = a.summary();
        assert_eq!(summary.count, 1000);
        assert!(close(summary.p50_ms, 0.5), "{summary:?}");
    }

    #[test]
    fn shared_latency_merges_its_shards() {
        let shared = SharedLatency::new(4);
        for i in 0..100 {
            shared.record_us(i, 100);
        }
        let merged = shared.merged();
        assert_eq!(merged.count(), 100);
        assert!(close(merged.summary().p99_ms, 0.1));
    }

    #[test]
    fn quantile_curve_ends_at_the_max() {
        let curve = latency_of(1..=1000).quantile_curve();
        let last = curve.last().copied().unwrap_or_default();
        assert!(close(last.0, 1.0));
        assert!(close(last.1, 1.0));
        assert!(curve.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn rate_is_count_over_seconds() {
        assert!(close(per_second(500, Duration::from_millis(250)), 2000.0));
        assert!(close(per_second(5, Duration::ZERO), 0.0));
    }
}
