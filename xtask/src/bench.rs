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
//!
//! `cargo xtask bench overhead` first runs the server fixture
//! (fixtures/go/server) and Debian's etcd under load generators of the
//! project's own and prints their throughput unprobed and under each probe
//! set, with the governor off and at its default budget.
//!
//! `cargo xtask bench daemon` (also part of the whole run) measures one
//! daemon watching fifty processes, and its flight recorder (see
//! `scale.rs`).

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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

/// Runs the benchmarks with the newest Go version and prints a table each:
/// `only` = `overhead` (or nothing) runs the server fixture's and etcd's
/// throughput tables and then every per-hit table; `server` or `etcd` runs
/// that throughput table; a fixture's name runs its per-hit tables.
pub fn run(root: &Path, only: Option<&str>) -> Result<()> {
    let version = setup::GO_VERSIONS.last().context("no Go versions")?;
    let mapwatch = root.join("target/release/mapwatch");
    if only.is_none_or(|name| name == "overhead" || name == "server") {
        server_throughput(root, version, &mapwatch)?;
    }
    if only.is_none_or(|name| name == "overhead" || name == "etcd") {
        etcd_throughput(root, version, &mapwatch)?;
    }
    if only.is_none_or(|name| name == "daemon") {
        crate::scale::run(root, version, &mapwatch)?;
    }
    if matches!(only, Some("server" | "etcd" | "daemon")) {
        return Ok(());
    }
    let per_hit = |case: &&Case| only.is_none_or(|name| name == "overhead" || name == case.fixture);
    for case in CASES.iter().filter(per_hit) {
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
            // Every hit, at any cost: what one costs is measured.
            let args = [&["--overhead-budget", "off"], args].concat();
            let tracer = attach_mapwatch(mapwatch, target.id(), &args)?;
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

/// Seconds of load per run of the server benchmark, counted after a
/// warm-up: mapwatch probes everything for its first second, until the
/// governor has an estimate, and windows take a while to settle.
const LOAD_SECONDS: &str = "6";
const WARMUP_SECONDS: &str = "3";

/// Runs of each service mode; the tables show medians.
const SERVICE_ROUNDS: usize = 5;

/// The server benchmark's modes: label, mapwatch arguments (`None`:
/// unprobed).
const SERVER_MODES: &[(&str, Option<&[&str]>)] = &[
    ("unprobed", None),
    ("default, budget off", Some(&["--overhead-budget", "off"])),
    ("default, budget 2%", Some(&[])),
    (
        "maps, budget off",
        Some(&[
            "--probe",
            "maps",
            "--map",
            "main.routes",
            "--overhead-budget",
            "off",
        ]),
    ),
    (
        "maps, budget 2%",
        Some(&["--probe", "maps", "--map", "main.routes"]),
    ),
    (
        "all, budget off",
        Some(&["--probe", "all", "--overhead-budget", "off"]),
    ),
    ("all, budget 2%", Some(&["--probe", "all"])),
];

/// etcd's modes (its locks; `all` adds its maps and CAS sites).
const ETCD_MODES: &[(&str, Option<&[&str]>)] = &[
    ("unprobed", None),
    ("default, budget off", Some(&["--overhead-budget", "off"])),
    ("default, budget 2%", Some(&[])),
    (
        "all, budget off",
        Some(&["--probe", "all", "--overhead-budget", "off"]),
    ),
    ("all, budget 2%", Some(&["--probe", "all"])),
];

/// A server to load: how to start it, load it and stop it.
trait Service {
    /// Starts it; returns the process and the address the load goes to.
    fn start(&self) -> Result<(Child, String)>;
    /// The load generator for `addr`: it prints JSON with
    /// `requests_per_second`, counted after [`WARMUP_SECONDS`].
    fn load(&self, addr: &str) -> Command;
}

/// The server fixture (fixtures/go/server): it serves and loads.
struct ServerFixture(PathBuf);

impl Service for ServerFixture {
    fn start(&self) -> Result<(Child, String)> {
        let mut serving = Command::new(&self.0)
            .args(["-mode", "serve", "-wait-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.0.display()))?;
        let mut line = String::new();
        BufReader::new(serving.stderr.take().context("stderr")?).read_line(&mut line)?;
        let addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .with_context(|| format!("the server said {line:?}"))?
            .to_string();
        Ok((serving, addr))
    }

    fn load(&self, addr: &str) -> Command {
        let mut load = Command::new(&self.0);
        load.args(["-mode", "load", "-addr", addr, "-conns", "32"])
            .args(["-warmup", WARMUP_SECONDS, "-seconds", LOAD_SECONDS]);
        load
    }
}

/// Debian's etcd (Go 1.19, stripped), with a fresh data directory each
/// run, loaded with puts by fixtures/go/etcdload.
struct Etcd {
    load: PathBuf,
    data_dir: PathBuf,
}

/// etcd's client and peer ports here (off the defaults, to leave a system
/// etcd alone).
const ETCD_CLIENT: &str = "127.0.0.1:23790";
const ETCD_PEER: &str = "127.0.0.1:23800";

impl Service for Etcd {
    fn start(&self) -> Result<(Child, String)> {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let client = format!("http://{ETCD_CLIENT}");
        let peer = format!("http://{ETCD_PEER}");
        let etcd = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting etcd (apt-get install etcd-server)")?;
        // Ready when a put goes through.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let probe = Command::new(&self.load)
                .args(["-endpoint", &client, "-workers", "1", "-seconds", "0.1"])
                .output()?;
            if probe.status.success() {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("etcd did not answer on {client}");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Ok((etcd, client))
    }

    fn load(&self, addr: &str) -> Command {
        let mut load = Command::new(&self.load);
        load.args(["-endpoint", addr, "-workers", "32"]).args([
            "-warmup",
            WARMUP_SECONDS,
            "-seconds",
            LOAD_SECONDS,
        ]);
        load
    }
}

/// What one run of a service benchmark measured.
struct ServiceRun {
    requests_per_second: f64,
    /// The governor's estimate for the session, percent, if it ran.
    estimated_percent: Option<f64>,
    /// The counting probes' sampled fraction, if mapwatch ran.
    sampled: Option<f64>,
}

/// The server fixture under its load generator: throughput unprobed and
/// under each probe set, with and without the governor.
fn server_throughput(root: &Path, version: &str, mapwatch: &Path) -> Result<()> {
    let built = fixtures::build(root, version, "server")?;
    let server = built.first().context("server fixture not built")?;
    service_table(
        &format!(
            "server fixture (32 closed-loop connections over loopback; each request: \
             RWMutex-guarded map, sync.Map, contended mutex, 20 µs of work), Go {version}"
        ),
        &ServerFixture(server.clone()),
        SERVER_MODES,
        mapwatch,
    )
}

/// Debian's etcd under 32 closed-loop put workers, the same way.
fn etcd_throughput(root: &Path, version: &str, mapwatch: &Path) -> Result<()> {
    let etcd_version = || Command::new("etcd").arg("--version").output();
    let etcd_version = match etcd_version() {
        Ok(output) => output,
        Err(_) => {
            setup::install_packages(&["etcd-server"])?;
            etcd_version().context("running etcd --version")?
        }
    };
    let built = fixtures::build(root, version, "etcdload")?;
    let load = built.first().context("etcdload not built")?.clone();
    let etcd = Etcd {
        load,
        data_dir: root.join("target/bench-etcd"),
    };
    let version = String::from_utf8_lossy(&etcd_version.stdout);
    service_table(
        &format!(
            "Debian's etcd ({}), 32 closed-loop put workers over its v3 JSON gateway",
            version.lines().next().unwrap_or("etcd").trim()
        ),
        &etcd,
        ETCD_MODES,
        mapwatch,
    )
}

/// Runs `service` under each mode, rounds outermost (drifts of the machine
/// spread over every mode), and prints the medians as a table of ratios.
fn service_table(
    title: &str,
    service: &dyn Service,
    modes: &[(&str, Option<&[&str]>)],
    mapwatch: &Path,
) -> Result<()> {
    let mut rows: Vec<(&str, Vec<ServiceRun>)> =
        modes.iter().map(|(l, _)| (*l, Vec::new())).collect();
    for _ in 0..SERVICE_ROUNDS {
        for (row, (label, args)) in rows.iter_mut().zip(modes) {
            let run = service_run(service, mapwatch, *args)?;
            eprintln!(
                "xtask: {label}: {:.0} req/s, overhead estimate {:?}",
                run.requests_per_second, run.estimated_percent
            );
            row.1.push(run);
        }
    }
    let median = |values: &mut Vec<f64>| -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(values[values.len() / 2])
    };
    println!();
    println!(
        "{title}, median of {SERVICE_ROUNDS} runs of {LOAD_SECONDS} s after {WARMUP_SECONDS} s of warm-up"
    );
    println!(
        "{:<22} {:>10} {:>12} {:>14} {:>10}",
        "probes", "req/s", "vs unprobed", "est. overhead", "sampled"
    );
    let mut base = None;
    for (label, runs) in &rows {
        let rps = median(&mut runs.iter().map(|r| r.requests_per_second).collect()).unwrap_or(0.0);
        let base_rps = *base.get_or_insert(rps);
        let estimate = median(&mut runs.iter().filter_map(|r| r.estimated_percent).collect());
        let sampled = median(&mut runs.iter().filter_map(|r| r.sampled).collect());
        println!(
            "{label:<22} {rps:>10.0} {:>12} {:>14} {:>10}",
            if *label == "unprobed" {
                "-".to_string()
            } else {
                format!("{:+.1}%", 100.0 * (rps / base_rps - 1.0))
            },
            estimate.map_or("-".to_string(), |e| format!("{e:.1}%")),
            sampled.map_or("-".to_string(), |f| format!("{f:.2}")),
        );
    }
    Ok(())
}

/// One run: the service started, mapwatch attached (unless `args` is
/// `None`), the load generator run, mapwatch stopped and its report read,
/// the service stopped.
fn service_run(
    service: &dyn Service,
    mapwatch: &Path,
    args: Option<&[&str]>,
) -> Result<ServiceRun> {
    let (mut serving, addr) = service.start()?;
    let tracer = match args {
        None => None,
        Some(args) => Some(attach_mapwatch(mapwatch, serving.id(), args)?),
    };
    let load = service
        .load(&addr)
        .output()
        .context("running the load generator")?;
    if !load.status.success() {
        bail!(
            "the load generator failed: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }
    let throughput: serde_json::Value =
        serde_json::from_slice(&load.stdout).context("the load generator's JSON")?;
    let mut run = ServiceRun {
        requests_per_second: throughput["requests_per_second"]
            .as_f64()
            .context("requests_per_second")?,
        estimated_percent: None,
        sampled: None,
    };
    if let Some(tracer) = tracer {
        Command::new("kill")
            .args(["-INT", &tracer.id().to_string()])
            .status()
            .context("stopping mapwatch")?;
        let out = tracer.wait_with_output()?;
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("mapwatch report")?;
        run.estimated_percent = report["overhead"]["estimated_percent"].as_f64();
        run.sampled = Some(
            report["overhead"]["sampling"]["counting"]
                .as_f64()
                .unwrap_or(1.0),
        );
    }
    drop(serving.stdin.take());
    Command::new("kill")
        .args(["-TERM", &serving.id().to_string()])
        .status()
        .context("stopping the server")?;
    serving.wait()?;
    Ok(run)
}

/// Starts `mapwatch attach --pid PID --format json --live off ARGS` and
/// waits until its probes are attached (its stderr drained from then on).
fn attach_mapwatch(mapwatch: &Path, pid: u32, args: &[&str]) -> Result<std::process::Child> {
    let mut tracer = Command::new(mapwatch)
        .args(["attach", "--pid", &pid.to_string(), "--format", "json"])
        .args(["--live", "off"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", mapwatch.display()))?;
    let mut err = BufReader::new(tracer.stderr.take().context("stderr")?);
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            bail!("mapwatch exited before attaching");
        }
        if line.contains("attached") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok(tracer)
}
