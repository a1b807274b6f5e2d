use std::sync::Arc;

use probe_common::{EventHeader, EventTag, LockEvent, SiteKind};

use super::*;
use crate::{model::StopReason, target::Executable};

/// An aggregator for process 7 with no probes, naming addresses through
/// this test binary.
fn aggregator(start_ns: u64) -> Aggregator {
    let path = std::env::current_exe().unwrap();
    let exe = Arc::new(Executable::open(&path, "test").unwrap());
    let symbolizer = Arc::new(Symbolizer::new(exe, 0));
    let plan = Arc::new(ProbePlan::default());
    let target = TargetInfo {
        pid: 7,
        exe: "test".into(),
        comm: "test".into(),
        go_version: None,
        build_id: None,
        debug_file: None,
        modules: Vec::new(),
    };
    let catalog = Catalog::new(target, &plan, &symbolizer);
    Aggregator::new(catalog, plan, symbolizer, start_ns, 4)
}

fn event(lock_addr: u64, cpu: u32, tgid: u32, t: u64) -> LockEvent {
    LockEvent {
        header: EventHeader {
            tag: EventTag::Lock as u32,
            cpu,
            tgid,
            tid: tgid,
            timestamp_ns: t,
        },
        lock_addr,
        goroutine: 0,
        wait_ns: 0,
        caller_ip: 0,
        stack_id: -1,
        kind: SiteKind::LockSlowEntry as u32,
        site_index: 0,
        role: 0,
        _pad: 0,
    }
}

#[test]
fn counts_per_lock_and_cpu_and_ignores_other_processes() {
    let mut agg = aggregator(0);
    agg.apply(IntakeMessage::Events(vec![
        event(0x10, 0, 7, 5),
        event(0x10, 3, 7, 2),
        event(0x20, 1, 7, 9),
        event(0x10, 0, 8, 1),
    ]));
    agg.apply(IntakeMessage::Lost { cpu: 1, count: 3 });
    agg.apply(IntakeMessage::Lost { cpu: 1, count: 2 });
    let a = &agg.locks.locks[&0x10];
    assert_eq!(a.contentions, 2);
    assert_eq!(a.per_cpu, vec![1, 0, 0, 1]);
    assert_eq!((a.first_ns, a.last_ns), (2, 5));
    assert_eq!(agg.locks.locks[&0x20].contentions, 1);
    assert_eq!(agg.foreign, 1);
    assert_eq!(agg.events, 4);
    assert_eq!(agg.events_lost(), 5);
    let snapshot = agg.snapshot(&SnapshotInputs {
        stopped_by: Some(StopReason::Duration),
        ..SnapshotInputs::default()
    });
    assert_eq!(snapshot.locks.len(), 2);
    assert_eq!(snapshot.locks[0].address, 0x10);
    assert_eq!(snapshot.locks[0].kind, LockKind::Mutex);
    assert_eq!(snapshot.events_lost, 5);
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["stopped_by"], "duration");
    assert_eq!(json["locks"][0]["address"], "0x10");
    assert_eq!(json["locks"][0]["kind"], "mutex");
}

#[test]
fn signal_waits_stay_out_of_the_locks_and_rwlock_readers_are_split() {
    let mut agg = aggregator(0);
    let with = |role: LockRole, kind: SiteKind, lock: u64, wait_ns: u64| LockEvent {
        role: role as u32,
        kind: kind as u32,
        wait_ns,
        ..event(lock, 0, 7, 10)
    };
    agg.apply(IntakeMessage::Events(vec![
        with(LockRole::CondWait, SiteKind::LockSlowEntry, 0x100, 0),
        with(LockRole::CondWait, SiteKind::LockSlowReturn, 0x100, 5_000),
        with(LockRole::RwlockReader, SiteKind::LockSlowEntry, 0x200, 0),
        with(LockRole::RwlockReader, SiteKind::LockSlowEntry, 0x200, 0),
        with(LockRole::RwlockWriter, SiteKind::LockSlowEntry, 0x200, 0),
        with(LockRole::Futex, SiteKind::LockSlowEntry, 0x300, 0),
        with(LockRole::ThreadJoin, SiteKind::LockSlowEntry, 0x400, 0),
    ]));
    let snapshot = agg.snapshot(&SnapshotInputs::default());
    let kinds: Vec<(u64, LockKind)> = snapshot.locks.iter().map(|l| (l.address, l.kind)).collect();
    assert_eq!(
        kinds,
        vec![(0x200, LockKind::Rwlock), (0x300, LockKind::Futex)]
    );
    assert_eq!(snapshot.locks[0].contentions, 3);
    assert_eq!(snapshot.locks[0].reader_contentions, Some(2));
    assert_eq!(snapshot.signal_waits.len(), 2);
    assert_eq!(snapshot.signal_waits[1].kind, LockKind::ThreadJoin);
    let cond = &snapshot.signal_waits[0];
    assert_eq!((cond.address, cond.kind), (0x100, LockKind::Condvar));
    assert_eq!((cond.contentions, cond.acquisitions), (1, 1));
    assert_eq!(cond.wait_seconds_total, 5e-6);
    // The condition variable's wait is in no lock timeline.
    assert!(agg.locks.timeline.iter().flatten().all(|&n| n == 0));
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["signal_waits"][0]["kind"], "condvar");
    assert_eq!(json["locks"][0]["kind"], "rwlock");
}

