//! Map operations and hot keys against the hotkeys fixture, which counts
//! every operation per key itself (fixtures/go/hotkeys): a global sync.Map
//! and global plain maps driven with Zipf-distributed keys.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

/// The report's entry for a map, by name.
fn map_named<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no map {name} in the report: {:#}", report["maps"]))
}

/// The fixture's truth for a map, by name.
fn truth_of<'a>(truth: &'a Value, name: &str) -> &'a Value {
    truth["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no map {name} in the fixture's output"))
}

fn count(map: &Value, key: &str) -> u64 {
    map.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Every map event reached the report: none lost in the kernel, none lost
/// between kernel and aggregator.
fn assert_no_map_event_lost(report: &Value) {
    assert_eq!(report["events_lost"], 0, "{report:#}");
    let counters = &report["probe_counters"];
    assert_eq!(counters["output_errors"], 0, "{report:#}");
    assert_eq!(counters["unknown_site"], 0, "{report:#}");
    assert_eq!(counters["map_counts_full"], 0, "{report:#}");
    assert_eq!(report["map_events"], counters["map_hits"], "{report:#}");
}

/// mapwatch's top-10 keys of `name` are the fixture's, with equal counts.
fn assert_top_keys_exact(report: &Value, truth: &Value, name: &str, context: &str) {
    let map = map_named(report, name);
    let expected = truth_of(truth, name);
    let top: Vec<&Value> = map["top_keys"]
        .as_array()
        .expect("top_keys")
        .iter()
        .collect();
    assert_eq!(top.len(), 10, "{context}: {map:#}");
    for key in &top {
        let k = key["key"].as_str().expect("key");
        assert_eq!(key["exact"], true, "{context}: {key}");
        assert_eq!(
            count(&key["ops"], "load"),
            count(&expected["all_loads"], k),
            "{context}: loads of {k} in {name}"
        );
        assert_eq!(
            count(&key["ops"], "store"),
            count(&expected["all_stores"], k),
            "{context}: stores of {k} in {name}"
        );
    }
    // The same ten keys (up to ties at the tenth place): the totals match
    // the fixture's ten largest.
    let totals: Vec<u64> = top.iter().map(|k| k["total"].as_u64().unwrap()).collect();
    let expected_totals: Vec<u64> = expected["top_ops"].as_array().unwrap()[..10]
        .iter()
        .map(|k| k["count"].as_u64().unwrap())
        .collect();
    assert_eq!(totals, expected_totals, "{context}: top-10 of {name}");
    assert_eq!(
        count(&map["ops"], "load"),
        expected["loads"].as_u64().unwrap(),
        "{context}: loads of {name}"
    );
    assert_eq!(
        count(&map["ops"], "store"),
        expected["stores"].as_u64().unwrap(),
        "{context}: stores of {name}"
    );
}

#[test]
fn hot_keys_and_their_counts_equal_the_fixtures() {
    for go in REQUIRED_GO_VERSIONS {
        let workload = Workload::start(
            &fixture(go, "hotkeys", false),
            &["-ops", "500000", "-keys", "1000", "-workers", "4"],
        );
        let tracer = Tracer::attach(
            workload.pid,
            &[
                "--probe",
                "syncmap,maps",
                "--map",
                "main.hotSync",
                "--map",
                "main.hotMap",
                "--map",
                "main.idMap",
            ],
        );
        let truth = workload.run_to_end();
        let report = tracer.report();
        let context = format!("Go {go}");
        assert_no_map_event_lost(&report);
        assert_top_keys_exact(&report, &truth, "main.hotSync", &context);
        assert_top_keys_exact(&report, &truth, "main.hotMap", &context);
        // Integer keys (mapaccess1_fast64), in decimal.
        let ids = map_named(&report, "main.idMap");
        let expected = truth_of(&truth, "main.idMap");
        for key in ids["top_keys"].as_array().unwrap() {
            let k = key["key"].as_str().unwrap();
            assert_eq!(
                count(&key["ops"], "load"),
                count(&expected["all_loads"], k),
                "{context}: idMap key {k}"
            );
        }
        assert_eq!(map_named(&report, "main.hotSync")["kind"], "sync.Map");
        assert_eq!(map_named(&report, "main.hotMap")["kind"], "map");
        // Only the selected maps have keys; the others were counted.
        for map in report["maps"].as_array().unwrap() {
            let selected = ["main.hotSync", "main.hotMap", "main.idMap"]
                .contains(&map["name"].as_str().unwrap_or(""));
            assert_eq!(map["keyed"], selected, "{context}: {map:#}");
        }
    }
}

#[test]
fn without_a_selection_runtime_maps_are_counted_and_the_report_says_how_to_focus() {
    let go = "1.27.3";
    let workload = Workload::start(
        &fixture(go, "hotkeys", false),
        &["-ops", "20000", "-store-every", "0"],
    );
    let tracer = Tracer::attach(workload.pid, &["--probe", "maps"]);
    let truth = workload.run_to_end();
    let report = tracer.report();
    assert_no_map_event_lost(&report);
    let hot = map_named(&report, "main.hotMap");
    assert_eq!(hot["keyed"], false);
    assert_eq!(
        count(&hot["ops"], "load"),
        truth_of(&truth, "main.hotMap")["loads"].as_u64().unwrap()
    );
    assert!(hot["top_keys"].as_array().unwrap().is_empty());
    let hint = report["maps_hint"].as_str().expect("a hint");
    assert!(hint.contains("--map"), "{hint}");
}

#[test]
fn a_flood_of_distinct_keys_keeps_memory_bounded_and_the_top_keys_right() {
    let go = "1.27.3";
    let workload = Workload::start(
        &fixture(go, "hotkeys", false),
        &[
            "-mode",
            "flood",
            "-flood",
            "1000000",
            "-keys",
            "100",
            "-ops",
            "200000",
            "-store-every",
            "0",
        ],
    );
    let jsonl = std::env::temp_dir().join(format!("mapwatch-flood-{}.jsonl", workload.pid));
    let tracer = Tracer::attach(
        workload.pid,
        &[
            "--probe",
            "maps",
            "--map",
            "main.hotMap",
            "--jsonl",
            jsonl.to_str().unwrap(),
        ],
    );
    let truth = workload.run_to_end();
    let report = tracer.report();
    assert_no_map_event_lost(&report);
    // The metrics stay bounded too: per map its non-zero operations and at
    // most ten hot keys plus "other". (The JSON lines carry what /metrics
    // serves.)
    let snapshots = std::fs::read_to_string(&jsonl).expect("jsonl written");
    let _ = std::fs::remove_file(&jsonl);
    let last: Value = serde_json::from_str(snapshots.lines().last().expect("a snapshot")).unwrap();
    let mut map_series = 0;
    for map in last["maps"].as_array().unwrap() {
        let hot = map["hot_keys"].as_array().unwrap().len();
        assert!(hot <= 11, "{map:#}");
        map_series += map["ops"].as_array().unwrap().len() + hot;
    }
    eprintln!("flood: {map_series} map series exported");
    let map = map_named(&report, "main.hotMap");
    let expected = truth_of(&truth, "main.hotMap");
    assert_eq!(
        count(&map["ops"], "load"),
        expected["loads"].as_u64().unwrap()
    );
    // More than a million distinct keys went by ...
    let distinct = map["distinct_keys"].as_u64().unwrap();
    assert!(
        (950_000..1_100_000).contains(&distinct),
        "distinct estimate {distinct}"
    );
    // ... into a table of bounded size, which still has the ten hottest,
    // counted exactly (they entered before the flood and never left).
    let capacity = map["top_k_capacity"].as_u64().unwrap();
    assert!(capacity > 0 && capacity <= 4096);
    let got: BTreeMap<String, u64> = map["top_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                k["total"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: BTreeMap<String, u64> = expected["top_ops"].as_array().unwrap()[..10]
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                k["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let rss = report["mapwatch_peak_rss_bytes"].as_u64().unwrap();
    eprintln!(
        "flood: {distinct} distinct keys, top-K capacity {capacity}, mapwatch peak RSS {} MiB",
        rss >> 20
    );
    assert!(rss < 256 << 20, "mapwatch peak RSS {rss} bytes");
}

#[test]
fn the_advisor_flags_a_write_heavy_unique_key_sync_map() {
    for go in REQUIRED_GO_VERSIONS {
        let workload = Workload::start(
            &fixture(go, "hotkeys", false),
            &["-mode", "unique-writes", "-ops", "100000"],
        );
        let tracer = Tracer::attach(workload.pid, &["--probe", "syncmap"]);
        let truth = workload.run_to_end();
        let report = tracer.report();
        assert_no_map_event_lost(&report);
        let map = map_named(&report, "main.hotSync");
        assert_eq!(
            count(&map["ops"], "store"),
            truth_of(&truth, "main.hotSync")["stores"].as_u64().unwrap(),
            "Go {go}"
        );
        let findings: Vec<&str> = map["advice"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["finding"].as_str().unwrap())
            .collect();
        assert_eq!(
            findings.first(),
            Some(&"write-heavy-sync-map"),
            "Go {go}: {map:#}"
        );
        // The Zipf workload's read-mostly sync.Map is not flagged.
    }
    let workload = Workload::start(&fixture("1.27.3", "hotkeys", false), &["-ops", "50000"]);
    let tracer = Tracer::attach(workload.pid, &["--probe", "syncmap"]);
    workload.run_to_end();
    let report = tracer.report();
    let map = map_named(&report, "main.hotSync");
    assert_ne!(
        map["advice"][0]["finding"], "write-heavy-sync-map",
        "{map:#}"
    );
}
