//! Types shared by the kernel-side probes (`probe-ebpf`) and the user-side daemon.
//!
//! Every type here is `#[repr(C)]`, has no padding the compiler could fill with
//! garbage, and is plain old data: the kernel writes it byte for byte and the
//! daemon reads it back. Keep field order and sizes in sync on both sides by
//! only ever changing them here; the `const` assertions at the end of this
//! file fail the build of both sides when a layout moves.
//!
//! Every event the kernel writes to the ring buffers starts with an
//! [`EventHeader`] whose [`EventHeader::tag`] says which event follows.
#![no_std]

use core::mem::{offset_of, size_of};

/// Which event follows an [`EventHeader`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventTag {
    /// A [`LockEvent`].
    Lock = 1,
    /// A [`MapEvent`].
    Map = 2,
    /// An [`EventHeader`] alone: the process `tgid` has just executed a
    /// new program (the daemon's exec watcher).
    Exec = 3,
    /// A [`RuntimeEvent`]: a Go GC cycle or stop-the-world pause.
    Runtime = 4,
}

impl EventTag {
    /// Converts the raw value the kernel writes, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Lock),
            2 => Some(Self::Map),
            3 => Some(Self::Exec),
            4 => Some(Self::Runtime),
            _ => None,
        }
    }
}

/// The start of every event in the ring buffers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventTag`] value.
    pub tag: u32,
    /// CPU the probe fired on.
    pub cpu: u32,
    /// Thread-group id (process id) of the target.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the probe fired.
    pub timestamp_ns: u64,
}

/// What a probe site observes; stored per site in [`SiteConfig::kind`] and
/// echoed in every [`LockEvent`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// Entry into a mutex's contended slow path (Go `lockSlow`, …). The
    /// lock's address is in [`SiteConfig::arg_register`].
    LockSlowEntry = 1,
    /// Just after a `LOCK CMPXCHG`: the compare-and-swap's outcome is in
    /// the flags or a register ([`SiteConfig::outcome`]). Counted in
    /// `CAS_COUNTS`, no event.
    CasOutcome = 2,
    /// A `RET` of a lock's slow path: the waiter holds the lock now. Matched
    /// to its entry by goroutine; the event carries the wait.
    LockSlowReturn = 3,
    /// Entry into a mutex's semaphore wait (Go `runtime_SemacquireMutex`):
    /// the goroutine may park; recorded in `SEMA_PENDING`, no event.
    SemaEntry = 4,
    /// Go's `runtime.ready`: a goroutine (its `g` in RAX) is made runnable.
    /// If it was parked on a lock's semaphore, how long it was blocked (the
    /// figure Go's `/sync/mutex/wait/total` samples) goes to `BLOCKED`.
    Ready = 5,
    /// A jump (or other emulated instruction) by which a slow path enters
    /// its epilogue: the waiter holds the lock now, when the jump is taken
    /// ([`SiteConfig::count_if`]).
    LockExit = 6,
    /// Go's `runtime.gcMarkTermination`: one GC cycle ends (once per cycle,
    /// where the runtime counts `NumGC`). A [`RuntimeEvent`].
    GcCycle = 7,
    /// Go's `runtime.stopTheWorldWithSema`: the world starts stopping; its
    /// reason (an `stwReason`) is in [`SiteConfig::arg_register`], or
    /// [`NO_REGISTER`] where the runtime passes none. Kept in
    /// `STW_PENDING`, no event.
    StopTheWorld = 8,
    /// Go's `runtime.startTheWorldWithSema`: the world starts again. Where
    /// the runtime passes its own figures ([`SiteConfig::start_register`]),
    /// the pause is theirs: a [`RuntimeEvent`] at once when it passes its
    /// end, else at [`SiteKind::RestartDone`]. Otherwise the pause since
    /// [`SiteKind::StopTheWorld`] is a [`RuntimeEvent`].
    StartTheWorld = 9,
    /// Where `startTheWorldWithSema` has read the time of its end (the
    /// call that follows it): the pause kept at its entry ends here.
    RestartDone = 10,
    /// Entry into a lock's release slow path (Go `unlockSlow`, an
    /// RWMutex's `rUnlockSlow` and writer `Unlock`): a holder hands the
    /// lock to waiters. Counted for this holder's call site in
    /// `HOLDER_STATS`, with its hold time when it acquired through the slow
    /// path, and logged in
    /// the lock's `RELEASE_LOGS` for the waits it ends. The lock's
    /// address is in [`SiteConfig::arg_register`].
    LockRelease = 11,
}

impl SiteKind {
    /// Converts the raw value the kernel side stores, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::LockSlowEntry),
            2 => Some(Self::CasOutcome),
            3 => Some(Self::LockSlowReturn),
            4 => Some(Self::SemaEntry),
            5 => Some(Self::Ready),
            6 => Some(Self::LockExit),
            7 => Some(Self::GcCycle),
            8 => Some(Self::StopTheWorld),
            9 => Some(Self::StartTheWorld),
            10 => Some(Self::RestartDone),
            11 => Some(Self::LockRelease),
            _ => None,
        }
    }
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

/// The general registers a probe can read, numbered for every register
/// field of the site configurations. This is the one register numbering of
/// both sides: the daemon maps decoded registers to it, the probes select
/// by it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// RSP (map sites read the caller's return address through it).
    Rsp = 15,
}

/// A register field that names no register: the probe reads 0 for it.
pub const NO_REGISTER: u32 = u32::MAX;

/// Per-site configuration the daemon writes into the `SITES` array, indexed
/// by the attachment's BPF cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteConfig {
    /// A [`SiteKind`] value.
    pub kind: u32,
    /// A [`GeneralRegister`] value: where lock sites find the lock's address.
    pub arg_register: u32,
    /// A [`GeneralRegister`] value holding the goroutine (Go: R14), or
    /// [`NO_REGISTER`] for native code.
    pub goroutine_register: u32,
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
    /// Semaphore wait entries: 1 to record the wait in `SEMA_PENDING` for
    /// `runtime.ready` (blocked time), 0 not to. Ends of waits: 1 when
    /// semaphore waits are tracked, so that the end clears the pending one.
    pub track_blocked: u32,
    /// Exit sites: 0 to count every hit, else a [`Condition`] value (plus
    /// [`CONDITION_NEGATED`] for "when it does not hold") evaluated on the
    /// saved flags: the hit is an exit only then.
    pub count_if: u32,
    /// [`SiteKind::StartTheWorld`] (Go ≥ 1.22): the [`GeneralRegister`]
    /// holding the runtime's own end-of-pause time (`now`, 0 when the
    /// runtime reads it later), else [`NO_REGISTER`].
    pub time_register: u32,
    /// [`SiteKind::StartTheWorld`] (Go ≥ 1.22): the [`GeneralRegister`]
    /// holding the runtime's own start of the pause (the `worldStop`'s
    /// `startedStopping`); its reason is then in `arg_register`. Else
    /// [`NO_REGISTER`].
    pub start_register: u32,
    /// Lock entry sites: 1 when `arg_register` holds a pointer to the
    /// lock's address rather than the address (the runtime's `lockTimer`
    /// whose first field is the lock), 0 when it holds the address.
    pub arg_deref: u32,
    /// Lock entry sites: a [`CallerSource`] value, where the waiter's
    /// call site is found.
    pub caller_source: u32,
}

