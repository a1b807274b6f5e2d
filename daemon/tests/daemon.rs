//! `mapwatch daemon` on real processes: it follows a fixture selected by
//! `comm=` through two restarts and then two replicas at once; each
//! incarnation's counts in `/metrics` (by `pid`) and in a real Prometheus
//! scraping the daemon equal its own ground truth with zero events lost,
//! and once they are gone no probe remains. Its flight recorder returns
//! each incarnation's report (`/report.json?pid=`, `mapwatch report`),
//! and a window (`since=`) that covers only one incarnation reports only
//! its figures; it keeps the lock timeline and finds a burst's spike in it
//! (and a starved one's, with the waits for a CPU as its context),
//! and none in a window after the burst. Bad input is one clear line and a
//! non-zero exit.

mod common;

use std::{
    io::{BufRead as _, BufReader},
    net::TcpListener,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use common::{prom::*, *};

/// A running daemon, stopped (SIGTERM) when dropped.
struct Daemon {
    child: Child,
    port: u16,
    /// Its probe fds with no target: the exec watcher's.
    idle_probe_fds: usize,
}

impl Daemon {
    /// Starts `mapwatch daemon --metrics 127.0.0.1:PORT ARGS` and waits for
    /// its serving line.
    fn start(args: &[&str]) -> Self {
        let port = free_port();
        let mut child = mapwatch()
            .args(["daemon", "--metrics", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mapwatch daemon starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("daemon stderr");
        assert!(line.contains("daemon serving"), "daemon said {line:?}");
        // Keep draining its messages so that it never blocks on them.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("daemon: {line}");
            }
        });
        let mut daemon = Self {
            child,
            port,
            idle_probe_fds: 0,
        };
        daemon.idle_probe_fds = daemon.probe_fds();
        daemon
    }

    /// A daemon selecting the `slowpath` fixture by name, exact (no
    /// governor), scanning often, keeping exited targets for `grace`.
    fn slowpath(grace: &str) -> Self {
        Self::start(&[
            "--target",
            "comm=slowpath",
            "--overhead-budget",
            "off",
            "--scan-interval",
            "100ms",
            "--grace",
            grace,
        ])
    }

    /// The plain-text scrape.
    fn metrics(&self) -> String {
        http_get(self.port, "/metrics").expect("a scrape of the daemon")
    }

    /// Kernel objects the daemon holds open: perf events (uprobe links)
    /// and BPF programs.
    fn probe_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter(|link| {
                        let link = link.to_string_lossy();
                        link.contains("perf_event") || link.contains("bpf-prog")
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill sends a signal to a process we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The value of the first sample of `name` whose labels include every one
/// of `labels` (`key="value"` pairs), in a plain-text scrape.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = rest.rsplit_once(' ')?;
        if !(set.is_empty() || set.starts_with('{')) {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

/// Waits until `ready` holds for the daemon's scrape; the last scrape.
fn wait_for(daemon: &Daemon, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scrape = daemon.metrics();
        if ready(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{scrape}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CALLS: &str = "20000";

/// Waits until the daemon watches `pid` (its probes are attached once its
/// series appear).
fn watched(daemon: &Daemon, pid: u32) {
    let pid = pid.to_string();
    wait_for(daemon, &format!("watching PID {pid}"), |s| {
        sample(s, "mapwatch_target_info", &[("pid", &pid)]).is_some()
    });
}

/// The contentions of `main.slowMu` in a report document.
fn slow_mu_contentions(report: &serde_json::Value) -> Option<u64> {
    report["locks"]
        .as_array()?
        .iter()
        .find(|lock| lock["name"] == "main.slowMu")?["contentions"]
        .as_u64()
}

/// The flight recorder's whole report of `pid` once it holds the target's
/// end (its final snapshot).
fn recorded(daemon: &Daemon, pid: u32) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http_answer(daemon.port, &format!("/report.json?pid={pid}"));
        if let Some((200, body)) = &answer {
            let report: serde_json::Value = serde_json::from_str(body).expect("a JSON report");
            if !report["stopped_by"].is_null() {
                return report;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no final report of PID {pid}: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that `pid`'s final figures equal its ground truth, in the
/// scrape and in the flight recorder's report of its whole life.
fn exact(daemon: &Daemon, pid: u32, truth: &serde_json::Value) {
    let report = recorded(daemon, pid);
    let calls = truth["lock_calls"].as_u64().expect("lock_calls");
    assert_eq!(report["target"]["pid"], pid);
    assert_eq!(slow_mu_contentions(&report), Some(calls), "{report:#}");
    assert_eq!(report["events_lost"], 0, "{report:#}");
    assert_eq!(report["stopped_by"], "target-exited", "{report:#}");
    let pid = pid.to_string();
    let calls = truth["lock_calls"].as_f64().expect("lock_calls");
    let labels = [
        ("pid", pid.as_str()),
        ("comm", "slowpath"),
        ("lock", "main.slowMu"),
    ];
    let scrape = wait_for(daemon, &format!("PID {pid} at {calls} contentions"), |s| {
        sample(s, "mapwatch_lock_contentions_total", &labels).is_some_and(|n| n >= calls)
    });
    assert_eq!(
        sample(&scrape, "mapwatch_lock_contentions_total", &labels),
        Some(calls),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "mapwatch_events_lost_total", &[("pid", &pid)]),
        Some(0.0),
        "{scrape}"
    );
}

#[test]
fn the_daemon_follows_restarts_and_replicas_with_exact_counts() {
    let daemon = Daemon::slowpath("600s");
    // A real Prometheus scrapes the daemon throughout.
    let prometheus = Prometheus::scraping(daemon.port);
    let binary = fixture("1.27.3", "slowpath", false);
    let args = ["-calls", CALLS, "-growth", "0"];
    let mut pids = Vec::new();
    let mut first_ended = None;
    // The first run, then two restarts: each a new PID.
    for run in 0..3 {
        let workload = Workload::start(&binary, &args);
        let pid = workload.pid;
        watched(&daemon, pid);
        let truth = workload.run_to_end();
        exact(&daemon, pid, &truth);
        pids.push(pid);
        match run {
            0 => first_ended = Some(Instant::now()),
            1 => only_the_second_in_its_window(&daemon, &pids, first_ended, &truth),
            _ => {}
        }
    }
    // Two replicas at once.
    let mut first = Workload::start(&binary, &args);
    let second = Workload::start(&binary, &args);
    let (a, b) = (first.pid, second.pid);
    watched(&daemon, a);
    watched(&daemon, b);
    first.go();
    let truth_b = second.run_to_end();
    let truth_a = first.run_to_end();
    exact(&daemon, a, &truth_a);
    exact(&daemon, b, &truth_b);
    pids.extend([a, b]);
    // Every incarnation's final figures are still there (the grace period),
    // each under its own PID, in a scrape promtool accepts.
    let scrape = daemon.metrics();
    assert_promtool_accepts(&scrape);
    for pid in &pids {
        let pid = pid.to_string();
        assert!(
            sample(&scrape, "mapwatch_target_info", &[("pid", &pid)]).is_some(),
            "PID {pid} gone:\n{scrape}"
        );
    }
    // Prometheus has every incarnation's final count as a series of its
    // own.
    let calls: f64 = CALLS.parse().expect("calls");
    let deadline = Instant::now() + Duration::from_secs(60);
    for pid in &pids {
        let promql = format!(
            r#"mapwatch_lock_contentions_total{{pid="{pid}",comm="slowpath",lock="main.slowMu"}}"#
        );
        loop {
            let seen = prometheus.query(&promql);
            if seen == Some(calls) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus says {seen:?} for {promql}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    wait_for(&daemon, "watching no target", |s| {
        sample(s, "mapwatch_targets", &[]) == Some(0.0)
    });
    // And no probe remains: every link and program is closed but the exec
    // watcher's.
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.probe_fds() > daemon.idle_probe_fds {
        assert!(
            Instant::now() < deadline,
            "{} probe fds still open, {} with no target",
            daemon.probe_fds(),
            daemon.idle_probe_fds
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A window from the first incarnation's end to now covers only the
/// second: without a pid it is the one reported, with exactly its counts;
/// the first has nothing in it; `mapwatch report` prints the same.
fn only_the_second_in_its_window(
    daemon: &Daemon,
    pids: &[u32],
    first_ended: Option<Instant>,
    truth: &serde_json::Value,
) {
    let since = format!(
        "{}ms",
        first_ended
            .expect("the first run ended")
            .elapsed()
            .as_millis()
    );
    let calls = truth["lock_calls"].as_u64().expect("lock_calls");
    let (status, body) =
        http_answer(daemon.port, &format!("/report.json?since={since}")).expect("an answer");
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("a JSON report");
    assert_eq!(report["target"]["pid"], pids[1], "{report:#}");
    assert_eq!(slow_mu_contentions(&report), Some(calls), "{report:#}");
    assert_eq!(report["events_lost"], 0);
    assert!(
        report["window"]["from_session_seconds"] == 0.0,
        "{:#}",
        report["window"]
    );
    let (status, body) = http_answer(
        daemon.port,
        &format!("/report.json?pid={}&since={since}", pids[0]),
    )
    .expect("an answer");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nothing of PID"), "{body}");
    // The command-line client.
    let out = mapwatch()
        .args(["report", "--from", &format!("127.0.0.1:{}", daemon.port)])
        .args([
            "--pid",
            &pids[1].to_string(),
            "--since",
            "10m",
            "--format",
            "json",
        ])
        .output()
        .expect("mapwatch report runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(slow_mu_contentions(&report), Some(calls), "{report:#}");
    let out = mapwatch()
        .args(["report", "--from", &format!("127.0.0.1:{}", daemon.port)])
        .args(["--pid", &pids[1].to_string()])
        .output()
        .expect("mapwatch report runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("main.slowMu"),
        "{text}"
    );
    // Bad input: one line, a failure.
    let out = mapwatch()
        .args(["report", "--from", &format!("127.0.0.1:{}", daemon.port)])
        .args(["--pid", "1"])
        .output()
        .expect("mapwatch report runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.lines().count() == 1
            && stderr.contains("PID 1 is not recorded"),
        "{stderr}"
    );
}

/// Runs the slowpath fixture once under `daemon`, which must watch it and
/// count it exactly; its PID.
fn run_exactly(daemon: &Daemon) -> u32 {
    let workload = Workload::start(
        &fixture("1.27.3", "slowpath", false),
        &["-calls", CALLS, "-growth", "0"],
    );
    let pid = workload.pid;
    watched(daemon, pid);
    let truth = workload.run_to_end();
    exact(daemon, pid, &truth);
    pid
}

#[test]
fn execs_are_seen_as_they_happen_without_a_scan() {
    // The first scan is at start; the next an hour later: the fixture is
    // found through the exec tracepoint only.
    let daemon = Daemon::start(&[
        "--target",
        "comm=slowpath",
        "--overhead-budget",
        "off",
        "--scan-interval",
        "3600s",
    ]);
    // Past the first scan (at start) before the fixture runs.
    std::thread::sleep(Duration::from_millis(500));
    run_exactly(&daemon);
}

#[test]
fn the_flight_recorder_keeps_the_timeline_and_its_spikes() {
    let daemon = Daemon::start(&[
        "--target",
        "comm=spike",
        "--overhead-budget",
        "off",
        "--scan-interval",
        "100ms",
    ]);
    let workload = Workload::start(&fixture("1.27.3", "spike", false), &[]);
    let pid = workload.pid;
    watched(&daemon, pid);
    let truth = workload.run_to_end();
    let report = recorded(&daemon, pid);
    assert_eq!(report["events_lost"], 0, "{report:#}");
    let spike = burst_spike(&report, "the recording");
    let burst = truth["burst_start_unix"].as_f64().expect("burst start");
    let start = spike["start_unix_seconds"].as_f64().expect("spike start");
    assert!(
        (start - burst).abs() <= 1.0,
        "spike at {start}, burst at {burst}"
    );
    assert_timeline_adds_up(&report, "main.mu");
    assert_eq!(
        report["gc"]["cycles"], truth["gc_cycles"],
        "{:#}",
        report["gc"]
    );
    assert_eq!(
        report["gc"]["gc_pauses"], truth["gc_pauses"],
        "{:#}",
        report["gc"]
    );
    // A window of the steady seconds after the burst: their rows only, and
    // no burst.
    let since = (truth["burst_end_unix"].as_f64().expect("burst end") + 1.5).max(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let ago = format!("{}ms", ((now - since) * 1000.0) as u64);
    let (status, body) = http_answer(daemon.port, &format!("/report.json?pid={pid}&since={ago}"))
        .expect("an answer");
    assert_eq!(status, 200, "{body}");
    let window: serde_json::Value = serde_json::from_str(&body).expect("a JSON report");
    assert_no_other_burst(
        window["spikes"].as_array().expect("spikes"),
        spike["wait_seconds"].as_f64().expect("wait"),
        "the window after the burst",
    );
    let started = window["started_unix_seconds"].as_f64().expect("start");
    let first = window["window"]["from_session_seconds"]
        .as_f64()
        .expect("window start");
    assert!(started + first >= since - 1.0, "window from {first}");
    let rows = window["timeline"].as_array().expect("timeline");
    assert!(!rows.is_empty(), "the steady seconds: {window:#}");
    for row in rows {
        assert!(
            row["second"].as_f64().expect("second") >= first.floor(),
            "{row:#} before the window ({first})"
        );
    }
}

#[test]
fn the_flight_recorder_keeps_the_waits_for_a_cpu() {
    let daemon = Daemon::start(&[
        "--target",
        "comm=starve",
        "--overhead-budget",
        "off",
        "--scan-interval",
        "100ms",
    ]);
    let workload = Workload::start(
        &fixture("1.27.3", "starve", false),
        &["-total", "8s", "-starve-at", "3s", "-starve", "2s"],
    );
    let pid = workload.pid;
    watched(&daemon, pid);
    let truth = workload.run_to_end();
    let report = recorded(&daemon, pid);
    assert_eq!(report["events_lost"], 0, "{report:#}");
    let spike = report["spikes"]
        .as_array()
        .and_then(|s| s.first())
        .unwrap_or_else(|| panic!("no spike: {:#}", report["timeline"]));
    assert_eq!(spike["name"], "main.mu", "{spike:#}");
    assert_eq!(spike["context"], "cpu-starvation", "{spike:#}");
    // At the starved seconds, counted as the attach test counts them (the
    // daemon's own ticks are starved too: a late tick puts a wall-clock
    // instant in an earlier second).
    assert_spike_covers(
        &report,
        spike,
        &truth,
        ("starve_start_unix", "starve_end_unix"),
        "the recording",
    );
    // The recording's waits for a CPU are its seconds': as the kernel
    // counted them (the recording began before the fixture's reading).
    let ours = report["run_queue"]["wait_seconds_total"]
        .as_f64()
        .expect("run-queue wait");
    let kernel = truth["run_delay_seconds"].as_f64().expect("run_delay");
    assert!(
        (ours / kernel - 1.0).abs() <= 0.05,
        "recorded {ours} s waiting for a CPU, the kernel {kernel} s"
    );
}

#[test]
fn the_flight_recorder_keeps_the_runtime_locks() {
    let daemon = Daemon::start(&[
        "--target",
        "comm=rtlock",
        "--probe",
        "rtlocks",
        "--overhead-budget",
        "off",
        "--scan-interval",
        "100ms",
    ]);
    let binary = fixture("1.27.3", "rtlock", false);
    let workload = Workload::start(&binary, &["-seconds", "2s"]);
    let pid = workload.pid;
    watched(&daemon, pid);
    let truth = workload.run_to_end();
    let report = recorded(&daemon, pid);
    assert_eq!(report["events_lost"], 0, "{report:#}");
    let channel = truth["channel"].as_str().expect("channel");
    let channel = u64::from_str_radix(channel.trim_start_matches("0x"), 16).expect("hex");
    let locks = report["locks"].as_array().expect("locks");
    let lock = locks
        .iter()
        .find(|l| {
            let address = l["address"].as_str().unwrap_or_default();
            u64::from_str_radix(address.trim_start_matches("0x"), 16)
                .is_ok_and(|a| (channel..channel + 256).contains(&a))
        })
        .unwrap_or_else(|| panic!("no lock in the hchan at {channel:#x}: {report:#}"));
    assert_eq!(lock["kind"], "runtime", "{lock:#}");
    assert!(lock["contentions"].as_u64().unwrap() > 0, "{lock:#}");
    let heap = nm_address(&binary, "runtime.mheap_");
    let heap = lock_at(&report, heap).unwrap_or_else(|| panic!("no heap lock: {report:#}"));
    assert_eq!(heap["name"], "runtime.mheap_");
    assert_eq!(heap["kind"], "runtime");
}

#[test]
fn exited_targets_leave_after_the_grace_period() {
    let daemon = Daemon::slowpath("1s");
    let pid = run_exactly(&daemon).to_string();
    wait_for(&daemon, "dropping the exited target", |s| {
        sample(s, "mapwatch_target_info", &[("pid", &pid)]).is_none()
    });
}

#[test]
fn bad_input_is_one_clear_line_and_a_failure() {
    let out = mapwatch()
        .args(["daemon", "--target", "etcd", "--metrics", "127.0.0.1:0"])
        .output()
        .expect("mapwatch runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"etcd\" is not a selector") && stderr.contains("pid=N, comm=NAME"),
        "{stderr}"
    );
    // A port in use.
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let out = mapwatch()
        .args(["daemon", "--target", "comm=nothing", "--metrics", &addr])
        .output()
        .expect("mapwatch runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")) && stderr.lines().count() == 1,
        "{stderr}"
    );
    // Out-of-range numbers are refused, not bent.
    for args in [
        ["--max-targets", "0"],
        ["--scan-interval", "1ms"],
        ["--record", "later"],
    ] {
        let out = mapwatch()
            .args(["daemon", "--target", "comm=x", "--metrics", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("mapwatch runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(args[0]),
            "{args:?}: {stderr}"
        );
    }
}
