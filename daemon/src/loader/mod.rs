//! Loads the embedded BPF object, writes each planned site's configuration
//! and attaches one uprobe per site to the target process; reads the
//! kernel side's counters, CAS counts, per-map counts and stacks back.

use std::{collections::HashMap, num::NonZeroU32, path::Path};

use aya::{
    maps::{Array, Map, MapData, MapError, PerCpuArray, StackTraceMap},
    programs::{
        trace_point::TracePointLinkId,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
        ProgramError, TracePoint, UProbe,
    },
    Ebpf, EbpfError, Pod,
};
use probe_common::{
    BlockedStats, CasCounts, Control, ConvoyState, ConvoyStats, Counter, GeneralRegister,
    HolderKey, HolderStats, KeyCounts, KeyCountsKey, LockStats, LockStatsKey, MapCounts, MapFilter,
    MapSiteConfig, NativeCode, OutcomeSource, ReleaseLog, RunQueueStats, RunnableSince, SiteConfig,
    ThreadWaitKey, ThreadWaitStats, CONDITION_NEGATED, COUNTER_SLOTS, MAP_OPS, MAX_SITES,
    NATIVE_SIGNAL_RANGES, NATIVE_SKIP_RANGES, NO_REGISTER,
};
use thiserror::Error;

pub mod calibrate;
pub mod exec;

use crate::{
    goruntime,
    model::{MapKind, ProbeCounters, SiteCost},
    plan::{
        cas::Outcome, exits::ExitWhen, native::NativeLockCall, x86::general_register, LockProbe,
        Placement, PlannedSite, ProbePlan, RuntimeSite, SiteProbe,
    },
};

/// The probe object, built from `probe-ebpf` by the build script (empty
/// when built with `MAPWATCH_NO_BPF=1`, for checks without the BPF
/// toolchain).
static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mapwatch-probes"));

/// The uprobe programs, by what their sites observe.
const LOCK_SLOW_PROGRAM: &str = "lock_slow";
const LOCK_SLOW_RET_PROGRAM: &str = "lock_slow_ret";
const LOCK_EXIT_PROGRAM: &str = "lock_exit";
const LOCK_RELEASE_PROGRAM: &str = "lock_release";
const CAS_OUTCOME_PROGRAM: &str = "cas_outcome";
const GO_READY_PROGRAM: &str = "go_ready";
const GO_RUNTIME_PROGRAM: &str = "go_runtime";
const MAP_OP_PROGRAM: &str = "map_op";

