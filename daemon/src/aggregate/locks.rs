//! Lock statistics: contentions, waits, call sites and blocked time per
//! lock, and the lock-wait timeline.

use std::{
    cell::OnceCell,
    collections::{BTreeMap, HashMap},
};

use probe_common::{
    BlockedStats, ConvoyStats, HolderKey, HolderStats, LockEvent, LockRole,
    LockStats as KernelStats, LockStatsKey, SiteKind, WAIT_HIST_BUCKETS,
};

use crate::model::LockKind;

/// Number of log2 wait buckets (2^63 ns is centuries).
pub const WAIT_BUCKETS: usize = 64;

/// Most time columns (seconds) kept: a bogus timestamp must not allocate
/// the world.
pub const MAX_COLUMNS: usize = 86_400;

/// The log2 bucket of a wait in ns: bucket `b` holds `[2^b, 2^(b+1))` ns
/// (bucket 0 also holds 0 ns).
pub fn wait_bucket(wait_ns: u64) -> usize {
    (63 - wait_ns.max(1).leading_zeros()) as usize
}

/// The longest wait between two readings of a cumulative longest wait,
/// `before` (none: the first reading) and `now`, whose histogram gained
/// `gained`: the new longest if it rose, else at most the highest gained
/// bucket's bound (and never more than the longest so far).
pub fn gained_max_ns(now: u64, before: Option<u64>, gained: &[u64]) -> u64 {
    match before {
        Some(before) if now <= before => gained
            .iter()
            .rposition(|&n| n > 0)
            .map_or(0, |b| crate::model::log2_bucket_end_ns(b).min(before)),
        _ => now,
    }
}

/// A waiting call site: (return address into the slow path's caller, user
/// stack id or -1).
pub type CallSiteKey = (u64, i64);

/// Statistics of one lock, keyed by its runtime address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockStats {
    /// Entries into the lock's contended slow path.
    pub contentions: u64,
    /// Contentions per CPU (index = CPU number).
    pub per_cpu: Vec<u64>,
    /// Timestamp (ns, monotonic) of the first contention.
    pub first_ns: u64,
    /// Timestamp (ns, monotonic) of the last contention.
    pub last_ns: u64,
    /// Slow-path returns seen: contended acquisitions whose wait is known.
    pub acquisitions: u64,
    /// Sum of their waits, ns.
    pub wait_total_ns: u64,
    /// Longest wait, ns.
    pub wait_max_ns: u64,
    /// Waits by log2 bucket (see [`wait_bucket`]).
    pub wait_histogram: [u64; WAIT_BUCKETS],
    /// Of the waits, those of readers (an RWMutex's `RLock`, a pthread
    /// rwlock's `rdlock`), ns.
    pub reader_wait_total_ns: u64,
    /// Of the contentions, those of readers.
    pub reader_contentions: u64,
    /// Whether an RWMutex semaphore wait was seen on this lock (it is then
    /// an RWMutex whatever DWARF says).
    pub rwmutex: bool,
    /// Whether its waits were in a pthread rwlock's lock calls.
    pub rwlock: bool,
    /// Whether its waits were in a pthread condition variable's waits.
    pub condvar: bool,
    /// Whether its waits were joins of the thread it describes.
    pub join: bool,
    /// Whether its waits were futex waits (a native lock or other futex).
    pub futex: bool,
    /// Whether it is a Go runtime-internal lock (`runtime.mutex`).
    pub runtime: bool,
    /// Waits by call site: (acquisitions, total wait ns).
    pub call_sites: HashMap<CallSiteKey, (u64, u64)>,
    /// Time goroutines spent parked on the lock's semaphores, from park to
    /// runnable (`--blocked-time`), ns.
    pub blocked_total_ns: u64,
    /// Parks counted in `blocked_total_ns`.
    pub blocked_count: u64,
    /// With holder blame: by holder call site (return address into the
    /// release slow path's caller, user stack id or -1).
    pub holders: HashMap<CallSiteKey, HolderStats>,
    /// With holder blame, for an RWMutex: writer convoys by the writer's
    /// call site.
    pub convoys: HashMap<CallSiteKey, ConvoyStats>,
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
            rwlock: false,
            condvar: false,
            join: false,
            futex: false,
            runtime: false,
            call_sites: HashMap::new(),
            blocked_total_ns: 0,
            blocked_count: 0,
            holders: HashMap::new(),
            convoys: HashMap::new(),
        }
    }
}

