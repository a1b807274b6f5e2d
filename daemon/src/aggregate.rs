//! Aggregation: the data model every view reads. Events go in; per-lock
//! statistics, per-CPU counts and loss figures come out.

pub mod cas;
pub mod maps;
pub mod topk;

use std::collections::{BTreeMap, HashMap};

use probe_common::{LockEvent, LockRole, SiteKind};

use crate::intake::IntakeMessage;

/// Statistics of one lock, keyed by its runtime address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockStats {
    /// Entries into the lock's contended slow path.
    pub contentions: u64,
    /// Contentions per CPU (index = CPU number).
    pub per_cpu: Vec<u64>,
    /// Timestamp (ns, monotonic) of the first and last contention.
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
    /// Slow-path returns seen: contended acquisitions whose wait is known.
    pub acquisitions: u64,
    /// Sum of their waits, ns.
    pub wait_total_ns: u64,
    /// Longest wait, ns.
    pub wait_max_ns: u64,
    /// Waits by log2 bucket: `wait_histogram[b]` counts waits in
    /// `[2^b, 2^(b+1))` ns (bucket 0 also holds 0 ns).
    pub wait_histogram: [u64; WAIT_BUCKETS],
    /// Of the waits, those of RWMutex readers (`RLock`), ns.
    pub reader_wait_total_ns: u64,
    /// Of the contentions, those of RWMutex readers.
    pub reader_contentions: u64,
    /// Whether an RWMutex semaphore wait was seen on this lock (it is then
    /// an RWMutex whatever DWARF says).
    pub rwmutex: bool,
    /// Whether its waits were futex waits (a native lock or other futex).
    pub futex: bool,
    /// Waits by call site: (acquisitions, total wait ns).
    pub call_sites: HashMap<CallSiteKey, (u64, u64)>,
    /// Time goroutines spent parked on the lock's semaphores, from park to
    /// runnable (`--blocked-time`), ns: what Go's `/sync/mutex/wait/total`
    /// estimates.
    pub blocked_total_ns: u64,
    /// Parks counted in `blocked_total_ns`.
    pub blocked_count: u64,
}

impl Default for LockStats {
    fn default() -> Self {
        Self {
            contentions: 0,
            per_cpu: Vec::new(),
            first_ns: 0,
            last_ns: 0,
            acquisitions: 0,
            wait_total_ns: 0,
            wait_max_ns: 0,
            wait_histogram: [0; WAIT_BUCKETS],
            reader_wait_total_ns: 0,
            reader_contentions: 0,
            rwmutex: false,
            futex: false,
            call_sites: HashMap::new(),
            blocked_total_ns: 0,
            blocked_count: 0,
        }
    }
}

impl LockStats {
    /// The lock's kind for reports: `rwmutex` when `known_rwmutex` (DWARF
    /// says so) or a reader or writer semaphore wait was seen on it, `futex`
    /// for futex words, else `mutex`.
    pub fn kind(&self, known_rwmutex: bool) -> &'static str {
        if known_rwmutex || self.rwmutex {
            "rwmutex"
        } else if self.futex {
            "futex"
        } else {
            "mutex"
        }
    }

    /// Waits of writers, ns: everything but the readers' (for an RWMutex,
    /// its inner mutex plus waiting for readers to leave; for a Mutex, all).
    pub fn writer_wait_total_ns(&self) -> u64 {
        self.wait_total_ns - self.reader_wait_total_ns
    }
}

/// A waiting call site: (return address into the slow path's caller, user
/// stack id or -1).
pub type CallSiteKey = (u64, i64);

/// Number of log2 wait buckets (2^63 ns is centuries).
pub const WAIT_BUCKETS: usize = 64;

/// The log2 bucket of a wait in ns.
pub fn wait_bucket(wait_ns: u64) -> usize {
    (63 - wait_ns.max(1).leading_zeros()) as usize
}

/// A human label for a log2 bucket: its lower bound, `512ns`, `1µs`, `2ms`…
pub fn bucket_label(bucket: usize) -> String {
    let ns = 1u128 << bucket.min(127);
    let (value, unit) = match ns {
        n if n >= 1_000_000_000 => (n as f64 / 1e9, "s"),
        n if n >= 1_000_000 => (n as f64 / 1e6, "ms"),
        n if n >= 1_000 => (n as f64 / 1e3, "µs"),
        n => (n as f64, "ns"),
    };
    format!("≥{value:.0}{unit}")
}

