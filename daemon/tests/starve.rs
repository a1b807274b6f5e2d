//! CPU starvation as the context of a lock's spike, on a fixture that
//! starves itself: light contention on one mutex (four goroutines in
//! `main.serve`, each holding it while working 2 ms, longer than a
//! scheduler slice, then sleeping 40 ms on average), then, for two
//! seconds, 24 goroutines doing nothing but work under GOMAXPROCS(32):
//! more busy threads than this host's CPUs. The kernel counts how long the
//! fixture's threads waited for a CPU (`run_delay` in
//! `/proc/PID/task/*/schedstat`); mapwatch's run-queue total agrees with it,
//! the worst spike is the starved seconds (±1 s), from `main.serve`, and its
//! context is CPU starvation, not a lock.

mod common;

use common::*;

/// The fixture's phases: 8 s in all, starved from 3 s to 5 s.
const PHASES: [&str; 6] = ["-total", "8s", "-starve-at", "3s", "-starve", "2s"];

/// The starve fixture, attached to, run to its end: its truth and report.
fn run(go: &str, args: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let workload = Workload::start(&fixture(go, "starve", false), &PHASES);
    let tracer = Tracer::attach(workload.pid, args);
    let truth = workload.run_to_end();
    (truth, tracer.report())
}

/// The starved seconds' spike in `report`, checked against the fixture's
/// clock and the kernel's count.
fn assert_starved(what: &str, truth: &serde_json::Value, report: &serde_json::Value) {
    let queue = &report["run_queue"];
    assert_eq!(
        queue["unwatched"],
        serde_json::json!([]),
        "{what}: {queue:#}"
    );
    assert_eq!(
        report["probe_counters"]["run_queue_threads_full"], 0,
        "{what}"
    );
    // Exact counting, from attach to the end: the fixture's own reading
    // spans a little less (it starts after the tracer attached).
    let ours = queue["wait_seconds_total"]
        .as_f64()
        .expect("run-queue wait");
    let kernel = truth["run_delay_seconds"].as_f64().expect("run_delay");
    assert!(
        (ours / kernel - 1.0).abs() <= 0.05,
        "{what}: mapwatch {ours} s waiting for a CPU, the kernel {kernel} s"
    );
    let context = serde_json::json!("cpu-starvation");
    let spike = worst_spike(report, "main.mu", "main.serve", &context, what);
    let (from, to) = assert_spike_covers(
        report,
        spike,
        truth,
        ("starve_start_unix", "starve_end_unix"),
        what,
    );
    // The starved seconds hold most of the waiting for a CPU, and the
    // spike's seconds (some of them) waited for a CPU at least half as long
    // as on the lock.
    let rows = report["run_queue_timeline"]
        .as_array()
        .expect("run_queue_timeline");
    let wait_of = |s: &serde_json::Value| s["wait_seconds_total"].as_f64().expect("wait");
    let per_second: f64 = rows.iter().map(wait_of).sum();
    assert!(
        (per_second - ours).abs() < 1e-6,
        "{what}: seconds {per_second}, total {ours}"
    );
    let starved: f64 = rows
        .iter()
        .filter(|s| {
            let second = s["second"].as_f64().expect("second");
            second >= from.floor() && second < to.ceil()
        })
        .map(wait_of)
        .sum();
    assert!(starved >= 0.8 * ours, "{what}: {starved} of {ours} s");
    let in_spike = spike["run_queue"]["wait_seconds_total"]
        .as_f64()
        .expect("the spike's run-queue wait");
    let lock_wait = spike["wait_seconds"].as_f64().expect("the spike's wait");
    assert!(in_spike >= 0.5 * lock_wait, "{what}: {spike:#}");
}

#[test]
fn the_starved_seconds_are_a_spike_of_cpu_starvation() {
    for go in ["1.23.9", "1.27.3"] {
        let (truth, report) = run(go, &[]);
        assert_nothing_lost(&report);
        assert_starved(&format!("Go {go}"), &truth, &report);
        assert!(truth["cpus"].as_u64().expect("cpus") < 11, "{truth:#}");
    }
}

#[test]
fn the_text_report_says_the_spike_was_cpu_starvation() {
    let text = text_report(Workload::start(
        &fixture("1.27.3", "starve", false),
        &PHASES,
    ));
    let head: Vec<&str> = text.lines().take(4).collect();
    assert!(
        head.iter()
            .any(|l| l.contains("worst spike") && l.contains("CPU starvation")),
        "{text}"
    );
    assert!(
        head.iter()
            .any(|l| l.starts_with("  cpu: threads waited") && l.contains("for a CPU")),
        "{text}"
    );
}

#[test]
fn without_sched_nothing_is_said_of_the_cpu() {
    let (_, report) = run("1.27.3", &["--probe", "locks"]);
    assert!(report["run_queue"].is_null(), "{:#}", report["run_queue"]);
    for spike in report["spikes"].as_array().expect("spikes") {
        assert!(spike["context"].is_null(), "{spike:#}");
        assert!(spike["run_queue"].is_null(), "{spike:#}");
    }
}
