//! Probe planning: which functions of the target to probe, and at which
//! instruction of each.
//!
//! The planner works on link-time addresses of the executable; the loader
//! turns them into file offsets for the kernel, and the aggregator turns
//! runtime addresses back into names.

pub mod cas;
pub mod maps;
pub mod site;

use std::collections::BTreeSet;

use probe_common::{ArgRegister, LockRole, SiteKind, SkipWhen};
use thiserror::Error;

use crate::target::Target;
use site::{choose_entry_site, EntrySite, SiteChoice};

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

/// One instruction to probe.
#[derive(Debug, Clone)]
pub struct PlannedSite {
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
    /// What a hit means.
    pub kind: SiteKind,
    /// Where the lock's address is at this instruction.
    pub arg_register: ArgRegister,
    /// Bytes to subtract from the argument to get the lock's address.
    pub addr_adjust: u32,
    /// What kind of wait the site observes.
    pub role: LockRole,
    /// Whether the entry records the waiter's call site (with wait times).
    pub capture_stack: bool,
    /// Whether a semaphore wait entry records itself for `runtime.ready`.
    pub track_blocked: bool,
    /// For CAS outcome sites: which compare-and-swap and how to read it.
    pub cas: Option<cas::CasSite>,
    /// For built-in CAS sources: what they belong to (`sync.Map`); `None`
    /// for sites the user asked for.
    pub builtin: Option<&'static str>,
}

/// All the sites to attach, in order; a site's index is its BPF cookie.
#[derive(Debug, Clone, Default)]
pub struct ProbePlan {
    /// Sites to attach.
    pub sites: Vec<PlannedSite>,
    /// Functions looked for but not found (for the report).
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
    pub native_code: probe_common::NativeCode,
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
    /// A function's code could not be read or decoded.
    #[error("cannot choose a probe site in {function} at {address:#x}: {reason}")]
    Site {
        /// The function.
        function: String,
        /// Its address.
        address: u64,
        /// What went wrong.
        reason: String,
    },
}

/// The contended slow paths of Go's `sync.Mutex` for a Go version: from Go
/// 1.24 `sync.Mutex` wraps `internal/sync.Mutex`. With an unknown version,
/// both are looked for.
pub fn go_mutex_slow_paths(version: Option<(u32, u32)>) -> Vec<&'static str> {
    const OLD: &str = "sync.(*Mutex).lockSlow";
    const NEW: &str = "internal/sync.(*Mutex).lockSlow";
    match version {
        Some((1, minor)) if minor < 24 => vec![OLD],
        Some(_) => vec![NEW],
        None => vec![NEW, OLD],
    }
}

/// The semaphore waits of Go's `sync.RWMutex`: (function, offset of the
/// semaphore its argument points at, role). `RLock` waits for a writer on
/// `readerSem`; `Lock`, once it holds the inner mutex (probed as the mutex
/// slow path at the RWMutex's own address, offset 0), waits for readers on
/// `writerSem`. The layout `{w Mutex (8 bytes); writerSem uint32; readerSem
/// uint32; …}` is the same from Go 1.18 to 1.27.
pub const GO_RWMUTEX_WAITS: [(&str, u32, LockRole); 2] = [
    ("sync.runtime_SemacquireRWMutexR", 12, LockRole::RwReader),
    ("sync.runtime_SemacquireRWMutex", 8, LockRole::RwWriter),
];

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
    /// implementation (see [`go_builtin_cas_patterns`]).
    pub builtin_cas: bool,
    /// Probe Go's lock slow paths.
    pub locks: bool,
    /// Probe `sync.Map` operations (Go targets).
    pub sync_maps: bool,
    /// Probe runtime map operations (`map[K]V`; Go targets).
    pub runtime_maps: bool,
    /// Maps selected with `--map` (names or addresses): only their keys are
    /// reported. Resolved against the live process by the session.
    pub map_selection: Vec<String>,
    /// Bytes of string and other keys to copy (1 ..= 128).
    pub key_bytes: u32,
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
            key_bytes: DEFAULT_KEY_BYTES,
            ..Self::default()
        }
    }
}

/// Bytes of a key copied by default.
pub const DEFAULT_KEY_BYTES: u32 = 64;

/// Functions of Go's `sync.Map` whose internal compare-and-swap retry loops
/// are watched without any `--cas` pattern: the read-map entry CASes up to
/// Go 1.23, the `HashTrieMap` (and its entries) from Go 1.24.
pub fn go_builtin_cas_patterns(version: Option<(u32, u32)>) -> Vec<&'static str> {
    const OLD: [&str; 2] = ["sync.(*Map).*", "sync.(*entry).*"];
    const NEW: [&str; 2] = ["internal/sync.(*HashTrieMap[*", "internal/sync.(*entry[*"];
    match version {
        Some((1, minor)) if minor < 24 => OLD.to_vec(),
        Some(_) => NEW.to_vec(),
        None => OLD.iter().chain(NEW.iter()).copied().collect(),
    }
}

