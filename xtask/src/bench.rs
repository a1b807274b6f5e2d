//! `cargo xtask bench`: the per-hit cost of mapwatch's probes at the naive
//! site (a function's entry; the instruction right after a CAS) versus at
//! the site chosen by decoding, on this machine.
//!
//! Each fixture times its own loop, in which every call hits the probe once
//! (see fixtures/go/slowpath and casloop). The loop runs unprobed, with the
//! naive site (`--probe-site entry`) and the chosen one; the extra time per
//! call is the cost of one hit. Ratios come from one run.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{fixtures, setup};

const CALLS: &str = "300000";
const ROUNDS: usize = 5;

/// One benchmark: a fixture that times its own calls, and the ways to probe
/// it (label, mapwatch arguments; `None` runs it unprobed). The row labelled
/// `auto` is the reference for the ratios.
struct Case {
    title: &'static str,
    fixture: &'static str,
    fixture_args: &'static [&'static str],
    modes: &'static [(&'static str, Option<&'static [&'static str]>)],
    /// The ground-truth field holding ns per call.
    ns_field: &'static str,
}

const CASES: &[Case] = &[
    Case {
        title: "lock slow-path probe (every Lock enters lockSlow once)",
        fixture: "slowpath",
        fixture_args: &["-calls", CALLS, "-growth", "0"],
        modes: &[
            ("unprobed", None),
            ("entry", Some(&["--probe-site", "entry", "--no-wait-times"])),
            ("auto", Some(&["--no-wait-times"])),
            ("auto+ret", Some(&[])),
        ],
        ns_field: "loop_ns_per_call",
    },
    Case {
        title: "CAS outcome probe (one uncontended CompareAndSwap per call)",
        fixture: "casloop",
        fixture_args: &["-workers", "1", "-calls", CALLS, "-yield-every", "0"],
        modes: &[
            ("unprobed", None),
            (
                "entry",
                Some(&[
                    "--cas",
                    "main.casIncrement",
                    "--no-builtin-cas",
                    "--probe-site",
                    "entry",
                ]),
            ),
            (
                "auto",
                Some(&["--cas", "main.casIncrement", "--no-builtin-cas"]),
            ),
        ],
        ns_field: "ns_per_call",
    },
];

/// Runs the benchmarks with the newest Go version and prints a table each.
pub fn run(root: &Path) -> Result<()> {
    let version = setup::GO_VERSIONS.last().context("no Go versions")?;
    let mapwatch = root.join("target/release/mapwatch");
    for case in CASES {
        let built = fixtures::build(root, version, case.fixture)?;
        let workload = built.first().context("fixture not built")?;
        let mut medians = Vec::new();
        for &(label, args) in case.modes {
            let mut samples = Vec::new();
            for _ in 0..ROUNDS {
                samples.push(one_run(workload, &mapwatch, case, args)?);
            }
            samples.sort_by(f64::total_cmp);
            let median = samples[ROUNDS / 2];
            eprintln!("xtask: {label}: {samples:.1?} ns/call");
            medians.push((label, median));
        }
        let base = medians[0].1;
        println!();
        println!(
            "{}, Go {version}, {CALLS} calls, median of {ROUNDS} runs",
            case.title
        );
        println!(
            "{:<10} {:>12} {:>16} {:>10}",
            "site", "ns/call", "ns/hit (probe)", "vs auto"
        );
        let auto_cost = medians
            .iter()
            .find(|(label, _)| *label == "auto")
            .map_or(f64::NAN, |(_, ns)| ns - base);
        for (label, ns) in &medians {
            let cost = ns - base;
            let ratio = if *label == "unprobed" {
                String::from("-")
            } else {
                format!("{:.1}x", cost / auto_cost)
            };
            println!("{label:<10} {ns:>12.1} {cost:>16.1} {ratio:>10}");
        }
    }
    Ok(())
}

/// One run of the fixture, optionally under mapwatch; returns ns per call.
fn one_run(workload: &Path, mapwatch: &Path, case: &Case, args: Option<&[&str]>) -> Result<f64> {
    let mut target = Command::new(workload)
        .arg("-wait-stdin")
        .args(case.fixture_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", workload.display()))?;
    let mut line = String::new();
    BufReader::new(target.stderr.take().context("stderr")?).read_line(&mut line)?;
    let tracer = match args {
        None => None,
        Some(args) => {
            let mut tracer = Command::new(mapwatch)
                .args([
                    "attach",
                    "--pid",
                    &target.id().to_string(),
                    "--format",
                    "json",
                ])
                .args(args)
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
    truth[case.ns_field].as_f64().context("ns per call")
}
