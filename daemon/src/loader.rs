//! Loads the embedded BPF object, writes each planned site's configuration
//! and attaches one uprobe per site to the target process.

use std::{collections::HashMap, num::NonZeroU32, path::Path};

use aya::{
    maps::{Array, Map, MapData, PerCpuArray, StackTraceMap},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        TracePoint, UProbe,
    },
    Ebpf,
};
use probe_common::{
    CasCounts, Counter, GeneralRegister, MapCounts, MapFilter, MapSiteConfig, OutcomeSource,
    SiteConfig, SiteKind, COUNTER_SLOTS, MAP_OPS, MAX_SITES, NO_REGISTER,
};
use thiserror::Error;

use crate::plan::{cas::Outcome, PlannedSite, ProbePlan};

/// The probe object, built from `probe-ebpf` by the build script.
static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mapwatch-probes"));

/// Name of the uprobe program for lock slow paths.
const LOCK_SLOW_PROGRAM: &str = "lock_slow";
/// Name of the uprobe program for lock slow paths' returns.
const LOCK_SLOW_RET_PROGRAM: &str = "lock_slow_ret";
/// Name of the uprobe program for CAS outcomes.
const CAS_OUTCOME_PROGRAM: &str = "cas_outcome";
/// Name of the uprobe program on Go's `runtime.ready` (blocked time).
const GO_READY_PROGRAM: &str = "go_ready";
/// Name of the uprobe program for map operations.
const MAP_OP_PROGRAM: &str = "map_op";

/// Errors loading or attaching probes.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The kernel refused the BPF object or a map in it.
    #[error("loading the BPF probes failed: {0}")]
    Load(String),
    /// The object lacks a map or program the daemon expects.
    #[error("the embedded BPF object has no {0}")]
    Missing(&'static str),
    /// Too many sites for the `SITES` map.
    #[error("{0} probe sites planned, at most {MAX_SITES} supported")]
    TooManySites(usize),
    /// Attaching a uprobe failed.
    #[error("attaching a uprobe to {function} at file offset {file_offset:#x} of {exe}: {reason}")]
    Attach {
        /// The function.
        function: String,
        /// The file offset.
        file_offset: u64,
        /// The executable.
        exe: String,
        /// What the kernel said.
        reason: String,
    },
}

/// Probe counters summed over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProbeCounters {
    /// Lock probe hits that became events (entries and returns).
    pub hits: u64,
    /// Hits skipped because the stack-check branch was about to re-enter.
    pub skipped_reentry: u64,
    /// Hits at sites with no configuration (a bug if not zero).
    pub unknown_site: u64,
    /// Events the kernel could not write to the ring buffer.
    pub output_errors: u64,
    /// CAS outcome probe hits.
    pub cas_hits: u64,
    /// Slow-path returns with no recorded entry (waits begun before attach).
    pub unmatched_returns: u64,
    /// Slow-path entries the in-flight map could not take.
    pub inflight_errors: u64,
    /// Map operations written as events.
    pub map_hits: u64,
    /// Map operations neither written nor counted (per-map table full).
    pub map_counts_full: u64,
}

/// Loaded and attached probes. Dropping this detaches them.
pub struct AttachedProbes {
    ebpf: Ebpf,
    /// Number of attached uprobes.
    pub attached: usize,
}

