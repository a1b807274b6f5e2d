//! The target's CPU starvation: how long its threads, once runnable, waited
//! for a CPU (run-queue latency), as the scheduler tracepoints time it —
//! the context of every second, next to Go's GC.

use probe_common::WAIT_HIST_BUCKETS;
use serde::Serialize;

use super::{SecondRange, WaitBucket};

/// Waits for a CPU over some time: from a thread's wake-up (or its
/// preemption) to its running again. Exact while watched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunQueueFigures {
    /// Waits that ended.
    pub waits: u64,
    /// Their sum, seconds: thread-seconds spent runnable and not running.
    pub wait_seconds_total: f64,
    /// The longest, seconds.
    pub wait_seconds_max: f64,
    /// The median wait, seconds (the upper bound of its log2 bucket).
    pub p50_seconds: f64,
    /// The 99th percentile, seconds (likewise).
    pub p99_seconds: f64,
    /// The log2 histogram the percentiles come from (bucket `b`: waits of
    /// `[2^b, 2^(b+1))` ns).
    #[serde(skip)]
    pub buckets: [u64; WAIT_HIST_BUCKETS],
}

impl Default for RunQueueFigures {
    fn default() -> Self {
        Self::new(0, 0, 0, [0; WAIT_HIST_BUCKETS])
    }
}

impl RunQueueFigures {
    /// The figures of `waits` summing to `total_ns`, the longest `max_ns`,
    /// with log2 histogram `buckets`.
    pub fn new(waits: u64, total_ns: u64, max_ns: u64, buckets: [u64; WAIT_HIST_BUCKETS]) -> Self {
        Self {
            waits,
            wait_seconds_total: total_ns as f64 / 1e9,
            wait_seconds_max: max_ns as f64 / 1e9,
            p50_seconds: log2_quantile_ns(&buckets, 0.5) as f64 / 1e9,
            p99_seconds: log2_quantile_ns(&buckets, 0.99) as f64 / 1e9,
            buckets,
        }
    }

    /// Adds another span's figures (the longest: the longer; the
    /// percentiles recomputed from the summed histogram).
    pub fn add(&mut self, other: &Self) {
        let mut buckets = self.buckets;
        for (mine, theirs) in buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        let total_ns = ((self.wait_seconds_total + other.wait_seconds_total) * 1e9).round();
        let max_ns = (self.wait_seconds_max.max(other.wait_seconds_max) * 1e9).round();
        *self = Self::new(
            self.waits + other.waits,
            total_ns as u64,
            max_ns as u64,
            buckets,
        );
    }

    /// The histogram's non-empty buckets.
    pub fn histogram(&self) -> Vec<WaitBucket> {
        log2_buckets(&self.buckets)
    }
}

/// The target's waits for a CPU over a session (or a window of it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunQueueReport {
    /// The figures of the seconds watched.
    #[serde(flatten)]
    pub figures: RunQueueFigures,
    /// Their histogram.
    pub histogram: Vec<WaitBucket>,
    /// Seconds in which the waits were not timed: the overhead governor
    /// had given the scheduler tracepoints up (sorted, disjoint).
    pub unwatched: Vec<SecondRange>,
}

impl RunQueueReport {
    /// The report of `figures`, with the seconds `unwatched`.
    pub fn new(figures: RunQueueFigures, unwatched: Vec<SecondRange>) -> Self {
        Self {
            histogram: figures.histogram(),
            figures,
            unwatched,
        }
    }
}

/// One second's waits for a CPU (only watched seconds that had any).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunQueueSecond {
    /// The second, counted from attach.
    pub second: u64,
    /// Its figures.
    #[serde(flatten)]
    pub figures: RunQueueFigures,
}

/// The exclusive upper bound of log2 bucket `bucket`, ns.
pub fn log2_bucket_end_ns(bucket: usize) -> u64 {
    1u64.checked_shl(bucket as u32 + 1).unwrap_or(u64::MAX)
}

/// The non-empty buckets of a log2 histogram.
pub fn log2_buckets(histogram: &[u64]) -> Vec<WaitBucket> {
    histogram
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .map(|(bucket, &count)| WaitBucket {
            ns_min: if bucket == 0 { 0 } else { 1u64 << bucket },
            ns_max: log2_bucket_end_ns(bucket),
            count,
        })
        .collect()
}

/// The upper bound of the log2 bucket holding quantile `q` of `histogram`
/// (0 when empty).
pub fn log2_quantile_ns(histogram: &[u64], q: f64) -> u64 {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (bucket, &count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return log2_bucket_end_ns(bucket);
        }
    }
    log2_bucket_end_ns(histogram.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_upper_bounds() {
        let mut histogram = [0u64; 64];
        histogram[10] = 98; // [1024, 2048) ns
        histogram[20] = 2; // [~1 ms, ~2 ms)
        assert_eq!(log2_quantile_ns(&histogram, 0.5), 2048);
        assert_eq!(log2_quantile_ns(&histogram, 0.98), 2048);
        assert_eq!(log2_quantile_ns(&histogram, 0.99), 1 << 21);
        assert_eq!(log2_quantile_ns(&[0; 64], 0.99), 0);
    }

    #[test]
    fn figures_add_up_and_recompute_their_percentiles() {
        let mut a_buckets = [0; WAIT_HIST_BUCKETS];
        a_buckets[10] = 100;
        let mut a = RunQueueFigures::new(100, 150_000, 2_000, a_buckets);
        assert!((a.p99_seconds - 2048e-9).abs() < 1e-15);
        let mut b_buckets = [0; WAIT_HIST_BUCKETS];
        b_buckets[22] = 100; // ~4 ms
        let b = RunQueueFigures::new(100, 500_000_000, 7_000_000, b_buckets);
        a.add(&b);
        assert_eq!(a.waits, 200);
        assert!((a.wait_seconds_total - 0.50015).abs() < 1e-12);
        assert!((a.wait_seconds_max - 0.007).abs() < 1e-12);
        assert!((a.p50_seconds - 2048e-9).abs() < 1e-15);
        assert!((a.p99_seconds - (1u64 << 23) as f64 / 1e9).abs() < 1e-15);
        assert_eq!(
            a.histogram().iter().map(|b| b.count).collect::<Vec<_>>(),
            [100, 100]
        );
    }
}