/// Errors loading or attaching probes, or reading them back.
#[derive(Debug, Error)]
pub enum LoadError {
    /// This binary was built without the BPF object (`MAPWATCH_NO_BPF`).
    #[error("this mapwatch was built without its BPF probes (MAPWATCH_NO_BPF); build it with `cargo xtask build`")]
    NoObject,
    /// The kernel refused the BPF object or a map in it.
    #[error("loading the BPF probes failed")]
    Load(#[source] Box<EbpfError>),
    /// The object lacks a map or program the daemon expects.
    #[error("the embedded BPF object has no {0}")]
    Missing(&'static str),
    /// A map could not be used.
    #[error("BPF map {name}: {what}")]
    Map {
        /// The map.
        name: &'static str,
        /// What was done with it.
        what: String,
        /// What the kernel (or aya) said.
        #[source]
        source: Box<MapError>,
    },
    /// A program could not be loaded or attached.
    #[error("BPF program {name}: {what}")]
    Program {
        /// The program.
        name: &'static str,
        /// What was done with it.
        what: String,
        /// What the kernel (or aya) said.
        #[source]
        source: Box<ProgramError>,
    },
    /// The verifier refused a program.
    #[error("the kernel's verifier refused BPF program {name}: {tail}")]
    Verifier {
        /// The program.
        name: &'static str,
        /// The verifier log's last lines.
        tail: String,
        /// The syscall's error.
        #[source]
        source: std::io::Error,
    },
    /// Too many sites for the `SITES` map.
    #[error("{0} probe sites planned, at most {MAX_SITES} supported")]
    TooManySites(usize),
    /// A site names a register the kernel side cannot read.
    #[error("{function}: the outcome is in {register}, which the probes cannot read")]
    Register {
        /// The function.
        function: String,
        /// The register.
        register: String,
    },
    /// Attaching a uprobe failed.
    #[error("attaching a uprobe to {function} at file offset {file_offset:#x} of {exe}")]
    Attach {
        /// The function.
        function: String,
        /// The file offset.
        file_offset: u64,
        /// The executable.
        exe: String,
        /// What the kernel said.
        #[source]
        source: Box<ProgramError>,
    },
    /// A program could not be detached.
    #[error("detaching BPF program {name}")]
    Detach {
        /// The program.
        name: String,
        /// What the kernel (or aya) said.
        #[source]
        source: Box<ProgramError>,
    },
    /// The calibration could not find or probe its own function.
    #[error("calibrating the cost of a probe hit")]
    Calibration(#[source] std::io::Error),
    /// The kernel would not keep run-time statistics.
    #[error("enabling BPF run-time statistics")]
    RunStats(#[source] Box<aya::sys::SyscallError>),
    /// A scheduler tracepoint's record is not laid out as the probes read it.
    #[error("tracepoint sched/{event}: field `{field}` is not where the probes read it (expected {expected}, the format file says {found})")]
    TracepointFormat {
        /// The event.
        event: &'static str,
        /// The field.
        field: &'static str,
        /// Offset and size the probes assume.
        expected: String,
        /// What the format file says.
        found: String,
    },
    /// A tracepoint's format file could not be read.
    #[error("reading the format of tracepoint sched/{event} under {TRACEFS}")]
    TracepointFormatFile {
        /// The event.
        event: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The target's threads could not be listed.
    #[error("listing the threads of PID {pid} in /proc/{pid}/task")]
    Threads {
        /// The process.
        pid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// tracefs is not mounted and could not be.
    #[error("tracefs is not mounted and mounting it at {TRACEFS} failed")]
    Tracefs(#[source] std::io::Error),
}

/// A set of probes attached and detached together by the overhead
/// governor's windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeGroup {
    /// What counts: lock entries, semaphore waits, `runtime.ready`, CAS
    /// outcomes, map operations.
    Counting,
    /// The ends of lock waits (exit edges and returns): wait times; and
    /// the release slow paths that blame holders for them.
    Waits,
    /// Go's GC cycles and stop-the-world pauses: a few hits a second,
    /// never windowed (switched by [`Control::runtime`]).
    Runtime,
    /// The scheduler tracepoints timing the target's threads' waits for a
    /// CPU: host-wide (they run at every context switch of the host), the
    /// first thing the governor gives up.
    Sched,
}

/// One uprobe of the plan, kept to attach it again.
struct UprobeSite {
    program: &'static str,
    cookie: usize,
    at: Placement,
    group: ProbeGroup,
}

/// Links being closed, by a thread of their own: each detached uprobe
/// waits for a kernel grace period (about 0.1 s here, one after another).
pub struct Detaching(std::thread::JoinHandle<()>);

impl Detaching {
    /// Whether every link is closed.
    pub fn is_done(&self) -> bool {
        self.0.is_finished()
    }
}

/// Loaded and attached probes. Dropping this detaches them.
pub struct AttachedProbes {
    ebpf: Ebpf,
    /// Possible CPUs: the width of per-CPU values.
    cpus: usize,

    /// Every uprobe of the plan.
    sites: Vec<UprobeSite>,
    /// The attached uprobes' programs and links, by group.
    uprobe_links: Vec<(ProbeGroup, &'static str, UProbeLinkId)>,
    /// The futex tracepoints' links.
    tracepoint_links: Vec<(&'static str, TracePointLinkId)>,
    /// The links of the uprobes in libc that tell condition-variable and
    /// rwlock waits apart (attached with the futex tracepoints).
    native_call_links: Vec<UProbeLinkId>,
    /// The scheduler tracepoints' links, while attached.
    sched_links: Vec<(&'static str, TracePointLinkId)>,
    /// Whether the plan times waits for a CPU (the scheduler tracepoints).
    sched: bool,
    /// The target.
    pid: u32,
    /// The executable's path, name (for errors), and the uprobes' scope.
    exe_path: std::path::PathBuf,
    exe_name: String,
    scope: UProbeScope,
    /// Number of attached probes (uprobes and tracepoints).
    pub attached: usize,
    /// Held while the kernel keeps programs' run-time statistics.
    run_stats: Option<std::os::fd::OwnedFd>,
}

/// How often one program ran and for how long, in the kernel's run-time
/// statistics (kept only while some process holds them on; see
/// [`AttachedProbes::keep_run_stats`]). The time is the program's own,
/// without the trap that ran it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramRuns {
    /// The program's name in the object.
    pub program: &'static str,
    /// Runs since it was loaded.
    pub runs: u64,
    /// Total run time, ns.
    pub run_ns: u64,
    /// Whether some site of the program is not an emulated instruction
    /// (a function's entry, or single-stepped): its hits cost more.
    pub single_stepped: bool,
    /// Which tracepoints it is attached to, if it is a tracepoint program
    /// (no trap: the kernel calls it from its own code, for every process).
    pub tracepoint: Option<TracepointFamily>,
}

/// The host-wide tracepoint programs, by what they watch: each family
/// counts its runs about the target ([`ProbeCounters::sched_target_runs`],
/// [`ProbeCounters::futex_target_runs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TracepointFamily {
    /// `syscalls:sys_{enter,exit}_futex`.
    Futex,
    /// `sched:*`.
    Sched,
}

/// Every uprobe program, for [`AttachedProbes::program_runs`].
const UPROBE_PROGRAMS: [&str; 9] = [
    NATIVE_CALL_PROGRAM,
    LOCK_SLOW_PROGRAM,
    LOCK_SLOW_RET_PROGRAM,
    LOCK_EXIT_PROGRAM,
    LOCK_RELEASE_PROGRAM,
    CAS_OUTCOME_PROGRAM,
    GO_READY_PROGRAM,
    GO_RUNTIME_PROGRAM,
    MAP_OP_PROGRAM,
];

/// The uprobe program of [`crate::plan::native::NATIVE_LOCK_CALLS`].
const NATIVE_CALL_PROGRAM: &str = "native_lock_call";

/// The futex tracepoint programs.
const FUTEX_PROGRAMS: [&str; 2] = ["futex_enter", "futex_exit"];

/// The scheduler tracepoint programs and their events (category `sched`).
const SCHED_PROGRAMS: [(&str, &str); 4] = [
    ("sched_switch", "sched_switch"),
    ("sched_wakeup", "sched_wakeup"),
    ("sched_wakeup_new", "sched_wakeup_new"),
    ("sched_process_exit", "sched_process_exit"),
];

/// The record fields the scheduler programs read: (event, field, offset,
/// size), checked against the format files before attaching.
const SCHED_FIELDS: [(&str, &str, usize, usize); 4] = [
    (
        "sched_switch",
        "prev_state",
        probe_common::SCHED_SWITCH_PREV_STATE,
        8,
    ),
    (
        "sched_switch",
        "next_pid",
        probe_common::SCHED_SWITCH_NEXT_PID,
        4,
    ),
    ("sched_wakeup", "pid", probe_common::SCHED_WAKEUP_PID, 4),
    ("sched_wakeup_new", "pid", probe_common::SCHED_WAKEUP_PID, 4),
];

/// A map error with its context.
fn map_error(name: &'static str, what: impl Into<String>) -> impl FnOnce(MapError) -> LoadError {
    let what = what.into();
    move |source| LoadError::Map {
        name,
        what,
        source: Box::new(source),
    }
}

/// The probe object loaded into the kernel — its maps made, its uprobe
/// programs verified — and not attached to anything yet. Independent of
/// any target, so it can be loaded while the target's executable is read
/// and planned (about half the time to attach, on another core).
pub struct LoadedObject {
    ebpf: Ebpf,
}

impl LoadedObject {
    /// Loads the embedded object and every uprobe program in it.
    pub fn load() -> Result<Self, LoadError> {
        if PROBE_OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let mut ebpf = Ebpf::load(PROBE_OBJECT).map_err(|e| LoadError::Load(Box::new(e)))?;
        for program in UPROBE_PROGRAMS {
            load_uprobe(&mut ebpf, program)?;
        }
        Ok(Self { ebpf })
    }
}

impl AttachedProbes {
    /// Attaches every site of `plan` to process `pid` with the programs of
    /// `object`; the executable opens at `exe_path` (named `exe_name` in
    /// errors) and is loaded at link-time address + `load_bias`. With the
    /// futex tracepoints go `native_calls`, uprobes in the modules at the
    /// paths given (libc). Counting stays switched off until
    /// [`Self::set_control`] turns it on.
    pub fn attach(
        object: LoadedObject,
        plan: &ProbePlan,
        pid: u32,
        exe_path: &Path,
        exe_name: &str,
        load_bias: u64,
        native_calls: &[(std::path::PathBuf, NativeLockCall)],
    ) -> Result<Self, LoadError> {
        for len in [plan.sites.len(), plan.map_sites.len()] {
            if len > MAX_SITES as usize {
                return Err(LoadError::TooManySites(len));
            }
        }
        let mut ebpf = object.ebpf;
        // Nothing counts until the caller switches counting on (once every
        // probe is attached and its rings are read): a session's counts
        // start at one instant, which the governor's accounting starts at.
        write_control(&mut ebpf, Control::all_off())?;
        write_sites(&mut ebpf, plan)?;
        let scope = NonZeroU32::new(pid).map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        let mut sites = Vec::new();
        for (cookie, site) in plan.sites.iter().enumerate() {
            let (program, group) = match site.probe {
                SiteProbe::LockEntry(_) | SiteProbe::SemaEntry(_) => {
                    (LOCK_SLOW_PROGRAM, ProbeGroup::Counting)
                }
                SiteProbe::LockReturn(_) => (LOCK_SLOW_RET_PROGRAM, ProbeGroup::Waits),
                SiteProbe::LockExit { .. } => (LOCK_EXIT_PROGRAM, ProbeGroup::Waits),
                // A release charges the waiting its lock's queue counted:
                // it runs exactly while waits are timed.
                SiteProbe::LockRelease(_) => (LOCK_RELEASE_PROGRAM, ProbeGroup::Waits),
                SiteProbe::Cas { .. } => (CAS_OUTCOME_PROGRAM, ProbeGroup::Counting),
                SiteProbe::Ready { .. } => (GO_READY_PROGRAM, ProbeGroup::Counting),
                SiteProbe::Runtime(_) => (GO_RUNTIME_PROGRAM, ProbeGroup::Runtime),
            };
            sites.push(UprobeSite {
                program,
                cookie,
                at: site.at.clone(),
                group,
            });
        }
        if !plan.map_sites.is_empty() {
            write_map_sites(&mut ebpf, plan)?;
            for (cookie, site) in plan.map_sites.iter().enumerate() {
                sites.push(UprobeSite {
                    program: MAP_OP_PROGRAM,
                    cookie,
                    at: site.at.clone(),
                    group: ProbeGroup::Counting,
                });
            }
        }
        let mut tracepoint_links = Vec::new();
        let mut native_call_links = Vec::new();
        if plan.futex || plan.sched {
            write_target(&mut ebpf, pid)?;
            ensure_tracefs()?;
        }
        if plan.sched {
            check_sched_formats()?;
            for (program, _) in SCHED_PROGRAMS {
                load_tracepoint(&mut ebpf, program)?;
            }
        }
        if plan.futex {
            let mut native: Array<_, NativeCode> = Array::try_from(
                ebpf.map_mut("NATIVE_CODE")
                    .ok_or(LoadError::Missing("NATIVE_CODE map"))?,
            )
            .map_err(map_error("NATIVE_CODE", "opening"))?;
            native
                .set(0, native_code(plan, load_bias), 0)
                .map_err(map_error("NATIVE_CODE", "writing the native code ranges"))?;
            tracepoint_links = attach_futex_tracepoints(&mut ebpf)?;
            if !native_calls.is_empty() {
                // Loaded with the object, like every uprobe program.
                let program: &mut UProbe = ebpf
                    .program_mut(NATIVE_CALL_PROGRAM)
                    .and_then(|p| p.try_into().ok())
                    .ok_or(LoadError::Missing("the native call uprobe program"))?;
                for (path, call) in native_calls {
                    let name = path.display().to_string();
                    native_call_links.push(attach_one(
                        program,
                        call.role as usize,
                        &call.at,
                        path,
                        &name,
                        scope,
                    )?);
                }
            }
        }
        let mut probes = Self {
            ebpf,
            cpus: aya::util::nr_cpus().unwrap_or(1),
            sites,
            uprobe_links: Vec::new(),
            attached: tracepoint_links.len() + native_call_links.len(),
            tracepoint_links,
            native_call_links,
            sched_links: Vec::new(),
            sched: plan.sched,
            pid,
            exe_path: exe_path.to_path_buf(),
            exe_name: exe_name.to_string(),
            scope,
            run_stats: None,
        };
        for group in [
            ProbeGroup::Counting,
            ProbeGroup::Waits,
            ProbeGroup::Runtime,
            ProbeGroup::Sched,
        ] {
            probes.attach_group(group)?;
        }
        Ok(probes)
    }

    /// The groups this plan has probes in.
    pub fn groups(&self) -> Vec<ProbeGroup> {
        let mut groups: Vec<ProbeGroup> = Vec::new();
        for site in &self.sites {
            if !groups.contains(&site.group) {
                groups.push(site.group);
            }
        }
        if self.sched {
            groups.push(ProbeGroup::Sched);
        }
        groups
    }

    /// Whether any probe of `group` is attached.
    pub fn is_attached(&self, group: ProbeGroup) -> bool {
        match group {
            ProbeGroup::Sched => !self.sched_links.is_empty(),
            _ => self.uprobe_links.iter().any(|(g, _, _)| *g == group),
        }
    }

    /// Attaches every probe of `group` (again); a no-op when attached, or
    /// when the plan has none.
    pub fn attach_group(&mut self, group: ProbeGroup) -> Result<(), LoadError> {
        if self.is_attached(group) {
            return Ok(());
        }
        if group == ProbeGroup::Sched {
            return self.attach_sched();
        }
        for site in self.sites.iter().filter(|site| site.group == group) {
            let program: &mut UProbe = self
                .ebpf
                .program_mut(site.program)
                .and_then(|p| p.try_into().ok())
                .ok_or(LoadError::Missing("a loaded uprobe program"))?;
            let id = attach_one(
                program,
                site.cookie,
                &site.at,
                &self.exe_path,
                &self.exe_name,
                self.scope,
            )?;
            self.uprobe_links.push((group, site.program, id));
            self.attached += 1;
        }
        Ok(())
    }

    /// Detaches every probe of `group`; their links close on a thread of
    /// their own (see [`Detaching`]).
    pub fn detach_group(&mut self, group: ProbeGroup) -> Result<Detaching, LoadError> {
        let links = match group {
            ProbeGroup::Sched => self.take_sched_links()?,
            _ => self.take_uprobe_links(|g| g == group)?,
        };
        Ok(Detaching(std::thread::spawn(move || {
            close_in_parallel(links)
        })))
    }

    /// Attaches the scheduler tracepoints, with the target's threads as
    /// they are now: every thread listed in `/proc/PID/task`, none taken
    /// as waiting (a wait under way is not timed: its start was not seen).
    fn attach_sched(&mut self) -> Result<(), LoadError> {
        if !self.sched {
            return Ok(());
        }
        let pid = self.pid;
        let tids = thread_ids(pid)?;
        {
            let map = self
                .ebpf
                .map_mut("RUNQ_THREADS")
                .ok_or(LoadError::Missing("RUNQ_THREADS map"))?;
            let mut table: aya::maps::HashMap<_, u32, RunnableSince> =
                aya::maps::HashMap::try_from(map).map_err(map_error("RUNQ_THREADS", "opening"))?;
            // Threads that exited while the tracepoints were off are gone
            // from /proc, not from the table.
            let stale: Vec<u32> = table.keys().filter_map(Result::ok).collect();
            for tid in stale {
                let _ = table.remove(&tid);
            }
            for tid in tids {
                table
                    .insert(tid, 0, 0)
                    .map_err(map_error("RUNQ_THREADS", format!("adding thread {tid}")))?;
            }
        }
        for (program, event) in SCHED_PROGRAMS {
            let tracepoint: &mut TracePoint = self
                .ebpf
                .program_mut(program)
                .and_then(|p| p.try_into().ok())
                .ok_or(LoadError::Missing("a loaded scheduler tracepoint program"))?;
            let link = tracepoint
                .attach("sched", event)
                .map_err(|source| LoadError::Program {
                    name: program,
                    what: format!("attaching to sched/{event}"),
                    source: Box::new(source),
                })?;
            self.sched_links.push((program, link));
            self.attached += 1;
        }
        Ok(())
    }

    /// Takes the scheduler tracepoints' links, to be closed by the caller.
    fn take_sched_links(&mut self) -> Result<Vec<Box<dyn Send>>, LoadError> {
        let taken = std::mem::take(&mut self.sched_links);
        self.attached -= taken.len();
        take_tracepoint_links(&mut self.ebpf, taken)
    }

    /// The target's threads' waits for a CPU, per CPU, cumulative.
    pub fn run_queue_stats(&self) -> Result<Vec<RunQueueStats>, LoadError> {
        let map = self
            .ebpf
            .map("RUNQ_STATS")
            .ok_or(LoadError::Missing("RUNQ_STATS map"))?;
        let stats: PerCpuArray<_, RunQueueStats> =
            PerCpuArray::try_from(map).map_err(map_error("RUNQ_STATS", "opening"))?;
        let values = stats
            .get(&0, 0)
            .map_err(map_error("RUNQ_STATS", "reading"))?;
        Ok(values.iter().copied().collect())
    }

    /// Takes the links of the uprobes whose group `wanted` accepts, to be
    /// closed by the caller.
    fn take_uprobe_links(
        &mut self,
        wanted: impl Fn(ProbeGroup) -> bool,
    ) -> Result<Vec<Box<dyn Send>>, LoadError> {
        let mut links: Vec<Box<dyn Send>> = Vec::new();
        let mut kept = Vec::new();
        for (group, name, id) in std::mem::take(&mut self.uprobe_links) {
            if !wanted(group) {
                kept.push((group, name, id));
                continue;
            }
            let program: &mut UProbe = self
                .ebpf
                .program_mut(name)
                .and_then(|p| p.try_into().ok())
                .ok_or(LoadError::Missing("an attached uprobe program"))?;
            let link = program.take_link(id).map_err(|source| LoadError::Detach {
                name: name.to_string(),
                source: Box::new(source),
            })?;
            links.push(Box::new(link));
            self.attached -= 1;
        }
        self.uprobe_links = kept;
        Ok(links)
    }

    /// Asks the kernel to keep programs' run-time statistics from now on
    /// (until this is dropped). They cost two clock reads per run.
    pub fn keep_run_stats(&mut self) -> Result<(), LoadError> {
        if self.run_stats.is_none() {
            let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .map_err(|e| LoadError::RunStats(Box::new(e)))?;
            self.run_stats = Some(fd);
        }
        Ok(())
    }

    /// The loaded programs' run counts and times (uprobes, and the
    /// tracepoints this plan uses).
    pub fn program_runs(&self) -> Vec<ProgramRuns> {
        let futex = (!self.tracepoint_links.is_empty()).then_some(FUTEX_PROGRAMS);
        let sched = self
            .sched
            .then(|| SCHED_PROGRAMS.map(|(program, _)| program));
        let tracepoints = futex
            .into_iter()
            .flatten()
            .chain(sched.into_iter().flatten());
        let uprobes = UPROBE_PROGRAMS.iter().map(|&name| (name, None));
        uprobes
            .chain(tracepoints.map(|name| {
                let family = if FUTEX_PROGRAMS.contains(&name) {
                    TracepointFamily::Futex
                } else {
                    TracepointFamily::Sched
                };
                (name, Some(family))
            }))
            .filter_map(|(name, tracepoint)| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some(ProgramRuns {
                    program: name,
                    runs: info.run_count(),
                    run_ns: info.run_time().as_nanos() as u64,
                    single_stepped: self
                        .sites
                        .iter()
                        .any(|site| site.program == name && site.at.cost() != SiteCost::Emulated),
                    tracepoint,
                })
            })
            .collect()
    }

    /// Sets the switches every probe reads first.
    pub fn set_control(&mut self, control: Control) -> Result<(), LoadError> {
        write_control(&mut self.ebpf, control)
    }

    /// Detaches every probe; the maps stay readable, so counters read
    /// afterwards match the events written.
    ///
    /// Each detached uprobe waits for a grace period in the kernel (about
    /// 100 ms here, one after another however many threads close them),
    /// which is why the report is out before this runs.
    pub fn detach(&mut self) -> Result<(), LoadError> {
        let mut links = self.take_uprobe_links(|_| true)?;
        links.extend(self.take_sched_links()?);
        let futex = std::mem::take(&mut self.tracepoint_links);
        links.extend(take_tracepoint_links(&mut self.ebpf, futex)?);
        let native = std::mem::take(&mut self.native_call_links);
        if !native.is_empty() {
            let program: &mut UProbe = self
                .ebpf
                .program_mut(NATIVE_CALL_PROGRAM)
                .and_then(|p| p.try_into().ok())
                .ok_or(LoadError::Missing("the native call uprobe program"))?;
            for id in native {
                let link = program.take_link(id).map_err(|source| LoadError::Detach {
                    name: NATIVE_CALL_PROGRAM.to_string(),
                    source: Box::new(source),
                })?;
                links.push(Box::new(link));
            }
        }
        self.attached = 0;
        close_in_parallel(links);
        Ok(())
    }

    /// Takes the per-CPU event ring buffers' map (once).
    pub fn take_events(&mut self) -> Result<MapData, LoadError> {
        match self.ebpf.take_map("EVENTS") {
            Some(Map::PerfEventArray(data)) => Ok(data),
            _ => Err(LoadError::Missing("EVENTS perf event array")),
        }
    }

    /// Reads the given CAS sites' counts per CPU: `result[i][cpu]` for
    /// `sites[i]` (plan indexes).
    pub fn cas_counts(&self, sites: &[usize]) -> Result<Vec<Vec<CasCounts>>, LoadError> {
        let map = self
            .ebpf
            .map("CAS_COUNTS")
            .ok_or(LoadError::Missing("CAS_COUNTS map"))?;
        let counts: PerCpuArray<_, CasCounts> =
            PerCpuArray::try_from(map).map_err(map_error("CAS_COUNTS", "opening"))?;
        sites
            .iter()
            .map(|&site| {
                counts
                    .get(&(site as u32), 0)
                    .map(|values| values.iter().copied().collect())
                    .map_err(map_error("CAS_COUNTS", format!("reading site {site}")))
            })
            .collect()
    }

    /// Adds maps (runtime addresses) to the selection whose operations become
    /// events at sites that report selected maps only.
    pub fn select_maps(&mut self, maps: &[u64]) -> Result<(), LoadError> {
        let mut filter: aya::maps::HashMap<_, u64, u8> = aya::maps::HashMap::try_from(
            self.ebpf
                .map_mut("MAP_FILTER")
                .ok_or(LoadError::Missing("MAP_FILTER map"))?,
        )
        .map_err(map_error("MAP_FILTER", "opening"))?;
        for &map in maps {
            filter
                .insert(map, 1, 0)
                .map_err(map_error("MAP_FILTER", format!("selecting map {map:#x}")))?;
        }
        Ok(())
    }

    /// Operations counted in the kernel (maps not selected), per map,
    /// summed over CPUs, with the map's type where a CPU saw it.
    pub fn map_counts(&self) -> Result<Vec<(u64, MapCounts)>, LoadError> {
        let map = self
            .ebpf
            .map("MAP_COUNTS")
            .ok_or(LoadError::Missing("MAP_COUNTS map"))?;
        let counts: aya::maps::PerCpuHashMap<_, u64, MapCounts> =
            aya::maps::PerCpuHashMap::try_from(map).map_err(map_error("MAP_COUNTS", "opening"))?;
        let mut result = Vec::new();
        for entry in counts.iter() {
            let (address, values) = entry.map_err(map_error("MAP_COUNTS", "reading"))?;
            let mut sum = MapCounts {
                ops: [0; MAP_OPS],
                map_type: 0,
            };
            for value in values.iter() {
                for (total, count) in sum.ops.iter_mut().zip(value.ops) {
                    *total += count;
                }
                if sum.map_type == 0 {
                    sum.map_type = value.map_type;
                }
            }
            result.push((address, sum));
        }
        Ok(result)
    }

    /// Reads a per-CPU hash map whole: every key with its values per CPU;
    /// in batches of a few syscalls where the kernel has batched lookups,
    /// else key by key.
    fn per_cpu_table<K: Pod, V: Pod>(
        &self,
        name: &'static str,
    ) -> Result<Vec<(K, Vec<V>)>, LoadError> {
        let map = self.ebpf.map(name).ok_or(LoadError::Missing(name))?;
        if let Map::PerCpuHashMap(data) = map {
            if let Some(rows) = batch::lookup_all(data, self.cpus) {
                return Ok(rows);
            }
        }
        let table: aya::maps::PerCpuHashMap<_, K, V> =
            aya::maps::PerCpuHashMap::try_from(map).map_err(map_error(name, "opening"))?;
        let mut rows = Vec::new();
        for entry in table.iter() {
            let (key, values) = entry.map_err(map_error(name, "reading"))?;
            rows.push((key, values.iter().copied().collect()));
        }
        Ok(rows)
    }

    /// Contentions and waits per (lock, call site, role) and CPU.
    pub fn lock_stats(&self) -> Result<Vec<(LockStatsKey, Vec<LockStats>)>, LoadError> {
        self.per_cpu_table("LOCK_STATS")
    }

    /// Native threads' ended waits per (lock, thread, role), cumulative.
    pub fn thread_waits(&self) -> Result<Vec<(ThreadWaitKey, ThreadWaitStats)>, LoadError> {
        let name = "THREAD_WAITS";
        let map = self.ebpf.map(name).ok_or(LoadError::Missing(name))?;
        let table: aya::maps::HashMap<_, ThreadWaitKey, ThreadWaitStats> =
            aya::maps::HashMap::try_from(map).map_err(map_error(name, "opening"))?;
        table
            .iter()
            .map(|entry| entry.map_err(map_error(name, "reading")))
            .collect()
    }

    /// Releases, the waiting they ended and hold times per (lock, holder
    /// call site) and CPU.
    pub fn holder_stats(&self) -> Result<Vec<(HolderKey, Vec<HolderStats>)>, LoadError> {
        self.per_cpu_table("HOLDER_STATS")
    }

    /// Forgets the locks' release logs and convoys in progress before the
    /// wait probes attach again: releases missed while they were off must
    /// not make a holder's next release look like one long hold, nor a
    /// convoy last across the gap.
    pub fn reset_wait_state(&mut self) -> Result<(), LoadError> {
        clear_hash::<u64, ReleaseLog>(&mut self.ebpf, "RELEASE_LOGS")?;
        clear_hash::<u64, ConvoyState>(&mut self.ebpf, "CONVOYS")
    }

    /// Writer convoys per (RWMutex, writer call site) and CPU.
    pub fn convoy_stats(&self) -> Result<Vec<(HolderKey, Vec<ConvoyStats>)>, LoadError> {
        self.per_cpu_table("CONVOY_STATS")
    }

    /// Parks per lock and CPU.
    pub fn blocked_stats(&self) -> Result<Vec<(u64, Vec<BlockedStats>)>, LoadError> {
        self.per_cpu_table("BLOCKED")
    }

    /// Operations per (map, key, caller) and CPU.
    pub fn key_counts(&self) -> Result<Vec<(KeyCountsKey, Vec<KeyCounts>)>, LoadError> {
        self.per_cpu_table("KEY_COUNTS")
    }

    /// Reads user stacks by id: instruction pointers, innermost first.
    /// Stacks the kernel no longer has are left out.
    pub fn stacks(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<u64>>, LoadError> {
        let map = self
            .ebpf
            .map("STACKS")
            .ok_or(LoadError::Missing("STACKS map"))?;
        let stacks = StackTraceMap::try_from(map).map_err(map_error("STACKS", "opening"))?;
        Ok(ids
            .iter()
            .filter_map(|&id| {
                let trace = stacks.get(&u32::try_from(id).ok()?, 0).ok()?;
                Some((id, trace.frames().iter().map(|f| f.ip).collect()))
            })
            .collect())
    }

    /// Reads the probe counters, summed over CPUs.
    pub fn counters(&self) -> Result<ProbeCounters, LoadError> {
        let map = self
            .ebpf
            .map("COUNTERS")
            .ok_or(LoadError::Missing("COUNTERS map"))?;
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(map_error("COUNTERS", "opening"))?;
        let mut sums = [0u64; COUNTER_SLOTS as usize];
        for (slot, sum) in sums.iter_mut().enumerate() {
            let values = counters
                .get(&(slot as u32), 0)
                .map_err(map_error("COUNTERS", format!("reading slot {slot}")))?;
            *sum = values.iter().sum();
        }
        Ok(ProbeCounters {
            hits: sums[Counter::Hits as usize],
            skipped_reentry: sums[Counter::SkippedReentry as usize],
            unknown_site: sums[Counter::UnknownSite as usize],
            output_errors: sums[Counter::OutputErrors as usize],
            cas_hits: sums[Counter::CasHits as usize],
            unmatched_returns: sums[Counter::UnmatchedReturns as usize],
            inflight_errors: sums[Counter::InflightErrors as usize],
            map_hits: sums[Counter::MapHits as usize],
            map_counts_full: sums[Counter::MapCountsFull as usize],
            lock_stats_full: sums[Counter::LockStatsFull as usize],
            key_counts_full: sums[Counter::KeyCountsFull as usize],
            not_exits: sums[Counter::NotExits as usize],
            map_ops_counted: sums[Counter::MapOpsCounted as usize],
            disabled_hits: sums[Counter::DisabledHits as usize],
            keys_unsampled: sums[Counter::KeysUnsampled as usize],
            runtime_events: sums[Counter::RuntimeEvents as usize],
            stw_unmatched: sums[Counter::StwUnmatched as usize],
            holder_stats_full: sums[Counter::HolderStatsFull as usize],
            release_logs_full: sums[Counter::ReleaseLogsFull as usize],
            release_log_short: sums[Counter::ReleaseLogShort as usize],
            releases: sums[Counter::Releases as usize],
            run_queue_threads_full: sums[Counter::RunQueueThreadsFull as usize],
            sched_target_runs: sums[Counter::SchedTargetRuns as usize],
            futex_target_runs: sums[Counter::FutexTargetRuns as usize],
            thread_waits_full: sums[Counter::ThreadWaitsFull as usize],
        })
    }
}

/// The kernel side's number of a register field, [`NO_REGISTER`] for none.
fn register_field(register: Option<GeneralRegister>) -> u32 {
    register.map_or(NO_REGISTER, |r| r as u32)
}

/// The configuration the kernel side reads for one site.
/// For the ends of waits (`LockExit`, `LockReturn`), `track_blocked` says
/// whether semaphore waits are tracked at all (`--blocked-time`): only
/// then does a wait's end clear its pending park.
fn site_config(index: usize, site: &PlannedSite, blocked: bool) -> Result<SiteConfig, LoadError> {
    let lock = |probe: &LockProbe| SiteConfig {
        kind: site.kind() as u32,
        arg_register: probe.arg as u32,
        goroutine_register: register_field(probe.goroutine),
        skip_when: site.at.skip_when as u32,
        site_index: index as u32,
        outcome: 0,
        outcome_register: NO_REGISTER,
        addr_adjust: probe.addr_adjust,
        role: probe.role as u32,
        capture_stack: u32::from(probe.capture_stack),
        track_blocked: u32::from(probe.track_blocked),
        count_if: 0,
        time_register: NO_REGISTER,
        start_register: NO_REGISTER,
        arg_deref: u32::from(probe.deref),
        caller_source: probe.caller as u32,
    };
    Ok(match &site.probe {
        SiteProbe::LockEntry(probe)
        | SiteProbe::SemaEntry(probe)
        | SiteProbe::LockRelease(probe) => lock(probe),
        SiteProbe::LockReturn(probe) => SiteConfig {
            track_blocked: u32::from(blocked),
            ..lock(probe)
        },
        SiteProbe::LockExit { probe, when } => SiteConfig {
            track_blocked: u32::from(blocked),
            count_if: match *when {
                ExitWhen::Always => 0,
                ExitWhen::Taken(condition) => condition as u32,
                ExitWhen::NotTaken(condition) => condition as u32 | CONDITION_NEGATED,
            },
            ..lock(probe)
        },
        SiteProbe::Ready { goroutine } => SiteConfig {
            arg_register: *goroutine as u32,
            goroutine_register: NO_REGISTER,
            ..lock(&LockProbe {
                arg: *goroutine,
                goroutine: None,
                addr_adjust: 0,
                role: probe_common::LockRole::Mutex,
                capture_stack: false,
                track_blocked: false,
                deref: false,
                caller: probe_common::CallerSource::StackTop,
            })
        },
        SiteProbe::Runtime(runtime) => {
            // Where the pause's own figures are, when the restart gets them.
            let world_stop = match runtime {
                RuntimeSite::StartTheWorld { world_stop } => *world_stop,
                _ => None,
            };
            let reason = match runtime {
                RuntimeSite::StopTheWorld { reason } => *reason,
                _ => world_stop.map(|args| args.reason),
            };
            SiteConfig {
                arg_register: register_field(reason),
                time_register: register_field(world_stop.map(|args| args.now)),
                start_register: register_field(world_stop.map(|args| args.started)),
                goroutine_register: NO_REGISTER,
                ..lock(&LockProbe {
                    arg: goruntime::FIRST_ARGUMENT,
                    goroutine: None,
                    addr_adjust: 0,
                    role: probe_common::LockRole::Mutex,
                    capture_stack: false,
                    track_blocked: false,
                    deref: false,
                    caller: probe_common::CallerSource::StackTop,
                })
            }
        }
        SiteProbe::Cas { site: cas, .. } => {
            let (outcome, register) = match cas.outcome {
                Outcome::Zf {
                    success_when_set: true,
                } => (OutcomeSource::ZfSet, None),
                Outcome::Zf {
                    success_when_set: false,
                } => (OutcomeSource::ZfClear, None),
                Outcome::Register {
                    reg,
                    success_when_nonzero,
                } => (
                    if success_when_nonzero {
                        OutcomeSource::RegisterNonZero
                    } else {
                        OutcomeSource::RegisterZero
                    },
                    Some(general_register(reg).ok_or_else(|| LoadError::Register {
                        function: site.at.function.clone(),
                        register: format!("{reg:?}"),
                    })?),
                ),
            };
            SiteConfig {
                kind: site.kind() as u32,
                arg_register: NO_REGISTER,
                goroutine_register: NO_REGISTER,
                skip_when: site.at.skip_when as u32,
                site_index: index as u32,
                outcome: outcome as u32,
                outcome_register: register_field(register),
                addr_adjust: 0,
                role: 0,
                capture_stack: 0,
                track_blocked: 0,
                count_if: 0,
                time_register: NO_REGISTER,
                start_register: NO_REGISTER,
                arg_deref: 0,
                caller_source: 0,
            }
        }
    })
}

/// Writes the switches.
fn write_control(ebpf: &mut Ebpf, control: Control) -> Result<(), LoadError> {
    let mut array: Array<_, Control> = Array::try_from(
        ebpf.map_mut("CONTROL")
            .ok_or(LoadError::Missing("CONTROL map"))?,
    )
    .map_err(map_error("CONTROL", "opening"))?;
    array
        .set(0, control, 0)
        .map_err(map_error("CONTROL", "writing the switches"))
}

/// Writes every lock and CAS site's configuration into `SITES`.
fn write_sites(ebpf: &mut Ebpf, plan: &ProbePlan) -> Result<(), LoadError> {
    let mut sites: Array<_, SiteConfig> = Array::try_from(
        ebpf.map_mut("SITES")
            .ok_or(LoadError::Missing("SITES map"))?,
    )
    .map_err(map_error("SITES", "opening"))?;
    let blocked = plan
        .sites
        .iter()
        .any(|site| matches!(site.probe, SiteProbe::Ready { .. }));
    for (index, site) in plan.sites.iter().enumerate() {
        sites
            .set(index as u32, site_config(index, site, blocked)?, 0)
            .map_err(map_error("SITES", format!("writing site {index}")))?;
    }
    Ok(())
}

/// Writes the map sites' configurations and the Go type layout.
fn write_map_sites(ebpf: &mut Ebpf, plan: &ProbePlan) -> Result<(), LoadError> {
    let mut layout: Array<_, probe_common::GoLayout> = Array::try_from(
        ebpf.map_mut("GO_LAYOUT")
            .ok_or(LoadError::Missing("GO_LAYOUT map"))?,
    )
    .map_err(map_error("GO_LAYOUT", "opening"))?;
    layout
        .set(0, goruntime::layout(plan.go_version), 0)
        .map_err(map_error("GO_LAYOUT", "writing the Go type layout"))?;
    let mut configs: Array<_, MapSiteConfig> = Array::try_from(
        ebpf.map_mut("MAP_SITES")
            .ok_or(LoadError::Missing("MAP_SITES map"))?,
    )
    .map_err(map_error("MAP_SITES", "opening"))?;
    for (index, site) in plan.map_sites.iter().enumerate() {
        let function = &site.function;
        let sync_map = function.kind == MapKind::SyncMap;
        let listed = !sync_map || plan.sync_map_filtered;
        let config = MapSiteConfig {
            op: function.op as u32,
            skip_when: site.at.skip_when as u32,
            site_index: index as u32,
            map_register: function.map as u32,
            key_shape: function.key.shape as u32,
            key_a: function.key.a as u32,
            key_b: function.key.b as u32,
            type_register: register_field(function.key.map_type),
            key_width: function.key.width,
            filter: if listed {
                MapFilter::Listed as u32
            } else {
                MapFilter::All as u32
            },
            key_bytes: plan.key_bytes,
            capture_caller: u32::from(sync_map),
            sync_map: u32::from(sync_map),
        };
        configs
            .set(index as u32, config, 0)
            .map_err(map_error("MAP_SITES", format!("writing map site {index}")))?;
    }
    Ok(())
}

/// The plan's native code ranges as runtime addresses, for `NATIVE_CODE`.
/// Ranges beyond the table's room are left out, and said so: call sites in
/// them are then reported as the lock machinery's own code.
fn native_code(plan: &ProbePlan, load_bias: u64) -> NativeCode {
    let mut code = NativeCode::default();
    for (what, have, room) in [
        ("lock", plan.native.skip.len(), NATIVE_SKIP_RANGES),
        (
            "signal-wait",
            plan.native.signal.len(),
            NATIVE_SIGNAL_RANGES,
        ),
    ] {
        if have > room {
            log::warn!(
                "{have} {what} functions to look past in native stacks; the first {room} are"
            );
        }
    }
    let Some((start, end)) = plan.native.text else {
        return code;
    };
    code.text_start = start.wrapping_add(load_bias);
    code.text_end = end.wrapping_add(load_bias);
    for (slot, &(start, end)) in code
        .skip
        .iter_mut()
        .zip(plan.native.skip.iter().take(NATIVE_SKIP_RANGES))
    {
        *slot = [start.wrapping_add(load_bias), end.wrapping_add(load_bias)];
    }
    for (slot, &(start, end)) in code
        .signal
        .iter_mut()
        .zip(plan.native.signal.iter().take(NATIVE_SIGNAL_RANGES))
    {
        *slot = [start.wrapping_add(load_bias), end.wrapping_add(load_bias)];
    }
    code
}

/// Loads the uprobe program `name` into the kernel.
fn load_uprobe<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut UProbe, LoadError> {
    let program: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or(LoadError::Missing("a uprobe program"))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name,
            what: "finding it".into(),
            source: Box::new(source),
        })?;
    program.load().map_err(|e| program_load_error(name, e))?;
    Ok(program)
}

/// A program load error, with the verifier's last lines when it has them.
fn program_load_error(name: &'static str, error: ProgramError) -> LoadError {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            LoadError::Verifier {
                name,
                tail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                source: io_error,
            }
        }
        source => LoadError::Program {
            name,
            what: "loading it".into(),
            source: Box::new(source),
        },
    }
}

/// Most threads [`close_in_parallel`] uses.
const CLOSING_THREADS: usize = 32;

/// Drops (closes) the links from up to [`CLOSING_THREADS`] threads at once.
fn close_in_parallel(mut links: Vec<Box<dyn Send>>) {
    if links.is_empty() {
        return;
    }
    let per_thread = links.len().div_ceil(CLOSING_THREADS);
    std::thread::scope(|scope| {
        while !links.is_empty() {
            let chunk: Vec<Box<dyn Send>> = links.drain(..per_thread.min(links.len())).collect();
            scope.spawn(move || drop(chunk));
        }
    });
}

/// Attaches a loaded uprobe at a placement, with the site's index as its
/// cookie; returns the link.
fn attach_one(
    program: &mut UProbe,
    cookie: usize,
    at: &Placement,
    exe_path: &Path,
    exe_name: &str,
    scope: UProbeScope,
) -> Result<UProbeLinkId, LoadError> {
    let point = UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(at.file_offset),
        cookie: Some(cookie as u64),
    };
    program
        .attach(point, exe_path, scope)
        .map_err(|source| LoadError::Attach {
            function: at.function.clone(),
            file_offset: at.file_offset,
            exe: exe_name.to_string(),
            source: Box::new(source),
        })
}

/// The per-target tables of the probe object: a copy of the object that
/// runs none of the programs using them (the calibration's, the exec
/// watcher's) has them cut to one entry.
const PER_TARGET_TABLES: [&str; 20] = [
    "THREAD_WAITS",
    "NATIVE_CALLS",
    "SITES",
    "MAP_SITES",
    "INFLIGHT",
    "RELEASE_LOGS",
    "HOLDER_STATS",
    "CONVOYS",
    "CONVOY_STATS",
    "SEMA_PENDING",
    "STACKS",
    "PAIRS",
    "LOCK_STATS",
    "BLOCKED",
    "KEY_COUNTS",
    "MAP_COUNTS",
    "MAP_FILTER",
    "CAS_COUNTS",
    "MAP_SCRATCH",
    "RUNQ_THREADS",
];

/// Deletes every entry of the hash map `name` (plain or LRU).
fn clear_hash<K: Pod, V: Pod>(ebpf: &mut Ebpf, name: &'static str) -> Result<(), LoadError> {
    let map = ebpf.map_mut(name).ok_or(LoadError::Missing(name))?;
    let mut table: aya::maps::HashMap<_, K, V> =
        aya::maps::HashMap::try_from(map).map_err(map_error(name, "opening"))?;
    let keys: Vec<K> = table.keys().filter_map(Result::ok).collect();
    for key in keys {
        // Gone meanwhile (its wait ended): nothing to forget.
        let _ = table.remove(&key);
    }
    Ok(())
}

/// Loads a copy of the probe object with its per-target tables cut to one
/// entry, and no program loaded yet.
fn load_without_tables() -> Result<Ebpf, LoadError> {
    let mut loader = aya::EbpfLoader::new();
    for table in PER_TARGET_TABLES {
        loader.map_max_entries(table, 1);
    }
    loader
        .load(PROBE_OBJECT)
        .map_err(|e| LoadError::Load(Box::new(e)))
}

/// Where tracefs is mounted when nothing mounted it yet.
const TRACEFS: &str = "/sys/kernel/tracing";

/// Takes the given tracepoint links from their programs, to be closed by
/// the caller.
fn take_tracepoint_links(
    ebpf: &mut Ebpf,
    links: Vec<(&'static str, TracePointLinkId)>,
) -> Result<Vec<Box<dyn Send>>, LoadError> {
    let mut taken: Vec<Box<dyn Send>> = Vec::new();
    for (name, id) in links {
        let program: &mut TracePoint = ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(LoadError::Missing("an attached tracepoint program"))?;
        let link = program.take_link(id).map_err(|source| LoadError::Detach {
            name: name.to_string(),
            source: Box::new(source),
        })?;
        taken.push(Box::new(link));
    }
    Ok(taken)
}

/// Writes the process the system-wide tracepoints are filtered to.
fn write_target(ebpf: &mut Ebpf, pid: u32) -> Result<(), LoadError> {
    let mut target: Array<_, u32> = Array::try_from(
        ebpf.map_mut("TARGET")
            .ok_or(LoadError::Missing("TARGET map"))?,
    )
    .map_err(map_error("TARGET", "opening"))?;
    target
        .set(0, pid, 0)
        .map_err(map_error("TARGET", "writing the target PID"))
}

/// Loads (verifies) the tracepoint program `program`.
fn load_tracepoint<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut TracePoint, LoadError> {
    let tracepoint: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or(LoadError::Missing("a tracepoint program"))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: program,
            what: "finding it".into(),
            source: Box::new(source),
        })?;
    tracepoint
        .load()
        .map_err(|e| program_load_error(program, e))?;
    Ok(tracepoint)
}

