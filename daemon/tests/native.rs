//! `--futex`: native locks (glibc pthread mutexes, Rust's std Mutex) seen as
//! futex waits through the syscall tracepoints, per futex word, named when
//! it is a global, with wait times and the call site that waited.

mod common;

use common::*;

fn check(binary: &std::path::Path, hot: &str, cold: &str, caller: &str) {
    assert!(
        binary.is_file(),
        "{} missing: run `cargo xtask test`",
        binary.display()
    );
    let workload = Workload::start(binary, &["-workers", "4", "-iterations", "2000"]);
    let tracer = Tracer::attach(workload.pid, &["--futex"]);
    let truth = workload.run_to_end();
    let report = tracer.report();
    let context = format!("{}: {report:#}\ntruth: {truth}", binary.display());
    assert_eq!(report["target"]["go_version"], serde_json::Value::Null);
    assert_nothing_lost(&report);
    let locks = report["locks"].as_array().unwrap();
    let lock = locks
        .iter()
        .find(|l| l["name"].as_str().is_some_and(|n| n.contains(hot)))
        .unwrap_or_else(|| panic!("{hot} not reported: {context}"));
    assert_eq!(lock["kind"], "futex", "{context}");
    let contentions = lock["contentions"].as_u64().unwrap();
    assert!(contentions > 0, "{context}");
    // Every futex wait that began returned before the target exited.
    assert_eq!(
        lock["acquisitions"].as_u64().unwrap(),
        contentions,
        "{context}"
    );
    assert!(
        lock["wait_seconds_total"].as_f64().unwrap() > 0.0,
        "{context}"
    );
    // Where the waits come from: the fixture's function that locks, found
    // on the user stack (glibc has no frame pointers), with its line.
    let site = &lock["top_call_sites"][0];
    let frame = site["frames"][0].as_str().unwrap_or("");
    eprintln!(
        "{}: top call site {frame}, share {}",
        binary.display(),
        site["share"]
    );
    assert!(
        frame.contains(caller),
        "{caller} not the top call site: {context}"
    );
    assert!(site["share"].as_f64().unwrap() > 0.9, "{context}");
    // The uncontended lock never made a thread wait.
    assert!(
        !locks
            .iter()
            .any(|l| l["name"].as_str().is_some_and(|n| n.contains(cold))),
        "{cold} must not wait: {context}"
    );
}

#[test]
fn glibc_pthread_mutex_waits_are_seen_per_global() {
    check(
        &fixtures_dir().join("c/lockloop"),
        "hot_lock",
        "cold_lock",
        "hot_worker",
    );
}

#[test]
fn rust_std_mutex_waits_are_seen_per_global() {
    check(
        &fixtures_dir().join("rust/lockloop"),
        "HOT_LOCK",
        "COLD_LOCK",
        "lockloop::hot_worker",
    );
}
