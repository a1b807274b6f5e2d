//! Map health on a fixture that knows its maps (see fixtures/go/maphealth):
//! `main.grown` filled to 100,000 entries, `main.churn` emptied from 20,000
//! down to 1,000 and then churned, `main.steady` 1,000 entries inserted
//! once. During the fixture's pause every map's entries equal its own
//! `len`, each reading walked the whole map and agreed with its header;
//! the churned map gets the advisor's finding (tombstones from Go 1.24,
//! oversized before), the steady map of the same size neither. With
//! `-storm`, `sync.Map`s (Go ≤ 1.23): `main.storm`, churned with loads of
//! its newest keys, promotes its dirty map exactly as often as the fixture
//! saw it happen and gets `promotion-storm`; `main.calm`, read-mostly,
//! neither.

mod common;

use common::*;

fn map_named<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no map {name}: {report:#}"))
}

fn findings(map: &serde_json::Value) -> Vec<String> {
    map["advice"]
        .as_array()
        .expect("advice")
        .iter()
        .map(|a| a["finding"].as_str().expect("finding").to_string())
        .collect()
}

/// Go's growth rules: a bucket map grows past 6.5 entries a bucket of 8
/// cells, a swiss table past 7 full slots a group of 8.
fn max_load(go: &str) -> f64 {
    if go.starts_with("1.23") {
        6.5 / 8.0
    } else {
        7.0 / 8.0
    }
}

#[test]
fn map_structure_matches_the_fixtures_own_lengths() {
    for go in ["1.23.9", "1.27.3"] {
        let workload = Workload::start(&fixture(go, "maphealth", false), &["-replace"]);
        let tracer = Tracer::attach(
            workload.pid,
            &[
                "--probe",
                "maps",
                "--map",
                "main.grown",
                "--map",
                "main.churn",
                "--map",
                "main.steady",
            ],
        );
        let truth = workload.run_to_end();
        let report = tracer.report();
        let what = format!("Go {go}");
        eprintln!("{what}: {truth}");
        // What the last second's readings cost, within their budget.
        let cost = &report["map_reading"];
        assert!(cost["maps"].as_u64().unwrap() >= 3, "{what}: {cost:#}");
        assert!(
            cost["bytes"].as_u64().unwrap() <= cost["budget_bytes_per_second"].as_u64().unwrap(),
            "{what}: {cost:#}"
        );
        let maps = report["maps"].as_array().expect("maps");
        for (name, field) in [
            ("main.grown", "grown"),
            ("main.churn", "churn"),
            ("main.steady", "steady"),
        ] {
            // The map the variable holds now (main.steady's first map was
            // replaced).
            let map = maps
                .iter()
                .find(|m| m["name"] == name && m["health"]["replaced"] == false)
                .unwrap_or_else(|| panic!("{what}: no current {name}: {report:#}"));
            let health = &map["health"];
            assert_eq!(health["entries"], truth[field], "{what} {name}: {health:#}");
            assert_eq!(health["complete"], true, "{what} {name}: {health:#}");
            assert_eq!(health["consistent"], true, "{what} {name}: {health:#}");
            assert_eq!(health["failed_readings"], 0, "{what} {name}: {health:#}");
            assert!(health["error"].is_null(), "{what} {name}: {health:#}");
            assert!(health["readings"].as_u64().unwrap() >= 2, "{what} {name}");
            let load = health["load_factor"].as_f64().unwrap();
            assert!(
                load > 0.0 && load <= max_load(go),
                "{what} {name}: load {load} above Go's growth threshold"
            );
            let implementation = if go.starts_with("1.23") {
                "buckets"
            } else {
                "swiss"
            };
            assert_eq!(health["implementation"], implementation, "{what}");
        }
        // Growths, exact: as the fixture counted them from the runtime's
        // own data after each insert.
        for (name, field) in [("main.grown", "grown_grows"), ("main.churn", "churn_grows")] {
            let map = map_named(&report, name);
            assert_eq!(
                map["health"]["grows"], truth[field],
                "{what} {name}: {map:#}"
            );
            assert_eq!(map["internal"]["grow"], truth[field], "{what} {name}");
        }
        let steady_grows = |replaced: bool| {
            maps.iter()
                .find(|m| m["name"] == "main.steady" && m["health"]["replaced"] == replaced)
                .map(|m| m["health"]["grows"].as_u64().unwrap())
        };
        // The first steady map grew as it was filled; its replacement was
        // made with room for its entries.
        assert_eq!(steady_grows(true), truth["steady_grows"].as_u64(), "{what}");
        assert_eq!(steady_grows(false), Some(0), "{what}");
        if go.starts_with("1.23") {
            // Go's rule for bucket maps: B grows by one each time an insert
            // finds more than 8 entries and more than 6.5 per bucket, so
            // filling an empty map with n > 8 entries ends at the least B
            // with n <= 6.5 * 2^B, after B growths.
            let n = 100_000f64;
            let b = (n / 6.5).log2().ceil() as u64;
            assert_eq!(truth["grown_grows"].as_u64(), Some(b), "{what}");
            assert_eq!(
                map_named(&report, "main.grown")["health"]["buckets"].as_u64(),
                Some(1 << b)
            );
        }
        // The map filled with 100,000 entries while watched is called
        // growing.
        assert!(
            findings(map_named(&report, "main.grown")).contains(&"growing".to_string()),
            "{what}"
        );
        // The churned map: what deletes left behind, named by the advisor.
        let churn = map_named(&report, "main.churn");
        let found = findings(churn);
        if go.starts_with("1.23") {
            assert!(
                found.contains(&"oversized".to_string()),
                "{what}: {churn:#}"
            );
        } else {
            assert!(
                churn["health"]["tombstones"].as_u64().unwrap() > 0,
                "{what}: {churn:#}"
            );
            assert!(
                found.contains(&"tombstones".to_string()),
                "{what}: {churn:#}"
            );
        }
        // The steady map of the same size: neither.
        for steady in maps.iter().filter(|m| m["name"] == "main.steady") {
            let found = findings(steady);
            assert!(
                !found.iter().any(|f| f == "tombstones" || f == "oversized"),
                "{what}: {steady:#}"
            );
            assert_eq!(steady["health"]["tombstones"], 0, "{what}: {steady:#}");
        }
        // Its first map, replaced by the variable's new one, says so.
        assert!(
            maps.iter()
                .any(|m| m["name"] == "main.steady" && m["health"]["replaced"] == true),
            "{what}: {report:#}"
        );
    }
}

