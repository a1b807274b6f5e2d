//! Probe planning: which functions of an executable to probe, and at which
//! instruction of each. Pure: an [`Executable`] and a [`PlanRequest`] in, a
//! [`ProbePlan`] out, with no process and no privileges involved.
//!
//! The planner works on link-time addresses of the executable; the loader
//! turns them into file offsets for the kernel (already in the plan) and
//! adds the load bias where the kernel needs runtime addresses.

pub mod cas;
pub mod exits;
pub mod maps;
pub mod native;
pub mod rtlock;
pub mod site;
pub mod x86;

pub use crate::model::glob_match;
use std::collections::BTreeSet;

use probe_common::{CallerSource, GeneralRegister, LockRole, SiteKind, SkipWhen};
use thiserror::Error;

use crate::{
    goruntime::{self, GoVersion},
    model::{Builtin, ProbeKind, SiteCost},
    target::{demangle, Executable},
};
use site::{choose_entry_site, EntrySite, SiteChoice};
use x86::SiteError;

/// Where in a function to put an entry probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SiteMode {
    /// The first instruction the kernel emulates, found by decoding (cheap).
    #[default]
    Auto,
    /// The function's first instruction, as symbol-based tracers do
    /// (single-stepped by the kernel, ~20× dearer; for comparison); for CAS
    /// sites, the instruction right after the compare-and-swap.
    Entry,
}

/// Where one probe goes: an instruction of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The function probed, as its symbol names it.
    pub function: String,
    /// Link-time address of the function's entry.
    pub function_address: u64,
    /// Link-time address of the probed instruction.
    pub address: u64,
    /// File offset of the probed instruction (what the kernel attaches to).
    pub file_offset: u64,
    /// Why this instruction.
    pub choice: SiteChoice,
    /// When the probe must not count a hit.
    pub skip_when: SkipWhen,
}

impl Placement {
    /// The probed instruction's offset from the function's entry.
    pub fn offset(&self) -> u64 {
        self.address - self.function_address
    }

    /// How the kernel runs the probed instruction.
    pub fn cost(&self) -> SiteCost {
        match self.choice {
            SiteChoice::Entry => SiteCost::Entry,
            SiteChoice::Emulated { .. } => SiteCost::Emulated,
            SiteChoice::SingleStepped { .. } => SiteCost::SingleStepped,
        }
    }
}

/// What a lock site reads and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockProbe {
    /// The register holding the lock's address (plus `addr_adjust`).
    pub arg: GeneralRegister,
    /// The register holding the goroutine, for Go code.
    pub goroutine: Option<GeneralRegister>,
    /// Bytes to subtract from the argument to get the lock's address.
    pub addr_adjust: u32,
    /// What kind of wait the site observes.
    pub role: LockRole,
    /// Whether the entry records the waiter's call site (with wait times).
    pub capture_stack: bool,
    /// Whether a semaphore wait entry records itself for `runtime.ready`.
    pub track_blocked: bool,
    /// Whether `arg` points at the lock's address rather than holding it.
    pub deref: bool,
    /// Where the waiter's call site is.
    pub caller: CallerSource,
}

/// What a probe site observes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteProbe {
    /// Entry into a lock's contended slow path.
    LockEntry(LockProbe),
    /// A `RET` of a lock's slow path: the waiter holds the lock.
    LockReturn(LockProbe),
    /// A jump by which a lock's slow path enters its epilogue: the waiter
    /// holds the lock (when the jump goes there).
    LockExit {
        /// The goroutine register (and the rest of the lock probe).
        probe: LockProbe,
        /// When a hit is an exit.
        when: exits::ExitWhen,
    },
    /// Entry into a lock's semaphore wait (blocked time).
    SemaEntry(LockProbe),
    /// Entry into a lock's release slow path: a holder hands the lock to
    /// its waiters (holder blame).
    LockRelease(LockProbe),
    /// `runtime.ready`: the goroutine in the register is made runnable.
    Ready {
        /// Where the readied goroutine is.
        goroutine: GeneralRegister,
    },
    /// Go's runtime: a GC cycle's end, the world stopping (with where its
    /// reason is, when the version passes one) or starting again.
    Runtime(RuntimeSite),
    /// A compare-and-swap's outcome.
    Cas {
        /// Which compare-and-swap, and how to read it.
        site: cas::CasSite,
        /// What a built-in CAS source belongs to; `None` for sites the user
        /// asked for.
        builtin: Option<Builtin>,
    },
}

/// Which Go runtime function a [`SiteProbe::Runtime`] site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeSite {
    /// `gcMarkTermination`: a GC cycle ends.
    GcCycle,
    /// `stopTheWorldWithSema`; the register holding its reason, if any.
    StopTheWorld {
        /// Where its `stwReason` is (Go ≥ 1.21).
        reason: Option<GeneralRegister>,
    },
    /// `startTheWorldWithSema`'s entry; where it is passed the pause's own
    /// figures (Go ≥ 1.22), their registers.
    StartTheWorld {
        /// The runtime's figures, if passed.
        world_stop: Option<goruntime::WorldStopArgs>,
    },
    /// In `startTheWorldWithSema`, after it read the pause's end.
    RestartDone,
}

/// One instruction to probe and what the probe observes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSite {
    /// Where.
    pub at: Placement,
    /// What.
    pub probe: SiteProbe,
}

