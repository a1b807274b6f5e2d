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
    /// The condition variable waited on, and where, when the fixture has one.
    signal_wait: Option<(String, String)>,
}

/// What a fixture is checked for: its hot lock, its cold one, the hot
/// lock's caller, and the condition variable it waits on (if any) with the
/// function that waits.
struct Expect<'a> {
    hot: &'a str,
    cold: &'a str,
    caller: &'a str,
    signal: Option<(&'a str, &'a str)>,
}

fn check(binary: &std::path::Path, args: &[&str], expect: &Expect) -> (Named, Option<String>) {
    let Expect {
        hot, cold, caller, ..
    } = *expect;
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
    // A condition variable's waits are not contention: never a lock, and
    // among the waits for other threads, at the function that waits.
    let signal_wait = expect.signal.map(|(name, waiter)| {
        assert!(
            !locks
                .iter()
                .any(|l| l["name"].as_str().is_some_and(|n| n.contains(name))),
            "{name} waits counted as contention: {context}"
        );
        let wait = report["signal_waits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"].as_str().is_some_and(|n| n.contains(name)))
            .unwrap_or_else(|| panic!("{name} not among the waits for a signal: {context}"));
        assert_eq!(wait["kind"], "condvar", "{context}");
        assert!(wait["contentions"].as_u64().unwrap() > 0, "{context}");
        let at = wait["top_call_sites"][0]["frames"][0]
            .as_str()
            .unwrap_or_default();
        assert!(at.contains(waiter), "{name} waited at {at}: {context}");
        (
            wait["name"].as_str().unwrap_or_default().to_string(),
            at.to_string(),
        )
    });
    let named = Named {
        lock: lock["name"].as_str().unwrap_or_default().to_string(),
        call_site: frame.to_string(),
        signal_wait,
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
fn stripped_builds_name_what_the_plain_one_names(dir: &str, expect: Expect) {
    let plain = fixtures_dir().join(dir).join("lockloop");
    let debug_dir = fixtures_dir().join("debug");
    let debug_dir = debug_dir.to_str().expect("a UTF-8 path");
    let (want, none) = check(&plain, &[], &expect);
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
        let (got, read) = check(&binary, &args, &expect);
        assert_eq!(got, want, "{build} with its debug file");
        let read = read.unwrap_or_else(|| panic!("{build}: no debug file read"));
        assert!(read.contains(&debug), "{build} read {read}, not {debug}");
    }
}

#[test]
fn glibc_pthread_mutex_waits_are_seen_per_global() {
    stripped_builds_name_what_the_plain_one_names(
        "c",
        Expect {
            hot: "hot_lock",
            cold: "cold_lock",
            caller: "hot_worker",
            signal: None,
        },
    );
}

#[test]
fn rust_std_mutex_waits_are_seen_per_global() {
    stripped_builds_name_what_the_plain_one_names(
        "rust",
        Expect {
            hot: "HOT_LOCK",
            cold: "COLD_LOCK",
            caller: "lockloop::hot_worker",
            signal: Some(("lockloop::READY", "lockloop::queue_consumer")),
        },
    );
}