/// The ids of the threads of process `pid` now: none once it has exited
/// (the governor may attach the scheduler tracepoints again after that,
/// before the pipeline sees the exit).
fn thread_ids(pid: u32) -> Result<Vec<u32>, LoadError> {
    let dir = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LoadError::Threads { pid, source }),
    };
    Ok(dir
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect())
}

/// Checks that the scheduler tracepoints' records have the fields the
/// probes read where they read them.
fn check_sched_formats() -> Result<(), LoadError> {
    let roots = [TRACEFS, "/sys/kernel/debug/tracing"];
    for (event, field, offset, size) in SCHED_FIELDS {
        let read =
            |root: &str| std::fs::read_to_string(format!("{root}/events/sched/{event}/format"));
        let text = match read(roots[0]) {
            Ok(text) => text,
            Err(_) => read(roots[1])
                .map_err(|source| LoadError::TracepointFormatFile { event, source })?,
        };
        let found = format_field(&text, field);
        if found != Some((offset, size)) {
            return Err(LoadError::TracepointFormat {
                event,
                field,
                expected: format!("offset {offset}, size {size}"),
                found: found.map_or_else(
                    || "no such field".to_string(),
                    |(offset, size)| format!("offset {offset}, size {size}"),
                ),
            });
        }
    }
    Ok(())
}