/// Where a lock entry site finds the return address into the code that
/// asked for the lock.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerSource {
    /// At `[rsp]`: the site is a function's first instruction.
    StackTop = 0,
    /// At `[rsp]`, one call below the lock function: the site is the entry
    /// of a helper the lock function calls (`runtime.(*lockTimer).begin`),
    /// so `[rsp]` returns into the lock function and the caller's return
    /// address is read from the lock function's frame, `[rbp + 8]` after
    /// the helper's own prologue has not run yet: the helper's `rbp` is
    /// still the lock function's frame pointer.
    FramePointer = 1,
}

/// A condition of x86 conditional branches, evaluated on saved flags.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// OF = 1 (`jo`).
    Overflow = 1,
    /// OF = 0 (`jno`).
    NotOverflow = 2,
    /// CF = 1 (`jb`).
    Below = 3,
    /// CF = 0 (`jae`).
    AboveOrEqual = 4,
    /// ZF = 1 (`je`).
    Equal = 5,
    /// ZF = 0 (`jne`).
    NotEqual = 6,
    /// CF = 1 or ZF = 1 (`jbe`).
    BelowOrEqual = 7,
    /// CF = 0 and ZF = 0 (`ja`).
    Above = 8,
    /// SF = 1 (`js`).
    Sign = 9,
    /// SF = 0 (`jns`).
    NotSign = 10,
    /// PF = 1 (`jp`).
    Parity = 11,
    /// PF = 0 (`jnp`).
    NotParity = 12,
    /// SF ≠ OF (`jl`).
    Less = 13,
    /// SF = OF (`jge`).
    GreaterOrEqual = 14,
    /// ZF = 1 or SF ≠ OF (`jle`).
    LessOrEqual = 15,
    /// ZF = 0 and SF = OF (`jg`).
    Greater = 16,
}

/// Added to a [`Condition`] in [`SiteConfig::count_if`]: count when it
/// does not hold.
pub const CONDITION_NEGATED: u32 = 1 << 8;

/// Whether `count_if` (see [`SiteConfig::count_if`]) holds on the saved
/// flags `flags`.
#[inline(always)]
pub fn condition_holds(count_if: u32, flags: u64) -> bool {
    let cf = flags & 1 != 0;
    let pf = flags & (1 << 2) != 0;
    let zf = flags & (1 << 6) != 0;
    let sf = flags & (1 << 7) != 0;
    let of = flags & (1 << 11) != 0;
    let holds = match count_if & 0xff {
        0 => return true,
        1 => of,
        2 => !of,
        3 => cf,
        4 => !cf,
        5 => zf,
        6 => !zf,
        7 => cf || zf,
        8 => !cf && !zf,
        9 => sf,
        10 => !sf,
        11 => pf,
        12 => !pf,
        13 => sf != of,
        14 => sf == of,
        15 => zf || sf != of,
        16 => !zf && sf == of,
        _ => false,
    };
    if count_if & CONDITION_NEGATED != 0 {
        !holds
    } else {
        holds
    }
}

/// Switches every probe reads first (`CONTROL`, index 0), set by the daemon
/// and its overhead governor while attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// 0: every probe returns at once (counting [`Counter::DisabledHits`]);
    /// 1: probes run.
    pub enabled: u32,
    /// 1: entries record their waiter's user stack (once per new lock and
    /// caller, and every [`STACK_RESAMPLE`]th time after); 0: only the
    /// caller's return address.
    pub stacks: u32,
    /// 1: entries record their wait's start, so that its end measures it;
    /// 0: contentions are counted, waits not timed.
    pub wait_times: u32,
    /// Map keys are recorded for one operation in `2^key_sample_shift`
    /// (per CPU); the others are only counted per map.
    pub key_sample_shift: u32,
    /// 1: the Go runtime probes (GC cycles, stop-the-world pauses) run,
    /// whatever `enabled` says: the overhead governor never switches them
    /// off (they fire a few times a second), so their counts stay exact.
    pub runtime: u32,
    /// 1: release sites log each release to waiters (`RELEASE_LOGS`) and
    /// a timed wait's end charges its waiting to the holders whose releases
    /// ended it; 0: no holder blame (no release sites are planned).
    pub holders: u32,
    /// 1: the scheduler tracepoints time the target's threads' waits for
    /// a CPU ([`RunQueueStats`]); 0: they return at once.
    pub sched: u32,
    /// Explicit padding.
    pub _pad: u32,
}

impl Control {
    /// Everything on: every probe runs in full.
    pub const fn default_on() -> Self {
        Self {
            enabled: 1,
            stacks: 1,
            wait_times: 1,
            key_sample_shift: 0,
            runtime: 1,
            holders: 1,
            sched: 1,
            _pad: 0,
        }
    }

    /// Everything off: the session's end.
    pub const fn all_off() -> Self {
        Self {
            enabled: 0,
            stacks: 0,
            wait_times: 0,
            key_sample_shift: 0,
            runtime: 0,
            holders: 0,
            sched: 0,
            _pad: 0,
        }
    }
}

/// What a [`RuntimeEvent`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeEventKind {
    /// A GC cycle ended (its mark termination began).
    GcCycle = 1,
    /// The world was stopped for [`RuntimeEvent::duration_ns`].
    WorldStopped = 2,
}

impl RuntimeEventKind {
    /// Converts the raw value the kernel writes, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::GcCycle),
            2 => Some(Self::WorldStopped),
            _ => None,
        }
    }
}

/// `RuntimeEvent::reason` when the runtime passes no stop-the-world reason
/// (Go before 1.21).
pub const NO_STW_REASON: u32 = u32::MAX;

/// A Go runtime event, pushed through the same rings as [`LockEvent`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    /// Tag [`EventTag::Runtime`], CPU, process, thread and time (for a
    /// pause: when the world started again).
    pub header: EventHeader,
    /// A [`RuntimeEventKind`] value.
    pub kind: u32,
    /// A pause's `stwReason` (the runtime's numbering), or
    /// [`NO_STW_REASON`].
    pub reason: u32,
    /// A pause's length: from the stop's start to the start of the
    /// world's restart, ns; 0 for a GC cycle.
    pub duration_ns: u64,
}

/// A stop-the-world in progress (`STW_PENDING`, one per target: the world
/// stops once at a time).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StwPending {
    /// When it began, `bpf_ktime_get_ns()`; 0 when none is in progress.
    pub start_ns: u64,
    /// Its reason, or [`NO_STW_REASON`].
    pub reason: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// How often an entry re-reads the stack of a (lock, caller) pair it has
/// seen before: a caller reached from several paths shows more than one.
pub const STACK_RESAMPLE: u64 = 256;

/// Log2 buckets of the in-kernel wait histograms: bucket `b` counts waits
/// in `[2^b, 2^(b+1))` ns, the last one everything longer (2^39 ns is about
/// nine minutes).
pub const WAIT_HIST_BUCKETS: usize = 40;

