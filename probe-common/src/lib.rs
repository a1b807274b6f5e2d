//! Types shared by the kernel-side probes (`probe-ebpf`) and the user-side daemon.
//!
//! Every type here is `#[repr(C)]`, has no padding the compiler could fill with
//! garbage, and is plain old data: the kernel writes it byte for byte and the
//! daemon reads it back. Keep field order and sizes in sync on both sides by
//! only ever changing them here.
#![no_std]

/// What a probe site observes; stored per site in [`SiteConfig::kind`] and
/// echoed in every [`LockEvent`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// Entry into a mutex's contended slow path (Go `lockSlow`, glibc
    /// `__lll_lock_wait`, …). The lock's address is the first argument.
    LockSlowEntry = 1,
    /// Just after a `LOCK CMPXCHG`: the compare-and-swap's outcome is in
    /// the flags or a register ([`SiteConfig::outcome`]). Counted in
    /// `CAS_COUNTS`, no event.
    CasOutcome = 2,
    /// A `RET` of a lock's slow path: the waiter holds the lock now. Matched
    /// to its entry by goroutine; the event carries the wait.
    LockSlowReturn = 3,
}

impl SiteKind {
    /// Converts the raw value the kernel side stores, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::LockSlowEntry),
            2 => Some(Self::CasOutcome),
            3 => Some(Self::LockSlowReturn),
            _ => None,
        }
    }
}

/// Which register holds the argument a site reads (the lock's address).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgRegister {
    /// RAX: first integer argument of Go's register ABI (ABIInternal) on amd64.
    Rax = 0,
    /// RDI: first integer argument of the System V ABI (C, C++, Rust).
    Rdi = 1,
}

/// A condition evaluated on the saved flags before the probed instruction
/// runs. When it holds, the hit is not counted.
///
/// Probing the stack-check branch of a Go prologue instead of the entry is
/// ~20× cheaper, but when that branch is taken the goroutine grows its stack
/// and re-enters the function from the top, so the same call would hit the
/// probe twice. Skipping hits where the branch is about to be taken makes the
/// count exact: only the pass that falls through into the body counts.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipWhen {
    /// Count every hit.
    Never = 0,
    /// Skip when `jbe`/`jna` would be taken (CF=1 or ZF=1).
    BelowOrEqual = 1,
    /// Skip when `jb`/`jc` would be taken (CF=1).
    Below = 2,
}

/// Where a CAS site finds the compare-and-swap's outcome.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeSource {
    /// Success iff ZF == 1.
    ZfSet = 0,
    /// Success iff ZF == 0 (after `test r8, r8` of a SETE result).
    ZfClear = 1,
    /// Success iff the low byte of [`SiteConfig::outcome_register`] is non-zero.
    RegisterNonZero = 2,
    /// Success iff the low byte of [`SiteConfig::outcome_register`] is zero.
    RegisterZero = 3,
}

/// General registers a CAS outcome can be read from, numbered as in
/// [`SiteConfig::outcome_register`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneralRegister {
    /// RAX.
    Rax = 0,
    /// RBX.
    Rbx = 1,
    /// RCX.
    Rcx = 2,
    /// RDX.
    Rdx = 3,
    /// RSI.
    Rsi = 4,
    /// RDI.
    Rdi = 5,
    /// RBP.
    Rbp = 6,
    /// R8.
    R8 = 7,
    /// R9.
    R9 = 8,
    /// R10.
    R10 = 9,
    /// R11.
    R11 = 10,
    /// R12.
    R12 = 11,
    /// R13.
    R13 = 12,
    /// R14.
    R14 = 13,
    /// R15.
    R15 = 14,
}

/// Per-site configuration the daemon writes into the `SITES` array, indexed
/// by the attachment's BPF cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteConfig {
    /// A [`SiteKind`] value.
    pub kind: u32,
    /// An [`ArgRegister`] value.
    pub arg_register: u32,
    /// A [`SkipWhen`] value.
    pub skip_when: u32,
    /// Index of this site in the daemon's probe plan, echoed in events.
    pub site_index: u32,
    /// An [`OutcomeSource`] value (CAS sites).
    pub outcome: u32,
    /// A [`GeneralRegister`] value (CAS sites reading a register).
    pub outcome_register: u32,
    /// Lock sites: bytes to subtract from the argument to get the lock's
    /// address (the argument may point at a field: an RWMutex's semaphores).
    pub addr_adjust: u32,
    /// Lock sites: a [`LockRole`] value.
    pub role: u32,
    /// Lock entry sites: 1 to record the waiter's call site (the caller's
    /// return address and the user stack), 0 not to (counts only).
    pub capture_stack: u32,
}

