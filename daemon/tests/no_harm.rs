//! No harm to the target: with every probe attached (lock entries, their
//! RETs, the built-in sync.Map CAS sites), fixtures run under GOGC=1 — the
//! garbage collector moving and shrinking goroutine stacks constantly —
//! with deep recursion (stack growth inside the probed functions) and many
//! goroutines, and print exactly what an unprobed run prints.

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use common::*;
use serde_json::Value;

/// Fields that differ between any two runs (process id, timings).
const VOLATILE: &[&str] = &[
    "pid",
    "seconds",
    "loop_ns_per_call",
    "go_mutex_wait_seconds",
];

/// Runs a fixture under GOGC=1, optionally traced; returns its output
/// without the volatile fields.
fn run(binary: &Path, args: &[&str], traced: bool) -> Value {
    let mut child = Command::new(binary)
        .arg("-wait-stdin")
        .args(args)
        .env("GOGC", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fixture starts");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "{line}");
    let tracer = traced.then(|| Tracer::attach(child.id(), &["--cas", "main.*"]));
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{} under GOGC=1 (traced: {traced}) failed: {status}",
        binary.display()
    );
    if let Some(tracer) = tracer {
        let report = tracer.report();
        assert_eq!(report["events_lost"], 0, "{report:#}");
    }
    let mut output: Value = serde_json::from_str(&stdout).expect("fixture prints JSON");
    for field in VOLATILE {
        output.as_object_mut().unwrap().remove(*field);
    }
    output
}

#[test]
fn probed_runs_under_gogc_1_print_what_unprobed_runs_print() {
    for go in ["1.23.9", "1.27.3"] {
        for (fixture_name, args) in [
            // Deep recursion: goroutines grow their stacks inside lockSlow.
            ("slowpath", &["-calls", "20000", "-growth", "3000"][..]),
            // Many goroutines contending on locks and maps.
            ("contend", &["-iterations", "5000", "-workers", "32"][..]),
        ] {
            let binary = fixture(go, fixture_name, false);
            let plain = run(&binary, args, false);
            let probed = run(&binary, args, true);
            assert_eq!(plain, probed, "Go {go} {fixture_name}");
        }
    }
}
