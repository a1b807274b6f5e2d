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

/// A stripped build names what the unstripped one names by symbol by
/// where it is: the hot lock as `lockloop.stripped .bss+0xOFF` at the
/// offset of `hot_lock` in `.bss`, the call site as
/// `lockloop.stripped+0xFILEOFFSET` inside `hot_worker`'s code, both read
/// off the unstripped twin (same code, same layout). Counts stay exact.
#[test]
fn a_stripped_c_binary_names_its_lock_and_call_site_by_place() {
    let plain = fixtures_dir().join("c/lockloop");
    let stripped = fixtures_dir().join("c/lockloop.stripped");
    assert!(
        stripped.is_file(),
        "{} missing: run `cargo xtask test`",
        stripped.display()
    );
    let twin = mapwatch::target::Executable::open(&plain, "lockloop").expect("the unstripped twin");
    let hot = twin
        .symbols
        .global("hot_lock")
        .expect("hot_lock in the twin");
    let bss = twin.elf.section(".bss").expect(".bss");
    let want_lock = format!("lockloop.stripped .bss+{:#x}", hot.address - bss.address);
    let worker = twin.symbols.function("hot_worker").expect("hot_worker");
    let code = twin.elf.vaddr_to_file_offset(worker.start).unwrap()
        ..twin.elf.vaddr_to_file_offset(worker.end).unwrap();

    let workload = Workload::start(&stripped, &["-workers", "4", "-iterations", "2000"]);
    let tracer = Tracer::attach(workload.pid, &["--futex"]);
    let truth = workload.run_to_end();
    let report = tracer.report();
    let context = format!("{report:#}\ntruth: {truth}");
    assert_nothing_lost(&report);
    let locks = report["locks"].as_array().unwrap();
    let lock = locks
        .iter()
        .max_by_key(|l| l["contentions"].as_u64().unwrap_or(0))
        .unwrap_or_else(|| panic!("no lock: {context}"));
    assert_eq!(lock["name"], want_lock.as_str(), "{context}");
    assert_eq!(
        lock["acquisitions"].as_u64().unwrap(),
        lock["contentions"].as_u64().unwrap(),
        "{context}"
    );
    let frame = lock["top_call_sites"][0]["frames"][0]
        .as_str()
        .unwrap_or_default();
    let offset = frame
        .strip_prefix("lockloop.stripped+0x")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("call site {frame:?} is not module+offset: {context}"));
    assert!(
        code.contains(&offset),
        "{frame} outside hot_worker's {code:x?}: {context}"
    );
}
