//! The lock timeline and its spikes on a fixture that knows when its burst
//! happened: steady light contention on one mutex for eight seconds, and
//! in the middle one second of eight goroutines hammering the same mutex
//! from another function. The burst is the one spike, at its second (±1),
//! from its function, not the steady one's; the text report's first lines
//! name it; the timeline's counts add up to the lock's own.

mod common;

use common::*;

/// The spike fixture, attached to, run to its end: its truth and report.
fn run(go: &str, args: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let workload = Workload::start(&fixture(go, "spike", false), &[]);
    let tracer = Tracer::attach(workload.pid, args);
    let truth = workload.run_to_end();
    (truth, tracer.report())
}

#[test]
fn the_burst_is_the_one_spike_at_its_second() {
    for go in ["1.23.9", "1.27.3"] {
        let (truth, report) = run(go, &[]);
        assert_nothing_lost(&report);
        let spikes = report["spikes"].as_array().expect("spikes");
        assert_eq!(spikes.len(), 1, "Go {go}: {spikes:#?}");
        let spike = &spikes[0];
        assert_eq!(spike["name"], "main.mu", "Go {go}: {spike:#}");
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
        let started = report["started_unix_seconds"].as_f64().expect("start");
        let burst_start = truth["burst_start_unix"].as_f64().expect("burst start") - started;
        let burst_end = truth["burst_end_unix"].as_f64().expect("burst end") - started;
        let (from, to) = (
            spike["start_seconds"].as_f64().expect("start"),
            spike["end_seconds"].as_f64().expect("end"),
        );
        assert!(
            (from - burst_start.floor()).abs() <= 1.0 && (to - burst_end.ceil()).abs() <= 1.0,
            "Go {go}: spike {from}..{to}, burst {burst_start:.2}..{burst_end:.2}"
        );
        let site = spike["top_wait_site"].as_str().expect("a site");
        assert!(site.starts_with("main.burst"), "Go {go}: {site}");
        assert_timeline_adds_up(&report, "main.mu");
        assert!(truth["burst_lock_calls"].as_u64().unwrap() > 0);
    }
    // The text report names the spike in its first lines.
    let workload = Workload::start(&fixture("1.27.3", "spike", false), &[]);
    let out = mapwatch()
        .args(["attach", "--pid", &workload.pid.to_string()])
        .args(["--overhead-budget", "off", "--live", "off"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mapwatch starts");
    std::thread::sleep(std::time::Duration::from_secs(1));
    workload.run_to_end();
    let out = out.wait_with_output().expect("mapwatch ends");
    let text = String::from_utf8_lossy(&out.stdout);
    let head: Vec<&str> = text.lines().take(3).collect();
    assert!(
        head.iter().any(|l| l.contains("worst spike")
            && l.contains("main.mu")
            && l.contains("main.burst")),
        "{text}"
    );
}