impl PlannedSite {
    /// The kernel side's kind of site.
    pub fn kind(&self) -> SiteKind {
        match self.probe {
            SiteProbe::LockEntry(_) => SiteKind::LockSlowEntry,
            SiteProbe::LockReturn(_) => SiteKind::LockSlowReturn,
            SiteProbe::LockExit { .. } => SiteKind::LockExit,
            SiteProbe::SemaEntry(_) => SiteKind::SemaEntry,
            SiteProbe::LockRelease(_) => SiteKind::LockRelease,
            SiteProbe::Ready { .. } => SiteKind::Ready,
            SiteProbe::Runtime(RuntimeSite::GcCycle) => SiteKind::GcCycle,
            SiteProbe::Runtime(RuntimeSite::StopTheWorld { .. }) => SiteKind::StopTheWorld,
            SiteProbe::Runtime(RuntimeSite::StartTheWorld { .. }) => SiteKind::StartTheWorld,
            SiteProbe::Runtime(RuntimeSite::RestartDone) => SiteKind::RestartDone,
            SiteProbe::Cas { .. } => SiteKind::CasOutcome,
        }
    }

    /// The kind reports give the probe.
    pub fn probe_kind(&self) -> ProbeKind {
        match self.probe {
            SiteProbe::LockEntry(_) => ProbeKind::LockEntry,
            SiteProbe::LockReturn(_) => ProbeKind::LockReturn,
            SiteProbe::LockExit { .. } => ProbeKind::LockExit,
            SiteProbe::SemaEntry(_) => ProbeKind::SemaEntry,
            SiteProbe::LockRelease(_) => ProbeKind::LockRelease,
            SiteProbe::Ready { .. } => ProbeKind::Ready,
            SiteProbe::Runtime(_) => ProbeKind::Runtime,
            SiteProbe::Cas { .. } => ProbeKind::Cas,
        }
    }

    /// The compare-and-swap of a CAS site.
    pub fn cas(&self) -> Option<(&cas::CasSite, Option<Builtin>)> {
        match &self.probe {
            SiteProbe::Cas { site, builtin } => Some((site, *builtin)),
            _ => None,
        }
    }
}

/// Link-time code ranges where the futex probes look for a native waiter's
/// call site: the executable's text, minus the lock implementation's own
/// functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeRanges {
    /// The text section, `[start, end)`.
    pub text: Option<(u64, u64)>,
    /// Functions to look past, `[start, end)`.
    pub skip: Vec<(u64, u64)>,
    /// Functions that wait for a signal, `[start, end)`: a futex wait
    /// below one of them is no lock's.
    pub signal: Vec<(u64, u64)>,
}

/// What the Go runtime probes of a plan can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoRuntimeProbes {
    /// Whether a pause's reason is read (Go ≥ 1.21), so that GC pauses are
    /// told from the others.
    pub gc_pauses_told_apart: bool,
}

/// All the sites to attach, in order; a site's index is its BPF cookie.
#[derive(Debug, Clone, Default)]
pub struct ProbePlan {
    /// The executable's Go version, when it is Go.
    pub go_version: Option<GoVersion>,
    /// Sites to attach.
    pub sites: Vec<PlannedSite>,
    /// Functions looked for but not found.
    pub missing: Vec<String>,
    /// Trace the target's futex waits (syscall tracepoints, no sites).
    pub futex: bool,
    /// Map operation sites (their own cookie space: `MAP_SITES`).
    pub map_sites: Vec<maps::PlannedMapSite>,
    /// Whether only maps selected with `--map` report keys: runtime map
    /// sites always; `sync.Map` sites when a selection was given.
    pub sync_map_filtered: bool,
    /// Bytes of each key to copy.
    pub key_bytes: u32,
    /// With `futex`: where native waiters' call sites are looked for.
    pub native: NativeRanges,
    /// Time the target's threads' waits for a CPU (the scheduler
    /// tracepoints, no sites).
    pub sched: bool,
}

impl ProbePlan {
    /// Whether any map site counts in the kernel per map instead of
    /// emitting events (runtime maps; `sync.Map`s when a selection is given).
    pub fn counts_maps_in_kernel(&self) -> bool {
        self.sync_map_filtered
            || self
                .map_sites
                .iter()
                .any(|site| site.function.kind == crate::model::MapKind::Runtime)
    }

    /// What the overhead governor can degrade in this plan.
    pub fn capabilities(&self) -> crate::governor::Capabilities {
        crate::governor::Capabilities {
            stacks: self.sites.iter().any(|site| match &site.probe {
                SiteProbe::LockEntry(probe) => probe.capture_stack,
                _ => false,
            }),
            waits: self.sites.iter().any(|site| {
                matches!(
                    site.probe,
                    SiteProbe::LockExit { .. } | SiteProbe::LockReturn(_)
                )
            }),
            keys: !self.map_sites.is_empty(),
            holders: self.holders(),
            sched: self.sched,
        }
    }

    /// Whether Go's GC cycles and stop-the-world pauses are probed, and
    /// whether pauses say which are the GC's.
    pub fn go_runtime(&self) -> Option<GoRuntimeProbes> {
        let mut runtime = self.sites.iter().filter_map(|site| match site.probe {
            SiteProbe::Runtime(runtime) => Some(runtime),
            _ => None,
        });
        let first = runtime.next()?;
        let told_apart = |site: RuntimeSite| {
            matches!(
                site,
                RuntimeSite::StopTheWorld { reason: Some(_) }
                    | RuntimeSite::StartTheWorld {
                        world_stop: Some(_)
                    }
            )
        };
        Some(GoRuntimeProbes {
            gc_pauses_told_apart: told_apart(first) || runtime.any(told_apart),
        })
    }

