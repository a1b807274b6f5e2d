//! `mapwatch attach`: resolve the target, plan and attach the probes, read
//! events until told to stop, and build the report.

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use probe_common::SiteKind;

use std::collections::{HashMap, HashSet};

use crate::{
    aggregate::{
        cas::{self, CasTimeline},
        maps::{MapAggregate, MapSiteInfo, MapStats, OpResolver, DEFAULT_KEY_CAPACITY},
        Aggregate,
    },
    export::metrics::{self, CasMetric, LockMetric, MapMetric, MetricsServer, MetricsSnapshot},
    host,
    intake::Intake,
    live::{
        self,
        tui::{Action, LiveTui},
        LiveMode, LiveSnapshot,
    },
    loader::AttachedProbes,
    plan::maps::{sync_map_op_from_frames, MapKind},
    plan::{self, PlanRequest, PlannedSite},
    report,
    report::Report,
    target::Target,
    target::{
        lines::SourceLines,
        memory::{pointer_globals, resolve_map_selector, MapSelector, Memory},
    },
};

/// What `mapwatch attach` was asked to do.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The process to attach to.
    pub pid: u32,
    /// Stop after this long (else on Ctrl-C, SIGTERM or target exit).
    pub duration: Option<Duration>,
    /// What to probe.
    pub probes: PlanRequest,
    /// Serve Prometheus metrics on this address while attached.
    pub metrics: Option<std::net::SocketAddr>,
    /// Export map keys as they are (else as hashes: keys can be user data).
    pub metrics_expose_keys: bool,
    /// Write one JSON snapshot per second to this file.
    pub jsonl: Option<std::path::PathBuf>,
    /// Pages per CPU ring buffer (a power of two).
    pub buffer_pages: usize,
    /// The live view while attached.
    pub live: LiveMode,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The target process exited.
    TargetExited,
    /// `--duration` elapsed.
    Duration,
    /// SIGINT (Ctrl-C) or SIGTERM.
    Signal,
    /// `q` in the live view.
    Quit,
}

impl StopReason {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TargetExited => "target-exited",
            Self::Duration => "duration",
            Self::Signal => "signal",
            Self::Quit => "quit",
        }
    }
}

