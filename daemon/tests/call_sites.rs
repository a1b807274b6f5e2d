//! Waiting call sites against Go's own mutex profile: a fixture locks one
//! mutex from five functions of falling weight; the three that wait most
//! per mapwatch are the three Go's mutex profile blames most.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;

/// `main.siteA+0x1f (file:line)` → `main.siteA`.
fn function_of(frame: &str) -> String {
    frame.split(['+', ' ']).next().unwrap_or(frame).to_string()
}

/// The top `n` `main.site*` functions of a pprof text (debug=1) mutex
/// profile, by delay: each record's first `main.site` frame is the unlocker.
fn go_profile_top(profile: &str, n: usize) -> BTreeSet<String> {
    let mut delay: HashMap<String, u64> = HashMap::new();
    let mut current: Option<u64> = None;
    for line in profile.lines() {
        if let Some(frame) = line.strip_prefix("#\t") {
            let function = frame.split('\t').nth(1).map(function_of);
            if let (Some(cycles), Some(function)) = (current, function) {
                if function.starts_with("main.site") {
                    *delay.entry(function).or_default() += cycles;
                    current = None;
                }
            }
        } else if line.contains(" @ ") {
            current = line.split_whitespace().next().and_then(|c| c.parse().ok());
        }
    }
    let mut ranked: Vec<(String, u64)> = delay.into_iter().collect();
    ranked.sort_by_key(|(_, cycles)| std::cmp::Reverse(*cycles));
    ranked.into_iter().take(n).map(|(f, _)| f).collect()
}

#[test]
fn top_three_waiting_call_sites_match_gos_mutex_profile() {
    for go in ["1.23.9", "1.27.3"] {
        let workload = Workload::start(&fixture(go, "callsites", false), &[]);
        let tracer = Tracer::attach(workload.pid, &[]);
        let truth = workload.run_to_end();
        let report = tracer.report();
        let lock = lock_named(&report, "main.sharedMu").expect("main.sharedMu");
        let ours: BTreeSet<String> = lock["top_call_sites"]
            .as_array()
            .unwrap()
            .iter()
            .take(3)
            .map(|site| {
                // The first frame of the fixture's code (inlined Lock frames
                // come before it).
                let frames = site["frames"].as_array().unwrap();
                let own = frames
                    .iter()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.starts_with("main."))
                    .unwrap_or("?");
                function_of(own)
            })
            .collect();
        let theirs = go_profile_top(truth["mutex_profile"].as_str().unwrap(), 3);
        let expected: BTreeSet<String> = ["main.siteA", "main.siteB", "main.siteC"]
            .map(String::from)
            .into();
        assert_eq!(
            theirs, expected,
            "Go {go}: Go's own profile ranks differently:\n{}",
            truth["mutex_profile"]
        );
        assert_eq!(ours, theirs, "Go {go}: {:#}", lock["top_call_sites"]);
    }
}

#[test]
fn stripped_binaries_get_inlined_frames_from_the_module_data() {
    // No symbol table, so no `go:func.*` symbol: the inline trees' base is
    // found through the runtime's module data instead.
    let workload = Workload::start(&fixture("1.27.3", "callsites", true), &[]);
    let tracer = Tracer::attach(workload.pid, &[]);
    workload.run_to_end();
    let report = tracer.report();
    let lock = &report["locks"][0];
    let site = &lock["top_call_sites"][0];
    let frames: Vec<&str> = site["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    // The inlined Lock (Go 1.27: internal/sync's, inside sync's), then
    // the fixture's function at the line of its Lock call.
    let lock = frames
        .iter()
        .position(|f| f.starts_with("sync.(*Mutex).Lock ("));
    let own = frames.iter().position(|f| f.starts_with("main.site"));
    assert!(
        matches!((lock, own), (Some(l), Some(o)) if l < o),
        "{frames:#?}"
    );
    assert!(frames[0].contains("Mutex).Lock ("), "{frames:#?}");
}