/// A stripped build with no debug file names what the unstripped one
/// names by symbol by where it is: the hot lock as
/// `NAME.stripped .bss+0xOFF` at the offset of the hot lock in `.bss`,
/// the call site as `NAME.stripped+0xFILEOFFSET` inside the hot
/// worker's code, both read off the unstripped twin (same code, same
/// layout). Counts stay exact.
fn a_stripped_binary_names_by_place(
    (dir, name, args): (&str, &str, &[&str]),
    hot: &str,
    worker: &str,
    lock_code: &str,
) {
    let plain = fixtures_dir().join(dir).join(name);
    let stripped = fixtures_dir().join(dir).join(format!("{name}.stripped"));
    assert!(
        stripped.is_file(),
        "{} missing: run `cargo xtask test`",
        stripped.display()
    );
    let twin = mapwatch::target::Executable::open(&plain, name).expect("the unstripped twin");
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
        "{name}.stripped {}+{:#x}",
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

    let workload = Workload::start(&stripped, args);
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
        .strip_prefix(&format!("{name}.stripped+0x"))
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

/// The lockloop fixtures as [`a_stripped_binary_names_by_place`] runs them.
const LOCKLOOP_ARGS: &[&str] = &["-workers", "4", "-iterations", "2000"];
const LOCKLOOP_C: (&str, &str, &[&str]) = ("c", "lockloop", LOCKLOOP_ARGS);
const LOCKLOOP_RUST: (&str, &str, &[&str]) = ("rust", "lockloop", LOCKLOOP_ARGS);

#[test]
fn a_stripped_c_binary_names_its_lock_and_call_site_by_place() {
    // glibc's lock code is in libc, never in the executable.
    a_stripped_binary_names_by_place(LOCKLOOP_C, "hot_lock", "hot_worker", "hot_worker");
}

#[test]
fn a_stripped_rust_binary_names_its_lock_and_call_site_by_place() {
    a_stripped_binary_names_by_place(
        LOCKLOOP_RUST,
        "lockloop::HOT_LOCK",
        "lockloop::hot_worker",
        "std::sys::sync::mutex::",
    );
}

#[test]
fn a_stripped_cpp_binary_names_its_lock_and_call_site_by_place() {
    // The shared mutex's inlined wrappers are inside its callers: the
    // readers' and the writer's functions.
    a_stripped_binary_names_by_place(
        ("cpp", "rwcond", &["-iterations", "2000"]),
        "table_lock",
        "table_writer",
        "table_",
    );
}

/// C++'s `std::shared_mutex` and `std::condition_variable` on glibc: the
/// shared mutex is a pthread rwlock whose readers' and writers' waits are
/// split (no more of either than the fixture's own lock calls), named
/// `table_lock`, with every wait charged to it (not to the futex words
/// inside); the condition variable's waits are reported apart, under
/// `signal_waits`, at `queue_cv`'s own address, waited at in
/// `queue_consumer`, and never as a lock; main's joins of its threads are
/// waits for them too, at `main`. The stripped build, with its debug file,
/// names the same. Each wait is charged to its thread, by name.
#[test]
fn cpp_rwlock_readers_and_writers_are_split_and_condvar_waits_are_not_contention() {
    let debug_dir = fixtures_dir().join("debug");
    let debug_dir = debug_dir.to_str().expect("a UTF-8 path");
    let mut writer_sites: Vec<Vec<String>> = Vec::new();
    for (build, args) in [
        ("rwcond", vec![]),
        ("rwcond.stripped", vec!["--debug-dir", debug_dir]),
    ] {
        let binary = fixtures_dir().join("cpp").join(build);
        assert!(
            binary.is_file(),
            "{} missing: run `cargo xtask test`",
            binary.display()
        );
        let workload = Workload::start(&binary, &["-iterations", "2000"]);
        let mut tracer_args = vec!["--futex"];
        tracer_args.extend_from_slice(&args);
        let tracer = Tracer::attach(workload.pid, &tracer_args);
        let truth = workload.run_to_end();
        let report = tracer.report();
        let context = format!("{build}: {report:#}\ntruth: {truth}");
        assert_nothing_lost(&report);
        let address = |field: &str| {
            let text = truth[field].as_str().expect("an address");
            u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex")
        };
        let hex = |a: u64| format!("{a:#x}");
        let (table, cv) = (address("table_lock"), address("queue_cv"));
        let locks = report["locks"].as_array().unwrap();

        let rw = locks
            .iter()
            .find(|l| l["address"] == hex(table).as_str())
            .unwrap_or_else(|| panic!("table_lock not among the locks: {context}"));
        assert_eq!(rw["kind"], "rwlock", "{context}");
        assert_eq!(rw["name"], "table_lock", "{context}");
        // The writers' call site, through DWARF's inlined subroutines: the
        // libstdc++ code inlined at the lock call, then table_writer at
        // the fixture's own line.
        let writer: Vec<String> = rw["top_call_sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|site| {
                site["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<String>>()
            })
            .find(|frames| frames.iter().any(|f| f.starts_with("table_writer+")))
            .unwrap_or_else(|| panic!("no call site in table_writer: {context}"));
        let own = writer
            .iter()
            .position(|f| f.starts_with("table_writer+"))
            .unwrap_or(0);
        assert!(
            own > 0
                && writer[..own].iter().all(|f| f.contains("/c++/"))
                && writer[..own]
                    .iter()
                    .any(|f| f.starts_with("std::shared_mutex::lock "))
                && writer[own].contains("rwcond.cpp:"),
            "{writer:#?}: {context}"
        );
        writer_sites.push(writer);
        let contentions = rw["contentions"].as_u64().unwrap();
        let readers = rw["reader_contentions"].as_u64().unwrap();
        let writers = contentions - readers;
        assert!(readers > 0 && writers > 0, "{context}");
        assert!(
            readers <= truth["reader_calls"].as_u64().unwrap()
                && writers <= truth["writer_calls"].as_u64().unwrap(),
            "{context}"
        );
        assert_eq!(
            rw["acquisitions"].as_u64().unwrap(),
            contentions,
            "{context}"
        );
        // Who waited, by thread name: the readers and the writer, every
        // wait of theirs (the groups add up to the lock's waits).
        let groups = |lock: &serde_json::Value| -> Vec<(String, u64, u64)> {
            lock["threads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    (
                        g["name"].as_str().unwrap_or_default().to_string(),
                        g["threads"].as_u64().unwrap(),
                        g["waits"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        let rw_threads = groups(rw);
        let mut names: Vec<&str> = rw_threads.iter().map(|(n, _, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["reader", "writer"], "{context}");
        assert!(
            rw_threads
                .iter()
                .all(|(name, threads, _)| match name.as_str() {
                    "reader" => (1..=3).contains(threads),
                    _ => *threads == 1,
                }),
            "{context}"
        );
        let waits: u64 = rw_threads.iter().map(|(_, _, w)| w).sum();
        assert_eq!(waits, contentions, "{context}");
        // No lock is a futex word inside the rwlock or the condition
        // variable: their waits are theirs.
        let inside = |base: u64, size: u64| {
            locks.iter().any(|l| {
                let a = l["address"].as_str().unwrap_or_default();
                let a = u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap_or(0);
                a > base && a < base + size
            })
        };
        assert!(!inside(table, 56) && !inside(cv, 48), "{context}");
        assert!(
            !locks.iter().any(|l| l["address"] == hex(cv).as_str()),
            "queue_cv's waits counted as contention: {context}"
        );

        // The only locks are the fixture's own: a join (main waiting for
        // its threads' exits) is no lock either.
        let mu = hex(address("queue_mu"));
        let heap = hex(address("heap_mu"));
        for lock in locks {
            assert!(
                lock["address"] == hex(table).as_str()
                    || lock["address"] == mu.as_str()
                    || lock["address"] == heap.as_str(),
                "{} is none of the fixture's locks: {context}",
                lock["address"]
            );
        }
        // A lock that is no global says where it is: the heap.
        let on_heap = locks
            .iter()
            .find(|l| l["address"] == heap.as_str())
            .unwrap_or_else(|| panic!("heap_mu not among the locks: {context}"));
        assert_eq!(on_heap["name"], serde_json::Value::Null, "{context}");
        assert_eq!(on_heap["region"], "heap", "{context}");
        assert_eq!(on_heap["kind"], "futex", "{context}");
        let conds = report["signal_waits"].as_array().unwrap();
        for join in conds.iter().filter(|w| w["kind"] == "thread_join") {
            let frame = join["top_call_sites"][0]["frames"][0]
                .as_str()
                .unwrap_or_default();
            assert!(frame.starts_with("main+"), "join at {frame}: {context}");
        }
        let cond = conds
            .iter()
            .find(|c| c["address"] == hex(cv).as_str())
            .unwrap_or_else(|| panic!("queue_cv not among the condition variables: {context}"));
        assert_eq!(cond["kind"], "condvar", "{context}");
        assert_eq!(cond["name"], "queue_cv", "{context}");
        assert!(cond["contentions"].as_u64().unwrap() > 0, "{context}");
        assert_eq!(
            cond["acquisitions"].as_u64().unwrap(),
            cond["contentions"].as_u64().unwrap(),
            "{context}"
        );
        let frame = cond["top_call_sites"][0]["frames"][0]
            .as_str()
            .unwrap_or_default();
        assert!(frame.contains("queue_consumer"), "{frame}: {context}");
        // The consumers wait on it (and the producer, when its broadcast
        // waits for the consumers to leave a group), every wait of theirs.
        let cv_threads = groups(cond);
        assert!(
            cv_threads
                .iter()
                .any(|(name, threads, _)| name == "consumer" && (1..=2).contains(threads)),
            "{context}"
        );
        assert!(
            cv_threads
                .iter()
                .all(|(name, _, _)| name == "consumer" || name == "producer"),
            "{context}"
        );
        let waits: u64 = cv_threads.iter().map(|(_, _, w)| w).sum();
        assert_eq!(waits, cond["acquisitions"].as_u64().unwrap(), "{context}");
    }
    // The stripped build, with its debug file, unwinds the same inlining.
    assert_eq!(writer_sites[0], writer_sites[1]);
}
