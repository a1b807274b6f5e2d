//! Helpers for integration tests that run the real thing: a Go fixture
//! process, and the `mapwatch` binary attached to it as root.
#![allow(dead_code)]

pub mod prom;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Go versions the fixtures must be built with (by `cargo xtask test`).
pub const REQUIRED_GO_VERSIONS: &[&str] = &["1.23.9", "1.27.3"];

/// Where `cargo xtask fixtures` put the fixtures.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("MAPWATCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"))
}

/// Every Go version fixtures were built with; panics if a required one is
/// missing, because then the tests would prove nothing.
pub fn go_versions() -> Vec<String> {
    let dir = fixtures_dir();
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "no fixtures in {} ({e}): run `cargo xtask test`",
                dir.display()
            )
        })
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .strip_prefix("go")
                .map(String::from)
        })
        .collect();
    versions.sort();
    for required in REQUIRED_GO_VERSIONS {
        assert!(
            versions.iter().any(|v| v == required),
            "fixtures for Go {required} missing in {}: run `cargo xtask test`",
            dir.display()
        );
    }
    versions
}

/// Path of a fixture binary.
pub fn fixture(go_version: &str, name: &str, stripped: bool) -> PathBuf {
    let file = if stripped {
        format!("{name}.stripped")
    } else {
        name.to_string()
    };
    let path = fixtures_dir().join(format!("go{go_version}")).join(file);
    assert!(
        path.is_file(),
        "fixture {} missing: run `cargo xtask test`",
        path.display()
    );
    path
}

/// The stripped fixture's twin: same flags length, so same data layout, but
/// with a symbol table (see xtask's fixtures.rs).
pub fn symtab_twin(go_version: &str, name: &str) -> PathBuf {
    let path = fixtures_dir()
        .join(format!("go{go_version}"))
        .join(format!("{name}.symtab"));
    assert!(
        path.is_file(),
        "fixture {} missing: run `cargo xtask test`",
        path.display()
    );
    path
}

/// Address of a symbol per `nm` (an oracle independent of mapwatch).
pub fn nm_address(binary: &Path, symbol: &str) -> u64 {
    let out = Command::new("nm").arg(binary).output().expect("nm runs");
    assert!(out.status.success(), "nm {} failed", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut f = line.split_whitespace();
            let addr = f.next()?;
            let _kind = f.next()?;
            (f.next()? == symbol).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .unwrap_or_else(|| panic!("{symbol} not in {}", binary.display()))
}

/// A fixture process waiting on stdin for its start line.
pub struct Workload {
    pub child: Child,
    pub pid: u32,
}

impl Workload {
    /// Starts a fixture with `-wait-stdin` and waits until it is ready.
    pub fn start(binary: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .arg("-wait-stdin")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        err.read_line(&mut line).expect("fixture stderr");
        assert!(line.starts_with("ready"), "fixture said {line:?}");
        let pid = child.id();
        Self { child, pid }
    }

    /// Sends the start line (once).
    pub fn go(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            stdin.write_all(b"go\n").expect("start line");
        }
    }

    /// Lets the workload run (unless it was let go already) and returns its
    /// ground truth.
    pub fn run_to_end(mut self) -> Value {
        self.go();
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut stdout)
            .expect("fixture stdout");
        let status = self.child.wait().expect("fixture runs");
        assert!(status.success(), "fixture failed: {status:?}");
        serde_json::from_str(&stdout).expect("fixture prints JSON")
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `mapwatch attach`.
pub struct Tracer {
    pub child: Child,
    stderr: BufReader<ChildStderr>,
    pub stderr_text: String,
}

/// Path of the `mapwatch` binary under test.
pub fn mapwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mapwatch"))
}