impl AttachedProbes {
    /// Loads the probe object and attaches every site of `plan` to process
    /// `pid`, whose executable opens at `exe_path`.
    pub fn attach(
        plan: &ProbePlan,
        pid: u32,
        exe_path: &Path,
        exe_display: &str,
    ) -> Result<Self, LoadError> {
        if plan.sites.len() > MAX_SITES as usize {
            return Err(LoadError::TooManySites(plan.sites.len()));
        }
        if plan.map_sites.len() > MAX_SITES as usize {
            return Err(LoadError::TooManySites(plan.map_sites.len()));
        }
        let mut ebpf = Ebpf::load(PROBE_OBJECT).map_err(|e| LoadError::Load(e.to_string()))?;

        let mut sites: Array<_, SiteConfig> = Array::try_from(
            ebpf.map_mut("SITES")
                .ok_or(LoadError::Missing("SITES map"))?,
        )
        .map_err(|e| LoadError::Load(e.to_string()))?;
        for (index, site) in plan.sites.iter().enumerate() {
            let (outcome, outcome_register) = outcome_config(site);
            let config = SiteConfig {
                kind: site.kind as u32,
                arg_register: site.arg_register as u32,
                skip_when: site.skip_when as u32,
                site_index: index as u32,
                outcome: outcome as u32,
                outcome_register: outcome_register as u32,
                addr_adjust: site.addr_adjust,
                role: site.role as u32,
                capture_stack: u32::from(site.capture_stack),
                track_blocked: u32::from(site.track_blocked),
            };
            sites
                .set(index as u32, config, 0)
                .map_err(|e| LoadError::Load(format!("writing site {index}: {e}")))?;
        }

        let scope = NonZeroU32::new(pid).map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        for (kinds, name) in [
            (
                &[SiteKind::LockSlowEntry, SiteKind::SemaEntry][..],
                LOCK_SLOW_PROGRAM,
            ),
            (&[SiteKind::LockSlowReturn][..], LOCK_SLOW_RET_PROGRAM),
            (&[SiteKind::CasOutcome][..], CAS_OUTCOME_PROGRAM),
            (&[SiteKind::Ready][..], GO_READY_PROGRAM),
        ] {
            if !plan.sites.iter().any(|site| kinds.contains(&site.kind)) {
                continue;
            }
            let program = load_uprobe(&mut ebpf, name)?;
            for (index, site) in plan
                .sites
                .iter()
                .enumerate()
                .filter(|(_, s)| kinds.contains(&s.kind))
            {
                attach_at(
                    program,
                    index,
                    &site.function,
                    site.file_offset,
                    exe_path,
                    exe_display,
                    scope,
                )?;
            }
        }
        if !plan.map_sites.is_empty() {
            attach_map_sites(&mut ebpf, plan, exe_path, exe_display, scope)?;
        }
        if plan.futex {
            let mut native: Array<_, probe_common::NativeCode> = Array::try_from(
                ebpf.map_mut("NATIVE_CODE")
                    .ok_or(LoadError::Missing("NATIVE_CODE map"))?,
            )
            .map_err(|e| LoadError::Load(e.to_string()))?;
            native
                .set(0, plan.native_code, 0)
                .map_err(|e| LoadError::Load(format!("writing the native code ranges: {e}")))?;
            attach_futex_tracepoints(&mut ebpf, pid)?;
        }
        Ok(Self {
            ebpf,
            attached: plan.sites.len() + plan.map_sites.len() + if plan.futex { 2 } else { 0 },
        })
    }

