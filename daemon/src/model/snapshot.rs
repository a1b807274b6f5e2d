//! The snapshot: everything observed of one target up to a moment, as the
//! aggregator publishes it each tick. The final snapshot of a session is its
//! report: `--format json` prints exactly a serialized [`Snapshot`].

use std::{fmt, sync::Arc};

use serde::ser::SerializeMap as _;
use serde::{Serialize, Serializer};

use super::{
    hex, scaled, scaled_seconds, skip_name, Builtin, CodeLocation, Frame, GcReport, GcSecond,
    Heatmap, Key, LockKind, LockSecond, MapKind, MapOp, OverheadReport, ProbeCounters, ProbeKind,
    RunQueueReport, RunQueueSecond, Sampling, SecondRange, SiteCost, SkipWhen, SourceLine, Spike,
    StopReason,
};

/// How many call sites a lock's report lists (the most wait first).
pub const TOP_CALL_SITES: usize = 5;

/// Hot keys listed per map (the most operations first).
pub const TOP_KEYS: usize = 10;

/// Everything observed of one target, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The traced process.
    pub target: TargetInfo,
    /// When counting began (second 0 of the timeline), Unix seconds.
    pub started_unix_seconds: f64,
    /// How long the probes have been (were) attached, seconds.
    pub duration_seconds: f64,
    /// What ended the session; `None` while it runs.
    pub stopped_by: Option<StopReason>,
    /// Events the kernel dropped because a ring buffer was full (the larger
    /// of the rings' LOST records and the probes' failed writes).
    pub events_lost: u64,
    /// The probes attached.
    pub probes: Vec<ProbeInfo>,
    /// Kernel-side probe counters.
    pub probe_counters: ProbeCounters,
    /// Locks, most contended first.
    pub locks: Vec<LockReport>,
    /// Native threads' waits for another thread (`--futex`): in condition
    /// variables (kind `condvar`) and thread joins (`thread_join`), most
    /// waits first. Never lock contention, and in none of the locks'
    /// figures, timelines or findings.
    pub signal_waits: Vec<LockReport>,
    /// Compare-and-swap sites, most failures first.
    pub cas: Vec<CasReport>,
    /// Maps, most operations first, with hot keys and the advisor's findings.
    pub maps: Vec<MapReport>,
    /// How to see the keys of maps that were only counted, when some were.
    pub maps_hint: Option<MapsHint>,
    /// Map operation events received (equal to `probe_counters.map_hits`
    /// when none was lost).
    pub map_events: u64,
    /// mapwatch's own peak resident memory (VmHWM), bytes.
    pub mapwatch_peak_rss_bytes: u64,
    /// What the last second's readings of maps' structure cost, or null
    /// when no map was read.
    pub map_reading: Option<MapReadingCost>,
    /// Heatmaps: lock waits, CAS failures by CPU and by site, hot keys
    /// (as seen: seconds a sampled probe was off show as gaps).
    pub heatmaps: Vec<Heatmap>,
    /// Per second, per lock contended in it (the most wait first, at most
    /// [`TIMELINE_LOCKS`](super::TIMELINE_LOCKS) a second, the last
    /// [`TIMELINE_SECONDS`](super::TIMELINE_SECONDS) seconds): contentions,
    /// wait and its percentiles, as seen (a second a sampled probe was off
    /// shows nothing).
    pub timeline: Vec<LockSecond>,
    /// The timeline's seconds in which lock waits were not timed (the
    /// overhead governor's off-seconds): they show nothing, and spikes are
    /// judged against the seconds that were timed only.
    pub timeline_unwatched: Vec<SecondRange>,
    /// Runs of seconds in which a lock waited far more than it usually
    /// does, the most wait first (see `spikes` for the rule).
    pub spikes: Vec<Spike>,
    /// Go's GC cycles and stop-the-world pauses (exact: never sampled);
    /// null when they are not probed.
    pub gc: Option<GcReport>,
    /// The same per second, for the seconds that had any (the last
    /// [`TIMELINE_SECONDS`](super::TIMELINE_SECONDS)).
    pub gc_timeline: Vec<GcSecond>,
    /// How long the target's threads, once runnable, waited for a CPU
    /// (run-queue latency: CPU starvation); null when not timed.
    pub run_queue: Option<RunQueueReport>,
    /// The same per second, for the watched seconds that had any (the last
    /// [`TIMELINE_SECONDS`](super::TIMELINE_SECONDS)).
    pub run_queue_timeline: Vec<RunQueueSecond>,
    /// What the probes cost the target and what the overhead governor did;
    /// null until the first second.
    pub overhead: Option<OverheadReport>,
    /// For a report of a window of the flight recorder: the window. Absent
    /// from a session's own report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<RecordedWindow>,
}