impl Tracer {
    /// Starts `mapwatch attach --pid PID --format json ARGS` and waits until
    /// its probes are attached. Unless `ARGS` set a budget, the governor is
    /// off (`--overhead-budget off`): tests of exact counts need every hit.
    pub fn attach(pid: u32, args: &[&str]) -> Self {
        let governor: &[&str] = if args.contains(&"--overhead-budget") {
            &[]
        } else {
            &["--overhead-budget", "off"]
        };
        let mut child = mapwatch()
            .args(["attach", "--pid", &pid.to_string(), "--format", "json"])
            .args(governor)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mapwatch starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut stderr_text = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).expect("mapwatch stderr");
            stderr_text.push_str(&line);
            if n == 0 {
                let status = child.wait().expect("wait");
                panic!("mapwatch exited ({status}) before attaching:\n{stderr_text}");
            }
            if line.contains("attached") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mapwatch did not attach:\n{stderr_text}"
            );
        }
        Self {
            child,
            stderr,
            stderr_text,
        }
    }

    /// Waits for mapwatch to finish; asserts exit status 0 and returns the
    /// JSON report.
    pub fn report(mut self) -> Value {
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut stdout)
            .expect("mapwatch stdout");
        let _ = self.stderr.read_to_string(&mut self.stderr_text);
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "mapwatch failed ({status}):\n{}",
            self.stderr_text
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "mapwatch printed no JSON ({e}):\n{stdout}\n{}",
                self.stderr_text
            )
        })
    }
}