/// Key of `LOCK_STATS`: one lock waited on from one call site.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockStatsKey {
    /// The lock.
    pub lock_addr: u64,
    /// Return address into the slow path's caller, or 0.
    pub caller_ip: u64,
    /// The waiter's user stack in `STACKS`, or -1.
    pub stack_id: i64,
    /// A [`LockRole`] value.
    pub role: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Value of `LOCK_STATS` (per CPU): contentions and measured waits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockStats {
    /// Entries into the slow path.
    pub contentions: u64,
    /// Waits measured (their ends seen).
    pub acquisitions: u64,
    /// Their sum, ns.
    pub wait_ns: u64,
    /// The longest, ns.
    pub wait_max_ns: u64,
    /// Their log2 histogram (see [`WAIT_HIST_BUCKETS`]).
    pub hist: [u64; WAIT_HIST_BUCKETS],
}

/// Value of `BLOCKED` (per CPU, by lock): parks on the lock's semaphores
/// (`--blocked-time`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockedStats {
    /// Parks ended by `runtime.ready`.
    pub parks: u64,
    /// Their sum, park to runnable, ns.
    pub blocked_ns: u64,
}

/// Key of `PAIRS`: a lock and a caller seen waiting on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairKey {
    /// The lock.
    pub lock_addr: u64,
    /// The caller's return address.
    pub caller_ip: u64,
}

/// Value of `PAIRS`: the stack last read for the pair, and how often the
/// pair was seen since.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairStack {
    /// The stack's id in `STACKS`, or -1.
    pub stack_id: i64,
    /// Entries of the pair.
    pub hits: u64,
}

/// The kernel's flag for hash maps whose entries are allocated as they are
/// made (`BPF_F_NO_PREALLOC`): per-CPU tables cost what they hold, not
/// their capacity times the CPUs.
pub const NO_PREALLOC: u32 = 1;

/// Capacity of `LOCK_STATS`: distinct (lock, call site) pairs counted in
/// the kernel; further ones become events.
pub const MAX_LOCK_STATS: u32 = 4096;

/// Capacity of `BLOCKED`: locks whose parks are counted in the kernel.
pub const MAX_BLOCKED: u32 = 1024;

/// Capacity of `PAIRS` (an LRU: a pair evicted reads its stack again).
pub const MAX_PAIRS: u32 = 4096;

/// Key of `KEY_COUNTS`: one key of one map, from one caller.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyCountsKey {
    /// The map.
    pub map_addr: u64,
    /// The key's hash ([`key_hash`] of what the event would carry), 0 for
    /// operations without a key.
    pub key_hash: u64,
    /// The caller's return address for sites that name the operation from
    /// it, else 0.
    pub caller_ip: u64,
}

/// Value of `KEY_COUNTS` (per CPU): operations by [`MapOp`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCounts {
    /// Operations by [`MapOp`].
    pub ops: [u64; MAP_OPS],
}

/// Capacity of `KEY_COUNTS`: distinct (map, key, caller) counted in the
/// kernel per CPU; operations on further ones become events.
pub const MAX_KEY_COUNTS: u32 = 8192;

/// The FNV-1a offset basis: the start of [`key_hash`].
pub const KEY_HASH_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV-1a prime.
pub const KEY_HASH_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One step of the key hash (FNV-1a over bytes).
#[inline(always)]
pub fn key_hash_byte(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(KEY_HASH_PRIME)
}

/// One 8-byte word into the key hash (its bytes, little-endian).
#[inline(always)]
pub fn key_hash_word(mut hash: u64, word: u64) -> u64 {
    let mut i = 0;
    while i < 8 {
        hash = key_hash_byte(hash, (word >> (8 * i)) as u8);
        i += 1;
    }
    hash
}

/// The hash both sides give a decoded key: its kind, Go kind, length,
/// integer value and type, then the bytes copied. Never 0 (0 means "no
/// key").
pub fn key_hash(
    key_kind: u32,
    go_kind: u32,
    key_len: u32,
    key_int: u64,
    key_type: u64,
    bytes: &[u8],
) -> u64 {
    let mut hash = KEY_HASH_BASIS;
    hash = key_hash_word(hash, ((key_kind as u64) << 32) | go_kind as u64);
    hash = key_hash_word(hash, key_len as u64);
    hash = key_hash_word(hash, key_int);
    hash = key_hash_word(hash, key_type);
    for &byte in bytes {
        hash = key_hash_byte(hash, byte);
    }
    if hash == 0 {
        1
    } else {
        hash
    }
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
    /// A Go runtime-internal lock (`runtime.mutex`, taken by `lock2`):
    /// channels, the scheduler, timers, the heap. Its waits nest inside
    /// the waits of the other roles (a `sync.Mutex` waiter takes the
    /// semaphore table's runtime lock), so their in-flight state is kept
    /// apart ([`INFLIGHT_SPACE_RUNTIME`]).
    Runtime = 4,
    /// A native thread's futex wait inside `pthread_cond_*wait`: a wait for
    /// a signal, not for a lock ([`NativeCall`]).
    CondWait = 5,
    /// A futex wait inside `pthread_rwlock_*rdlock`: a reader of a native
    /// rwlock waiting for a writer.
    RwlockReader = 6,
    /// A futex wait inside `pthread_rwlock_*wrlock`: a writer of a native
    /// rwlock waiting.
    RwlockWriter = 7,
    /// A futex wait inside `pthread_*join*`: a thread waiting for another
    /// to exit, not for a lock.
    ThreadJoin = 8,
}

impl LockRole {
    /// Converts the raw value the kernel side stores, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Mutex),
            1 => Some(Self::RwReader),
            2 => Some(Self::RwWriter),
            3 => Some(Self::Futex),
            4 => Some(Self::Runtime),
            5 => Some(Self::CondWait),
            6 => Some(Self::RwlockReader),
            7 => Some(Self::RwlockWriter),
            8 => Some(Self::ThreadJoin),
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
    /// Tag [`EventTag::Lock`], CPU, process, thread and time.
    pub header: EventHeader,
    /// Address of the lock (the slow path's first argument).
    pub lock_addr: u64,
    /// Goroutine (`g` pointer, R14 on Go amd64) or 0 for native code.
    pub goroutine: u64,
    /// For [`SiteKind::LockSlowReturn`] and [`SiteKind::Ready`]: ns from the
    /// wait's start to this event; else 0.
    pub wait_ns: u64,
    /// Return address into the slow path's caller (read at the entry from
    /// the top of the stack: the frame-pointer walk starts above it), or 0.
    pub caller_ip: u64,
    /// Id of the user stack in the `STACKS` map (from the entry), or -1.
    pub stack_id: i64,
    /// A [`SiteKind`] value.
    pub kind: u32,
    /// [`SiteConfig::site_index`] of the site that fired.
    pub site_index: u32,
    /// A [`LockRole`] value.
    pub role: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// A map operation, as reported: the user-level operation of Go's
/// `sync.Map`, also used for runtime maps (`load` = `mapaccess*`, `store` =
/// `mapassign*`, `delete` = `mapdelete*`), plus the internal events of the
/// two `sync.Map` implementations.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapOp {
    /// `Load`, `mapaccess1/2*`.
    Load = 0,
    /// `Store`, `mapassign*`.
    Store = 1,
    /// `LoadOrStore`.
    LoadOrStore = 2,
    /// `LoadAndDelete`.
    LoadAndDelete = 3,
    /// `Delete`, `mapdelete*`.
    Delete = 4,
    /// `Swap`.
    Swap = 5,
    /// `CompareAndSwap`.
    CompareAndSwap = 6,
    /// `CompareAndDelete`.
    CompareAndDelete = 7,
    /// `Range`.
    Range = 8,
    /// `Clear`.
    Clear = 9,
    /// Go ≤ 1.23 `sync.Map`: a load or store missed the read-only map and
    /// took the mutex (`missLocked`).
    Miss = 10,
    /// Go ≤ 1.23 `sync.Map`: the dirty map was rebuilt from the read-only
    /// map before a store of a new key (`dirtyLocked`).
    DirtyCopy = 11,
    /// Go ≥ 1.24 `sync.Map`: a trie node was split (`expand`).
    Expand = 12,
    /// A runtime map grew: `hashGrow` (Go ≤ 1.23), or a swiss map's
    /// `growToSmall`, `growToTable`, a table's `grow` or `split` (Go ≥
    /// 1.24).
    Grow = 13,
}