    /// Whether holders are blamed (release slow paths are probed).
    pub fn holders(&self) -> bool {
        self.sites
            .iter()
            .any(|site| matches!(site.probe, SiteProbe::LockRelease(_)))
    }

    /// Whether blocked time is measured (`runtime.ready` is probed).
    pub fn blocked_time(&self) -> bool {
        self.sites
            .iter()
            .any(|site| matches!(site.probe, SiteProbe::Ready { .. }))
    }
}

/// Errors planning probes.
#[derive(Debug, Error)]
pub enum PlanError {
    /// None of the functions mapwatch knows how to probe is in the binary.
    #[error("nothing to probe in {exe}{go}: looked for {looked_for}{hint}", go = go_version.as_deref().map(|v| format!(" ({v})")).unwrap_or_else(|| " (not a Go binary)".into()), looked_for = looked_for.join(", "), hint = if go_version.is_none() { "; for native code use --futex (futex waits) or --cas FUNC" } else { "" })]
    NothingToProbe {
        /// The executable.
        exe: String,
        /// Its Go version, if it is a Go binary.
        go_version: Option<String>,
        /// The symbols looked for.
        looked_for: Vec<String>,
    },
    /// A `--cas` pattern matched no function.
    #[error("--cas {pattern}: no function in {exe} matches")]
    NoMatch {
        /// The pattern.
        pattern: String,
        /// The executable.
        exe: String,
    },
    /// A `--cas` pattern matched functions without any compare-and-swap.
    #[error("--cas {pattern}: no LOCK CMPXCHG in {functions}")]
    NoCas {
        /// The pattern.
        pattern: String,
        /// The functions it matched (the first few).
        functions: String,
    },
    /// A function's code could not be decoded.
    #[error("cannot choose a probe site in {function} at {address:#x}")]
    Decode {
        /// The function.
        function: String,
        /// Its address.
        address: u64,
        /// What could not be decoded.
        #[source]
        source: SiteError,
    },
    /// A function's code is not in the file.
    #[error("cannot read {len} bytes of code of {function} at {address:#x}")]
    CodeUnreadable {
        /// The function.
        function: String,
        /// Its address.
        address: u64,
        /// Its size.
        len: u64,
    },
    /// An address to probe is not backed by the file.
    #[error("{function}: address {address:#x} is not backed by the file")]
    NotInFile {
        /// The function.
        function: String,
        /// The address.
        address: u64,
    },
    /// `runtime.lock2`'s slow path could not be located in its code.
    #[error("{function} at {address:#x}: cannot locate the slow path")]
    RuntimeLock {
        /// The function.
        function: String,
        /// Its address.
        address: u64,
        /// What was not as expected.
        #[source]
        source: rtlock::SlowPathError,
    },
    /// A slow path whose ways out are not all at emulated instructions.
    #[error("{function} at {address:#x}: not every way out of the slow path can be observed")]
    NoExitEdges {
        /// The function.
        function: String,
        /// Its address.
        address: u64,
    },
    /// A slow path without a `RET` (its waits cannot be timed).
    #[error("{function} at {address:#x}: no RET instruction found")]
    NoReturn {
        /// The function.
        function: String,
        /// Its address.
        address: u64,
    },
}

/// What to probe.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// Where to put entry probes.
    pub mode: SiteMode,
    /// Extra lock slow paths (Go ABI: lock address in RAX): functions whose
    /// every entry is one contention, such as a custom lock's slow path.
    pub extra_slow_paths: Vec<String>,
    /// Function patterns (`*` and `?` globs, else exact names) whose
    /// compare-and-swaps to watch.
    pub cas_patterns: Vec<String>,
    /// Measure wait times: also probe every `RET` of the slow paths.
    pub wait_times: bool,
    /// Trace futex waits: native locks (glibc pthread mutexes, Rust's std
    /// Mutex, …) through the futex syscall tracepoints.
    pub futex: bool,
    /// Measure blocked time: from a lock's semaphore park to `runtime.ready`
    /// (needs `wait_times`: the slow paths' returns clear stale waits).
    pub blocked_time: bool,
    /// Also watch the compare-and-swaps inside Go's `sync.Map`
    /// implementation.
    pub builtin_cas: bool,
    /// Probe Go's lock slow paths.
    pub locks: bool,
    /// Probe `sync.Map` operations (Go targets).
    pub sync_maps: bool,
    /// Probe runtime map operations (`map[K]V`; Go targets).
    pub runtime_maps: bool,
    /// Maps selected with `--map` (names or addresses): only their keys are
    /// reported. Resolved against the live process by the pipeline.
    pub map_selection: Vec<String>,
    /// Bytes of string and other keys to copy (1 ..= 128).
    pub key_bytes: u32,
    /// Probe Go's GC cycles and stop-the-world pauses (a few hits a
    /// second: the context of every second).
    pub go_runtime: bool,
    /// Blame holders: probe the release slow paths of Go's locks, and
    /// charge the waiting each release ends to its holder's call site
    /// (needs `locks` and `wait_times`).
    pub holders: bool,
    /// Time the target's threads' waits for a CPU (run-queue latency) with
    /// the scheduler tracepoints: whether a second was CPU-starved.
    pub sched: bool,
    /// Probe the slow path of Go's runtime-internal locks (`runtime.lock2`:
    /// channels, timers, the scheduler). Not by default: a contended
    /// `sync.Mutex` contends the runtime's semaphore-table lock too, and
    /// busy channels make these the most frequent waits.
    pub runtime_locks: bool,
}