/// Plans every probe for a target: Go's lock slow paths (for Go binaries),
/// extra slow paths, and CAS outcome sites.
pub fn plan(target: &Target, request: &PlanRequest) -> Result<ProbePlan, PlanError> {
    let mut plan = ProbePlan {
        futex: request.futex,
        sync_map_filtered: !request.map_selection.is_empty(),
        key_bytes: request
            .key_bytes
            .clamp(1, probe_common::MAX_KEY_BYTES as u32),
        ..ProbePlan::default()
    };
    if request.futex {
        plan.native_code = native_code(target);
    }
    let mut wanted: Vec<(String, u32, LockRole)> = Vec::new();
    if target.go.is_some() && request.locks {
        for name in go_mutex_slow_paths(target.go_version_number()) {
            wanted.push((name.to_string(), 0, LockRole::Mutex));
        }
        for (name, adjust, role) in GO_RWMUTEX_WAITS {
            wanted.push((name.to_string(), adjust, role));
        }
    }
    for name in &request.extra_slow_paths {
        wanted.push((name.clone(), 0, LockRole::Mutex));
    }
    for (name, addr_adjust, role) in &wanted {
        let Some(function) = target.symbols.function(name) else {
            plan.missing.push(name.clone());
            continue;
        };
        let site = entry_site(
            target,
            &function.name,
            function.start,
            function.end,
            request.mode,
        )?;
        let returns = if request.wait_times {
            return_sites(target, &function.name, function.start, function.end)?
        } else {
            Vec::new()
        };
        plan.sites.push(PlannedSite {
            function: name.clone(),
            function_address: function.start,
            address: site.address,
            file_offset: file_offset(target, name, site.address)?,
            choice: site.choice,
            skip_when: site.skip_when,
            kind: SiteKind::LockSlowEntry,
            arg_register: ArgRegister::Rax,
            addr_adjust: *addr_adjust,
            role: *role,
            capture_stack: request.wait_times,
            track_blocked: request.blocked_time && *role != LockRole::Mutex,
            cas: None,
            builtin: None,
        });
        for address in returns {
            plan.sites.push(PlannedSite {
                function: name.clone(),
                function_address: function.start,
                address,
                file_offset: file_offset(target, name, address)?,
                choice: SiteChoice::SingleStepped {
                    offset: address - function.start,
                    mnemonic: "ret".into(),
                },
                skip_when: SkipWhen::Never,
                kind: SiteKind::LockSlowReturn,
                arg_register: ArgRegister::Rax,
                addr_adjust: *addr_adjust,
                role: *role,
                capture_stack: false,
                track_blocked: false,
                cas: None,
                builtin: None,
            });
        }
    }
    if target.go.is_some() && request.locks && request.blocked_time && request.wait_times {
        plan_blocked_time(target, request.mode, &mut plan)?;
    }
    let wanted: Vec<String> = wanted
        .into_iter()
        .filter(|(_, _, role)| *role == LockRole::Mutex)
        .map(|(name, _, _)| name)
        .collect();
    if target.go.is_some() && request.builtin_cas {
        for pattern in go_builtin_cas_patterns(target.go_version_number()) {
            // A program that never uses sync.Map may lack these functions.
            match cas_sites(target, pattern, request.mode) {
                Ok(sites) => plan.sites.extend(sites.into_iter().map(|site| PlannedSite {
                    builtin: Some("sync.Map"),
                    ..site
                })),
                Err(PlanError::NoMatch { .. } | PlanError::NoCas { .. }) => {}
                Err(e) => log::warn!("built-in CAS sources {pattern}: {e}"),
            }
        }
    }
    for pattern in &request.cas_patterns {
        plan.sites.extend(cas_sites(target, pattern, request.mode)?);
    }
    if target.go.is_some() {
        let mut functions = Vec::new();
        if request.sync_maps {
            functions.extend(maps::sync_map_functions(target.go_version_number()));
        }
        if request.runtime_maps {
            functions.extend(maps::runtime_map_functions());
        }
        let (sites, missing) = maps::plan_map_sites(target, &functions, request.mode)?;
        plan.map_sites = sites;
        // Absent sync.Map methods are normal (unused methods are not linked).
        plan.missing.extend(
            missing
                .into_iter()
                .filter(|name| name.starts_with("runtime.map") && request.runtime_maps),
        );
    }
    if plan.sites.is_empty() && plan.map_sites.is_empty() && !plan.futex {
        return Err(PlanError::NothingToProbe {
            exe: target.process.exe_display.clone(),
            go_version: target.go.as_ref().map(|go| go.version.clone()),
            looked_for: if wanted.is_empty() {
                go_mutex_slow_paths(None)
                    .into_iter()
                    .map(String::from)
                    .collect()
            } else {
                wanted
            },
        });
    }
    Ok(plan)
}