/// Everything observed so far.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// `CLOCK_MONOTONIC` ns when the session began (time column 0).
    pub start_ns: u64,
    /// Lock waits by time column (1 s) and log2 bucket: `wait_timeline[column][bucket]`.
    pub wait_timeline: Vec<[u64; WAIT_BUCKETS]>,
    /// Per-lock statistics by lock address.
    pub locks: BTreeMap<u64, LockStats>,
    /// Events the kernel dropped, per CPU.
    pub lost_per_cpu: BTreeMap<u32, u64>,
    /// Samples that could not be decoded.
    pub malformed: u64,
    /// Events received.
    pub events: u64,
    /// Events from processes other than the target (should stay zero: the
    /// probes are attached to one process).
    pub foreign: u64,
    /// Map operations and hot keys.
    pub maps: maps::MapAggregate,
}

impl Aggregate {
    /// An empty aggregate for a session that began at `start_ns`
    /// (`CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`).
    pub fn new(start_ns: u64) -> Self {
        Self {
            start_ns,
            wait_timeline: Vec::new(),
            locks: BTreeMap::new(),
            lost_per_cpu: BTreeMap::new(),
            malformed: 0,
            events: 0,
            foreign: 0,
            maps: maps::MapAggregate::default(),
        }
    }

    /// The same, with map sites configured.
    pub fn with_maps(mut self, maps: maps::MapAggregate) -> Self {
        self.maps = maps;
        self
    }

    /// Folds one intake message in. Events from a process other than `tgid`
    /// are counted in [`Aggregate::foreign`] and otherwise ignored.
    pub fn apply(&mut self, tgid: u32, message: IntakeMessage) {
        match message {
            IntakeMessage::Events(events) => {
                for event in events {
                    self.add_event(tgid, &event);
                }
            }
            IntakeMessage::MapEvents(events) => {
                for event in events {
                    if event.tgid != tgid {
                        self.foreign += 1;
                        continue;
                    }
                    let column = event.timestamp_ns.saturating_sub(self.start_ns) / 1_000_000_000;
                    self.maps.add(&event, column.min(86_400));
                }
            }
            IntakeMessage::Lost { cpu, count } => {
                *self.lost_per_cpu.entry(cpu).or_default() += count;
            }
            IntakeMessage::Malformed { .. } => self.malformed += 1,
        }
    }

    fn add_event(&mut self, tgid: u32, event: &LockEvent) {
        self.events += 1;
        if event.tgid != tgid {
            self.foreign += 1;
            return;
        }
        match SiteKind::from_raw(event.kind) {
            Some(SiteKind::LockSlowEntry) => self.add_entry(event),
            Some(SiteKind::LockSlowReturn) => self.add_return(event),
            Some(SiteKind::Ready) => {
                let stats = self.locks.entry(event.lock_addr).or_default();
                stats.blocked_total_ns = stats.blocked_total_ns.saturating_add(event.wait_ns);
                stats.blocked_count += 1;
            }
            _ => self.malformed += 1,
        }
    }

    fn add_return(&mut self, event: &LockEvent) {
        let stats = self.locks.entry(event.lock_addr).or_default();
        let role = LockRole::from_raw(event.role);
        if role == Some(LockRole::RwReader) {
            stats.reader_wait_total_ns = stats.reader_wait_total_ns.saturating_add(event.wait_ns);
        }
        stats.rwmutex |= matches!(role, Some(LockRole::RwReader | LockRole::RwWriter));
        stats.futex |= role == Some(LockRole::Futex);
        let site = stats
            .call_sites
            .entry((event.caller_ip, event.stack_id))
            .or_default();
        site.0 += 1;
        site.1 = site.1.saturating_add(event.wait_ns);
        stats.acquisitions += 1;
        stats.wait_total_ns = stats.wait_total_ns.saturating_add(event.wait_ns);
        stats.wait_max_ns = stats.wait_max_ns.max(event.wait_ns);
        let bucket = wait_bucket(event.wait_ns);
        stats.wait_histogram[bucket] += 1;
        let column = (event.timestamp_ns.saturating_sub(self.start_ns) / 1_000_000_000) as usize;
        // A bogus timestamp must not allocate the world: cap at a day.
        let column = column.min(86_400);
        if self.wait_timeline.len() <= column {
            self.wait_timeline.resize(column + 1, [0; WAIT_BUCKETS]);
        }
        self.wait_timeline[column][bucket] += 1;
    }

