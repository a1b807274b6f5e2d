//! `mapwatch attach` against real Go processes: real BPF programs, real
//! uprobes, fixtures built with several Go versions, plain and stripped.

mod common;

use common::*;

/// Runs the contend fixture under mapwatch and returns (truth, report).
fn traced_run(go: &str, stripped: bool, args: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let binary = fixture(go, "contend", stripped);
    let workload = Workload::start(&binary, &["-iterations", "20000"]);
    let tracer = Tracer::attach(workload.pid, args);
    let truth = workload.run_to_end();
    let report = tracer.report();
    (truth, report)
}

fn check_contended_and_uncontended(go: &str, stripped: bool) {
    let (truth, report) = traced_run(go, stripped, &[]);
    // The oracle for addresses: the binary itself when it has symbols, else
    // its twin built with the same layout and a symbol table.
    let oracle = if stripped {
        symtab_twin(go, "contend")
    } else {
        fixture(go, "contend", false)
    };
    assert_eq!(report["target"]["go_version"], truth["go_version"]);
    assert_eq!(report["target"]["pid"], truth["pid"]);
    assert_eq!(report["stopped_by"], "target-exited");
    assert_nothing_lost(&report);
    let probe = &report["probes"][0];
    assert_eq!(probe["site"], "emulated", "{report:#}");

    let hot_addr = nm_address(&oracle, "main.hotMu");
    let cold_addr = nm_address(&oracle, "main.coldMu");
    let hot =
        lock_at(&report, hot_addr).unwrap_or_else(|| panic!("main.hotMu not reported: {report:#}"));
    assert!(hot["contentions"].as_u64().unwrap() > 0);
    // Waits were measured: slow-path returns, matched by goroutine.
    assert!(hot["acquisitions"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        hot["wait_seconds_total"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert!(
        hot["wait_seconds_max"].as_f64().unwrap() <= hot["wait_seconds_total"].as_f64().unwrap()
    );
    let waits = report["heatmaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["title"] == "Lock wait time")
        .unwrap_or_else(|| panic!("no lock wait heatmap: {report:#}"));
    let heatmap_total: u64 = waits["cells"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    let acquisitions: u64 = report["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["acquisitions"].as_u64().unwrap())
        .sum();
    assert_eq!(heatmap_total, acquisitions, "{report:#}");
    // Call sites: every worker locks main.hotMu from the same closure in
    // main.main; its frame comes first (the slow path's caller), symbolized
    // from the pclntab, stripped or not.
    let sites = hot["top_call_sites"].as_array().unwrap();
    assert!(!sites.is_empty(), "{report:#}");
    let top = &sites[0];
    // Inlined Lock frames (from the inline tree) come first when the binary
    // has a symbol table; the first frame of the fixture's own code is the
    // worker closure.
    let frames: Vec<&str> = top["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let first = frames
        .iter()
        .find(|f| f.starts_with("main."))
        .unwrap_or_else(|| panic!("no frame in main: {frames:?}"));
    assert!(first.starts_with("main.main.func"), "{first}: {report:#}");
    if !stripped {
        assert!(
            frames[0].contains("Mutex).Lock ("),
            "inlined Lock frame: {frames:?}"
        );
    }
    assert!(top["share"].as_f64().unwrap() > 0.5, "{report:#}");
    let attributed: u64 = sites.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert!(attributed <= hot["acquisitions"].as_u64().unwrap());

    // The RWMutex: readers wait for writers, writers for readers; both are
    // attributed to the RWMutex itself, in stripped builds too.
    let rw = lock_at(&report, nm_address(&oracle, "main.hotRW"))
        .unwrap_or_else(|| panic!("main.hotRW not reported: {report:#}"));
    assert_eq!(rw["kind"], "rwmutex", "{report:#}");
    let reader = rw["reader_wait_seconds_total"].as_f64().unwrap();
    let writer = rw["writer_wait_seconds_total"].as_f64().unwrap();
    assert!(reader > 0.0 && writer > 0.0, "{rw:#}");
    let total = rw["wait_seconds_total"].as_f64().unwrap();
    assert!((reader + writer - total).abs() < 1e-6, "{rw:#}");
    assert!(rw["reader_contentions"].as_u64().unwrap() > 0, "{rw:#}");
    if stripped {
        assert_eq!(hot["name"], serde_json::Value::Null);
    } else {
        assert_eq!(hot["name"], "main.hotMu");
    }
    if stripped {
        // No symbols, no DWARF: an uncontended lock is invisible, and must
        // not show up with contentions.
        if let Some(cold) = lock_at(&report, cold_addr) {
            assert_eq!(
                cold["contentions"], 0,
                "main.coldMu is never contended: {report:#}"
            );
        }
    } else {
        // DWARF lists every global lock, contended or not.
        let cold = lock_at(&report, cold_addr)
            .unwrap_or_else(|| panic!("main.coldMu not listed: {report:#}"));
        assert_eq!(cold["name"], "main.coldMu");
        assert_eq!(
            cold["contentions"], 0,
            "main.coldMu is never contended: {report:#}"
        );
        assert_eq!(cold["kind"], "mutex");
        assert_eq!(hot["kind"], "mutex");
        let rw = lock_named(&report, "main.hotRW")
            .unwrap_or_else(|| panic!("main.hotRW not listed: {report:#}"));
        assert_eq!(rw["kind"], "rwmutex");
        assert_eq!(
            rw["address"],
            format!("{:#x}", nm_address(&oracle, "main.hotRW")).as_str()
        );
    }
}

#[test]
fn reports_contended_global_mutex_by_name_for_every_go_version() {
    for go in go_versions() {
        check_contended_and_uncontended(&go, false);
    }
}

#[test]
fn reports_contended_mutex_by_address_in_stripped_binaries() {
    for go in go_versions() {
        check_contended_and_uncontended(&go, true);
    }
}

#[test]
fn entry_site_counts_too() {
    let (_truth, report) = traced_run("1.27.3", false, &["--probe-site", "entry"]);
    assert_eq!(report["probes"][0]["site"], "entry");
    assert_eq!(report["probes"][0]["offset"], 0);
    assert_nothing_lost(&report);
    assert!(
        lock_named(&report, "main.hotMu").expect("hotMu")["contentions"]
            .as_u64()
            .unwrap()
            > 0
    );
}