impl PlanRequest {
    /// What `mapwatch attach` probes without options: locks with wait
    /// times, `sync.Map` operations and CAS sites.
    pub fn defaults() -> Self {
        Self {
            builtin_cas: true,
            wait_times: true,
            locks: true,
            sync_maps: true,
            go_runtime: true,
            holders: true,
            sched: true,
            key_bytes: DEFAULT_KEY_BYTES,
            ..Self::default()
        }
    }
}

/// Bytes of a key copied by default.
pub const DEFAULT_KEY_BYTES: u32 = 64;

/// The registers a Go lock entry probe reads: the lock's address and the
/// goroutine.
const GO_LOCK_READS: [GeneralRegister; 2] = [goruntime::FIRST_ARGUMENT, goruntime::GOROUTINE];

/// A Go lock site's probe: the argument and the goroutine per Go's ABI.
fn go_lock(
    addr_adjust: u32,
    role: LockRole,
    capture_stack: bool,
    track_blocked: bool,
) -> LockProbe {
    LockProbe {
        arg: goruntime::FIRST_ARGUMENT,
        goroutine: Some(goruntime::GOROUTINE),
        addr_adjust,
        role,
        capture_stack,
        track_blocked,
        deref: false,
        caller: CallerSource::StackTop,
    }
}

/// Plans every probe for an executable: Go's lock slow paths (for Go
/// binaries), extra slow paths, CAS outcome sites and map operation sites.
pub fn plan(exe: &Executable, request: &PlanRequest) -> Result<ProbePlan, PlanError> {
    let version = exe.go_version();
    let generations = goruntime::generations(version);
    let mut plan = ProbePlan {
        go_version: version,
        futex: request.futex,
        sched: request.sched,
        sync_map_filtered: !request.map_selection.is_empty(),
        key_bytes: request
            .key_bytes
            .clamp(1, probe_common::MAX_KEY_BYTES as u32),
        ..ProbePlan::default()
    };
    if request.futex {
        plan.native = native_ranges(exe);
    }
    // (function, semaphore offset, role)
    let mut wanted: Vec<(String, u32, LockRole)> = Vec::new();
    if exe.is_go() && request.locks {
        for generation in &generations {
            wanted.push((generation.mutex_slow_path.to_string(), 0, LockRole::Mutex));
        }
        for wait in goruntime::RWMUTEX_WAITS {
            wanted.push((wait.function.to_string(), wait.semaphore_offset, wait.role));
        }
    }
    for name in &request.extra_slow_paths {
        wanted.push((name.clone(), 0, LockRole::Mutex));
    }
    for (name, addr_adjust, role) in &wanted {
        let Some(function) = exe.symbols.function(name) else {
            plan.missing.push(name.clone());
            continue;
        };
        let (start, end) = (function.start, function.end);
        let at = entry_placement(exe, name, start, end, request.mode, &GO_LOCK_READS)?;
        let probe = go_lock(
            *addr_adjust,
            *role,
            request.wait_times,
            request.blocked_time && *role != LockRole::Mutex,
        );
        plan.sites.push(PlannedSite {
            at,
            probe: SiteProbe::LockEntry(probe),
        });
        if request.wait_times && request.mode == SiteMode::Auto {
            let exits = exit_sites(exe, name, start, end, None, &[], probe)?;
            if !exits.is_empty() {
                plan.sites.extend(exits);
                continue;
            }
            // Some way out is not an emulated jump: the RETs.
        }
        if request.wait_times {
            for address in return_sites(exe, name, start, end)? {
                plan.sites.push(PlannedSite {
                    at: Placement {
                        function: name.clone(),
                        function_address: start,
                        address,
                        file_offset: file_offset(exe, name, address)?,
                        choice: SiteChoice::SingleStepped {
                            offset: address - start,
                            mnemonic: "ret".into(),
                        },
                        skip_when: SkipWhen::Never,
                    },
                    probe: SiteProbe::LockReturn(LockProbe {
                        capture_stack: false,
                        track_blocked: false,
                        ..probe
                    }),
                });
            }
        }
    }
    if exe.is_go() && request.locks && request.wait_times && request.holders {
        plan_releases(exe, &generations, request.mode, &mut plan)?;
    }
    if exe.is_go() && request.runtime_locks {
        match plan_runtime_locks(exe, request) {
            Ok(Some(sites)) => plan.sites.extend(sites),
            Ok(None) => plan.missing.push(goruntime::RUNTIME_LOCK.to_string()),
            // A runtime whose code is unlike the known ones costs its
            // runtime locks, not the session.
            Err(e) => log::warn!("{}: runtime locks are not probed: {e}", exe.name),
        }
    }
    if exe.is_go() && request.locks && request.blocked_time && request.wait_times {
        plan_blocked_time(exe, &generations, request.mode, &mut plan)?;
    }
    if exe.is_go() && request.builtin_cas {
        for generation in &generations {
            for pattern in generation.sync_map_cas_patterns {
                // A program that never uses sync.Map may lack these functions.
                match cas_sites(exe, pattern, request.mode, Some(Builtin::SyncMap)) {
                    Ok(sites) => plan.sites.extend(sites),
                    Err(PlanError::NoMatch { .. } | PlanError::NoCas { .. }) => {}
                    Err(e) => log::warn!("built-in CAS sources {pattern}: {e}"),
                }
            }
        }
    }
    for pattern in &request.cas_patterns {
        plan.sites
            .extend(cas_sites(exe, pattern, request.mode, None)?);
    }
    if exe.is_go() {
        let mut functions = Vec::new();
        if request.sync_maps {
            for generation in &generations {
                functions.extend(maps::sync_map_functions(generation));
            }
        }
        if request.runtime_maps {
            functions.extend(maps::runtime_map_functions(&generations));
        }
        let (sites, missing) = maps::plan_map_sites(exe, &functions, request.mode)?;
        plan.map_sites = sites;
        // Absent sync.Map methods are normal (unused methods are not linked).
        plan.missing.extend(
            missing
                .into_iter()
                .filter(|name| name.starts_with("runtime.map") && request.runtime_maps),
        );
    }
    if plan.sites.is_empty() && plan.map_sites.is_empty() && !plan.futex {
        let mutexes: Vec<String> = wanted
            .into_iter()
            .filter(|(_, _, role)| *role == LockRole::Mutex)
            .map(|(name, _, _)| name)
            .collect();
        return Err(PlanError::NothingToProbe {
            exe: exe.name.clone(),
            go_version: exe.go.as_ref().map(|go| go.version.clone()),
            looked_for: if mutexes.is_empty() {
                goruntime::generations(None)
                    .iter()
                    .map(|g| g.mutex_slow_path.to_string())
                    .collect()
            } else {
                mutexes
            },
        });
    }
    if exe.is_go() && request.go_runtime {
        // The GC's figures are context: code they cannot be planned in
        // costs them, not the session.
        if let Err(e) = plan_go_runtime(exe, request.mode, &mut plan) {
            log::warn!("{}: Go's GC and pauses are not probed: {e}", exe.name);
        }
    }
    Ok(plan)
}

