//! mapwatch's kernel-side programs.
//!
//! One uprobe program, [`lock_slow`], is attached at every site the daemon's
//! probe planner chose. Each attachment carries a BPF cookie: the index of its
//! [`SiteConfig`] in the `SITES` array, which says which register holds the
//! lock's address and whether the hit must be skipped (see
//! [`probe_common::SkipWhen`]). Events go to the per-CPU perf ring buffers
//! of `EVENTS`; per-CPU counters in `COUNTERS` record what did not become an
//! event, so nothing is lost silently.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_F_CURRENT_CPU,
    bindings::BPF_F_USER_STACK,
    helpers::bpf_probe_read_user,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_get_attach_cookie, bpf_perf_event_output},
    },
    macros::{map, tracepoint, uprobe},
    maps::{Array, LruHashMap, PerCpuArray, PerfEventArray, StackTrace},
    programs::{tracing::StackIdContext as _, ProbeContext, TracePointContext},
    EbpfContext,
};
use probe_common::{
    ArgRegister, CasCounts, Counter, GeneralRegister as R, Inflight, InflightKey, LockEvent,
    LockRole, OutcomeSource, SiteConfig, SiteKind, SkipWhen, COUNTER_SLOTS, FUTEX_SITE,
    MAX_INFLIGHT, MAX_SITES, MAX_STACKS, THREAD_KEY,
};

/// Per-site configuration, indexed by the attachment's cookie.
#[map]
static SITES: Array<SiteConfig> = Array::with_max_entries(MAX_SITES, 0);

/// One perf ring buffer per CPU; the daemon reads each from its own task.
#[map]
static EVENTS: PerfEventArray<LockEvent> = PerfEventArray::new(0);

/// Per-CPU counters, indexed by [`Counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Waiters in a lock's slow path, by goroutine, for the wait time at return.
#[map]
static INFLIGHT: LruHashMap<InflightKey, Inflight> = LruHashMap::with_max_entries(MAX_INFLIGHT, 0);

/// User stacks of waiters, by id.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// The traced process (index 0), for the system-wide futex tracepoints.
#[map]
static TARGET: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU attempts and failures of each CAS site, indexed by site.
#[map]
static CAS_COUNTS: PerCpuArray<CasCounts> = PerCpuArray::with_max_entries(MAX_SITES, 0);

/// x86 EFLAGS carry flag.
const FLAG_CF: u64 = 1 << 0;
/// x86 EFLAGS zero flag.
const FLAG_ZF: u64 = 1 << 6;

#[inline(always)]
fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other CPU writes it, and uprobe programs are not
        // preempted by themselves on one CPU.
        unsafe { *slot += 1 };
    }
}

