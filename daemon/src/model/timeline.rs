//! The lock timeline: one row per lock per second it was contended, and the
//! spikes found in it.

use std::sync::Arc;

use serde::Serialize;

use super::{hex, Frame, GcReport, RunQueueFigures, SpikeContext};

/// Seconds of timeline a snapshot keeps (the latest ones).
pub const TIMELINE_SECONDS: u64 = 900;

/// Locks a second of the timeline lists at most (those that waited most).
pub const TIMELINE_LOCKS: usize = 5;

/// One second of one lock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockSecond {
    /// The second, counted from attach: `[second, second + 1)`.
    pub second: u64,
    /// The lock's runtime address.
    #[serde(serialize_with = "hex")]
    pub lock: u64,
    /// Its name, when it is a global.
    pub name: Option<Arc<str>>,
    /// Entries into its slow path in that second.
    pub contentions: u64,
    /// Contended acquisitions whose wait ended in that second.
    pub acquisitions: u64,
    /// Their waits, summed, seconds.
    pub wait_seconds: f64,
    /// The median wait: the upper bound of the log2 bucket holding it,
    /// seconds (at most twice the true value).
    pub p50_seconds: f64,
    /// The 99th percentile wait, the same way.
    pub p99_seconds: f64,
    /// The longest wait: exact when it was the lock's longest so far, else
    /// the upper bound of the highest bucket, seconds.
    pub max_seconds: f64,
    /// With holder blame, for an RWMutex: the readers' waits charged that
    /// second to writer convoys (readers queued behind a writer that
    /// waited for the readers inside), seconds.
    pub convoy_wait_seconds: f64,
    /// The call site that waited most in that second: its first frame
    /// outside the lock implementation (shared: a timeline repeats a few
    /// names and sites thousands of times).
    pub top_wait_site: Option<Arc<Frame>>,
    /// With holder blame: the holder call site whose releases ended the
    /// most waiting in that second (first frame outside the lock
    /// implementation).
    pub top_holder_site: Option<Arc<Frame>>,
}

/// A run of seconds, `[start, end)`, counted from attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecondRange {
    /// The first second.
    pub start: u64,
    /// The second after the last.
    pub end: u64,
}

/// Whether `second` lies in none of `ranges` (sorted, disjoint).
pub fn outside(ranges: &[SecondRange], second: u64) -> bool {
    !ranges.iter().any(|r| r.start <= second && second < r.end)
}

/// A run of seconds in which one lock waited far more than it usually does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spike {
    /// Its first second, counted from attach.
    pub start_seconds: u64,
    /// The second after its last.
    pub end_seconds: u64,
    /// Its start, Unix seconds.
    pub start_unix_seconds: f64,
    /// The lock's runtime address.
    #[serde(serialize_with = "hex")]
    pub lock: u64,
    /// Its name, when it is a global.
    pub name: Option<Arc<str>>,
    /// Waits summed over the spike, seconds.
    pub wait_seconds: f64,
    /// The highest per-second 99th percentile in it, seconds.
    pub p99_seconds: f64,
    /// The lock's usual (median) wait per second over the timeline, seconds.
    pub usual_wait_seconds: f64,
    /// The call site that waited most in it.
    pub top_wait_site: Option<Arc<Frame>>,
    /// With holder blame: the holder call site whose seconds' top
    /// releases ended the most waiting in it.
    pub top_holder_site: Option<Arc<Frame>>,
    /// Go's GC cycles and pauses in its seconds; null when they are not
    /// probed.
    pub gc: Option<GcReport>,
    /// The target's waits for a CPU in its seconds (those they were timed
    /// in); null when not timed in any of them.
    pub run_queue: Option<RunQueueFigures>,
    /// What else its seconds show, when something does (a GC pause, CPU
    /// starvation): null is a lock problem as far as mapwatch measures (or
    /// what it measures was not watched).
    pub context: Option<SpikeContext>,
}

/// How reports name a lock of the timeline: its name, else its address.
fn label(name: Option<&Arc<str>>, lock: u64) -> String {
    name.map_or_else(|| format!("{lock:#x}"), |n| n.to_string())
}

impl LockSecond {
    /// How reports name its lock.
    pub fn label(&self) -> String {
        label(self.name.as_ref(), self.lock)
    }
}

impl Spike {
    /// How reports name its lock.
    pub fn label(&self) -> String {
        label(self.name.as_ref(), self.lock)
    }
}