/// Where the futex tracepoints look for a native waiter's call site: the
/// executable's text (runtime addresses), minus Rust std's futex lock path
/// (`std::sys::…` functions about mutexes and futexes), so the call site is
/// the code that called `lock()`. C's path is all in libc, outside the text.
pub fn native_code(target: &Target) -> probe_common::NativeCode {
    let mut code = probe_common::NativeCode::default();
    let Some(text) = target.elf.text_section() else {
        return code;
    };
    code.text_start = text.address.wrapping_add(target.load_bias);
    code.text_end = code.text_start + text.size;
    let skipped = target.symbols.functions().iter().filter(|f| {
        let name = crate::target::demangle(&f.name);
        let name = name.trim_start_matches('<');
        name.starts_with("std::sys::") && (name.contains("futex") || name.contains("mutex"))
    });
    for (slot, function) in code.skip.iter_mut().zip(skipped) {
        *slot = [
            function.start.wrapping_add(target.load_bias),
            function.end.wrapping_add(target.load_bias),
        ];
    }
    code
}

/// A mutex's semaphore wait, by Go version (the semaphore is the mutex's
/// second word, `sema` at offset 4, in both generations).
pub fn go_mutex_semaphore_waits(version: Option<(u32, u32)>) -> Vec<&'static str> {
    const OLD: &str = "sync.runtime_SemacquireMutex";
    const NEW: &str = "internal/sync.runtime_SemacquireMutex";
    match version {
        Some((1, minor)) if minor < 24 => vec![OLD],
        Some(_) => vec![NEW],
        None => vec![NEW, OLD],
    }
}

/// Sites for blocked time: the mutex semaphore wait's entry (the RWMutex
/// ones are already lock sites) and `runtime.ready`, where a parked waiter
/// becomes runnable.
fn plan_blocked_time(
    target: &Target,
    mode: SiteMode,
    plan: &mut ProbePlan,
) -> Result<(), PlanError> {
    let mut wanted: Vec<(&str, SiteKind, u32)> =
        go_mutex_semaphore_waits(target.go_version_number())
            .into_iter()
            .map(|name| (name, SiteKind::SemaEntry, 4))
            .collect();
    wanted.push(("runtime.ready", SiteKind::Ready, 0));
    for (name, kind, addr_adjust) in wanted {
        let Some(function) = target.symbols.function(name) else {
            plan.missing.push(name.to_string());
            continue;
        };
        let site = entry_site(target, name, function.start, function.end, mode)?;
        plan.sites.push(PlannedSite {
            function: name.to_string(),
            function_address: function.start,
            address: site.address,
            file_offset: file_offset(target, name, site.address)?,
            choice: site.choice,
            skip_when: site.skip_when,
            kind,
            arg_register: ArgRegister::Rax,
            addr_adjust,
            role: LockRole::Mutex,
            capture_stack: false,
            track_blocked: kind == SiteKind::SemaEntry,
            cas: None,
            builtin: None,
        });
    }
    Ok(())
}

fn file_offset(target: &Target, function: &str, address: u64) -> Result<u64, PlanError> {
    target
        .elf
        .vaddr_to_file_offset(address)
        .ok_or_else(|| PlanError::Site {
            function: function.to_string(),
            address,
            reason: "address is not backed by the file".into(),
        })
}

/// Go functions that perform a compare-and-swap and return its success as a
/// boolean: calls to them count as CAS attempts at the call site.
pub const GO_CAS_FUNCTIONS: &[&str] = &[
    "sync/atomic.CompareAndSwap*",
    "sync/atomic.(*).CompareAndSwap",
    "runtime/internal/atomic.Cas*",
    "internal/runtime/atomic.Cas*",
];

