//! The pipeline's side of the overhead governor: prices each second's probe
//! hits, asks the [`Governor`] what to do, and does it — switches in the
//! kernel's `CONTROL`, key sampling, and windows that detach and attach
//! whole probe groups — keeping account of how long each group was on, so
//! that sampled figures can be scaled.

use std::{
    collections::HashMap,
    sync::mpsc,
    time::{Duration, Instant},
};

use probe_common::Control;

use crate::{
    governor::{probe_cost_ns, Budget, Capabilities, Governor, Observation, ProgramTick, TrapKind},
    loader::{
        calibrate::{calibrate, TrapCosts},
        AttachedProbes, Detaching, LoadError, ProbeGroup, TracepointFamily,
    },
    model::{GovernorSetting, OverheadReport, ProbeCounters, Sampling, TrapCost, INDIRECT_FACTOR},
    process::Process,
};

/// One probe group's windows: whether it is on, since when, for how long
/// in all, and the links of its last window still being closed.
#[derive(Default)]
struct Window {
    on_since: Option<Instant>,
    on_total: Duration,
    detaching: Option<Detaching>,
}

impl Window {
    fn is_on(&self) -> bool {
        self.on_since.is_some()
    }

    /// Time on so far, the current window included.
    fn on_time(&self, now: Instant) -> Duration {
        self.on_total + self.on_since.map_or(Duration::ZERO, |since| now - since)
    }

    fn ready_to_attach(&self) -> bool {
        self.detaching.as_ref().is_none_or(Detaching::is_done)
    }
}

/// The governor at work on one target.
pub(super) struct Overhead {
    governor: Governor,
    process: Process,
    traps: TrapCost,
    calibration: Option<mpsc::Receiver<Result<TrapCosts, LoadError>>>,
    /// Each program's (runs, run ns) at the last tick.
    last_runs: HashMap<&'static str, (u64, u64)>,
    /// Each tracepoint family's runs about the target at the last tick.
    last_target_runs: HashMap<TracepointFamily, u64>,
    /// The tracepoint programs' cost to the whole host so far, ns.
    host_tracepoint_ns: f64,
    /// The scheduler tracepoints' part of the last priced hits, ns.
    last_sched_ns: f64,
    last_cpu_ns: Option<u64>,
    /// The target's CPU time as last polled, and when: what the final
    /// accounting falls back on when the target is gone (a process that
    /// exited and was reaped has no `/proc/PID/stat` to read).
    polled_cpu: Option<(u64, Instant)>,
    started: Instant,
    ticks: u64,
    counting: Window,
    waits: Window,
    has_waits: bool,
    /// The scheduler tracepoints' windows (their own, apart from the
    /// ladder), when the plan has them.
    sched: Window,
    has_sched: bool,
    /// The switches as last written.
    control: Control,
    /// The target's own CPU time (the probes' direct time taken out) over the session, and
    /// during the seconds each group was on, ns: the work each group saw.
    own_total_ns: f64,
    own_counting_ns: f64,
    own_waits_ns: f64,
    /// When the last accounting was: a window opens only once its links
    /// are attached (its `on_since`), part of the way into a second, and
    /// only that part of the second is credited to it.
    last_account: Instant,
}

/// The share of the interval from `start` to `now` that a window opened
/// at `switched_on` (`None`: closed) was open for.
fn on_share(start: Instant, switched_on: Option<Instant>, now: Instant) -> f64 {
    let Some(on) = switched_on else {
        return 0.0;
    };
    let interval = now.saturating_duration_since(start).as_secs_f64();
    if interval <= 0.0 {
        return 1.0;
    }
    let on_for = now.saturating_duration_since(on.max(start)).as_secs_f64();
    (on_for / interval).clamp(0.0, 1.0)
}

/// The part of a host-wide tracepoint program's tick that was about the
/// target: its family ran `all` times, `ours` of them about the target.
fn target_share(tick: ProgramTick, ours: u64, all: u64) -> ProgramTick {
    if all == 0 {
        return ProgramTick {
            runs: 0,
            run_ns: 0,
            ..tick
        };
    }
    let share = (ours as f64 / all as f64).min(1.0);
    ProgramTick {
        runs: (tick.runs as f64 * share).round() as u64,
        run_ns: (tick.run_ns as f64 * share).round() as u64,
        ..tick
    }
}

