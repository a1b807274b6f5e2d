//! The overhead governor: keeps the time the probes add to the target within
//! a budget, a percentage of the target's own CPU time.
//!
//! Each second the pipeline prices the hits of that second — every
//! program's runs times the calibrated cost of its trap, plus the
//! program's own run time as the kernel measured it — and compares the sum
//! with the CPU time the target used (`/proc/PID/stat`; the hits are part
//! of it, as system time, and are taken out). It aims at 80% of the
//! budget: over that, it degrades, in this order, one step at a time:
//!
//! 1. full stacks → the caller's return address only;
//! 2. wait-time probes → attached one second in 2, then in 4;
//! 3. key recording → one operation in 4 (the others are counted per map,
//!    exactly);
//! 4. every counting probe → attached one second in 2, 4, … 64 (jumping
//!    straight to the window the estimate calls for).
//!
//! The scheduler tracepoints (waits for a CPU: the context of a lock's
//! spike, wanted most when the target is busiest) are not on that ladder:
//! they have windows of their own, attached one second in 1, 2, … 64. Over
//! each judgement (at least [`SCHED_JUDGED_TICKS`] ticks, whole windows),
//! when their own cost is over [`SCHED_SHARE`] of the budget and over
//! [`SCHED_FLOOR_NS`] a tick (on a nearly idle target a share of its CPU
//! means nothing), their window widens to what brings them within 80% of
//! that share; when, projected one step narrower, it stays under 60% of
//! it for [`FIRST_PATIENCE`] judgements, it narrows one step.
//!
//! Tracepoint programs have no trap: each run is priced at its own run
//! time plus [`TRACEPOINT_DISPATCH_NS`] (assumed, not calibrated). They run
//! for every process on the host; the target is charged for its share of
//! the runs (those about its own threads, which the programs count), and
//! the whole host's cost is reported apart.
//!
//! Far over (more than twice its aim), it takes every step at once, down
//! to the counting window that fits. When the estimate, projected one
//! step back up, stays well under the budget for a while, it recovers one step; a recovery that overshoots
//! makes the next one wait twice as long. Sampled figures are scaled to
//! the whole time and marked as estimates by whoever reports them. This
//! module is pure: observations in, settings out.

use std::{fmt, str::FromStr};

use crate::model::{GovernorAction, GovernorSetting, TrapCost};

/// The `--overhead-budget` value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// No governor: every probe in full, always (exact counts).
    Off,
    /// At most this percentage of the target's own CPU time.
    Percent(f64),
}

impl Budget {
    /// The default for `mapwatch attach`.
    pub const DEFAULT_ATTACH: Self = Self::Percent(2.0);
}

/// A budget that is neither `off` nor a percentage in (0, 100].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBudget(String);

impl fmt::Display for BadBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an overhead budget: give a percentage of the target's CPU time \
             above 0 and at most 100 (e.g. 2 or 0.5%), or `off`",
            self.0
        )
    }
}

impl std::error::Error for BadBudget {}

impl FromStr for Budget {
    type Err = BadBudget;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim();
        match number.parse::<f64>() {
            Ok(percent) if percent > 0.0 && percent <= 100.0 => Ok(Self::Percent(percent)),
            _ => Err(BadBudget(text.to_string())),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// What a plan has that the governor can degrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Lock entries read user stacks.
    pub stacks: bool,
    /// There are wait-time probes (exit edges or returns).
    pub waits: bool,
    /// Map keys are recorded.
    pub keys: bool,
    /// Release sites blame holders (they run with the wait probes).
    pub holders: bool,
    /// The scheduler tracepoints time waits for a CPU.
    pub sched: bool,
}

/// Keys recorded for one operation in this many, once sampled.
pub const KEY_SAMPLING: u32 = 4;

/// The settings the governor steps through, least degraded first; the
/// first is [`GovernorSetting::FULL`].
pub fn ladder(capabilities: Capabilities) -> Vec<GovernorSetting> {
    let mut steps = vec![GovernorSetting::FULL];
    let push = |steps: &mut Vec<GovernorSetting>, change: &dyn Fn(&mut GovernorSetting)| {
        let mut next = *steps.last().unwrap_or(&GovernorSetting::FULL);
        change(&mut next);
        next.level = steps.len() as u32;
        steps.push(next);
    };
    if capabilities.stacks {
        push(&mut steps, &|s| s.stacks = false);
    }
    if capabilities.waits {
        for n in [2, 4] {
            push(&mut steps, &|s| s.waits_one_in = n);
        }
    }
    if capabilities.keys {
        // One step: an unrecorded key still costs its trap, so sampling
        // deeper saves little more and costs the keys' precision.
        push(&mut steps, &|s| s.keys_one_in = KEY_SAMPLING);
    }
    for n in [2, 4, 8, 16, 32, 64] {
        push(&mut steps, &|s| s.probes_one_in = n);
    }
    steps
}

/// How the kernel runs a program's probed instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// Emulated in the trap handler.
    Emulated,
    /// Single-stepped out of line (or a function's entry, assumed so).
    SingleStepped,
    /// No trap: a tracepoint program, called from the kernel's own code.
    Tracepoint,
}

