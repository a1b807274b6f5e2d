//! Live views while attached: a full-screen terminal view when stdout is a
//! terminal ([`tui`]), else plain text printed every second ([`plain`]).
//!
//! Both render a [`LiveSnapshot`], which the session builds once per second
//! from the data model: the views never touch the aggregate.

pub mod plain;
pub mod tui;

use crate::{export::metrics::MetricsSnapshot, report::heatmap::Heatmap};

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

/// What a live view shows at one moment.
#[derive(Debug, Clone, Default)]
pub struct LiveSnapshot {
    /// `PID 123 /path/exe (go1.27.3)`.
    pub target: String,
    /// The figures (locks, CAS sites, maps with hot keys), bounded.
    pub figures: MetricsSnapshot,
    /// Heatmaps: lock wait (time × wait bucket), CAS failures (time × CPU,
    /// time × site), hot keys (time × key).
    pub heatmaps: Vec<Heatmap>,
}

/// Formats seconds of wait for a table cell.
pub fn seconds(value: f64) -> String {
    crate::report::human_duration(value)
}