/// The sites of Go's runtime-internal locks: where a wait begins in
/// `runtime.lock2`'s slow path (the waiter's call site in `lock2`'s frame)
/// and where it ends, or the `lockTimer`'s `begin` and `end` in versions
/// that have one (see [`goruntime::RUNTIME_LOCK_TIMER`]). `None` when the
/// binary has no `lock2`.
fn plan_runtime_locks(
    exe: &Executable,
    request: &PlanRequest,
) -> Result<Option<Vec<PlannedSite>>, PlanError> {
    let probe = LockProbe {
        caller: CallerSource::FramePointer,
        ..go_lock(0, LockRole::Runtime, request.wait_times, false)
    };
    let exit_probe = LockProbe {
        capture_stack: false,
        ..probe
    };
    let timer = goruntime::RUNTIME_LOCK_TIMER;
    if let (Some(begin), Some(end)) = (
        exe.symbols.function(timer.begin),
        exe.symbols.function(timer.end),
    ) {
        // Before `begin`'s prologue RBP is still `lock2`'s frame.
        let reads = [
            goruntime::FIRST_ARGUMENT,
            goruntime::GOROUTINE,
            GeneralRegister::Rbp,
        ];
        let at = entry_placement(
            exe,
            timer.begin,
            begin.start,
            begin.end,
            request.mode,
            &reads,
        )?;
        let mut sites = vec![PlannedSite {
            at,
            probe: SiteProbe::LockEntry(LockProbe {
                deref: true,
                ..probe
            }),
        }];
        if request.wait_times {
            let reads = [goruntime::GOROUTINE];
            let at = entry_placement(exe, timer.end, end.start, end.end, request.mode, &reads)?;
            sites.push(PlannedSite {
                at,
                probe: SiteProbe::LockExit {
                    probe: exit_probe,
                    when: exits::ExitWhen::Always,
                },
            });
        }
        return Ok(Some(sites));
    }
    let name = goruntime::RUNTIME_LOCK;
    let Some(function) = exe.symbols.function(name) else {
        return Ok(None);
    };
    let (start, end) = (function.start, function.end);
    let slow = rtlock::slow_path_entry(code(exe, name, start, end)?, start).map_err(|source| {
        PlanError::RuntimeLock {
            function: name.to_string(),
            address: start,
            source,
        }
    })?;
    let mut sites = vec![PlannedSite {
        at: emulated_placement(exe, name, start, slow.address, slow.mnemonic)?,
        probe: SiteProbe::LockEntry(probe),
    }];
    if request.wait_times {
        let prompt: Vec<u64> = goruntime::RUNTIME_LOCK_PROMPT_CALLS
            .iter()
            .filter_map(|name| exe.symbols.function(name).map(|f| f.start))
            .collect();
        let slow_start = Some(slow.slow_start);
        let exits = exit_sites(exe, name, start, end, slow_start, &prompt, exit_probe)?;
        if exits.is_empty() {
            return Err(PlanError::NoExitEdges {
                function: name.to_string(),
                address: start,
            });
        }
        sites.extend(exits);
    }
    Ok(Some(sites))
}

/// Release sites (holder blame): the mutex's release slow path, and an
/// RWMutex's releases that wake waiters. A program that never releases an
/// RWMutex to a waiting writer may lack `rUnlockSlow`: absent functions
/// are skipped, not missing.
fn plan_releases(
    exe: &Executable,
    generations: &[&goruntime::Generation],
    mode: SiteMode,
    plan: &mut ProbePlan,
) -> Result<(), PlanError> {
    let names = generations
        .iter()
        .map(|g| (g.mutex_release_slow_path, LockRole::Mutex))
        .chain(goruntime::RWMUTEX_RELEASES);
    for (name, role) in names {
        let probe = SiteProbe::LockRelease(go_lock(0, role, true, false));
        plan.sites.extend(go_entry_site(exe, name, mode, probe)?);
    }
    Ok(())
}