/// Number of [`MapOp`] values.
pub const MAP_OPS: usize = 14;

impl MapOp {
    /// Every operation, in numbering order.
    pub const ALL: [MapOp; MAP_OPS] = [
        Self::Load,
        Self::Store,
        Self::LoadOrStore,
        Self::LoadAndDelete,
        Self::Delete,
        Self::Swap,
        Self::CompareAndSwap,
        Self::CompareAndDelete,
        Self::Range,
        Self::Clear,
        Self::Miss,
        Self::DirtyCopy,
        Self::Expand,
        Self::Grow,
    ];

    /// Converts the raw value the kernel side stores, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }

    /// The name reports and metrics use (`load`, `compare_and_swap`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Store => "store",
            Self::LoadOrStore => "load_or_store",
            Self::LoadAndDelete => "load_and_delete",
            Self::Delete => "delete",
            Self::Swap => "swap",
            Self::CompareAndSwap => "compare_and_swap",
            Self::CompareAndDelete => "compare_and_delete",
            Self::Range => "range",
            Self::Clear => "clear",
            Self::Miss => "miss",
            Self::DirtyCopy => "dirty_copy",
            Self::Expand => "expand",
            Self::Grow => "grow",
        }
    }

    /// Whether this is a user-level operation (not `miss`, `dirty_copy`,
    /// `expand`, `grow`, the implementations' internal events).
    pub fn is_user_op(self) -> bool {
        !matches!(
            self,
            Self::Miss | Self::DirtyCopy | Self::Expand | Self::Grow
        )
    }

    /// Whether the operation writes (may add a key).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Store | Self::LoadOrStore | Self::Swap | Self::CompareAndSwap
        )
    }
}

/// Where a map site finds the key.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyShape {
    /// The operation has no key (`Range`, internal events).
    None = 0,
    /// A string: data pointer in [`MapSiteConfig::key_a`], length in
    /// [`MapSiteConfig::key_b`] (`mapaccess*_faststr`).
    Str = 1,
    /// An integer in [`MapSiteConfig::key_a`] (`mapaccess*_fast32/64`);
    /// its type comes from the map type in [`MapSiteConfig::type_register`].
    Int = 2,
    /// An interface value (`any`): type pointer in [`MapSiteConfig::key_a`],
    /// data pointer in [`MapSiteConfig::key_b`] (`sync.Map` methods).
    Iface = 3,
    /// A pointer to the key in [`MapSiteConfig::key_a`], whose type comes
    /// from the map type in [`MapSiteConfig::type_register`] (generic
    /// `mapaccess1`, `mapassign`, `mapdelete`).
    Pointer = 4,
}

/// Which map operations a site reports as events.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFilter {
    /// Every operation becomes an event.
    All = 0,
    /// Only operations on maps listed in `MAP_FILTER` become events; others
    /// are only counted per map in `MAP_COUNTS`.
    Listed = 1,
}

/// Per-site configuration of a map operation site, in the `MAP_SITES`
/// array at the attachment's cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSiteConfig {
    /// A [`MapOp`] value.
    pub op: u32,
    /// A [`SkipWhen`] value.
    pub skip_when: u32,
    /// Index of the site in the daemon's plan, echoed in events.
    pub site_index: u32,
    /// A [`GeneralRegister`]: the map (sync.Map receiver, runtime map header).
    pub map_register: u32,
    /// A [`KeyShape`] value.
    pub key_shape: u32,
    /// A [`GeneralRegister`]: first key register (see [`KeyShape`]).
    pub key_a: u32,
    /// A [`GeneralRegister`]: second key register (see [`KeyShape`]).
    pub key_b: u32,
    /// A [`GeneralRegister`] holding the map's type (runtime maps), whose
    /// key type is at [`GoLayout::maptype_key_offset`]; or [`NO_REGISTER`].
    pub type_register: u32,
    /// Integer keys: width in bytes (4 or 8).
    pub key_width: u32,
    /// A [`MapFilter`] value.
    pub filter: u32,
    /// Bytes of string and other keys to copy (at most [`MAX_KEY_BYTES`]).
    pub key_bytes: u32,
    /// 1 to read the caller's return address (to tell an inlined wrapper,
    /// `Store`, from the function it calls, `Swap`).
    pub capture_caller: u32,
    /// 1 for `sync.Map` sites: their per-map counts are keyed with
    /// [`SYNC_MAP_COUNT_FLAG`] set.
    pub sync_map: u32,
}

/// Set in a `MAP_COUNTS` key counting a `sync.Map` (user addresses never
/// have bit 63 set).
pub const SYNC_MAP_COUNT_FLAG: u64 = 1 << 63;

/// The Go runtime's type layout as the map probes need it to decode keys
/// (`GO_LAYOUT`, index 0), written by the daemon from its Go runtime table
/// for the target's Go version.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoLayout {
    /// Offset of the key type (`*abi.Type`) in a map type descriptor.
    pub maptype_key_offset: u32,
    /// Offset of `Size_` in `abi.Type`.
    pub type_size_offset: u32,
    /// Offset of the `Kind_` byte in `abi.Type`.
    pub type_kind_offset: u32,
    /// Mask of the kind in `Kind_`.
    pub kind_mask: u32,
    /// Offset of the method slice's length in an interface type descriptor
    /// (`abi.InterfaceType.Methods`): non-zero for an interface with methods.
    pub interface_methods_offset: u32,
    /// The kind number of `string`.
    pub kind_string: u32,
    /// The kind number of `interface`.
    pub kind_interface: u32,
    /// The first integer kind (`int`).
    pub kind_int_first: u32,
    /// The last integer kind (`uintptr`).
    pub kind_int_last: u32,
    /// Bit `k` set: values of kind `k` are pointer-shaped (stored in an
    /// interface's data word itself).
    pub pointer_kinds: u32,
}

/// How an event's key was decoded.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// No key.
    None = 0,
    /// An integer in [`MapEvent::key_int`]; the kind in [`MapEvent::go_kind`].
    Int = 1,
    /// String bytes in [`MapEvent::key`].
    Str = 2,
    /// The key's raw bytes in [`MapEvent::key`] (other types).
    Bytes = 3,
    /// The key could not be read.
    Unreadable = 4,
}

