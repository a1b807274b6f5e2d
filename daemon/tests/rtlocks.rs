//! Go's runtime-internal locks (`--probe rtlocks`) on a fixture that
//! contends two of them: one channel's lock, inside the hchan whose address
//! the fixture prints, by senders and receivers in tight loops, and the
//! heap's lock (`runtime.mheap_.lock`, the global's first field) by large
//! allocations. Both are reported as runtime locks with their waits, the
//! channel's from the channel operations of `main.send` and
//! `main.receive`, the heap's by its global's name.

mod common;

use common::*;
use mapwatch::model::RUNTIME_LOCK_FRAMES;

/// The first frame of a call site outside the runtime lock's own
/// (inlined) functions.
fn own_function(site: &serde_json::Value) -> String {
    first_frame(site, |f| {
        let name = f.split([' ', '+']).next().unwrap_or_default();
        !RUNTIME_LOCK_FRAMES.contains(&name)
    })
}

#[test]
fn runtime_locks_are_counted_placed_and_named() {
    for go in ["1.23.9", "1.27.3"] {
        let binary = fixture(go, "rtlock", false);
        let workload = Workload::start(&binary, &["-seconds", "3s"]);
        let tracer = Tracer::attach(workload.pid, &["--probe", "rtlocks"]);
        let truth = workload.run_to_end();
        let report = tracer.report();
        let what = format!("Go {go}");
        assert_nothing_lost(&report);
        let locks = report["locks"].as_array().expect("locks");
        for lock in locks {
            // Only runtime locks were probed (the others listed are the
            // globals DWARF knows, never contended); every wait that began
            // ended, but for the few under way when the session ended.
            let contentions = lock["contentions"].as_u64().expect("contentions");
            if contentions == 0 {
                assert_ne!(lock["kind"], "runtime", "{what}: {lock:#}");
                continue;
            }
            assert_eq!(lock["kind"], "runtime", "{what}: {lock:#}");
            let acquisitions = lock["acquisitions"].as_u64().expect("acquisitions");
            assert!(
                acquisitions <= contentions && contentions - acquisitions <= 16,
                "{what}: {lock:#}"
            );
        }
        // The channel's lock, inside its hchan.
        let channel = u64::from_str_radix(
            truth["channel"]
                .as_str()
                .expect("channel")
                .trim_start_matches("0x"),
            16,
        )
        .expect("a hex address");
        let in_channel = |l: &&serde_json::Value| {
            let address = l["address"].as_str().expect("address");
            let address = u64::from_str_radix(address.trim_start_matches("0x"), 16).unwrap();
            (channel..channel + 256).contains(&address)
        };
        let lock = locks
            .iter()
            .find(in_channel)
            .unwrap_or_else(|| panic!("{what}: no lock in the hchan at {channel:#x}: {report:#}"));
        assert!(
            lock["contentions"].as_u64().unwrap() >= 100,
            "{what}: {lock:#}"
        );
        assert!(
            lock["wait_seconds_total"].as_f64().unwrap() > 0.0,
            "{what}: {lock:#}"
        );
        assert!(lock["name"].is_null(), "{what}: a heap lock: {lock:#}");
        let sites = lock["top_call_sites"].as_array().expect("top_call_sites");
        assert!(!sites.is_empty(), "{what}: {lock:#}");
        for site in sites {
            let own = own_function(site);
            let frames = site["frames"].as_array().unwrap();
            let called_from = |prefixes: &[&str]| {
                frames.iter().any(|f| {
                    let f = f.as_str().unwrap();
                    prefixes.iter().any(|p| f.starts_with(p))
                })
            };
            // main closes the channel when the work is done: a sender or
            // receiver still at it can make that wait too (rarely).
            if own.starts_with("runtime.closechan") {
                assert!(called_from(&["main.main+"]), "{what}: {site:#}");
                continue;
            }
            assert!(
                own.starts_with("runtime.chansend") || own.starts_with("runtime.chanrecv"),
                "{what}: {site:#}"
            );
            assert!(
                called_from(&["main.send+", "main.receive+"]),
                "{what}: {site:#}"
            );
        }
        // The heap's lock, by its global's name.
        let mheap = nm_address(&binary, "runtime.mheap_");
        let heap = lock_at(&report, mheap)
            .unwrap_or_else(|| panic!("{what}: no runtime.mheap_ lock: {report:#}"));
        assert_eq!(heap["name"], "runtime.mheap_", "{what}");
        assert!(heap["contentions"].as_u64().unwrap() > 0, "{what}");
        assert!(
            truth["large_allocs"].as_u64().unwrap() > 0,
            "{what}: {truth}"
        );
    }
}
