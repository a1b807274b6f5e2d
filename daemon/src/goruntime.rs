//! Go runtime facts, in one table: which functions mapwatch probes in each
//! Go version, where their arguments live, and the type layout the map
//! probes decode keys with.
//!
//! Go 1.24 moved `sync.Mutex`'s implementation to `internal/sync.Mutex` and
//! `sync.Map`'s to `internal/sync.HashTrieMap`, and replaced the runtime's
//! bucket maps with swiss tables (same function names, same arguments).
//! Everything that differs between those two generations is a field of
//! [`Generation`]; everything that is the same from Go 1.18 to 1.27 is a
//! constant here. The planner reads this table, and the loader writes
//! [`layout`] into the kernel side, so no other module knows a Go version.

use probe_common::{GeneralRegister as R, GoLayout, KeyShape, LockRole, MapOp};

use crate::model::{LockKind, MapImplementation};

/// A Go version as (major, minor).
pub type GoVersion = (u32, u32);

/// The facts of one generation of Go's `sync` and map implementations.
#[derive(Debug)]
pub struct Generation {
    /// Which versions: from `since` on (inclusive), up to the next
    /// generation.
    pub since: GoVersion,
    /// `sync.Mutex`'s contended slow path.
    pub mutex_slow_path: &'static str,
    /// The mutex's semaphore wait (`sema` at [`MUTEX_SEMA_OFFSET`]).
    pub mutex_semaphore_wait: &'static str,
    /// `sync.Mutex`'s release slow path, `unlockSlow(m, new int32)`:
    /// `Unlock` calls it exactly when the lock's new state is not zero
    /// (waiters queued, a spinner woken, starvation), to hand the lock on.
    pub mutex_release_slow_path: &'static str,
    /// Functions whose compare-and-swaps make up `sync.Map` (globs).
    pub sync_map_cas_patterns: &'static [&'static str],
    /// The `sync.Map` implementation's methods.
    pub sync_map: SyncMapFacts,
    /// How runtime maps are built.
    pub maps: MapImplementation,
    /// Where a runtime map grows (each call one growth), with the register
    /// holding the map there.
    pub map_grows: &'static [(&'static str, R)],
}

/// Where `sync.Map`'s methods are and what they receive.
#[derive(Debug)]
pub struct SyncMapFacts {
    /// The methods' symbol prefix.
    pub prefix: &'static str,
    /// The methods after the user-level ones of [`SYNC_MAP_METHODS`]: the
    /// implementation's internal events (no key).
    pub internal: &'static [(&'static str, MapOp)],
    /// The receiver.
    pub receiver: R,
    /// The `any` key's type word.
    pub key_type: R,
    /// The `any` key's data word.
    pub key_data: R,
}

/// The generations, oldest first.
pub const GENERATIONS: [Generation; 2] = [
    Generation {
        since: (1, 18),
        mutex_slow_path: "sync.(*Mutex).lockSlow",
        mutex_semaphore_wait: "sync.runtime_SemacquireMutex",
        mutex_release_slow_path: "sync.(*Mutex).unlockSlow",
        sync_map_cas_patterns: &["sync.(*Map).*", "sync.(*entry).*"],
        sync_map: SyncMapFacts {
            prefix: "sync.(*Map).",
            internal: &[
                ("Range", MapOp::Range),
                ("Clear", MapOp::Clear),
                ("missLocked", MapOp::Miss),
                ("dirtyLocked", MapOp::DirtyCopy),
            ],
            receiver: R::Rax,
            key_type: R::Rbx,
            key_data: R::Rcx,
        },
        maps: MapImplementation::Buckets,
        // hashGrow(t *maptype, h *hmap): a bigger (or, after many
        // deletes, a same-size) bucket array.
        map_grows: &[("runtime.hashGrow", R::Rbx)],
    },
    Generation {
        since: (1, 24),
        mutex_slow_path: "internal/sync.(*Mutex).lockSlow",
        mutex_semaphore_wait: "internal/sync.runtime_SemacquireMutex",
        mutex_release_slow_path: "internal/sync.(*Mutex).unlockSlow",
        sync_map_cas_patterns: &["internal/sync.(*HashTrieMap[*", "internal/sync.(*entry[*"],
        sync_map: SyncMapFacts {
            prefix: HASH_TRIE_MAP_PREFIX,
            internal: &[
                ("Range", MapOp::Range),
                ("Clear", MapOp::Clear),
                ("expand", MapOp::Expand),
            ],
            // The generic dictionary is in RBX.
            receiver: R::Rax,
            key_type: R::Rcx,
            key_data: R::Rdi,
        },
        maps: MapImplementation::Swiss,
        // The first group of a map made empty; a small map's first table;
        // a table's doubling, or at the most a table holds, its split in
        // two: `(m *Map)` receivers in RAX, `(t *table).grow(typ, m, …)`
        // and `split(typ, m)` with the map third, in RCX.
        map_grows: &[
            ("internal/runtime/maps.(*Map).growToSmall", R::Rax),
            ("internal/runtime/maps.(*Map).growToTable", R::Rax),
            ("internal/runtime/maps.(*table).grow", R::Rcx),
            ("internal/runtime/maps.(*table).split", R::Rcx),
        ],
    },
];

