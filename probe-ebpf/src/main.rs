//! mapwatch's kernel-side programs.
//!
//! One uprobe program per kind of site ([`lock_slow`], [`lock_exit`],
//! [`lock_slow_ret`], [`lock_release`], [`go_ready`], [`cas_outcome`],
//! [`map_op`]) is attached
//! at every site the daemon's probe planner chose. Each attachment carries a
//! BPF cookie: the index of its configuration in `SITES` (or `MAP_SITES`),
//! which says which registers hold what and whether the hit must be skipped
//! (see [`probe_common::SkipWhen`]).
//!
//! Figures are aggregated here, in per-CPU maps the daemon reads each
//! second: contentions and measured waits per (lock, call site) in
//! `LOCK_STATS`, parks per lock in `BLOCKED`, operations per (map, key,
//! caller) in `KEY_COUNTS`, CAS outcomes per site in `CAS_COUNTS`. Events go
//! to the per-CPU perf rings only to name a map key the first time a CPU
//! counts it, and for whatever a full table could not take — never lost
//! silently: `COUNTERS` counts every case. Every event starts with an
//! [`EventHeader`] carrying its tag. `CONTROL` switches probes and their
//! costlier parts on and off while attached (the overhead governor).
#![no_std]
#![no_main]
// BPF has no compare-and-swap, so core's atomic types have no `fetch_add`:
// the intrinsic, its result unused, is BPF's atomic add.
#![cfg_attr(target_arch = "bpf", allow(internal_features))]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]

use aya_ebpf::{
    bindings::pt_regs,
    bindings::BPF_F_CURRENT_CPU,
    bindings::BPF_F_USER_STACK,
    bindings::BPF_NOEXIST,
    helpers::bpf_probe_read_user,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_get_attach_cookie, bpf_perf_event_output},
    },
    macros::{map, tracepoint, uprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, PerfEventArray, StackTrace},
    programs::{tracing::StackIdContext as _, ProbeContext, TracePointContext},
    EbpfContext,
};
use probe_common::{
    condition_holds, key_hash_byte, key_hash_word, BlockedStats, CallerSource, CasCounts, Control,
    ConvoyState, ConvoyStats, Counter, EventHeader, EventTag, GeneralRegister as R, GoLayout,
    HolderKey, HolderStats, Inflight, InflightKey, KeyCounts, KeyCountsKey, KeyKind, KeyShape,
    LockEvent, LockRole, LockStats, LockStatsKey, MapCounts, MapEvent, MapFilter, MapSiteConfig,
    NativeCall, NativeCode, OutcomeSource, PairKey, PairStack, ReleaseLog, RunQueueStats,
    RunnableSince, RuntimeEvent, RuntimeEventKind, SiteConfig, SiteKind, SkipWhen, StwPending,
    ThreadWaitKey, ThreadWaitStats, COUNTER_SLOTS, FUTEX_SITE, INFLIGHT_SPACE_LOCKS,
    INFLIGHT_SPACE_RUNTIME, KEY_HASH_BASIS, MAP_OPS, MAX_BLOCKED, MAX_CONVOYS, MAX_COUNTED_MAPS,
    MAX_FILTERED_MAPS, MAX_HOLDER_SITES, MAX_INFLIGHT, MAX_KEY_BYTES, MAX_KEY_COUNTS,
    MAX_LOCK_STATS, MAX_PAIRS, MAX_RELEASE_LOGS, MAX_SITES, MAX_STACKS, MAX_THREAD_WAITS,
    NATIVE_CALLS_MAX, NATIVE_SIGNAL_RANGES, NATIVE_SKIP_RANGES, NATIVE_STACK_WORDS, NO_PREALLOC,
    NO_REGISTER, NO_STW_REASON, PTHREAD_COND_SIZE, PTHREAD_JOIN_SPAN, PTHREAD_RWLOCK_SIZE,
    RELEASE_LOG_SLOTS, RUNQ_THREADS_MAX, SCHED_SLEEP_STATES, SCHED_SWITCH_NEXT_PID,
    SCHED_SWITCH_PREV_STATE, SCHED_WAKEUP_PID, STACK_RESAMPLE, SYNC_MAP_COUNT_FLAG, THREAD_KEY,
    WAIT_HIST_BUCKETS,
};

/// Per-site configuration, indexed by the attachment's cookie.
#[map]
static SITES: Array<SiteConfig> = Array::with_max_entries(MAX_SITES, 0);

/// The switches (index 0).
#[map]
static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

/// One perf ring buffer per CPU; the daemon reads each from its own task.
#[map]
static EVENTS: PerfEventArray<LockEvent> = PerfEventArray::new(0);

/// Per-CPU counters, indexed by [`Counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Waiters in a lock's slow path, by goroutine, for the wait time at its end.
/// A plain (preallocated) hash: inserting and deleting take no LRU lock,
/// and a full table is counted ([`Counter::InflightErrors`]), not evicted.
/// An entry whose end was missed is overwritten by the goroutine's next
/// wait (goroutines are reused, not freed).
#[map]
static INFLIGHT: HashMap<InflightKey, Inflight> = HashMap::with_max_entries(MAX_INFLIGHT, 0);

/// Goroutines that entered a lock's semaphore wait and may be parked on
/// it: when and on which lock (read at `runtime.ready`, cleared when the
/// wait ends).
#[map]
static SEMA_PENDING: HashMap<InflightKey, Inflight> = HashMap::with_max_entries(MAX_INFLIGHT, 0);

/// User stacks of waiters, by id.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// The stack last read for each (lock, caller): stacks are read once per
/// pair (and every [`STACK_RESAMPLE`]th entry), not at every contention.
#[map]
static PAIRS: LruHashMap<PairKey, PairStack> = LruHashMap::with_max_entries(MAX_PAIRS, 0);

/// Contentions and waits per (lock, call site, role), per CPU.
#[map]
static LOCK_STATS: PerCpuHashMap<LockStatsKey, LockStats> =
    PerCpuHashMap::with_max_entries(MAX_LOCK_STATS, NO_PREALLOC);

/// Parks per lock, per CPU (`--blocked-time`).
#[map]
static BLOCKED: PerCpuHashMap<u64, BlockedStats> =
    PerCpuHashMap::with_max_entries(MAX_BLOCKED, NO_PREALLOC);

/// Each lock's last releases to waiters (see [`ReleaseLog`]). An LRU: a
/// lock no longer released makes room.
#[map]
static RELEASE_LOGS: LruHashMap<u64, ReleaseLog> =
    LruHashMap::with_max_entries(MAX_RELEASE_LOGS, 0);

/// Per-CPU scratch space for a fresh `RELEASE_LOGS` value.
#[map]
static LOG_SCRATCH: PerCpuArray<ReleaseLog> = PerCpuArray::with_max_entries(1, 0);

/// What each (lock, holder call site)'s releases made others wait, and its
/// hold times, per CPU.
#[map]
static HOLDER_STATS: PerCpuHashMap<HolderKey, HolderStats> =
    PerCpuHashMap::with_max_entries(MAX_HOLDER_SITES, NO_PREALLOC);

/// Where to look for a native waiter's call site (index 0).
#[map]
static NATIVE_CODE: Array<NativeCode> = Array::with_max_entries(1, 0);

/// Per-CPU copy of the top of a native waiter's user stack.
#[map]
static NATIVE_STACK: PerCpuArray<[u64; NATIVE_STACK_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// Each native thread's latest call of a condition-variable wait or an
/// rwlock lock (by thread id): its futex waits inside that object take the
/// call's role.
#[map]
static NATIVE_CALLS: LruHashMap<u32, NativeCall> =
    LruHashMap::with_max_entries(NATIVE_CALLS_MAX, 0);

/// Each native thread's ended waits per lock and role.
#[map]
static THREAD_WAITS: HashMap<ThreadWaitKey, ThreadWaitStats> =
    HashMap::with_max_entries(MAX_THREAD_WAITS, NO_PREALLOC);

/// The traced process (index 0), for the system-wide futex tracepoints.
#[map]
static TARGET: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU attempts and failures of each CAS site, indexed by site.
#[map]
static CAS_COUNTS: PerCpuArray<CasCounts> = PerCpuArray::with_max_entries(MAX_SITES, 0);

/// The Go runtime's type layout (index 0), written by the daemon from its
/// Go runtime table: how map keys are decoded.
#[map]
static GO_LAYOUT: Array<GoLayout> = Array::with_max_entries(1, 0);

/// x86 EFLAGS carry flag.
const FLAG_CF: u64 = 1 << 0;
/// x86 EFLAGS zero flag.
const FLAG_ZF: u64 = 1 << 6;

/// Whether a hit must be skipped: the site's [`SkipWhen`] condition holds on
/// the saved flags (the stack-check branch is about to re-enter).
#[inline(always)]
fn skipped(skip_when: u32, flags: u64) -> bool {
    match skip_when {
        x if x == SkipWhen::BelowOrEqual as u32 => flags & (FLAG_CF | FLAG_ZF) != 0,
        x if x == SkipWhen::Below as u32 => flags & FLAG_CF != 0,
        _ => false,
    }
}

#[inline(always)]
fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other CPU writes it, and uprobe programs are not
        // preempted by themselves on one CPU.
        unsafe { *slot += 1 };
    }
}

/// The switches, or `None` (counted) when the probes are off.
#[inline(always)]
fn control() -> Option<Control> {
    match CONTROL.get(0) {
        Some(control) if control.enabled != 0 => Some(*control),
        _ => {
            bump(Counter::DisabledHits);
            None
        }
    }
}

/// The probed site's configuration, with the switches: `None` (counted)
/// when the probes are off or the cookie names no site.
#[inline(always)]
fn site(ctx: &ProbeContext) -> Option<(Control, &'static SiteConfig)> {
    let control = control()?;
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    match SITES.get(cookie) {
        Some(site) => Some((control, site)),
        None => {
            bump(Counter::UnknownSite);
            None
        }
    }
}

