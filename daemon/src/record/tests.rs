use super::*;
use crate::model::{sample_snapshot, Key, MapOp, StopReason};

/// A cumulative snapshot `seconds` into the session: the sample's lock with
/// `contentions` (each a 1 ms wait in one bucket), its map with `keys`
/// (name, loads).
fn at(seconds: f64, contentions: u64, keys: &[(&str, u64)]) -> Arc<Snapshot> {
    let mut s = sample_snapshot();
    s.duration_seconds = seconds;
    s.stopped_by = None;
    s.overhead = None;
    s.probe_counters.hits = 2 * contentions;
    let lock = &mut s.locks[0];
    lock.contentions = contentions;
    lock.acquisitions = contentions;
    lock.per_cpu = vec![contentions, 0];
    lock.wait_seconds_total = contentions as f64 * 1e-3;
    lock.wait_seconds_max = if contentions > 0 { 1e-3 } else { 0.0 };
    lock.wait_histogram[0].count = contentions;
    lock.top_call_sites[0].count = contentions;
    lock.top_call_sites[0].wait_seconds = contentions as f64 * 1e-3;
    let map = &mut s.maps[0];
    let template = map.top_keys[0].clone();
    map.top_keys = keys
        .iter()
        .map(|&(name, loads)| KeyReport {
            key: Key::Str {
                text: name.into(),
                truncated: false,
            },
            ops: OpCounts(vec![(MapOp::Load, loads)]),
            total: loads,
            per_cpu: vec![loads, 0],
            ..template.clone()
        })
        .collect();
    let total = keys.iter().map(|(_, n)| n).sum();
    map.total = total;
    map.ops = OpCounts(vec![(MapOp::Load, total)]);
    map.per_cpu = vec![total, 0];
    Arc::new(s)
}

fn clock(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
}

fn recorder() -> Recorder {
    Recorder::new(Duration::from_secs(900), DEFAULT_MAX_BYTES)
}

fn key_total(report: &Snapshot, name: &str) -> Option<u64> {
    report.maps[0]
        .top_keys
        .iter()
        .find(|k| k.key.to_string() == name)
        .map(|k| k.total)
}

#[test]
fn the_whole_recording_sums_to_the_latest_snapshot() {
    let mut r = recorder();
    r.record(at(0.0, 0, &[]), clock(0));
    r.record(at(1.0, 10, &[("a", 5)]), clock(1));
    r.record(at(2.0, 25, &[("a", 9), ("b", 2)]), clock(2));
    let mut last = (*at(2.5, 40, &[("a", 12), ("b", 2)])).clone();
    last.stopped_by = Some(StopReason::TargetExited);
    r.record(Arc::new(last), clock(3));
    let report = r.window(clock(0), clock(10)).expect("a window");
    let lock = &report.locks[0];
    assert_eq!(lock.contentions, 40);
    assert_eq!(lock.acquisitions, 40);
    assert_eq!(lock.per_cpu, vec![40, 0]);
    assert!((lock.wait_seconds_total - 0.040).abs() < 1e-12);
    assert_eq!(lock.wait_seconds_max, 1e-3);
    assert_eq!(lock.wait_histogram[0].count, 40);
    assert_eq!(lock.top_call_sites[0].count, 40);
    assert!((lock.top_call_sites[0].share - 1.0).abs() < 1e-9);
    assert_eq!(report.probe_counters.hits, 80);
    assert_eq!(report.maps[0].total, 14);
    assert_eq!(key_total(&report, "a"), Some(12));
    assert_eq!(key_total(&report, "b"), Some(2));
    assert!(report.maps[0].top_keys.iter().all(|k| k.exact));
    assert_eq!(report.duration_seconds, 2.5);
    assert_eq!(report.stopped_by, Some(StopReason::TargetExited));
    let window = report.window.expect("the window");
    assert!(!window.truncated);
    assert_eq!(window.from_session_seconds, 0.0);
    assert_eq!(window.to_session_seconds, 2.5);
}

#[test]
fn a_later_window_reports_only_its_own_seconds() {
    let mut r = recorder();
    r.record(at(1.0, 10, &[("a", 5)]), clock(1));
    r.record(at(2.0, 10, &[("a", 5)]), clock(2));
    r.record(at(3.0, 17, &[("a", 5), ("b", 4)]), clock(3));
    r.record(at(4.0, 20, &[("a", 6), ("b", 8)]), clock(4));
    // Seconds 2..4 of the session end at clock 3 and 4.
    let report = r
        .window(clock(2) + Duration::from_millis(100), clock(4))
        .expect("a window");
    assert_eq!(report.locks[0].contentions, 10);
    assert_eq!(report.locks[0].top_call_sites[0].count, 10);
    assert_eq!(report.maps[0].total, 9);
    assert_eq!(key_total(&report, "b"), Some(8));
    assert_eq!(key_total(&report, "a"), Some(1));
    assert_eq!(report.duration_seconds, 2.0);
    assert_eq!(report.stopped_by, None);
    let window = report.window.expect("the window");
    assert!(!window.truncated);
    assert_eq!(window.from_session_seconds, 2.0);
    // An idle second in the middle lists the lock with nothing.
    let idle = r
        .window(clock(1) + Duration::from_millis(100), clock(2))
        .expect("a window");
    assert_eq!(idle.locks[0].contentions, 0);
    assert_eq!(idle.locks[0].wait_seconds_max, 0.0);
    assert!(idle.maps[0].top_keys.is_empty());
    // Before the recording: nothing.
    assert!(r
        .window(clock(0) - Duration::from_secs(60), clock(0))
        .is_none());
}

