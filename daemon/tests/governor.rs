//! The overhead governor on fixtures whose probe cost exceeds the budget:
//! it samples, says so, keeps its estimate within the budget, and its
//! scaled figures stay within 10% of the fixtures' ground truth. The
//! fixtures do CPU work between probed operations (`-work`), as servers do
//! between requests, so that the probes cost a few percent, not all.

mod common;

use common::*;
use serde_json::Value;

/// Asserts what every governed report shows: sampling engaged and said
/// so, and the session's estimate within `budget` percent.
fn assert_governed(report: &Value, budget: f64) -> &Value {
    let overhead = &report["overhead"];
    assert_eq!(overhead["budget_percent"], budget, "{overhead:#}");
    let actions = overhead["actions"].as_array().expect("actions");
    assert!(
        !actions.is_empty(),
        "the governor did nothing: {overhead:#}"
    );
    let counting = overhead["sampling"]["counting"].as_f64().expect("sampling");
    assert!(counting < 1.0, "nothing was sampled: {overhead:#}");
    let estimate = overhead["estimated_percent"].as_f64().expect("estimate");
    assert!(
        estimate <= budget,
        "estimated {estimate}% over a budget of {budget}%: {overhead:#}"
    );
    assert_eq!(overhead["trap_cost"]["calibrated"], true, "{overhead:#}");
    overhead
}

fn within_10_percent(estimate: u64, truth: u64, what: &str) {
    let error = (estimate as f64 - truth as f64).abs() / truth as f64;
    eprintln!(
        "{}: estimated {estimate}, truly {truth} ({:+.1}%)",
        what.split(" (").next().unwrap_or(what),
        100.0 * (estimate as f64 / truth as f64 - 1.0)
    );
    assert!(
        error <= 0.10,
        "{what}: estimated {estimate}, truly {truth} ({:+.1}%)",
        100.0 * (estimate as f64 / truth as f64 - 1.0)
    );
}

#[test]
fn lock_counts_are_scaled_estimates_within_10_percent() {
    // Every Lock enters the slow path once: 600k contentions in ~15 s, each
    // costing ~1.5-3 µs of probes (by the host's trap cost) after ~25 µs of
    // work: 6-12% at full detail, far over a budget of 4%.
    let binary = fixture("1.27.3", "slowpath", false);
    let workload = Workload::start(
        &binary,
        &["-calls", "600000", "-work", "25us", "-growth", "0"],
    );
    let tracer = Tracer::attach(workload.pid, &["--overhead-budget", "4"]);
    let truth = workload.run_to_end();
    let report = tracer.report();
    let overhead = assert_governed(&report, 4.0);
    let lock = lock_named(&report, "main.slowMu").expect("main.slowMu in the report");
    assert_eq!(lock["exact"], false, "{lock:#}");
    let fraction = lock["sampled_fraction"].as_f64().expect("fraction");
    assert!(fraction > 0.0 && fraction < 1.0, "{lock:#}");
    let calls = truth["lock_calls"].as_u64().expect("lock_calls");
    let contentions = lock["contentions"].as_u64().expect("contentions");
    within_10_percent(contentions, calls, &format!("contentions ({overhead})"));
}

#[test]
fn hot_keys_are_scaled_estimates_within_10_percent() {
    // 800k Zipf-distributed operations on each map in ~40 s; three probed
    // operations per ~100 µs of work (12-30% at full detail, by the host's
    // trap cost). The budget, not the run's length, sets how many keys a
    // second records, so only the length buys precision: at a trap cost of
    // 0.8 µs the governor probes 1 second in 8 and records 1 key in 4, and
    // the third key (5.4% of the operations) gets ~2,800 samples, its share
    // ±1.9% (1σ), with the work share's own error (±1-2%) on top; 10% is
    // then over 3.5σ. (Half as long, 3σ: it failed about one run in 20.)
    let binary = fixture("1.27.3", "hotkeys", false);
    let workload = Workload::start(
        &binary,
        &[
            "-mode", "zipf", "-ops", "800000", "-work", "100us", "-workers", "4",
        ],
    );
    let tracer = Tracer::attach(
        workload.pid,
        &["--map", "main.hotMap", "--overhead-budget", "5"],
    );
    let truth = workload.run_to_end();
    let report = tracer.report();
    let overhead = assert_governed(&report, 5.0);
    let map = report["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|m| m["name"] == "main.hotMap")
        .unwrap_or_else(|| panic!("no main.hotMap: {:#}", report["maps"]));
    let expected = truth["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|m| m["name"] == "main.hotMap")
        .expect("truth of main.hotMap");
    assert_eq!(map["exact"], false, "{map:#}");
    let truth_total =
        expected["loads"].as_u64().unwrap_or(0) + expected["stores"].as_u64().unwrap_or(0);
    within_10_percent(
        map["total"].as_u64().expect("total"),
        truth_total,
        &format!("main.hotMap's operations ({overhead})"),
    );
    // The three hottest keys, by name and (scaled) count.
    let top_ops = expected["top_ops"].as_array().expect("top_ops");
    let top_keys = map["top_keys"].as_array().expect("top_keys");
    for (rank, key) in top_keys.iter().take(3).enumerate() {
        assert_eq!(key["exact"], false, "{key:#}");
        let name = key["key"].as_str().expect("a string key");
        assert_eq!(name, top_ops[rank]["key"], "rank {rank}: {top_keys:#?}");
        within_10_percent(
            key["total"].as_u64().expect("total"),
            top_ops[rank]["count"].as_u64().expect("count"),
            &format!("key {name} ({overhead})"),
        );
    }
}