/// Whether waits of `role` are a reader's: an RWMutex's `RLock`, a pthread
/// rwlock's `rdlock`.
fn is_reader(role: Option<LockRole>) -> bool {
    matches!(role, Some(LockRole::RwReader | LockRole::RwlockReader))
}

impl LockStats {
    /// The lock's kind: an RWMutex when `known_rwmutex` (DWARF says so) or
    /// a reader or writer semaphore wait was seen on it, a pthread rwlock or
    /// condition variable when its waits were in their calls, a futex for futex
    /// words, a runtime lock for `runtime.mutex`es, else a mutex.
    pub fn kind(&self, known_rwmutex: bool) -> LockKind {
        if known_rwmutex || self.rwmutex {
            LockKind::RwMutex
        } else if self.rwlock {
            LockKind::Rwlock
        } else if self.condvar {
            LockKind::Condvar
        } else if self.join {
            LockKind::ThreadJoin
        } else if self.futex {
            LockKind::Futex
        } else if self.runtime {
            LockKind::Runtime
        } else {
            LockKind::Mutex
        }
    }

    /// Notes what a wait of `role` says of the lock's kind.
    fn note_role(&mut self, role: Option<LockRole>) {
        self.rwmutex |= matches!(role, Some(LockRole::RwReader | LockRole::RwWriter));
        self.rwlock |= matches!(role, Some(LockRole::RwlockReader | LockRole::RwlockWriter));
        self.condvar |= role == Some(LockRole::CondWait);
        self.join |= role == Some(LockRole::ThreadJoin);
        self.futex |= role == Some(LockRole::Futex);
        self.runtime |= role == Some(LockRole::Runtime);
    }

    /// Waits of writers, ns: everything but the readers' (for an RWMutex,
    /// its inner mutex plus waiting for readers to leave; for a Mutex, all).
    pub fn writer_wait_total_ns(&self) -> u64 {
        self.wait_total_ns - self.reader_wait_total_ns
    }

    /// The holder call sites whose releases ended some waiting, most
    /// waiting caused first (an RWMutex's writer `Unlock` is probed at
    /// every call: one with no one waiting ended none).
    pub fn holders_by_caused(&self) -> Vec<(CallSiteKey, HolderStats)> {
        let mut sites: Vec<_> = self
            .holders
            .iter()
            .filter(|(_, totals)| totals.caused_ns > 0)
            .map(|(&k, &v)| (k, v))
            .collect();
        sites.sort_by(|a, b| {
            b.1.caused_ns
                .cmp(&a.1.caused_ns)
                .then_with(|| b.1.releases.cmp(&a.1.releases))
                .then_with(|| a.0.cmp(&b.0))
        });
        sites
    }

    /// The writers' call sites of the lock's convoys, most convoy time
    /// first.
    pub fn writers_by_time(&self) -> Vec<(CallSiteKey, ConvoyStats)> {
        let mut writers: Vec<_> = self.convoys.iter().map(|(&k, &v)| (k, v)).collect();
        writers.sort_by(|a, b| b.1.total_ns.cmp(&a.1.total_ns).then_with(|| a.0.cmp(&b.0)));
        writers
    }

    /// The waiting charged to holders in all, ns.
    pub fn caused_total_ns(&self) -> u64 {
        self.holders.values().map(|h| h.caused_ns).sum()
    }

    /// The call sites, most wait first.
    pub fn sites_by_wait(&self) -> Vec<(CallSiteKey, (u64, u64))> {
        let mut sites: Vec<_> = self.call_sites.iter().map(|(&k, &v)| (k, v)).collect();
        sites.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
        sites
    }
}

