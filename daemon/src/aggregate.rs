//! Aggregation: the data model every view reads. Events go in; per-lock
//! statistics, per-CPU counts and loss figures come out.

pub mod cas;

use std::collections::BTreeMap;

use probe_common::{LockEvent, SiteKind};

use crate::intake::IntakeMessage;

/// Statistics of one lock, keyed by its runtime address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockStats {
    /// Entries into the lock's contended slow path.
    pub contentions: u64,
    /// Contentions per CPU (index = CPU number).
    pub per_cpu: Vec<u64>,
    /// Timestamp (ns, monotonic) of the first and last contention.
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
}

/// Everything observed so far.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
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
}

impl Aggregate {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
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
        if SiteKind::from_raw(event.kind) != Some(SiteKind::LockSlowEntry) {
            self.malformed += 1;
            return;
        }
        let stats = self.locks.entry(event.lock_addr).or_default();
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
            tgid,
            tid: tgid,
            cpu,
            kind: SiteKind::LockSlowEntry as u32,
            site_index: 0,
            _pad: 0,
        }
    }

    #[test]
    fn counts_per_lock_and_cpu_and_ignores_other_processes() {
        let mut agg = Aggregate::new();
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
}
