//! `cargo xtask bench`: the per-hit cost of mapwatch's probes at the naive
//! site (a function's entry; the instruction right after a CAS) versus at
//! the site chosen by decoding, on this machine.
//!
//! Each fixture times its own loop, in which every call hits the probe once
//! (see fixtures/go/slowpath, casloop and hotkeys). The loop runs unprobed,
//! with the naive site (`--probe-site entry`) and the chosen one; the extra
//! time per call is the cost of one hit. The map probe is also compared with
//! bpftrace probing the same function by symbol and counting its keys in a
//! BPF map. Ratios come from one run.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{fixtures, setup};

const CALLS: &str = "300000";
const ROUNDS: usize = 5;

/// How a benchmark run is probed.
#[derive(Clone, Copy)]
enum Probe {
    /// Not at all.
    None,
    /// By mapwatch with these arguments.
    Mapwatch(&'static [&'static str]),
    /// By bpftrace running this program; `BIN` stands for the fixture.
    Bpftrace(&'static str),
}

use Probe::{Bpftrace, Mapwatch};

/// One benchmark: a fixture that times its own calls, and the ways to probe
/// it (label, mapwatch arguments; `None` runs it unprobed). The row labelled
/// `auto` is the reference for the ratios.
struct Case {
    title: &'static str,
    fixture: &'static str,
    fixture_args: &'static [&'static str],
    modes: &'static [(&'static str, Probe)],
    /// The ground-truth field holding ns per call.
    ns_field: &'static str,
}

const CASES: &[Case] = &[
    Case {
        title: "lock slow-path probe (every Lock enters lockSlow once)",
        fixture: "slowpath",
        fixture_args: &["-calls", CALLS, "-growth", "0"],
        modes: &[
            ("unprobed", Probe::None),
            // Counts per lock; bpftrace cannot time Go waits (no
            // uretprobes on Go), so this is less work than mapwatch's.
            (
                "bpftrace",
                Bpftrace(
                    r#"BEGIN { printf("ready\n"); } uprobe:BIN:"internal/sync.(*Mutex).lockSlow" { @[reg("ax")] = count(); }"#,
                ),
            ),
            (
                "entry",
                Mapwatch(&["--probe-site", "entry", "--no-wait-times"]),
            ),
            ("auto", Mapwatch(&["--no-wait-times"])),
            // Wait times from the single-stepped RETs.
            ("entry+ret", Mapwatch(&["--probe-site", "entry"])),
            // Wait times from the emulated exit edges.
            ("auto+wait", Mapwatch(&[])),
        ],
        ns_field: "loop_ns_per_call",
    },
    Case {
        title: "CAS outcome probe (one uncontended CompareAndSwap per call)",
        fixture: "casloop",
        fixture_args: &["-workers", "1", "-calls", CALLS, "-yield-every", "0"],
        modes: &[
            ("unprobed", Probe::None),
            (
                "bpftrace",
                Bpftrace(
                    r#"BEGIN { printf("ready\n"); } uprobe:BIN:main.casIncrement { @ = count(); }"#,
                ),
            ),
            (
                "entry",
                Mapwatch(&[
                    "--cas",
                    "main.casIncrement",
                    "--no-builtin-cas",
                    "--probe-site",
                    "entry",
                ]),
            ),
            (
                "auto",
                Mapwatch(&["--cas", "main.casIncrement", "--no-builtin-cas"]),
            ),
        ],
        ns_field: "ns_per_call",
    },
    Case {
        title: "map probe (one string-key load of main.hotMap per call, key decoded)",
        fixture: "hotkeys",
        fixture_args: &["-mode", "bench", "-ops", CALLS],
        modes: &[
            ("unprobed", Probe::None),
            (
                "bpftrace",
                Bpftrace(
                    r#"BEGIN { printf("ready\n"); } uprobe:BIN:runtime.mapaccess2_faststr { @[str(reg("cx"), reg("di"))] = count(); }"#,
                ),
            ),
            (
                "entry",
                Mapwatch(&[
                    "--probe",
                    "maps",
                    "--map",
                    "main.hotMap",
                    "--probe-site",
                    "entry",
                ]),
            ),
            (
                "auto",
                Mapwatch(&["--probe", "maps", "--map", "main.hotMap"]),
            ),
        ],
        ns_field: "ns_per_op",
    },
    Case {
        title: "sync.Map probe (one sync.Map.Load of a string key per call, key decoded)",
        fixture: "hotkeys",
        fixture_args: &["-mode", "bench-sync", "-ops", CALLS],
        modes: &[
            ("unprobed", Probe::None),
            // Counts per interface value (type and data words): less work
            // than decoding the key, as mapwatch does.
            (
                "bpftrace",
                Bpftrace(
                    r#"BEGIN { printf("ready\n"); } uprobe:BIN:"internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).Load" { @[reg("bx"), reg("cx")] = count(); }"#,
                ),
            ),
            (
                "entry",
                Mapwatch(&["--map", "main.hotSync", "--probe-site", "entry"]),
            ),
            ("auto", Mapwatch(&["--map", "main.hotSync"])),
        ],
        ns_field: "ns_per_op",
    },
];