/// The header of an event written now by the current thread.
#[inline(always)]
fn header(tag: EventTag, pid_tgid: u64, now: u64) -> EventHeader {
    EventHeader {
        tag: tag as u32,
        cpu: unsafe { bpf_get_smp_processor_id() },
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        timestamp_ns: now,
    }
}

/// One general register at a probe hit, numbered as [`R`]; 0 for
/// [`NO_REGISTER`] or anything else out of range (the daemon never writes
/// such a number for a register it needs). Each arm reads the context at a
/// constant offset, as the verifier requires, and only the register asked
/// for is read.
#[inline(always)]
fn register(ctx: &ProbeContext, which: u32) -> u64 {
    let regs = ctx.regs;
    unsafe {
        match which {
            x if x == R::Rax as u32 => core::ptr::read_volatile(&raw const (*regs).rax),
            x if x == R::R14 as u32 => core::ptr::read_volatile(&raw const (*regs).r14),
            x if x == R::Rbx as u32 => core::ptr::read_volatile(&raw const (*regs).rbx),
            x if x == R::Rcx as u32 => core::ptr::read_volatile(&raw const (*regs).rcx),
            x if x == R::Rdx as u32 => core::ptr::read_volatile(&raw const (*regs).rdx),
            x if x == R::Rsi as u32 => core::ptr::read_volatile(&raw const (*regs).rsi),
            x if x == R::Rdi as u32 => core::ptr::read_volatile(&raw const (*regs).rdi),
            x if x == R::Rbp as u32 => core::ptr::read_volatile(&raw const (*regs).rbp),
            x if x == R::R8 as u32 => core::ptr::read_volatile(&raw const (*regs).r8),
            x if x == R::R9 as u32 => core::ptr::read_volatile(&raw const (*regs).r9),
            x if x == R::R10 as u32 => core::ptr::read_volatile(&raw const (*regs).r10),
            x if x == R::R11 as u32 => core::ptr::read_volatile(&raw const (*regs).r11),
            x if x == R::R12 as u32 => core::ptr::read_volatile(&raw const (*regs).r12),
            x if x == R::R13 as u32 => core::ptr::read_volatile(&raw const (*regs).r13),
            x if x == R::R15 as u32 => core::ptr::read_volatile(&raw const (*regs).r15),
            x if x == R::Rsp as u32 => core::ptr::read_volatile(&raw const (*regs).rsp),
            _ => 0,
        }
    }
}

/// One general register of a copy of the saved registers, numbered as
/// [`R`]; 0 for [`NO_REGISTER`] or anything out of range.
#[inline(always)]
fn saved_register(regs: &pt_regs, which: u32) -> u64 {
    match which {
        x if x == R::Rax as u32 => regs.rax,
        x if x == R::Rbx as u32 => regs.rbx,
        x if x == R::Rcx as u32 => regs.rcx,
        x if x == R::Rdx as u32 => regs.rdx,
        x if x == R::Rsi as u32 => regs.rsi,
        x if x == R::Rdi as u32 => regs.rdi,
        x if x == R::R8 as u32 => regs.r8,
        x if x == R::R9 as u32 => regs.r9,
        x if x == R::R10 as u32 => regs.r10,
        x if x == R::R11 as u32 => regs.r11,
        x if x == R::R12 as u32 => regs.r12,
        x if x == R::R13 as u32 => regs.r13,
        x if x == R::R14 as u32 => regs.r14,
        x if x == R::R15 as u32 => regs.r15,
        x if x == R::Rbp as u32 => regs.rbp,
        x if x == R::Rsp as u32 => regs.rsp,
        _ => 0,
    }
}

/// The saved flags and stack pointer at a probe hit.
#[inline(always)]
fn flags_and_rsp(ctx: &ProbeContext) -> (u64, u64) {
    let regs = ctx.regs;
    unsafe {
        (
            core::ptr::read_volatile(&raw const (*regs).eflags),
            core::ptr::read_volatile(&raw const (*regs).rsp),
        )
    }
}

/// Writes an event (lock or map) to this CPU's ring; counts it in
/// `written`, or as an output error.
#[inline(always)]
fn output<C: EbpfContext, T>(ctx: &C, event: &T, written: Counter) {
    let rc = unsafe {
        bpf_perf_event_output(
            ctx.as_ptr(),
            &EVENTS as *const _ as *mut _,
            BPF_F_CURRENT_CPU,
            event as *const T as *mut _,
            core::mem::size_of::<T>() as u64,
        )
    };
    if rc == 0 {
        bump(written);
    } else {
        bump(Counter::OutputErrors);
    }
}

/// The log2 bucket of a wait in the in-kernel histograms.
#[inline(always)]
fn wait_bucket(wait_ns: u64) -> usize {
    let bucket = 63 - (wait_ns | 1).leading_zeros() as usize;
    if bucket >= WAIT_HIST_BUCKETS {
        WAIT_HIST_BUCKETS - 1
    } else {
        bucket
    }
}

/// Per-CPU scratch space for a fresh `LOCK_STATS` value (too big for the
/// BPF stack).
#[map]
static STATS_SCRATCH: PerCpuArray<LockStats> = PerCpuArray::with_max_entries(1, 0);

/// Adds one contention (`wait` = `None`) or one measured wait to this
/// CPU's statistics of `key`. False when the table is full.
#[inline(always)]
fn count_lock(key: &LockStatsKey, wait: Option<u64>) -> bool {
    let add = |stats: &mut LockStats| match wait {
        None => stats.contentions += 1,
        Some(wait_ns) => {
            stats.acquisitions += 1;
            stats.wait_ns += wait_ns;
            if wait_ns > stats.wait_max_ns {
                stats.wait_max_ns = wait_ns;
            }
            if let Some(cell) = stats.hist.get_mut(wait_bucket(wait_ns)) {
                *cell += 1;
            }
        }
    };
    let reset = |fresh: &mut LockStats| {
        fresh.contentions = 0;
        fresh.acquisitions = 0;
        fresh.wait_ns = 0;
        fresh.wait_max_ns = 0;
        for cell in fresh.hist.iter_mut() {
            *cell = 0;
        }
    };
    upsert(&LOCK_STATS, &STATS_SCRATCH, key, reset, add)
}

/// Applies `add` to this CPU's value of `key` in `map`; a missing entry is
/// made from this CPU's `scratch` slot, cleared by `reset` (the value goes
/// in by reference: a copy would take most of the BPF stack). False when
/// the table is full.
#[inline(always)]
fn upsert<K, V>(
    map: &PerCpuHashMap<K, V>,
    scratch: &PerCpuArray<V>,
    key: &K,
    reset: impl FnOnce(&mut V),
    add: impl Fn(&mut V),
) -> bool {
    if let Some(value) = map.get_ptr_mut(key) {
        // SAFETY: this CPU's value of the entry.
        add(unsafe { &mut *value });
        return true;
    }
    let Some(fresh) = scratch.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot; uprobe programs do not nest on a CPU.
    let fresh = unsafe { &mut *fresh };
    reset(fresh);
    add(fresh);
    #[allow(clippy::needless_borrows_for_generic_args)]
    let inserted = map.insert(key, &*fresh, BPF_NOEXIST as u64);
    if inserted.is_ok() {
        return true;
    }
    // Another CPU created the entry meanwhile: add to this CPU's value.
    match map.get_ptr_mut(key) {
        Some(value) => {
            add(unsafe { &mut *value });
            true
        }
        None => false,
    }
}

/// Clears a fresh `HOLDER_STATS` value.
#[inline(always)]
fn reset_holder(fresh: &mut HolderStats) {
    fresh.releases = 0;
    fresh.caused_ns = 0;
    fresh.holds = 0;
    fresh.hold_ns = 0;
    for cell in fresh.hold_hist.iter_mut() {
        *cell = 0;
    }
}

/// Charges `caused_ns` of waiting on `key.lock_addr` to the holder `key`
/// (this CPU's statistics), creating its entry if need be.
#[inline(never)]
fn charge(key: &HolderKey, caused_ns: u64) {
    if caused_ns == 0 {
        return;
    }
    let add = |stats: &mut HolderStats| stats.caused_ns = stats.caused_ns.wrapping_add(caused_ns);
    if !upsert(&HOLDER_STATS, &HOLDER_SCRATCH, key, reset_holder, add) {
        bump(Counter::HolderStatsFull);
    }
}

/// A wait on `lock_addr` from `start_ns` to `end_ns` is over: splits it at
/// the lock's releases to waiters within it, newest first, and charges each
/// stretch to the holder whose release ended it (the stretch after the
/// last release, to that release's holder: it woke the waiter). A wait no
/// release ended (the lock was released by its fast path) is charged to
/// no one. Adjacent stretches of one holder are charged at once.
#[inline(never)]
fn charge_wait(lock_addr: u64, start_ns: u64, end_ns: u64) {
    let Some(log) = (unsafe { RELEASE_LOGS.get(lock_addr) }) else {
        return;
    };
    let head = unsafe { core::ptr::read_volatile(&log.head) };
    // The holder being charged, and the end of the stretch not yet charged.
    let mut pending: Option<HolderKey> = None;
    let mut pending_ns = 0u64;
    let mut upper = end_ns;
    let mut complete = false;
    for i in 0..RELEASE_LOG_SLOTS as u64 {
        if i >= head {
            complete = true;
            break;
        }
        let index = (head - 1 - i) as usize & (RELEASE_LOG_SLOTS - 1);
        let Some(slot) = log.slots.get(index) else {
            break;
        };
        let time_ns = slot.time_ns;
        if time_ns > end_ns {
            // A release after this waiter acquired (another CPU's, racing).
            continue;
        }
        if time_ns <= start_ns {
            complete = true;
            break;
        }
        let key = HolderKey {
            lock_addr,
            caller_ip: slot.caller_ip,
            stack_id: slot.stack_id,
        };
        // The stretch (time_ns, upper] goes to the later release's holder
        // (pending), or to this one's when it is the last before the
        // acquisition.
        match pending {
            None => {
                pending = Some(key);
                pending_ns = upper - time_ns;
            }
            Some(holder) => {
                pending_ns += upper - time_ns;
                if holder != key {
                    charge(&holder, pending_ns);
                    pending = Some(key);
                    pending_ns = 0;
                }
            }
        }
        upper = time_ns;
    }
    let Some(holder) = pending else {
        return;
    };
    if !complete {
        bump(Counter::ReleaseLogShort);
    }
    charge(&holder, pending_ns + (upper - start_ns));
}

