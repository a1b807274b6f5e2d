//! What the probes cost the target, as the overhead governor estimated it,
//! and how much it sampled to stay within its budget.

use serde::Serialize;

/// How much of its work a probe group saw: the fraction of the session's
/// time it was attached and on (1 = always, exact counts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sampling {
    /// The counting probes (lock entries, CAS outcomes, map operations).
    pub counting: f64,
    /// The ends of lock waits (wait times); never more than `counting`.
    pub waits: f64,
}

impl Sampling {
    /// Everything seen: nothing sampled.
    pub const EXACT: Self = Self {
        counting: 1.0,
        waits: 1.0,
    };

    /// Whether anything was sampled.
    pub fn is_exact(&self) -> bool {
        self.counting >= 1.0 && self.waits >= 1.0
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Self::EXACT
    }
}

/// Scales a count seen during a fraction `fraction` of the time to the
/// whole time: the estimate a sampled figure reports.
pub fn scaled(count: u64, fraction: f64) -> u64 {
    if fraction >= 1.0 || fraction <= 0.0 {
        count
    } else {
        (count as f64 / fraction).round() as u64
    }
}

/// [`scaled`] for a sum of seconds: unchanged when the fraction is 1 or
/// unknown (0: the probes were never seen on while the target worked).
pub fn scaled_seconds(seconds: f64, fraction: f64) -> f64 {
    if fraction >= 1.0 || fraction <= 0.0 {
        seconds
    } else {
        seconds / fraction
    }
}

/// What the governor has the probes do, from full detail down to sampled
/// windows; each field degrades one thing, in the documented order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GovernorSetting {
    /// 0 = everything in full; higher = more degraded.
    pub level: u32,
    /// Whether lock entries read the waiter's user stack (else only the
    /// caller's return address).
    pub stacks: bool,
    /// Wait-time probes attached one second in this many (1 = always).
    pub waits_one_in: u32,
    /// Map keys recorded for one operation in this many (1 = every one;
    /// the others are counted per map only).
    pub keys_one_in: u32,
    /// Counting probes attached one second in this many (1 = always).
    pub probes_one_in: u32,
    /// The scheduler tracepoints (the target's waits for a CPU) attached
    /// one second in this many (1 = always): windowed on their own, apart
    /// from the ladder.
    pub sched_one_in: u32,
}

impl GovernorSetting {
    /// Everything on, in full.
    pub const FULL: Self = Self {
        level: 0,
        stacks: true,
        waits_one_in: 1,
        keys_one_in: 1,
        probes_one_in: 1,
        sched_one_in: 1,
    };
}

/// One change the governor made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GovernorAction {
    /// When, seconds since attach.
    pub at_seconds: f64,
    /// The overhead estimate that led to it, percent of the target's own
    /// CPU time.
    pub estimated_percent: f64,
    /// The setting from then on.
    pub setting: GovernorSetting,
}

/// The cost of one probe hit the estimate used, by how the kernel runs the
/// probed instruction (the program's own run time is added per program).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrapCost {
    /// An emulated instruction, ns.
    pub emulated_ns: f64,
    /// A single-stepped instruction, ns.
    pub single_stepped_ns: f64,
    /// Whether these were measured on this host (else assumed).
    pub calibrated: bool,
    /// What a hit costs the target in all, as a multiple of its direct
    /// cost (trap and program): after each trap the target's own code runs
    /// slower for a while (caches, branch predictors), which no loop of
    /// mapwatch's can measure for it.
    pub indirect_factor: f64,
}

/// The [`TrapCost::indirect_factor`] used: measured throughput losses on
/// the overhead bench's server fixture and on fixtures with work between
/// probed calls were 1.5 to 2.3 times the direct cost.
pub const INDIRECT_FACTOR: f64 = 2.0;

/// The probes' cost to the target and what the governor did about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverheadReport {
    /// The budget, percent of the target's own CPU time; null with
    /// `--overhead-budget off` (then nothing is ever sampled).
    pub budget_percent: Option<f64>,
    /// Estimated time the probes added, percent of the target's own CPU
    /// time, over the session.
    pub estimated_percent: f64,
    /// The same for each second (tick).
    pub per_second_percent: Vec<f64>,
    /// Estimated time the probes added, seconds.
    pub probe_seconds: f64,
    /// The target's CPU time over the session (probe hits included),
    /// seconds.
    pub target_cpu_seconds: f64,
    /// What the host-wide tracepoint programs (the scheduler's, the
    /// futex syscalls') cost the whole host, estimated, seconds: they run
    /// for every process, and only their runs about the target count in
    /// `probe_seconds` and against the budget.
    pub host_tracepoint_seconds: f64,
    /// The hit costs the estimate used.
    pub trap_cost: TrapCost,
    /// The setting now.
    pub setting: GovernorSetting,
    /// Every change made, in order.
    pub actions: Vec<GovernorAction>,
    /// How much of the time each probe group was on.
    pub sampling: Sampling,
}