/// Every lock seen.
#[derive(Debug, Clone, Default)]
pub struct Locks {
    /// Per-lock statistics from events (what the kernel's tables could not
    /// take), by lock address.
    pub(super) locks: BTreeMap<u64, LockStats>,
    /// Lock waits by time column (1 s) and log2 bucket: `timeline[column][bucket]`.
    pub timeline: Vec<[u64; WAIT_BUCKETS]>,
    /// The kernel's lock table as last read (cumulative, per CPU).
    table: Vec<(LockStatsKey, Vec<KernelStats>)>,
    /// The kernel's park table as last read.
    blocked: Vec<(u64, Vec<BlockedStats>)>,
    /// The kernel's holder table as last read.
    holders: Vec<(HolderKey, Vec<HolderStats>)>,
    /// The kernel's convoy table as last read.
    convoys: Vec<(HolderKey, Vec<ConvoyStats>)>,
    /// The table's waits by bucket, summed, as last read.
    table_histogram: Vec<u64>,
    /// [`Self::merged`], computed once per change (a tick reads it for the
    /// timeline, the snapshot and the stacks it shows).
    merged: OnceCell<BTreeMap<u64, LockStats>>,
}

impl Locks {
    /// Takes a reading of the kernel's tables; the waits they gained since
    /// the last one go to time column `column`.
    pub fn set_tables(
        &mut self,
        table: Vec<(LockStatsKey, Vec<KernelStats>)>,
        blocked: Vec<(u64, Vec<BlockedStats>)>,
        column: usize,
    ) {
        self.merged.take();
        let mut histogram = [0u64; WAIT_HIST_BUCKETS];
        for (_, per_cpu) in &table {
            for stats in per_cpu {
                for (total, count) in histogram.iter_mut().zip(stats.hist) {
                    *total += count;
                }
            }
        }
        let column = column.min(MAX_COLUMNS);
        for (bucket, &now) in histogram.iter().enumerate() {
            let before = self.table_histogram.get(bucket).copied().unwrap_or(0);
            let delta = now.saturating_sub(before);
            if delta == 0 {
                continue;
            }
            if self.timeline.len() <= column {
                self.timeline.resize(column + 1, [0; WAIT_BUCKETS]);
            }
            self.timeline[column][bucket] += delta;
        }
        self.table_histogram = histogram.to_vec();
        self.table = table;
        self.blocked = blocked;
    }

    /// Takes a reading of the kernel's holder and convoy tables
    /// (cumulative).
    pub fn set_holders(
        &mut self,
        holders: Vec<(HolderKey, Vec<HolderStats>)>,
        convoys: Vec<(HolderKey, Vec<ConvoyStats>)>,
    ) {
        self.merged.take();
        self.holders = holders;
        self.convoys = convoys;
    }

    /// Every lock's statistics: the kernel's tables and the events together.
    pub fn merged(&self) -> &BTreeMap<u64, LockStats> {
        self.merged.get_or_init(|| self.merge())
    }

    fn merge(&self) -> BTreeMap<u64, LockStats> {
        let mut locks = self.locks.clone();
        for (key, per_cpu) in &self.table {
            let stats = locks.entry(key.lock_addr).or_default();
            let role = LockRole::from_raw(key.role);
            stats.note_role(role);
            let (mut acquisitions, mut wait) = (0, 0);
            for (cpu, row) in per_cpu.iter().enumerate() {
                stats.contentions += row.contentions;
                if row.contentions > 0 {
                    if stats.per_cpu.len() <= cpu {
                        stats.per_cpu.resize(cpu + 1, 0);
                    }
                    stats.per_cpu[cpu] += row.contentions;
                }
                stats.acquisitions += row.acquisitions;
                stats.wait_total_ns = stats.wait_total_ns.saturating_add(row.wait_ns);
                stats.wait_max_ns = stats.wait_max_ns.max(row.wait_max_ns);
                for (total, count) in stats.wait_histogram.iter_mut().zip(row.hist) {
                    *total += count;
                }
                if is_reader(role) {
                    stats.reader_contentions += row.contentions;
                    stats.reader_wait_total_ns =
                        stats.reader_wait_total_ns.saturating_add(row.wait_ns);
                }
                acquisitions += row.acquisitions;
                wait += row.wait_ns;
            }
            if acquisitions > 0 {
                let site = stats
                    .call_sites
                    .entry((key.caller_ip, key.stack_id))
                    .or_default();
                site.0 += acquisitions;
                site.1 = site.1.saturating_add(wait);
            }
        }
        for (key, per_cpu) in &self.holders {
            let stats = locks.entry(key.lock_addr).or_default();
            let site = stats
                .holders
                .entry((key.caller_ip, key.stack_id))
                .or_default();
            for row in per_cpu {
                site.merge(row);
            }
        }
        for (key, per_cpu) in &self.convoys {
            let stats = locks.entry(key.lock_addr).or_default();
            stats.rwmutex = true;
            let site = stats
                .convoys
                .entry((key.caller_ip, key.stack_id))
                .or_default();
            for row in per_cpu {
                site.merge(row);
            }
        }
        for (lock, per_cpu) in &self.blocked {
            let stats = locks.entry(*lock).or_default();
            for row in per_cpu {
                stats.blocked_count += row.parks;
                stats.blocked_total_ns = stats.blocked_total_ns.saturating_add(row.blocked_ns);
            }
        }
        locks
    }