/// What calling a tracepoint's program costs beyond its own run time, ns
/// (assumed: the kernel's dispatch to it is a few function calls).
pub const TRACEPOINT_DISPATCH_NS: f64 = 100.0;

/// One program's work over one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramTick {
    /// How its sites trap (the dearer kind when they differ).
    pub trap: TrapKind,
    /// Runs in the tick.
    pub runs: u64,
    /// The program's own run time in the tick, ns.
    pub run_ns: u64,
}

/// The time the probes added in one tick, ns: each run's trap plus the
/// programs' own time, times the indirect factor.
pub fn probe_cost_ns(programs: &[ProgramTick], costs: &TrapCost) -> f64 {
    costs.indirect_factor
        * programs
            .iter()
            .map(|p| {
                let trap = match p.trap {
                    TrapKind::Emulated => costs.emulated_ns,
                    TrapKind::SingleStepped => costs.single_stepped_ns,
                    TrapKind::Tracepoint => TRACEPOINT_DISPATCH_NS,
                };
                p.runs as f64 * trap + p.run_ns as f64
            })
            .sum::<f64>()
}

/// The least own CPU time a ratio is taken against, ns: an idle target's
/// few ticks must not make a handful of hits look like a large overhead.
const MIN_OWN_NS: f64 = 10e6;

/// The probes' time over the target's own time (its CPU time without the
/// probes'), as a ratio.
pub fn overhead_ratio(probe_ns: f64, target_cpu_ns: f64) -> f64 {
    probe_ns / (target_cpu_ns - probe_ns).max(MIN_OWN_NS)
}

/// What the governor is told each tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Seconds since attach.
    pub at_seconds: f64,
    /// Time the probes added in the tick, ns (see [`probe_cost_ns`]).
    pub probe_ns: f64,
    /// The target's CPU time in the tick, ns (probe hits included).
    pub target_cpu_ns: f64,
    /// The part of `probe_ns` the scheduler tracepoints added.
    pub sched_ns: f64,
}

/// The share of the budget the scheduler tracepoints may take on their
/// own.
pub const SCHED_SHARE: f64 = 0.5;

/// The widest window of the scheduler tracepoints (one second in this
/// many).
pub const SCHED_MAX_ONE_IN: u32 = 64;

/// Ticks the scheduler tracepoints' cost is judged over.
pub const SCHED_JUDGED_TICKS: usize = 5;

/// The scheduler tracepoints' cost a tick below which their window never
/// widens, ns (half a millisecond of CPU a second).
pub const SCHED_FLOOR_NS: f64 = 0.5e6;

/// The share of the budget the governor aims at: it degrades when a
/// judgement's estimate is over it, so that a second's noise and the
/// full-detail first second leave the session within the budget.
const AIM: f64 = 0.8;

/// A step back up is taken when its projected overhead is under this share
/// of the budget.
const RECOVER_BELOW: f64 = 0.6;

/// Judgements in a row that must agree before a step back up, at first.
const FIRST_PATIENCE: u32 = 3;

/// The most patience a recovery can need, judgements.
const MAX_PATIENCE: u32 = 48;

/// What a step without a window is assumed to save, when projecting a
/// recovery (stacks, keys): a conservative guess, corrected by observing.
const STEP_SAVING: f64 = 0.5;

/// Over this many times its aim, the governor skips the steps that
/// save an unknown share and goes straight to the window that fits.
const JUMP_ABOVE: f64 = 2.0;