impl KeyKind {
    /// Converts the raw value the kernel writes, if it is known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::None),
            1 => Some(Self::Int),
            2 => Some(Self::Str),
            3 => Some(Self::Bytes),
            4 => Some(Self::Unreadable),
            _ => None,
        }
    }
}

/// Most key bytes an event carries.
pub const MAX_KEY_BYTES: usize = 128;

/// One map operation, pushed through the per-CPU perf ring buffers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEvent {
    /// Tag [`EventTag::Map`], CPU, process, thread and time.
    pub header: EventHeader,
    /// The map: the `sync.Map`'s address, or the runtime map's header.
    pub map_addr: u64,
    /// The key's Go type (`*abi.Type`, the dynamic type of interface keys),
    /// or 0.
    pub key_type: u64,
    /// Integer keys: the value (sign-extended by the reader from
    /// [`go_kind`](Self::go_kind) and [`key_len`](Self::key_len)).
    pub key_int: u64,
    /// Return address into the caller, or 0.
    pub caller_ip: u64,
    /// The key's hash (see [`key_hash`]), 0 without a key.
    pub key_hash: u64,
    /// Runtime maps: the map's type (`*abi.MapType`, its bucket or group
    /// size inside), or 0.
    pub map_type: u64,
    /// [`MapSiteConfig::site_index`].
    pub site_index: u32,
    /// The key's full length in bytes (string length, type size).
    pub key_len: u32,
    /// Bytes of it copied into [`key`](Self::key).
    pub copied: u16,
    /// A [`MapOp`] value.
    pub op: u8,
    /// A [`KeyKind`] value.
    pub key_kind: u8,
    /// The key's Go kind number (`abi.Kind`, below 32), or 0.
    pub go_kind: u8,
    /// 1: the operation is counted in `KEY_COUNTS` (this event only says
    /// which key the hash stands for, the first time a CPU counts it);
    /// 0: the event is the only count of it (the table was full).
    pub counted: u8,
    /// Explicit padding.
    pub _pad: u16,
    /// The key's first bytes.
    pub key: [u8; MAX_KEY_BYTES],
}

/// Per-map counts of operations kept in the kernel (`MAP_COUNTS`, per CPU)
/// for maps whose operations are not events.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapCounts {
    /// Operations by [`MapOp`].
    pub ops: [u64; MAP_OPS],
    /// A runtime map's type (`*abi.MapType`) as its operations passed it,
    /// or 0 (`sync.Map`s, and operations that do not pass it).
    pub map_type: u64,
}

/// Capacity of `MAP_COUNTS`: distinct maps counted without events.
pub const MAX_COUNTED_MAPS: u32 = 8192;

/// Capacity of `MAP_FILTER`: maps selected with `--map`.
pub const MAX_FILTERED_MAPS: u32 = 1024;

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
    /// Map operations written as events (a reader that received fewer lost
    /// some).
    MapHits = 7,
    /// Map operations that could be neither events nor counted because
    /// `MAP_COUNTS` was full.
    MapCountsFull = 8,
    /// Lock hits that became events because `LOCK_STATS` (or `BLOCKED`)
    /// was full.
    LockStatsFull = 9,
    /// Map operations that became events because `KEY_COUNTS` was full.
    KeyCountsFull = 10,
    /// Exit hits whose branch did not go to the epilogue (not exits).
    NotExits = 11,
    /// Map operations counted in `KEY_COUNTS` (with their key).
    MapOpsCounted = 12,
    /// Probe hits while the probes were switched off ([`Control::enabled`]).
    DisabledHits = 13,
    /// Map operations counted per map only because their key was not
    /// sampled ([`Control::key_sample_shift`]).
    KeysUnsampled = 14,
    /// Go runtime events written ([`RuntimeEvent`]).
    RuntimeEvents = 15,
    /// Restarts of the world with no stop seen (the probes were attached
    /// while the world was stopped).
    StwUnmatched = 16,
    /// Releases not charged because `HOLDER_STATS` was full.
    HolderStatsFull = 17,
    /// Releases not logged because `RELEASE_LOGS` was full (the waiting
    /// they ended goes to the lock's previous release, or to none).
    ReleaseLogsFull = 18,
    /// Waits that spanned more releases than a log keeps: their oldest
    /// part was charged to the oldest release kept.
    ReleaseLogShort = 19,
    /// Releases to waiters counted in `HOLDER_STATS` (not [`Counter::Hits`]:
    /// those are the lock figures' own).
    Releases = 20,
    /// Threads of the target the scheduler probes could not track because
    /// `RUNQ_THREADS` was full (their waits for a CPU are not timed).
    RunQueueThreadsFull = 21,
    /// Runs of the scheduler tracepoint programs (host-wide) that were
    /// about the target's threads: its own switches and wake-ups, what it
    /// pays for; the others are other processes'.
    SchedTargetRuns = 22,
    /// Runs of the futex tracepoint programs (host-wide) in the target's
    /// threads.
    FutexTargetRuns = 23,
    /// Native futex waits whose thread could not be noted because
    /// `THREAD_WAITS` was full (the lock's figures still have them).
    ThreadWaitsFull = 24,
}

/// Number of [`Counter`] slots.
pub const COUNTER_SLOTS: u32 = 25;

/// Value of `RUNQ_THREADS`, by thread id: since when the thread has been
/// runnable and not running (woken, or preempted), `CLOCK_MONOTONIC` ns;
/// 0 while it runs or sleeps.
pub type RunnableSince = u64;

/// Most threads of one target the scheduler probes track.
pub const RUNQ_THREADS_MAX: u32 = 8192;

/// Value of `RUNQ_STATS` (per CPU, one entry): the target's threads'
/// waits for a CPU — from being woken or preempted to running again —
/// that ended on this CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunQueueStats {
    /// Waits ended.
    pub waits: u64,
    /// Their sum, ns.
    pub wait_ns: u64,
    /// The longest, ns.
    pub wait_max_ns: u64,
    /// Explicit padding.
    pub _pad: u64,
    /// Their log2 histogram (see [`WAIT_HIST_BUCKETS`]).
    pub hist: [u64; WAIT_HIST_BUCKETS],
}

impl Default for RunQueueStats {
    fn default() -> Self {
        Self {
            waits: 0,
            wait_ns: 0,
            wait_max_ns: 0,
            _pad: 0,
            hist: [0; WAIT_HIST_BUCKETS],
        }
    }
}

impl RunQueueStats {
    /// Adds another CPU's figures (the longest: the longer).
    pub fn merge(&mut self, other: &Self) {
        self.waits += other.waits;
        self.wait_ns += other.wait_ns;
        self.wait_max_ns = self.wait_max_ns.max(other.wait_max_ns);
        for (mine, theirs) in self.hist.iter_mut().zip(other.hist.iter()) {
            *mine += theirs;
        }
    }
}

/// Offsets in the scheduler tracepoints' records (their format files; the
/// daemon checks them before attaching): `sched_switch`'s `prev_state`
/// (a `long`) and `next_pid` (a `pid_t`), and the woken task's `pid` in
/// `sched_wakeup` and `sched_wakeup_new`. (The task switching out is the
/// current one: its id needs no field.)
pub const SCHED_SWITCH_PREV_STATE: usize = 32;
/// See [`SCHED_SWITCH_PREV_STATE`].
pub const SCHED_SWITCH_NEXT_PID: usize = 56;
/// See [`SCHED_SWITCH_PREV_STATE`].
pub const SCHED_WAKEUP_PID: usize = 24;