/// The text report of `mapwatch attach` (governor off, no live view) on
/// `workload`, run to its end.
pub fn text_report(workload: Workload) -> String {
    let out = mapwatch()
        .args(["attach", "--pid", &workload.pid.to_string()])
        .args(["--overhead-budget", "off", "--live", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mapwatch starts");
    std::thread::sleep(Duration::from_secs(1));
    workload.run_to_end();
    let out = out.wait_with_output().expect("mapwatch ends");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The worst spike of `report`: on lock `name`, mostly from a call site
/// starting with `site`, with context `context` (JSON: a string or null).
pub fn worst_spike<'a>(
    report: &'a Value,
    name: &str,
    site: &str,
    context: &Value,
    what: &str,
) -> &'a Value {
    let spike = report["spikes"]
        .as_array()
        .and_then(|s| s.first())
        .unwrap_or_else(|| panic!("{what}: no spike: {:#}", report["timeline"]));
    assert_eq!(spike["name"], name, "{what}: {spike:#}");
    let top = spike["top_wait_site"].as_str().expect("a site");
    assert!(top.starts_with(site), "{what}: {top}");
    assert_eq!(&spike["context"], context, "{what}: {spike:#}");
    spike
}

/// Asserts that `spike` covers what the fixture's clock says happened from
/// `truth[start_key]` to `truth[end_key]` (Unix seconds): it starts within
/// ±1 s of it and ends from 1 s before its end to 2 s after (on a 2-CPU
/// host the seconds right after a burst can spike too, the burst's waiters
/// and a starved steady holder draining: a CI run once had two of them);
/// returns those instants in seconds of the session.
pub fn assert_spike_covers(
    report: &Value,
    spike: &Value,
    truth: &Value,
    (start_key, end_key): (&str, &str),
    what: &str,
) -> (f64, f64) {
    let started = report["started_unix_seconds"].as_f64().expect("start");
    let from = truth[start_key].as_f64().expect(start_key) - started;
    let to = truth[end_key].as_f64().expect(end_key) - started;
    let (start, end) = (
        spike["start_seconds"].as_f64().expect("start"),
        spike["end_seconds"].as_f64().expect("end"),
    );
    assert!(
        (start - from.floor()).abs() <= 1.0 && (-1.0..=2.0).contains(&(end - to.ceil())),
        "{what}: spike {start}..{end}, {start_key}..{end_key} {from:.2}..{to:.2}; its lock's \
         seconds (second, wait, p99; the run queue's wait): {}",
        seconds_of(report, &spike["lock"])
    );
    (from, to)
}

/// The timeline of `lock` in `report`, one `second wait p99` per second,
/// each with the run queue's wait of that second: for failure messages.
fn seconds_of(report: &Value, lock: &Value) -> String {
    let run_queue: std::collections::BTreeMap<u64, f64> = report["run_queue_timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["second"].as_u64()?, r["wait_seconds_total"].as_f64()?)))
        .collect();
    report["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| &r["lock"] == lock)
        .map(|r| {
            let second = r["second"].as_u64().unwrap_or(u64::MAX);
            format!(
                "{second} {:.4} {:.4} ({:.3})",
                r["wait_seconds"].as_f64().unwrap_or(f64::NAN),
                r["p99_seconds"].as_f64().unwrap_or(f64::NAN),
                run_queue.get(&second).copied().unwrap_or(0.0)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lock entry of a report with this name, if any.
pub fn lock_named<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["locks"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
}

/// The spike fixture's burst in `report`: its worst spike, on `main.mu`,
/// from `main.burst`, and held most by `main.burst`.
pub fn burst_spike<'a>(report: &'a Value, what: &str) -> &'a Value {
    let spikes = report["spikes"].as_array().expect("spikes");
    let spike = spikes
        .first()
        .unwrap_or_else(|| panic!("{what}: no spike: {:#}", report["timeline"]));
    assert_eq!(spike["name"], "main.mu", "{what}: {spike:#}");
    let site = spike["top_wait_site"].as_str().expect("a site");
    assert!(site.starts_with("main.burst"), "{what}: {site}");
    // The burst's goroutines held the lock most in its seconds, too.
    let holder = spike["top_holder_site"].as_str().expect("a holder site");
    assert!(holder.starts_with("main.burst"), "{what}: held by {holder}");
    assert_no_other_burst(
        &spikes[1..],
        spike["wait_seconds"].as_f64().expect("wait"),
        what,
    );
    spike
}

/// Asserts that none of `spikes` is a burst like one that waited
/// `burst_wait` seconds. A 2-CPU host running the tests can starve a steady
/// holder now and then: such a second may spike too, but it waits a small
/// part of the burst's, and never from the burst's site.
pub fn assert_no_other_burst(spikes: &[Value], burst_wait: f64, what: &str) {
    for other in spikes {
        assert!(
            other["wait_seconds"].as_f64().expect("wait") * 20.0 < burst_wait
                && !other["top_wait_site"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("main.burst")),
            "{what}: {spikes:#?}"
        );
    }
}

/// Asserts that the timeline rows of lock `name` add up to its contentions.
pub fn assert_timeline_adds_up(report: &Value, name: &str) {
    let lock = lock_named(report, name).unwrap_or_else(|| panic!("no lock {name}"));
    let rows: u64 = report["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|r| r["name"] == name)
        .map(|r| r["contentions"].as_u64().expect("contentions"))
        .sum();
    assert_eq!(
        Some(rows),
        lock["contentions"].as_u64(),
        "{name}: {:#}",
        report["timeline"]
    );
}

/// The lock entry of a report at this address, if any.
pub fn lock_at(report: &Value, address: u64) -> Option<&Value> {
    let hex = format!("{address:#x}");
    report["locks"]
        .as_array()?
        .iter()
        .find(|l| l["address"] == hex.as_str())
}

/// Asserts the kernel dropped nothing and every hit reached the report.
pub fn assert_nothing_lost(report: &Value) {
    assert_eq!(report["events_lost"], 0, "events lost: {report:#}");
    let counters = &report["probe_counters"];
    assert_eq!(counters["output_errors"], 0, "{report:#}");
    assert_eq!(counters["unknown_site"], 0, "{report:#}");
    assert_eq!(counters["run_queue_threads_full"], 0, "{report:#}");
    // Each lock event is an entry (a contention) or a return (an
    // acquisition with its wait).
    // Waits for other threads are reported apart from the locks.
    let reported: u64 = report["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .chain(report["signal_waits"].as_array().expect("signal_waits"))
        .map(|l| {
            l["contentions"].as_u64().expect("contentions")
                + l["acquisitions"].as_u64().expect("acquisitions")
                + l["blocked_parks"].as_u64().unwrap_or(0)
        })
        .sum();
    assert_eq!(
        Some(reported),
        counters["hits"].as_u64(),
        "every kernel-side hit must reach the report: {report:#}"
    );
}

/// The first of a call site's frames (`frames`, innermost first) whose
/// function `own` accepts, or "".
pub fn first_frame(site: &Value, own: impl Fn(&str) -> bool) -> String {
    site["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| f.as_str().expect("frame").to_string())
        .find(|f| own(f))
        .unwrap_or_default()
}