/// The overhead governor of one target.
#[derive(Debug, Clone)]
pub struct Governor {
    /// The budget as a ratio; `None`: off.
    budget: Option<f64>,
    steps: Vec<GovernorSetting>,
    level: usize,
    /// Probe and CPU ns since the last change.
    since_change: (f64, f64),
    /// The scheduler tracepoints' part of the probe ns since then.
    sched_since_change: f64,
    ticks_since_change: u32,
    /// Whether the last change was a step up (a recovery).
    last_was_recovery: bool,
    calm: u32,
    patience: u32,
    actions: Vec<GovernorAction>,
    per_second: Vec<f64>,
    totals: (f64, f64),
    /// The scheduler tracepoints' window (one second in this many).
    sched_one_in: u32,
    /// Their cost, the probes' and the target's CPU time since their
    /// window last changed, ns, and the ticks.
    sched_since: (f64, f64, f64, u32),
    /// Judgements in a row that would narrow their window.
    sched_calm: u32,
}

impl Governor {
    /// A governor for `budget` over a plan that can degrade what
    /// `capabilities` says.
    pub fn new(budget: Budget, capabilities: Capabilities) -> Self {
        Self {
            budget: match budget {
                Budget::Off => None,
                Budget::Percent(percent) => Some(percent / 100.0),
            },
            steps: ladder(capabilities),
            level: 0,
            since_change: (0.0, 0.0),
            sched_since_change: 0.0,
            ticks_since_change: 0,
            last_was_recovery: false,
            calm: 0,
            patience: FIRST_PATIENCE,
            actions: Vec::new(),
            per_second: Vec::new(),
            totals: (0.0, 0.0),
            sched_one_in: 1,
            sched_since: (0.0, 0.0, 0.0, 0),
            sched_calm: 0,
        }
    }

    /// The budget, percent; `None` when off.
    pub fn budget_percent(&self) -> Option<f64> {
        self.budget.map(|ratio| ratio * 100.0)
    }

    /// The setting in force.
    pub fn setting(&self) -> GovernorSetting {
        GovernorSetting {
            sched_one_in: self.sched_one_in,
            ..self.steps[self.level]
        }
    }

    /// Every change made so far.
    pub fn actions(&self) -> &[GovernorAction] {
        &self.actions
    }

    /// The estimated overhead of each tick, percent.
    pub fn per_second_percent(&self) -> &[f64] {
        &self.per_second
    }

    /// The estimated overhead over the session, percent.
    pub fn estimated_percent(&self) -> f64 {
        overhead_ratio(self.totals.0, self.totals.1) * 100.0
    }

    /// Probe and target CPU time over the session, ns.
    pub fn totals_ns(&self) -> (f64, f64) {
        self.totals
    }

    /// Takes one tick's observation; returns the new setting when it
    /// changed.
    pub fn observe(&mut self, tick: Observation) -> Option<GovernorSetting> {
        self.per_second
            .push(overhead_ratio(tick.probe_ns, tick.target_cpu_ns) * 100.0);
        self.totals.0 += tick.probe_ns;
        self.totals.1 += tick.target_cpu_ns;
        let budget = self.budget?;
        let sched_changed = self.judge_sched(tick, budget);
        let changed = self.judge_ladder(tick, budget);
        changed.or(sched_changed)
    }

    /// Judges the ladder's level; returns the new setting when it changed.
    fn judge_ladder(&mut self, tick: Observation, budget: f64) -> Option<GovernorSetting> {
        self.since_change.0 += tick.probe_ns;
        self.since_change.1 += tick.target_cpu_ns;
        self.sched_since_change += tick.sched_ns;
        self.ticks_since_change += 1;
        let current = self.setting();
        // Judge over whole windows only: each on-second with its
        // off-seconds, never a part-window with one on-second too many.
        let period = current.probes_one_in.max(current.waits_one_in).max(1);
        if self.ticks_since_change < period || !self.ticks_since_change.is_multiple_of(period) {
            return None;
        }
        // The scheduler tracepoints' windows keep them within their share:
        // the ladder counts them at most at that.
        let (probe, cpu) = self.since_change;
        let own = (cpu - probe).max(MIN_OWN_NS);
        let sched = self
            .sched_since_change
            .min(AIM * SCHED_SHARE * budget * own);
        let estimate = overhead_ratio(probe - self.sched_since_change + sched, cpu);
        if estimate > AIM * budget {
            if self.last_was_recovery && self.ticks_since_change <= period {
                // The recovery overshot: wait longer before the next one.
                self.patience = (self.patience * 2).min(MAX_PATIENCE);
            }
            let next = self.degraded_level(estimate, budget)?;
            return Some(self.change(next, tick.at_seconds, estimate, false));
        }
        let up = self.level.checked_sub(1)?;
        let projected = estimate * self.cost_factor(up, self.level);
        if projected < RECOVER_BELOW * budget {
            self.calm += 1;
            if self.calm >= self.patience {
                return Some(self.change(up, tick.at_seconds, estimate, true));
            }
        } else {
            self.calm = 0;
        }
        None
    }