/// A site at the entry of Go function `name` reading the lock and the
/// goroutine, if the function is in the binary.
fn go_entry_site(
    exe: &Executable,
    name: &str,
    mode: SiteMode,
    probe: SiteProbe,
) -> Result<Option<PlannedSite>, PlanError> {
    let Some(function) = exe.symbols.function(name) else {
        return Ok(None);
    };
    let at = entry_placement(
        exe,
        name,
        function.start,
        function.end,
        mode,
        &GO_LOCK_READS,
    )?;
    Ok(Some(PlannedSite { at, probe }))
}

/// Sites for the context of every second: the end of each GC cycle, and
/// each stop-the-world pause. From Go 1.22 a pause is taken from the
/// runtime's own figures, passed to `startTheWorldWithSema` (its entry,
/// and the call after it read the end when it was not passed one); before,
/// from `stopTheWorldWithSema`'s entry to `startTheWorldWithSema`'s. A
/// binary without these functions (every Go runtime has them) lists them as
/// missing.
fn plan_go_runtime(
    exe: &Executable,
    mode: SiteMode,
    plan: &mut ProbePlan,
) -> Result<(), PlanError> {
    let version = plan.go_version;
    let mut sites = Vec::new();
    let mut wanted = vec![(goruntime::GC_MARK_TERMINATION, RuntimeSite::GcCycle)];
    let world_stop = goruntime::world_stop_args(version);
    if world_stop.is_none() {
        wanted.push((
            goruntime::STOP_THE_WORLD,
            RuntimeSite::StopTheWorld {
                reason: goruntime::stw_reason_register(version),
            },
        ));
    }
    wanted.push((
        goruntime::START_THE_WORLD,
        RuntimeSite::StartTheWorld { world_stop },
    ));
    for (name, site) in wanted {
        let Some(function) = exe.symbols.function(name) else {
            plan.missing.push(name.to_string());
            continue;
        };
        let reads: Vec<GeneralRegister> = match site {
            RuntimeSite::StopTheWorld { reason } => reason.into_iter().collect(),
            RuntimeSite::StartTheWorld {
                world_stop: Some(args),
            } => vec![args.now, args.reason, args.started],
            _ => Vec::new(),
        };
        let at = entry_placement(exe, name, function.start, function.end, mode, &reads)?;
        sites.push(PlannedSite {
            at,
            probe: SiteProbe::Runtime(site),
        });
        if matches!(
            site,
            RuntimeSite::StartTheWorld {
                world_stop: Some(_)
            }
        ) {
            sites.extend(restart_done_sites(exe, name, function.start, function.end)?);
        }
    }
    // A pause needs both of its ends; a cycle alone is still a count.
    let ends = sites
        .iter()
        .filter(|s| !matches!(s.probe, SiteProbe::Runtime(RuntimeSite::GcCycle)))
        .count();
    if ends < 2 {
        sites.retain(|s| matches!(s.probe, SiteProbe::Runtime(RuntimeSite::GcCycle)));
    }
    plan.sites.extend(sites);
    Ok(())
}

/// Where `startTheWorldWithSema` has read the end of a pause it was not
/// passed one: its last call to [`goruntime::AFTER_RESTART_TIME`] (an
/// emulated call), else its `RET`s.
fn restart_done_sites(
    exe: &Executable,
    name: &str,
    start: u64,
    end: u64,
) -> Result<Vec<PlannedSite>, PlanError> {
    let code = code(exe, name, start, end)?;
    let after = exe
        .symbols
        .function(goruntime::AFTER_RESTART_TIME)
        .map(|f| f.start);
    let calls = match after {
        Some(target) => site::find_calls(code, start, target).map_err(decode_error(name, start))?,
        None => Vec::new(),
    };
    let placements: Vec<(u64, SiteChoice)> = match calls.last() {
        Some(&address) => vec![(
            address,
            SiteChoice::Emulated {
                offset: address - start,
                mnemonic: "call".into(),
            },
        )],
        None => return_sites(exe, name, start, end)?
            .into_iter()
            .map(|address| {
                (
                    address,
                    SiteChoice::SingleStepped {
                        offset: address - start,
                        mnemonic: "ret".into(),
                    },
                )
            })
            .collect(),
    };
    placements
        .into_iter()
        .map(|(address, choice)| {
            Ok(PlannedSite {
                at: Placement {
                    function: name.to_string(),
                    function_address: start,
                    address,
                    file_offset: file_offset(exe, name, address)?,
                    choice,
                    skip_when: SkipWhen::Never,
                },
                probe: SiteProbe::Runtime(RuntimeSite::RestartDone),
            })
        })
        .collect()
}

/// The exit sites of a slow path (see [`exits`]): where its waits end,
/// at emulated jumps into its epilogue; only those reached from `slow`
/// when given, with calls of the functions at `prompt` allowed after the
/// acquisition. Empty when some way out cannot be observed so.
fn exit_sites(
    exe: &Executable,
    name: &str,
    start: u64,
    end: u64,
    slow: Option<u64>,
    prompt: &[u64],
    probe: LockProbe,
) -> Result<Vec<PlannedSite>, PlanError> {
    let code = code(exe, name, start, end)?;
    let Some(edges) = exits::exit_edges_from(code, start, slow, prompt) else {
        return Ok(Vec::new());
    };
    edges
        .into_iter()
        .map(|edge| {
            Ok(PlannedSite {
                at: emulated_placement(exe, name, start, edge.address, edge.mnemonic)?,
                probe: SiteProbe::LockExit {
                    probe: LockProbe {
                        capture_stack: false,
                        track_blocked: false,
                        ..probe
                    },
                    when: edge.when,
                },
            })
        })
        .collect()
}