/// Per-CPU scratch space for a fresh `HOLDER_STATS` value.
#[map]
static HOLDER_SCRATCH: PerCpuArray<HolderStats> = PerCpuArray::with_max_entries(1, 0);

/// Adds one release and (if known) its hold time to
/// this CPU's statistics of `key`. False when the table is full.
#[inline(always)]
fn count_holder(key: &HolderKey, hold: Option<u64>) -> bool {
    let add = |stats: &mut HolderStats| {
        stats.releases += 1;
        if let Some(hold_ns) = hold {
            stats.holds += 1;
            stats.hold_ns = stats.hold_ns.wrapping_add(hold_ns);
            if let Some(cell) = stats.hold_hist.get_mut(wait_bucket(hold_ns)) {
                *cell += 1;
            }
        }
    };
    upsert(&HOLDER_STATS, &HOLDER_SCRATCH, key, reset_holder, add)
}

/// Counts a lock hit in the kernel, or (the table full) writes it as an
/// event made by `event`; either way it is one of `Counter::Hits`.
#[inline(always)]
fn record_lock<C: EbpfContext>(
    ctx: &C,
    key: &LockStatsKey,
    wait: Option<u64>,
    event: impl FnOnce() -> LockEvent,
) {
    if count_lock(key, wait) {
        bump(Counter::Hits);
        return;
    }
    bump(Counter::LockStatsFull);
    // Built in a scratch slot, not on the BPF stack (the ends of waits
    // need their stack for holder blame).
    match EVENT_SCRATCH.get_ptr_mut(0) {
        Some(slot) => {
            // SAFETY: this CPU's scratch slot; uprobe programs do not nest.
            let slot = unsafe { &mut *slot };
            *slot = event();
            output(ctx, slot, Counter::Hits);
        }
        None => bump(Counter::OutputErrors),
    }
}

/// Per-CPU scratch space for a lock event written because a table was full.
#[map]
static EVENT_SCRATCH: PerCpuArray<LockEvent> = PerCpuArray::with_max_entries(1, 0);

/// The user stack of a waiter at `caller` on `lock`: read once per pair
/// (and again every [`STACK_RESAMPLE`]th time), else the last one read.
#[inline(always)]
fn pair_stack(ctx: &ProbeContext, lock_addr: u64, caller_ip: u64) -> i64 {
    let key = PairKey {
        lock_addr,
        caller_ip,
    };
    if let Some(pair) = PAIRS.get_ptr_mut(key) {
        // SAFETY: an entry of the LRU map; a racing update from another CPU
        // at worst re-reads a stack.
        let pair = unsafe { &mut *pair };
        pair.hits += 1;
        if pair.hits % STACK_RESAMPLE != 0 {
            return pair.stack_id;
        }
        let stack_id = ctx
            .get_stackid(&STACKS, BPF_F_USER_STACK as u64)
            .unwrap_or(-1);
        pair.stack_id = stack_id;
        return stack_id;
    }
    let stack_id = ctx
        .get_stackid(&STACKS, BPF_F_USER_STACK as u64)
        .unwrap_or(-1);
    let _ = PAIRS.insert(key, PairStack { stack_id, hits: 1 }, 0);
    stack_id
}

/// The in-flight space of waits of lock role `role`: a goroutine's wait on
/// a runtime lock nests in its wait on a `sync` lock.
#[inline(always)]
fn inflight_space(role: u32) -> u32 {
    if role == LockRole::Runtime as u32 {
        INFLIGHT_SPACE_RUNTIME
    } else {
        INFLIGHT_SPACE_LOCKS
    }
}

/// Entry into a lock's contended slow path (or a semaphore wait).
#[uprobe]
pub fn lock_slow(ctx: ProbeContext) -> u32 {
    let Some((control, site)) = site(&ctx) else {
        return 0;
    };
    let (flags, rsp) = flags_and_rsp(&ctx);
    if skipped(site.skip_when, flags) {
        bump(Counter::SkippedReentry);
        return 0;
    }
    let argument = register(&ctx, site.arg_register);
    let argument = if site.arg_deref != 0 {
        // The argument points at a structure whose first word is the lock.
        let Some(lock) = read_user::<u64>(argument) else {
            bump(Counter::InflightErrors);
            return 0;
        };
        lock
    } else {
        argument
    };
    let lock_addr = argument.wrapping_sub(site.addr_adjust as u64);
    let goroutine = register(&ctx, site.goroutine_register);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let key = InflightKey {
        tgid,
        space: inflight_space(site.role),
        goroutine,
    };
    if goroutine != 0 && site.track_blocked != 0 {
        // A semaphore wait begins (the mutex's, or an RWMutex reader's or
        // writer's): the goroutine may park until `runtime.ready`.
        let value = Inflight {
            start_ns: unsafe { bpf_ktime_get_ns() },
            lock_addr,
            role: site.role,
            _pad: 0,
            caller_ip: 0,
            stack_id: -1,
        };
        if SEMA_PENDING.insert(key, value, 0).is_err() {
            bump(Counter::InflightErrors);
        }
    }
    if site.kind == SiteKind::SemaEntry as u32 {
        return 0;
    }
    // Where the waiter is: the return address on top of the stack (the
    // probe fires before the prologue pushes a frame), or in the lock
    // function's frame (the site is inside it, or at a helper it calls),
    // and the user stack above it once per (lock, caller).
    let (caller_ip, stack_id) = if site.capture_stack != 0 {
        let return_slot = if site.caller_source == CallerSource::FramePointer as u32 {
            register(&ctx, R::Rbp as u32).wrapping_add(8)
        } else {
            rsp
        };
        let caller_ip = read_user::<u64>(return_slot).unwrap_or(0);
        let stack_id = if control.stacks != 0 {
            pair_stack(&ctx, lock_addr, caller_ip)
        } else {
            -1
        };
        (caller_ip, stack_id)
    } else {
        (0, -1)
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if goroutine != 0 && control.wait_times != 0 {
        let value = Inflight {
            start_ns: now,
            lock_addr,
            role: site.role,
            _pad: 0,
            caller_ip,
            stack_id,
        };
        if INFLIGHT.insert(key, value, 0).is_err() {
            bump(Counter::InflightErrors);
        }
        if control.holders != 0 && site.role != LockRole::Runtime as u32 {
            convoy_entry(lock_addr, site.role, now, caller_ip, stack_id);
        }
    }
    let stats_key = LockStatsKey {
        lock_addr,
        caller_ip,
        stack_id,
        role: site.role,
        _pad: 0,
    };
    let (site_index, role) = (site.site_index, site.role);
    record_lock(&ctx, &stats_key, None, || LockEvent {
        header: header(EventTag::Lock, pid_tgid, now),
        lock_addr,
        goroutine,
        wait_ns: 0,
        caller_ip,
        stack_id,
        kind: SiteKind::LockSlowEntry as u32,
        site_index,
        role,
        _pad: 0,
    });
    0
}

/// The end of a wait of goroutine `goroutine`: counts it with its length,
/// if its entry was seen.
#[inline(always)]
fn end_wait<C: EbpfContext>(ctx: &C, goroutine: u64, site: &SiteConfig, control: &Control) {
    let site_index = site.site_index;
    let pid_tgid = bpf_get_current_pid_tgid();
    let key = InflightKey {
        tgid: (pid_tgid >> 32) as u32,
        space: inflight_space(site.role),
        goroutine,
    };
    let Some(inflight) = (unsafe { INFLIGHT.get(key) }).copied() else {
        // With wait times off (the governor's windows), entries record
        // nothing: no end is unmatched.
        if control.wait_times != 0 {
            bump(Counter::UnmatchedReturns);
        }
        return;
    };
    let _ = INFLIGHT.remove(key);
    if site.track_blocked != 0 {
        // Whatever semaphore wait this goroutine began is over.
        let _ = SEMA_PENDING.remove(key);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    // Runtime locks have no release probes: nothing to charge.
    if control.holders != 0
        && goroutine & THREAD_KEY == 0
        && inflight.role != LockRole::Runtime as u32
    {
        charge_wait(inflight.lock_addr, inflight.start_ns, now);
        if inflight.role == LockRole::RwReader as u32 {
            convoy_reader_done(inflight.lock_addr, inflight.start_ns, now);
        }
        // The goroutine holds the lock now: its hold time runs until the
        // lock's next release to waiters, if that is its own.
        if let Some(log) = RELEASE_LOGS.get_ptr_mut(inflight.lock_addr) {
            // SAFETY: an entry of the map.
            let log = unsafe { &mut *log };
            log.owner_since_ns = now;
            log.owner = goroutine;
        }
    }
    let wait_ns = now.saturating_sub(inflight.start_ns);
    let stats_key = LockStatsKey {
        lock_addr: inflight.lock_addr,
        caller_ip: inflight.caller_ip,
        stack_id: inflight.stack_id,
        role: inflight.role,
        _pad: 0,
    };
    record_lock(ctx, &stats_key, Some(wait_ns), || LockEvent {
        header: header(EventTag::Lock, pid_tgid, now),
        lock_addr: inflight.lock_addr,
        goroutine,
        wait_ns,
        caller_ip: inflight.caller_ip,
        stack_id: inflight.stack_id,
        kind: SiteKind::LockSlowReturn as u32,
        site_index,
        role: inflight.role,
        _pad: 0,
    });
}

/// Entry into a lock's release slow path: a holder hands the lock to its
/// waiters. Logged in the lock's release log (the waits it ends charge it
/// at their ends) and counted for this holder's call site, with its hold
/// time when the holder acquired through the slow path.
#[uprobe]
pub fn lock_release(ctx: ProbeContext) -> u32 {
    let Some((control, site)) = site(&ctx) else {
        return 0;
    };
    let (flags, rsp) = flags_and_rsp(&ctx);
    if skipped(site.skip_when, flags) {
        bump(Counter::SkippedReentry);
        return 0;
    }
    let lock_addr = register(&ctx, site.arg_register).wrapping_sub(site.addr_adjust as u64);
    let goroutine = register(&ctx, site.goroutine_register);
    let now = unsafe { bpf_ktime_get_ns() };
    let caller_ip = read_user::<u64>(rsp).unwrap_or(0);
    let stack_id = if control.stacks != 0 {
        pair_stack(&ctx, lock_addr, caller_ip)
    } else {
        -1
    };
    let hold = log_release(lock_addr, goroutine, now, caller_ip, stack_id);
    if site.role == LockRole::RwWriter as u32 {
        convoy_end(lock_addr, now);
    }
    let key = HolderKey {
        lock_addr,
        caller_ip,
        stack_id,
    };
    if count_holder(&key, hold) {
        bump(Counter::Releases);
    } else {
        bump(Counter::HolderStatsFull);
    }
    0
}

/// Adds `value` to `*cell` atomically (other CPUs add to it too).
#[cfg(target_arch = "bpf")]
#[inline(always)]
fn atomic_add(cell: &mut u64, value: u64) {
    // SAFETY: a live, aligned u64 of a map value.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            cell, value,
        )
    };
}