    /// Judges the scheduler tracepoints' window over whole windows (see
    /// the module's documentation); returns the new setting when it
    /// changed.
    fn judge_sched(&mut self, tick: Observation, budget: f64) -> Option<GovernorSetting> {
        let since = &mut self.sched_since;
        since.0 += tick.sched_ns;
        since.1 += tick.probe_ns;
        since.2 += tick.target_cpu_ns;
        since.3 += 1;
        let (sched, probes, cpu, ticks) = *since;
        let period = self.sched_one_in.max(1);
        let judged = (SCHED_JUDGED_TICKS as u32).max(period);
        if ticks < judged || !ticks.is_multiple_of(period) {
            return None;
        }
        let own = (cpu - probes).max(MIN_OWN_NS * f64::from(ticks));
        let estimate = sched / own;
        let share = SCHED_SHARE * budget;
        let one_in = if estimate > share && sched > SCHED_FLOOR_NS * f64::from(ticks) {
            // Cost falls with the window: widen to what fits the aim.
            let wanted = f64::from(period) * estimate / (AIM * share);
            let mut one_in = period * 2;
            while f64::from(one_in) < wanted && one_in < SCHED_MAX_ONE_IN {
                one_in *= 2;
            }
            self.sched_calm = 0;
            one_in.min(SCHED_MAX_ONE_IN)
        } else if period > 1 && estimate * 2.0 < RECOVER_BELOW * share {
            self.sched_calm += 1;
            if self.sched_calm < FIRST_PATIENCE {
                self.sched_since = (0.0, 0.0, 0.0, 0);
                return None;
            }
            self.sched_calm = 0;
            period / 2
        } else {
            self.sched_calm = 0;
            period
        };
        self.sched_since = (0.0, 0.0, 0.0, 0);
        if one_in == period {
            return None;
        }
        self.sched_one_in = one_in;
        let setting = self.setting();
        self.actions.push(GovernorAction {
            at_seconds: tick.at_seconds,
            estimated_percent: estimate * 100.0,
            setting,
        });
        Some(setting)
    }

    /// The level to degrade to from an estimate over budget: the next
    /// step when the estimate is within [`JUMP_ABOVE`] times the aim;
    /// else the first level whose counting window alone (assuming the
    /// other steps save nothing) brings the estimate within the aim.
    fn degraded_level(&self, estimate: f64, budget: f64) -> Option<usize> {
        let last = self.steps.len() - 1;
        if self.level >= last {
            return None;
        }
        let next = self.level + 1;
        let window_changes =
            |level: usize| self.steps[level].probes_one_in != self.steps[self.level].probes_one_in;
        let aim = AIM * budget;
        if estimate <= JUMP_ABOVE * aim && !window_changes(next) {
            return Some(next);
        }
        let mut level = next;
        while level < last && estimate * self.window_factor(level, self.level) > aim {
            level += 1;
        }
        Some(level)
    }

    /// The ratio of the counting windows of levels `from` and `to`.
    fn window_factor(&self, to: usize, from: usize) -> f64 {
        self.steps[from].probes_one_in as f64 / self.steps[to].probes_one_in as f64
    }

    /// The projected cost at level `to` relative to level `from`: the
    /// ratio of their counting windows, else [`STEP_SAVING`] per step.
    fn cost_factor(&self, to: usize, from: usize) -> f64 {
        let (to_setting, from_setting) = (self.steps[to], self.steps[from]);
        if to_setting.probes_one_in != from_setting.probes_one_in {
            return from_setting.probes_one_in as f64 / to_setting.probes_one_in as f64;
        }
        if to < from {
            1.0 / STEP_SAVING
        } else {
            STEP_SAVING
        }
    }

