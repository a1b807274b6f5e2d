//! `mapwatch daemon`: watches every process its selectors select, as they
//! come and go, each with a pipeline of its own, and serves all their
//! figures on one `/metrics` endpoint.
//!
//! One supervisor task owns the set of targets. Once per scan interval it
//! reads `/proc` for selected processes it does not watch yet and attaches
//! to them (processes of one executable share its parsing and planning);
//! each watched target has a task that waits for its exit (or the daemon's
//! stop), stops its pipeline and hands the final snapshot back. An exited
//! target's final figures stay in the scrapes for a grace period, so that
//! the last scrape sees its final counts, then its series disappear. The
//! supervisor publishes what scrapes show as one [`Scrape`] on a watch
//! channel whenever the set changes.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    governor::Budget,
    host,
    loader::LoadedObject,
    model::{AttachFailure, Snapshot, StopReason},
    pipeline::{Pipeline, PipelineOptions},
    plan::{self, PlanRequest, ProbePlan},
    process::{
        select::{scan, Selector},
        Process, Target,
    },
    target::Executable,
    view::metrics::{DaemonFigures, Feed, MetricsServer, Scrape},
};

/// What `mapwatch daemon` was asked to do.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Which processes to watch.
    pub selectors: Vec<Selector>,
    /// Where to serve metrics.
    pub metrics: SocketAddr,
    /// Export map keys as they are (else hashed).
    pub metrics_expose_keys: bool,
    /// What to probe in each target.
    pub probes: PlanRequest,
    /// Pages per CPU ring buffer, per target.
    pub buffer_pages: usize,
    /// Each target's overhead budget.
    pub overhead_budget: Budget,
    /// How long an exited target's final figures stay in the scrapes.
    pub grace: Duration,
    /// The most targets watched at once.
    pub max_targets: usize,
    /// How often `/proc` is scanned for new processes.
    pub scan_interval: Duration,
}

impl DaemonOptions {
    /// The daemon's default overhead budget per target: always on means
    /// cheap.
    pub const DEFAULT_BUDGET: Budget = Budget::Percent(1.0);
}