/// Entry into a lock's contended slow path.
#[uprobe]
pub fn lock_slow(ctx: ProbeContext) -> u32 {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let Some(site) = SITES.get(cookie as u32) else {
        bump(Counter::UnknownSite);
        return 0;
    };
    // The verifier only allows context reads at constant offsets: read every
    // register this program may need, unconditionally, before selecting.
    let regs = ctx.regs;
    let (flags, rax, rdi, r14, rsp) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*regs).eflags),
            core::ptr::read_volatile(&raw const (*regs).rax),
            core::ptr::read_volatile(&raw const (*regs).rdi),
            core::ptr::read_volatile(&raw const (*regs).r14),
            core::ptr::read_volatile(&raw const (*regs).rsp),
        )
    };
    let skip = match site.skip_when {
        x if x == SkipWhen::BelowOrEqual as u32 => flags & (FLAG_CF | FLAG_ZF) != 0,
        x if x == SkipWhen::Below as u32 => flags & FLAG_CF != 0,
        _ => false,
    };
    if skip {
        bump(Counter::SkippedReentry);
        return 0;
    }
    let lock_addr = if site.arg_register == ArgRegister::Rdi as u32 {
        rdi
    } else {
        rax
    }
    .wrapping_sub(site.addr_adjust as u64);
    let goroutine = if site.arg_register == ArgRegister::Rax as u32 {
        r14
    } else {
        0
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Where the waiter is: the return address on top of the stack (the
    // probe fires before the prologue pushes a frame), and the frame-pointer
    // walk of the frames above it.
    let (caller_ip, stack_id) = if site.capture_stack != 0 {
        (
            unsafe { bpf_probe_read_user(rsp as *const u64) }.unwrap_or(0),
            ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64)
                .unwrap_or(-1),
        )
    } else {
        (0, -1)
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if goroutine != 0 {
        let key = InflightKey {
            tgid,
            _pad: 0,
            goroutine,
        };
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
    }
    let event = LockEvent {
        timestamp_ns: now,
        lock_addr,
        goroutine,
        wait_ns: 0,
        caller_ip,
        stack_id,
        tgid,
        tid: pid_tgid as u32,
        cpu: unsafe { bpf_get_smp_processor_id() },
        kind: site.kind,
        site_index: site.site_index,
        role: site.role,
    };
    emit(&ctx, &event);
    0
}

/// Writes an event to this CPU's ring, counting the outcome.
#[inline(always)]
fn emit<C: EbpfContext>(ctx: &C, event: &LockEvent) {
    let rc = unsafe {
        bpf_perf_event_output(
            ctx.as_ptr(),
            &EVENTS as *const _ as *mut _,
            BPF_F_CURRENT_CPU,
            event as *const LockEvent as *mut _,
            core::mem::size_of::<LockEvent>() as u64,
        )
    };
    if rc == 0 {
        bump(Counter::Hits);
    } else {
        bump(Counter::OutputErrors);
    }
}

/// A `RET` of a lock's slow path (Go): the goroutine in R14 now holds the
/// lock; emits the acquisition with its wait since the matching entry.
#[uprobe]
pub fn lock_slow_ret(ctx: ProbeContext) -> u32 {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let Some(site) = SITES.get(cookie as u32) else {
        bump(Counter::UnknownSite);
        return 0;
    };
    let goroutine = unsafe { core::ptr::read_volatile(&raw const (*ctx.regs).r14) };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let key = InflightKey {
        tgid,
        _pad: 0,
        goroutine,
    };
    let Some(inflight) = (unsafe { INFLIGHT.get(key) }).copied() else {
        bump(Counter::UnmatchedReturns);
        return 0;
    };
    let _ = INFLIGHT.remove(key);
    let now = unsafe { bpf_ktime_get_ns() };
    let event = LockEvent {
        timestamp_ns: now,
        lock_addr: inflight.lock_addr,
        goroutine,
        wait_ns: now.saturating_sub(inflight.start_ns),
        caller_ip: inflight.caller_ip,
        stack_id: inflight.stack_id,
        tgid,
        tid: pid_tgid as u32,
        cpu: unsafe { bpf_get_smp_processor_id() },
        kind: SiteKind::LockSlowReturn as u32,
        site_index: site.site_index,
        role: inflight.role,
    };
    emit(&ctx, &event);
    0
}

/// Just after a compare-and-swap: counts the attempt, and the failure when
/// the outcome says so. No event: counts in a per-CPU array cannot be lost.
#[uprobe]
pub fn cas_outcome(ctx: ProbeContext) -> u32 {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let Some(site) = SITES.get(cookie) else {
        bump(Counter::UnknownSite);
        return 0;
    };
    let regs = ctx.regs;
    // Constant-offset context reads only (see `lock_slow`): read them all,
    // then select the value.
    let (flags, rax, rbx, rcx, rdx, rsi, rdi, rbp) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*regs).eflags),
            core::ptr::read_volatile(&raw const (*regs).rax),
            core::ptr::read_volatile(&raw const (*regs).rbx),
            core::ptr::read_volatile(&raw const (*regs).rcx),
            core::ptr::read_volatile(&raw const (*regs).rdx),
            core::ptr::read_volatile(&raw const (*regs).rsi),
            core::ptr::read_volatile(&raw const (*regs).rdi),
            core::ptr::read_volatile(&raw const (*regs).rbp),
        )
    };
    let (r8, r9, r10, r11, r12, r13, r14, r15) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*regs).r8),
            core::ptr::read_volatile(&raw const (*regs).r9),
            core::ptr::read_volatile(&raw const (*regs).r10),
            core::ptr::read_volatile(&raw const (*regs).r11),
            core::ptr::read_volatile(&raw const (*regs).r12),
            core::ptr::read_volatile(&raw const (*regs).r13),
            core::ptr::read_volatile(&raw const (*regs).r14),
            core::ptr::read_volatile(&raw const (*regs).r15),
        )
    };
    let register = match site.outcome_register {
        x if x == R::Rax as u32 => rax,
        x if x == R::Rbx as u32 => rbx,
        x if x == R::Rcx as u32 => rcx,
        x if x == R::Rdx as u32 => rdx,
        x if x == R::Rsi as u32 => rsi,
        x if x == R::Rdi as u32 => rdi,
        x if x == R::Rbp as u32 => rbp,
        x if x == R::R8 as u32 => r8,
        x if x == R::R9 as u32 => r9,
        x if x == R::R10 as u32 => r10,
        x if x == R::R11 as u32 => r11,
        x if x == R::R12 as u32 => r12,
        x if x == R::R13 as u32 => r13,
        x if x == R::R14 as u32 => r14,
        _ => r15,
    };
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