    /// Takes the per-CPU event ring buffers' map (once).
    pub fn take_events(&mut self) -> Result<MapData, LoadError> {
        match self.ebpf.take_map("EVENTS") {
            Some(Map::PerfEventArray(data)) => Ok(data),
            Some(_) => Err(LoadError::Load("EVENTS is not a perf event array".into())),
            None => Err(LoadError::Missing("EVENTS map")),
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
            PerCpuArray::try_from(map).map_err(|e| LoadError::Load(e.to_string()))?;
        sites
            .iter()
            .map(|&site| {
                counts
                    .get(&(site as u32), 0)
                    .map(|values| values.iter().copied().collect())
                    .map_err(|e| LoadError::Load(format!("reading CAS counts of site {site}: {e}")))
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
        .map_err(|e| LoadError::Load(e.to_string()))?;
        for &map in maps {
            filter
                .insert(map, 1, 0)
                .map_err(|e| LoadError::Load(format!("selecting map {map:#x}: {e}")))?;
        }
        Ok(())
    }

    /// Operations counted in the kernel (maps not selected), per map,
    /// summed over CPUs.
    pub fn map_counts(&self) -> Result<Vec<(u64, [u64; MAP_OPS])>, LoadError> {
        let map = self
            .ebpf
            .map("MAP_COUNTS")
            .ok_or(LoadError::Missing("MAP_COUNTS map"))?;
        let counts: aya::maps::PerCpuHashMap<_, u64, MapCounts> =
            aya::maps::PerCpuHashMap::try_from(map).map_err(|e| LoadError::Load(e.to_string()))?;
        let mut result = Vec::new();
        for entry in counts.iter() {
            let (address, values) =
                entry.map_err(|e| LoadError::Load(format!("reading map counts: {e}")))?;
            let mut sum = [0u64; MAP_OPS];
            for value in values.iter() {
                for (total, count) in sum.iter_mut().zip(value.ops) {
                    *total += count;
                }
            }
            result.push((address, sum));
        }
        Ok(result)
    }

    /// Reads user stacks by id: instruction pointers, innermost first.
    /// Stacks the kernel no longer has are left out.
    pub fn stacks(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<u64>>, LoadError> {
        let map = self
            .ebpf
            .map("STACKS")
            .ok_or(LoadError::Missing("STACKS map"))?;
        let stacks = StackTraceMap::try_from(map).map_err(|e| LoadError::Load(e.to_string()))?;
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
            PerCpuArray::try_from(map).map_err(|e| LoadError::Load(e.to_string()))?;
        let mut sums = [0u64; COUNTER_SLOTS as usize];
        for (slot, sum) in sums.iter_mut().enumerate() {
            let values = counters
                .get(&(slot as u32), 0)
                .map_err(|e| LoadError::Load(format!("reading counter {slot}: {e}")))?;
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
        })
    }
}

/// Writes the map sites' configurations and attaches `map_op` to each.
fn attach_map_sites(
    ebpf: &mut Ebpf,
    plan: &ProbePlan,
    exe_path: &Path,
    exe_display: &str,
    scope: UProbeScope,
) -> Result<(), LoadError> {
    let mut configs: Array<_, MapSiteConfig> = Array::try_from(
        ebpf.map_mut("MAP_SITES")
            .ok_or(LoadError::Missing("MAP_SITES map"))?,
    )
    .map_err(|e| LoadError::Load(e.to_string()))?;
    for (index, site) in plan.map_sites.iter().enumerate() {
        let function = &site.function;
        let listed = match function.kind {
            crate::plan::maps::MapKind::Runtime => true,
            crate::plan::maps::MapKind::SyncMap => plan.sync_map_filtered,
        };
        let config = MapSiteConfig {
            op: function.op as u32,
            skip_when: site.skip_when as u32,
            site_index: index as u32,
            map_register: function.map as u32,
            key_shape: function.key.shape as u32,
            key_a: function.key.a as u32,
            key_b: function.key.b as u32,
            type_register: function.key.map_type.map_or(NO_REGISTER, |r| r as u32),
            key_width: function.key.width,
            filter: if listed {
                MapFilter::Listed as u32
            } else {
                MapFilter::All as u32
            },
            key_bytes: plan.key_bytes,
            capture_caller: u32::from(function.kind == crate::plan::maps::MapKind::SyncMap),
            sync_map: u32::from(function.kind == crate::plan::maps::MapKind::SyncMap),
        };
        configs
            .set(index as u32, config, 0)
            .map_err(|e| LoadError::Load(format!("writing map site {index}: {e}")))?;
    }
    let program = load_uprobe(ebpf, MAP_OP_PROGRAM)?;
    for (index, site) in plan.map_sites.iter().enumerate() {
        attach_at(
            program,
            index,
            site.function.name,
            site.file_offset,
            exe_path,
            exe_display,
            scope,
        )?;
    }
    Ok(())
}

/// Loads the uprobe program `name` into the kernel.
fn load_uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, LoadError> {
    let program: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or(LoadError::Missing("a uprobe program"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| LoadError::Load(e.to_string()))?;
    program
        .load()
        .map_err(|e| LoadError::Load(format!("{name}: {}", verifier_detail(&e))))?;
    Ok(program)
}

/// Attaches a loaded uprobe at a file offset, with the site's index as its
/// cookie.
fn attach_at(
    program: &mut UProbe,
    index: usize,
    function: &str,
    file_offset: u64,
    exe_path: &Path,
    exe_display: &str,
    scope: UProbeScope,
) -> Result<(), LoadError> {
    let point = UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(file_offset),
        cookie: Some(index as u64),
    };
    program
        .attach(point, exe_path, scope)
        .map_err(|e| LoadError::Attach {
            function: function.to_string(),
            file_offset,
            exe: exe_display.to_string(),
            reason: error_chain(&e),
        })?;
    Ok(())
}

/// Where tracefs is mounted when nothing mounted it yet.
const TRACEFS: &str = "/sys/kernel/tracing";

/// Attaches the futex tracepoints, filtered to process `pid`.
fn attach_futex_tracepoints(ebpf: &mut Ebpf, pid: u32) -> Result<(), LoadError> {
    let mut target: Array<_, u32> = Array::try_from(
        ebpf.map_mut("TARGET")
            .ok_or(LoadError::Missing("TARGET map"))?,
    )
    .map_err(|e| LoadError::Load(e.to_string()))?;
    target
        .set(0, pid, 0)
        .map_err(|e| LoadError::Load(format!("writing the target PID: {e}")))?;
    ensure_tracefs()?;
    for (program, event) in [
        ("futex_enter", "sys_enter_futex"),
        ("futex_exit", "sys_exit_futex"),
    ] {
        let tracepoint: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or(LoadError::Missing("a futex tracepoint program"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| LoadError::Load(e.to_string()))?;
        tracepoint
            .load()
            .map_err(|e| LoadError::Load(format!("{program}: {}", verifier_detail(&e))))?;
        tracepoint.attach("syscalls", event).map_err(|e| {
            LoadError::Load(format!(
                "attaching to syscalls/{event}: {}",
                error_chain(&e)
            ))
        })?;
    }
    Ok(())
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
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| LoadError::Load(e.to_string()));
    let (source, target, fstype) = (c("tracefs")?, c(TRACEFS)?, c("tracefs")?);
    // SAFETY: mount reads the NUL-terminated strings we pass.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::Load(format!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// How the BPF side reads a site's CAS outcome (unused for other sites).
fn outcome_config(site: &PlannedSite) -> (OutcomeSource, GeneralRegister) {
    match site.cas.as_ref().map(|cas| cas.outcome) {
        Some(Outcome::Zf {
            success_when_set: false,
        }) => (OutcomeSource::ZfClear, GeneralRegister::Rax),
        Some(Outcome::Register {
            reg,
            success_when_nonzero,
        }) => (
            if success_when_nonzero {
                OutcomeSource::RegisterNonZero
            } else {
                OutcomeSource::RegisterZero
            },
            general_register(reg),
        ),
        _ => (OutcomeSource::ZfSet, GeneralRegister::Rax),
    }
}

/// The shared numbering of a 64-bit general register.
fn general_register(reg: iced_x86::Register) -> GeneralRegister {
    use iced_x86::Register as X;
    match reg.full_register() {
        X::RBX => GeneralRegister::Rbx,
        X::RCX => GeneralRegister::Rcx,
        X::RDX => GeneralRegister::Rdx,
        X::RSI => GeneralRegister::Rsi,
        X::RDI => GeneralRegister::Rdi,
        X::RBP => GeneralRegister::Rbp,
        X::R8 => GeneralRegister::R8,
        X::R9 => GeneralRegister::R9,
        X::R10 => GeneralRegister::R10,
        X::R11 => GeneralRegister::R11,
        X::R12 => GeneralRegister::R12,
        X::R13 => GeneralRegister::R13,
        X::R14 => GeneralRegister::R14,
        X::R15 => GeneralRegister::R15,
        _ => GeneralRegister::Rax,
    }
}

/// The full source chain of an error, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A program load error, with the verifier's last lines when it has them.
fn verifier_detail(error: &aya::programs::ProgramError) -> String {
    match error {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            format!(
                "{io_error}; verifier: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        }
        other => error_chain(other),
    }
}
