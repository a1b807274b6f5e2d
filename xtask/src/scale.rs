//! `cargo xtask bench daemon`: what one `mapwatch daemon` costs for many
//! targets, and what its flight recorder holds for a busy one.
//!
//! Fifty processes of one binary (the slowpath fixture, waiting on stdin)
//! run before a daemon starts selecting them by name; the table gives the
//! time until all fifty are watched, then the daemon's own memory and the
//! kernel memory it holds: its BPF maps and programs (their `memlock` in
//! `/proc/PID/fdinfo`) and its perf rings (their mappings). Once with the
//! daemon's default ring size and once with attach's. Then the processes
//! run to their end and the time until none is watched is measured.
//!
//! The recorder's figure: one hot-key fixture (a `sync.Map` with 1000
//! Zipf-distributed keys, four workers) under a daemon with every probe on
//! and no governor, the worst case for what changes each second; its
//! recording's bytes over its seconds, times 900 for the default 15 min.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::fixtures;

/// Processes under one daemon.
const TARGETS: usize = 50;

/// One daemon run's figures.
struct ScaleRun {
    attach_all: Duration,
    rss_bytes: u64,
    peak_rss_bytes: u64,
    bpf_map_bytes: u64,
    bpf_prog_bytes: u64,
    ring_bytes: u64,
    links: usize,
    detach_all: Duration,
}

/// Runs both tables.
pub fn run(root: &Path, version: &str, mapwatch: &Path) -> Result<()> {
    let built = fixtures::build(root, version, "slowpath")?;
    let slowpath = built.first().context("slowpath fixture not built")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for (label, args) in [
        ("daemon default (64 pages/CPU)", &[][..]),
        (
            "attach's rings (1024 pages/CPU)",
            &["--buffer-pages", "1024"][..],
        ),
    ] {
        let run = scale_run(slowpath, mapwatch, args)?;
        rows.push((label, run));
    }
    println!();
    println!(
        "mapwatch daemon, {TARGETS} processes of one binary (slowpath fixture, Go {version}), \
         default probes, {cpus} CPUs"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "rings",
        "attach all",
        "RSS",
        "peak RSS",
        "BPF maps",
        "BPF progs",
        "rings",
        "links",
        "detach all"
    );
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64);
    for (label, run) in &rows {
        println!(
            "{label:<32} {:>9.2}s {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9.2}s",
            run.attach_all.as_secs_f64(),
            mib(run.rss_bytes),
            mib(run.peak_rss_bytes),
            mib(run.bpf_map_bytes),
            mib(run.bpf_prog_bytes),
            mib(run.ring_bytes),
            run.links,
            run.detach_all.as_secs_f64(),
        );
    }
    for (label, run) in &rows {
        let kernel = run.bpf_map_bytes + run.bpf_prog_bytes + run.ring_bytes;
        println!(
            "{label}: per target {} user, {} kernel ({} of it rings: {} per CPU)",
            mib(run.rss_bytes / TARGETS as u64),
            mib(kernel / TARGETS as u64),
            mib(run.ring_bytes / TARGETS as u64),
            mib(run.ring_bytes / (TARGETS * cpus) as u64),
        );
    }
    recorder_run(root, version, mapwatch)
}

