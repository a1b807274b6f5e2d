//! Live views while attached: a full-screen terminal view when stdout is a
//! terminal ([`tui`]), else plain text printed every second ([`plain`]).
//!
//! Both render the snapshots the pipeline publishes once per second: the
//! views never touch the aggregate.

pub mod plain;
pub mod tui;

use crate::model::{outside, Snapshot};

/// Which live view to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LiveMode {
    /// None: only the final report.
    #[default]
    Off,
    /// A few lines of text per second (stdout is a file or a pipe).
    Plain,
    /// The full-screen terminal view.
    Tui,
}

/// The header line's target: `PID 123 /path/exe (go1.27.3)`.
pub fn target_label(snapshot: &Snapshot) -> String {
    let t = &snapshot.target;
    format!(
        "PID {} {} ({})",
        t.pid,
        t.exe,
        t.go_version.as_deref().unwrap_or("not Go")
    )
}

/// Formats seconds of wait for a table cell.
pub fn seconds(value: f64) -> String {
    super::human_duration(value)
}

/// What the CPU and Go's GC did in the last second that has figures (the
/// latest complete one, or the one before): `last second: threads waited
/// 2.10s for a CPU (p99 8.39ms); the world stopped 2 time(s) for 310.0µs`.
/// `None` when neither is probed or there is nothing to say.
pub fn context_label(snapshot: &Snapshot) -> Option<String> {
    let latest = (snapshot.duration_seconds as u64).saturating_sub(2);
    let mut parts = Vec::new();
    if let Some(row) = snapshot
        .run_queue_timeline
        .last()
        .filter(|r| r.second >= latest)
    {
        parts.push(format!(
            "threads waited {} for a CPU (p99 {})",
            seconds(row.figures.wait_seconds_total),
            seconds(row.figures.p99_seconds)
        ));
    }
    if let Some(row) = snapshot
        .gc_timeline
        .last()
        .filter(|r| r.second >= latest && r.figures.pauses > 0)
    {
        parts.push(format!(
            "the world stopped {} time(s) for {}",
            row.figures.pauses,
            seconds(row.figures.pause_seconds_total)
        ));
    }
    (!parts.is_empty()).then(|| format!("last second: {}", parts.join("; ")))
}

/// Seconds a lock's sparkline covers (the latest).
pub const SPARKLINE_SECONDS: u64 = 30;

/// A lock's wait per second over the last [`SPARKLINE_SECONDS`] seconds of
/// the snapshot's timeline, one character each, scaled to its own highest
/// second: `▁`…`█` for waits, a space for a timed second without any, `·`
/// for a second whose waits were not timed (the governor's off-seconds).
pub fn sparkline(snapshot: &Snapshot, lock: u64) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let end = snapshot
        .timeline
        .iter()
        .map(|r| r.second + 1)
        .max()
        .unwrap_or(0)
        .max(snapshot.duration_seconds as u64);
    let start = end.saturating_sub(SPARKLINE_SECONDS);
    let waits: Vec<(u64, f64)> = snapshot
        .timeline
        .iter()
        .filter(|r| r.lock == lock && r.second >= start)
        .map(|r| (r.second, r.wait_seconds))
        .collect();
    let peak = waits.iter().map(|&(_, w)| w).fold(0.0f64, f64::max);
    (start..end)
        .map(|second| {
            if !outside(&snapshot.timeline_unwatched, second) {
                return '·';
            }
            match waits.iter().find(|&&(s, _)| s == second) {
                Some(&(_, wait)) if wait > 0.0 && peak > 0.0 => {
                    let level = (wait / peak * LEVELS.len() as f64).ceil() as usize;
                    LEVELS[level.clamp(1, LEVELS.len()) - 1]
                }
                _ => ' ',
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LockSecond, SecondRange};

    #[test]
    fn the_last_seconds_cpu_and_gc_make_the_context() {
        let mut snapshot = crate::model::sample_snapshot();
        snapshot.duration_seconds = 10.4;
        snapshot.gc_timeline.clear();
        snapshot.run_queue_timeline.clear();
        assert_eq!(context_label(&snapshot), None);
        let mut buckets = [0; probe_common::WAIT_HIST_BUCKETS];
        buckets[22] = 10; // ~4 ms
        snapshot
            .run_queue_timeline
            .push(crate::model::RunQueueSecond {
                second: 9,
                figures: crate::model::RunQueueFigures::new(10, 2_100_000_000, 5_000_000, buckets),
            });
        let mut gc = crate::model::GcReport::empty(true);
        gc.add_pause(0.000_31, Some(true));
        gc.add_pause(0.0, Some(true));
        snapshot.gc_timeline.push(crate::model::GcSecond {
            second: 9,
            figures: gc,
        });
        let label = context_label(&snapshot).expect("a context");
        assert!(
            label.starts_with("last second: threads waited 2.10s for a CPU (p99 8.39ms)"),
            "{label}"
        );
        assert!(
            label.ends_with("the world stopped 2 time(s) for 310.0µs"),
            "{label}"
        );
        // Older seconds are not the last one.
        snapshot.duration_seconds = 30.0;
        assert_eq!(context_label(&snapshot), None);
    }

    #[test]
    fn a_sparkline_scales_to_its_peak_and_marks_untimed_seconds() {
        let mut snapshot = crate::model::sample_snapshot();
        snapshot.duration_seconds = 6.0;
        let row = |second, wait| LockSecond {
            second,
            lock: 0x10,
            name: None,
            contentions: 1,
            acquisitions: 1,
            wait_seconds: wait,
            p50_seconds: 0.0,
            p99_seconds: 0.0,
            max_seconds: 0.0,
            convoy_wait_seconds: 0.0,
            top_wait_site: None,
            top_holder_site: None,
        };
        snapshot.timeline = vec![row(0, 0.001), row(1, 0.008), row(4, 0.004)];
        snapshot.timeline_unwatched = vec![SecondRange { start: 2, end: 4 }];
        assert_eq!(sparkline(&snapshot, 0x10), "▁█··▄ ");
        assert_eq!(sparkline(&snapshot, 0x20), "  ··  ");
    }
}
