//! The `mapwatch` command.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mapwatch::{
    daemon::{self, DaemonOptions},
    duration,
    model::Snapshot,
    plan::{PlanRequest, SiteMode},
    session::{self, AttachOptions},
    view::{heatmap, live::LiveMode, ReportFormat},
};

/// See which locks a live process waits on, which map keys are hot and where
/// compare-and-swap fails — no restart, no code change.
#[derive(Debug, Parser)]
#[command(name = "mapwatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to a running process and report when it exits, on Ctrl-C,
    /// SIGTERM, or after --duration.
    Attach(AttachArgs),
    /// Watch every process the selectors select, as they start and exit,
    /// and serve all their metrics on one endpoint; until SIGINT or
    /// SIGTERM.
    Daemon(DaemonArgs),
    /// Read a daemon's flight recorder: the report of one target over a
    /// window of the last minutes (`--since 5m`), as attach writes it.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
struct AttachArgs {
    /// The process to attach to.
    #[arg(long, short)]
    pid: u32,
    /// Stop after this long (e.g. 10s, 500ms, 2m); default: until Ctrl-C,
    /// SIGTERM or the target's exit.
    #[arg(long, short, value_parser = duration::parse)]
    duration: Option<Duration>,
    /// Report format on stdout.
    #[arg(long, short, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Serve Prometheus metrics at /metrics on this address while
    /// attached, e.g. 127.0.0.1:9464 (OpenMetrics or the 0.0.4 text format,
    /// as the scraper's Accept header asks).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Write one JSON snapshot of the figures per second to this file, one
    /// object per line (for scripts and log shippers).
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
    /// Write the report as one self-contained HTML page (tables, inline SVG
    /// heatmaps and histograms), viewable offline.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Write the lock-wait and CAS-failure profiles as a gzipped pprof file
    /// (`go tool pprof -sample_index=delay FILE`).
    #[arg(long, value_name = "FILE")]
    pprof: Option<PathBuf>,
    /// Write each heatmap as an SVG file into this directory.
    #[arg(long, value_name = "DIR")]
    heatmap_dir: Option<PathBuf>,
    /// The live view while attached (text format only): `auto` shows the
    /// full-screen view when stdout is a terminal (1-4/Tab switch views, q
    /// stops) and a few lines of text every second otherwise.
    #[arg(long, value_enum, default_value_t = LiveArg::Auto)]
    live: LiveArg,
    #[command(flatten)]
    probes: ProbeArgs,
}