/// The methods of `sync.Map` (and of `HashTrieMap` behind it from Go 1.24)
/// that take a key: user-level operations, whose caller names the
/// operation when the probed method only implements it (`Store` → `Swap`).
pub const SYNC_MAP_METHODS: [(&str, MapOp); 8] = [
    ("Load", MapOp::Load),
    ("Store", MapOp::Store),
    ("LoadOrStore", MapOp::LoadOrStore),
    ("LoadAndDelete", MapOp::LoadAndDelete),
    ("Delete", MapOp::Delete),
    ("Swap", MapOp::Swap),
    ("CompareAndSwap", MapOp::CompareAndSwap),
    ("CompareAndDelete", MapOp::CompareAndDelete),
];

/// The `internal/sync.HashTrieMap` instantiation behind `sync.Map` from Go
/// 1.24 (its methods' symbol prefix).
pub const HASH_TRIE_MAP_PREFIX: &str =
    "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).";

/// The generations a Go version may be: its own, or every one when the
/// version is unknown (then both sets of symbols are looked for).
pub fn generations(version: Option<GoVersion>) -> Vec<&'static Generation> {
    match version {
        Some(version) => GENERATIONS
            .iter()
            .rev()
            .find(|g| version >= g.since)
            .or(GENERATIONS.first())
            .into_iter()
            .collect(),
        None => GENERATIONS.iter().rev().collect(),
    }
}

/// Go's register ABI (ABIInternal) on amd64: the first integer argument.
pub const FIRST_ARGUMENT: R = R::Rax;
/// Go's register ABI on amd64: the current goroutine (`g`).
pub const GOROUTINE: R = R::R14;

/// Offset of `sema` in both generations' `Mutex` (`{state int32; sema
/// uint32}`).
pub const MUTEX_SEMA_OFFSET: u32 = 4;

/// One of `sync.RWMutex`'s semaphore waits.
#[derive(Debug, Clone, Copy)]
pub struct RwMutexWait {
    /// The function.
    pub function: &'static str,
    /// Offset in the RWMutex of the semaphore its argument points at.
    pub semaphore_offset: u32,
    /// Who waits there.
    pub role: LockRole,
}

/// The semaphore waits of `sync.RWMutex`: `RLock` waits for a writer on
/// `readerSem`; `Lock`, once it holds the inner mutex (probed as the mutex
/// slow path at the RWMutex's own address, offset 0), waits for readers on
/// `writerSem`. The layout `{w Mutex (8 bytes); writerSem uint32; readerSem
/// uint32; …}` is the same from Go 1.18 to 1.27.
pub const RWMUTEX_WAITS: [RwMutexWait; 2] = [
    RwMutexWait {
        function: "sync.runtime_SemacquireRWMutexR",
        semaphore_offset: 12,
        role: LockRole::RwReader,
    },
    RwMutexWait {
        function: "sync.runtime_SemacquireRWMutex",
        semaphore_offset: 8,
        role: LockRole::RwWriter,
    },
];