/// Below this much of the target's own CPU time, ns, sampled fractions
/// are taken from wall time instead.
const MIN_OWN_NS: f64 = 50e6;

/// The least share of a second's CPU time taken as the target's own work
/// when the probes' estimated cost comes to more than that second's CPU.
const MIN_OWN_SHARE: f64 = 0.1;

/// Key sampling rates as the kernel's shift (one key in `2^shift`).
fn key_shift(one_in: u32) -> u32 {
    one_in.max(1).ilog2()
}

impl Overhead {
    /// Starts governing `probes` (just attached, everything on) within
    /// `budget`; `None` when the budget is off (nothing is estimated or
    /// ever sampled). Calibrates the trap costs on a thread of its own.
    pub(super) fn start(
        budget: Budget,
        capabilities: Capabilities,
        probes: &mut AttachedProbes,
        process: Process,
    ) -> Result<Option<Self>, LoadError> {
        if budget == Budget::Off {
            return Ok(None);
        }
        probes.keep_run_stats()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(calibrate());
        });
        let now = Instant::now();
        let mut overhead = Self {
            governor: Governor::new(budget, capabilities),
            process,
            traps: TrapCost {
                emulated_ns: TrapCosts::ASSUMED.emulated_ns,
                single_stepped_ns: TrapCosts::ASSUMED.single_stepped_ns,
                calibrated: false,
                indirect_factor: INDIRECT_FACTOR,
            },
            calibration: Some(rx),
            last_runs: HashMap::new(),
            last_target_runs: HashMap::new(),
            host_tracepoint_ns: 0.0,
            last_sched_ns: 0.0,
            last_cpu_ns: None,
            polled_cpu: None,
            started: now,
            ticks: 0,
            counting: Window {
                on_since: Some(now),
                ..Window::default()
            },
            waits: Window {
                on_since: capabilities.waits.then_some(now),
                ..Window::default()
            },
            has_waits: capabilities.waits,
            sched: Window {
                on_since: capabilities.sched.then_some(now),
                ..Window::default()
            },
            has_sched: capabilities.sched,
            control: Control {
                holders: u32::from(capabilities.holders),
                ..Control::default_on()
            },
            own_total_ns: 0.0,
            own_counting_ns: 0.0,
            own_waits_ns: 0.0,
            last_account: now,
        };
        overhead.read_baselines(probes);
        Ok(Some(overhead))
    }

    fn read_baselines(&mut self, probes: &AttachedProbes) {
        for runs in probes.program_runs() {
            self.last_runs
                .insert(runs.program, (runs.runs, runs.run_ns));
        }
        if let Ok(counters) = probes.counters() {
            self.target_runs_since(&counters);
        }
        self.last_cpu_ns = self.process.cpu_time_ns().ok();
    }

    /// Each tracepoint family's runs about the target since the last call,
    /// from the probe counters as read now.
    fn target_runs_since(&mut self, counters: &ProbeCounters) -> HashMap<TracepointFamily, u64> {
        [
            (TracepointFamily::Sched, counters.sched_target_runs),
            (TracepointFamily::Futex, counters.futex_target_runs),
        ]
        .into_iter()
        .map(|(family, now)| {
            let before = self.last_target_runs.insert(family, now).unwrap_or(0);
            (family, now.saturating_sub(before))
        })
        .collect()
    }

    /// The second's hits priced, ns: the uprobes' in full, the host-wide
    /// tracepoints' for their share of runs about the target (their whole
    /// cost is kept apart, as the host's).
    fn probe_ns(&mut self, probes: &AttachedProbes, counters: &ProbeCounters) -> f64 {
        let mut ticks = Vec::new();
        for runs in probes.program_runs() {
            let (runs_before, ns_before) = self
                .last_runs
                .insert(runs.program, (runs.runs, runs.run_ns))
                .unwrap_or((0, 0));
            let tick = ProgramTick {
                trap: if runs.tracepoint.is_some() {
                    TrapKind::Tracepoint
                } else if runs.single_stepped {
                    TrapKind::SingleStepped
                } else {
                    TrapKind::Emulated
                },
                runs: runs.runs.saturating_sub(runs_before),
                run_ns: runs.run_ns.saturating_sub(ns_before),
            };
            ticks.push((runs.tracepoint, tick));
        }
        let ours = self.target_runs_since(counters);
        let mut family_runs: HashMap<TracepointFamily, u64> = HashMap::new();
        for (family, tick) in &ticks {
            if let Some(family) = family {
                *family_runs.entry(*family).or_default() += tick.runs;
            }
        }
        let mut programs = Vec::new();
        let mut sched = Vec::new();
        for (family, tick) in ticks {
            let Some(family) = family else {
                programs.push(tick);
                continue;
            };
            self.host_tracepoint_ns += probe_cost_ns(&[tick], &self.traps);
            let all = family_runs.get(&family).copied().unwrap_or(0);
            let share = target_share(tick, ours.get(&family).copied().unwrap_or(0), all);
            if family == TracepointFamily::Sched {
                sched.push(share);
            }
            programs.push(share);
        }
        self.last_sched_ns = probe_cost_ns(&sched, &self.traps);
        probe_cost_ns(&programs, &self.traps)
    }

    /// Prices the hits since the last call and reads the target's CPU time
    /// since then; credits the target's own time to the groups that were on
    /// meanwhile. Returns (probe ns, target CPU ns).
    fn account(&mut self, probes: &AttachedProbes, counters: &ProbeCounters) -> (f64, f64) {
        let probe_ns = self.probe_ns(probes, counters);
        let read = self
            .process
            .cpu_time_ns()
            .ok()
            .map(|cpu| (cpu, Instant::now()))
            .or(self.polled_cpu);
        // The interval ends when the CPU time was read (the last poll's
        // instant when the target is gone).
        let (cpu_now, now) = match read {
            Some((cpu, at)) => (Some(cpu), at.max(self.last_account)),
            None => (None, Instant::now()),
        };
        let cpu_ns = match (cpu_now, self.last_cpu_ns) {
            (Some(now), Some(before)) => now.saturating_sub(before) as f64,
            _ => 0.0,
        };
        self.last_cpu_ns = cpu_now.or(self.last_cpu_ns);
        // What the target did for itself: its CPU time less the probes'
        // direct time, traps and programs (an estimate, which can overshoot
        // a second's CPU time: the target always did some work of its own
        // when it used the CPU). The indirect part the budget adds on is a
        // conservative guess, right for a limit but not for a share: taken
        // out too, it made every scaled count err high (+6% on the hot-keys
        // fixture, whose spinning work hardly slows after a trap). Left in,
        // a target whose code does slow after traps has its windows weigh
        // a little more than their work, so counts err low, never high.
        let direct_ns = probe_ns / self.traps.indirect_factor.max(1.0);
        let own = (cpu_ns - direct_ns).max(cpu_ns * MIN_OWN_SHARE);
        self.own_total_ns += own;
        self.own_counting_ns += own * on_share(self.last_account, self.counting.on_since, now);
        self.own_waits_ns += own * on_share(self.last_account, self.waits.on_since, now);
        self.last_account = now;
        (probe_ns, cpu_ns)
    }

    /// Reads the target's CPU time, for [`Self::finish`] to fall back on
    /// should the target be gone by then (called a few times a second).
    pub(super) fn poll_cpu(&mut self) {
        if let Ok(cpu) = self.process.cpu_time_ns() {
            self.polled_cpu = Some((cpu, Instant::now()));
        }
    }

    /// Whether lock waits are being timed (the waits group is on): read
    /// before a tick applies the next second's setting, whether they were
    /// in the second that ends.
    pub(super) fn waits_timed(&self) -> bool {
        self.waits.is_on()
    }

    /// Whether the scheduler tracepoints are timing waits for a CPU (read
    /// likewise before a tick applies the next setting).
    pub(super) fn run_queue_watched(&self) -> bool {
        self.sched.is_on()
    }

    /// Credits the time since the last tick (when the session stops);
    /// `counters`: the probe counters of the session's last reading.
    pub(super) fn finish(&mut self, probes: &AttachedProbes, counters: &ProbeCounters) {
        self.account(probes, counters);
    }

    /// One tick, after the tick's sample was read: estimates, decides, and
    /// applies the setting for the next second. Returns the keys' weight
    /// from now on (operations each recorded key stands for). `counters`:
    /// the probe counters of the tick's sample.
    pub(super) fn tick(
        &mut self,
        probes: &mut AttachedProbes,
        counters: &ProbeCounters,
    ) -> Result<u64, LoadError> {
        if let Some(calibration) = &self.calibration {
            match calibration.try_recv() {
                Ok(Ok(costs)) => {
                    log::debug!("calibrated: {costs:?}");
                    self.traps = TrapCost {
                        emulated_ns: costs.emulated_ns,
                        single_stepped_ns: costs.single_stepped_ns,
                        calibrated: true,
                        indirect_factor: INDIRECT_FACTOR,
                    };
                    self.calibration = None;
                }
                Ok(Err(e)) => {
                    log::warn!("calibrating the probes' cost failed ({e}); assuming {:.0} ns per emulated hit", self.traps.emulated_ns);
                    self.calibration = None;
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => self.calibration = None,
            }
        }
        let (probe_ns, cpu_ns) = self.account(probes, counters);
        let sched_ns = self.last_sched_ns;
        let at_seconds = self.started.elapsed().as_secs_f64();
        if let Some(setting) = self.governor.observe(Observation {
            at_seconds,
            probe_ns,
            target_cpu_ns: cpu_ns,
            sched_ns,
        }) {
            log::debug!("governor: {setting:?} at {at_seconds:.1}s");
        }
        self.ticks += 1;
        self.apply(probes)?;
        Ok(u64::from(self.governor.setting().keys_one_in))
    }

    /// Puts the setting in force for the coming second.
    fn apply(&mut self, probes: &mut AttachedProbes) -> Result<(), LoadError> {
        let setting = self.governor.setting();
        let period = u64::from(setting.probes_one_in.max(1));
        let counting_wanted = self.ticks.is_multiple_of(period);
        let waits_wanted = self.has_waits
            && counting_wanted
            && (self.ticks / period).is_multiple_of(u64::from(setting.waits_one_in.max(1)));
        let now = Instant::now();
        // Off first (switches, then links), on last (links, then switches).
        let sched_wanted = self.has_sched
            && self
                .ticks
                .is_multiple_of(u64::from(setting.sched_one_in.max(1)));
        let counting_on = self.counting.is_on() && counting_wanted;
        let waits_on = self.waits.is_on() && waits_wanted;
        let sched_on = self.sched.is_on() && sched_wanted;
        self.write_control(probes, setting, [counting_on, waits_on, sched_on])?;
        if self.sched.is_on() && !sched_wanted {
            self.close(probes, ProbeGroup::Sched, now)?;
        }
        if self.waits.is_on() && !waits_wanted {
            self.close(probes, ProbeGroup::Waits, now)?;
        }
        if self.counting.is_on() && !counting_wanted {
            self.close(probes, ProbeGroup::Counting, now)?;
        }
        if !self.counting.is_on() && counting_wanted && self.counting.ready_to_attach() {
            probes.attach_group(ProbeGroup::Counting)?;
            self.counting.on_since = Some(Instant::now());
        }
        if !self.waits.is_on()
            && waits_wanted
            && self.counting.is_on()
            && self.waits.ready_to_attach()
        {
            probes.reset_wait_state()?;
            probes.attach_group(ProbeGroup::Waits)?;
            self.waits.on_since = Some(Instant::now());
        }
        if !self.sched.is_on() && sched_wanted && self.sched.ready_to_attach() {
            probes.attach_group(ProbeGroup::Sched)?;
            self.sched.on_since = Some(Instant::now());
        }
        let on = [
            self.counting.is_on(),
            self.waits.is_on(),
            self.sched.is_on(),
        ];
        self.write_control(probes, setting, on)
    }

    fn close(
        &mut self,
        probes: &mut AttachedProbes,
        group: ProbeGroup,
        now: Instant,
    ) -> Result<(), LoadError> {
        let window = match group {
            ProbeGroup::Counting => &mut self.counting,
            ProbeGroup::Waits => &mut self.waits,
            ProbeGroup::Sched => &mut self.sched,
            // Never windowed.
            ProbeGroup::Runtime => return Ok(()),
        };
        if let Some(since) = window.on_since.take() {
            window.on_total += now - since;
        }
        window.detaching = Some(probes.detach_group(group)?);
        Ok(())
    }

    fn write_control(
        &mut self,
        probes: &mut AttachedProbes,
        setting: GovernorSetting,
        [counting_on, waits_on, sched_on]: [bool; 3],
    ) -> Result<(), LoadError> {
        let control = Control {
            enabled: u32::from(counting_on),
            stacks: u32::from(setting.stacks),
            wait_times: u32::from(waits_on),
            key_sample_shift: key_shift(setting.keys_one_in),
            runtime: 1,
            holders: self.control.holders,
            sched: u32::from(sched_on),
            _pad: 0,
        };
        if control != self.control {
            probes.set_control(control)?;
            self.control = control;
        }
        Ok(())
    }

    /// How much of the target's work each group saw, so far: its own CPU
    /// time (the probes' direct time taken out) during the seconds the group was on,
    /// over its own CPU time in all. Work, not wall time: seconds the target
    /// idles weigh nothing, and the seconds a probe slows it weigh what was
    /// done in them. Wall time when the target used no CPU to speak of.
    pub(super) fn sampling(&self) -> Sampling {
        let ever_windowed = |waits: bool| {
            self.governor
                .actions()
                .iter()
                .any(|a| a.setting.probes_one_in > 1 || (waits && a.setting.waits_one_in > 1))
        };
        if !ever_windowed(true) {
            return Sampling::EXACT;
        }
        let now = Instant::now();
        let (counting, waits) = if self.own_total_ns >= MIN_OWN_NS {
            (
                self.own_counting_ns / self.own_total_ns,
                self.own_waits_ns / self.own_total_ns,
            )
        } else {
            let elapsed = (now - self.started).as_secs_f64().max(1e-9);
            (
                self.counting.on_time(now).as_secs_f64() / elapsed,
                self.waits.on_time(now).as_secs_f64() / elapsed,
            )
        };
        let counting = if ever_windowed(false) {
            counting.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let waits = if self.has_waits {
            waits.clamp(0.0, counting)
        } else {
            counting
        };
        Sampling { counting, waits }
    }

    /// The report's figures.
    pub(super) fn report(&self) -> OverheadReport {
        let (probe_ns, cpu_ns) = self.governor.totals_ns();
        OverheadReport {
            budget_percent: self.governor.budget_percent(),
            estimated_percent: self.governor.estimated_percent(),
            per_second_percent: self.governor.per_second_percent().to_vec(),
            probe_seconds: probe_ns / 1e9,
            target_cpu_seconds: cpu_ns / 1e9,
            host_tracepoint_seconds: self.host_tracepoint_ns / 1e9,
            trap_cost: self.traps,
            setting: self.governor.setting(),
            actions: self.governor.actions().to_vec(),
            sampling: self.sampling(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_opened_late_in_a_second_is_credited_its_part() {
        let start = Instant::now();
        let now = start + Duration::from_millis(1000);
        assert_eq!(on_share(start, None, now), 0.0);
        assert_eq!(on_share(start, Some(start), now), 1.0);
        // On since before the interval: the whole interval.
        assert_eq!(
            on_share(start + Duration::from_millis(10), Some(start), now),
            1.0
        );
        let late = on_share(start, Some(start + Duration::from_millis(250)), now);
        assert!((late - 0.75).abs() < 1e-9, "{late}");
        assert_eq!(on_share(now, Some(now), now), 1.0);
    }

    #[test]
    fn host_wide_tracepoints_are_charged_for_the_targets_runs_only() {
        let tick = ProgramTick {
            trap: TrapKind::Tracepoint,
            runs: 1000,
            run_ns: 50_000,
        };
        let ours = target_share(tick, 100, 2000);
        assert_eq!((ours.runs, ours.run_ns), (50, 2_500));
        // Never more than all of it (the counters are read a moment later).
        assert_eq!(target_share(tick, 3000, 2000).runs, 1000);
        assert_eq!(target_share(tick, 0, 0).runs, 0);
    }

    #[test]
    fn key_rates_map_to_the_kernels_shifts() {
        assert_eq!(key_shift(1), 0);
        assert_eq!(key_shift(8), 3);
        assert_eq!(key_shift(64), 6);
        assert_eq!(key_shift(0), 0);
    }
}
