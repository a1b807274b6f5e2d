//! The live views: the full-screen view, run in a real terminal (tmux) and
//! read back from the screen, and the plain text printed when stdout is not
//! a terminal.

mod common;

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// A detached tmux session, killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(name: String, command: &str) -> Self {
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "160", "-y", "48"])
            .arg(command)
            .status()
            .expect("tmux runs (installed by `cargo xtask setup`)");
        assert!(status.success(), "tmux new-session failed");
        // Keep the pane after mapwatch exits, to read its report.
        let _ = Command::new("tmux")
            .args(["set-option", "-t", &name, "remain-on-exit", "on"])
            .status();
        Self { name }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-S", "-200", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the screen shows every one of `texts`.
    fn wait_for(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {texts:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn the_full_screen_view_shows_locks_hot_keys_and_heatmaps_and_quits_on_q() {
    let workload = Workload::start(
        &fixture("1.27.3", "contend", false),
        &["-iterations", "5000000"],
    );
    workload
        .child
        .stdin
        .as_ref()
        .map(|mut stdin| stdin.write_all(b"go\n"))
        .expect("stdin")
        .expect("start line");
    // The views are under test, not the governor: every second in full
    // (this fixture does nothing but lock and use maps; governed, its probes
    // would be on one second in 64).
    let command = format!(
        "{} attach --pid {} --overhead-budget off --probe locks,cas,syncmap,maps --map main.syncMap --map main.plainMap",
        env!("CARGO_BIN_EXE_mapwatch"),
        workload.pid
    );
    let tmux = Tmux::start(format!("mapwatch-live-{}", workload.pid), &command);
    // View 1: locks, refreshed every second.
    let screen = tmux.wait_for(&["1 Locks", "main.hotMu", "CONTENTIONS"]);
    assert!(screen.contains("attached"), "{screen}");
    // View 2: the hot keys, keys in clear on the operator's screen.
    tmux.keys("2");
    tmux.wait_for(&["sync.Map main.syncMap", "key-0", "map main.plainMap"]);
    // View 4: the heatmaps, paged with the arrow keys.
    tmux.keys("4");
    tmux.wait_for(&["Heatmap 1 of", "Lock wait time"]);
    tmux.keys("Right");
    tmux.wait_for(&["Heatmap 2 of"]);
    // q stops the session; the report follows on the normal screen.
    tmux.keys("q");
    let screen = tmux.wait_for(&["stopped by quit", "LOCK CONTENTION", "MAPS"]);
    assert!(screen.contains("main.hotMu"), "{screen}");
}

#[test]
fn without_a_terminal_the_live_view_is_plain_text_each_second() {
    let workload = Workload::start(
        &fixture("1.27.3", "contend", false),
        &["-iterations", "5000000"],
    );
    let mut tracer = mapwatch()
        .args([
            "attach",
            "--pid",
            &workload.pid.to_string(),
            "--duration",
            "3s",
            // The view under test, not the governor (see above).
            "--overhead-budget",
            "off",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mapwatch starts");
    // The fixture starts once every probe is attached: its map workers
    // finish in about a second.
    let stderr = tracer.stderr.take().expect("stderr");
    let (attached_tx, attached) = std::sync::mpsc::channel();
    let stderr_reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.contains("attached") {
                let _ = attached_tx.send(());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    if attached.recv_timeout(Duration::from_secs(30)).is_err() {
        panic!(
            "mapwatch never attached: {}",
            stderr_reader.join().unwrap_or_default()
        );
    }
    workload
        .child
        .stdin
        .as_ref()
        .map(|mut stdin| stdin.write_all(b"go\n"))
        .expect("stdin")
        .expect("start line");
    let stdout = tracer.stdout.take().expect("stdout");
    let output = std::io::read_to_string(stdout).expect("mapwatch stdout");
    assert!(tracer.wait().expect("wait").success());
    let ticks = output.lines().filter(|l| l.starts_with('[')).count();
    assert!(ticks >= 2, "{output}");
    assert!(output.contains("locks: main.hotMu"), "{output}");
    assert!(output.contains("hot keys of main.syncMap"), "{output}");
    // Then the final report.
    assert!(output.contains("LOCK CONTENTION"), "{output}");
    drop(workload);
}