/// A daemon started on `TARGETS` waiting processes: its figures.
fn scale_run(slowpath: &Path, mapwatch: &Path, args: &[&str]) -> Result<ScaleRun> {
    let mut targets: Vec<Child> = Vec::with_capacity(TARGETS);
    for _ in 0..TARGETS {
        let mut child = Command::new(slowpath)
            .args(["-wait-stdin", "-calls", "20000", "-growth", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", slowpath.display()))?;
        let mut line = String::new();
        BufReader::new(child.stderr.take().context("stderr")?).read_line(&mut line)?;
        targets.push(child);
    }
    let (mut daemon, port) = start_daemon(mapwatch, &["--target", "comm=slowpath"], args)?;
    let started = Instant::now();
    wait_for_targets(port, TARGETS, Duration::from_secs(300))?;
    let attach_all = started.elapsed();
    // Let a tick or two pass: the figures of a settled daemon.
    std::thread::sleep(Duration::from_secs(3));
    let pid = daemon.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
            * 1024
    };
    let (bpf_map_bytes, bpf_prog_bytes, links) = fd_memory(pid)?;
    let ring_bytes = ring_mappings(pid)?;
    let run = ScaleRun {
        attach_all,
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
        bpf_map_bytes,
        bpf_prog_bytes,
        ring_bytes,
        links,
        detach_all: Duration::ZERO,
    };
    let releasing = Instant::now();
    for target in &mut targets {
        target.stdin.take().context("stdin")?.write_all(b"go\n")?;
    }
    for mut target in targets {
        target.wait()?;
    }
    wait_for_targets(port, 0, Duration::from_secs(300))?;
    let run = ScaleRun {
        detach_all: releasing.elapsed(),
        ..run
    };
    stop(&mut daemon)?;
    Ok(run)
}

/// The flight recorder's bytes per second for a busy target.
fn recorder_run(root: &Path, version: &str, mapwatch: &Path) -> Result<()> {
    let built = fixtures::build(root, version, "hotkeys")?;
    let hotkeys = built.first().context("hotkeys fixture not built")?;
    let (mut daemon, port) = start_daemon(
        mapwatch,
        &["--target", "comm=hotkeys"],
        &["--probe", "all", "--overhead-budget", "off"],
    )?;
    let mut target = Command::new(hotkeys)
        .args(["-ops", "100000000", "-work", "20us", "-keys", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the hotkeys fixture")?;
    wait_for_targets(port, 1, Duration::from_secs(60))?;
    const SECONDS: u64 = 30;
    std::thread::sleep(Duration::from_secs(SECONDS));
    let scrape = get(port, "/metrics")?;
    let bytes = gauge(&scrape, "mapwatch_recorder_bytes").context("mapwatch_recorder_bytes")?;
    let report: serde_json::Value =
        serde_json::from_str(&get(port, &format!("/report.json?pid={}", target.id()))?)
            .context("the recorder's report")?;
    let recorded = report["duration_seconds"].as_f64().unwrap_or(0.0).max(1.0);
    let keys = report["maps"][0]["distinct_keys"].as_u64().unwrap_or(0);
    target.kill()?;
    target.wait()?;
    stop(&mut daemon)?;
    println!();
    println!(
        "flight recorder, one busy target (hotkeys fixture: sync.Map, ~{keys} keys, Zipf, \
         4 workers; --probe all, budget off), Go {version}"
    );
    println!(
        "{:>10} {:>14} {:>14} {:>16}",
        "recorded", "bytes", "bytes/second", "15 min (900 s)"
    );
    let per_second = bytes / recorded;
    println!(
        "{:>9.0}s {:>14.0} {:>14.0} {:>12.1} MiB",
        recorded,
        bytes,
        per_second,
        per_second * 900.0 / (1u64 << 20) as f64
    );
    Ok(())
}

/// Starts `mapwatch daemon --metrics 127.0.0.1:PORT SELECTORS ARGS`; its
/// stderr is drained.
fn start_daemon(mapwatch: &Path, selectors: &[&str], args: &[&str]) -> Result<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut daemon = Command::new(mapwatch)
        .args(["daemon", "--metrics", &format!("127.0.0.1:{port}")])
        .args(selectors)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", mapwatch.display()))?;
    let mut err = BufReader::new(daemon.stderr.take().context("stderr")?);
    let mut line = String::new();
    err.read_line(&mut line)?;
    if !line.contains("daemon serving") {
        bail!("the daemon said {line:?}");
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok((daemon, port))
}

/// Stops a daemon (SIGTERM) and waits for it.
fn stop(daemon: &mut Child) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .context("stopping the daemon")?;
    daemon.wait()?;
    Ok(())
}

/// Waits until the daemon watches `count` targets.
fn wait_for_targets(port: u16, count: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(scrape) = get(port, "/metrics") {
            if gauge(&scrape, "mapwatch_targets") == Some(count as f64) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the daemon never watched {count} targets");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of an unlabelled gauge in a plain-text scrape.
fn gauge(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// `GET path` from the daemon: the body of a 200.
fn get(port: u16, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").context("an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// The `memlock` of the BPF maps and programs a process holds open, and
/// how many BPF links (attached uprobes and tracepoints) it holds.
fn fd_memory(pid: u32) -> Result<(u64, u64, usize)> {
    let (mut maps, mut progs, mut links) = (0, 0, 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        let memlock = || -> u64 {
            std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                entry.file_name().to_string_lossy()
            ))
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("memlock:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
        };
        if link.contains("bpf-map") {
            maps += memlock();
        } else if link.contains("bpf-prog") {
            progs += memlock();
        } else if link.contains("bpf_link") {
            links += 1;
        }
    }
    Ok((maps, progs, links))
}

/// The bytes of a process's perf ring mappings.
fn ring_mappings(pid: u32) -> Result<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(maps
        .lines()
        .filter(|line| line.contains("perf_event"))
        .filter_map(|line| {
            let range = line.split_whitespace().next()?;
            let (start, end) = range.split_once('-')?;
            Some(u64::from_str_radix(end, 16).ok()? - u64::from_str_radix(start, 16).ok()?)
        })
        .sum())
}
