//! Live views while attached: a full-screen terminal view when stdout is a
//! terminal ([`tui`]), else plain text printed every second ([`plain`]).
//!
//! Both render the snapshots the pipeline publishes once per second: the
//! views never touch the aggregate.

pub mod plain;
pub mod tui;

use crate::model::Snapshot;

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
