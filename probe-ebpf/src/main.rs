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
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, PerfEventArray, StackTrace},
    programs::{tracing::StackIdContext as _, ProbeContext, TracePointContext},
    EbpfContext,
};
use probe_common::{
    go_kind, ArgRegister, CasCounts, Counter, GeneralRegister as R, Inflight, InflightKey, KeyKind,
    KeyShape, LockEvent, LockRole, MapCounts, MapEvent, MapFilter, MapSiteConfig, NativeCode,
    OutcomeSource, SiteConfig, SiteKind, SkipWhen, COUNTER_SLOTS, FUTEX_SITE, GO_KIND_MASK,
    GO_MAPTYPE_KEY_OFFSET, GO_TYPE_KIND_OFFSET, GO_TYPE_SIZE_OFFSET, MAP_OPS, MAX_COUNTED_MAPS,
    MAX_FILTERED_MAPS, MAX_INFLIGHT, MAX_KEY_BYTES, MAX_SITES, MAX_STACKS, NATIVE_SKIP_RANGES,
    NATIVE_STACK_WORDS, NO_REGISTER, SYNC_MAP_COUNT_FLAG, THREAD_KEY,
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

/// Goroutines that entered a lock's semaphore wait and may be parked on
/// it: when and on which lock (read at `runtime.ready`, cleared at the slow
/// path's return).
#[map]
static SEMA_PENDING: LruHashMap<InflightKey, Inflight> =
    LruHashMap::with_max_entries(MAX_INFLIGHT, 0);

/// User stacks of waiters, by id.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// Where to look for a native waiter's call site (index 0).
#[map]
static NATIVE_CODE: Array<NativeCode> = Array::with_max_entries(1, 0);

/// Per-CPU copy of the top of a native waiter's user stack.
#[map]
static NATIVE_STACK: PerCpuArray<[u64; NATIVE_STACK_WORDS]> = PerCpuArray::with_max_entries(1, 0);

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
    let skip = skipped(site.skip_when, flags);
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
    let is_sema = site.kind == SiteKind::SemaEntry as u32;
    if goroutine != 0 && site.track_blocked != 0 {
        // A semaphore wait begins (the mutex's, or an RWMutex reader's or
        // writer's): the goroutine may park until `runtime.ready`.
        let key = InflightKey {
            tgid,
            _pad: 0,
            goroutine,
        };
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
    if is_sema {
        return 0;
    }
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

/// Writes a lock event to this CPU's ring, counting the outcome.
#[inline(always)]
fn emit<C: EbpfContext>(ctx: &C, event: &LockEvent) {
    output(ctx, event, Counter::Hits);
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
    // Whatever semaphore wait this goroutine began is over.
    let _ = SEMA_PENDING.remove(key);
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

/// Go's `runtime.ready(gp, …)`: if the goroutine in RAX was parked on a
/// lock's semaphore, emits how long it was blocked (park to runnable).
#[uprobe]
pub fn go_ready(ctx: ProbeContext) -> u32 {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let Some(site) = SITES.get(cookie as u32) else {
        bump(Counter::UnknownSite);
        return 0;
    };
    let regs = ctx.regs;
    let (flags, readied) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*regs).eflags),
            core::ptr::read_volatile(&raw const (*regs).rax),
        )
    };
    let skip = skipped(site.skip_when, flags);
    if skip {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let key = InflightKey {
        tgid,
        _pad: 0,
        goroutine: readied,
    };
    let Some(pending) = (unsafe { SEMA_PENDING.get(key) }).copied() else {
        return 0;
    };
    let _ = SEMA_PENDING.remove(key);
    let now = unsafe { bpf_ktime_get_ns() };
    let event = LockEvent {
        timestamp_ns: now,
        lock_addr: pending.lock_addr,
        goroutine: readied,
        wait_ns: now.saturating_sub(pending.start_ns),
        caller_ip: 0,
        stack_id: -1,
        tgid,
        tid: pid_tgid as u32,
        cpu: unsafe { bpf_get_smp_processor_id() },
        kind: SiteKind::Ready as u32,
        site_index: site.site_index,
        role: pending.role,
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
    let regs = Registers::read(&ctx);
    let register = regs.select(site.outcome_register);
    let flags = regs.flags;
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

/// The general registers and flags at a probe hit.
struct Registers {
    flags: u64,
    rsp: u64,
    gp: [u64; 15],
}

impl Registers {
    /// Reads every register. The verifier only allows context reads at
    /// constant offsets: read them all, unconditionally, then select.
    #[inline(always)]
    fn read(ctx: &ProbeContext) -> Self {
        let regs = ctx.regs;
        unsafe {
            Self {
                flags: core::ptr::read_volatile(&raw const (*regs).eflags),
                rsp: core::ptr::read_volatile(&raw const (*regs).rsp),
                gp: [
                    core::ptr::read_volatile(&raw const (*regs).rax),
                    core::ptr::read_volatile(&raw const (*regs).rbx),
                    core::ptr::read_volatile(&raw const (*regs).rcx),
                    core::ptr::read_volatile(&raw const (*regs).rdx),
                    core::ptr::read_volatile(&raw const (*regs).rsi),
                    core::ptr::read_volatile(&raw const (*regs).rdi),
                    core::ptr::read_volatile(&raw const (*regs).rbp),
                    core::ptr::read_volatile(&raw const (*regs).r8),
                    core::ptr::read_volatile(&raw const (*regs).r9),
                    core::ptr::read_volatile(&raw const (*regs).r10),
                    core::ptr::read_volatile(&raw const (*regs).r11),
                    core::ptr::read_volatile(&raw const (*regs).r12),
                    core::ptr::read_volatile(&raw const (*regs).r13),
                    core::ptr::read_volatile(&raw const (*regs).r14),
                    core::ptr::read_volatile(&raw const (*regs).r15),
                ],
            }
        }
    }

    /// The register numbered as [`R`]; R15 for anything out of range.
    #[inline(always)]
    fn select(&self, which: u32) -> u64 {
        match which {
            x if x == R::Rax as u32 => self.gp[0],
            x if x == R::Rbx as u32 => self.gp[1],
            x if x == R::Rcx as u32 => self.gp[2],
            x if x == R::Rdx as u32 => self.gp[3],
            x if x == R::Rsi as u32 => self.gp[4],
            x if x == R::Rdi as u32 => self.gp[5],
            x if x == R::Rbp as u32 => self.gp[6],
            x if x == R::R8 as u32 => self.gp[7],
            x if x == R::R9 as u32 => self.gp[8],
            x if x == R::R10 as u32 => self.gp[9],
            x if x == R::R11 as u32 => self.gp[10],
            x if x == R::R12 as u32 => self.gp[11],
            x if x == R::R13 as u32 => self.gp[12],
            x if x == R::R14 as u32 => self.gp[13],
            x if x == R::Rsp as u32 => self.rsp,
            _ => self.gp[14],
        }
    }
}

/// Per-site configuration of map operation sites, indexed by cookie.
#[map]
static MAP_SITES: Array<MapSiteConfig> = Array::with_max_entries(MAX_SITES, 0);

/// Maps selected with `--map` (value unused): with [`MapFilter::Listed`],
/// only their operations become events.
#[map]
static MAP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(MAX_FILTERED_MAPS, 0);

/// Operations per map and CPU of maps not selected: counted, no events.
#[map]
static MAP_COUNTS: PerCpuHashMap<u64, MapCounts> =
    PerCpuHashMap::with_max_entries(MAX_COUNTED_MAPS, 0);

/// Per-CPU scratch space for a [`MapEvent`] (too big for the BPF stack).
#[map]
static MAP_SCRATCH: PerCpuArray<MapEvent> = PerCpuArray::with_max_entries(1, 0);

/// Reads a user-space value, or `None` when the read faults.
#[inline(always)]
fn read_user<T>(address: u64) -> Option<T> {
    unsafe { bpf_probe_read_user(address as *const T) }.ok()
}

/// Copies the string at `data` of `len` bytes (at most `limit`) into the
/// event.
#[inline(always)]
fn copy_string(event: &mut MapEvent, data: u64, len: u64, limit: u32) {
    event.go_kind = go_kind::STRING as u32;
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
        event.copied = n as u32;
        event.key_kind = kind as u32;
    } else {
        event.key_kind = KeyKind::Unreadable as u32;
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
            event.key_kind = KeyKind::Int as u32;
        }
        None => event.key_kind = KeyKind::Unreadable as u32,
    }
}