/// `sync.RWMutex`'s releases that wake waiters (receiver in RAX; the same
/// from Go 1.18 to 1.27, `sync.RWMutex` never moved): `rUnlockSlow`, the
/// last reader leaving for a writer that waits, and the writer's `Unlock`,
/// which releases the readers queued behind it (every writer unlock: it is
/// not inlined, and it has no slow path of its own). The inner mutex's
/// release is the mutex's slow path at the RWMutex's own address.
/// The role says which: a reader's release (`rUnlockSlow`) or the writer's
/// (`Unlock`, which also ends a writer convoy).
pub const RWMUTEX_RELEASES: [(&str, LockRole); 2] = [
    ("sync.(*RWMutex).rUnlockSlow", LockRole::RwReader),
    ("sync.(*RWMutex).Unlock", LockRole::RwWriter),
];

/// The runtime's own lock (`runtime.mutex`: channels, timers, the
/// scheduler, the heap), its address in RAX. Its slow path is found in its
/// code (see [`crate::plan::rtlock`]).
pub const RUNTIME_LOCK: &str = "runtime.lock2";

/// What `lock2` may call between acquiring a runtime lock and returning:
/// the clock, when it times the wait for Go's own mutex profile (Go ≥
/// 1.25). These return without waiting, so the waits end before them.
pub const RUNTIME_LOCK_PROMPT_CALLS: [&str; 3] = [
    "runtime.nanotime1.abi0",
    "runtime.nanotime1",
    "runtime.cputicks.abi0",
];

/// Where versions that time their runtime-lock waits with a `lockTimer`
/// (Go 1.22–1.24) begin and end a wait: `lock2` builds the timer on its
/// stack once the first exchange failed (which clobbers RAX before any
/// instruction of its slow path the kernel emulates), calls `begin` on it,
/// and `end` at each acquisition after that. Both get the timer's address
/// in RAX; the timer's first field is the lock (`lockTimer{lock *mutex;
/// …}`), which the probe reads through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeLockTimer {
    /// Called once per contended acquisition.
    pub begin: &'static str,
    /// Called at each way out of the slow path.
    pub end: &'static str,
}

/// The `lockTimer` methods, where a version has them.
pub const RUNTIME_LOCK_TIMER: RuntimeLockTimer = RuntimeLockTimer {
    begin: "runtime.(*lockTimer).begin",
    end: "runtime.(*lockTimer).end",
};

/// Where the runtime makes a goroutine (its `g` in RAX) runnable.
pub const READY: &str = "runtime.ready";

/// Where a GC cycle ends: mark termination, once per cycle, where the
/// runtime counts `NumGC` (every Go version).
pub const GC_MARK_TERMINATION: &str = "runtime.gcMarkTermination";

/// Where the world starts stopping (every Go version).
pub const STOP_THE_WORLD: &str = "runtime.stopTheWorldWithSema";

/// Where the world starts again (every Go version).
pub const START_THE_WORLD: &str = "runtime.startTheWorldWithSema";

/// The first version whose `stopTheWorldWithSema` takes its reason (an
/// `stwReason`, a uint8 in RAX); before, it takes none.
pub const STW_REASON_SINCE: GoVersion = (1, 21);

/// The first version whose `startTheWorldWithSema(now int64, w worldStop)`
/// is passed the pause's own figures, by Go's register ABI: `now` (the end,
/// or 0 when the runtime reads it inside) in RAX, then the `worldStop`'s
/// fields, `reason` in RBX and `startedStopping` in RCX. The pause is then
/// measured as Go measures it for `/sched/pauses/total/*:seconds`.
pub const WORLD_STOP_ARGS_SINCE: GoVersion = (1, 22);

/// Where `startTheWorldWithSema` finds the pause's figures (Go ≥ 1.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldStopArgs {
    /// `now`: the pause's end, or 0.
    pub now: R,
    /// `w.reason`.
    pub reason: R,
    /// `w.startedStopping`.
    pub started: R,
}

