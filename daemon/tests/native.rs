//! `--futex`: native locks (glibc pthread mutexes, Rust's std Mutex) seen as
//! futex waits through the syscall tracepoints, per futex word, named when
//! it is a global, with wait times and the call site that waited.

mod common;

use common::*;

/// What a run names: the hot lock's name and its top call site's frame.
#[derive(Debug, PartialEq)]
struct Named {
    lock: String,
    call_site: String,
}

fn check(
    binary: &std::path::Path,
    args: &[&str],
    hot: &str,
    cold: &str,
    caller: &str,
) -> (Named, Option<String>) {
    assert!(
        binary.is_file(),
        "{} missing: run `cargo xtask test`",
        binary.display()
    );
    let workload = Workload::start(binary, &["-workers", "4", "-iterations", "2000"]);
    let mut tracer_args = vec!["--futex"];
    tracer_args.extend_from_slice(args);
    let tracer = Tracer::attach(workload.pid, &tracer_args);
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
    let named = Named {
        lock: lock["name"].as_str().unwrap_or_default().to_string(),
        call_site: frame.to_string(),
    };
    let debug_file = report["target"]["debug_file"].as_str().map(str::to_string);
    (named, debug_file)
}

/// The unstripped build, then its stripped builds with their debug files:
/// `NAME.stripped` with the debug file found by build ID under
/// `--debug-dir`, `NAME.linked` with the one its `.gnu_debuglink` names
/// beside it. All three name the same lock and the same call site, frame
/// for frame (function, offset, file and line), and say which debug file
/// they read.
fn stripped_builds_name_what_the_plain_one_names(dir: &str, hot: &str, cold: &str, caller: &str) {
    let plain = fixtures_dir().join(dir).join("lockloop");
    let debug_dir = fixtures_dir().join("debug");
    let debug_dir = debug_dir.to_str().expect("a UTF-8 path");
    let (want, none) = check(&plain, &[], hot, cold, caller);
    assert_eq!(none, None, "the plain build needs no debug file");
    for (build, args, debug) in [
        (
            "lockloop.stripped",
            vec!["--debug-dir", debug_dir],
            debug_dir.to_string(),
        ),
        (
            "lockloop.linked",
            vec![],
            format!("{dir}/.debug/lockloop.debug"),
        ),
    ] {
        let binary = fixtures_dir().join(dir).join(build);
        let (got, read) = check(&binary, &args, hot, cold, caller);
        assert_eq!(got, want, "{build} with its debug file");
        let read = read.unwrap_or_else(|| panic!("{build}: no debug file read"));
        assert!(read.contains(&debug), "{build} read {read}, not {debug}");
    }
}

#[test]
fn glibc_pthread_mutex_waits_are_seen_per_global() {
    stripped_builds_name_what_the_plain_one_names("c", "hot_lock", "cold_lock", "hot_worker");
}

#[test]
fn rust_std_mutex_waits_are_seen_per_global() {
    stripped_builds_name_what_the_plain_one_names(
        "rust",
        "HOT_LOCK",
        "COLD_LOCK",
        "lockloop::hot_worker",
    );
}

/// A stripped build with no debug file names what the unstripped one
/// names by symbol by where it is: the hot lock as
/// `lockloop.stripped .bss+0xOFF` at the offset of the hot lock in `.bss`,
/// the call site as `lockloop.stripped+0xFILEOFFSET` inside the hot
/// worker's code, both read off the unstripped twin (same code, same
/// layout). Counts stay exact.
fn a_stripped_binary_names_by_place(dir: &str, hot: &str, worker: &str, lock_code: &str) {
    let plain = fixtures_dir().join(dir).join("lockloop");
    let stripped = fixtures_dir().join(dir).join("lockloop.stripped");
    assert!(
        stripped.is_file(),
        "{} missing: run `cargo xtask test`",
        stripped.display()
    );
    let twin = mapwatch::target::Executable::open(&plain, "lockloop").expect("the unstripped twin");
    let hot = twin
        .symbols
        .globals()
        .iter()
        .find(|g| mapwatch::target::demangle(&g.name) == hot)
        .unwrap_or_else(|| panic!("{hot} in the twin"));
    let section = [".bss", ".data"]
        .iter()
        .filter_map(|name| twin.elf.section(name))
        .find(|s| s.contains(hot.address))
        .expect("the hot lock in .bss or .data");
    let want_lock = format!(
        "lockloop.stripped {}+{:#x}",
        section.name,
        hot.address - section.address
    );
    let worker = twin
        .symbols
        .functions()
        .iter()
        .find(|f| mapwatch::target::demangle(&f.name) == worker)
        .unwrap_or_else(|| panic!("{worker} in the twin"));
    let code = twin.elf.vaddr_to_file_offset(worker.start).unwrap()
        ..twin.elf.vaddr_to_file_offset(worker.end).unwrap();

    let workload = Workload::start(&stripped, &["-workers", "4", "-iterations", "2000"]);
    let tracer = Tracer::attach(workload.pid, &["--futex"]);
    let truth = workload.run_to_end();
    let report = tracer.report();
    let context = format!("{report:#}\ntruth: {truth}");
    assert_nothing_lost(&report);
    assert_eq!(
        report["target"]["debug_file"],
        serde_json::Value::Null,
        "{context}"
    );
    assert!(report["target"]["build_id"].is_string(), "{context}");
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
    // Without symbols no frame is known to be the lock's own code: a
    // stripped Rust binary's waits come from std's lock_contended, inlined
    // into nothing the skip list can name. The frame is then that code's
    // place, inside std's mutex in the twin.
    let in_twin = twin
        .elf
        .load_segments()
        .iter()
        .find(|s| offset >= s.file_offset && offset - s.file_offset < s.file_size)
        .and_then(|s| twin.symbols.function_at(s.vaddr + (offset - s.file_offset)))
        .map(|f| mapwatch::target::demangle(&f.name))
        .unwrap_or_default();
    assert!(
        code.contains(&offset) || in_twin.contains(lock_code),
        "{frame} ({in_twin} in the twin) outside {worker:?}'s {code:x?}: {context}"
    );
}

#[test]
fn a_stripped_c_binary_names_its_lock_and_call_site_by_place() {
    // glibc's lock code is in libc, never in the executable.
    a_stripped_binary_names_by_place("c", "hot_lock", "hot_worker", "hot_worker");
}

#[test]
fn a_stripped_rust_binary_names_its_lock_and_call_site_by_place() {
    a_stripped_binary_names_by_place(
        "rust",
        "lockloop::HOT_LOCK",
        "lockloop::hot_worker",
        "std::sys::sync::mutex::",
    );
}
