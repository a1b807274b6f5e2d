//! The vocabulary every layer shares: what mapwatch observes, as types.
//!
//! Nothing here does I/O or knows where its values come from. The
//! aggregator fills a [`Snapshot`] once per tick and publishes it; every view
//! and exporter (text, JSON, HTML, pprof, SVG, metrics, JSON lines, the live
//! views) reads only these types. Values stay typed — [`Frame`]s, [`Key`]s,
//! kinds and reasons as enums — until a view formats them: the `Display`
//! impls here are the one textual form each has, and JSON serializes enums
//! by their `serde` renames.

mod frame;
mod gc;
mod glob;
pub mod hash;
mod heatmap;
mod key;
mod overhead;
mod runqueue;
mod snapshot;
mod timeline;

pub use frame::{
    own_frame, own_frame_index, CodeLocation, Frame, ModuleOffset, SourceLine, RUNTIME_LOCK_FRAMES,
};
pub use gc::{GcReport, GcSecond, SpikeContext};
pub use glob::glob_match;
pub use heatmap::{bucket_label, Heatmap, HeatmapKind, RowLabel, MAX_COLUMNS};
pub use key::Key;
pub use overhead::{
    scaled, scaled_seconds, GovernorAction, GovernorSetting, OverheadReport, Sampling, TrapCost,
    INDIRECT_FACTOR,
};
pub use probe_common::{MapOp, SkipWhen, MAP_OPS};
pub use runqueue::{
    log2_bucket_end_ns, log2_buckets, log2_quantile_ns, RunQueueFigures, RunQueueReport,
    RunQueueSecond,
};
pub use snapshot::{
    Advice, CallSite, CasCondition, CasProbe, CasReport, ConvoyReport, Finding, HoldTimes,
    HolderSite, KeyReport, LockReport, MapHealth, MapImplementation, MapReadingCost, MapReport,
    MapsHint, MemoryRegion, ModuleMapping, OpCounts, ProbeInfo, RecordedWindow, Snapshot,
    TargetInfo, ThreadGroup, WaitBucket, WriterSite, TOP_CALL_SITES, TOP_KEYS, TOP_THREAD_GROUPS,
};
pub use timeline::{outside, LockSecond, SecondRange, Spike, TIMELINE_LOCKS, TIMELINE_SECONDS};

use serde::Serialize;

/// Which kind of lock a lock report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// `sync.Mutex` (or `internal/sync.Mutex`).
    Mutex,
    /// `sync.RWMutex`: known from DWARF, or from a reader or writer
    /// semaphore wait seen on it.
    #[serde(rename = "rwmutex")]
    RwMutex,
    /// A futex word waited on (`--futex`): a native mutex (glibc's
    /// `pthread_mutex_t`, Rust's std Mutex, C++'s `std::mutex`), or another
    /// futex user.
    Futex,
    /// A glibc `pthread_rwlock_t` (C++'s `std::shared_mutex`), its readers'
    /// and writers' waits apart (`--futex`).
    Rwlock,
    /// A glibc `pthread_cond_t` (C++'s `std::condition_variable`): its waits
    /// are for a signal, not for a lock, and are reported apart from lock
    /// contention (`signal_waits`).
    Condvar,
    /// A thread joined (`pthread_join`: C++'s `std::thread::join`, Rust's
    /// `JoinHandle::join`), its descriptor's address: a wait for a thread's
    /// exit, reported apart from lock contention (`signal_waits`).
    #[serde(rename = "thread_join")]
    ThreadJoin,
    /// A Go runtime-internal lock (`runtime.mutex`: a channel's, the
    /// scheduler's, a timer heap's, …), seen with `--probe rtlocks`.
    Runtime,
}

/// Which kind of map a map report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum MapKind {
    /// Go's `sync.Map`.
    #[serde(rename = "sync.Map")]
    SyncMap,
    /// A runtime map (`map[K]V`).
    #[serde(rename = "map")]
    Runtime,
}

impl std::fmt::Display for MapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SyncMap => "sync.Map",
            Self::Runtime => "map",
        })
    }
}