    fn add_entry(&mut self, event: &LockEvent) {
        let stats = self.locks.entry(event.lock_addr).or_default();
        let role = LockRole::from_raw(event.role);
        if role == Some(LockRole::RwReader) {
            stats.reader_contentions += 1;
        }
        stats.rwmutex |= matches!(role, Some(LockRole::RwReader | LockRole::RwWriter));
        stats.futex |= role == Some(LockRole::Futex);
        if stats.contentions == 0 {
            stats.first_ns = event.timestamp_ns;
        }
        stats.contentions += 1;
        stats.first_ns = stats.first_ns.min(event.timestamp_ns);
        stats.last_ns = stats.last_ns.max(event.timestamp_ns);
        let cpu = event.cpu as usize;
        if stats.per_cpu.len() <= cpu {
            stats.per_cpu.resize(cpu + 1, 0);
        }
        stats.per_cpu[cpu] += 1;
    }

    /// The user stack ids waits were recorded with (to read from the
    /// kernel before the report).
    pub fn stack_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .locks
            .values()
            .flat_map(|stats| stats.call_sites.keys().map(|&(_, id)| id))
            .filter(|&id| id >= 0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Events lost in total.
    pub fn events_lost(&self) -> u64 {
        self.lost_per_cpu.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(lock_addr: u64, cpu: u32, tgid: u32, t: u64) -> LockEvent {
        LockEvent {
            timestamp_ns: t,
            lock_addr,
            goroutine: 0,
            wait_ns: 0,
            caller_ip: 0,
            stack_id: -1,
            tgid,
            tid: tgid,
            cpu,
            kind: SiteKind::LockSlowEntry as u32,
            site_index: 0,
            role: 0,
        }
    }

    #[test]
    fn counts_per_lock_and_cpu_and_ignores_other_processes() {
        let mut agg = Aggregate::new(0);
        agg.apply(
            7,
            IntakeMessage::Events(vec![
                event(0x10, 0, 7, 5),
                event(0x10, 3, 7, 2),
                event(0x20, 1, 7, 9),
                event(0x10, 0, 8, 1),
            ]),
        );
        agg.apply(7, IntakeMessage::Lost { cpu: 1, count: 3 });
        agg.apply(7, IntakeMessage::Lost { cpu: 1, count: 2 });
        let a = &agg.locks[&0x10];
        assert_eq!(a.contentions, 2);
        assert_eq!(a.per_cpu, vec![1, 0, 0, 1]);
        assert_eq!((a.first_ns, a.last_ns), (2, 5));
        assert_eq!(agg.locks[&0x20].contentions, 1);
        assert_eq!(agg.foreign, 1);
        assert_eq!(agg.events, 4);
        assert_eq!(agg.events_lost(), 5);
    }

    #[test]
    fn returns_carry_waits_into_histograms_and_the_timeline() {
        let mut agg = Aggregate::new(1_000_000_000);
        let ret = |wait_ns: u64, t: u64| LockEvent {
            wait_ns,
            kind: SiteKind::LockSlowReturn as u32,
            ..event(0x10, 0, 7, t)
        };
        agg.apply(
            7,
            IntakeMessage::Events(vec![
                ret(1_000, 1_500_000_000),
                ret(1_500, 1_600_000_000),
                ret(3_000_000, 3_200_000_000),
            ]),
        );
        let lock = &agg.locks[&0x10];
        assert_eq!(lock.acquisitions, 3);
        assert_eq!(lock.contentions, 0);
        assert_eq!(lock.wait_total_ns, 3_002_500);
        assert_eq!(lock.wait_max_ns, 3_000_000);
        assert_eq!(lock.wait_histogram[9], 1); // 1000 ns in [512, 1024)
        assert_eq!(lock.wait_histogram[10], 1); // 1500 ns in [1024, 2048)
        assert_eq!(lock.wait_histogram[21], 1); // 3 ms in [2^21, 2^22)
        assert_eq!(agg.wait_timeline.len(), 3);
        assert_eq!(agg.wait_timeline[0][9] + agg.wait_timeline[0][10], 2);
        assert_eq!(agg.wait_timeline[2][21], 1);
        // All three came from the same (unknown) call site.
        assert_eq!(lock.call_sites.len(), 1);
        assert_eq!(lock.call_sites[&(0, -1)], (3, 3_002_500));
    }

    #[test]
    fn buckets_and_labels() {
        assert_eq!(wait_bucket(0), 0);
        assert_eq!(wait_bucket(1), 0);
        assert_eq!(wait_bucket(2), 1);
        assert_eq!(wait_bucket(1023), 9);
        assert_eq!(wait_bucket(1024), 10);
        assert_eq!(wait_bucket(u64::MAX), 63);
        assert_eq!(bucket_label(10), "≥1µs");
        assert_eq!(bucket_label(20), "≥1ms");
        assert_eq!(bucket_label(0), "≥1ns");
    }
}