/// The time a flight-recorder report covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedWindow {
    /// Its start, Unix seconds.
    pub from_unix_seconds: f64,
    /// Its end, Unix seconds.
    pub to_unix_seconds: f64,
    /// Its start, in seconds since mapwatch attached to the target.
    pub from_session_seconds: f64,
    /// Its end, in seconds since mapwatch attached to the target.
    pub to_session_seconds: f64,
    /// The window asked for started before the oldest second recorded of
    /// the target (it was attached later, or older seconds were dropped):
    /// the report starts at the oldest one.
    pub truncated: bool,
}

impl Snapshot {
    /// Scales the figures of sampled probes from what was seen while they
    /// were on to the whole time.
    pub fn scale(&mut self, sampling: Sampling) {
        for map in &mut self.maps {
            map.scale(sampling.counting);
        }
        for lock in self.locks.iter_mut().chain(&mut self.signal_waits) {
            lock.scale(sampling);
        }
        for site in &mut self.cas {
            site.scale(sampling.counting);
        }
    }

    /// The lock report of the lock at `address`, if any.
    pub fn lock_at(&self, address: u64) -> Option<&LockReport> {
        self.locks.iter().find(|lock| lock.address == address)
    }
}

/// The traced process.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// Its PID.
    pub pid: u32,
    /// Its executable as the process sees it.
    pub exe: String,
    /// Its command name (`/proc/PID/comm`) when attached.
    pub comm: String,
    /// Its Go version (`go1.23.9`), or null for non-Go targets.
    pub go_version: Option<String>,
    /// Its executable's GNU build ID (hex), when it has one.
    pub build_id: Option<String>,
    /// The separate debug file its names and lines come from, when the
    /// executable is stripped and one was found.
    pub debug_file: Option<String>,
    /// Where its code files are mapped (the executable), for symbolizing
    /// frame addresses afterwards (pprof's mappings).
    pub modules: Vec<ModuleMapping>,
}

/// A file of the target's code as mapped: runtime addresses `[start,
/// limit)` hold the file from byte `file_offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleMapping {
    /// The file as the process sees it.
    pub file: String,
    /// Its GNU build ID (hex), when it has one.
    pub build_id: Option<String>,
    /// The first runtime address.
    #[serde(serialize_with = "hex")]
    pub start: u64,
    /// One past the last.
    #[serde(serialize_with = "hex")]
    pub limit: u64,
    /// The file offset at `start`.
    pub file_offset: u64,
    /// Whether mapwatch named its functions (its symbols, or its debug
    /// file's, were read): frames in it that are not named have no name.
    pub has_functions: bool,
}

/// One attached probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeInfo {
    /// What it observes.
    pub kind: ProbeKind,
    /// The function probed.
    pub function: String,
    /// The probed instruction's link-time address.
    #[serde(serialize_with = "hex")]
    pub address: u64,
    /// Its offset from the function's entry.
    pub offset: u64,
    /// How the kernel runs the probed instruction.
    pub site: SiteCost,
    /// When a hit is not counted.
    #[serde(serialize_with = "skip_name")]
    pub skip_when: SkipWhen,
}