/// What to probe in a target and how: shared by attach and the daemon.
#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// Where to probe: `auto` picks the first instruction the kernel
    /// emulates (cheap), found by decoding; `entry` probes a function's first
    /// instruction, as symbol-based tracers do (and, for CAS sites, the
    /// instruction right after the compare-and-swap).
    #[arg(long, value_enum, default_value_t = SiteArg::Auto)]
    probe_site: SiteArg,
    /// Also treat this function as a lock slow path (Go ABI: lock address in
    /// RAX); repeatable.
    #[arg(long = "lock-slow-path", value_name = "SYMBOL")]
    lock_slow_paths: Vec<String>,
    /// Watch every compare-and-swap (`LOCK CMPXCHG`) in the functions matching
    /// this pattern (`*` and `?` globs, else an exact symbol name): attempts,
    /// failures, per CPU and over time. Repeatable; works on Go and native code.
    #[arg(long = "cas", value_name = "FUNC_PATTERN")]
    cas_patterns: Vec<String>,
    /// Do not watch the compare-and-swaps inside Go's sync.Map (watched by
    /// default in Go targets).
    #[arg(long)]
    no_builtin_cas: bool,
    /// Count contentions only: no wait times and no call sites (no probes on
    /// the slow paths' returns, no stacks): about an eighth of the cost per
    /// contention.
    #[arg(long)]
    no_wait_times: bool,
    /// Do not blame holders: no probes on the locks' release slow paths
    /// (`unlockSlow`, an RWMutex's `rUnlockSlow` and `Unlock`), so no
    /// `top_holder_sites`. They cost about 1 µs per contended release.
    #[arg(long)]
    no_holders: bool,
    /// Also measure how long goroutines were parked on each lock's
    /// semaphores, from park to runnable: what Go's own
    /// `/sync/mutex/wait/total` estimates (by sampling). Probes
    /// `runtime.ready`, which every goroutine wake-up passes (~1 µs each).
    #[arg(long, conflicts_with = "no_wait_times")]
    blocked_time: bool,
    /// Trace the process's futex waits (syscall tracepoints): native locks
    /// such as glibc pthread mutexes and Rust's std Mutex, per futex word,
    /// with wait times.
    #[arg(long)]
    futex: bool,
    /// What to probe, comma-separated: `locks` (Go mutex and RWMutex waits),
    /// `cas` (sync.Map's compare-and-swaps), `syncmap` (sync.Map operations
    /// and keys), `maps` (runtime map operations: per-map counts, and keys
    /// of the maps selected with --map), `gc` (Go's GC cycles and
    /// stop-the-world pauses: a few hits a second, never sampled), `sched`
    /// (the target's threads' waits for a CPU, from the scheduler's
    /// tracepoints: whether a second was CPU-starved), `rtlocks` (Go's
    /// runtime-internal locks: channels, timers, the scheduler; their
    /// contended acquisitions in `runtime.lock2`). `all` is every one of
    /// them. `--map` implies `maps`.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "locks,cas,syncmap,gc,sched"
    )]
    probe: String,
    /// Report the keys of this map: a global variable's name (a `sync.Map`
    /// or a `map[K]V` variable) or an address from a report. Repeatable.
    /// With any --map, only the selected maps' keys are reported.
    #[arg(long = "map", value_name = "NAME|ADDRESS")]
    maps: Vec<String>,
    /// Bytes of each string (or other) key to copy, 1 to 128.
    #[arg(long, default_value_t = mapwatch::plan::DEFAULT_KEY_BYTES, value_parser = clap::value_parser!(u32).range(1..=128))]
    key_bytes: u32,
    /// Export map keys in metric labels as they are; by default they are
    /// hashed (`h:` and 16 hex digits), since keys can be user data.
    #[arg(long)]
    metrics_expose_keys: bool,
    /// Also look for a stripped executable's debug file under this
    /// directory (repeatable), by build ID (`DIR/.build-id/ab/cdef….debug`)
    /// or by its `.gnu_debuglink` name, before the process's and the host's
    /// `/usr/lib/debug`.
    #[arg(long, value_name = "DIR")]
    debug_dir: Vec<PathBuf>,
    /// Keep the time the probes add to each target within this percentage
    /// of its own CPU time, by sampling when they would cost more (stacks
    /// first, then wait times, then keys, then windows of all probes);
    /// sampled figures are scaled estimates and marked `exact: false`.
    /// `off` probes everything, always: exact counts at any cost. Default:
    /// 2 for attach, 1 per target for the daemon.
    #[arg(long, value_name = "PERCENT|off")]
    overhead_budget: Option<mapwatch::governor::Budget>,
    /// Size of each CPU's ring buffer in pages (a power of two), per
    /// target. Default: 1024 for attach; 64 for the daemon, whose many
    /// targets each hold one ring per CPU (counts are kept in the kernel;
    /// the rings carry keys' first sightings, stacks and overflow).
    #[arg(long, value_parser = power_of_two)]
    buffer_pages: Option<usize>,
}