/// Kind and size of the Go type at `typ`.
#[inline(always)]
fn type_kind_size(typ: u64) -> (u8, u64) {
    let kind = read_user::<u8>(typ + GO_TYPE_KIND_OFFSET).unwrap_or(0) & GO_KIND_MASK;
    let size = read_user::<u64>(typ + GO_TYPE_SIZE_OFFSET).unwrap_or(0);
    (kind, size)
}

/// Whether values of this kind are stored in an interface's data word
/// itself rather than pointed to.
#[inline(always)]
fn pointer_shaped(kind: u8) -> bool {
    kind == go_kind::POINTER
        || kind == go_kind::UNSAFE_POINTER
        || kind == 18
        || kind == 19
        || kind == 21
}

/// An interface's dynamic value: type `typ`, data word `data`.
#[inline(always)]
fn decode_interface(event: &mut MapEvent, typ: u64, data: u64, limit: u32) {
    event.key_type = typ;
    if typ == 0 {
        // A nil interface key.
        event.key_kind = KeyKind::Int as u32;
        return;
    }
    let (kind, size) = type_kind_size(typ);
    event.go_kind = kind as u32;
    if kind == go_kind::STRING {
        let (Some(ptr), Some(len)) = (read_user::<u64>(data), read_user::<u64>(data + 8)) else {
            event.key_kind = KeyKind::Unreadable as u32;
            return;
        };
        copy_string(event, ptr, len, limit);
    } else if (go_kind::INT..=go_kind::UINTPTR).contains(&kind) {
        read_int(event, data, size);
    } else if pointer_shaped(kind) {
        event.key_int = data;
        event.key_len = 8;
        event.key_kind = KeyKind::Int as u32;
    } else {
        copy_bytes(event, data, size, limit);
    }
}