/// One lock.
#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    /// Name of the global variable it is (`main.hotMu`), or null.
    pub name: Option<String>,
    /// For a native lock that is no global (`--futex`): the memory it lies
    /// in, from the latest reading of `/proc/PID/maps` (at attach, then
    /// each second); null for globals, Go locks, and memory mapped after
    /// the latest reading (a thread started and gone within the second).
    pub region: Option<MemoryRegion>,
    /// Its runtime address.
    #[serde(serialize_with = "hex")]
    pub address: u64,
    /// Its kind.
    pub kind: LockKind,
    /// Entries into its contended slow path.
    pub contentions: u64,
    /// Contentions per CPU (index = CPU number).
    pub per_cpu: Vec<u64>,
    /// With `--blocked-time`: the time goroutines spent parked on the
    /// lock's semaphores (park to runnable), seconds; else null.
    pub blocked_seconds_total: Option<f64>,
    /// With `--blocked-time`: the parks counted in it.
    pub blocked_parks: Option<u64>,
    /// Contended acquisitions whose wait was measured (slow-path returns).
    pub acquisitions: u64,
    /// Sum of their waits (slow-path entry to return), seconds.
    pub wait_seconds_total: f64,
    /// Longest of them, seconds.
    pub wait_seconds_max: f64,
    /// Their waits by log2 bucket (non-empty buckets only).
    pub wait_histogram: Vec<WaitBucket>,
    /// For an RWMutex: readers' waits for writers (`RLock`), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_wait_seconds_total: Option<f64>,
    /// For an RWMutex: writers' waits (its inner mutex, then the readers to
    /// leave), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_wait_seconds_total: Option<f64>,
    /// For an RWMutex: contentions of readers (included in `contentions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_contentions: Option<u64>,
    /// Where the waiters were, most wait first.
    pub top_call_sites: Vec<CallSite>,
    /// With holder blame: the waiting charged to holders in all (see
    /// [`HolderSite::wait_caused_seconds`]), seconds; null when holders
    /// were not probed. Below `wait_seconds_total` by what no release to
    /// waiters ended: waits for a lock released by its fast path (a
    /// spinner's), and waits spanning releases missed while the governor
    /// had the wait probes off.
    pub wait_caused_seconds_total: Option<f64>,
    /// Where the holders were whose releases ended the waiting, most
    /// waiting caused first (sites whose releases ended none are left out:
    /// an RWMutex's writer `Unlock` is probed at every call).
    pub top_holder_sites: Vec<HolderSite>,
    /// With holder blame, for an RWMutex with writer convoys: episodes in
    /// which a writer waited for readers to leave while readers queued
    /// behind it; else null.
    pub convoys: Option<ConvoyReport>,
    /// For native locks (`--futex`): the threads that waited, grouped by
    /// name (a server's worker threads share one), most wait first.
    pub threads: Vec<ThreadGroup>,
    /// Whether the figures are exact counts (else scaled estimates from
    /// sampled windows; see `sampled_fraction`).
    pub exact: bool,
    /// The fraction of the time its probes were on (1: always); the
    /// figures are what was seen divided by it (wait figures by the wait
    /// probes' own fraction, when smaller).
    pub sampled_fraction: f64,
}

/// Where in a process's memory an address lies, as `/proc/PID/maps` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryRegion {
    /// The main heap (`[heap]`, grown by `brk`).
    Heap,
    /// The main thread's stack (`[stack]`).
    Stack,
    /// Anonymous memory: other threads' malloc arenas and stacks, and
    /// anything else mapped without a file.
    Anonymous,
    /// A file's mapping (a shared library's data).
    File,
}

impl std::fmt::Display for MemoryRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Heap => "heap",
            Self::Stack => "main stack",
            Self::Anonymous => "anonymous memory: malloc arenas, thread stacks",
            Self::File => "a file's mapping",
        })
    }
}

/// The threads of one name that waited on a lock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadGroup {
    /// The threads' name (`comm`), or `tid N` for a thread that had none.
    pub name: String,
    /// How many threads of that name waited.
    pub threads: u64,
    /// Their waits.
    pub waits: u64,
    /// Their total wait, seconds.
    pub wait_seconds: f64,
}

/// Most thread groups a lock report lists.
pub const TOP_THREAD_GROUPS: usize = 5;