    fn change(
        &mut self,
        level: usize,
        at_seconds: f64,
        estimate: f64,
        recovery: bool,
    ) -> GovernorSetting {
        self.level = level;
        self.since_change = (0.0, 0.0);
        self.sched_since_change = 0.0;
        self.ticks_since_change = 0;
        self.calm = 0;
        self.last_was_recovery = recovery;
        let setting = self.setting();
        self.actions.push(GovernorAction {
            at_seconds,
            estimated_percent: estimate * 100.0,
            setting,
        });
        setting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Capabilities = Capabilities {
        stacks: true,
        waits: true,
        keys: true,
        holders: true,
        sched: true,
    };

    fn tick(at: f64, probe_ms: f64, cpu_ms: f64) -> Observation {
        Observation {
            at_seconds: at,
            probe_ns: probe_ms * 1e6,
            target_cpu_ns: cpu_ms * 1e6,
            sched_ns: 0.0,
        }
    }

    #[test]
    fn budgets_parse_as_percentages_or_off() {
        assert_eq!("off".parse::<Budget>(), Ok(Budget::Off));
        assert_eq!("OFF".parse::<Budget>(), Ok(Budget::Off));
        assert_eq!("2".parse::<Budget>(), Ok(Budget::Percent(2.0)));
        assert_eq!("0.5%".parse::<Budget>(), Ok(Budget::Percent(0.5)));
        for bad in ["0", "-1", "101", "two", "", "nan"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad:?}");
        }
        let message = "x".parse::<Budget>().unwrap_err().to_string();
        assert!(message.contains("off"), "{message}");
    }

    #[test]
    fn the_ladder_degrades_in_the_documented_order() {
        let steps = ladder(ALL);
        assert_eq!(steps[0], GovernorSetting::FULL);
        assert!(!steps[1].stacks && steps[1].waits_one_in == 1);
        assert_eq!(steps[2].waits_one_in, 2);
        assert_eq!(steps[3].waits_one_in, 4);
        assert_eq!(steps[4].keys_one_in, KEY_SAMPLING);
        assert_eq!(steps[5].probes_one_in, 2);
        assert!(
            steps.iter().all(|s| s.sched_one_in == 1),
            "not on the ladder"
        );
        assert_eq!(steps.last().map(|s| s.probes_one_in), Some(64));
        for (level, step) in steps.iter().enumerate() {
            assert_eq!(step.level as usize, level);
        }
        // Without stacks, waits or keys only the windows are left.
        let bare = ladder(Capabilities::default());
        assert_eq!(bare.len(), 7);
        assert_eq!(bare[1].probes_one_in, 2);
    }

    #[test]
    fn probe_cost_adds_traps_and_program_time() {
        let costs = TrapCost {
            emulated_ns: 700.0,
            single_stepped_ns: 12_000.0,
            calibrated: true,
            indirect_factor: 2.0,
        };
        let programs = [
            ProgramTick {
                trap: TrapKind::Emulated,
                runs: 1000,
                run_ns: 300_000,
            },
            ProgramTick {
                trap: TrapKind::SingleStepped,
                runs: 10,
                run_ns: 1_000,
            },
            ProgramTick {
                trap: TrapKind::Tracepoint,
                runs: 50,
                run_ns: 2_500,
            },
        ];
        assert_eq!(
            probe_cost_ns(&programs, &costs),
            2.0 * (1000.0 * 700.0
                + 300_000.0
                + 10.0 * 12_000.0
                + 1_000.0
                + 50.0 * TRACEPOINT_DISPATCH_NS
                + 2_500.0)
        );
    }

    #[test]
    fn the_ratio_is_taken_against_the_targets_own_time() {
        // 10 ms of probes in 110 ms of CPU: 10% of the 100 ms the target's
        // own work took.
        assert!((overhead_ratio(10e6, 110e6) - 0.1).abs() < 1e-9);
        // An idle target: a floor, not a division by nothing.
        assert!(overhead_ratio(1e3, 0.0) < 1e-3);
    }