/// The offset and size of `field` in a tracepoint format file's text
/// (tab-separated lines such as `field:pid_t next_pid; offset:56; size:4; signed:1;`).
fn format_field(format: &str, field: &str) -> Option<(usize, usize)> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let declaration = parts.next()?.strip_prefix("field:")?;
        let name = declaration.rsplit([' ', '*']).next()?;
        if name != field {
            return None;
        }
        let mut offset = None;
        let mut size = None;
        for part in parts {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        Some((offset?, size?))
    })
}

/// Attaches the futex tracepoints (filtered to the process in `TARGET`).
fn attach_futex_tracepoints(
    ebpf: &mut Ebpf,
) -> Result<Vec<(&'static str, TracePointLinkId)>, LoadError> {
    let mut links = Vec::new();
    for (program, event) in [
        ("futex_enter", "sys_enter_futex"),
        ("futex_exit", "sys_exit_futex"),
    ] {
        let tracepoint = load_tracepoint(ebpf, program)?;
        let link = tracepoint
            .attach("syscalls", event)
            .map_err(|source| LoadError::Program {
                name: program,
                what: format!("attaching to syscalls/{event}"),
                source: Box::new(source),
            })?;
        links.push((program, link));
    }
    Ok(links)
}

/// Mounts tracefs at its usual place if no tracefs is mounted: the kernel
/// names tracepoints there.
fn ensure_tracefs() -> Result<(), LoadError> {
    let mounted = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|dir| Path::new(dir).is_dir());
    if mounted {
        return Ok(());
    }
    // SAFETY: mount reads the NUL-terminated strings we pass.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Batched reads of per-CPU hash maps (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6):
