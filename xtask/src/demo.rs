//! `cargo xtask demo`: starts the bundled contended workload, attaches
//! mapwatch to it, lets the workload run, and shows mapwatch's report.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{fixtures, setup};

/// Runs the demo with the newest Go version's fixture.
pub fn run(root: &Path, format: &str) -> Result<()> {
    let version = setup::GO_VERSIONS.last().context("no Go versions")?;
    let built = fixtures::build(root, version, "contend")?;
    let workload = built.first().context("fixture not built")?;

    let mut target = Command::new(workload)
        .args(["-wait-stdin", "-iterations", "50000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", workload.display()))?;
    let pid = target.id();
    let mut target_err = BufReader::new(target.stderr.take().context("stderr")?);
    let mut line = String::new();
    target_err.read_line(&mut line)?;
    if !line.starts_with("ready") {
        bail!("the workload did not start: {line}");
    }
    eprintln!(
        "xtask: workload {} (Go {version}) is PID {pid}",
        workload.display()
    );

    let mapwatch = root.join("target/release/mapwatch");
    let mut tracer = Command::new(&mapwatch)
        .args(["attach", "--pid", &pid.to_string(), "--format", format])
        // Runtime maps too, with the keys of the workload's two maps; the
        // live figures as plain lines each second, then the report.
        .args(["--probe", "locks,cas,syncmap,maps"])
        .args(["--map", "main.syncMap", "--map", "main.plainMap"])
        .args(["--live", "plain"])
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", mapwatch.display()))?;
    let mut tracer_err = BufReader::new(tracer.stderr.take().context("stderr")?);
    loop {
        line.clear();
        if tracer_err.read_line(&mut line)? == 0 {
            // mapwatch failed before attaching; its error is in `line`s shown.
            let _ = target.kill();
            bail!("mapwatch exited before attaching: {}", tracer.wait()?);
        }
        eprint!("{line}");
        if line.contains("attached") {
            break;
        }
    }
    // Forward the rest of mapwatch's stderr as it comes.
    std::thread::spawn(move || {
        for line in tracer_err.lines().map_while(Result::ok) {
            eprintln!("{line}");
        }
    });

    target
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"go\n")
        .context("starting the workload")?;
    let output = target.wait_with_output()?;
    if !output.status.success() {
        bail!("the workload failed: {}", output.status);
    }
    let truth: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the workload's ground truth")?;
    eprintln!(
        "xtask: workload done in {:.2} s; ground truth: main.hotMu locked {} times by {} goroutines, main.coldMu {} times by one",
        truth["seconds"].as_f64().unwrap_or(0.0),
        truth["locks"]["main.hotMu"]["lock_calls"],
        truth["workers"],
        truth["locks"]["main.coldMu"]["lock_calls"],
    );
    let status = tracer.wait()?;
    if !status.success() {
        bail!("mapwatch failed: {status}");
    }
    Ok(())
}