impl LockReport {
    /// Scales what was seen while probes were on to the whole time.
    pub fn scale(&mut self, sampling: Sampling) {
        let (counting, waits) = (sampling.counting, sampling.waits.min(sampling.counting));
        self.exact = counting >= 1.0 && waits >= 1.0;
        self.sampled_fraction = waits.min(counting);
        if self.exact {
            return;
        }
        self.contentions = scaled(self.contentions, counting);
        for n in &mut self.per_cpu {
            *n = scaled(*n, counting);
        }
        self.reader_contentions = self.reader_contentions.map(|n| scaled(n, counting));
        self.blocked_parks = self.blocked_parks.map(|n| scaled(n, counting));
        self.blocked_seconds_total = self
            .blocked_seconds_total
            .map(|s| scaled_seconds(s, counting));
        self.acquisitions = scaled(self.acquisitions, waits);
        self.wait_seconds_total = scaled_seconds(self.wait_seconds_total, waits);
        self.reader_wait_seconds_total = self
            .reader_wait_seconds_total
            .map(|s| scaled_seconds(s, waits));
        self.writer_wait_seconds_total = self
            .writer_wait_seconds_total
            .map(|s| scaled_seconds(s, waits));
        for bucket in &mut self.wait_histogram {
            bucket.count = scaled(bucket.count, waits);
        }
        for site in &mut self.top_call_sites {
            site.count = scaled(site.count, waits);
            site.wait_seconds = scaled_seconds(site.wait_seconds, waits);
        }
        for group in &mut self.threads {
            group.waits = scaled(group.waits, waits);
            group.wait_seconds = scaled_seconds(group.wait_seconds, waits);
        }
        self.wait_caused_seconds_total = self
            .wait_caused_seconds_total
            .map(|s| scaled_seconds(s, waits));
        if let Some(convoys) = &mut self.convoys {
            convoys.episodes = scaled(convoys.episodes, waits);
            convoys.readers_stalled = scaled(convoys.readers_stalled, waits);
            convoys.seconds_total = scaled_seconds(convoys.seconds_total, waits);
            convoys.reader_wait_caused_seconds =
                scaled_seconds(convoys.reader_wait_caused_seconds, waits);
        }
        for site in &mut self.top_holder_sites {
            site.releases = scaled(site.releases, waits);
            site.wait_caused_seconds = scaled_seconds(site.wait_caused_seconds, waits);
            if let Some(hold) = &mut site.contended_hold {
                hold.count = scaled(hold.count, waits);
                hold.seconds_total = scaled_seconds(hold.seconds_total, waits);
                for bucket in &mut hold.histogram {
                    bucket.count = scaled(bucket.count, waits);
                }
            }
        }
    }
}

/// An RWMutex's writer convoys: each episode runs from a writer beginning
/// to wait for the readers inside to leave (`Lock`'s semaphore wait) to its
/// `Unlock`, and stalls the readers that begin waiting meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct ConvoyReport {
    /// Episodes.
    pub episodes: u64,
    /// The longest, seconds.
    pub longest_seconds: f64,
    /// Their lengths, summed, seconds.
    pub seconds_total: f64,
    /// The most readers stalled in one episode.
    pub max_readers_stalled: u64,
    /// Readers stalled, summed over episodes.
    pub readers_stalled: u64,
    /// The stalled readers' waits, summed, seconds.
    pub reader_wait_caused_seconds: f64,
    /// The writers' call sites, most convoy time first.
    pub top_writer_sites: Vec<WriterSite>,
}

/// A writer call site of an RWMutex's convoys.
#[derive(Debug, Clone, Serialize)]
pub struct WriterSite {
    /// Frames, innermost first, from the writer's wait outwards.
    pub frames: Arc<[Frame]>,
    /// Its episodes.
    pub episodes: u64,
    /// Their lengths, summed, seconds.
    pub seconds_total: f64,
    /// Readers they stalled.
    pub readers_stalled: u64,
}

/// A holder call site of a lock: where goroutines released it to waiters
/// (through the release slow path), and what that made the waiters wait.
#[derive(Debug, Clone, Serialize)]
pub struct HolderSite {
    /// Frames, innermost first, from the release slow path's caller
    /// outwards.
    pub frames: Arc<[Frame]>,
    /// The waiting its releases ended, seconds: each wait is split at the
    /// lock's releases to waiters within it; each stretch up to a release
    /// is charged to that release's holder, and the last stretch (from the
    /// release that woke the waiter to its acquisition) to the same one.
    pub wait_caused_seconds: f64,
    /// Its releases to waiters.
    pub releases: u64,
    /// Share of the lock's waiting charged to holders, 0 to 1.
    pub share: f64,
    /// Hold times of the releases whose holder had itself acquired the
    /// lock through the slow path, with no other slow acquisition or
    /// release of the lock in between (acquisition to release); null when
    /// none had. Go's `Unlock` is inlined, so a fast release and fast
    /// re-acquisition by the same goroutine in between go unseen: such a
    /// hold spans both (the histogram's tail), which is why the mean can
    /// exceed the median's bucket.
    pub contended_hold: Option<HoldTimes>,
}

impl HolderSite {
    /// The first frame outside the lock implementations, else the first.
    pub fn own_frame(&self) -> Option<&Frame> {
        super::own_frame(&self.frames)
    }
}

/// Hold times: how many, their sum, and their log2 histogram.
#[derive(Debug, Clone, Serialize)]
pub struct HoldTimes {
    /// Holds measured.
    pub count: u64,
    /// Their sum, seconds.
    pub seconds_total: f64,
    /// By log2 bucket (non-empty buckets only).
    pub histogram: Vec<WaitBucket>,
}