/// a table of thousands of keys in a few syscalls instead of two a key.
mod batch {
    use std::os::fd::{AsFd as _, AsRawFd as _};

    use aya::{maps::MapData, Pod};

    /// `BPF_MAP_LOOKUP_BATCH`.
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

    /// Keys asked for per syscall.
    const CHUNK: usize = 1024;

    /// The `batch` member of `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }

    /// Every key of a per-CPU hash map with its value on each of `cpus`
    /// CPUs; `None` when the kernel cannot do batched lookups (the caller
    /// reads key by key then).
    pub fn lookup_all<K: Pod, V: Pod>(map: &MapData, cpus: usize) -> Option<Vec<(K, Vec<V>)>> {
        let fd = map.fd().as_fd().as_raw_fd();
        // Per-CPU values are laid out CPU after CPU, each rounded up to 8
        // bytes.
        let stride = std::mem::size_of::<V>().div_ceil(8) * 8;
        let mut keys = vec![0u8; CHUNK * std::mem::size_of::<K>()];
        let mut values = vec![0u8; CHUNK * cpus * stride];
        // The batch token is a bucket index the kernel hands back.
        let mut token = [0u64; 1];
        let mut next = [0u64; 1];
        let mut rows = Vec::new();
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { token.as_ptr() as u64 },
                out_batch: next.as_mut_ptr() as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: CHUNK as u32,
                map_fd: fd as u32,
                ..BatchAttr::default()
            };
            // SAFETY: the attribute points at buffers of `count` keys and
            // `count` per-CPU values and at 8-byte tokens, all alive for the
            // call; the kernel writes at most that much.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            let done =
                rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
            if rc < 0 && !done {
                return None;
            }
            for i in 0..attr.count as usize {
                let key_bytes = &keys[i * std::mem::size_of::<K>()..][..std::mem::size_of::<K>()];
                // SAFETY: K is Pod: every bit pattern of its size is valid.
                let key = unsafe { std::ptr::read_unaligned(key_bytes.as_ptr().cast::<K>()) };
                let per_cpu = (0..cpus)
                    .map(|cpu| {
                        let at = (i * cpus + cpu) * stride;
                        // SAFETY: V is Pod, and `at` + its size lies in the
                        // buffer (stride ≥ its size).
                        unsafe { std::ptr::read_unaligned(values[at..].as_ptr().cast::<V>()) }
                    })
                    .collect();
                rows.push((key, per_cpu));
            }
            if done {
                return Some(rows);
            }
            token = next;
            first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format_field;

    /// The head of `sched_switch`'s format file on Linux 6.18.
    const SCHED_SWITCH: &str = "name: sched_switch
ID: 330
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
";

    #[test]
    fn format_files_give_each_fields_offset_and_size() {
        assert_eq!(format_field(SCHED_SWITCH, "prev_state"), Some((32, 8)));
        assert_eq!(format_field(SCHED_SWITCH, "next_pid"), Some((56, 4)));
        assert_eq!(format_field(SCHED_SWITCH, "prev_pid"), Some((24, 4)));
        // Not a prefix match, and arrays are not their element.
        assert_eq!(format_field(SCHED_SWITCH, "pid"), None);
        assert_eq!(format_field(SCHED_SWITCH, "next_comm"), None);
    }
}