#[derive(Debug, clap::Args)]
struct DaemonArgs {
    /// Which processes to watch, repeatable: `pid=N`, `comm=NAME` (its
    /// `/proc/PID/comm`), `exe=GLOB` (the path behind `/proc/PID/exe`),
    /// `cgroup=GLOB` (a line of `/proc/PID/cgroup`: systemd units,
    /// Kubernetes pods and containers). Processes that match now or later
    /// are watched until they exit.
    #[arg(long = "target", value_name = "SELECTOR", required = true)]
    targets: Vec<mapwatch::process::select::Selector>,
    /// Serve every target's metrics at /metrics on this address, e.g.
    /// 127.0.0.1:9464 (each series labelled with its `pid` and `comm`).
    #[arg(long, value_name = "ADDR")]
    metrics: std::net::SocketAddr,
    /// How long an exited target's final figures stay in /metrics.
    #[arg(long, value_parser = duration::parse, default_value = "60s")]
    grace: Duration,
    /// The most targets watched at once; more selected processes are
    /// counted in `mapwatch_attach_errors_total{reason="max-targets"}`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_targets: u64,
    /// How often /proc is scanned for new processes (at least 10ms).
    #[arg(long, value_parser = scan_interval, default_value = "1s")]
    scan_interval: Duration,
    /// Keep each target's figures second by second for this long, also
    /// after it exited (the flight recorder): /report.json?pid=N&since=10m
    /// and `mapwatch report` read them. `off`: no recorder.
    #[arg(long, value_name = "DURATION|off", value_parser = record_span, default_value = "15m")]
    record: RecordSpan,
    #[command(flatten)]
    probes: ProbeArgs,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The daemon's address (its --metrics), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    from: String,
    /// The target (the only one recorded in the window, without it).
    #[arg(long, short)]
    pid: Option<u32>,
    /// The window's start: this long ago (e.g. 5m); default: as far back
    /// as the recording goes.
    #[arg(long, value_parser = duration::parse)]
    since: Option<Duration>,
    /// The window's end: this long ago; default: now.
    #[arg(long, value_parser = duration::parse)]
    until: Option<Duration>,
    /// Report format on stdout.
    #[arg(long, short, value_enum, default_value_t = RemoteFormat::Text)]
    format: RemoteFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RemoteFormat {
    Text,
    Json,
    Html,
}

/// `--record`: a span, or off.
#[derive(Debug, Clone, Copy)]
struct RecordSpan(Option<Duration>);

fn record_span(text: &str) -> Result<RecordSpan, String> {
    if text == "off" {
        return Ok(RecordSpan(None));
    }
    duration::parse(text)
        .map(|d| RecordSpan(Some(d)))
        .map_err(|e| e.to_string())
}

fn scan_interval(text: &str) -> Result<Duration, String> {
    match duration::parse(text) {
        Ok(d) if d < Duration::from_millis(10) => Err(format!(
            "`{text}` is shorter than the shortest scan interval, 10ms"
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LiveArg {
    /// The full-screen view when stdout is a terminal, else plain text
    /// every second (with --format text).
    Auto,
    /// The full-screen terminal view.
    Tui,
    /// A few lines of text every second.
    Plain,
    /// No live view: only the final report.
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SiteArg {
    Auto,
    Entry,
}

/// The probe families `--probe` selects.
#[derive(Debug, Clone, Copy, Default)]
struct ProbeSet {
    locks: bool,
    cas: bool,
    sync_maps: bool,
    maps: bool,
    gc: bool,
    sched: bool,
    runtime_locks: bool,
}

impl ProbeSet {
    fn parse(list: &str) -> Result<Self> {
        let mut set = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "locks" => set.locks = true,
                "cas" => set.cas = true,
                "syncmap" => set.sync_maps = true,
                "maps" => set.maps = true,
                "gc" => set.gc = true,
                "sched" => set.sched = true,
                "rtlocks" => set.runtime_locks = true,
                "all" => {
                    set = Self {
                        locks: true,
                        cas: true,
                        sync_maps: true,
                        maps: true,
                        gc: true,
                        sched: true,
                        runtime_locks: true,
                    }
                }
                other => anyhow::bail!(
                    "--probe {list}: unknown probe family `{other}` (known: locks, cas, syncmap, maps, gc, sched, rtlocks, all)"
                ),
            }
        }
        Ok(set)
    }
}

/// Pages per CPU ring for attach: one target, room for bursts.
const ATTACH_BUFFER_PAGES: usize = 1024;

fn power_of_two(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n.is_power_of_two() => Ok(n),
        _ => Err(format!("`{text}` is not a power of two")),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mapwatch: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let args = match cli.command {
        Command::Attach(args) => args,
        Command::Daemon(args) => return run_daemon(args),
        Command::Report(args) => return run_report(&args),
    };
    let options = AttachOptions {
        pid: args.pid,
        duration: args.duration,
        probes: args.probes.request()?,
        metrics: args.metrics,
        metrics_expose_keys: args.probes.metrics_expose_keys,
        debug_dirs: args.probes.debug_dir.clone(),
        jsonl: args.jsonl,
        buffer_pages: args.probes.buffer_pages.unwrap_or(ATTACH_BUFFER_PAGES),
        overhead_budget: args
            .probes
            .overhead_budget
            .unwrap_or(mapwatch::governor::Budget::DEFAULT_ATTACH),
        live: match (args.live, args.format) {
            (LiveArg::Off, _) | (_, Format::Json) => LiveMode::Off,
            (LiveArg::Tui, _) => LiveMode::Tui,
            (LiveArg::Plain, _) => LiveMode::Plain,
            (LiveArg::Auto, Format::Text) => {
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    LiveMode::Tui
                } else {
                    LiveMode::Plain
                }
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let session = runtime.block_on(session::attach(&options))?;
    let report = session.report;
    if let Some(path) = &args.report {
        write_file(path, ReportFormat::Html, &report)?;
    }
    if let Some(path) = &args.pprof {
        write_file(path, ReportFormat::Pprof, &report)?;
    }
    if let Some(dir) = &args.heatmap_dir {
        let written = heatmap::write_svgs(dir, &report.heatmaps)
            .with_context(|| format!("writing heatmaps to {}", dir.display()))?;
        for path in written {
            eprintln!("mapwatch: wrote {}", path.display());
        }
    }
    let format = match args.format {
        Format::Text => ReportFormat::Text,
        Format::Json => ReportFormat::Json,
    };
    {
        let mut stdout = std::io::stdout().lock();
        format
            .write(&report, &mut stdout)
            .and_then(|()| std::io::Write::flush(&mut stdout))
            .context("writing the report to stdout")?;
    }
    // The report is out; now wait for the probes to be gone.
    runtime
        .block_on(session.stopped.detached())
        .context("detaching the probes")
}

impl ProbeArgs {
    /// What the planner is asked for.
    fn request(&self) -> Result<PlanRequest> {
        let probe = ProbeSet::parse(&self.probe)?;
        Ok(PlanRequest {
            mode: match self.probe_site {
                SiteArg::Auto => SiteMode::Auto,
                SiteArg::Entry => SiteMode::Entry,
            },
            extra_slow_paths: self.lock_slow_paths.clone(),
            cas_patterns: self.cas_patterns.clone(),
            builtin_cas: !self.no_builtin_cas && probe.cas,
            wait_times: !self.no_wait_times,
            futex: self.futex,
            blocked_time: self.blocked_time,
            locks: probe.locks,
            sync_maps: probe.sync_maps,
            runtime_maps: probe.maps || !self.maps.is_empty(),
            map_selection: self.maps.clone(),
            key_bytes: self.key_bytes,
            go_runtime: probe.gc,
            holders: !self.no_holders,
            sched: probe.sched,
            runtime_locks: probe.runtime_locks,
        })
    }
}

fn run_daemon(args: DaemonArgs) -> Result<()> {
    let options = DaemonOptions {
        selectors: args.targets,
        metrics: args.metrics,
        metrics_expose_keys: args.probes.metrics_expose_keys,
        debug_dirs: args.probes.debug_dir.clone(),
        probes: args.probes.request()?,
        buffer_pages: args
            .probes
            .buffer_pages
            .unwrap_or(DaemonOptions::DEFAULT_BUFFER_PAGES),
        overhead_budget: args
            .probes
            .overhead_budget
            .unwrap_or(DaemonOptions::DEFAULT_BUDGET),
        grace: args.grace,
        max_targets: usize::try_from(args.max_targets).unwrap_or(usize::MAX),
        scan_interval: args.scan_interval,
        record: args.record.0,
        record_bytes: DaemonOptions::DEFAULT_RECORD_BYTES,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(daemon::run(&options))
}

/// `mapwatch report`: asks the daemon for the window's report and prints
/// it.
fn run_report(args: &ReportArgs) -> Result<()> {
    let (path, what) = match args.format {
        RemoteFormat::Text => ("/report.txt", "text"),
        RemoteFormat::Json => ("/report.json", "JSON"),
        RemoteFormat::Html => ("/report.html", "HTML"),
    };
    let mut query = Vec::new();
    if let Some(pid) = args.pid {
        query.push(format!("pid={pid}"));
    }
    if let Some(since) = args.since {
        query.push(format!("since={}ms", since.as_millis()));
    }
    if let Some(until) = args.until {
        query.push(format!("until={}ms", until.as_millis()));
    }
    let target = format!("{path}?{}", query.join("&"));
    let body = mapwatch::view::metrics::client::get(&args.from, &target)
        .with_context(|| format!("asking the daemon at {} for its {what} report", args.from))?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, &body)
        .and_then(|()| std::io::Write::flush(&mut stdout))
        .context("writing the report to stdout")
}

/// Writes the report to a file in a format, and says so.
fn write_file(path: &std::path::Path, format: ReportFormat, report: &Snapshot) -> Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    format
        .write(report, &mut file)
        .and_then(|()| std::io::Write::flush(&mut file))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("mapwatch: wrote {}", path.display());
    Ok(())
}