/// A version's [`WorldStopArgs`], if it passes them.
pub fn world_stop_args(version: Option<GoVersion>) -> Option<WorldStopArgs> {
    version
        .is_some_and(|v| v >= WORLD_STOP_ARGS_SINCE)
        .then_some(WorldStopArgs {
            now: R::Rax,
            reason: R::Rbx,
            started: R::Rcx,
        })
}

/// What `startTheWorldWithSema` calls right after reading the end of the
/// pause itself (and tracing it): where a pause it was passed no end for
/// ends (Go ≥ 1.22).
pub const AFTER_RESTART_TIME: &str = "runtime.wakep";

/// The `stwReason`s of GC pauses (`stwGCMarkTerm`, `stwGCSweepTerm`): what
/// Go counts in `/sched/pauses/total/gc:seconds`; the others are "other".
pub const GC_STW_REASONS: [u32; 2] = [1, 2];

/// Where a version's `stopTheWorldWithSema` has its reason, if it takes
/// one.
pub fn stw_reason_register(version: Option<GoVersion>) -> Option<R> {
    version
        .is_some_and(|v| v >= STW_REASON_SINCE)
        .then_some(FIRST_ARGUMENT)
}

/// Go functions that perform a compare-and-swap and return its success as a
/// boolean in AL: calls to them count as CAS attempts at the call site.
pub const CAS_FUNCTIONS: &[&str] = &[
    "sync/atomic.CompareAndSwap*",
    "sync/atomic.(*).CompareAndSwap",
    "runtime/internal/atomic.Cas*",
    "internal/runtime/atomic.Cas*",
];

/// The runtime's map functions, the same names and arguments for bucket maps
/// and swiss tables: (function, operation, key shape, integer width).
pub const RUNTIME_MAP_FUNCTIONS: &[(&str, MapOp, KeyShape, u32)] = &[
    ("runtime.mapaccess1", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess2", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess1_fat", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess2_fat", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess1_fast32", MapOp::Load, KeyShape::Int, 4),
    ("runtime.mapaccess2_fast32", MapOp::Load, KeyShape::Int, 4),
    ("runtime.mapaccess1_fast64", MapOp::Load, KeyShape::Int, 8),
    ("runtime.mapaccess2_fast64", MapOp::Load, KeyShape::Int, 8),
    ("runtime.mapaccess1_faststr", MapOp::Load, KeyShape::Str, 0),
    ("runtime.mapaccess2_faststr", MapOp::Load, KeyShape::Str, 0),
    ("runtime.mapassign", MapOp::Store, KeyShape::Pointer, 0),
    ("runtime.mapassign_fast32", MapOp::Store, KeyShape::Int, 4),
    (
        "runtime.mapassign_fast32ptr",
        MapOp::Store,
        KeyShape::Int,
        4,
    ),
    ("runtime.mapassign_fast64", MapOp::Store, KeyShape::Int, 8),
    (
        "runtime.mapassign_fast64ptr",
        MapOp::Store,
        KeyShape::Int,
        8,
    ),
    ("runtime.mapassign_faststr", MapOp::Store, KeyShape::Str, 0),
    ("runtime.mapdelete", MapOp::Delete, KeyShape::Pointer, 0),
    ("runtime.mapdelete_fast32", MapOp::Delete, KeyShape::Int, 4),
    ("runtime.mapdelete_fast64", MapOp::Delete, KeyShape::Int, 8),
    ("runtime.mapdelete_faststr", MapOp::Delete, KeyShape::Str, 0),
];

/// Where the runtime map functions receive their arguments.
pub mod runtime_map_registers {
    use super::R;
    /// The map type (`*abi.MapType`, `*abi.SwissMapType`).
    pub const MAP_TYPE: R = R::Rax;
    /// The map header.
    pub const MAP: R = R::Rbx;
    /// The key (a pointer, an integer, or a string's data).
    pub const KEY: R = R::Rcx;
    /// A string key's length.
    pub const KEY_LEN: R = R::Rdi;
}