/// CAS outcome sites of every function matching `pattern`: each `LOCK
/// CMPXCHG` in it, and in Go binaries each call to one of
/// [`GO_CAS_FUNCTIONS`] (unless it is one of them itself).
fn cas_sites(
    target: &Target,
    pattern: &str,
    mode: SiteMode,
) -> Result<Vec<PlannedSite>, PlanError> {
    let functions: Vec<_> = target
        .symbols
        .functions()
        .iter()
        .filter(|f| glob_match(pattern, &f.name))
        .collect();
    if functions.is_empty() {
        return Err(PlanError::NoMatch {
            pattern: pattern.to_string(),
            exe: target.process.exe_display.clone(),
        });
    }
    let cas_functions: BTreeSet<u64> = if target.go.is_some() {
        target
            .symbols
            .functions()
            .iter()
            .filter(|f| GO_CAS_FUNCTIONS.iter().any(|p| glob_match(p, &f.name)))
            .map(|f| f.start)
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut sites = Vec::new();
    for function in &functions {
        let len = function.end.saturating_sub(function.start);
        let code = target
            .elf
            .read_vaddr(function.start, len as usize)
            .ok_or_else(|| PlanError::Site {
                function: function.name.clone(),
                address: function.start,
                reason: format!("cannot read {len} bytes of code"),
            })?;
        let found = match mode {
            SiteMode::Auto => cas::plan_cas_sites(code, function.start),
            SiteMode::Entry => cas::plan_cas_sites_next(code, function.start),
        }
        .map_err(|e| PlanError::Site {
            function: function.name.clone(),
            address: function.start,
            reason: e.to_string(),
        })?;
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
            sites.push(PlannedSite {
                function: function.name.clone(),
                function_address: function.start,
                address: site.probe_address,
                file_offset: file_offset(target, &function.name, site.probe_address)?,
                choice: if site.emulated {
                    SiteChoice::Emulated {
                        offset: site.probe_address - function.start,
                        mnemonic: site.mnemonic.clone(),
                    }
                } else {
                    SiteChoice::SingleStepped {
                        offset: site.probe_address - function.start,
                        mnemonic: site.mnemonic.clone(),
                    }
                },
                skip_when: SkipWhen::Never,
                kind: SiteKind::CasOutcome,
                arg_register: ArgRegister::Rax,
                addr_adjust: 0,
                role: LockRole::Mutex,
                capture_stack: false,
                track_blocked: false,
                cas: Some(site),
                builtin: None,
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

/// Matches `text` against a glob with `*` (any run) and `?` (any one
/// character); without wildcards, equality.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Every `RET` of a slow path, found by decoding: where the waiter holds
/// the lock. (Never a uretprobe on Go code: it rewrites return addresses on
/// goroutine stacks, which Go moves.)
fn return_sites(target: &Target, name: &str, start: u64, end: u64) -> Result<Vec<u64>, PlanError> {
    let site_error = |reason: String| PlanError::Site {
        function: name.to_string(),
        address: start,
        reason,
    };
    let len = end.saturating_sub(start);
    let code = target
        .elf
        .read_vaddr(start, len as usize)
        .ok_or_else(|| site_error(format!("cannot read {len} bytes of code")))?;
    let returns = site::find_returns(code, start).map_err(|e| site_error(e.to_string()))?;
    if returns.is_empty() {
        return Err(site_error("no RET instruction found".into()));
    }
    Ok(returns)
}

fn entry_site(
    target: &Target,
    name: &str,
    start: u64,
    end: u64,
    mode: SiteMode,
) -> Result<EntrySite, PlanError> {
    entry_site_preserving(
        target,
        name,
        start,
        end,
        mode,
        &[iced_x86::Register::RAX, iced_x86::Register::R14],
    )
}

/// The entry site of a function whose probe reads `preserve` (see
/// [`choose_entry_site`]).
fn entry_site_preserving(
    target: &Target,
    name: &str,
    start: u64,
    end: u64,
    mode: SiteMode,
    preserve: &[iced_x86::Register],
) -> Result<EntrySite, PlanError> {
    let site_error = |reason: String| PlanError::Site {
        function: name.to_string(),
        address: start,
        reason,
    };
    if mode == SiteMode::Entry {
        return Ok(EntrySite {
            address: start,
            skip_when: SkipWhen::Never,
            choice: SiteChoice::Entry,
        });
    }
    let len = end.saturating_sub(start);
    let code = target
        .elf
        .read_vaddr(start, len as usize)
        .ok_or_else(|| site_error(format!("cannot read {len} bytes of code")))?;
    choose_entry_site(code, start, end, preserve).map_err(|e| site_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("main.casIncrement", "main.casIncrement"));
        assert!(!glob_match("main.casIncrement", "main.casIncrement2"));
        assert!(glob_match("main.cas*", "main.casIncrement"));
        assert!(glob_match("*Increment", "main.casIncrement"));
        assert!(glob_match("sync.(*Map).*", "sync.(*Map).Load"));
        assert!(glob_match("m?in.*", "main.x"));
        assert!(!glob_match("main.?", "main.xy"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*", "acbd"));
    }

    #[test]
    fn mutex_slow_path_moves_to_internal_sync_in_go_1_24() {
        assert_eq!(
            go_mutex_slow_paths(Some((1, 23))),
            ["sync.(*Mutex).lockSlow"]
        );
        assert_eq!(
            go_mutex_slow_paths(Some((1, 24))),
            ["internal/sync.(*Mutex).lockSlow"]
        );
        assert_eq!(go_mutex_slow_paths(None).len(), 2);
    }
}
