//! How `mapwatch attach` ends: the target's exit (see attach.rs), Ctrl-C,
//! SIGTERM and `--duration`, each with exit status 0 and a report; and the
//! errors it reports in one line with a non-zero status.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

fn idle_workload() -> Workload {
    // A fixture that never gets its start line stays idle.
    Workload::start(&fixture("1.27.3", "contend", false), &[])
}

#[test]
fn stops_after_duration_with_a_report() {
    let workload = idle_workload();
    let report = Tracer::attach(workload.pid, &["--duration", "500ms"]).report();
    assert_eq!(report["stopped_by"], "duration");
    assert!(report["duration_seconds"].as_f64().unwrap() >= 0.5);
    // An idle workload: its global locks are listed (from DWARF), none contended.
    let locks = report["locks"].as_array().unwrap();
    assert!(
        locks.iter().any(|l| l["name"] == "main.hotMu"),
        "{report:#}"
    );
    assert!(locks.iter().all(|l| l["contentions"] == 0), "{report:#}");
    assert_nothing_lost(&report);
}

fn stops_on(signal: i32) {
    let workload = idle_workload();
    let tracer = Tracer::attach(workload.pid, &[]);
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(tracer.child.id() as i32, signal) }, 0);
    let report = tracer.report();
    assert_eq!(report["stopped_by"], "signal");
}

#[test]
fn stops_on_sigint() {
    stops_on(libc::SIGINT);
}

#[test]
fn stops_on_sigterm() {
    stops_on(libc::SIGTERM);
}

/// Runs mapwatch to its end and returns (success, stderr lines).
fn run_failing(cmd: &mut Command) -> Vec<String> {
    let out = cmd.stdout(Stdio::null()).output().expect("mapwatch runs");
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn no_such_pid_is_one_clear_line() {
    let lines = run_failing(mapwatch().args(["attach", "--pid", "4194999"]));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("no process with PID 4194999"),
        "{lines:?}"
    );
}

#[test]
fn a_binary_without_probe_sites_says_what_was_looked_for() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    let lines = run_failing(mapwatch().args(["attach", "--pid", &sleeper.id().to_string()]));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("nothing to probe"), "{lines:?}");
    assert!(lines[0].contains("sync.(*Mutex).lockSlow"), "{lines:?}");
    assert!(lines[0].contains("not a Go binary"), "{lines:?}");
}

#[test]
fn unprivileged_user_is_told_to_use_root() {
    let workload = idle_workload();
    // Drop to nobody with no capabilities at all.
    let lines = run_failing(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(env!("CARGO_BIN_EXE_mapwatch"))
            .args(["attach", "--pid", &workload.pid.to_string()]),
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("needs root"), "{lines:?}");
}

#[test]
fn a_bad_overhead_budget_says_what_is_accepted() {
    for bad in ["0", "250", "lots"] {
        let lines =
            run_failing(mapwatch().args(["attach", "--pid", "1", "--overhead-budget", bad]));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("not an overhead budget") && l.contains("`off`")),
            "{bad}: {lines:?}"
        );
    }
}

#[test]
fn bad_arguments_are_rejected() {
    let lines = run_failing(mapwatch().args(["attach", "--pid", "1", "--duration", "soon"]));
    assert!(
        lines.iter().any(|l| l.contains("not a duration")),
        "{lines:?}"
    );
}