/// The same on the host (the crate is only checked there).
#[cfg(not(target_arch = "bpf"))]
#[inline(always)]
fn atomic_add(cell: &mut u64, value: u64) {
    // SAFETY: a live, aligned u64.
    let cell = unsafe { core::sync::atomic::AtomicU64::from_ptr(cell) };
    cell.fetch_add(value, core::sync::atomic::Ordering::Relaxed);
}

/// An RWMutex's writer convoys in progress, by lock.
#[map]
static CONVOYS: LruHashMap<u64, ConvoyState> = LruHashMap::with_max_entries(MAX_CONVOYS, 0);

/// Convoys per (lock, writer call site), per CPU.
#[map]
static CONVOY_STATS: PerCpuHashMap<HolderKey, ConvoyStats> =
    PerCpuHashMap::with_max_entries(MAX_CONVOYS, NO_PREALLOC);

/// A timed wait of `role` begins on `lock_addr`: a writer waiting for
/// readers to leave starts a convoy; a reader waiting meanwhile is stalled
/// behind it.
#[inline(never)]
fn convoy_entry(lock_addr: u64, role: u32, now: u64, caller_ip: u64, stack_id: i64) {
    if role == LockRole::RwWriter as u32 {
        if let Some(state) = CONVOYS.get_ptr_mut(lock_addr) {
            // SAFETY: an entry of the map; one writer is pending at a time.
            let state = unsafe { &mut *state };
            state.stalled = 0;
            state.writer_caller_ip = caller_ip;
            state.writer_stack_id = stack_id;
            unsafe { core::ptr::write_volatile(&mut state.pending_since_ns, now) };
            return;
        }
        let state = ConvoyState {
            pending_since_ns: now,
            stalled: 0,
            writer_caller_ip: caller_ip,
            writer_stack_id: stack_id,
            last_start_ns: 0,
            last_end_ns: 0,
        };
        let _ = CONVOYS.insert(lock_addr, state, 0);
    } else if role == LockRole::RwReader as u32 {
        if let Some(state) = CONVOYS.get_ptr_mut(lock_addr) {
            // SAFETY: an entry of the map; readers on several CPUs add at
            // once, hence the atomic add.
            let state = unsafe { &mut *state };
            if unsafe { core::ptr::read_volatile(&state.pending_since_ns) } != 0 {
                atomic_add(&mut state.stalled, 1);
            }
        }
    }
}

/// The writer of `lock_addr` unlocks: the convoy in progress, if any, ends.
#[inline(never)]
fn convoy_end(lock_addr: u64, now: u64) {
    let Some(state) = CONVOYS.get_ptr_mut(lock_addr) else {
        return;
    };
    // SAFETY: an entry of the map.
    let state = unsafe { &mut *state };
    let since = state.pending_since_ns;
    if since == 0 {
        return;
    }
    state.pending_since_ns = 0;
    state.last_start_ns = since;
    state.last_end_ns = now;
    let key = HolderKey {
        lock_addr,
        caller_ip: state.writer_caller_ip,
        stack_id: state.writer_stack_id,
    };
    let length = now.saturating_sub(since);
    let stalled = state.stalled;
    let add = |stats: &mut ConvoyStats| {
        stats.episodes += 1;
        stats.total_ns += length;
        stats.max_ns = stats.max_ns.max(length);
        stats.stalled += stalled;
        stats.max_stalled = stats.max_stalled.max(stalled);
    };
    let reset = |fresh: &mut ConvoyStats| *fresh = ConvoyStats::default();
    // A full table loses the episode (the lock's convoys are then short).
    let _ = upsert(&CONVOY_STATS, &CONVOY_SCRATCH, &key, reset, add);
}

/// Per-CPU scratch space for a fresh `CONVOY_STATS` value.
#[map]
static CONVOY_SCRATCH: PerCpuArray<ConvoyStats> = PerCpuArray::with_max_entries(1, 0);

/// A reader's wait on `lock_addr` from `start_ns` ended at `end_ns`: if it
/// began during the lock's last convoy, its wait goes to that convoy's
/// writer.
#[inline(never)]
fn convoy_reader_done(lock_addr: u64, start_ns: u64, end_ns: u64) {
    let Some(state) = (unsafe { CONVOYS.get(lock_addr) }) else {
        return;
    };
    if start_ns < state.last_start_ns || start_ns > state.last_end_ns {
        return;
    }
    let key = HolderKey {
        lock_addr,
        caller_ip: state.writer_caller_ip,
        stack_id: state.writer_stack_id,
    };
    // The episode's end created the entry (on some CPU): add to this CPU's.
    if let Some(stats) = CONVOY_STATS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of the entry.
        let stats = unsafe { &mut *stats };
        stats.reader_wait_ns += end_ns.saturating_sub(start_ns);
    }
}

/// Writes a release by `goroutine` into its lock's log, creating the log if
/// need be; returns the goroutine's hold time if its acquisition was the
/// lock's last slow one since the previous release to waiters.
#[inline(always)]
fn log_release(
    lock_addr: u64,
    goroutine: u64,
    time_ns: u64,
    caller_ip: u64,
    stack_id: i64,
) -> Option<u64> {
    let log = match RELEASE_LOGS.get_ptr_mut(lock_addr) {
        Some(log) => log,
        None => {
            let fresh = LOG_SCRATCH.get_ptr_mut(0)?;
            // SAFETY: this CPU's scratch slot.
            unsafe {
                (*fresh).head = 0;
                (*fresh).owner = 0;
            }
            // By reference, not a copy on the BPF stack.
            #[allow(clippy::needless_borrows_for_generic_args)]
            let _ = RELEASE_LOGS.insert(lock_addr, unsafe { &*fresh }, BPF_NOEXIST as u64);
            match RELEASE_LOGS.get_ptr_mut(lock_addr) {
                Some(log) => log,
                None => {
                    bump(Counter::ReleaseLogsFull);
                    return None;
                }
            }
        }
    };
    // SAFETY: an entry of the map; its lock's releases come one at a time.
    let log = unsafe { &mut *log };
    let hold = (goroutine != 0 && log.owner == goroutine)
        .then(|| time_ns.saturating_sub(log.owner_since_ns));
    log.owner = 0;
    let head = log.head;
    if let Some(slot) = log.slots.get_mut(head as usize & (RELEASE_LOG_SLOTS - 1)) {
        slot.time_ns = time_ns;
        slot.caller_ip = caller_ip;
        slot.stack_id = stack_id;
    }
    unsafe { core::ptr::write_volatile(&mut log.head, head + 1) };
    hold
}

/// A jump by which a slow path enters its epilogue (see the planner's
/// `exits` module): when taken, the waiter in the goroutine register holds
/// the lock now.
#[uprobe]
pub fn lock_exit(ctx: ProbeContext) -> u32 {
    let Some((control, site)) = site(&ctx) else {
        return 0;
    };
    let (flags, _) = flags_and_rsp(&ctx);
    // An exit at a function's entry (the runtime's `lockTimer.end`) is
    // passed twice when the call grows its stack first.
    if skipped(site.skip_when, flags) {
        bump(Counter::SkippedReentry);
        return 0;
    }
    if !condition_holds(site.count_if, flags) {
        bump(Counter::NotExits);
        return 0;
    }
    let goroutine = register(&ctx, site.goroutine_register);
    end_wait(&ctx, goroutine, site, &control);
    0
}

/// The stop-the-world in progress (index 0): the world stops once at a
/// time, and each target has its own tables.
#[map]
static STW_PENDING: Array<StwPending> = Array::with_max_entries(1, 0);