#[test]
fn a_key_that_entered_a_full_list_carries_its_possible_past() {
    let mut r = recorder();
    let ten: Vec<(String, u64)> = (0..TOP_KEYS).map(|i| (format!("k{i}"), 50)).collect();
    let ten: Vec<(&str, u64)> = ten.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    r.record(at(1.0, 0, &ten), clock(1));
    // "new" enters the list with 60: it may have had up to 50 before.
    let mut later = ten.clone();
    later[TOP_KEYS - 1] = ("new", 60);
    r.record(at(2.0, 0, &later), clock(2));
    let report = r
        .window(clock(1) + Duration::from_millis(100), clock(2))
        .expect("a window");
    let key = report.maps[0]
        .top_keys
        .iter()
        .find(|k| k.key.to_string() == "new")
        .expect("the new key");
    assert_eq!(key.total, 60);
    assert_eq!(key.error, 50);
    assert!(!key.exact);
}

#[test]
fn a_sampled_window_is_scaled_by_its_own_sampling() {
    let mut r = recorder();
    let sampled = |seconds: f64, contentions: u64, counting: f64| {
        let mut s = (*at(seconds, contentions, &[])).clone();
        let mut overhead = sample_snapshot().overhead.expect("overhead");
        overhead.sampling = Sampling {
            counting,
            waits: counting,
        };
        s.overhead = Some(overhead);
        Arc::new(s)
    };
    // Full detail for 2 s (100 seen), then on for 1 s in 2 (10 seen):
    // cumulatively 2/2, then 3/4 of the time.
    r.record(sampled(2.0, 100, 1.0), clock(2));
    r.record(sampled(4.0, 110, 0.75), clock(4));
    let report = r.window(clock(3), clock(4)).expect("a window");
    let lock = &report.locks[0];
    assert!(!lock.exact);
    assert!(
        (lock.sampled_fraction - 0.5).abs() < 1e-9,
        "{}",
        lock.sampled_fraction
    );
    assert_eq!(lock.contentions, 20);
    let whole = r.window(clock(0), clock(4)).expect("a window");
    assert_eq!(whole.locks[0].contentions, scaled(110, 0.75));
}

fn scaled(n: u64, fraction: f64) -> u64 {
    crate::model::scaled(n, fraction)
}

#[test]
fn old_seconds_expire_and_memory_stays_bounded() {
    let mut r = Recorder::new(Duration::from_secs(10), DEFAULT_MAX_BYTES);
    for s in 1..=30 {
        r.record(at(s as f64, s * 3, &[("a", s)]), clock(s));
    }
    assert_eq!(r.len(), 11, "seconds 20..=30 are within 10 s of 30");
    let report = r.window(clock(0), clock(30)).expect("a window");
    assert_eq!(report.locks[0].contentions, 33);
    assert!(report.window.expect("the window").truncated);
    r.expire(clock(41));
    assert!(r.is_empty());

    let mut small = Recorder::new(Duration::from_secs(900), 4096);
    for s in 1..=50 {
        small.record(at(s as f64, s * 3, &[("a", s)]), clock(s));
    }
    assert!(small.bytes() <= 4096, "{} bytes", small.bytes());
    assert!(small.dropped_for_memory() > 0);
    let report = small.window(clock(0), clock(50)).expect("a window");
    assert!(report.window.expect("the window").truncated);
    assert_eq!(report.locks[0].contentions, 3 * small.len() as u64);
}

#[test]
fn a_repeated_snapshot_records_nothing_but_the_final_one_does() {
    let mut r = recorder();
    let one = at(1.0, 4, &[]);
    r.record(one.clone(), clock(1));
    r.record(one.clone(), clock(2));
    assert_eq!(r.len(), 1);
    let mut last = (*one).clone();
    last.stopped_by = Some(StopReason::Signal);
    r.record(Arc::new(last), clock(2));
    assert_eq!(r.len(), 2);
    let report = r.window(clock(0), clock(3)).expect("a window");
    assert_eq!(report.stopped_by, Some(StopReason::Signal));
    assert_eq!(report.locks[0].contentions, 4);
}