/// A key of type `typ` stored at `data` (runtime maps' generic functions).
#[inline(always)]
fn decode_stored(event: &mut MapEvent, typ: u64, data: u64, limit: u32) {
    event.key_type = typ;
    let (kind, size) = type_kind_size(typ);
    event.go_kind = kind as u32;
    if kind == go_kind::STRING {
        let (Some(ptr), Some(len)) = (read_user::<u64>(data), read_user::<u64>(data + 8)) else {
            event.key_kind = KeyKind::Unreadable as u32;
            return;
        };
        copy_string(event, ptr, len, limit);
    } else if kind == go_kind::INTERFACE {
        // An empty interface holds the type first; one with methods holds
        // an itab, whose type is its second word.
        let (Some(first), Some(second)) = (read_user::<u64>(data), read_user::<u64>(data + 8))
        else {
            event.key_kind = KeyKind::Unreadable as u32;
            return;
        };
        let methods = read_user::<u64>(typ + 64).unwrap_or(0);
        let dynamic = if methods == 0 || first == 0 {
            first
        } else {
            read_user::<u64>(first + 8).unwrap_or(0)
        };
        decode_interface(event, dynamic, second, limit);
    } else if (go_kind::INT..=go_kind::UINTPTR).contains(&kind) || pointer_shaped(kind) {
        read_int(event, data, if size > 8 { 8 } else { size });
    } else {
        copy_bytes(event, data, size, limit);
    }
}