/// Go's type kinds (`internal/abi.Kind`), the same numbers from Go 1.18 to
/// 1.27.
pub mod kind {
    /// `int`: the first integer kind.
    pub const INT: u32 = 2;
    /// `int64`: the last signed one (`int`, `int8` … `int64` are 2 … 6).
    pub const INT64: u32 = 6;
    /// `uintptr`: the last integer kind.
    pub const UINTPTR: u32 = 12;
    /// `chan`.
    pub const CHAN: u32 = 18;
    /// `func`.
    pub const FUNC: u32 = 19;
    /// `interface{…}`.
    pub const INTERFACE: u32 = 20;
    /// `map`.
    pub const MAP: u32 = 21;
    /// `*T`.
    pub const POINTER: u32 = 22;
    /// `string`.
    pub const STRING: u32 = 24;
    /// `unsafe.Pointer`.
    pub const UNSAFE_POINTER: u32 = 26;

    /// Kinds whose values are one machine word that an interface holds in
    /// its data word itself.
    pub const POINTER_SHAPED: [u32; 5] = [CHAN, FUNC, MAP, POINTER, UNSAFE_POINTER];

    /// Whether integers of this kind are signed.
    pub fn is_signed(kind: u32) -> bool {
        (INT..=INT64).contains(&kind)
    }

    /// Whether values of this kind are shown as addresses.
    pub fn is_address(kind: u32) -> bool {
        kind == UINTPTR || POINTER_SHAPED.contains(&kind)
    }
}

/// The type layout the map probes decode keys with (`abi.Type`,
/// `abi.MapType`/`abi.SwissMapType`, `abi.InterfaceType`), the same from Go
/// 1.18 to 1.27: the key type follows the 48-byte `abi.Type` in a map type;
/// an interface type's methods slice is at 64 (after `abi.Type` and the
/// package path). Before Go 1.26, `Kind_` keeps flags above the low five
/// bits.
pub fn layout(_version: Option<GoVersion>) -> GoLayout {
    GoLayout {
        maptype_key_offset: 48,
        type_size_offset: 0,
        type_kind_offset: 23,
        kind_mask: 31,
        interface_methods_offset: 64,
        kind_string: kind::STRING,
        kind_interface: kind::INTERFACE,
        kind_int_first: kind::INT,
        kind_int_last: kind::UINTPTR,
        pointer_kinds: kind::POINTER_SHAPED
            .iter()
            .fold(0, |mask, &kind| mask | (1 << kind)),
    }
}

/// The lock types DWARF names global locks by.
pub const LOCK_TYPES: [(&str, LockKind); 4] = [
    ("sync.Mutex", LockKind::Mutex),
    ("internal/sync.Mutex", LockKind::Mutex),
    ("sync.RWMutex", LockKind::RwMutex),
    ("internal/sync.RWMutex", LockKind::RwMutex),
];

/// The lock kind of a Go type as DWARF names it, if it is a lock.
pub fn lock_type(type_name: &str) -> Option<LockKind> {
    LOCK_TYPES
        .iter()
        .find(|(name, _)| *name == type_name)
        .map(|&(_, kind)| kind)
}

/// Prefixes of type descriptor symbols (`type:main.point` from Go 1.20,
/// `type.main.point` before).
pub const TYPE_SYMBOL_PREFIXES: [&str; 2] = ["type:", "type."];

/// Names of the symbol at `moduledata.gofunc`, the base of funcdata
/// offsets (inline trees): Go 1.20+, then Go 1.18 and 1.19.
pub const GOFUNC_SYMBOLS: [&str; 2] = ["go:func.*", "go.func.*"];