/// `prev_state` bits of a task switched out while still runnable: 0
/// (`TASK_RUNNING`, it yielded) or `TASK_REPORT_MAX` (0x100: preempted).
/// Any bit below 0x100 means it went to sleep.
pub const SCHED_SLEEP_STATES: i64 = 0xff;

/// Key of the in-flight map: a waiter in a lock's slow path. Keyed by
/// goroutine, not thread: a goroutine parked in the slow path can resume on
/// another OS thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InflightKey {
    /// Process.
    pub tgid: u32,
    /// [`INFLIGHT_SPACE_LOCKS`] or [`INFLIGHT_SPACE_RUNTIME`]: a goroutine
    /// may wait on a runtime lock while its wait on a `sync` lock is in
    /// flight.
    pub space: u32,
    /// Goroutine (`g` pointer), or [`THREAD_KEY`] and a thread id.
    pub goroutine: u64,
}

/// [`InflightKey::space`] of waits on `sync` locks and native locks.
pub const INFLIGHT_SPACE_LOCKS: u32 = 0;
/// [`InflightKey::space`] of waits on Go runtime-internal locks.
pub const INFLIGHT_SPACE_RUNTIME: u32 = 1;

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

/// Key of `HOLDER_STATS`: one lock released to its waiters from one call
/// site.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HolderKey {
    /// The lock.
    pub lock_addr: u64,
    /// Return address into the release slow path's caller, or 0.
    pub caller_ip: u64,
    /// The holder's user stack in `STACKS`, or -1.
    pub stack_id: i64,
}

/// Value of `HOLDER_STATS` (per CPU): what one holder call site's releases
/// made others wait.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HolderStats {
    /// Releases through the slow path (to waiters).
    pub releases: u64,
    /// Waiting charged to them (see [`ReleaseLog`]), ns.
    pub caused_ns: u64,
    /// Of the releases, those whose holder had acquired through the slow
    /// path (its hold time is known).
    pub holds: u64,
    /// Their hold times (slow-path acquisition to release), ns.
    pub hold_ns: u64,
    /// Their log2 histogram (see [`WAIT_HIST_BUCKETS`]).
    pub hold_hist: [u64; WAIT_HIST_BUCKETS],
}

impl HolderStats {
    /// Every count at zero.
    pub const ZERO: Self = Self {
        releases: 0,
        caused_ns: 0,
        holds: 0,
        hold_ns: 0,
        hold_hist: [0; WAIT_HIST_BUCKETS],
    };

    /// Adds `other` (another CPU's row, or another site's totals).
    pub fn merge(&mut self, other: &Self) {
        self.releases += other.releases;
        self.caused_ns = self.caused_ns.saturating_add(other.caused_ns);
        self.holds += other.holds;
        self.hold_ns = self.hold_ns.saturating_add(other.hold_ns);
        for (total, count) in self.hold_hist.iter_mut().zip(other.hold_hist) {
            *total += count;
        }
    }
}

impl Default for HolderStats {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Releases a lock's log keeps (see [`ReleaseLog`]): a wait that spans
/// more has its oldest part charged to the oldest one kept
/// ([`Counter::ReleaseLogShort`]).
pub const RELEASE_LOG_SLOTS: usize = 16;

/// One release of a lock to its waiters: when, and by whom.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Release {
    /// `bpf_ktime_get_ns()` at the release.
    pub time_ns: u64,
    /// See [`HolderKey::caller_ip`].
    pub caller_ip: u64,
    /// See [`HolderKey::stack_id`].
    pub stack_id: i64,
}

/// Value of `RELEASE_LOGS`: a lock's last releases to waiters, a ring.
/// Releases of one lock follow one another (only its holder releases it),
/// so one writer at a time fills it; a waiter's end reads it to split its
/// wait at the releases within it: each stretch up to a release is
/// charged to that release's holder, the last stretch (from the release
/// that woke it to its acquisition) to that release's holder too.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseLog {
    /// Releases written so far; the newest is at `(head - 1) % RELEASE_LOG_SLOTS`.
    pub head: u64,
    /// The goroutine that last acquired the lock through the slow path
    /// since its last release to waiters, or 0: its release measures its
    /// hold. Any release to waiters clears it, so a hold is measured only
    /// from a slow acquisition to the next slow release, by one goroutine.
    pub owner: u64,
    /// When `owner` acquired it.
    pub owner_since_ns: u64,
    /// The ring.
    pub slots: [Release; RELEASE_LOG_SLOTS],
}

/// Value of `CONVOYS`: an RWMutex's writer convoy in progress (a writer
/// waiting for readers to leave, readers queuing behind it), and the last
/// one's span.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConvoyState {
    /// When the pending writer began waiting for readers, or 0.
    pub pending_since_ns: u64,
    /// Readers that began waiting since (atomic adds).
    pub stalled: u64,
    /// The pending writer's call site (see [`HolderKey`]).
    pub writer_caller_ip: u64,
    /// Its user stack, or -1.
    pub writer_stack_id: i64,
    /// The last episode's start, for the readers' waits that end after it.
    pub last_start_ns: u64,
    /// Its end (the writer's `Unlock`).
    pub last_end_ns: u64,
}

/// Value of `CONVOY_STATS` (per CPU), keyed by ([`HolderKey`]) lock and
/// writer call site: its convoys.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConvoyStats {
    /// Episodes: from a writer's wait for readers to its `Unlock`.
    pub episodes: u64,
    /// Their lengths, summed, ns.
    pub total_ns: u64,
    /// The longest, ns.
    pub max_ns: u64,
    /// Readers that queued behind the writer, summed over episodes.
    pub stalled: u64,
    /// The most in one episode.
    pub max_stalled: u64,
    /// Those readers' waits, summed, ns.
    pub reader_wait_ns: u64,
}

impl ConvoyStats {
    /// Adds `other` (another CPU's row, or another writer's totals):
    /// sums, and the larger of the maxima.
    pub fn merge(&mut self, other: &Self) {
        self.episodes += other.episodes;
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.stalled += other.stalled;
        self.max_stalled = self.max_stalled.max(other.max_stalled);
        self.reader_wait_ns = self.reader_wait_ns.saturating_add(other.reader_wait_ns);
    }
}

/// Capacity of `RELEASE_LOGS`: locks released to waiters (a full table is
/// counted, [`Counter::ReleaseLogsFull`]).
pub const MAX_RELEASE_LOGS: u32 = 4096;

/// Capacity of `CONVOYS` and `CONVOY_STATS`.
pub const MAX_CONVOYS: u32 = 1024;

/// Capacity of `HOLDER_STATS`: (lock, holder call site) pairs.
pub const MAX_HOLDER_SITES: u32 = 4096;

/// Capacity of the `STACKS` map: distinct waiting stacks kept (stacks are
/// read once per lock and caller, so a few thousand cover a big service;
/// the map is allocated whole, ~1 KiB per stack, when the probes load).
pub const MAX_STACKS: u32 = 4096;