/// A map operation (runtime map or `sync.Map`): an event with the decoded
/// key for maps that are selected (or all, per the site), else a per-map
/// count.
#[uprobe]
pub fn map_op(ctx: ProbeContext) -> u32 {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let Some(site) = MAP_SITES.get(cookie) else {
        bump(Counter::UnknownSite);
        return 0;
    };
    let regs = Registers::read(&ctx);
    let skip = skipped(site.skip_when, regs.flags);
    if skip {
        bump(Counter::SkippedReentry);
        return 0;
    }
    let map_addr = regs.select(site.map_register);
    let op = site.op as usize;
    if op >= MAP_OPS {
        bump(Counter::UnknownSite);
        return 0;
    }
    if site.filter == MapFilter::Listed as u32 && unsafe { MAP_FILTER.get(map_addr) }.is_none() {
        let key = if site.sync_map != 0 {
            map_addr | SYNC_MAP_COUNT_FLAG
        } else {
            map_addr
        };
        count_map_op(key, op);
        return 0;
    }
    let Some(event) = MAP_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot; uprobe programs do not nest on a CPU.
    let event = unsafe { &mut *event };
    let pid_tgid = bpf_get_current_pid_tgid();
    event.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    event.map_addr = map_addr;
    event.key_type = 0;
    event.key_int = 0;
    event.caller_ip = if site.capture_caller != 0 {
        // The probe fires before the prologue moves RSP: the return address
        // is on top of the stack.
        read_user::<u64>(regs.rsp).unwrap_or(0)
    } else {
        0
    };
    event.tgid = (pid_tgid >> 32) as u32;
    event.tid = pid_tgid as u32;
    event.cpu = unsafe { bpf_get_smp_processor_id() };
    event.site_index = site.site_index;
    event.op = site.op;
    event.key_kind = KeyKind::None as u32;
    event.key_len = 0;
    event.copied = 0;
    event.go_kind = 0;
    event._pad = 0;
    let key_a = regs.select(site.key_a);
    let key_b = regs.select(site.key_b);
    let map_type = if site.type_register != NO_REGISTER {
        regs.select(site.type_register)
    } else {
        0
    };
    let limit = site.key_bytes;
    match site.key_shape {
        x if x == KeyShape::Str as u32 => copy_string(event, key_a, key_b, limit),
        x if x == KeyShape::Int as u32 => {
            let key_type = if map_type != 0 {
                read_user::<u64>(map_type + GO_MAPTYPE_KEY_OFFSET).unwrap_or(0)
            } else {
                0
            };
            event.key_type = key_type;
            event.go_kind = if key_type != 0 {
                type_kind_size(key_type).0 as u32
            } else {
                0
            };
            event.key_len = site.key_width;
            event.key_int = if site.key_width == 4 {
                key_a & 0xffff_ffff
            } else {
                key_a
            };
            event.key_kind = KeyKind::Int as u32;
        }
        x if x == KeyShape::Iface as u32 => decode_interface(event, key_a, key_b, limit),
        x if x == KeyShape::Pointer as u32 => {
            match read_user::<u64>(map_type + GO_MAPTYPE_KEY_OFFSET) {
                Some(key_type) if map_type != 0 => decode_stored(event, key_type, key_a, limit),
                _ => event.key_kind = KeyKind::Unreadable as u32,
            }
        }
        _ => {}
    }
    output(&ctx, event, Counter::MapHits);
    0
}

/// Counts one operation on a map that is not selected.
#[inline(always)]
fn count_map_op(map_addr: u64, op: usize) {
    if let Some(counts) = MAP_COUNTS.get_ptr_mut(map_addr) {
        // SAFETY: this CPU's slot.
        if let Some(slot) = unsafe { (*counts).ops.get_mut(op) } {
            *slot += 1;
        }
        return;
    }
    let mut fresh = MapCounts { ops: [0; MAP_OPS] };
    if let Some(slot) = fresh.ops.get_mut(op) {
        *slot = 1;
    }
    if MAP_COUNTS.insert(map_addr, fresh, 0).is_err() {
        bump(Counter::MapCountsFull);
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

/// Offset of `sp` in the kernel's x86-64 `struct pt_regs` (a stable ABI).
const PT_REGS_SP: u64 = 152;

/// The native waiter's call site: the first return address into the
/// executable's text, outside the skipped functions, among the top words of
/// the user stack (read through the task's saved user registers: glibc has
/// no frame pointers to walk). 0 when none is found.
#[inline(always)]
fn native_caller() -> u64 {
    let Some(code) = NATIVE_CODE.get(0) else {
        return 0;
    };
    if code.text_start == 0 {
        return 0;
    }
    let regs = unsafe {
        aya_ebpf::helpers::generated::bpf_task_pt_regs(
            aya_ebpf::helpers::generated::bpf_get_current_task_btf(),
        )
    } as u64;
    if regs == 0 {
        return 0;
    }
    let Ok(sp) =
        (unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((regs + PT_REGS_SP) as *const u64) })
    else {
        return 0;
    };
    let Some(words) = NATIVE_STACK.get_ptr_mut(0) else {
        return 0;
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
        return 0;
    }
    for word in words.iter() {
        let w = *word;
        if w < code.text_start || w >= code.text_end {
            continue;
        }
        let mut skipped = false;
        for range in code.skip.iter().take(NATIVE_SKIP_RANGES) {
            if w >= range[0] && w < range[1] {
                skipped = true;
            }
        }
        if !skipped {
            return w;
        }
    }
    0
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
    let caller_ip = native_caller();
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
        caller_ip,
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
        caller_ip,
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
        caller_ip: inflight.caller_ip,
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