/// Go's runtime: a GC cycle's end (`gcMarkTermination`), the world stopping
/// (`stopTheWorldWithSema`) and starting again (`startTheWorldWithSema`,
/// and where it has read its end time). A pause is measured the runtime's
/// way where it passes its figures (Go ≥ 1.22: Go's nanotime is the same
/// CLOCK_MONOTONIC as `bpf_ktime_get_ns`), else from the stop's entry to
/// the restart's.
/// These run a few times a second, so [`Control::runtime`], not
/// [`Control::enabled`], switches them: the governor's windows never cut
/// them, and their counts stay exact.
#[uprobe]
pub fn go_runtime(ctx: ProbeContext) -> u32 {
    match CONTROL.get(0) {
        Some(control) if control.runtime != 0 => {}
        _ => return 0,
    }
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let Some(site) = SITES.get(cookie) else {
        bump(Counter::UnknownSite);
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let (kind, reason, duration_ns) = match SiteKind::from_raw(site.kind) {
        Some(SiteKind::GcCycle) => (RuntimeEventKind::GcCycle, NO_STW_REASON, 0),
        Some(SiteKind::StopTheWorld) => {
            let reason = if site.arg_register == NO_REGISTER {
                NO_STW_REASON
            } else {
                // An stwReason is a uint8.
                (register(&ctx, site.arg_register) & 0xff) as u32
            };
            if let Some(pending) = STW_PENDING.get_ptr_mut(0) {
                // SAFETY: one stop at a time; a plain array slot.
                unsafe {
                    *pending = StwPending {
                        start_ns: now,
                        reason,
                        _pad: 0,
                    }
                };
            }
            return 0;
        }
        Some(SiteKind::StartTheWorld) if site.start_register != NO_REGISTER => {
            // The runtime's own figures: its start, its reason, and its end
            // when it has read it already (else at `RestartDone`).
            // Three registers in one program: read from a copy of the
            // saved registers (the verifier refuses the variable context
            // offset the compiler makes of three `register` reads).
            let regs = unsafe { core::ptr::read_volatile(ctx.regs) };
            let start = saved_register(&regs, site.start_register);
            let reason = (saved_register(&regs, site.arg_register) & 0xff) as u32;
            let end = saved_register(&regs, site.time_register);
            if end == 0 {
                if let Some(pending) = STW_PENDING.get_ptr_mut(0) {
                    // SAFETY: one restart at a time; a plain array slot.
                    unsafe {
                        *pending = StwPending {
                            start_ns: start,
                            reason,
                            _pad: 0,
                        }
                    };
                }
                return 0;
            }
            if start == 0 || start > end {
                bump(Counter::StwUnmatched);
                return 0;
            }
            (RuntimeEventKind::WorldStopped, reason, end - start)
        }
        Some(SiteKind::StartTheWorld | SiteKind::RestartDone) => {
            let Some(pending) = STW_PENDING.get_ptr_mut(0) else {
                return 0;
            };
            // SAFETY: as above.
            let stop = unsafe { core::ptr::replace(pending, StwPending::default()) };
            if stop.start_ns == 0 || stop.start_ns > now {
                // A restart whose pause ended at its entry passes here with
                // nothing kept: not a miss.
                if site.kind == SiteKind::StartTheWorld as u32 {
                    bump(Counter::StwUnmatched);
                }
                return 0;
            }
            (
                RuntimeEventKind::WorldStopped,
                stop.reason,
                now - stop.start_ns,
            )
        }
        _ => {
            bump(Counter::UnknownSite);
            return 0;
        }
    };
    let event = RuntimeEvent {
        header: header(EventTag::Runtime, bpf_get_current_pid_tgid(), now),
        kind: kind as u32,
        reason,
        duration_ns,
    };
    output(&ctx, &event, Counter::RuntimeEvents);
    0
}

/// The daemon's calibration probe on a function of its own: does nothing,
/// so that a hit costs the trap and the program's dispatch alone.
#[uprobe]
pub fn calibrate(_ctx: ProbeContext) -> u32 {
    0
}

/// A `RET` of a lock's slow path (Go; single-stepped, for `--probe-site
/// entry` and code without a continuation): the goroutine in the site's
/// goroutine register now holds the lock.
#[uprobe]
pub fn lock_slow_ret(ctx: ProbeContext) -> u32 {
    let Some((control, site)) = site(&ctx) else {
        return 0;
    };
    let goroutine = register(&ctx, site.goroutine_register);
    end_wait(&ctx, goroutine, site, &control);
    0
}

/// Go's `runtime.ready(gp, …)`: if the goroutine in the site's argument
/// register was parked on a lock's semaphore, counts how long it was
/// blocked (park to runnable).
#[uprobe]
pub fn go_ready(ctx: ProbeContext) -> u32 {
    let Some((_, site)) = site(&ctx) else {
        return 0;
    };
    let (flags, _) = flags_and_rsp(&ctx);
    if skipped(site.skip_when, flags) {
        return 0;
    }
    let readied = register(&ctx, site.arg_register);
    let pid_tgid = bpf_get_current_pid_tgid();
    let key = InflightKey {
        tgid: (pid_tgid >> 32) as u32,
        space: INFLIGHT_SPACE_LOCKS,
        goroutine: readied,
    };
    let Some(pending) = (unsafe { SEMA_PENDING.get(key) }).copied() else {
        return 0;
    };
    let _ = SEMA_PENDING.remove(key);
    let now = unsafe { bpf_ktime_get_ns() };
    let blocked_ns = now.saturating_sub(pending.start_ns);
    if count_blocked(pending.lock_addr, blocked_ns) {
        bump(Counter::Hits);
        return 0;
    }
    bump(Counter::LockStatsFull);
    let event = LockEvent {
        header: header(EventTag::Lock, pid_tgid, now),
        lock_addr: pending.lock_addr,
        goroutine: readied,
        wait_ns: blocked_ns,
        caller_ip: 0,
        stack_id: -1,
        kind: SiteKind::Ready as u32,
        site_index: site.site_index,
        role: pending.role,
        _pad: 0,
    };
    output(&ctx, &event, Counter::Hits);
    0
}

/// Adds one park to this CPU's figures of `lock`; false when `BLOCKED` is
/// full.
#[inline(always)]
fn count_blocked(lock: u64, blocked_ns: u64) -> bool {
    if let Some(stats) = BLOCKED.get_ptr_mut(lock) {
        // SAFETY: this CPU's value.
        unsafe {
            (*stats).parks += 1;
            (*stats).blocked_ns += blocked_ns;
        }
        return true;
    }
    let fresh = BlockedStats {
        parks: 1,
        blocked_ns,
    };
    if BLOCKED.insert(lock, fresh, BPF_NOEXIST as u64).is_ok() {
        return true;
    }
    match BLOCKED.get_ptr_mut(lock) {
        Some(stats) => {
            unsafe {
                (*stats).parks += 1;
                (*stats).blocked_ns += blocked_ns;
            }
            true
        }
        None => false,
    }
}

/// Just after a compare-and-swap: counts the attempt, and the failure when
/// the outcome says so. No event: counts in a per-CPU array cannot be lost.
#[uprobe]
pub fn cas_outcome(ctx: ProbeContext) -> u32 {
    let Some((_, site)) = site(&ctx) else {
        return 0;
    };
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let (flags, _) = flags_and_rsp(&ctx);
    let register = register(&ctx, site.outcome_register);
    let zf = flags & FLAG_ZF != 0;
    let low_byte_set = register & 0xff != 0;
    let success = match site.outcome {
        x if x == OutcomeSource::ZfSet as u32 => zf,
        x if x == OutcomeSource::ZfClear as u32 => !zf,
        x if x == OutcomeSource::RegisterNonZero as u32 => low_byte_set,
        _ => !low_byte_set,
    };
    if let Some(counts) = CAS_COUNTS.get_ptr_mut(cookie) {
        // Per-CPU slot: only this CPU writes it.
        unsafe {
            (*counts).attempts += 1;
            if !success {
                (*counts).failures += 1;
            }
        }
    }
    bump(Counter::CasHits);
    0
}

/// Per-site configuration of map operation sites, indexed by cookie.
#[map]
static MAP_SITES: Array<MapSiteConfig> = Array::with_max_entries(MAX_SITES, 0);

/// Maps selected with `--map` (value unused): with [`MapFilter::Listed`],
/// only their keys are recorded.
#[map]
static MAP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(MAX_FILTERED_MAPS, 0);

/// Operations per map and CPU of maps whose keys are not recorded.
#[map]
static MAP_COUNTS: PerCpuHashMap<u64, MapCounts> =
    PerCpuHashMap::with_max_entries(MAX_COUNTED_MAPS, NO_PREALLOC);

/// Operations per (map, key, caller) and CPU.
#[map]
static KEY_COUNTS: PerCpuHashMap<KeyCountsKey, KeyCounts> =
    PerCpuHashMap::with_max_entries(MAX_KEY_COUNTS, NO_PREALLOC);

/// Per-CPU scratch space for a [`MapEvent`] (too big for the BPF stack).
#[map]
static MAP_SCRATCH: PerCpuArray<MapEvent> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU count of map operations, for key sampling.
#[map]
static MAP_TICKS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Reads a user-space value, or `None` when the read faults.
#[inline(always)]
fn read_user<T>(address: u64) -> Option<T> {
    unsafe { bpf_probe_read_user(address as *const T) }.ok()
}

/// Copies the string at `data` of `len` bytes (at most `limit`) into the
/// event.
#[inline(always)]
fn copy_string(event: &mut MapEvent, layout: &GoLayout, data: u64, len: u64, limit: u32) {
    event.go_kind = layout.kind_string as u8;
    copy_key(event, data, len, limit, KeyKind::Str);
}

/// Copies `size` raw bytes (at most `limit`) at `data` into the event.
#[inline(always)]
fn copy_bytes(event: &mut MapEvent, data: u64, size: u64, limit: u32) {
    copy_key(event, data, size, limit, KeyKind::Bytes);
}

/// Copies the first bytes (at most `limit` and [`MAX_KEY_BYTES`]) of a key
/// of `len` bytes at `data`, decoded as `kind` when the copy works.
#[inline(always)]
fn copy_key(event: &mut MapEvent, data: u64, len: u64, limit: u32, kind: KeyKind) {
    event.key_len = len as u32;
    let mut n = if len > limit as u64 {
        limit as u64
    } else {
        len
    };
    if n > MAX_KEY_BYTES as u64 {
        n = MAX_KEY_BYTES as u64;
    }
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            event.key.as_mut_ptr() as *mut _,
            n as u32,
            data as *const _,
        )
    };
    if rc == 0 {
        event.copied = n as u16;
        event.key_kind = kind as u8;
    } else {
        event.key_kind = KeyKind::Unreadable as u8;
    }
}