/// Flag set in [`InflightKey::goroutine`] when the key is a thread id (futex
/// waits of native code), so it never collides with a goroutine pointer.
pub const THREAD_KEY: u64 = 1 << 63;

/// [`LockEvent::site_index`] of events from the futex tracepoints.
pub const FUTEX_SITE: u32 = u32::MAX;

/// Code ranges for finding a native waiter's call site (`NATIVE_CODE`):
/// the executable's text, and functions of the locking machinery to look
/// past (Rust std's futex lock path), as runtime addresses `[start, end)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NativeCode {
    /// Start of the executable's text (0: no call sites).
    pub text_start: u64,
    /// Its end.
    pub text_end: u64,
    /// Functions skipped when looking for the caller: (start, end).
    pub skip: [[u64; 2]; NATIVE_SKIP_RANGES],
    /// Functions that wait for a signal (Rust std's futex condition
    /// variable and thread parker): a futex wait with a return into one of
    /// them is a [`LockRole::CondWait`], and they are skipped too.
    pub signal: [[u64; 2]; NATIVE_SIGNAL_RANGES],
}

/// A native thread's latest call of a pthread function whose futex waits
/// are not a mutex's (`NATIVE_CALLS`, by thread id): the object it was
/// called on, the object's size and the role its waits take. A futex wait
/// of the thread on a word inside `[object, object + size)` takes that role
/// and is charged to the object; any other wait is a plain futex wait.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NativeCall {
    /// The condition variable's, rwlock's or joined thread's descriptor's
    /// address (the call's first argument, RDI).
    pub object: u64,
    /// Its size in bytes ([`PTHREAD_COND_SIZE`], [`PTHREAD_RWLOCK_SIZE`],
    /// [`PTHREAD_JOIN_SPAN`]).
    pub size: u32,
    /// The [`LockRole`] its waits take.
    pub role: u32,
}

/// `sizeof(pthread_cond_t)` on x86-64 glibc: its futex words (`__g_signals`,
/// `__g_refs`, `__wrefs`) lie inside.
pub const PTHREAD_COND_SIZE: u32 = 48;
/// `sizeof(pthread_rwlock_t)` on x86-64 glibc (`__readers`,
/// `__writers_futex`, `__wrphase_futex` inside).
pub const PTHREAD_RWLOCK_SIZE: u32 = 56;
/// The span of a glibc thread descriptor (`struct pthread`, what a
/// `pthread_t` points to) a joiner's futex wait lies in: its `tid` word,
/// which the exiting thread clears (offset 720 in glibc 2.3x).
pub const PTHREAD_JOIN_SPAN: u32 = 1024;
/// Threads whose latest [`NativeCall`] is kept (an LRU map: a thread that
/// calls none for long enough is forgotten, which only matters if it then
/// waits inside a condition variable without having called in).
pub const NATIVE_CALLS_MAX: u32 = 16384;

/// A native thread's waits on one lock, in one role (`THREAD_WAITS`):
/// which threads wait, so that reports can name them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ThreadWaitKey {
    /// The lock (or condition variable, rwlock, joined thread).
    pub lock_addr: u64,
    /// The waiting thread's id.
    pub tid: u32,
    /// The waits' [`LockRole`].
    pub role: u32,
}

/// The value of `THREAD_WAITS`: one thread's ended waits on one lock. Only
/// the thread itself updates its entry, so no two CPUs add to it at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ThreadWaitStats {
    /// Waits ended.
    pub waits: u64,
    /// Their total, ns.
    pub wait_ns: u64,
    /// The thread's name at its first wait (`comm`, NUL-padded: a server's
    /// `worker-3`), read in the kernel so that threads gone before the
    /// daemon looks are still named.
    pub comm: [u8; THREAD_COMM_BYTES],
}

/// Bytes of a thread's name (the kernel's `TASK_COMM_LEN`).
pub const THREAD_COMM_BYTES: usize = 16;

/// Most (lock, thread, role) entries of `THREAD_WAITS`.
pub const MAX_THREAD_WAITS: u32 = 8192;

/// Number of [`NativeCode::skip`] ranges.
pub const NATIVE_SKIP_RANGES: usize = 8;

/// Number of [`NativeCode::signal`] ranges.
pub const NATIVE_SIGNAL_RANGES: usize = 8;

/// Words of the user stack scanned, from its top, for a native waiter's
/// return address into the executable.
pub const NATIVE_STACK_WORDS: usize = 48;

/// Capacity of the in-flight maps: one entry per goroutine waiting at
/// once. A full map is counted ([`Counter::InflightErrors`]); an entry
/// whose end was missed is overwritten by its goroutine's next wait.
pub const MAX_INFLIGHT: u32 = 16384;

/// Maximum number of probe sites one daemon can configure.
pub const MAX_SITES: u32 = 4096;

