//! `mapwatch daemon` on real processes: it follows a fixture selected by
//! `comm=` through two restarts and then two replicas at once; each
//! incarnation's counts in `/metrics` (by `pid`) and in a real Prometheus
//! scraping the daemon equal its own ground truth with zero events lost,
//! and once they are gone no probe remains.
//! Bad input is one clear line and a non-zero exit.

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
        Self { child, port }
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

/// Asserts that `pid`'s final figures equal its ground truth.
fn exact(daemon: &Daemon, pid: u32, truth: &serde_json::Value) {
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
    // The first run, then two restarts: each a new PID.
    for _ in 0..3 {
        let workload = Workload::start(&binary, &args);
        let pid = workload.pid;
        watched(&daemon, pid);
        let truth = workload.run_to_end();
        exact(&daemon, pid, &truth);
        pids.push(pid);
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
    // And no probe remains: every link and program is closed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.probe_fds() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} probe fds still open",
            daemon.probe_fds()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exited_targets_leave_after_the_grace_period() {
    let daemon = Daemon::slowpath("1s");
    let workload = Workload::start(
        &fixture("1.27.3", "slowpath", false),
        &["-calls", CALLS, "-growth", "0"],
    );
    let pid = workload.pid;
    watched(&daemon, pid);
    let truth = workload.run_to_end();
    exact(&daemon, pid, &truth);
    let pid = pid.to_string();
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
}