/// One waiting call site: a user stack.
#[derive(Debug, Clone, Serialize)]
pub struct CallSite {
    /// Frames, innermost first, from the slow path's caller outwards
    /// (shared: the flight recorder keeps a site's frames once).
    pub frames: Arc<[Frame]>,
    /// Total wait of the acquisitions from here, seconds.
    pub wait_seconds: f64,
    /// Acquisitions from here.
    pub count: u64,
    /// Share of the lock's total wait, 0 to 1.
    pub share: f64,
}

impl CallSite {
    /// The first frame outside the lock implementations (`sync.`,
    /// `internal/`), else the first.
    pub fn own_frame(&self) -> Option<&Frame> {
        super::own_frame(&self.frames)
    }
}

/// One log2 bucket of a wait histogram: waits in `[ns_min, ns_max)`.
#[derive(Debug, Clone, Serialize)]
pub struct WaitBucket {
    /// Lower bound, ns (inclusive).
    pub ns_min: u64,
    /// Upper bound, ns (exclusive).
    pub ns_max: u64,
    /// Waits in the bucket.
    pub count: u64,
}

/// One compare-and-swap instruction watched.
#[derive(Debug, Clone, Serialize)]
pub struct CasReport {
    /// `function+0xOFFSET` of the `LOCK CMPXCHG` (or of the CAS call).
    pub site: CodeLocation,
    /// The function.
    pub function: String,
    /// What a built-in CAS source belongs to; null for sites chosen with
    /// `--cas`.
    pub builtin: Option<Builtin>,
    /// Source line of the CAS in the caller's own code (through Go's inline
    /// tree), when the binary has line information.
    pub source: Option<SourceLine>,
    /// Link-time address of the `LOCK CMPXCHG`.
    #[serde(serialize_with = "hex")]
    pub address: u64,
    /// Where its outcome is read.
    pub probe: CasProbe,
    /// Compare-and-swaps executed.
    pub attempts: u64,
    /// Those that failed.
    pub failures: u64,
    /// failures / attempts (0 when there were no attempts).
    pub failure_ratio: f64,
    /// Failures per CPU (index = CPU number, every CPU of the host).
    pub per_cpu_failures: Vec<u64>,
    /// Whether the counts are exact (else scaled estimates).
    pub exact: bool,
    /// The fraction of the time its probe was on (1: always).
    pub sampled_fraction: f64,
}

impl CasReport {
    /// Scales what was seen while the probe was on to the whole time.
    pub fn scale(&mut self, fraction: f64) {
        self.exact = fraction >= 1.0;
        self.sampled_fraction = fraction.min(1.0);
        if self.exact {
            return;
        }
        self.attempts = scaled(self.attempts, fraction);
        self.failures = scaled(self.failures, fraction);
        for n in &mut self.per_cpu_failures {
            *n = scaled(*n, fraction);
        }
    }
}

/// Where and how a CAS's outcome is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasProbe {
    /// Mnemonic of the probed instruction (`je`).
    pub mnemonic: String,
    /// Its link-time address.
    pub address: u64,
    /// Link-time address of the CAS (or of the call performing it).
    pub cas_address: u64,
    /// The CAS is a call to a CAS function.
    pub via_call: bool,
    /// The kernel emulates the probed instruction.
    pub emulated: bool,
    /// What says the CAS succeeded.
    pub condition: CasCondition,
    /// The probed instruction is also reached by a branch.
    pub ambiguous: bool,
}

/// What says a CAS succeeded, at the probed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasCondition {
    /// ZF equals `set`.
    Zf {
        /// The value of ZF that means success.
        set: bool,
    },
    /// The low byte of a register is (non)zero.
    Register {
        /// Its name (`al`, `r9l`).
        name: String,
        /// Whether non-zero means success.
        nonzero: bool,
    },
}

impl fmt::Display for CasProbe {
    /// `je at 0x48f6dd (+0xa after lock cmpxchg at 0x48f6d3), emulated:
    /// success iff ZF=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {:#x} (+{:#x} after {} at {:#x}), {}: success iff ",
            self.mnemonic,
            self.address,
            self.address.wrapping_sub(self.cas_address),
            if self.via_call {
                "CAS call"
            } else {
                "lock cmpxchg"
            },
            self.cas_address,
            if self.emulated {
                "emulated"
            } else {
                "single-stepped"
            },
        )?;
        match &self.condition {
            CasCondition::Zf { set } => write!(f, "ZF={}", u8::from(*set))?,
            CasCondition::Register { name, nonzero } => {
                write!(f, "{name} {} 0", if *nonzero { "!=" } else { "==" })?
            }
        }
        if self.ambiguous {
            f.write_str(" (ambiguous: also reached by a branch)")?;
        }
        Ok(())
    }
}