#[test]
fn sync_map_promotions_are_counted_and_a_storm_is_named() {
    for go in ["1.23.9", "1.27.3"] {
        let workload = Workload::start(&fixture(go, "maphealth", false), &["-storm"]);
        let tracer = Tracer::attach(
            workload.pid,
            &[
                "--probe",
                "syncmap",
                "--map",
                "main.storm",
                "--map",
                "main.calm",
            ],
        );
        let truth = workload.run_to_end();
        let report = tracer.report();
        let what = format!("Go {go}");
        eprintln!("{what}: {truth}");
        let storm = map_named(&report, "main.storm");
        let calm = map_named(&report, "main.calm");
        if !go.starts_with("1.23") {
            // A HashTrieMap has no read-only copy to promote.
            assert!(storm["health"].is_null(), "{what}: {storm:#}");
            assert_eq!(truth["storm_promotions"], 0, "{what}");
            continue;
        }
        let health = &storm["health"];
        assert_eq!(health["implementation"], "sync_map", "{what}: {health:#}");
        assert_eq!(health["failed_readings"], 0, "{what}: {health:#}");
        // Every promotion the fixture saw, no more.
        let promotions = health["promotions"].as_u64().unwrap();
        assert!(promotions > 10, "{what}: {health:#}");
        assert_eq!(
            promotions,
            truth["storm_promotions"].as_u64().unwrap(),
            "{what}: {storm:#}"
        );
        // Each promotion drops the dirty map; the next store of a new key
        // copies the read-only map into a new one (`dirty_copy`), and a
        // promotion takes as many misses as the dirty map holds.
        let copies = storm["internal"]["dirty_copy"].as_u64().unwrap();
        let amended = u64::from(health["amended"] == true);
        assert_eq!(promotions, copies - amended, "{what}: {storm:#}");
        let misses = storm["internal"]["miss"].as_u64().unwrap();
        let keeps = truth["storm_keeps"].as_u64().unwrap();
        assert!(misses >= promotions * keeps, "{what}: {storm:#}");
        // Deleted entries stay until the next copy expunges them.
        assert!(
            health["entries"].as_u64().unwrap() >= keeps,
            "{what}: {health:#}"
        );
        assert!(
            health["entries_copied_per_second"].as_f64().unwrap() > 0.0,
            "{what}: {health:#}"
        );
        let found = findings(storm);
        assert!(
            found.contains(&"promotion-storm".to_string()),
            "{what}: {storm:#}"
        );
        // The read-mostly sync.Map of the same size: its -keep entries, no
        // promotion, no finding.
        let health = &calm["health"];
        assert_eq!(health["implementation"], "sync_map", "{what}: {health:#}");
        assert_eq!(health["entries"], truth["steady"], "{what}: {health:#}");
        assert_eq!(health["promotions"], 0, "{what}: {health:#}");
        assert_eq!(truth["calm_promotions"], 0, "{what}");
        assert!(
            !findings(calm).contains(&"promotion-storm".to_string()),
            "{what}: {calm:#}"
        );
    }
}

#[test]
fn the_busiest_counted_maps_are_read_without_being_selected() {
    for go in ["1.23.9", "1.27.3"] {
        let workload = Workload::start(&fixture(go, "maphealth", false), &[]);
        // No --map: every map is counted in the kernel, which keeps each
        // one's type along.
        let tracer = Tracer::attach(workload.pid, &["--probe", "maps"]);
        let truth = workload.run_to_end();
        let report = tracer.report();
        let what = format!("Go {go}");
        for (name, field) in [("main.grown", "grown"), ("main.churn", "churn")] {
            let map = map_named(&report, name);
            assert_eq!(map["keyed"], false, "{what} {name}: {map:#}");
            let health = &map["health"];
            assert_eq!(health["entries"], truth[field], "{what} {name}: {health:#}");
            assert_eq!(health["failed_readings"], 0, "{what} {name}: {health:#}");
            assert!(health["error"].is_null(), "{what} {name}: {health:#}");
            // A map not selected is read within 256 KiB: a prefix of these.
            assert!(
                health["bytes_read"].as_u64().unwrap() <= 300 << 10,
                "{what} {name}: {health:#}"
            );
        }
    }
}