// Layouts both sides rely on. A field moved or resized here fails the build
// of the probes and of the daemon alike.
const _: () = {
    assert!(size_of::<EventHeader>() == 24);
    assert!(offset_of!(EventHeader, tag) == 0);
    assert!(offset_of!(EventHeader, cpu) == 4);
    assert!(offset_of!(EventHeader, tgid) == 8);
    assert!(offset_of!(EventHeader, tid) == 12);
    assert!(offset_of!(EventHeader, timestamp_ns) == 16);

    assert!(size_of::<LockEvent>() == 80);
    assert!(offset_of!(LockEvent, header) == 0);
    assert!(offset_of!(LockEvent, lock_addr) == 24);
    assert!(offset_of!(LockEvent, goroutine) == 32);
    assert!(offset_of!(LockEvent, wait_ns) == 40);
    assert!(offset_of!(LockEvent, caller_ip) == 48);
    assert!(offset_of!(LockEvent, stack_id) == 56);
    assert!(offset_of!(LockEvent, kind) == 64);
    assert!(offset_of!(LockEvent, site_index) == 68);
    assert!(offset_of!(LockEvent, role) == 72);

    assert!(size_of::<RuntimeEvent>() == 40);
    assert!(offset_of!(RuntimeEvent, header) == 0);
    assert!(offset_of!(RuntimeEvent, kind) == 24);
    assert!(offset_of!(RuntimeEvent, reason) == 28);
    assert!(offset_of!(RuntimeEvent, duration_ns) == 32);
    assert!(size_of::<StwPending>() == 16);

    // 216 bytes: the map type rides in what were four u32s of small
    // values, so carrying it cost the ring nothing.
    assert!(size_of::<MapEvent>() == 216);
    assert!(offset_of!(MapEvent, header) == 0);
    assert!(offset_of!(MapEvent, map_addr) == 24);
    assert!(offset_of!(MapEvent, key_type) == 32);
    assert!(offset_of!(MapEvent, key_int) == 40);
    assert!(offset_of!(MapEvent, caller_ip) == 48);
    assert!(offset_of!(MapEvent, key_hash) == 56);
    assert!(offset_of!(MapEvent, map_type) == 64);
    assert!(offset_of!(MapEvent, site_index) == 72);
    assert!(offset_of!(MapEvent, key_len) == 76);
    assert!(offset_of!(MapEvent, copied) == 80);
    assert!(offset_of!(MapEvent, op) == 82);
    assert!(offset_of!(MapEvent, key_kind) == 83);
    assert!(offset_of!(MapEvent, go_kind) == 84);
    assert!(offset_of!(MapEvent, counted) == 85);
    assert!(offset_of!(MapEvent, key) == 88);
    assert!(MAX_KEY_BYTES <= u16::MAX as usize && MAP_OPS <= u8::MAX as usize);

    assert!(size_of::<SiteConfig>() == 64);
    assert!(offset_of!(SiteConfig, arg_deref) == 56);
    assert!(offset_of!(SiteConfig, caller_source) == 60);
    assert!(offset_of!(SiteConfig, count_if) == 44);
    assert!(offset_of!(SiteConfig, time_register) == 48);
    assert!(offset_of!(SiteConfig, start_register) == 52);
    assert!(offset_of!(SiteConfig, kind) == 0);
    assert!(offset_of!(SiteConfig, arg_register) == 4);
    assert!(offset_of!(SiteConfig, goroutine_register) == 8);
    assert!(offset_of!(SiteConfig, skip_when) == 12);
    assert!(offset_of!(SiteConfig, site_index) == 16);
    assert!(offset_of!(SiteConfig, outcome) == 20);
    assert!(offset_of!(SiteConfig, outcome_register) == 24);
    assert!(offset_of!(SiteConfig, addr_adjust) == 28);
    assert!(offset_of!(SiteConfig, role) == 32);
    assert!(offset_of!(SiteConfig, capture_stack) == 36);
    assert!(offset_of!(SiteConfig, track_blocked) == 40);

    assert!(size_of::<MapSiteConfig>() == 52);
    assert!(offset_of!(MapSiteConfig, op) == 0);
    assert!(offset_of!(MapSiteConfig, map_register) == 12);
    assert!(offset_of!(MapSiteConfig, key_shape) == 16);
    assert!(offset_of!(MapSiteConfig, type_register) == 28);
    assert!(offset_of!(MapSiteConfig, filter) == 36);
    assert!(offset_of!(MapSiteConfig, sync_map) == 48);

    assert!(size_of::<GoLayout>() == 40);
    assert!(offset_of!(GoLayout, maptype_key_offset) == 0);
    assert!(offset_of!(GoLayout, type_kind_offset) == 8);
    assert!(offset_of!(GoLayout, pointer_kinds) == 36);

    assert!(size_of::<CasCounts>() == 16);
    assert!(offset_of!(CasCounts, failures) == 8);
    assert!(size_of::<MapCounts>() == 8 * MAP_OPS + 8);
    assert!(offset_of!(MapCounts, map_type) == 8 * MAP_OPS);

    assert!(size_of::<InflightKey>() == 16);
    assert!(offset_of!(InflightKey, space) == 4);
    assert!(offset_of!(InflightKey, goroutine) == 8);
    assert!(size_of::<Inflight>() == 40);
    assert!(offset_of!(Inflight, lock_addr) == 8);
    assert!(offset_of!(Inflight, role) == 16);
    assert!(offset_of!(Inflight, caller_ip) == 24);
    assert!(offset_of!(Inflight, stack_id) == 32);

    assert!(size_of::<NativeCode>() == 16 + 16 * NATIVE_SKIP_RANGES + 16 * NATIVE_SIGNAL_RANGES);
    assert!(offset_of!(NativeCode, signal) == 16 + 16 * NATIVE_SKIP_RANGES);
    assert!(offset_of!(NativeCode, skip) == 16);
    assert!(size_of::<NativeCall>() == 16);
    assert!(size_of::<ThreadWaitKey>() == 16);
    assert!(offset_of!(ThreadWaitKey, tid) == 8);
    assert!(offset_of!(ThreadWaitKey, role) == 12);
    assert!(size_of::<ThreadWaitStats>() == 16 + THREAD_COMM_BYTES);
    assert!(offset_of!(ThreadWaitStats, comm) == 16);
    assert!(offset_of!(NativeCall, size) == 8);
    assert!(offset_of!(NativeCall, role) == 12);

    assert!(size_of::<Control>() == 32);
    assert!(size_of::<RunQueueStats>() == 32 + 8 * WAIT_HIST_BUCKETS);
    assert!(offset_of!(Control, holders) == 20);
    assert!(size_of::<HolderKey>() == 24);
    assert!(size_of::<HolderStats>() == 32 + 8 * WAIT_HIST_BUCKETS);
    assert!(offset_of!(HolderStats, hold_hist) == 32);
    assert!(size_of::<Release>() == 24);
    assert!(size_of::<ConvoyState>() == 48);
    assert!(size_of::<ConvoyStats>() == 48);
    assert!(size_of::<ReleaseLog>() == 24 + 24 * RELEASE_LOG_SLOTS);
    assert!(offset_of!(ReleaseLog, slots) == 24);
    assert!(offset_of!(Control, runtime) == 16);
    assert!(offset_of!(Control, key_sample_shift) == 12);
    assert!(size_of::<LockStatsKey>() == 32);
    assert!(offset_of!(LockStatsKey, stack_id) == 16);
    assert!(offset_of!(LockStatsKey, role) == 24);
    assert!(size_of::<LockStats>() == 32 + 8 * WAIT_HIST_BUCKETS);
    assert!(offset_of!(LockStats, hist) == 32);
    assert!(size_of::<BlockedStats>() == 16);
    assert!(size_of::<PairKey>() == 16);
    assert!(size_of::<PairStack>() == 16);
    assert!(size_of::<KeyCountsKey>() == 24);
    assert!(size_of::<KeyCounts>() == 8 * MAP_OPS);
};

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are `#[repr(C)]`, made only of integers, with no padding
    // (the layout assertions above pin every size).
    unsafe impl aya::Pod for super::SiteConfig {}
    unsafe impl aya::Pod for super::LockEvent {}
    unsafe impl aya::Pod for super::CasCounts {}
    unsafe impl aya::Pod for super::MapSiteConfig {}
    unsafe impl aya::Pod for super::MapEvent {}
    unsafe impl aya::Pod for super::MapCounts {}
    unsafe impl aya::Pod for super::NativeCode {}
    unsafe impl aya::Pod for super::NativeCall {}
    unsafe impl aya::Pod for super::ThreadWaitKey {}
    unsafe impl aya::Pod for super::ThreadWaitStats {}
    unsafe impl aya::Pod for super::GoLayout {}
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::Control {}
    unsafe impl aya::Pod for super::LockStatsKey {}
    unsafe impl aya::Pod for super::LockStats {}
    unsafe impl aya::Pod for super::BlockedStats {}
    unsafe impl aya::Pod for super::KeyCountsKey {}
    unsafe impl aya::Pod for super::KeyCounts {}
    unsafe impl aya::Pod for super::RuntimeEvent {}
    unsafe impl aya::Pod for super::StwPending {}
    unsafe impl aya::Pod for super::HolderKey {}
    unsafe impl aya::Pod for super::HolderStats {}
    unsafe impl aya::Pod for super::ReleaseLog {}
    unsafe impl aya::Pod for super::ConvoyState {}
    unsafe impl aya::Pod for super::ConvoyStats {}
    unsafe impl aya::Pod for super::RunQueueStats {}
}