/// Runs the benchmarks with the newest Go version and prints a table each.
pub fn run(root: &Path, only: Option<&str>) -> Result<()> {
    let version = setup::GO_VERSIONS.last().context("no Go versions")?;
    let mapwatch = root.join("target/release/mapwatch");
    for case in CASES
        .iter()
        .filter(|case| only.is_none_or(|name| name == case.fixture))
    {
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
        let cost_of = |wanted: &str| {
            medians
                .iter()
                .find(|(label, _)| *label == wanted)
                .map(|(_, ns)| ns - base)
        };
        let auto_cost = cost_of("auto").unwrap_or(f64::NAN);
        let bpftrace_cost = cost_of("bpftrace");
        println!();
        println!(
            "{}, Go {version}, {CALLS} calls, median of {ROUNDS} runs",
            case.title
        );
        println!(
            "{:<10} {:>12} {:>16} {:>10} {:>12}",
            "site", "ns/call", "ns/hit (probe)", "vs auto", "vs bpftrace"
        );
        for (label, ns) in &medians {
            let cost = ns - base;
            let ratio = |of: Option<f64>| match of {
                Some(of) if *label != "unprobed" => format!("{:.3}", cost / of),
                _ => String::from("-"),
            };
            println!(
                "{label:<10} {ns:>12.1} {cost:>16.1} {:>10} {:>12}",
                ratio(Some(auto_cost)),
                ratio(bpftrace_cost)
            );
        }
    }
    Ok(())
}

/// One run of the fixture, optionally under mapwatch; returns ns per call.
fn one_run(workload: &Path, mapwatch: &Path, case: &Case, args: Probe) -> Result<f64> {
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
        Probe::None => None,
        Bpftrace(program) => {
            let program = program.replace("BIN", &workload.display().to_string());
            let mut tracer = Command::new("bpftrace")
                .args(["-p", &target.id().to_string(), "-e", &program])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting bpftrace (installed by `cargo xtask setup`)")?;
            let mut out = BufReader::new(tracer.stdout.take().context("stdout")?);
            loop {
                line.clear();
                if out.read_line(&mut line)? == 0 {
                    bail!("bpftrace exited before attaching");
                }
                // BEGIN runs once every probe is attached.
                if line.trim() == "ready" {
                    break;
                }
            }
            // bpftrace exits with the process (-p) and prints its map.
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            Some((tracer, false))
        }
        Mapwatch(args) => {
            let mut tracer = Command::new(mapwatch)
                .args([
                    "attach",
                    "--pid",
                    &target.id().to_string(),
                    "--format",
                    "json",
                    // Every hit, at any cost: what one costs is measured.
                    "--overhead-budget",
                    "off",
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
            Some((tracer, true))
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
    if let Some((tracer, mapwatch)) = tracer {
        let out = tracer.wait_with_output()?;
        if !mapwatch {
            return truth[case.ns_field].as_f64().context("ns per call");
        }
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("mapwatch report")?;
        if report["events_lost"] != 0 {
            bail!("mapwatch lost events: {}", report["events_lost"]);
        }
    }
    truth[case.ns_field].as_f64().context("ns per call")
}