/// Where the futex tracepoints look for a native waiter's call site: the
/// executable's text, minus the lock machinery compiled into it (`std::…`
/// functions about mutexes, futexes, rwlocks and condition variables: Rust
/// std's lock paths, C++'s out-of-line wrappers), so the call site is the
/// code that called `lock()`. C's path is all in libc, outside the text.
/// Rust std's futex condition variable and thread parker (`std::…condvar…`,
/// `std::…thread_parking…`) are looked past too, and mark the wait as one
/// for a signal.
pub fn native_ranges(exe: &Executable) -> NativeRanges {
    let Some(text) = exe.elf.text_section() else {
        return NativeRanges::default();
    };
    // (std's own sys layer first, as the slots are few), start, end.
    let (mut skip, mut signal) = (Vec::new(), Vec::new());
    for f in exe.symbols.functions() {
        let path = without_generics(&demangle(&f.name));
        if !path.starts_with("std::") {
            continue;
        }
        let first = u8::from(!path.starts_with("std::sys::"));
        let waits = path.contains("wait") || path.contains("park");
        if waits && (path.contains("condvar") || path.contains("thread_parking")) {
            signal.push((first, f.start, f.end));
        } else if ["futex", "mutex", "condition_variable", "rwlock"]
            .iter()
            .any(|word| path.contains(word))
        {
            // Rust's std::sys lock paths; C++'s out-of-line std::mutex,
            // std::shared_mutex and std::condition_variable wrappers.
            skip.push((first, f.start, f.end));
        }
    }
    let ranges = |mut list: Vec<(u8, u64, u64)>| {
        list.sort_by_key(|&(first, start, _)| (first, start));
        list.into_iter()
            .map(|(_, start, end)| (start, end))
            .collect()
    };
    NativeRanges {
        text: Some((text.address, text.address + text.size)),
        skip: ranges(skip),
        signal: ranges(signal),
    }
}

/// A demangled name's path without generic arguments or the brackets of
/// a qualified type: `<std::sys::sync::mutex::futex::Mutex>::lock_contended`
/// is `std::sys::sync::mutex::futex::Mutex::lock_contended`, and
/// `<OnceLock<Mutex<T>>>::initialize` is `OnceLock::initialize` (a function
/// whose type arguments name a mutex is no lock code).
fn without_generics(name: &str) -> String {
    let name = name.strip_prefix('<').unwrap_or(name);
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            // The qualified type's own closing bracket.
            '>' => {}
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Sites for blocked time: the mutex semaphore wait's entry (the RWMutex
/// ones are already lock sites) and `runtime.ready`, where a parked waiter
/// becomes runnable.
fn plan_blocked_time(
    exe: &Executable,
    generations: &[&goruntime::Generation],
    mode: SiteMode,
    plan: &mut ProbePlan,
) -> Result<(), PlanError> {
    for generation in generations {
        let name = generation.mutex_semaphore_wait;
        let probe = SiteProbe::SemaEntry(go_lock(
            goruntime::MUTEX_SEMA_OFFSET,
            LockRole::Mutex,
            false,
            true,
        ));
        match go_entry_site(exe, name, mode, probe)? {
            Some(site) => plan.sites.push(site),
            None => plan.missing.push(name.to_string()),
        }
    }
    let name = goruntime::READY;
    let probe = SiteProbe::Ready {
        goroutine: goruntime::FIRST_ARGUMENT,
    };
    match go_entry_site(exe, name, mode, probe)? {
        Some(site) => plan.sites.push(site),
        None => plan.missing.push(name.to_string()),
    }
    Ok(())
}

/// A site at `address` inside function `name` (at `start`), an
/// instruction the kernel emulates, passed once per time it counts.
fn emulated_placement(
    exe: &Executable,
    name: &str,
    start: u64,
    address: u64,
    mnemonic: String,
) -> Result<Placement, PlanError> {
    Ok(Placement {
        function: name.to_string(),
        function_address: start,
        address,
        file_offset: file_offset(exe, name, address)?,
        choice: SiteChoice::Emulated {
            offset: address - start,
            mnemonic,
        },
        skip_when: SkipWhen::Never,
    })
}

/// The file offset of a link-time code address.
fn file_offset(exe: &Executable, function: &str, address: u64) -> Result<u64, PlanError> {
    exe.elf
        .vaddr_to_file_offset(address)
        .ok_or_else(|| PlanError::NotInFile {
            function: function.to_string(),
            address,
        })
}

/// A function's code, `[start, end)`.
fn code<'a>(
    exe: &'a Executable,
    function: &str,
    start: u64,
    end: u64,
) -> Result<&'a [u8], PlanError> {
    let len = end.saturating_sub(start);
    exe.elf
        .read_vaddr(start, len as usize)
        .ok_or_else(|| PlanError::CodeUnreadable {
            function: function.to_string(),
            address: start,
            len,
        })
}

/// The error of undecodable code in a function.
fn decode_error(function: &str, address: u64) -> impl FnOnce(SiteError) -> PlanError + '_ {
    move |source| PlanError::Decode {
        function: function.to_string(),
        address,
        source,
    }
}