/// An integer of `size` bytes (at most 8) stored at `data`.
#[inline(always)]
fn read_int(event: &mut MapEvent, data: u64, size: u64) {
    event.key_len = size as u32;
    match read_user::<u64>(data) {
        Some(raw) => {
            event.key_int = if size >= 8 {
                raw
            } else {
                raw & ((1u64 << (size * 8)) - 1)
            };
            event.key_kind = KeyKind::Int as u8;
        }
        None => event.key_kind = KeyKind::Unreadable as u8,
    }
}

/// Bytes of a Go type's header read at once for its kind and size (both
/// lie within its first 24 bytes in every supported version).
const TYPE_WINDOW: u32 = 32;

/// The last Go type whose kind and size this CPU read: a map's keys mostly
/// share one type, and a type's header never changes, so the next key of
/// that type costs no read (a user-memory read is ~0.15 µs here).
#[repr(C)]
#[derive(Clone, Copy)]
struct TypeInfo {
    typ: u64,
    size: u64,
    kind: u32,
    _pad: u32,
}

#[map]
static LAST_TYPE: PerCpuArray<TypeInfo> = PerCpuArray::with_max_entries(1, 0);

/// Kind and size of the Go type at `typ`: from this CPU's last type when it
/// is the same, else one read of the type's header (two when the fields
/// lie further apart than [`TYPE_WINDOW`]).
#[inline(always)]
fn type_kind_size(layout: &GoLayout, typ: u64) -> (u32, u64) {
    let last = LAST_TYPE.get_ptr_mut(0);
    if let Some(last) = last {
        // SAFETY: this CPU's slot.
        let last = unsafe { &*last };
        if last.typ == typ && typ != 0 {
            return (last.kind, last.size);
        }
    }
    let (kind, size) = read_type(layout, typ);
    if let Some(last) = last {
        if kind != 0 {
            // SAFETY: this CPU's slot; programs do not nest on a CPU.
            unsafe {
                *last = TypeInfo {
                    typ,
                    size,
                    kind,
                    _pad: 0,
                }
            };
        }
    }
    (kind, size)
}

/// Reads the kind and size of the Go type at `typ` (see [`type_kind_size`]).
#[inline(always)]
fn read_type(layout: &GoLayout, typ: u64) -> (u32, u64) {
    let (kind_at, size_at) = (layout.type_kind_offset, layout.type_size_offset);
    if kind_at < TYPE_WINDOW && size_at + 8 <= TYPE_WINDOW {
        let Some(window) = read_user::<[u8; TYPE_WINDOW as usize]>(typ) else {
            return (0, 0);
        };
        let kind = window.get(kind_at as usize).copied().unwrap_or(0) as u32 & layout.kind_mask;
        let mut size = [0u8; 8];
        for (i, byte) in size.iter_mut().enumerate() {
            *byte = window.get(size_at as usize + i).copied().unwrap_or(0);
        }
        return (kind, u64::from_le_bytes(size));
    }
    let kind = read_user::<u8>(typ + kind_at as u64).unwrap_or(0) as u32 & layout.kind_mask;
    let size = read_user::<u64>(typ + size_at as u64).unwrap_or(0);
    (kind, size)
}

/// A Go string header (data pointer, length) at `at`, in one read.
#[inline(always)]
fn string_header(at: u64) -> Option<(u64, u64)> {
    read_user::<[u64; 2]>(at).map(|[data, len]| (data, len))
}

/// Whether values of this kind are stored in an interface's data word
/// itself rather than pointed to.
#[inline(always)]
fn pointer_shaped(layout: &GoLayout, kind: u32) -> bool {
    kind < 32 && layout.pointer_kinds & (1u32 << kind) != 0
}

/// Whether this kind is an integer.
#[inline(always)]
fn integer(layout: &GoLayout, kind: u32) -> bool {
    kind >= layout.kind_int_first && kind <= layout.kind_int_last
}

/// An interface's dynamic value: type `typ`, data word `data`.
#[inline(always)]
fn decode_interface(event: &mut MapEvent, layout: &GoLayout, typ: u64, data: u64, limit: u32) {
    event.key_type = typ;
    if typ == 0 {
        // A nil interface key.
        event.key_kind = KeyKind::Int as u8;
        return;
    }
    let (kind, size) = type_kind_size(layout, typ);
    event.go_kind = kind as u8;
    if kind == layout.kind_string {
        let Some((ptr, len)) = string_header(data) else {
            event.key_kind = KeyKind::Unreadable as u8;
            return;
        };
        copy_string(event, layout, ptr, len, limit);
    } else if integer(layout, kind) {
        read_int(event, data, size);
    } else if pointer_shaped(layout, kind) {
        event.key_int = data;
        event.key_len = 8;
        event.key_kind = KeyKind::Int as u8;
    } else {
        copy_bytes(event, data, size, limit);
    }
}

/// A key of type `typ` stored at `data` (runtime maps' generic functions).
#[inline(always)]
fn decode_stored(event: &mut MapEvent, layout: &GoLayout, typ: u64, data: u64, limit: u32) {
    event.key_type = typ;
    let (kind, size) = type_kind_size(layout, typ);
    event.go_kind = kind as u8;
    if kind == layout.kind_string {
        let Some((ptr, len)) = string_header(data) else {
            event.key_kind = KeyKind::Unreadable as u8;
            return;
        };
        copy_string(event, layout, ptr, len, limit);
    } else if kind == layout.kind_interface {
        // An empty interface holds the type first; one with methods holds
        // an itab, whose type is its second word.
        let Some((first, second)) = string_header(data) else {
            event.key_kind = KeyKind::Unreadable as u8;
            return;
        };
        let methods = read_user::<u64>(typ + layout.interface_methods_offset as u64).unwrap_or(0);
        let dynamic = if methods == 0 || first == 0 {
            first
        } else {
            read_user::<u64>(first + 8).unwrap_or(0)
        };
        decode_interface(event, layout, dynamic, second, limit);
    } else if integer(layout, kind) || pointer_shaped(layout, kind) {
        read_int(event, data, if size > 8 { 8 } else { size });
    } else {
        copy_bytes(event, data, size, limit);
    }
}

/// The event's key hashed as [`probe_common::key_hash`] does it: kind,
/// length, integer, type, then the bytes copied.
#[inline(always)]
fn hash_key(event: &MapEvent) -> u64 {
    let mut hash = KEY_HASH_BASIS;
    hash = key_hash_word(hash, ((event.key_kind as u64) << 32) | event.go_kind as u64);
    hash = key_hash_word(hash, event.key_len as u64);
    hash = key_hash_word(hash, event.key_int);
    hash = key_hash_word(hash, event.key_type);
    let n = event.copied as usize;
    for i in 0..MAX_KEY_BYTES {
        if i >= n {
            break;
        }
        if let Some(&byte) = event.key.get(i) {
            hash = key_hash_byte(hash, byte);
        }
    }
    if hash == 0 {
        1
    } else {
        hash
    }
}

/// Adds one operation to this CPU's count of `key`. `Some(true)` when a
/// new entry was made, `Some(false)` when an existing one was counted,
/// `None` when the table is full.
#[inline(always)]
fn count_key(key: &KeyCountsKey, op: usize) -> Option<bool> {
    if let Some(counts) = KEY_COUNTS.get_ptr_mut(key) {
        // SAFETY: this CPU's value.
        if let Some(slot) = unsafe { (*counts).ops.get_mut(op) } {
            *slot += 1;
        }
        return Some(false);
    }
    let mut fresh = KeyCounts { ops: [0; MAP_OPS] };
    if let Some(slot) = fresh.ops.get_mut(op) {
        *slot = 1;
    }
    if KEY_COUNTS.insert(key, fresh, BPF_NOEXIST as u64).is_ok() {
        return Some(true);
    }
    let counts = KEY_COUNTS.get_ptr_mut(key)?;
    if let Some(slot) = unsafe { (*counts).ops.get_mut(op) } {
        *slot += 1;
    }
    // Another CPU's insert made the entry: this CPU has not named the key.
    Some(true)
}