impl std::fmt::Display for LockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mutex => "mutex",
            Self::RwMutex => "rwmutex",
            Self::Futex => "futex",
            Self::Rwlock => "rwlock",
            Self::Condvar => "condvar",
            Self::ThreadJoin => "thread_join",
            Self::Runtime => "runtime",
        })
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The target process exited.
    TargetExited,
    /// `--duration` elapsed.
    Duration,
    /// SIGINT (Ctrl-C) or SIGTERM.
    Signal,
    /// `q` in the live view.
    Quit,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TargetExited => "target-exited",
            Self::Duration => "duration",
            Self::Signal => "signal",
            Self::Quit => "quit",
        })
    }
}

/// Why the daemon could not watch a selected process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachFailure {
    /// Its executable could not be read or resolved (or it exited first).
    Target,
    /// Nothing in it could be probed as asked.
    Plan,
    /// The BPF object did not load.
    Load,
    /// Its probes could not be attached.
    Attach,
    /// `--max-targets` were watched already.
    MaxTargets,
}

impl std::fmt::Display for AttachFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Target => "target",
            Self::Plan => "plan",
            Self::Load => "load",
            Self::Attach => "attach",
            Self::MaxTargets => "max-targets",
        })
    }
}

/// What an attached probe observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// Entry into a lock's contended slow path.
    LockEntry,
    /// A `RET` of a lock's slow path (wait times).
    LockReturn,
    /// A jump by which a lock's slow path enters its epilogue (wait times).
    LockExit,
    /// A compare-and-swap's outcome.
    Cas,
    /// A map operation.
    Map,
    /// Entry into a lock's semaphore wait (`--blocked-time`).
    SemaEntry,
    /// Go's `runtime.ready` (`--blocked-time`).
    Ready,
    /// Go's GC cycles and stop-the-world pauses.
    Runtime,
    /// Entry into a lock's release slow path (holder blame).
    LockRelease,
}

/// How the kernel runs a probed instruction, which sets the cost of a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteCost {
    /// The function's first instruction (likely single-stepped).
    Entry,
    /// An instruction the kernel emulates in its trap handler (cheap).
    Emulated,
    /// An instruction the kernel single-steps out of line (dear).
    SingleStepped,
}

impl std::fmt::Display for SiteCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Entry => "entry",
            Self::Emulated => "emulated",
            Self::SingleStepped => "single-stepped",
        })
    }
}

/// What a built-in CAS source belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Builtin {
    /// Go's `sync.Map` implementation.
    #[serde(rename = "sync.Map")]
    SyncMap,
}

/// Probe counters summed over all CPUs, as the kernel side keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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
    /// Lock hits written as events because the kernel's lock table was
    /// full (counted all the same).
    pub lock_stats_full: u64,
    /// Map operations written as events because the kernel's key table
    /// was full (counted all the same).
    pub key_counts_full: u64,
    /// Hits of exit sites whose branch did not lead out of the slow path.
    pub not_exits: u64,
    /// Map operations counted in the kernel's key table.
    pub map_ops_counted: u64,
    /// Probe hits while the probes were switched off.
    pub disabled_hits: u64,
    /// Map operations whose key was not sampled (counted per map only).
    pub keys_unsampled: u64,
    /// Go runtime events written: GC cycles and stop-the-world pauses.
    pub runtime_events: u64,
    /// Restarts of the world whose stop was not seen (attached meanwhile).
    pub stw_unmatched: u64,
    /// Releases not charged to their holder: its table was full.
    pub holder_stats_full: u64,
    /// Releases not logged: the table of release logs was full (the
    /// waiting they ended went to an earlier release, or to none).
    pub release_logs_full: u64,
    /// Waits that spanned more releases than a lock's log keeps: their
    /// oldest part went to the oldest release kept.
    pub release_log_short: u64,
    /// Releases to waiters counted for their holders.
    pub releases: u64,
    /// Threads of the target the scheduler probes could not track (their
    /// table was full): their waits for a CPU are missing.
    pub run_queue_threads_full: u64,
    /// Runs of the (host-wide) scheduler tracepoints about the target's
    /// threads: what the overhead governor charges the target for.
    pub sched_target_runs: u64,
    /// Runs of the (host-wide) futex tracepoints in the target's threads.
    pub futex_target_runs: u64,
    /// Native waits whose thread was not noted (its table was full): the
    /// locks' thread lists miss them, their figures do not.
    pub thread_waits_full: u64,
}

/// Serializes an address as `0x…` hex, as every report shows addresses.
pub(crate) fn hex<S: serde::Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{value:#x}"))
}