    /// Observes `seconds` ticks of a target using 100 ms of CPU a second
    /// whose other probes cost `other_ms` and whose scheduler tracepoints
    /// cost `sched_ms` in the seconds they are attached.
    fn run_sched(governor: &mut Governor, from: u32, seconds: u32, other_ms: f64, sched_ms: f64) {
        for second in from..from + seconds {
            let on = second.is_multiple_of(governor.setting().sched_one_in);
            let sched = if on { sched_ms } else { 0.0 };
            let mut observed = tick(
                f64::from(second),
                other_ms + sched,
                100.0 + other_ms + sched,
            );
            observed.sched_ns = sched * 1e6;
            governor.observe(observed);
        }
    }

    #[test]
    fn the_scheduler_tracepoints_have_windows_of_their_own() {
        // A busy target over budget from its locks: the ladder degrades,
        // the scheduler tracepoints (0.2%: a tenth of the budget) stay.
        let mut governor = Governor::new(Budget::Percent(2.0), ALL);
        run_sched(&mut governor, 1, 20, 5.0, 0.2);
        assert!(governor.setting().level > 0);
        assert_eq!(
            governor.setting().sched_one_in,
            1,
            "{:?}",
            governor.actions()
        );
        // A nearly idle target: 0.1 ms a second is 1% of its 10 ms, but
        // nothing to lose context for.
        let mut governor = Governor::new(Budget::Percent(2.0), ALL);
        for second in 1..=20 {
            let mut observed = tick(second as f64, 0.1, 10.1);
            observed.sched_ns = 0.1e6;
            governor.observe(observed);
        }
        assert_eq!(governor.setting().sched_one_in, 1);
        // A target switching so often that they cost 4% (4 times their
        // share, half the budget): one second in 8 brings them to 0.5%,
        // within 80% of the share; nothing else degrades.
        let mut governor = Governor::new(Budget::Percent(2.0), ALL);
        run_sched(&mut governor, 1, 5, 0.0, 4.0);
        assert_eq!(
            governor.setting().sched_one_in,
            8,
            "{:?}",
            governor.actions()
        );
        assert_eq!(governor.setting().level, 0);
        let first = governor.actions()[0];
        assert_eq!(first.at_seconds, 5.0);
        assert!((first.estimated_percent - 4.0).abs() < 0.01, "{first:?}");
        // It holds there without flapping.
        run_sched(&mut governor, 6, 200, 0.0, 4.0);
        assert_eq!(
            governor.setting().sched_one_in,
            8,
            "{:?}",
            governor.actions()
        );
        assert_eq!(governor.actions().len(), 1, "{:?}", governor.actions());
        // The switching calms down: back to every second, step by step.
        run_sched(&mut governor, 206, 400, 0.0, 0.1);
        assert_eq!(
            governor.setting().sched_one_in,
            1,
            "{:?}",
            governor.actions()
        );
        let windows: Vec<u32> = governor
            .actions()
            .iter()
            .map(|a| a.setting.sched_one_in)
            .collect();
        assert_eq!(windows, [8, 4, 2, 1]);
    }

    #[test]
    fn off_never_changes_anything_but_still_estimates() {
        let mut governor = Governor::new(Budget::Off, ALL);
        for second in 0..10 {
            assert_eq!(governor.observe(tick(second as f64, 500.0, 1000.0)), None);
        }
        assert_eq!(governor.setting(), GovernorSetting::FULL);
        assert!(governor.actions().is_empty());
        assert_eq!(governor.per_second_percent().len(), 10);
        assert!((governor.estimated_percent() - 100.0).abs() < 1e-6);
    }

    #[test]
    fn within_budget_nothing_changes() {
        let mut governor = Governor::new(Budget::Percent(2.0), ALL);
        for second in 0..20 {
            // 1% overhead.
            assert_eq!(governor.observe(tick(second as f64, 1.0, 101.0)), None);
        }
        assert_eq!(governor.setting().level, 0);
    }

    #[test]
    fn just_over_budget_it_steps_down_one_at_a_time() {
        let mut governor = Governor::new(Budget::Percent(2.0), ALL);
        // A constant 3% (under twice the aim, 1.6%), whatever the setting, as
        // when the non-window steps save nothing: one step at a time, then
        // the window that fits.
        let mut levels = Vec::new();
        for second in 1..=100 {
            let setting = governor.setting();
            let on = (second as u32).is_multiple_of(setting.probes_one_in);
            let probe = if on { 3.0 } else { 0.0 };
            if let Some(changed) = governor.observe(tick(second as f64, probe, 100.0 + probe)) {
                levels.push(changed.level);
            }
        }
        assert_eq!(levels, vec![1, 2, 3, 4, 5], "{:?}", governor.actions());
        assert_eq!(governor.setting().probes_one_in, 2);
    }