impl Serialize for CasProbe {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Operation counts by operation, non-zero only, in name order (as reports
/// list them); serialized as an object `{name: count}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpCounts(pub Vec<(MapOp, u64)>);

impl OpCounts {
    /// The non-zero counts among `counts` (indexed by [`MapOp`]) of the
    /// operations `keep` accepts.
    pub fn from_counts(counts: &[u64], keep: impl Fn(MapOp) -> bool) -> Self {
        let mut ops: Vec<(MapOp, u64)> = MapOp::ALL
            .iter()
            .filter(|&&op| keep(op))
            .filter_map(|&op| {
                let count = counts.get(op as usize).copied().unwrap_or(0);
                (count > 0).then_some((op, count))
            })
            .collect();
        ops.sort_by_key(|(op, _)| op.name());
        Self(ops)
    }

    /// Their sum.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for OpCounts {
    /// `load 45000, store 5000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, count)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {count}", op.name())?;
        }
        Ok(())
    }
}

impl Serialize for OpCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (op, count) in &self.0 {
            map.serialize_entry(op.name(), count)?;
        }
        map.end()
    }
}

/// One map.
#[derive(Debug, Clone, Serialize)]
pub struct MapReport {
    /// The global variable that is (sync.Map) or holds (map) it, or null.
    pub name: Option<String>,
    /// Its runtime address (the `sync.Map`, or the runtime map's header);
    /// `--map` accepts it.
    #[serde(serialize_with = "hex")]
    pub address: u64,
    /// Its kind.
    pub kind: MapKind,
    /// User-level operations.
    pub ops: OpCounts,
    /// Their sum.
    pub total: u64,
    /// Internal events (`miss`, `dirty_copy` up to Go 1.23; `expand` from
    /// Go 1.24).
    pub internal: OpCounts,
    /// Whether keys were recorded (else the map was only counted).
    pub keyed: bool,
    /// Operations per CPU (keyed maps).
    pub per_cpu: Vec<u64>,
    /// Estimated distinct keys seen (HyperLogLog, about ±2%).
    pub distinct_keys: u64,
    /// The busiest keys, most operations first.
    pub top_keys: Vec<KeyReport>,
    /// Keys kept per map: counts are exact while no more distinct keys than
    /// this were seen.
    pub top_k_capacity: usize,
    /// The most any listed count can overestimate (0: all exact).
    pub top_k_error_bound: u64,
    /// The advisor's findings.
    pub advice: Vec<Advice>,
    /// Whether the counts are exact (else scaled estimates).
    pub exact: bool,
    /// The fraction of the time its probes were on (1: always).
    pub sampled_fraction: f64,
    /// The fraction of its counted operations whose key was recorded (1:
    /// all); the keys' counts are scaled by it.
    pub key_sampled_fraction: f64,
    /// Its structure as last read from the target's memory (runtime maps
    /// selected with `--map`; `sync.Map`s up to Go 1.23), or null.
    pub health: Option<MapHealth>,
}

/// The cost of one second's readings of maps' structure from the target's
/// memory (in mapwatch; the target is never stopped), within a budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MapReadingCost {
    /// Bytes the readings of one second may read in all.
    pub budget_bytes_per_second: u64,
    /// Maps read.
    pub maps: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Time the readings took, µs.
    pub microseconds: f64,
}

/// How a map's memory is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapImplementation {
    /// Buckets of 8 cells with overflow chains (Go ≤ 1.23).
    Buckets,
    /// Swiss tables: groups of 8 slots with control bytes (Go ≥ 1.24).
    Swiss,
    /// A `sync.Map` of Go ≤ 1.23: a read-only map and a dirty one.
    SyncMap,
}