#[test]
fn native_waits_are_grouped_by_thread_name() {
    let mut agg = aggregator(0);
    let comm = |name: &str| {
        let mut comm = [0u8; probe_common::THREAD_COMM_BYTES];
        comm[..name.len()].copy_from_slice(name.as_bytes());
        comm
    };
    let row = |lock: u64, tid: u32, role: LockRole, name: &str, waits: u64, ns: u64| {
        (
            probe_common::ThreadWaitKey {
                lock_addr: lock,
                tid,
                role: role as u32,
            },
            probe_common::ThreadWaitStats {
                waits,
                wait_ns: ns,
                comm: comm(name),
            },
        )
    };
    agg.apply(IntakeMessage::Events(vec![LockEvent {
        role: LockRole::RwlockReader as u32,
        ..event(0x200, 0, 7, 10)
    }]));
    agg.sample(
        KernelSample {
            thread_waits: vec![
                row(0x200, 11, LockRole::RwlockReader, "worker", 3, 3_000),
                row(0x200, 12, LockRole::RwlockReader, "worker", 2, 1_000),
                // One thread in two roles is one thread.
                row(0x200, 12, LockRole::RwlockWriter, "worker", 1, 1_000),
                row(0x200, 13, LockRole::RwlockWriter, "", 1, 9_000),
            ],
            ..KernelSample::default()
        },
        true,
        Watched::ALL,
    );
    let snapshot = agg.snapshot(&SnapshotInputs::default());
    let groups: Vec<(&str, u64, u64)> = snapshot.locks[0]
        .threads
        .iter()
        .map(|g| (g.name.as_str(), g.threads, g.waits))
        .collect();
    assert_eq!(groups, vec![("tid 13", 1, 1), ("worker", 2, 6)]);
    assert_eq!(snapshot.locks[0].threads[1].wait_seconds, 5e-6);
}

#[test]
fn returns_carry_waits_into_histograms_and_the_timeline() {
    let mut agg = aggregator(1_000_000_000);
    let ret = |wait_ns: u64, t: u64| LockEvent {
        wait_ns,
        kind: SiteKind::LockSlowReturn as u32,
        ..event(0x10, 0, 7, t)
    };
    agg.apply(IntakeMessage::Events(vec![
        ret(1_000, 1_500_000_000),
        ret(1_500, 1_600_000_000),
        ret(3_000_000, 3_200_000_000),
    ]));
    let lock = &agg.locks.locks[&0x10];
    assert_eq!(lock.acquisitions, 3);
    assert_eq!(lock.contentions, 0);
    assert_eq!(lock.wait_total_ns, 3_002_500);
    assert_eq!(lock.wait_max_ns, 3_000_000);
    assert_eq!(lock.wait_histogram[9], 1); // 1000 ns in [512, 1024)
    assert_eq!(lock.wait_histogram[10], 1); // 1500 ns in [1024, 2048)
    assert_eq!(lock.wait_histogram[21], 1); // 3 ms in [2^21, 2^22)
    let timeline = &agg.locks.timeline;
    assert_eq!(timeline.len(), 3);
    assert_eq!(timeline[0][9] + timeline[0][10], 2);
    assert_eq!(timeline[2][21], 1);
    // All three came from the same (unknown) call site.
    assert_eq!(lock.call_sites.len(), 1);
    assert_eq!(lock.call_sites[&(0, -1)], (3, 3_002_500));
    let snapshot = agg.snapshot(&SnapshotInputs::default());
    let heatmap = &snapshot.heatmaps[0];
    assert_eq!(heatmap.kind, crate::model::HeatmapKind::LockWait);
    assert_eq!(
        heatmap.rows.first(),
        Some(&crate::model::RowLabel::WaitBucket(21))
    );
    assert_eq!(heatmap.total(), 3);
    assert_eq!(snapshot.locks[0].wait_histogram.len(), 3);
}

#[test]
fn events_of_unknown_kind_are_malformed() {
    let mut agg = aggregator(0);
    agg.apply(IntakeMessage::Events(vec![LockEvent {
        kind: 99,
        ..event(0x10, 0, 7, 1)
    }]));
    agg.apply(IntakeMessage::Malformed { cpu: 0 });
    assert_eq!(agg.malformed, 2);
    assert!(agg.locks.locks.is_empty());
}
