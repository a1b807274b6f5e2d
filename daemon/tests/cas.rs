//! `--cas`: compare-and-swap outcomes read right after each `LOCK CMPXCHG`,
//! against fixtures that count their own failed attempts, per CPU.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Runs a casloop fixture under `mapwatch --cas PATTERN` and checks the
/// report against its ground truth, exactly.
fn check_exact(binary: &Path, pattern: &str, function: &str, source: &str) {
    let heatmap_dir = std::env::temp_dir().join(format!(
        "mapwatch-cas-{}-{}",
        std::process::id(),
        binary.to_string_lossy().replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&heatmap_dir);
    let workload = Workload::start(binary, &["-workers", "4", "-calls", "20000"]);
    let tracer = Tracer::attach(
        workload.pid,
        &[
            "--cas",
            pattern,
            "--no-builtin-cas",
            "--heatmap-dir",
            heatmap_dir.to_str().unwrap(),
        ],
    );
    let truth = workload.run_to_end();
    let report = tracer.report();
    let context = format!("{}: {report:#}\ntruth: {truth}", binary.display());

    assert_eq!(report["events_lost"], 0, "{context}");
    // Built-in sync.Map sources may be there too; exactly one site is ours.
    let sites: Vec<&Value> = report["cas"]
        .as_array()
        .expect("cas array")
        .iter()
        .filter(|s| s["builtin"].is_null())
        .collect();
    assert_eq!(sites.len(), 1, "one LOCK CMPXCHG in {function}: {context}");
    let site = sites[0];
    assert_eq!(site["function"], function, "{context}");
    assert!(
        site["probe"].as_str().unwrap().contains("emulated"),
        "{context}"
    );
    let line = site["source"]
        .as_str()
        .unwrap_or_else(|| panic!("no source line: {context}"));
    assert!(
        line.contains(source),
        "{line} is not in {source}: {context}"
    );
    assert!(
        truth["failures"].as_u64().unwrap() > 0,
        "the fixture forces failures"
    );
    assert_eq!(site["attempts"], truth["attempts"], "{context}");
    assert_eq!(site["failures"], truth["failures"], "{context}");
    assert_eq!(
        report["probe_counters"]["cas_hits"], truth["attempts"],
        "{context}"
    );

    // Per CPU, exactly: each fixture worker is pinned to one CPU.
    let ours: Vec<u64> = site["per_cpu_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let theirs: Vec<u64> = truth["per_cpu_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ours[..theirs.len()], theirs[..], "{context}");
    assert!(ours[theirs.len()..].iter().all(|&n| n == 0), "{context}");

    // The CPU heatmap: a row per CPU of the host; every CPU that ran the
    // loop shows its failures; the cells add up.
    let by_cpu = heatmap(&report, "CAS failures by CPU");
    let rows = by_cpu["rows"].as_array().unwrap();
    assert_eq!(rows.len(), ours.len(), "{context}");
    for (cpu, cells) in by_cpu["cells"].as_array().unwrap().iter().enumerate() {
        let sum: u64 = cells
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(sum, ours[cpu], "CPU {cpu} row: {context}");
        if theirs.get(cpu).copied().unwrap_or(0) > 0 {
            assert!(sum > 0);
        }
    }
    let svg =
        std::fs::read_to_string(heatmap_dir.join("cas-failures-by-cpu.svg")).expect("SVG written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(heatmap_dir.join("cas-failures-by-site.svg").is_file());
    let _ = std::fs::remove_dir_all(&heatmap_dir);
}

fn heatmap<'a>(report: &'a Value, title: &str) -> &'a Value {
    report["heatmaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["title"] == title)
        .unwrap_or_else(|| panic!("no heatmap {title}: {report:#}"))
}

#[test]
fn go_cas_failures_are_counted_exactly_per_cpu() {
    for go in go_versions() {
        // The inline tree places the inlined CompareAndSwap at its call.
        check_exact(
            &fixture(&go, "casloop", false),
            "main.casIncrement",
            "main.casIncrement",
            &cas_line(),
        );
    }
}

/// `file:line` of the fixture's compare-and-swap call, from its source.
fn cas_line() -> String {
    let file = "fixtures/go/casloop/main.go";
    let source = std::fs::read_to_string(format!("{}/../{file}", env!("CARGO_MANIFEST_DIR")))
        .expect("the casloop fixture's source");
    let line = source
        .lines()
        .position(|l| l.contains("counter.CompareAndSwap(old, old+1)"))
        .expect("the CAS call in the casloop fixture");
    format!("{file}:{}", line + 1)
}

#[test]
fn go_cas_in_stripped_binaries_via_pclntab() {
    // No symbol table: functions from the pclntab, and the inline tree
    // through the module data, so the line is still the caller's.
    check_exact(
        &fixture("1.27.3", "casloop", true),
        "main.cas*",
        "main.casIncrement",
        &cas_line(),
    );
}

#[test]
fn c_cas_failures_are_counted_exactly_per_cpu() {
    let binary = fixtures_dir().join("c/casloop");
    assert!(
        binary.is_file(),
        "{} missing: run `cargo xtask test`",
        binary.display()
    );
    check_exact(
        &binary,
        "cas_increment",
        "cas_increment",
        "fixtures/c/casloop.c:",
    );
}

#[test]
fn a_pattern_that_matches_nothing_is_one_clear_line() {
    let workload = Workload::start(&fixture("1.27.3", "casloop", false), &[]);
    let out = mapwatch()
        .args([
            "attach",
            "--pid",
            &workload.pid.to_string(),
            "--cas",
            "main.noSuchFunction*",
        ])
        .output()
        .expect("mapwatch runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--cas main.noSuchFunction*: no function"),
        "{stderr}"
    );
}

#[test]
fn sync_map_cas_sources_are_watched_without_any_pattern() {
    for go in go_versions() {
        let workload = Workload::start(&fixture(&go, "contend", false), &["-iterations", "20000"]);
        let tracer = Tracer::attach(workload.pid, &[]);
        let truth = workload.run_to_end();
        let report = tracer.report();
        let builtin: Vec<&Value> = report["cas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["builtin"] == "sync.Map")
            .collect();
        assert!(!builtin.is_empty(), "Go {go}: {report:#}");
        // Every Store of the fixture goes through at least one CAS of the
        // sync.Map implementation (an entry swap, a trie slot, or the
        // inlined fast path of its mutex).
        let attempts: u64 = builtin
            .iter()
            .map(|s| s["attempts"].as_u64().unwrap())
            .sum();
        let stores = truth["maps"]["main.syncMap"]["ops"]["store"]
            .as_u64()
            .unwrap();
        assert!(
            attempts >= stores,
            "Go {go}: {attempts} < {stores}: {report:#}"
        );
        assert_eq!(report["events_lost"], 0);
    }
}