/// A runtime map's structure, read from the target's memory once a second
/// (see [`crate::maphealth`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapHealth {
    /// Buckets, swiss tables or a `sync.Map`.
    pub implementation: MapImplementation,
    /// Live entries at the last reading (what `len` returned then; a
    /// `sync.Map`'s: its dirty map's once amended, else its read-only
    /// map's, deleted entries not yet expunged included).
    pub entries: u64,
    /// The most entries any reading saw.
    pub peak_entries: u64,
    /// Growths while attached, exact (each call of the runtime's grow
    /// functions for this map; also in `internal.grow`).
    pub grows: u64,
    /// Slots (swiss) or bucket cells (8 per bucket, overflow buckets not
    /// counted).
    pub capacity: u64,
    /// `entries / capacity`.
    pub load_factor: f64,
    /// Deleted slots (swiss tombstones; bucket maps' `emptyOne` cells).
    pub tombstones: u64,
    /// `tombstones / capacity`.
    pub tombstone_ratio: f64,
    /// Bucket maps: buckets (2^B).
    pub buckets: Option<u64>,
    /// Bucket maps: overflow buckets.
    pub overflow_buckets: Option<u64>,
    /// Bucket maps: the longest overflow chain.
    pub longest_chain: Option<u64>,
    /// Bucket maps: whether a grow was in progress.
    pub growing: Option<bool>,
    /// Swiss maps: tables (0 for a small map of one group).
    pub tables: Option<u64>,
    /// Swiss maps: directory entries.
    pub directory: Option<u64>,
    /// Swiss maps: inserts into empty slots left before a table grows.
    pub growth_left: Option<u64>,
    /// `sync.Map`: entries of its read-only map (deleted ones not yet
    /// expunged included).
    pub read_entries: Option<u64>,
    /// `sync.Map`: entries of its dirty map (0 right after a promotion).
    pub dirty_entries: Option<u64>,
    /// `sync.Map`: whether the dirty map holds keys the read-only one
    /// lacks (loads of them miss and take the mutex).
    pub amended: Option<bool>,
    /// `sync.Map`: misses since the last promotion.
    pub misses: Option<u64>,
    /// `sync.Map`: promotions while watched (the dirty map becoming the
    /// read-only one; see [`crate::aggregate::PromotionTrack`]).
    pub promotions: Option<u64>,
    /// `sync.Map`: promotions per second between the first and last
    /// reading.
    pub promotions_per_second: Option<f64>,
    /// `sync.Map`: entries copied into new dirty maps per second (each
    /// copy as big as the read-only map at the next reading: an estimate).
    pub entries_copied_per_second: Option<f64>,
    /// Entry `k`: buckets (with their chains) holding `k` entries, or
    /// groups with `k` full slots; the last entry also counts fuller ones.
    pub occupancy: Vec<u64>,
    /// Distance of the occupancy from a uniform hash's at this load (see
    /// [`crate::maphealth::MapStructure::skew`]), or null.
    pub skew: Option<f64>,
    /// Whether the last reading walked every bucket or group.
    pub complete: bool,
    /// Whether its count of entries agreed with the header's.
    pub consistent: bool,
    /// Readings taken, and of them, failed ones.
    pub readings: u64,
    /// See `readings`.
    pub failed_readings: u64,
    /// Why the last reading failed (the memory no longer holds this map:
    /// freed or reused), or null.
    pub error: Option<String>,
    /// Whether the variable selecting it now holds another map (this one
    /// was replaced; it is read no more).
    pub replaced: bool,
    /// When the last good reading was taken, seconds into the session.
    pub sampled_at: f64,
    /// Bytes the last reading read, and how long it took.
    pub bytes_read: u64,
    /// See `bytes_read`, µs.
    pub read_microseconds: f64,
}

impl MapHealth {
    /// Scales what the probes counted (growths, and the promotions told by
    /// dirty copies) to the whole time; what was read from memory stands.
    pub fn scale(&mut self, fraction: f64) {
        if fraction >= 1.0 || fraction <= 0.0 {
            return;
        }
        self.grows = scaled(self.grows, fraction);
        self.promotions = self.promotions.map(|n| scaled(n, fraction));
        for rate in [
            &mut self.promotions_per_second,
            &mut self.entries_copied_per_second,
        ]
        .into_iter()
        .flatten()
        {
            *rate /= fraction;
        }
    }
}

impl MapReport {
    /// Scales what was seen while the probes were on to the whole time
    /// (the keys' counts are already scaled for key sampling).
    pub fn scale(&mut self, fraction: f64) {
        let keys_exact = self.key_sampled_fraction >= 1.0;
        self.exact = fraction >= 1.0 && keys_exact;
        self.sampled_fraction = fraction.min(1.0);
        if !keys_exact {
            for key in &mut self.top_keys {
                key.exact = false;
            }
        }
        if fraction >= 1.0 {
            return;
        }
        for counts in [&mut self.ops, &mut self.internal] {
            for (_, n) in &mut counts.0 {
                *n = scaled(*n, fraction);
            }
        }
        self.total = scaled(self.total, fraction);
        for n in &mut self.per_cpu {
            *n = scaled(*n, fraction);
        }
        if let Some(health) = &mut self.health {
            health.scale(fraction);
        }
        self.top_k_error_bound = scaled(self.top_k_error_bound, fraction);
        for key in &mut self.top_keys {
            key.exact = false;
            for (_, n) in &mut key.ops.0 {
                *n = scaled(*n, fraction);
            }
            key.total = scaled(key.total, fraction);
            key.error = scaled(key.error, fraction);
            for n in &mut key.per_cpu {
                *n = scaled(*n, fraction);
            }
        }
    }