/// The user-level `sync.Map` operation a function is, if it is one of the
/// methods of either generation (`sync.(*Map).Store`, or a `HashTrieMap`
/// method).
pub fn sync_map_operation(function: &str) -> Option<MapOp> {
    let method = function.strip_prefix("sync.(*Map).").or_else(|| {
        function
            .strip_prefix("internal/sync.(*HashTrieMap[")
            .and_then(|rest| rest.split_once("]).").map(|(_, m)| m))
    })?;
    SYNC_MAP_METHODS
        .iter()
        .chain(
            GENERATIONS
                .iter()
                .flat_map(|g| g.sync_map.internal)
                .filter(|(_, op)| op.is_user_op()),
        )
        .find(|(name, _)| *name == method)
        .map(|&(_, op)| op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_follows_the_version() {
        let slow = |v| {
            generations(v)
                .iter()
                .map(|g| g.mutex_slow_path)
                .collect::<Vec<_>>()
        };
        assert_eq!(slow(Some((1, 23))), ["sync.(*Mutex).lockSlow"]);
        assert_eq!(slow(Some((1, 24))), ["internal/sync.(*Mutex).lockSlow"]);
        assert_eq!(slow(Some((1, 27))), ["internal/sync.(*Mutex).lockSlow"]);
        assert_eq!(slow(Some((1, 12))), ["sync.(*Mutex).lockSlow"]);
        assert_eq!(slow(None).len(), 2);
    }

    #[test]
    fn sync_map_methods_name_their_operation() {
        assert_eq!(sync_map_operation("sync.(*Map).Store"), Some(MapOp::Store));
        assert_eq!(
            sync_map_operation(&format!("{HASH_TRIE_MAP_PREFIX}Delete")),
            Some(MapOp::Delete)
        );
        assert_eq!(sync_map_operation("sync.(*Map).missLocked"), None);
        assert_eq!(sync_map_operation("main.f"), None);
    }

    #[test]
    fn layout_marks_pointer_shaped_kinds() {
        let layout = layout(Some((1, 27)));
        for kind in 0..32u32 {
            let marked = layout.pointer_kinds & (1 << kind) != 0;
            assert_eq!(marked, kind::POINTER_SHAPED.contains(&kind), "kind {kind}");
        }
        assert!(kind::is_signed(6) && !kind::is_signed(7));
        assert_eq!(lock_type("internal/sync.RWMutex"), Some(LockKind::RwMutex));
    }
}

/// How a version's runtime maps are laid out in memory (amd64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapLayout {
    /// Bucket maps (Go ≤ 1.23).
    Buckets(BucketMapLayout),
    /// Swiss tables (Go ≥ 1.24).
    Swiss(SwissMapLayout),
}

/// A version's map layout (its generation's); `None` without a version.
pub fn map_layout(version: Option<GoVersion>) -> Option<MapLayout> {
    version?;
    Some(match generations(version)[0].maps {
        MapImplementation::Buckets => MapLayout::Buckets(BUCKET_MAP),
        MapImplementation::Swiss => MapLayout::Swiss(SWISS_MAP),
        // Not a runtime map's.
        MapImplementation::SyncMap => return None,
    })
}

impl MapLayout {
    /// Which implementation the layout is of.
    pub fn implementation(&self) -> MapImplementation {
        match self {
            Self::Buckets(_) => MapImplementation::Buckets,
            Self::Swiss(_) => MapImplementation::Swiss,
        }
    }
}

/// `runtime.hmap`, its buckets and its type (Go ≤ 1.23; the same from Go
/// 1.11 on amd64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketMapLayout {
    /// The header's size.
    pub header_size: usize,
    /// `count int`: live entries (what `len` returns).
    pub count: usize,
    /// `B uint8`: log2 of the buckets.
    pub log_buckets: usize,
    /// `noverflow uint16`: the runtime's approximate overflow buckets.
    pub noverflow: usize,
    /// `buckets unsafe.Pointer`.
    pub buckets: usize,
    /// `oldbuckets unsafe.Pointer`: non-nil while growing.
    pub oldbuckets: usize,
    /// `maptype.BucketSize uint16` (after `Type`, three pointers, the
    /// hasher and two `uint8` sizes).
    pub type_bucket_size: usize,
    /// Cells per bucket; a bucket begins with their `tophash` bytes and
    /// ends with the overflow pointer.
    pub cells: usize,
    /// `tophash` of a deleted cell (`emptyOne`).
    pub empty_one: u8,
    /// The least `tophash` of a live cell (`minTopHash`); 2 to 4 mark
    /// evacuated cells of an old bucket.
    pub min_top_hash: u8,
}

/// The bucket map layout.
pub const BUCKET_MAP: BucketMapLayout = BucketMapLayout {
    header_size: 48,
    count: 0,
    log_buckets: 9,
    noverflow: 10,
    buckets: 16,
    oldbuckets: 24,
    type_bucket_size: 82,
    cells: 8,
    empty_one: 1,
    min_top_hash: 5,
};