/// How reports name a [`SkipWhen`].
pub fn skip_when_name(value: SkipWhen) -> &'static str {
    match value {
        SkipWhen::Never => "never",
        SkipWhen::BelowOrEqual => "below-or-equal",
        SkipWhen::Below => "below",
    }
}

/// Serializes a [`SkipWhen`] by its report name.
pub(crate) fn skip_name<S: serde::Serializer>(
    value: &SkipWhen,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(skip_when_name(*value))
}

/// A snapshot for tests (views, recorder): one contended mutex with a call site,
/// one map with a hot key, one CAS site.
#[cfg(test)]
pub(crate) fn sample_snapshot() -> Snapshot {
    let frame = |function: &str, offset: Option<u64>, inlined: bool, line: u32| Frame {
        function: Some(function.into()),
        offset,
        source: Some(SourceLine {
            file: "/src/main.go".into(),
            line,
        }),
        inlined,
        address: 0x401000,
        module: None,
    };
    let mut ops = [0u64; MAP_OPS];
    ops[MapOp::Load as usize] = 100;
    let key = Key::Str {
        text: "k1".into(),
        truncated: false,
    };
    let mut key_ops = [0u64; MAP_OPS];
    key_ops[MapOp::Load as usize] = 75;
    let mut internal = [0u64; MAP_OPS];
    internal[MapOp::Grow as usize] = 2;
    let site = CodeLocation {
        function: "main.f".into(),
        offset: 0x10,
    };
    Snapshot {
        target: TargetInfo {
            pid: 7,
            exe: "/bin/x".into(),
            comm: "x".into(),
            go_version: Some("go1.27.3".into()),
            build_id: None,
            debug_file: None,
            modules: Vec::new(),
        },
        duration_seconds: 3.0,
        stopped_by: Some(StopReason::TargetExited),
        events_lost: 0,
        probes: vec![ProbeInfo {
            kind: ProbeKind::LockEntry,
            function: "internal/sync.(*Mutex).lockSlow".into(),
            address: 0x47_6184,
            offset: 4,
            site: SiteCost::Emulated,
            skip_when: SkipWhen::BelowOrEqual,
        }],
        probe_counters: ProbeCounters {
            hits: 24,
            ..ProbeCounters::default()
        },
        signal_waits: Vec::new(),
        locks: vec![LockReport {
            name: Some("main.hotMu".into()),
            region: None,
            address: 0xc000_1000,
            kind: LockKind::Mutex,
            contentions: 12,
            per_cpu: vec![6, 6],
            blocked_seconds_total: None,
            blocked_parks: None,
            acquisitions: 12,
            wait_seconds_total: 0.002,
            wait_seconds_max: 0.0005,
            wait_histogram: vec![WaitBucket {
                ns_min: 1 << 17,
                ns_max: 1 << 18,
                count: 12,
            }],
            reader_wait_seconds_total: None,
            writer_wait_seconds_total: None,
            reader_contentions: None,
            top_call_sites: vec![CallSite {
                frames: vec![
                    frame("sync.(*Mutex).Lock", None, true, 46),
                    frame("main.worker", Some(0x2c), false, 12),
                ]
                .into(),
                wait_seconds: 0.002,
                count: 12,
                share: 1.0,
            }],
            wait_caused_seconds_total: Some(0.0018),
            top_holder_sites: vec![HolderSite {
                frames: vec![
                    frame("sync.(*Mutex).Unlock", None, true, 60),
                    frame("main.holder", Some(0x40), false, 20),
                ]
                .into(),
                wait_caused_seconds: 0.0018,
                releases: 9,
                share: 1.0,
                contended_hold: Some(HoldTimes {
                    count: 3,
                    seconds_total: 0.003,
                    histogram: vec![WaitBucket {
                        ns_min: 1 << 19,
                        ns_max: 1 << 20,
                        count: 3,
                    }],
                }),
            }],
            convoys: Some(ConvoyReport {
                episodes: 2,
                longest_seconds: 0.04,
                seconds_total: 0.07,
                max_readers_stalled: 6,
                readers_stalled: 11,
                reader_wait_caused_seconds: 0.3,
                top_writer_sites: vec![WriterSite {
                    frames: vec![frame("main.writer", Some(0x1a), false, 53)].into(),
                    episodes: 2,
                    seconds_total: 0.07,
                    readers_stalled: 11,
                }],
            }),
            threads: Vec::new(),
            exact: true,
            sampled_fraction: 1.0,
        }],
        cas: vec![CasReport {
            site: site.clone(),
            function: "main.f".into(),
            builtin: None,
            source: Some(SourceLine {
                file: "/src/main.go".into(),
                line: 30,
            }),
            address: 0x40_1010,
            probe: CasProbe {
                mnemonic: "je".into(),
                address: 0x40_101a,
                cas_address: 0x40_1010,
                via_call: false,
                emulated: true,
                condition: CasCondition::Zf { set: false },
                ambiguous: false,
            },
            attempts: 9,
            failures: 2,
            failure_ratio: 2.0 / 9.0,
            per_cpu_failures: vec![1, 1],
            exact: true,
            sampled_fraction: 1.0,
        }],
        maps: vec![MapReport {
            name: Some("main.cache".into()),
            address: 0xc000_2000,
            kind: MapKind::Runtime,
            ops: OpCounts::from_counts(&ops, MapOp::is_user_op),
            total: 100,
            internal: OpCounts::from_counts(&internal, |op| !op.is_user_op()),
            keyed: true,
            per_cpu: vec![50, 50],
            distinct_keys: 2,
            top_keys: vec![KeyReport {
                key: key.clone(),
                ops: OpCounts::from_counts(&key_ops, MapOp::is_user_op),
                total: 75,
                exact: true,
                error: 0,
                per_cpu: vec![40, 35],
            }],
            top_k_capacity: 1024,
            top_k_error_bound: 0,
            advice: Vec::new(),
            exact: true,
            sampled_fraction: 1.0,
            key_sampled_fraction: 1.0,
            health: Some(MapHealth {
                implementation: MapImplementation::Swiss,
                entries: 1000,
                peak_entries: 1200,
                grows: 2,
                capacity: 2000,
                load_factor: 0.5,
                tombstones: 250,
                tombstone_ratio: 0.125,
                buckets: None,
                overflow_buckets: None,
                longest_chain: None,
                growing: None,
                tables: Some(2),
                directory: Some(2),
                growth_left: Some(500),
                read_entries: None,
                dirty_entries: None,
                amended: None,
                misses: None,
                promotions: None,
                promotions_per_second: None,
                entries_copied_per_second: None,
                occupancy: vec![0, 0, 0, 0, 100, 100, 50, 0, 0],
                skew: None,
                complete: true,
                consistent: true,
                readings: 5,
                failed_readings: 0,
                error: None,
                replaced: false,
                sampled_at: 4.0,
                bytes_read: 34_000,
                read_microseconds: 25.0,
            }),
        }],
        maps_hint: None,
        map_events: 100,
        mapwatch_peak_rss_bytes: 1 << 20,
        map_reading: Some(MapReadingCost {
            budget_bytes_per_second: 8 << 20,
            maps: 1,
            bytes: 34_000,
            microseconds: 25.0,
        }),
        heatmaps: vec![{
            let mut map = Heatmap::new(
                HeatmapKind::CasFailuresBySite,
                1.0,
                vec![RowLabel::Site(site)],
                3,
            );
            map.add(0, 1, 2);
            map
        }],
        started_unix_seconds: 1_796_206_000.0,
        timeline: Vec::new(),
        timeline_unwatched: Vec::new(),
        spikes: Vec::new(),
        gc: Some(GcReport {
            cycles: 3,
            pauses: 7,
            pause_seconds_total: 0.0015,
            pause_seconds_max: 0.0004,
            gc_pauses: Some(6),
            gc_pause_seconds_total: Some(0.0012),
        }),
        gc_timeline: Vec::new(),
        run_queue: None,
        run_queue_timeline: Vec::new(),
        overhead: Some(OverheadReport {
            budget_percent: Some(2.0),
            estimated_percent: 0.4,
            per_second_percent: vec![0.5, 0.3, 0.4],
            probe_seconds: 0.004,
            target_cpu_seconds: 1.0,
            host_tracepoint_seconds: 0.0,
            trap_cost: TrapCost {
                emulated_ns: 725.0,
                single_stepped_ns: 12_000.0,
                calibrated: true,
                indirect_factor: 2.0,
            },
            setting: GovernorSetting::FULL,
            actions: Vec::new(),
            sampling: Sampling::EXACT,
        }),
        window: None,
    }
}