    /// How reports name the map: its name, else its address.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{:#x}", self.address))
    }
}

/// One hot key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// The key.
    pub key: Key,
    /// Operations by kind.
    pub ops: OpCounts,
    /// Their sum.
    pub total: u64,
    /// Whether the counts are exact (the key was kept since its first
    /// operation); else `total` may overestimate by up to `error`.
    pub exact: bool,
    /// The largest possible overestimate.
    pub error: u64,
    /// Operations per CPU.
    pub per_cpu: Vec<u64>,
}

/// What the advisor found about a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Nothing stands out.
    Fits,
    /// A `sync.Map` under write-heavy traffic to new keys.
    WriteHeavySyncMap,
    /// Many loads missed a `sync.Map`'s read-only map.
    ReadMisses,
    /// One key takes a large share of operations from several CPUs.
    HotKey,
    /// Too few operations to judge.
    TooFewOperations,
    /// Many deleted slots: a churning map.
    Tombstones,
    /// The map grew several times while watched.
    Growing,
    /// Capacity far above the entries: the map grew, then emptied (Go maps
    /// never shrink).
    Oversized,
    /// Long overflow chains in a bucket map.
    OverflowChains,
    /// Entries spread far from what a uniform hash gives.
    Skewed,
    /// A `sync.Map` promoting its dirty map, and copying its read-only map
    /// into a new one, many times a second.
    PromotionStorm,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fits => "fits",
            Self::WriteHeavySyncMap => "write-heavy-sync-map",
            Self::ReadMisses => "read-misses",
            Self::HotKey => "hot-key",
            Self::TooFewOperations => "too-few-operations",
            Self::Tombstones => "tombstones",
            Self::Growing => "growing",
            Self::Oversized => "oversized",
            Self::OverflowChains => "overflow-chains",
            Self::Skewed => "skewed",
            Self::PromotionStorm => "promotion-storm",
        })
    }
}

/// One finding of the advisor, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advice {
    /// What it found.
    pub finding: Finding,
    /// The finding and what to do, with the figures that led to it.
    pub text: String,
}

/// Maps that were only counted, and the `--map` that would show the keys
/// of the busiest of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsHint {
    /// How many maps were only counted.
    pub counted: usize,
    /// The busiest one: its name, else its address.
    pub busiest: String,
}

impl fmt::Display for MapsHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} map(s) were only counted; for their keys attach with --map {}",
            self.counted, self.busiest
        )
    }
}

impl Serialize for MapsHint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_probes_describe_themselves() {
        let probe = CasProbe {
            mnemonic: "je".into(),
            address: 0x48_f6dd,
            cas_address: 0x48_f6d3,
            via_call: false,
            emulated: true,
            condition: CasCondition::Zf { set: false },
            ambiguous: false,
        };
        assert_eq!(
            probe.to_string(),
            "je at 0x48f6dd (+0xa after lock cmpxchg at 0x48f6d3), emulated: success iff ZF=0"
        );
        let call = CasProbe {
            condition: CasCondition::Register {
                name: "al".into(),
                nonzero: true,
            },
            via_call: true,
            emulated: false,
            ambiguous: true,
            ..probe
        };
        assert_eq!(
            call.to_string(),
            "je at 0x48f6dd (+0xa after CAS call at 0x48f6d3), single-stepped: success iff al != 0 (ambiguous: also reached by a branch)"
        );
    }

    #[test]
    fn op_counts_list_non_zero_ops_by_name() {
        let mut counts = [0u64; super::super::MAP_OPS];
        counts[MapOp::Store as usize] = 2;
        counts[MapOp::Load as usize] = 5;
        counts[MapOp::Miss as usize] = 1;
        let ops = OpCounts::from_counts(&counts, MapOp::is_user_op);
        assert_eq!(ops.0, vec![(MapOp::Load, 5), (MapOp::Store, 2)]);
        assert_eq!(ops.total(), 7);
        assert_eq!(
            serde_json::to_string(&ops).unwrap(),
            r#"{"load":5,"store":2}"#
        );
    }
}