/// What kind of wait a lock site observes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockRole {
    /// A mutex's slow path (also an RWMutex's writer lock).
    Mutex = 0,
    /// An RWMutex reader waiting for a writer (`RLock`'s semaphore).
    RwReader = 1,
    /// An RWMutex writer waiting for readers to leave (`Lock`'s semaphore).
    RwWriter = 2,
    /// A thread blocked in a futex wait (native locks: glibc pthread
    /// mutexes, Rust's std Mutex, …), seen through the syscall tracepoints.
    Futex = 3,
}

impl LockRole {
    /// Converts the raw value the kernel side stores, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Mutex),
            1 => Some(Self::RwReader),
            2 => Some(Self::RwWriter),
            3 => Some(Self::Futex),
            _ => None,
        }
    }
}

/// Attempts and failures of one CAS site on one CPU: the value type of the
/// per-CPU `CAS_COUNTS` array, indexed by site.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CasCounts {
    /// Compare-and-swaps executed.
    pub attempts: u64,
    /// Those that failed.
    pub failures: u64,
}

/// One contended lock acquisition (entry into the slow path, or its return
/// with the wait), pushed by the kernel through the per-CPU perf ring buffers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the probe fired.
    pub timestamp_ns: u64,
    /// Address of the lock (the slow path's first argument).
    pub lock_addr: u64,
    /// Goroutine (`g` pointer, R14 on Go amd64) or 0 for native code.
    pub goroutine: u64,
    /// For [`SiteKind::LockSlowReturn`]: ns from the slow path's entry to
    /// this return; else 0.
    pub wait_ns: u64,
    /// Return address into the slow path's caller (read at the entry from
    /// the top of the stack: the frame-pointer walk starts above it), or 0.
    pub caller_ip: u64,
    /// Id of the user stack in the `STACKS` map (from the entry), or -1.
    pub stack_id: i64,
    /// Thread-group id (process id) of the target.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU the probe fired on.
    pub cpu: u32,
    /// A [`SiteKind`] value.
    pub kind: u32,
    /// [`SiteConfig::site_index`] of the site that fired.
    pub site_index: u32,
    /// A [`LockRole`] value.
    pub role: u32,
}

/// Per-CPU probe counters, indexed by [`Counter`] in the `COUNTERS` map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Lock probe hits that were counted and emitted as events.
    Hits = 0,
    /// Hits skipped because the stack-check branch was about to be taken.
    SkippedReentry = 1,
    /// Hits at an address with no [`SiteConfig`] (should stay zero).
    UnknownSite = 2,
    /// Events the kernel failed to write to the perf buffer.
    OutputErrors = 3,
    /// CAS outcome probe hits (counted in `CAS_COUNTS`, no events).
    CasHits = 4,
    /// Slow-path returns with no recorded entry (the wait began before
    /// attach, or its entry was evicted from the in-flight map).
    UnmatchedReturns = 5,
    /// Slow-path entries that could not be recorded in the in-flight map.
    InflightErrors = 6,
}

/// Number of [`Counter`] slots.
pub const COUNTER_SLOTS: u32 = 7;

/// Key of the in-flight map: a waiter in a lock's slow path. Keyed by
/// goroutine, not thread: a goroutine parked in the slow path can resume on
/// another OS thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InflightKey {
    /// Process.
    pub tgid: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Goroutine (`g` pointer).
    pub goroutine: u64,
}

/// Value of the in-flight map: when and on which lock the wait began.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflight {
    /// `bpf_ktime_get_ns()` at the slow path's entry.
    pub start_ns: u64,
    /// The lock.
    pub lock_addr: u64,
    /// A [`LockRole`] value.
    pub role: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// See [`LockEvent::caller_ip`].
    pub caller_ip: u64,
    /// See [`LockEvent::stack_id`].
    pub stack_id: i64,
}

/// Capacity of the `STACKS` map: distinct waiting stacks kept.
pub const MAX_STACKS: u32 = 16384;

/// Flag set in [`InflightKey::goroutine`] when the key is a thread id (futex
/// waits of native code), so it never collides with a goroutine pointer.
pub const THREAD_KEY: u64 = 1 << 63;

/// [`LockEvent::site_index`] of events from the futex tracepoints.
pub const FUTEX_SITE: u32 = u32::MAX;

/// Capacity of the in-flight map (an LRU: stale waiters are evicted, never
/// leaked). One entry per goroutine waiting at once.
pub const MAX_INFLIGHT: u32 = 65536;

/// Maximum number of probe sites one daemon can configure.
pub const MAX_SITES: u32 = 4096;

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `#[repr(C)]`, made only of integers, with no padding.
    unsafe impl aya::Pod for super::SiteConfig {}
    unsafe impl aya::Pod for super::LockEvent {}
    unsafe impl aya::Pod for super::CasCounts {}
}