/// `internal/runtime/maps.Map`, its tables and groups, and its type (Go ≥
/// 1.24; `tombstonePossible`, 1.25, sits in padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwissMapLayout {
    /// The header's size.
    pub header_size: usize,
    /// `used uint64`: live entries.
    pub used: usize,
    /// `dirPtr unsafe.Pointer`: the directory of tables, or the one group
    /// of a small map (`dirLen` 0).
    pub dir_ptr: usize,
    /// `dirLen int`.
    pub dir_len: usize,
    /// `globalDepth uint8`: log2 of the directory's length.
    pub global_depth: usize,
    /// The table's size.
    pub table_size: usize,
    /// `table.used uint16`.
    pub table_used: usize,
    /// `table.capacity uint16`: slots.
    pub table_capacity: usize,
    /// `table.growthLeft uint16`: inserts into empty slots before the table
    /// must grow (or rehash).
    pub table_growth_left: usize,
    /// `table.localDepth uint8`.
    pub table_local_depth: usize,
    /// `table.groups.data unsafe.Pointer`.
    pub table_groups: usize,
    /// `table.groups.lengthMask uint64`: groups − 1.
    pub table_length_mask: usize,
    /// `MapType.GroupSize uintptr` (after `Type`, three pointers and the
    /// hasher).
    pub type_group_size: usize,
    /// Slots per group; a group begins with their control bytes (one
    /// 8-byte word).
    pub slots: usize,
    /// Control byte of an empty slot.
    pub ctrl_empty: u8,
    /// Control byte of a deleted slot (a tombstone); a full slot's has the
    /// high bit clear.
    pub ctrl_deleted: u8,
    /// The most slots a table holds before it splits.
    pub max_table_capacity: u64,
    /// The average full slots per group at which a table grows (7 of 8).
    pub max_avg_group_load: u64,
}

/// The swiss map layout.
pub const SWISS_MAP: SwissMapLayout = SwissMapLayout {
    header_size: 48,
    used: 0,
    dir_ptr: 16,
    dir_len: 24,
    global_depth: 32,
    table_size: 32,
    table_used: 0,
    table_capacity: 2,
    table_growth_left: 4,
    table_local_depth: 6,
    table_groups: 16,
    table_length_mask: 24,
    type_group_size: 80,
    slots: 8,
    ctrl_empty: 0x80,
    ctrl_deleted: 0xfe,
    max_table_capacity: 1024,
    max_avg_group_load: 7,
};

/// `sync.Map` before Go 1.24 (amd64): `{mu Mutex; read …; dirty
/// map[any]*entry; misses int}`, where `read` points at a `readOnly{m
/// map[any]*entry; amended bool}`. Go 1.20 made `read` an
/// `atomic.Pointer[readOnly]` (one word); before, it was an `atomic.Value`
/// (an interface: type word, then the pointer). From Go 1.24 `sync.Map` is
/// a `HashTrieMap`, which has no read-only copy to promote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncMapLayout {
    /// Where the pointer to the `readOnly` is.
    pub read: usize,
    /// `dirty map[any]*entry`: a `*hmap`, nil right after a promotion.
    pub dirty: usize,
    /// `misses int`: loads that missed the read-only map since the last
    /// promotion.
    pub misses: usize,
    /// `readOnly.m`: a `*hmap`.
    pub read_only_map: usize,
    /// `readOnly.amended bool`: the dirty map holds keys the read-only
    /// one does not.
    pub read_only_amended: usize,
}

/// A version's `sync.Map` layout; `None` from Go 1.24 on, or without a
/// version.
pub fn sync_map_layout(version: Option<GoVersion>) -> Option<SyncMapLayout> {
    let version = version?;
    if version >= (1, 24) {
        return None;
    }
    let (read, dirty, misses) = if version >= (1, 20) {
        (8, 16, 24)
    } else {
        (16, 24, 32)
    };
    Some(SyncMapLayout {
        read,
        dirty,
        misses,
        read_only_map: 0,
        read_only_amended: 8,
    })
}
