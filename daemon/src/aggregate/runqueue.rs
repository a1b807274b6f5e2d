//! The target's waits for a CPU, from the scheduler probes' per-CPU
//! totals: differenced tick by tick into seconds, and summed over the
//! session.

use std::collections::VecDeque;

use probe_common::{RunQueueStats, WAIT_HIST_BUCKETS};

use super::locks::gained_max_ns;
use crate::model::{
    RunQueueFigures, RunQueueReport, RunQueueSecond, SecondRange, TIMELINE_SECONDS,
};

/// The session's waits for a CPU.
#[derive(Debug, Clone, Default)]
pub struct RunQueue {
    /// The last reading, summed over CPUs (cumulative).
    last: RunQueueStats,
    total: RunQueueFigures,
    /// Watched seconds that had waits, oldest first (the last
    /// [`TIMELINE_SECONDS`]).
    seconds: VecDeque<RunQueueSecond>,
    unwatched: Vec<SecondRange>,
}

impl RunQueue {
    /// Folds in a reading of the per-CPU totals at the end of (or, the
    /// session's last, within) second `second`; `watched`: whether the
    /// probes were timing waits during it.
    pub fn sample(&mut self, per_cpu: &[RunQueueStats], second: u64, watched: bool) {
        let mut now = RunQueueStats::default();
        for cpu in per_cpu {
            now.merge(cpu);
        }
        let mut buckets = [0u64; WAIT_HIST_BUCKETS];
        for (bucket, (a, b)) in buckets
            .iter_mut()
            .zip(now.hist.iter().zip(self.last.hist.iter()))
        {
            *bucket = a.saturating_sub(*b);
        }
        let waits = now.waits.saturating_sub(self.last.waits);
        let total_ns = now.wait_ns.saturating_sub(self.last.wait_ns);
        let max_ns = gained_max_ns(now.wait_max_ns, Some(self.last.wait_max_ns), &buckets);
        self.last = now;
        let figures = RunQueueFigures::new(waits, total_ns, max_ns, buckets);
        self.total.add(&figures);
        if !watched {
            match self.unwatched.last_mut() {
                Some(range) if range.end >= second => range.end = range.end.max(second + 1),
                _ => self.unwatched.push(SecondRange {
                    start: second,
                    end: second + 1,
                }),
            }
        }
        if waits > 0 {
            match self.seconds.back_mut() {
                Some(row) if row.second == second => row.figures.add(&figures),
                _ => self.seconds.push_back(RunQueueSecond { second, figures }),
            }
        }
        while self
            .seconds
            .front()
            .is_some_and(|s| s.second + TIMELINE_SECONDS <= second)
        {
            self.seconds.pop_front();
        }
    }

    /// The session's report.
    pub fn report(&self) -> RunQueueReport {
        RunQueueReport::new(self.total.clone(), self.unwatched.clone())
    }

    /// The watched seconds that had waits, oldest first.
    pub fn seconds(&self) -> Vec<RunQueueSecond> {
        self.seconds.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(waits: u64, wait_ns: u64, max_ns: u64, bucket: usize) -> RunQueueStats {
        let mut stats = RunQueueStats {
            waits,
            wait_ns,
            wait_max_ns: max_ns,
            ..RunQueueStats::default()
        };
        stats.hist[bucket] = waits;
        stats
    }

    #[test]
    fn cumulative_per_cpu_totals_become_seconds() {
        let mut queue = RunQueue::default();
        // Second 0: 10 waits of ~1 µs on CPU 0, 5 of ~1 ms on CPU 1.
        queue.sample(
            &[cpu(10, 10_000, 1_500, 10), cpu(5, 5_000_000, 1_200_000, 20)],
            0,
            true,
        );
        // Second 1: nothing new.
        queue.sample(
            &[cpu(10, 10_000, 1_500, 10), cpu(5, 5_000_000, 1_200_000, 20)],
            1,
            true,
        );
        // Second 2: unwatched (the governor gave the probes up).
        queue.sample(
            &[cpu(10, 10_000, 1_500, 10), cpu(5, 5_000_000, 1_200_000, 20)],
            2,
            false,
        );
        // Second 3: 5 more on CPU 1, none longer than before.
        queue.sample(
            &[
                cpu(10, 10_000, 1_500, 10),
                cpu(10, 9_000_000, 1_200_000, 20),
            ],
            3,
            true,
        );
        let seconds = queue.seconds();
        assert_eq!(seconds.iter().map(|s| s.second).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(seconds[0].figures.waits, 15);
        assert!((seconds[0].figures.wait_seconds_total - 0.00501).abs() < 1e-12);
        assert!((seconds[0].figures.wait_seconds_max - 0.0012).abs() < 1e-12);
        assert_eq!(seconds[1].figures.waits, 5);
        assert!((seconds[1].figures.wait_seconds_total - 0.004).abs() < 1e-12);
        // Its longest is bounded by its bucket and the session's longest.
        assert!((seconds[1].figures.wait_seconds_max - 0.0012).abs() < 1e-12);
        let report = queue.report();
        assert_eq!(report.figures.waits, 20);
        assert!((report.figures.wait_seconds_total - 0.00901).abs() < 1e-12);
        assert_eq!(report.unwatched, [SecondRange { start: 2, end: 3 }]);
        assert_eq!(report.histogram.len(), 2);
        // The session's last reading tops up its current second.
        queue.sample(
            &[
                cpu(11, 11_000, 1_500, 10),
                cpu(10, 9_000_000, 1_200_000, 20),
            ],
            3,
            true,
        );
        assert_eq!(queue.seconds()[1].figures.waits, 6);
    }
}