/// Runs one attach session to completion and returns its report.
pub async fn attach(options: &AttachOptions) -> Result<Report> {
    let pid = options.pid;
    host::check(&host::HostPaths::default())?;
    let target = Target::open(pid)?;
    let plan = plan::plan(&target, &options.probes).with_context(|| format!("PID {pid}"))?;
    host::raise_memlock_limit();
    let mut probes = match AttachedProbes::attach(
        &plan,
        pid,
        &target.process.exe_path,
        &target.process.exe_display,
    ) {
        Ok(probes) => probes,
        Err(_) if !target.process.is_alive() => {
            anyhow::bail!("PID {pid} exited while mapwatch was attaching")
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("PID {pid}"))),
    };
    let mut selection = MapSelection::resolve(&target, &options.probes.map_selection)?;
    selection.refresh(&mut probes)?;
    if plan
        .map_sites
        .iter()
        .any(|site| site.function.kind == MapKind::Runtime)
    {
        // Name the maps that exist already, in case the target exits
        // before the first second is up.
        selection.scan_names(&target);
    }
    let events = probes.take_events()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let intake = Intake::start(events, options.buffer_pages, tx)?;
    let session_start_ns = monotonic_ns();
    // The data model, shared by the aggregator task (writer) and the live
    // exports (readers, once a second).
    let shared = Arc::new(Mutex::new(
        Aggregate::new(session_start_ns).with_maps(map_aggregate(&target, &plan)),
    ));
    let kernel_map_counts = plan
        .map_sites
        .iter()
        .any(|site| site.function.kind == MapKind::Runtime)
        || plan.sync_map_filtered;
    let aggregator = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply(pid, message);
            }
        })
    };
    let mut jsonl = match &options.jsonl {
        Some(path) => Some((
            path.clone(),
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let metrics = match options.metrics {
        Some(addr) => {
            let server = MetricsServer::bind(addr).await?;
            eprintln!(
                "mapwatch: serving Prometheus metrics on http://{}/metrics",
                server.local_addr
            );
            Some(server)
        }
        None => None,
    };
    let started = Instant::now();
    eprintln!(
        "mapwatch: attached {} probe(s) to PID {} ({}, {}), reading {} CPU(s); Ctrl-C to stop",
        probes.attached,
        pid,
        target.process.exe_display,
        target
            .go
            .as_ref()
            .map_or("not Go", |go| go.version.as_str()),
        intake.cpus.len(),
    );

    let cas_sites: Vec<(usize, String)> = plan
        .sites
        .iter()
        .enumerate()
        .filter(|(_, site)| site.kind == SiteKind::CasOutcome)
        .map(|(index, site)| (index, site_label(site)))
        .collect();
    let mut cas = (!cas_sites.is_empty()).then(|| CasTimeline::new(cas_sites, possible_cpus()));

    // Sample the kernel's CAS counters once per time column until told to stop.
    let stop = wait_for_stop(&target, options.duration);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(cas::COLUMN_SECONDS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    let mut column = 0;
    let (mut tui, mut keys) = match options.live {
        LiveMode::Tui => {
            let (tui, keys) = LiveTui::start().context("starting the live terminal view")?;
            (Some(tui), Some(keys))
        }
        _ => (None, None),
    };
    let stopped_by = loop {
        tokio::select! {
            reason = &mut stop => break reason?,
            key = async {
                match keys.as_mut() {
                    Some(keys) => keys.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match (key, tui.as_mut()) {
                    (Some(key), Some(view)) => {
                        if view.handle_key(key)? == Action::Quit {
                            break StopReason::Quit;
                        }
                    }
                    // The terminal is gone: go on without a view.
                    _ => keys = None,
                }
            }
            _ = tick.tick() => {
                selection.refresh(&mut probes)?;
                if kernel_map_counts {
                    let counts = probes.map_counts()?;
                    shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .maps
                        .set_kernel_counts(&counts);
                }
                {
                    let aggregate = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    selection.name_maps(&target, aggregate.maps.maps.keys().copied());
                }
                if let Some(cas) = cas.as_mut() {
                    cas.sample(column, &probes.cas_counts(&cas.sites)?);
                }
                if metrics.is_some() || jsonl.is_some() || options.live != LiveMode::Off {
                    let mut snapshot = {
                        let aggregate = shared.lock().unwrap_or_else(PoisonError::into_inner);
                        let mut snapshot = metrics_snapshot(
                            &target,
                            &aggregate,
                            cas.as_ref(),
                            probes.counters()?,
                        );
                        snapshot.maps =
                            map_metrics(&target, &aggregate, &selection.names, options.metrics_expose_keys);
                        snapshot
                    };
                    snapshot.elapsed_seconds = started.elapsed().as_secs_f64();
                    if let Some((path, file)) = jsonl.as_mut() {
                        write_jsonl(file, &snapshot)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    if options.live != LiveMode::Off {
                        let live = {
                            let aggregate = shared.lock().unwrap_or_else(PoisonError::into_inner);
                            // The operator's own screen: keys as they are.
                            let mut figures = snapshot.clone();
                            figures.maps = map_metrics(&target, &aggregate, &selection.names, true);
                            live_snapshot(&target, &aggregate, cas.as_ref(), &selection, figures)
                        };
                        match tui.as_mut() {
                            Some(view) => view.show(live).context("drawing the live view")?,
                            None => {
                                use std::io::Write as _;
                                let mut stdout = std::io::stdout().lock();
                                stdout
                                    .write_all(live::plain::render(&live).as_bytes())
                                    .and_then(|()| stdout.flush())
                                    .context("writing the live view to stdout")?;
                            }
                        }
                    }
                    if let Some(metrics) = &metrics {
                        metrics.update(snapshot);
                    }
                }
                column += 1;
            }
        }
    };
    // Leave the full-screen view before the report is printed.
    drop(tui);
    if let Some(cas) = cas.as_mut() {
        cas.sample(column, &probes.cas_counts(&cas.sites)?);
    }
    let duration = started.elapsed().as_secs_f64();
    intake.stop().await?;
    aggregator.await.context("aggregator task failed")?;
    drop(metrics);
    let mut aggregate = std::mem::replace(
        &mut *shared.lock().unwrap_or_else(PoisonError::into_inner),
        Aggregate::new(session_start_ns),
    );
    if kernel_map_counts {
        aggregate.maps.set_kernel_counts(&probes.map_counts()?);
    }
    let counters = probes.counters()?;
    let stacks = probes.stacks(&aggregate.stack_ids())?;
    drop(probes);
    // Runtime maps are named by the variables holding them, read while the
    // target ran and once more now (if it is still there).
    selection.name_maps(&target, aggregate.maps.maps.keys().copied());
    let (map_reports, map_heatmaps) =
        report::maps::build(&target, &aggregate.maps, &selection.names);
    let mut report = Report::build(
        &target,
        &plan,
        &aggregate,
        &stacks,
        cas.as_ref(),
        counters,
        duration,
        stopped_by.as_str(),
    );
    report.add_maps(map_reports, map_heatmaps);
    Ok(report)
}

/// The maps chosen with `--map`, kept up to date in the kernel's selection.
struct MapSelection {
    selectors: Vec<MapSelector>,
    selected: HashSet<u64>,
    memory: Option<Memory>,
    /// Maps by address → the pointer-sized global holding them.
    names: HashMap<u64, String>,
    /// Maps left unnamed by the last scan of the globals.
    unnamed_at_last_scan: usize,
}

impl MapSelection {
    /// Resolves the `--map` arguments against the target.
    fn resolve(target: &Target, names: &[String]) -> Result<Self> {
        let pid = target.process.pid;
        let selectors = names
            .iter()
            .map(|name| resolve_map_selector(target, name).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?;
        let memory = match Memory::open(pid) {
            Ok(memory) => Some(memory),
            Err(e) if selectors.is_empty() => {
                log::warn!("runtime maps will not be named: {e}");
                None
            }
            Err(e) => return Err(anyhow::Error::new(e).context("--map needs the target's memory")),
        };
        Ok(Self {
            selectors,
            selected: HashSet::new(),
            memory,
            names: HashMap::new(),
            unnamed_at_last_scan: 0,
        })
    }

    /// Names the maps among `seen` not named yet, by reading the target's
    /// pointer-sized globals again (a map may be created at any time; a
    /// name found once is kept when the target has exited).
    fn name_maps(&mut self, target: &Target, seen: impl Iterator<Item = u64>) {
        if self.memory.is_none() {
            return;
        }
        let unnamed = seen
            .filter(|address| {
                !self.names.contains_key(address) && target.global_name(*address).is_none()
            })
            .count();
        // Scan again only when maps appeared that the last scan did not see.
        if unnamed == 0 || unnamed == self.unnamed_at_last_scan {
            return;
        }
        self.unnamed_at_last_scan = unnamed;
        self.scan_names(target);
    }

    /// Reads the target's pointer-sized globals: maps by the variable
    /// holding them.
    fn scan_names(&mut self, target: &Target) {
        let Some(memory) = &self.memory else {
            return;
        };
        for (address, name) in pointer_globals(target, memory) {
            self.names.entry(address).or_insert(name);
        }
    }

    /// Selects in the kernel the maps the selectors point at now (a map
    /// variable may have been assigned a new map).
    fn refresh(&mut self, probes: &mut AttachedProbes) -> Result<()> {
        let Some(memory) = &self.memory else {
            return Ok(());
        };
        let fresh: Vec<u64> = self
            .selectors
            .iter()
            .filter_map(|selector| selector.current(memory))
            .filter(|address| self.selected.insert(*address))
            .collect();
        if !fresh.is_empty() {
            probes.select_maps(&fresh)?;
        }
        Ok(())
    }
}

/// The map part of the data model, with how to name each map site's
/// user-level operation from its caller (`sync.Map`'s inlined wrappers).
fn map_aggregate(target: &Target, plan: &plan::ProbePlan) -> MapAggregate {
    let sites: Vec<MapSiteInfo> = plan
        .map_sites
        .iter()
        .map(|site| MapSiteInfo {
            kind: site.function.kind,
            refine_op: site.function.kind == MapKind::SyncMap && site.function.user_op,
        })
        .collect();
    let resolver: Option<OpResolver> = sites.iter().any(|s| s.refine_op).then(|| {
        let lines = SourceLines::new(&target.elf);
        let bias = target.load_bias;
        Arc::new(move |return_address: u64| {
            // The call instruction ends at the return address.
            let call = return_address.wrapping_sub(bias).wrapping_sub(1);
            sync_map_op_from_frames(&lines.frames(call))
        }) as OpResolver
    });
    MapAggregate::new(sites, resolver, DEFAULT_KEY_CAPACITY)
}

/// Appends one snapshot as a JSON line and flushes it, so a reader (a log
/// shipper, `tail -f`) sees it at once.
fn write_jsonl(file: &mut std::fs::File, snapshot: &MetricsSnapshot) -> std::io::Result<()> {
    use std::io::Write as _;
    let line = serde_json::to_string(snapshot).map_err(std::io::Error::other)?;
    writeln!(file, "{line}")?;
    file.flush()
}

/// The figures `/metrics` shows, from the live aggregate: the busiest locks
/// and CAS sites, bounded.
fn metrics_snapshot(
    target: &Target,
    aggregate: &Aggregate,
    cas: Option<&CasTimeline>,
    counters: crate::loader::ProbeCounters,
) -> MetricsSnapshot {
    let mut locks: Vec<LockMetric> = aggregate
        .locks
        .iter()
        .map(|(&address, stats)| LockMetric {
            lock: target
                .global_name(address)
                .unwrap_or_else(|| format!("{address:#x}")),
            kind: stats.kind(false),
            contentions: stats.contentions,
            acquisitions: stats.acquisitions,
            wait_seconds: stats.wait_total_ns as f64 / 1e9,
            histogram: stats.wait_histogram.to_vec(),
        })
        .collect();
    locks.sort_by_key(|lock| std::cmp::Reverse(lock.contentions));
    locks.truncate(metrics::MAX_LOCKS);
    let mut cas_sites: Vec<CasMetric> = cas
        .map(|timeline| {
            (0..timeline.sites.len())
                .map(|row| {
                    let (attempts, failures, _) = timeline.site_totals(row);
                    CasMetric {
                        site: timeline.failures_by_site.rows[row].clone(),
                        attempts,
                        failures,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    cas_sites.sort_by_key(|site| std::cmp::Reverse(site.failures));
    cas_sites.truncate(metrics::MAX_CAS_SITES);
    MetricsSnapshot {
        pid: target.process.pid,
        exe: target.process.exe_display.clone(),
        go_version: target
            .go
            .as_ref()
            .map(|go| go.version.clone())
            .unwrap_or_default(),
        elapsed_seconds: 0.0,
        locks,
        cas: cas_sites,
        maps: Vec::new(),
        events_lost: aggregate.events_lost().max(counters.output_errors),
        probe_hits: vec![
            ("lock", counters.hits),
            ("cas", counters.cas_hits),
            ("map", counters.map_hits),
        ],
    }
}

/// The busiest maps' operations and hottest keys for `/metrics`, bounded:
/// [`metrics::MAX_MAPS`] maps, [`metrics::HOT_KEYS`] keys each plus
/// `other`. Keys are hashed unless `expose_keys`.
fn map_metrics(
    target: &Target,
    aggregate: &Aggregate,
    names: &HashMap<u64, String>,
    expose_keys: bool,
) -> Vec<MapMetric> {
    let mut maps: Vec<(&u64, &MapStats)> = aggregate.maps.maps.iter().collect();
    maps.sort_by_key(|(address, stats)| (std::cmp::Reverse(stats.total_ops()), **address));
    maps.into_iter()
        .take(metrics::MAX_MAPS)
        .map(|(&address, stats)| {
            let ops = probe_common::MapOp::ALL
                .iter()
                .map(|&op| (op.name(), stats.ops[op as usize]))
                .filter(|(_, count)| *count > 0)
                .collect();
            let mut hot_keys: Vec<(String, u64)> = Vec::new();
            if let Some(keys) = &stats.keys {
                for entry in keys.top(metrics::HOT_KEYS) {
                    let text = report::maps::key_text(target, &entry.key);
                    hot_keys.push((metrics::exported_key(&text, expose_keys), entry.count));
                }
                let listed: u64 = hot_keys.iter().map(|(_, n)| n).sum();
                hot_keys.push(("other".into(), stats.total_ops().saturating_sub(listed)));
            }
            MapMetric {
                map: report::maps::map_name(target, names, address)
                    .unwrap_or_else(|| format!("{address:#x}")),
                kind: stats.kind.as_str(),
                ops,
                hot_keys,
            }
        })
        .collect()
}

/// What the live views show now.
fn live_snapshot(
    target: &Target,
    aggregate: &Aggregate,
    cas: Option<&CasTimeline>,
    selection: &MapSelection,
    figures: MetricsSnapshot,
) -> LiveSnapshot {
    let mut heatmaps: Vec<_> = report::wait_heatmap(aggregate).into_iter().collect();
    if let Some(cas) = cas {
        heatmaps.push(cas.failures_by_cpu.clone());
        heatmaps.push(cas.failures_by_site.clone());
    }
    heatmaps.extend(report::maps::build(target, &aggregate.maps, &selection.names).1);
    LiveSnapshot {
        target: format!(
            "PID {} {} ({})",
            target.process.pid,
            target.process.exe_display,
            target
                .go
                .as_ref()
                .map_or("not Go", |go| go.version.as_str())
        ),
        figures,
        heatmaps,
    }
}

/// How reports name a probe site: `function+0xOFFSET`, the offset of the
/// compare-and-swap itself for CAS sites, else of the probed instruction.
pub fn site_label(site: &PlannedSite) -> String {
    let address = site
        .cas
        .as_ref()
        .map_or(site.address, |cas| cas.cmpxchg_address);
    format!("{}+{:#x}", site.function, address - site.function_address)
}

/// `CLOCK_MONOTONIC` now, in ns: the clock of the kernel's `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Number of possible CPUs (the per-CPU maps' width).
fn possible_cpus() -> usize {
    aya::util::nr_cpus().unwrap_or(1)
}

/// Waits for the first of: SIGINT, SIGTERM, the duration, the target's exit.
async fn wait_for_stop(target: &Target, duration: Option<Duration>) -> Result<StopReason> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let exited = target_exit(target);
    tokio::select! {
        _ = sigint.recv() => Ok(StopReason::Signal),
        _ = sigterm.recv() => Ok(StopReason::Signal),
        () = deadline => Ok(StopReason::Duration),
        () = exited => Ok(StopReason::TargetExited),
    }
}

/// Resolves when the target process exits: through a pidfd where the kernel
/// has them, else by polling `/proc`.
async fn target_exit(target: &Target) {
    let pid = target.process.pid;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if raw >= 0 {
        // SAFETY: the syscall returned a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        // SAFETY: the OwnedFd stays open and unchanged inside the AsyncFd.
        if let Ok(fd) = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            // A pidfd becomes readable when the process exits.
            if fd.readable().await.is_ok() {
                return;
            }
        }
    }
    while target.process.is_alive() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
