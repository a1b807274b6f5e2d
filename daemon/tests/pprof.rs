//! `--pprof FILE`: the lock-wait and CAS-failure profiles, read back by
//! `go tool pprof -top` (the Go toolchain installed for the fixtures).

mod common;

use std::{path::PathBuf, process::Command};

use common::*;

fn pprof_top(profile: &std::path::Path, sample_index: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let goroot = root.join(".tools/go/1.27.3/go");
    let out = Command::new(goroot.join("bin/go"))
        .args([
            "tool",
            "pprof",
            "-top",
            &format!("-sample_index={sample_index}"),
        ])
        .arg(profile)
        .env("GOROOT", &goroot)
        .env("GOCACHE", root.join("target/go-cache/1.27.3"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .output()
        .expect("go tool pprof runs: run `cargo xtask test`");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn go_tool_pprof_reads_lock_waits_and_cas_failures() {
    let dir = std::env::temp_dir();
    let locks = dir.join(format!("mapwatch-locks-{}.pb.gz", std::process::id()));
    let workload = Workload::start(&fixture("1.27.3", "contend", false), &[]);
    let tracer = Tracer::attach(workload.pid, &["--pprof", locks.to_str().unwrap()]);
    workload.run_to_end();
    tracer.report();
    let top = pprof_top(&locks, "delay");
    assert!(top.contains("Type: delay"), "{top}");
    assert!(top.contains("lock main.hotMu"), "{top}");
    assert!(top.contains("main.main.func1"), "{top}");
    let _ = std::fs::remove_file(&locks);

    let cas = dir.join(format!("mapwatch-cas-{}.pb.gz", std::process::id()));
    let workload = Workload::start(&fixture("1.27.3", "casloop", false), &[]);
    let tracer = Tracer::attach(
        workload.pid,
        &[
            "--cas",
            "main.casIncrement",
            "--no-builtin-cas",
            "--pprof",
            cas.to_str().unwrap(),
        ],
    );
    let truth = workload.run_to_end();
    tracer.report();
    let top = pprof_top(&cas, "cas_failures");
    assert!(top.contains("main.casIncrement"), "{top}");
    // The flat total is the fixture's own failure count.
    let total = format!("Total samples = {}", truth["failures"]);
    assert!(top.contains(&total), "expected {total}: {top}");
    let _ = std::fs::remove_file(&cas);
}

/// A stripped native program's profile, with its debug file found by build
/// ID: `go tool pprof -top` names the waiting function (`hot_worker`) and
/// the lock, and the profile's mapping carries the executable's build ID
/// (what pprof and other tools match debug files by). Without the debug
/// file the frames keep their addresses in that mapping, unnamed.
#[test]
fn go_tool_pprof_names_a_stripped_native_programs_frames_from_its_debug_file() {
    let binary = fixtures_dir().join("c/lockloop.stripped");
    let debug_dir = fixtures_dir().join("debug");
    let twin = mapwatch::target::elf::ElfImage::open(&fixtures_dir().join("c/lockloop"))
        .expect("the unstripped twin");
    let build_id = twin.build_id_hex().expect("a build ID");
    let dir = std::env::temp_dir();
    for with_debug in [true, false] {
        let profile = dir.join(format!(
            "mapwatch-native-{with_debug}-{}.pb.gz",
            std::process::id()
        ));
        let workload = Workload::start(&binary, &["-workers", "4", "-iterations", "2000"]);
        let mut args = vec!["--futex", "--pprof", profile.to_str().unwrap()];
        if with_debug {
            args.extend(["--debug-dir", debug_dir.to_str().unwrap()]);
        }
        let tracer = Tracer::attach(workload.pid, &args);
        workload.run_to_end();
        tracer.report();
        let top = pprof_top(&profile, "delay");
        assert!(top.contains(&format!("Build ID: {build_id}")), "{top}");
        if with_debug {
            assert!(top.contains("lock hot_lock"), "{top}");
            assert!(top.contains("hot_worker"), "{top}");
        } else {
            assert!(top.contains("lock lockloop.stripped .bss+0x"), "{top}");
            assert!(!top.contains("hot_worker"), "{top}");
            assert!(top.contains("[lockloop.stripped]"), "{top}");
        }
        let _ = std::fs::remove_file(&profile);
    }
}