    /// Folds in one lock event of the target; `column` is its time column.
    /// Returns false for an event of unknown kind.
    pub fn add(&mut self, event: &LockEvent, column: usize) -> bool {
        self.merged.take();
        match SiteKind::from_raw(event.kind) {
            Some(SiteKind::LockSlowEntry) => self.add_entry(event),
            Some(SiteKind::LockSlowReturn) => self.add_return(event, column),
            Some(SiteKind::Ready) => {
                let stats = self.locks.entry(event.lock_addr).or_default();
                stats.blocked_total_ns = stats.blocked_total_ns.saturating_add(event.wait_ns);
                stats.blocked_count += 1;
            }
            _ => return false,
        }
        true
    }

    fn add_return(&mut self, event: &LockEvent, column: usize) {
        let stats = self.locks.entry(event.lock_addr).or_default();
        let role = LockRole::from_raw(event.role);
        if is_reader(role) {
            stats.reader_wait_total_ns = stats.reader_wait_total_ns.saturating_add(event.wait_ns);
        }
        stats.note_role(role);
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
        let column = column.min(MAX_COLUMNS);
        if self.timeline.len() <= column {
            self.timeline.resize(column + 1, [0; WAIT_BUCKETS]);
        }
        self.timeline[column][bucket] += 1;
    }

    fn add_entry(&mut self, event: &LockEvent) {
        let stats = self.locks.entry(event.lock_addr).or_default();
        let role = LockRole::from_raw(event.role);
        if is_reader(role) {
            stats.reader_contentions += 1;
        }
        stats.note_role(role);
        let time = event.header.timestamp_ns;
        if stats.contentions == 0 {
            stats.first_ns = time;
        }
        stats.contentions += 1;
        stats.first_ns = stats.first_ns.min(time);
        stats.last_ns = stats.last_ns.max(time);
        let cpu = event.header.cpu as usize;
        if stats.per_cpu.len() <= cpu {
            stats.per_cpu.resize(cpu + 1, 0);
        }
        stats.per_cpu[cpu] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_rows_of_every_cpu_add_up_per_site() {
        let row = |releases, caused_ns, holds, hold_ns| {
            let mut hold_hist = [0; WAIT_HIST_BUCKETS];
            hold_hist[wait_bucket(1000)] = holds;
            HolderStats {
                releases,
                caused_ns,
                holds,
                hold_ns,
                hold_hist,
            }
        };
        let key = |caller_ip| HolderKey {
            lock_addr: 0x10,
            caller_ip,
            stack_id: 3,
        };
        let mut locks = Locks::default();
        locks.set_holders(
            vec![
                (
                    key(0xa),
                    vec![row(2, 5_000, 1, 1000), row(3, 7_000, 2, 2000)],
                ),
                (key(0xb), vec![row(1, 1_000, 0, 0), row(0, 0, 0, 0)]),
            ],
            Vec::new(),
        );
        let stats = &locks.merged()[&0x10];
        assert_eq!(stats.caused_total_ns(), 13_000);
        let sites = stats.holders_by_caused();
        assert_eq!(sites[0].0, (0xa, 3));
        let a = sites[0].1;
        assert_eq!(
            (a.releases, a.caused_ns, a.holds, a.hold_ns),
            (5, 12_000, 3, 3000)
        );
        assert_eq!(a.hold_hist[wait_bucket(1000)], 3);
        assert_eq!(sites[1].1.releases, 1);
    }

    #[test]
    fn buckets() {
        assert_eq!(wait_bucket(0), 0);
        assert_eq!(wait_bucket(1), 0);
        assert_eq!(wait_bucket(2), 1);
        assert_eq!(wait_bucket(1023), 9);
        assert_eq!(wait_bucket(1024), 10);
        assert_eq!(wait_bucket(u64::MAX), 63);
    }
}
