//! `cargo xtask bench`: the per-hit cost of mapwatch's lock probe at the
//! function entry versus at the site chosen by decoding, on this machine.
//!
//! The slowpath fixture calls `Mutex.Lock` in a loop where every call enters
//! the slow path once (see fixtures/go/slowpath); it times its own loop. The
//! loop runs unprobed, with the probe at the entry, and at the chosen site;
//! the extra time per call is the cost of one hit. Ratios come from one run.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{fixtures, setup};

const CALLS: &str = "300000";
const ROUNDS: usize = 5;

/// Runs the benchmark with the newest Go version and prints a table.
pub fn run(root: &Path) -> Result<()> {
    let version = setup::GO_VERSIONS.last().context("no Go versions")?;
    let built = fixtures::build(root, version, "slowpath")?;
    let workload = built.first().context("fixture not built")?;
    let mapwatch = root.join("target/release/mapwatch");

    let modes: [(&str, Option<&str>); 3] = [
        ("unprobed", None),
        ("entry", Some("entry")),
        ("auto", Some("auto")),
    ];
    let mut medians = Vec::new();
    for (label, site) in modes {
        let mut samples = Vec::new();
        for _ in 0..ROUNDS {
            samples.push(one_run(workload, &mapwatch, site)?);
        }
        samples.sort_by(f64::total_cmp);
        let median = samples[ROUNDS / 2];
        eprintln!("xtask: {label}: {samples:.1?} ns/call");
        medians.push((label, median));
    }
    let base = medians[0].1;
    println!("lock slow-path probe cost, Go {version}, {CALLS} calls, median of {ROUNDS} runs");
    println!(
        "{:<10} {:>12} {:>16} {:>10}",
        "site", "ns/call", "ns/hit (probe)", "vs auto"
    );
    let auto_cost = medians[2].1 - base;
    for (label, ns) in &medians {
        let cost = ns - base;
        let ratio = if *label == "unprobed" {
            String::from("-")
        } else {
            format!("{:.1}x", cost / auto_cost)
        };
        println!("{label:<10} {ns:>12.1} {cost:>16.1} {ratio:>10}");
    }
    Ok(())
}

/// One run of the fixture, optionally under mapwatch; returns ns per call.
fn one_run(workload: &Path, mapwatch: &Path, site: Option<&str>) -> Result<f64> {
    let mut target = Command::new(workload)
        .args(["-wait-stdin", "-calls", CALLS, "-growth", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", workload.display()))?;
    let mut line = String::new();
    BufReader::new(target.stderr.take().context("stderr")?).read_line(&mut line)?;
    let tracer = match site {
        None => None,
        Some(site) => {
            let mut tracer = Command::new(mapwatch)
                .args([
                    "attach",
                    "--pid",
                    &target.id().to_string(),
                    "--format",
                    "json",
                    "--probe-site",
                    site,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {}", mapwatch.display()))?;
            let mut err = BufReader::new(tracer.stderr.take().context("stderr")?);
            loop {
                line.clear();
                if err.read_line(&mut line)? == 0 {
                    bail!("mapwatch exited before attaching");
                }
                if line.contains("attached") {
                    break;
                }
            }
            Some(tracer)
        }
    };
    target.stdin.take().context("stdin")?.write_all(b"go\n")?;
    let mut stdout = String::new();
    target
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    if !target.wait()?.success() {
        bail!("the workload failed");
    }
    let truth: serde_json::Value = serde_json::from_str(&stdout).context("ground truth")?;
    if let Some(tracer) = tracer {
        let out = tracer.wait_with_output()?;
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("mapwatch report")?;
        if report["events_lost"] != 0 {
            bail!("mapwatch lost events: {}", report["events_lost"]);
        }
    }
    truth["loop_ns_per_call"]
        .as_f64()
        .context("loop_ns_per_call")
}