/// CAS outcome sites of every function matching `pattern`: each `LOCK
/// CMPXCHG` in it, and in Go binaries each call to one of
/// [`goruntime::CAS_FUNCTIONS`] (unless it is one of them itself).
fn cas_sites(
    exe: &Executable,
    pattern: &str,
    mode: SiteMode,
    builtin: Option<Builtin>,
) -> Result<Vec<PlannedSite>, PlanError> {
    let functions: Vec<_> = exe
        .symbols
        .functions()
        .iter()
        .filter(|f| glob_match(pattern, &f.name))
        .collect();
    if functions.is_empty() {
        return Err(PlanError::NoMatch {
            pattern: pattern.to_string(),
            exe: exe.name.clone(),
        });
    }
    let cas_functions: BTreeSet<u64> = if exe.is_go() {
        exe.symbols
            .functions()
            .iter()
            .filter(|f| {
                goruntime::CAS_FUNCTIONS
                    .iter()
                    .any(|p| glob_match(p, &f.name))
            })
            .map(|f| f.start)
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut sites = Vec::new();
    for function in &functions {
        let code = code(exe, &function.name, function.start, function.end)?;
        let found = match mode {
            SiteMode::Auto => cas::plan_cas_sites(code, function.start),
            SiteMode::Entry => cas::plan_cas_sites_next(code, function.start),
        }
        .map_err(decode_error(&function.name, function.start))?;
        let calls = if cas_functions.contains(&function.start) {
            Vec::new()
        } else {
            cas::plan_cas_call_sites(
                code,
                function.start,
                |callee| cas_functions.contains(&callee),
                mode == SiteMode::Auto,
            )
        };
        for site in found.into_iter().chain(calls) {
            let offset = site.probe_address - function.start;
            let mnemonic = site.mnemonic.clone();
            sites.push(PlannedSite {
                at: Placement {
                    function: function.name.clone(),
                    function_address: function.start,
                    address: site.probe_address,
                    file_offset: file_offset(exe, &function.name, site.probe_address)?,
                    choice: if site.emulated {
                        SiteChoice::Emulated { offset, mnemonic }
                    } else {
                        SiteChoice::SingleStepped { offset, mnemonic }
                    },
                    skip_when: SkipWhen::Never,
                },
                probe: SiteProbe::Cas { site, builtin },
            });
        }
    }
    if sites.is_empty() {
        let mut names: Vec<&str> = functions.iter().take(5).map(|f| f.name.as_str()).collect();
        if functions.len() > names.len() {
            names.push("…");
        }
        return Err(PlanError::NoCas {
            pattern: pattern.to_string(),
            functions: names.join(", "),
        });
    }
    Ok(sites)
}

/// Every `RET` of a slow path, found by decoding: where the waiter holds
/// the lock. (Never a uretprobe on Go code: it rewrites return addresses on
/// goroutine stacks, which Go moves.)
fn return_sites(exe: &Executable, name: &str, start: u64, end: u64) -> Result<Vec<u64>, PlanError> {
    let code = code(exe, name, start, end)?;
    let returns = site::find_returns(code, start).map_err(decode_error(name, start))?;
    if returns.is_empty() {
        return Err(PlanError::NoReturn {
            function: name.to_string(),
            address: start,
        });
    }
    Ok(returns)
}

/// The entry site of a function whose probe reads the registers `reads`
/// (see [`choose_entry_site`]).
fn entry_placement(
    exe: &Executable,
    name: &str,
    start: u64,
    end: u64,
    mode: SiteMode,
    reads: &[GeneralRegister],
) -> Result<Placement, PlanError> {
    let site = if mode == SiteMode::Entry {
        EntrySite {
            address: start,
            skip_when: SkipWhen::Never,
            choice: SiteChoice::Entry,
        }
    } else {
        let code = code(exe, name, start, end)?;
        let preserve: Vec<_> = reads.iter().map(|&r| x86::register(r)).collect();
        choose_entry_site(code, start, end, &preserve).map_err(decode_error(name, start))?
    };
    Ok(Placement {
        function: name.to_string(),
        function_address: start,
        address: site.address,
        file_offset: file_offset(exe, name, site.address)?,
        choice: site.choice,
        skip_when: site.skip_when,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_paths_are_told_by_their_path_not_their_type_arguments() {
        assert_eq!(
            without_generics("<std::sys::sync::mutex::futex::Mutex>::lock_contended"),
            "std::sys::sync::mutex::futex::Mutex::lock_contended"
        );
        assert_eq!(
            without_generics(
                "<std::sync::once_lock::OnceLock<std::sync::poison::mutex::Mutex<u8>>>::initialize::<F, !>"
            ),
            "std::sync::once_lock::OnceLock::initialize::"
        );
        assert_eq!(
            without_generics("std::sync::poison::mutex::Mutex<T>::lock"),
            "std::sync::poison::mutex::Mutex::lock"
        );
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("main.casIncrement", "main.casIncrement"));
        assert!(!glob_match("main.casIncrement", "main.casIncrement2"));
        assert!(glob_match("main.cas*", "main.casIncrement"));
        assert!(glob_match("*Increment", "main.casIncrement"));
        assert!(glob_match("sync.(*Map).*", "sync.(*Map).Load"));
        assert!(glob_match("m?in.*", "main.x"));
        assert!(!glob_match("main.?", "main.xy"));
        // `?` is one character, even a wide one; no partial matches.
        assert!(glob_match("main.?x", "main.·x"));
        assert!(glob_match("runtime.*·*", "runtime.x·y"));
        assert!(!glob_match("a*c", "abcd"));
        assert!(glob_match("a*c*", "abcd"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*", "acbd"));
    }
}