/// A map operation (runtime map or `sync.Map`): counted per (map, key,
/// caller) with the key decoded, for maps whose keys are recorded; else
/// per map.
#[uprobe]
pub fn map_op(ctx: ProbeContext) -> u32 {
    let Some(control) = control() else {
        return 0;
    };
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let Some(site) = MAP_SITES.get(cookie) else {
        bump(Counter::UnknownSite);
        return 0;
    };
    let (flags, rsp) = flags_and_rsp(&ctx);
    if skipped(site.skip_when, flags) {
        bump(Counter::SkippedReentry);
        return 0;
    }
    let map_addr = register(&ctx, site.map_register);
    // Runtime maps' type (`*abi.MapType`): kept with the kernel's counts
    // too, so that the busiest counted maps can be read.
    let map_type = if site.type_register != NO_REGISTER {
        register(&ctx, site.type_register)
    } else {
        0
    };
    let counted_type = if site.sync_map != 0 { 0 } else { map_type };
    let op = site.op as usize;
    if op >= MAP_OPS {
        bump(Counter::UnknownSite);
        return 0;
    }
    let per_map = if site.sync_map != 0 {
        map_addr | SYNC_MAP_COUNT_FLAG
    } else {
        map_addr
    };
    if site.filter == MapFilter::Listed as u32 && unsafe { MAP_FILTER.get(map_addr) }.is_none() {
        count_map_op(per_map, op, counted_type);
        return 0;
    }
    if control.key_sample_shift != 0 {
        if let Some(ticks) = MAP_TICKS.get_ptr_mut(0) {
            // SAFETY: this CPU's slot.
            let tick = unsafe {
                *ticks += 1;
                *ticks
            };
            let mask = (1u64 << (control.key_sample_shift & 31)) - 1;
            if tick & mask != 0 {
                bump(Counter::KeysUnsampled);
                count_map_op(per_map, op, counted_type);
                return 0;
            }
        }
    }
    let Some(layout) = GO_LAYOUT.get(0) else {
        return 0;
    };
    let Some(event) = MAP_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot; uprobe programs do not nest on a CPU.
    let event = unsafe { &mut *event };
    event.map_addr = map_addr;
    event.key_type = 0;
    event.key_int = 0;
    event.caller_ip = if site.capture_caller != 0 {
        // The probe fires before the prologue moves RSP: the return address
        // is on top of the stack.
        read_user::<u64>(rsp).unwrap_or(0)
    } else {
        0
    };
    event.site_index = site.site_index;
    event.op = site.op as u8;
    event.key_kind = KeyKind::None as u8;
    event.key_len = 0;
    event.copied = 0;
    event.go_kind = 0;
    event.counted = 0;
    event._pad = 0;
    let key_a = register(&ctx, site.key_a);
    let key_b = register(&ctx, site.key_b);
    event.map_type = counted_type;
    let limit = site.key_bytes;
    let key_type_at = map_type + layout.maptype_key_offset as u64;
    match site.key_shape {
        x if x == KeyShape::Str as u32 => copy_string(event, layout, key_a, key_b, limit),
        x if x == KeyShape::Int as u32 => {
            let key_type = if map_type != 0 {
                read_user::<u64>(key_type_at).unwrap_or(0)
            } else {
                0
            };
            event.key_type = key_type;
            event.go_kind = if key_type != 0 {
                type_kind_size(layout, key_type).0 as u8
            } else {
                0
            };
            event.key_len = site.key_width;
            event.key_int = if site.key_width == 4 {
                key_a & 0xffff_ffff
            } else {
                key_a
            };
            event.key_kind = KeyKind::Int as u8;
        }
        x if x == KeyShape::Iface as u32 => decode_interface(event, layout, key_a, key_b, limit),
        x if x == KeyShape::Pointer as u32 => match read_user::<u64>(key_type_at) {
            Some(key_type) if map_type != 0 => decode_stored(event, layout, key_type, key_a, limit),
            _ => event.key_kind = KeyKind::Unreadable as u8,
        },
        _ => {}
    }
    event.key_hash = if event.key_kind == KeyKind::None as u8 {
        0
    } else {
        hash_key(event)
    };
    let key = KeyCountsKey {
        map_addr,
        key_hash: event.key_hash,
        caller_ip: event.caller_ip,
    };
    match count_key(&key, op) {
        Some(false) => bump(Counter::MapOpsCounted),
        Some(true) => {
            // The first count of the key on this CPU: say which key it is.
            bump(Counter::MapOpsCounted);
            event.counted = 1;
            announce(&ctx, event);
        }
        None => {
            bump(Counter::KeyCountsFull);
            announce(&ctx, event);
        }
    }
    0
}

/// Writes a map event, stamped now (the clock is read only for events).
#[inline(always)]
fn announce(ctx: &ProbeContext, event: &mut MapEvent) {
    let pid_tgid = bpf_get_current_pid_tgid();
    event.header = header(EventTag::Map, pid_tgid, unsafe { bpf_ktime_get_ns() });
    output(ctx, event, Counter::MapHits);
}

/// Counts one operation on a map whose key is not recorded (a runtime map
/// of type `map_type`, or 0).
#[inline(always)]
fn count_map_op(map_addr: u64, op: usize, map_type: u64) {
    if let Some(counts) = MAP_COUNTS.get_ptr_mut(map_addr) {
        // SAFETY: this CPU's slot.
        unsafe {
            if let Some(slot) = (*counts).ops.get_mut(op) {
                *slot += 1;
            }
            if map_type != 0 {
                (*counts).map_type = map_type;
            }
        }
        return;
    }
    let mut fresh = MapCounts {
        ops: [0; MAP_OPS],
        map_type,
    };
    if let Some(slot) = fresh.ops.get_mut(op) {
        *slot = 1;
    }
    if MAP_COUNTS
        .insert(map_addr, fresh, BPF_NOEXIST as u64)
        .is_ok()
    {
        return;
    }
    match MAP_COUNTS.get_ptr_mut(map_addr) {
        Some(counts) => {
            if let Some(slot) = unsafe { (*counts).ops.get_mut(op) } {
                *slot += 1;
            }
        }
        None => bump(Counter::MapCountsFull),
    }
}

/// Offsets in the `syscalls/sys_enter_futex` record (see its format file).
const FUTEX_UADDR_OFFSET: usize = 16;
const FUTEX_OP_OFFSET: usize = 24;
/// Futex commands that block until the word changes or the lock is taken:
/// FUTEX_WAIT, FUTEX_LOCK_PI, FUTEX_WAIT_BITSET, FUTEX_LOCK_PI2.
const FUTEX_WAIT: u32 = 0;
const FUTEX_LOCK_PI: u32 = 6;
const FUTEX_WAIT_BITSET: u32 = 9;
const FUTEX_LOCK_PI2: u32 = 13;
/// Strips FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME from an op.
const FUTEX_CMD_MASK: u32 = 0x7f;

/// This thread's `pid_tgid`, if it belongs to the target.
#[inline(always)]
fn target_thread() -> Option<u64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    match TARGET.get(0) {
        Some(&target) if target == tgid && target != 0 => Some(pid_tgid),
        _ => None,
    }
}

/// Offset of `sp` in the kernel's x86-64 `struct pt_regs` (a stable ABI).
const PT_REGS_SP: u64 = 152;

/// The native waiter's call site: the first return address into the
/// executable's text, outside the skipped functions, among the top words of
/// the user stack (read through the task's saved user registers: glibc has
/// no frame pointers to walk). 0 when none is found. With it, whether the
/// innermost return into the skipped functions is into one that waits for
/// a signal.
#[inline(always)]
fn native_caller() -> (u64, bool) {
    let Some(code) = NATIVE_CODE.get(0) else {
        return (0, false);
    };
    if code.text_start == 0 {
        return (0, false);
    }
    let regs = unsafe {
        aya_ebpf::helpers::generated::bpf_task_pt_regs(
            aya_ebpf::helpers::generated::bpf_get_current_task_btf(),
        )
    } as u64;
    if regs == 0 {
        return (0, false);
    }
    let Ok(sp) =
        (unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((regs + PT_REGS_SP) as *const u64) })
    else {
        return (0, false);
    };
    let Some(words) = NATIVE_STACK.get_ptr_mut(0) else {
        return (0, false);
    };
    // SAFETY: this CPU's scratch slot.
    let words = unsafe { &mut *words };
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            words.as_mut_ptr() as *mut _,
            (NATIVE_STACK_WORDS * 8) as u32,
            sp as *const _,
        )
    };
    if rc != 0 {
        return (0, false);
    }
    // Whether the wait is for a signal is told by the innermost return
    // into the lock machinery: Rust's condition variable takes its mutex
    // again inside its wait, and that wait is the mutex's.
    let mut signal = false;
    let mut decided = false;
    for word in words.iter() {
        let w = *word;
        if w < code.text_start || w >= code.text_end {
            continue;
        }
        let mut in_skip = false;
        for range in code.skip.iter().take(NATIVE_SKIP_RANGES) {
            if w >= range[0] && w < range[1] {
                in_skip = true;
            }
        }
        let mut in_signal = false;
        for range in code.signal.iter().take(NATIVE_SIGNAL_RANGES) {
            if w >= range[0] && w < range[1] {
                in_signal = true;
            }
        }
        if !follows_a_call(w) {
            continue;
        }
        if !in_skip && !in_signal {
            return (w, signal);
        }
        if !decided {
            signal = in_signal;
            decided = true;
        }
    }
    (0, signal)
}

/// Whether the code before user address `w` ends with a call instruction,
/// so that `w` is a return address and not some other pointer into the
/// text left on the stack (a thread's start routine, a callback): `call
/// rel32` (`e8`, 5 bytes) or `call r/m64` (`ff /2`
/// with its ModRM, SIB and displacement: 2, 3, 4, 6 or 7 bytes).
#[inline(always)]
fn follows_a_call(w: u64) -> bool {
    let Ok(before) = (unsafe { bpf_probe_read_user((w - 8) as *const [u8; 8]) }) else {
        return false;
    };
    // `ff` with ModRM reg field 2, `len` bytes before `w`.
    let indirect = |len: usize| before[8 - len] == 0xff && (before[9 - len] >> 3) & 7 == 2;
    before[3] == 0xe8 || indirect(2) || indirect(3) || indirect(4) || indirect(6) || indirect(7)
}

/// The in-flight key of a native thread's futex wait.
#[inline(always)]
fn thread_key(pid_tgid: u64) -> InflightKey {
    InflightKey {
        tgid: (pid_tgid >> 32) as u32,
        space: INFLIGHT_SPACE_LOCKS,
        goroutine: THREAD_KEY | (pid_tgid as u32) as u64,
    }
}

/// A thread of the target calls `pthread_cond_*`, `pthread_rwlock_*lock`
/// or `pthread_*join*` (a uprobe in libc whose cookie is the
/// [`LockRole`] of its waits): the object it works on is noted for the
/// thread, so that the futex waits it makes inside are told apart from a
/// mutex's.
#[uprobe]
pub fn native_lock_call(ctx: ProbeContext) -> u32 {
    let Some(pid_tgid) = target_thread() else {
        return 0;
    };
    let role = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let size = match LockRole::from_raw(role) {
        Some(LockRole::CondWait) => PTHREAD_COND_SIZE,
        Some(LockRole::RwlockReader | LockRole::RwlockWriter) => PTHREAD_RWLOCK_SIZE,
        Some(LockRole::ThreadJoin) => PTHREAD_JOIN_SPAN,
        _ => return 0,
    };
    let call = NativeCall {
        object: register(&ctx, R::Rdi as u32),
        size,
        role,
    };
    if NATIVE_CALLS.insert(pid_tgid as u32, call, 0).is_err() {
        bump(Counter::InflightErrors);
    }
    0
}

