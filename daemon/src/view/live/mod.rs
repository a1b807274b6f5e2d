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