/// A target being watched.
struct Watched {
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

/// A target's task's last word.
struct Ended {
    pid: u32,
    /// Its final snapshot, unless stopping failed.
    report: Option<Arc<Snapshot>>,
}

/// An executable parsed and planned once for every process running it.
struct Prepared {
    exe: Arc<Executable>,
    plan: Arc<ProbePlan>,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(options: &DaemonOptions) -> Result<()> {
    host::check(&host::HostPaths::default())?;
    let (scrapes_tx, scrapes) = watch::channel(Arc::new(Scrape {
        targets: Vec::new(),
        daemon: Some(DaemonFigures::default()),
    }));
    let server =
        MetricsServer::bind_scrapes(options.metrics, scrapes, options.metrics_expose_keys).await?;
    let selectors: Vec<String> = options.selectors.iter().map(ToString::to_string).collect();
    eprintln!(
        "mapwatch: daemon serving http://{}/metrics, watching {}",
        server.local_addr,
        selectors.join(" ")
    );
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut watched: BTreeMap<u32, Watched> = BTreeMap::new();
    let mut ended: Vec<(Instant, Arc<Snapshot>)> = Vec::new();
    // Processes selected but not watched (they failed, or exceeded
    // --max-targets): not tried again while they live.
    let mut refused: HashSet<u32> = HashSet::new();
    let mut attach_errors: BTreeMap<AttachFailure, u64> = BTreeMap::new();
    let mut prepared: HashMap<(u64, u64), Arc<Prepared>> = HashMap::new();
    let mut tick = tokio::time::interval(options.scan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = std::process::id();
    let mut said_waiting = false;
    loop {
        let mut changed = false;
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            Some(end) = ended_rx.recv() => {
                watched.remove(&end.pid);
                if let Some(report) = end.report {
                    eprintln!("mapwatch: PID {} ended ({})", end.pid, report.target.exe);
                    ended.push((Instant::now(), report));
                }
                changed = true;
            }
            _ = tick.tick() => {
                let candidates = scan(&options.selectors, me);
                if candidates.is_empty() && watched.is_empty() && !said_waiting {
                    eprintln!("mapwatch: no process matches {} yet; waiting", selectors.join(" "));
                    said_waiting = true;
                }
                let alive: HashSet<u32> = candidates.iter().map(|c| c.pid).collect();
                refused.retain(|pid| alive.contains(pid));
                for candidate in candidates {
                    let pid = candidate.pid;
                    if watched.contains_key(&pid) || refused.contains(&pid) {
                        continue;
                    }
                    if watched.len() >= options.max_targets {
                        log::warn!("PID {pid} ({}): not watched, --max-targets {} reached", candidate.comm, options.max_targets);
                        *attach_errors.entry(AttachFailure::MaxTargets).or_default() += 1;
                        refused.insert(pid);
                        changed = true;
                        continue;
                    }
                    match start(pid, options, &mut prepared).await {
                        Ok((target, pipeline)) => {
                            eprintln!(
                                "mapwatch: attached {} probe(s) to PID {pid} ({})",
                                pipeline.attached, target.process.exe_display
                            );
                            watched.insert(pid, Watched { snapshots: pipeline.subscribe() });
                            tasks.spawn(follow(target, pipeline, stop_rx.clone(), ended_tx.clone()));
                        }
                        Err((reason, error)) => {
                            eprintln!("mapwatch: PID {pid} ({}) not watched: {error:#}", candidate.comm);
                            *attach_errors.entry(reason).or_default() += 1;
                            refused.insert(pid);
                        }
                    }
                    changed = true;
                }
                let before = ended.len();
                ended.retain(|(at, _)| at.elapsed() < options.grace);
                changed |= ended.len() != before;
            }
        }
        if changed {
            let mut targets: Vec<Feed> = watched
                .values()
                .map(|w| Feed::Live(w.snapshots.clone()))
                .collect();
            targets.extend(ended.iter().map(|(_, report)| Feed::Ended(report.clone())));
            let _ = scrapes_tx.send(Arc::new(Scrape {
                targets,
                daemon: Some(DaemonFigures {
                    targets: watched.len(),
                    attach_errors: attach_errors.iter().map(|(r, n)| (*r, *n)).collect(),
                }),
            }));
        }
    }
    eprintln!(
        "mapwatch: stopping: detaching from {} target(s)",
        watched.len()
    );
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    drop(server);
    Ok(())
}

/// Resolves, plans (once per executable) and attaches to `pid`.
async fn start(
    pid: u32,
    options: &DaemonOptions,
    prepared: &mut HashMap<(u64, u64), Arc<Prepared>>,
) -> Result<(Target, Pipeline), (AttachFailure, anyhow::Error)> {
    let process = Process::open(pid)
        .with_context(|| format!("PID {pid}"))
        .map_err(|e| (AttachFailure::Target, e))?;
    // The BPF object loads on another core while the executable is read
    // and planned (if no process of it was before).
    let loading = tokio::task::spawn_blocking(LoadedObject::load);
    let identity = process.exe_identity();
    let ready = match prepared.get(&identity) {
        Some(ready) => ready.clone(),
        None => {
            let exe_path = process.exe_path.clone();
            let exe_display = process.exe_display.clone();
            let request = options.probes.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                let exe = Executable::open(&exe_path, &exe_display)
                    .with_context(|| format!("PID {pid}: {exe_display}"))
                    .map_err(|e| (AttachFailure::Target, e))?;
                let plan = plan::plan(&exe, &request)
                    .with_context(|| format!("PID {pid}"))
                    .map_err(|e| (AttachFailure::Plan, e))?;
                Ok::<_, (AttachFailure, anyhow::Error)>(Prepared {
                    exe: Arc::new(exe),
                    plan: Arc::new(plan),
                })
            })
            .await
            .map_err(|e| (AttachFailure::Target, anyhow::Error::new(e)))??;
            let ready = Arc::new(parsed);
            if prepared.len() >= options.max_targets {
                prepared.clear();
            }
            prepared.insert(identity, ready.clone());
            ready
        }
    };
    let object = loading
        .await
        .map_err(|e| (AttachFailure::Load, anyhow::Error::new(e)))?
        .context("loading the BPF probes")
        .map_err(|e| (AttachFailure::Load, e))?;
    let target = Target::with_executable(process, ready.exe.clone())
        .with_context(|| format!("PID {pid}"))
        .map_err(|e| (AttachFailure::Target, e))?;
    let pipeline = Pipeline::start(
        &target,
        ready.plan.clone(),
        object,
        &PipelineOptions {
            buffer_pages: options.buffer_pages,
            map_selection: options.probes.map_selection.clone(),
            overhead_budget: options.overhead_budget,
        },
    )
    .with_context(|| format!("PID {pid}"))
    .map_err(|e| (AttachFailure::Attach, e))?;
    Ok((target, pipeline))
}

/// One target's task: waits for its exit (or the daemon's stop, or the
/// pipeline's failure), stops the pipeline, hands the final snapshot back,
/// then waits for its probes to be detached.
async fn follow(
    target: Target,
    pipeline: Pipeline,
    mut stop: watch::Receiver<bool>,
    ended: mpsc::UnboundedSender<Ended>,
) {
    let pid = target.process.pid;
    let mut health = tokio::time::interval(Duration::from_millis(250));
    let reason = loop {
        tokio::select! {
            () = target.exited() => break StopReason::TargetExited,
            _ = stop.changed() => break StopReason::Signal,
            _ = health.tick() => {
                if pipeline.is_finished() {
                    break StopReason::Signal;
                }
            }
        }
    };
    match pipeline.stop(reason).await {
        Ok((report, stopped)) => {
            let _ = ended.send(Ended {
                pid,
                report: Some(Arc::new(report)),
            });
            if let Err(e) = stopped.detached().await {
                log::warn!("PID {pid}: detaching: {e}");
            }
        }
        Err(e) => {
            eprintln!("mapwatch: PID {pid}: {e:#}");
            let _ = ended.send(Ended { pid, report: None });
        }
    }
}