/// The target's tgid and this thread's id, if this thread is the target's.
#[inline(always)]
fn target_thread() -> Option<(u32, u32)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    match TARGET.get(0) {
        Some(&target) if target == tgid && target != 0 => Some((tgid, pid_tgid as u32)),
        _ => None,
    }
}

/// A thread of the target enters a futex wait: one contention on the
/// futex word's address; the wait is measured until the syscall returns.
#[tracepoint]
pub fn futex_enter(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = target_thread() else {
        return 0;
    };
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
    let now = unsafe { bpf_ktime_get_ns() };
    let key = InflightKey {
        tgid,
        _pad: 0,
        goroutine: THREAD_KEY | tid as u64,
    };
    let value = Inflight {
        start_ns: now,
        lock_addr: uaddr,
        role: LockRole::Futex as u32,
        _pad: 0,
        caller_ip: 0,
        stack_id: -1,
    };
    if INFLIGHT.insert(key, value, 0).is_err() {
        bump(Counter::InflightErrors);
    }
    let event = LockEvent {
        timestamp_ns: now,
        lock_addr: uaddr,
        goroutine: 0,
        wait_ns: 0,
        caller_ip: 0,
        stack_id: -1,
        tgid,
        tid,
        cpu: unsafe { bpf_get_smp_processor_id() },
        kind: SiteKind::LockSlowEntry as u32,
        site_index: FUTEX_SITE,
        role: LockRole::Futex as u32,
    };
    emit(&ctx, &event);
    0
}

/// A thread of the target returns from a futex syscall: if it was a wait,
/// the acquisition (or wake-up) with its wait.
#[tracepoint]
pub fn futex_exit(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = target_thread() else {
        return 0;
    };
    let key = InflightKey {
        tgid,
        _pad: 0,
        goroutine: THREAD_KEY | tid as u64,
    };
    // Wakes and other commands have no entry: not a wait.
    let Some(inflight) = (unsafe { INFLIGHT.get(key) }).copied() else {
        return 0;
    };
    let _ = INFLIGHT.remove(key);
    let now = unsafe { bpf_ktime_get_ns() };
    let event = LockEvent {
        timestamp_ns: now,
        lock_addr: inflight.lock_addr,
        goroutine: 0,
        wait_ns: now.saturating_sub(inflight.start_ns),
        caller_ip: 0,
        stack_id: -1,
        tgid,
        tid,
        cpu: unsafe { bpf_get_smp_processor_id() },
        kind: SiteKind::LockSlowReturn as u32,
        site_index: FUTEX_SITE,
        role: inflight.role,
    };
    emit(&ctx, &event);
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