    #[test]
    fn far_over_budget_it_jumps_to_the_window_that_fits() {
        let mut governor = Governor::new(Budget::Percent(2.0), ALL);
        // 40% at full: windows of 1 in 20 or more are needed; one in 32.
        let changed = governor.observe(tick(1.0, 40.0, 140.0)).expect("a change");
        assert_eq!(changed.probes_one_in, 32);
        assert!(
            !changed.stacks && changed.keys_one_in == KEY_SAMPLING && changed.waits_one_in == 4
        );
        // It stays there: over a whole window the estimate fits.
        let mut second = 1;
        for _ in 0..128 {
            second += 1;
            let on = (second as u32).is_multiple_of(governor.setting().probes_one_in);
            let probe = if on { 40.0 } else { 0.0 };
            if let Some(setting) = governor.observe(tick(second as f64, probe, 100.0 + probe)) {
                assert!(setting.probes_one_in >= 32, "{setting:?}");
            }
        }
    }

    #[test]
    fn when_the_load_falls_it_recovers_step_by_step() {
        let mut governor = Governor::new(Budget::Percent(2.0), ALL);
        let mut at = 0.0;
        // Heavy load: down to some windows.
        while governor.setting().probes_one_in < 4 {
            at += 1.0;
            governor.observe(tick(at, 10.0, 110.0));
            assert!(at < 100.0, "never degraded");
        }
        let degraded = governor.setting().level;
        // The load falls to almost nothing: back to full, one step at a
        // time.
        for _ in 0..2000 {
            at += 1.0;
            governor.observe(tick(at, 0.001, 100.0));
        }
        assert_eq!(governor.setting(), GovernorSetting::FULL);
        let ups: Vec<u32> = governor
            .actions()
            .iter()
            .map(|a| a.setting.level)
            .skip_while(|&level| level != degraded)
            .collect();
        for pair in ups.windows(2) {
            assert_eq!(pair[1] + 1, pair[0], "{ups:?}");
        }
    }

    #[test]
    fn a_steady_load_just_over_budget_holds_one_window_without_flapping() {
        let mut governor = Governor::new(Budget::Percent(2.0), Capabilities::default());
        // A steady 3% at full: windows of 1 in 2 hold it at 1.5%, which
        // projects back to 3% — never under 60% of the budget.
        let mut at = 0.0;
        let mut changes = 0;
        for _ in 0..200 {
            at += 1.0;
            let setting = governor.setting();
            let on = (at as u32).is_multiple_of(setting.probes_one_in);
            let probe = if on { 3.0 } else { 0.0 };
            if governor.observe(tick(at, probe, 100.0 + probe)).is_some() {
                changes += 1;
            }
        }
        assert_eq!(
            governor.setting().probes_one_in,
            2,
            "{:?}",
            governor.actions()
        );
        assert_eq!(changes, 1, "{:?}", governor.actions());
    }

    #[test]
    fn a_recovery_that_overshoots_makes_the_next_one_wait_longer() {
        let only_stacks = Capabilities {
            stacks: true,
            ..Capabilities::default()
        };
        let mut governor = Governor::new(Budget::Percent(2.0), only_stacks);
        // Stacks cost most of it: 3% with them, 0.5% without, so each
        // recovery (projected at 1%) overshoots.
        let mut recoveries = Vec::new();
        for second in 1..=400 {
            let probe = if governor.setting().stacks { 3.0 } else { 0.5 };
            if let Some(setting) = governor.observe(tick(second as f64, probe, 100.0 + probe)) {
                if setting.stacks {
                    recoveries.push(second);
                }
            }
        }
        assert!(recoveries.len() >= 3, "{recoveries:?}");
        let gaps: Vec<i32> = recoveries.windows(2).map(|w| w[1] - w[0]).collect();
        // Each wait doubles, up to a cap.
        for pair in gaps.windows(2) {
            assert!(pair[1] >= pair[0], "gaps between recoveries: {gaps:?}");
        }
        assert!(gaps[2] > 2 * gaps[0], "gaps between recoveries: {gaps:?}");
    }
}
