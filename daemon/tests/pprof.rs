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