/// The lock a futex wait of thread `pid_tgid` on `uaddr` is charged to, and
/// its role: the condition variable or rwlock of the thread's latest call
/// when the word lies inside it, else the futex word itself.
#[inline(always)]
fn futex_owner(pid_tgid: u64, uaddr: u64) -> (u64, u32) {
    let tid = pid_tgid as u32;
    match unsafe { NATIVE_CALLS.get(tid) } {
        Some(call) if uaddr.wrapping_sub(call.object) < u64::from(call.size) => {
            (call.object, call.role)
        }
        _ => (uaddr, LockRole::Futex as u32),
    }
}

/// A thread of the target enters a futex wait: one contention on the
/// futex word's address (or on the condition variable or rwlock holding
/// it); the wait is measured until the syscall returns.
#[tracepoint]
pub fn futex_enter(ctx: TracePointContext) -> u32 {
    let Some(pid_tgid) = target_thread() else {
        return 0;
    };
    bump(Counter::FutexTargetRuns);
    if control().is_none() {
        return 0;
    }
    let Ok(op) = (unsafe { ctx.read_at::<u64>(FUTEX_OP_OFFSET) }) else {
        return 0;
    };
    let cmd = op as u32 & FUTEX_CMD_MASK;
    if cmd != FUTEX_WAIT
        && cmd != FUTEX_WAIT_BITSET
        && cmd != FUTEX_LOCK_PI
        && cmd != FUTEX_LOCK_PI2
    {
        return 0;
    }
    let Ok(uaddr) = (unsafe { ctx.read_at::<u64>(FUTEX_UADDR_OFFSET) }) else {
        return 0;
    };
    let (lock_addr, role) = futex_owner(pid_tgid, uaddr);
    let (caller_ip, signal) = native_caller();
    let role = if signal && role == LockRole::Futex as u32 {
        LockRole::CondWait as u32
    } else {
        role
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let value = Inflight {
        start_ns: now,
        lock_addr,
        role,
        _pad: 0,
        caller_ip,
        stack_id: -1,
    };
    if INFLIGHT.insert(thread_key(pid_tgid), value, 0).is_err() {
        bump(Counter::InflightErrors);
    }
    let stats_key = LockStatsKey {
        lock_addr,
        caller_ip,
        stack_id: -1,
        role,
        _pad: 0,
    };
    record_lock(&ctx, &stats_key, None, || LockEvent {
        header: header(EventTag::Lock, pid_tgid, now),
        lock_addr,
        goroutine: 0,
        wait_ns: 0,
        caller_ip,
        stack_id: -1,
        kind: SiteKind::LockSlowEntry as u32,
        site_index: FUTEX_SITE,
        role,
        _pad: 0,
    });
    0
}

/// A thread of the target returns from a futex syscall: if it was a wait,
/// the acquisition (or wake-up) with its wait.
#[tracepoint]
pub fn futex_exit(ctx: TracePointContext) -> u32 {
    let Some(pid_tgid) = target_thread() else {
        return 0;
    };
    bump(Counter::FutexTargetRuns);
    let key = thread_key(pid_tgid);
    // Wakes and other commands have no entry: not a wait.
    let Some(inflight) = (unsafe { INFLIGHT.get(key) }).copied() else {
        return 0;
    };
    let _ = INFLIGHT.remove(key);
    let now = unsafe { bpf_ktime_get_ns() };
    let wait_ns = now.saturating_sub(inflight.start_ns);
    let thread = ThreadWaitKey {
        lock_addr: inflight.lock_addr,
        tid: pid_tgid as u32,
        role: inflight.role,
    };
    match THREAD_WAITS.get_ptr_mut(thread) {
        // SAFETY: this thread's own entry: no other CPU writes it now.
        Some(stats) => unsafe {
            (*stats).waits += 1;
            (*stats).wait_ns += wait_ns;
        },
        None => {
            let first = ThreadWaitStats {
                waits: 1,
                wait_ns,
                comm: aya_ebpf::helpers::bpf_get_current_comm().unwrap_or_default(),
            };
            if THREAD_WAITS.insert(thread, first, 0).is_err() {
                bump(Counter::ThreadWaitsFull);
            }
        }
    }
    let stats_key = LockStatsKey {
        lock_addr: inflight.lock_addr,
        caller_ip: inflight.caller_ip,
        stack_id: -1,
        role: inflight.role,
        _pad: 0,
    };
    record_lock(&ctx, &stats_key, Some(wait_ns), || LockEvent {
        header: header(EventTag::Lock, pid_tgid, now),
        lock_addr: inflight.lock_addr,
        goroutine: 0,
        wait_ns,
        caller_ip: inflight.caller_ip,
        stack_id: -1,
        kind: SiteKind::LockSlowReturn as u32,
        site_index: FUTEX_SITE,
        role: inflight.role,
        _pad: 0,
    });
    0
}

/// The target's threads, by thread id: since when each has waited for a
/// CPU (0: running or asleep). Seeded by the daemon from `/proc/PID/task`,
/// kept up by `sched_wakeup_new` and `sched_process_exit`.
#[map]
static RUNQ_THREADS: HashMap<u32, RunnableSince> = HashMap::with_max_entries(RUNQ_THREADS_MAX, 0);

/// Per-CPU totals of the target's threads' waits for a CPU (index 0).
#[map]
static RUNQ_STATS: PerCpuArray<RunQueueStats> = PerCpuArray::with_max_entries(1, 0);

/// Whether the scheduler probes run ([`Control::sched`]).
#[inline(always)]
fn sched_on() -> bool {
    matches!(CONTROL.get(0), Some(control) if control.sched != 0)
}

/// Counts one wait for a CPU of `wait_ns` on this CPU.
#[inline(never)]
fn record_run_queue_wait(wait_ns: u64) {
    let Some(stats) = RUNQ_STATS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; the scheduler's tracepoints run with
    // preemption off.
    let stats = unsafe { &mut *stats };
    stats.waits += 1;
    stats.wait_ns += wait_ns;
    if wait_ns > stats.wait_max_ns {
        stats.wait_max_ns = wait_ns;
    }
    if let Some(bucket) = stats.hist.get_mut(wait_bucket(wait_ns)) {
        *bucket += 1;
    }
}

/// `sched:sched_switch`, host-wide: a thread of the target switched out
/// while still runnable (preempted, or it yielded) starts waiting for a CPU;
/// one switched out to sleep stops being tracked as runnable; a tracked
/// thread switched in ends its wait.
#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    if !sched_on() {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    // The task switching out is still the current one.
    let mut ours = false;
    if let Some(pid_tgid) = target_thread() {
        ours = true;
        let prev = pid_tgid as u32;
        let state = unsafe { ctx.read_at::<i64>(SCHED_SWITCH_PREV_STATE) }.unwrap_or(1);
        let since: RunnableSince = if state & SCHED_SLEEP_STATES == 0 {
            now
        } else {
            0
        };
        match RUNQ_THREADS.get_ptr_mut(prev) {
            // SAFETY: a value of the map; only this thread's own
            // switches and wake-ups write it, one at a time.
            Some(slot) => unsafe { *slot = since },
            None => {
                if RUNQ_THREADS.insert(prev, since, 0).is_err() {
                    bump(Counter::RunQueueThreadsFull);
                }
            }
        }
    }
    let next = unsafe { ctx.read_at::<i32>(SCHED_SWITCH_NEXT_PID) }.unwrap_or(0);
    // 0: the idle task.
    if next > 0 {
        if let Some(slot) = RUNQ_THREADS.get_ptr_mut(next as u32) {
            ours = true;
            // SAFETY: as above.
            let since = unsafe { *slot };
            if since != 0 {
                unsafe { *slot = 0 };
                record_run_queue_wait(now.saturating_sub(since));
            }
        }
    }
    if ours {
        bump(Counter::SchedTargetRuns);
    }
    0
}

/// `sched:sched_wakeup`, host-wide: a tracked thread woken starts waiting
/// for a CPU (unless it was waiting already: its wait began earlier).
#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    if !sched_on() {
        return 0;
    }
    let Ok(pid) = (unsafe { ctx.read_at::<i32>(SCHED_WAKEUP_PID) }) else {
        return 0;
    };
    if let Some(slot) = RUNQ_THREADS.get_ptr_mut(pid as u32) {
        bump(Counter::SchedTargetRuns);
        // SAFETY: a value of the map.
        unsafe {
            if *slot == 0 {
                *slot = bpf_ktime_get_ns();
            }
        }
    }
    0
}

/// `sched:sched_wakeup_new`: a thread the target just made is tracked from
/// its first wake-up on.
#[tracepoint]
pub fn sched_wakeup_new(ctx: TracePointContext) -> u32 {
    // The parent wakes its new thread.
    if target_thread().is_none() {
        return 0;
    }
    bump(Counter::SchedTargetRuns);
    let Ok(pid) = (unsafe { ctx.read_at::<i32>(SCHED_WAKEUP_PID) }) else {
        return 0;
    };
    let since: RunnableSince = if sched_on() {
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    if RUNQ_THREADS.insert(pid as u32, since, 0).is_err() {
        bump(Counter::RunQueueThreadsFull);
    }
    0
}

/// `sched:sched_process_exit`: a thread of the target that exits is no
/// longer tracked.
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    if let Some(pid_tgid) = target_thread() {
        bump(Counter::SchedTargetRuns);
        let _ = RUNQ_THREADS.remove(pid_tgid as u32);
    }
    0
}

/// Every exec on the host, for the daemon's exec watcher: one header each
/// (tag [`EventTag::Exec`], the process in `tgid`).
#[map]
static EXECS: PerfEventArray<EventHeader> = PerfEventArray::new(0);

/// `sched:sched_process_exec`: a process has just replaced its program
/// (the new one is mapped, its name set): the daemon checks it against its
/// selectors at once rather than at its next scan of `/proc`.
#[tracepoint]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let now = unsafe { bpf_ktime_get_ns() };
    EXECS.output(&ctx, header(EventTag::Exec, pid_tgid, now), 0);
    0
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
