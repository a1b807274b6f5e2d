//! The lock timeline and its spikes on a fixture that knows when its burst
//! happened: steady light contention on one mutex for eight seconds, and
//! in the middle one second of eight goroutines hammering the same mutex
//! from another function. The burst is the one spike, at its second (±1),
//! from its function, not the steady one's, and the worst by far; the text
//! report's first lines name it; the timeline's counts add up to the lock's own. The fixture
//! also calls `runtime.GC()` ten times: the GC cycles and GC pauses equal
//! the runtime's own counts (`runtime/metrics`), their length is within 20%
//! of Go's `/sched/pauses/total/gc:seconds`, and the burst's spike is not a
//! GC pause.

mod common;

use common::*;

/// The spike fixture, attached to, run to its end: its truth and report.
fn run(go: &str, args: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let workload = Workload::start(&fixture(go, "spike", false), &[]);
    let tracer = Tracer::attach(workload.pid, args);
    let truth = workload.run_to_end();
    (truth, tracer.report())
}

/// Go's GC as mapwatch counted it agrees with the runtime's own figures:
/// cycles and GC pauses exactly, the pauses' length within 20% (Go's is
/// read from its histogram's bucket midpoints).
fn assert_gc_agrees(go: &str, truth: &serde_json::Value, report: &serde_json::Value) {
    let gc = &report["gc"];
    assert_eq!(gc["cycles"], truth["gc_cycles"], "Go {go}: {gc:#}");
    assert!(
        truth["gc_cycles"].as_u64().expect("gc_cycles") >= truth["gc_calls"].as_u64().unwrap(),
        "Go {go}: {truth:#}"
    );
    assert_eq!(gc["gc_pauses"], truth["gc_pauses"], "Go {go}: {gc:#}");
    let ours = gc["gc_pause_seconds_total"]
        .as_f64()
        .expect("GC pause time");
    let theirs = truth["gc_pause_seconds"]
        .as_f64()
        .expect("Go's GC pause time");
    assert!(
        (ours / theirs - 1.0).abs() <= 0.20,
        "Go {go}: GC pauses {ours} s, Go says {theirs} s"
    );
    assert_eq!(report["probe_counters"]["stw_unmatched"], 0, "Go {go}");
    // The runtime's events are all there.
    assert_eq!(
        report["probe_counters"]["runtime_events"].as_u64(),
        Some(gc["cycles"].as_u64().unwrap() + gc["pauses"].as_u64().unwrap()),
        "Go {go}: {:#}",
        report["probe_counters"]
    );
    let per_second: u64 = report["gc_timeline"]
        .as_array()
        .expect("gc_timeline")
        .iter()
        .map(|s| s["cycles"].as_u64().expect("cycles"))
        .sum();
    assert_eq!(Some(per_second), gc["cycles"].as_u64(), "Go {go}");
}

#[test]
fn the_burst_is_the_worst_spike_at_its_second() {
    for go in ["1.23.9", "1.27.3"] {
        let (truth, report) = run(go, &[]);
        assert_nothing_lost(&report);
        let spike = burst_spike(&report, &format!("Go {go}"));
        // The steady seconds really were contended: the burst stood out.
        let steady_seconds = report["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter(|r| {
                r["name"] == "main.mu"
                    && r["top_wait_site"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("main.steady"))
            })
            .count();
        assert!(steady_seconds >= 3, "Go {go}: {:#}", report["timeline"]);
        // Its second, from the fixture's clock and mapwatch's.
        let what = format!("Go {go}");
        assert_spike_covers(
            &report,
            spike,
            &truth,
            ("burst_start_unix", "burst_end_unix"),
            &what,
        );
        // A lock problem: neither a GC pause nor CPU starvation (the
        // scheduler tracepoints watched its seconds).
        assert!(spike["context"].is_null(), "Go {go}: {spike:#}");
        assert!(spike["run_queue"]["waits"].is_u64(), "Go {go}: {spike:#}");
        assert!(spike["gc"]["pauses"].is_u64(), "Go {go}: {spike:#}");
        assert_timeline_adds_up(&report, "main.mu");
        assert_gc_agrees(go, &truth, &report);
        assert!(truth["burst_lock_calls"].as_u64().unwrap() > 0);
    }
    // The text report names the spike in its first lines.
    let text = text_report(Workload::start(&fixture("1.27.3", "spike", false), &[]));
    let head: Vec<&str> = text.lines().take(3).collect();
    assert!(
        head.iter().any(|l| l.contains("worst spike")
            && l.contains("main.mu")
            && l.contains("main.burst")),
        "{text}"
    );
}
