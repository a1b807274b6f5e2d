//! Go's garbage collector and stop-the-world pauses, as the runtime probes
//! count them: the context of every second.

use serde::Serialize;

/// GC cycles and pauses over a session (or a window of it). Exact: these
/// probes are never sampled.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcReport {
    /// GC cycles that ended (what Go's `NumGC` counts).
    pub cycles: u64,
    /// Stop-the-world pauses, for any reason.
    pub pauses: u64,
    /// Their length, summed: from the stop's start to the restart's start,
    /// seconds.
    pub pause_seconds_total: f64,
    /// The longest, seconds.
    pub pause_seconds_max: f64,
    /// The GC's own pauses (sweep and mark termination: what Go counts in
    /// `/sched/pauses/total/gc:seconds`); null where the runtime does not
    /// say why it stops the world (Go < 1.21).
    pub gc_pauses: Option<u64>,
    /// Their length, summed, seconds; null likewise.
    pub gc_pause_seconds_total: Option<f64>,
}

impl GcReport {
    /// An empty report; `told_apart`: whether GC pauses are told from the
    /// others.
    pub fn empty(told_apart: bool) -> Self {
        Self {
            gc_pauses: told_apart.then_some(0),
            gc_pause_seconds_total: told_apart.then_some(0.0),
            ..Self::default()
        }
    }

    /// An empty report of the same kind (GC pauses told apart or not).
    pub fn empty_like(&self) -> Self {
        Self::empty(self.gc_pauses.is_some())
    }

    /// Counts one GC cycle's end.
    pub fn add_cycle(&mut self) {
        self.cycles += 1;
    }

    /// Counts one pause of `seconds`; `gc`: whether it was the GC's (None:
    /// unknown).
    pub fn add_pause(&mut self, seconds: f64, gc: Option<bool>) {
        self.pauses += 1;
        self.pause_seconds_total += seconds;
        self.pause_seconds_max = self.pause_seconds_max.max(seconds);
        if gc == Some(true) {
            if let Some(n) = self.gc_pauses.as_mut() {
                *n += 1;
            }
            if let Some(total) = self.gc_pause_seconds_total.as_mut() {
                *total += seconds;
            }
        }
    }

    /// Adds another report's figures (the longest pause: the longer).
    pub fn add(&mut self, other: &GcReport) {
        self.cycles += other.cycles;
        self.pauses += other.pauses;
        self.pause_seconds_total += other.pause_seconds_total;
        self.pause_seconds_max = self.pause_seconds_max.max(other.pause_seconds_max);
        if let (Some(n), Some(more)) = (self.gc_pauses.as_mut(), other.gc_pauses) {
            *n += more;
        }
        if let (Some(total), Some(more)) = (
            self.gc_pause_seconds_total.as_mut(),
            other.gc_pause_seconds_total,
        ) {
            *total += more;
        }
    }
}

/// One second's GC cycles and pauses (only seconds that had any).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcSecond {
    /// The second, counted from attach.
    pub second: u64,
    /// Its figures.
    #[serde(flatten)]
    pub figures: GcReport,
}

/// What else a spike's seconds show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpikeContext {
    /// At least half of the spike's wait was in seconds in which the world
    /// stopped for at least half that second's p99 wait: pauses alone can
    /// make waits that long.
    GcPause,
    /// The target's threads waited for a CPU, in the spike's seconds, at
    /// least half as long as goroutines waited on the lock, with a p99
    /// far above usual: holders kept from running hold the lock meanwhile
    /// (see the `spikes` module for the rule).
    CpuStarvation,
    /// At least half of the spike's wait was readers of an RWMutex queued
    /// behind a writer that waited for the readers inside (the lock's
    /// writer convoys): a lock problem, of that shape.
    WriterConvoy,
}

impl std::fmt::Display for SpikeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::GcPause => "gc-pause",
            Self::CpuStarvation => "cpu-starvation",
            Self::WriterConvoy => "writer-convoy",
        })
    }
}
