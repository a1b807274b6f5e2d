//! Exact counts: the slowpath fixture enters the Mutex slow path a known
//! number of times (see fixtures/go/slowpath), some of them on a stack that
//! must grow at lockSlow's prologue. mapwatch must count every entry once.

mod common;

use common::*;

fn run(go: &str, stripped: bool, args: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let binary = fixture(go, "slowpath", stripped);
    let workload = Workload::start(&binary, &["-calls", "20000", "-growth", "3000"]);
    let tracer = Tracer::attach(workload.pid, args);
    let truth = workload.run_to_end();
    (truth, tracer.report())
}

fn slow_mu_address(go: &str, stripped: bool) -> u64 {
    let oracle = if stripped {
        symtab_twin(go, "slowpath")
    } else {
        fixture(go, "slowpath", false)
    };
    nm_address(&oracle, "main.slowMu")
}

#[test]
fn every_slow_path_entry_is_counted_exactly_once() {
    let mut skipped = 0;
    for go in go_versions() {
        for stripped in [false, true] {
            let (truth, report) = run(&go, stripped, &[]);
            assert_nothing_lost(&report);
            let lock = lock_at(&report, slow_mu_address(&go, stripped)).unwrap_or_else(|| {
                panic!("main.slowMu missing (Go {go}, stripped {stripped}): {report:#}")
            });
            assert_eq!(
                lock["contentions"], truth["lock_calls"],
                "Go {go}, stripped {stripped}: {report:#}"
            );
            // Every entry returns once: the RET probes see each acquisition,
            // matched to its entry by goroutine.
            assert_eq!(
                lock["acquisitions"], truth["lock_calls"],
                "Go {go}, stripped {stripped}: {report:#}"
            );
            assert_eq!(
                report["probe_counters"]["unmatched_returns"], 0,
                "{report:#}"
            );
            let histogram_total: u64 = lock["wait_histogram"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["count"].as_u64().unwrap())
                .sum();
            assert_eq!(Some(histogram_total), lock["acquisitions"].as_u64());
            if !stripped {
                assert_eq!(lock["name"], "main.slowMu");
            }
            skipped += report["probe_counters"]["skipped_reentry"]
                .as_u64()
                .unwrap();
        }
    }
    // The growth goroutines make some lockSlow prologues grow the stack; the
    // probe saw those passes and skipped them (else the equality above
    // would not have held).
    assert!(skipped > 0, "no stack growth at lockSlow was exercised");
}

#[test]
fn entry_probes_count_stack_growth_reentries_twice() {
    // The reason the default site skips re-entries: at the function entry,
    // a call that grows the stack is seen twice.
    let go = "1.27.3";
    let (truth, report) = run(go, false, &["--probe-site", "entry"]);
    assert_nothing_lost(&report);
    let lock = lock_named(&report, "main.slowMu").expect("main.slowMu");
    let counted = lock["contentions"].as_u64().unwrap();
    let calls = truth["lock_calls"].as_u64().unwrap();
    assert!(
        counted >= calls,
        "entry probes cannot miss calls: {counted} < {calls}"
    );
}

/// With Go's runtime locks probed as well, `sync` waits still match their
/// ends one to one: a goroutine in `lockSlow` waits on the semaphore
/// table's runtime lock (`runtime.semtable`) inside its wait, and the two
/// waits are kept apart. The bundled workload's contended mutex and
/// RWMutex: every contention acquired (the session ends after the
/// workload), no end unmatched, and the nesting exercised.
#[test]
fn runtime_lock_waits_nested_in_mutex_waits_are_kept_apart() {
    for go in ["1.23.9", "1.27.3"] {
        let binary = fixture(go, "contend", false);
        let workload = Workload::start(&binary, &[]);
        let tracer = Tracer::attach(workload.pid, &["--probe", "locks,rtlocks"]);
        let _truth = workload.run_to_end();
        let report = tracer.report();
        assert_nothing_lost(&report);
        assert_eq!(report["probe_counters"]["unmatched_returns"], 0, "Go {go}");
        for name in ["main.hotMu", "main.hotRW"] {
            let lock = lock_named(&report, name).unwrap_or_else(|| panic!("{name}"));
            assert!(
                lock["contentions"].as_u64().unwrap() > 0,
                "Go {go}: {lock:#}"
            );
            assert_eq!(
                lock["contentions"], lock["acquisitions"],
                "Go {go}: {lock:#}"
            );
        }
        // Waiters of those locks queued on the semaphore table's lock.
        let nested: u64 = report["locks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                l["kind"] == "runtime"
                    && l["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("runtime.semtable"))
            })
            .map(|l| l["contentions"].as_u64().unwrap())
            .sum();
        assert!(nested > 0, "Go {go}: no semtable wait: {report:#}");
    }
}
