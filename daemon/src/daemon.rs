//! `mapwatch daemon`: watches every process its selectors select, as they
//! come and go, each with a pipeline of its own, and serves all their
//! figures on one `/metrics` endpoint.
//!
//! One supervisor task owns the set of targets. It hears of every exec on
//! the host as it happens (the `sched:sched_process_exec` tracepoint) and
//! once per scan interval reads `/proc` for selected processes it does not
//! watch yet (those that ran before it, and all of them if the tracepoint
//! cannot be used), and attaches to them (processes of one executable
//! share its parsing and planning);
//! each watched target has a task that waits for its exit (or the daemon's
//! stop), stops its pipeline and hands the final snapshot back. An exited
//! target's final figures stay in the scrapes for a grace period, so that
//! the last scrape sees its final counts, then its series disappear. The
//! supervisor publishes what scrapes show as one [`Scrape`] on a watch
//! channel whenever the set changes.
//!
//! With `--record`, each target's task also feeds the target's snapshots
//! (as seen, unscaled) to its flight recorder ([`Recorder`]), which keeps
//! the last span of seconds, also after the target exited: the server's
//! `/report.json?pid=N&since=10m` is read from it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
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
    intake::{Intake, IntakeMessage},
    loader::exec::ExecWatch,
    loader::LoadedObject,
    model::{AttachFailure, Snapshot, StopReason},
    pipeline::{Pipeline, PipelineOptions},
    plan::{self, PlanRequest, ProbePlan},
    process::{
        select::{self, scan, Candidate, Selector},
        Process, Target,
    },
    record::{self, Recorder},
    target::Executable,
    view::metrics::{
        DaemonFigures, Feed, MetricsServer, RecorderFigures, ReportMiss, ReportQuery, Reports,
        Scrape,
    },
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
    /// Where else to look for a stripped executable's debug file.
    pub debug_dirs: Vec<std::path::PathBuf>,
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
    /// How long the flight recorder keeps each target's seconds (`None`:
    /// no recorder).
    pub record: Option<Duration>,
    /// The memory each target's recording may hold, bytes.
    pub record_bytes: usize,
}

impl DaemonOptions {
    /// The daemon's default overhead budget per target: always on means
    /// cheap.
    pub const DEFAULT_BUDGET: Budget = Budget::Percent(1.0);

    /// Pages per CPU ring per target by default: a daemon holds one ring
    /// per CPU for each of its targets, and counts are kept in the kernel
    /// (the rings carry keys' first sightings, stacks, overflow).
    pub const DEFAULT_BUFFER_PAGES: usize = 64;

    /// How long the flight recorder keeps a target's seconds by default.
    pub const DEFAULT_RECORD: Duration = Duration::from_secs(15 * 60);

    /// The memory a target's recording may hold by default.
    pub const DEFAULT_RECORD_BYTES: usize = record::DEFAULT_MAX_BYTES;
}

/// The flight recorder's recordings, by PID: each watched target's, and an
/// exited one's until its newest second is older than the span. A
/// target's task writes its recording once a second; a report request
/// reads it; neither holds the lock for longer than that.
pub struct Recordings {
    span: Duration,
    max_bytes: usize,
    by_pid: Mutex<BTreeMap<u32, Recorder>>,
}

impl Recordings {
    /// No recording yet; each will keep `span` in about `max_bytes`.
    pub fn new(span: Duration, max_bytes: usize) -> Self {
        Self {
            span,
            max_bytes,
            by_pid: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Recorder>> {
        // A panic while recording cannot leave a half-written recorder
        // worse than a missing second: go on with it.
        self.by_pid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts `pid`'s recording (a PID reused by a new process starts
    /// afresh).
    fn start(&self, pid: u32) {
        self.lock()
            .insert(pid, Recorder::new(self.span, self.max_bytes));
    }

    /// Records a snapshot of `pid`.
    fn record(&self, pid: u32, snapshot: Arc<Snapshot>) {
        if let Some(recorder) = self.lock().get_mut(&pid) {
            recorder.record(snapshot, SystemTime::now());
        }
    }

    /// Drops what is older than the span: the recordings of exited targets
    /// with nothing left (`watched` says which targets still run). Returns
    /// the seconds the recordings dropped had dropped early.
    fn expire(&self, watched: &BTreeMap<u32, Watched>) -> u64 {
        let now = SystemTime::now();
        let mut dropped = 0;
        self.lock().retain(|pid, recorder| {
            recorder.expire(now);
            let keep = watched.contains_key(pid) || !recorder.is_empty();
            if !keep {
                dropped += recorder.dropped_for_memory();
            }
            keep
        });
        dropped
    }

    /// What the recordings hold. `dropped` counts what was dropped early
    /// by recordings gone since.
    fn figures(&self, dropped: u64) -> RecorderFigures {
        let by_pid = self.lock();
        RecorderFigures {
            recordings: by_pid.len(),
            bytes: by_pid.values().map(Recorder::bytes).sum(),
            dropped_seconds: dropped
                + by_pid
                    .values()
                    .map(Recorder::dropped_for_memory)
                    .sum::<u64>(),
        }
    }
}

impl Reports for Recordings {
    fn report(&self, query: &ReportQuery) -> Result<Snapshot, ReportMiss> {
        let by_pid = self.lock();
        if let Some(pid) = query.pid {
            let recorder = by_pid.get(&pid).ok_or(ReportMiss::Unknown(pid))?;
            return recorder
                .window(query.from, query.to)
                .ok_or(ReportMiss::NotInWindow(pid));
        }
        let overlapping: Vec<(&u32, &Recorder)> = by_pid
            .iter()
            .filter(|(_, r)| {
                r.oldest().is_some_and(|oldest| oldest <= query.to)
                    && r.newest().is_some_and(|newest| newest >= query.from)
            })
            .collect();
        let mut found: Vec<Snapshot> = overlapping
            .iter()
            .filter_map(|(_, r)| r.window(query.from, query.to))
            .collect();
        match found.len() {
            0 => Err(ReportMiss::NoneInWindow),
            1 => Ok(found.remove(0)),
            _ => Err(ReportMiss::Several(
                found
                    .iter()
                    .map(|s| format!("PID {} ({})", s.target.pid, s.target.comm))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }
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
    let recordings = options
        .record
        .map(|span| Arc::new(Recordings::new(span, options.record_bytes)));
    let server = MetricsServer::bind_scrapes(
        options.metrics,
        scrapes,
        options.metrics_expose_keys,
        recordings.clone().map(|r| r as Arc<dyn Reports>),
    )
    .await?;
    // Execs are seen as they happen; the scan finds what was there before
    // (and everything, if the watcher cannot run).
    let (exec_tx, mut execs) = mpsc::unbounded_channel();
    let _exec_watch = ExecWatch::start()
        .map_err(anyhow::Error::from)
        .and_then(|(watch, events)| Ok((watch, Intake::start(events, EXEC_RING_PAGES, exec_tx)?)))
        .map_err(|e| eprintln!("mapwatch: execs will be found by scanning /proc only: {e}"))
        .ok();
    let selectors: Vec<String> = options.selectors.iter().map(ToString::to_string).collect();
    eprintln!(
        "mapwatch: daemon serving http://{}/metrics{}, watching {}",
        server.local_addr,
        match options.record {
            Some(span) => format!(
                " and the last {} of each target at /report.json",
                span_text(span)
            ),
            None => String::new(),
        },
        selectors.join(" ")
    );
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
    let mut supervisor = Supervisor {
        options,
        recordings,
        stop: watch::channel(false).0,
        ended_tx,
        tasks: JoinSet::new(),
        watched: BTreeMap::new(),
        ended: Vec::new(),
        refused: HashSet::new(),
        attach_errors: BTreeMap::new(),
        prepared: HashMap::new(),
        dropped_early: 0,
        me: std::process::id(),
    };
    let mut tick = tokio::time::interval(options.scan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said_waiting = false;
    loop {
        let mut changed = false;
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            Some(end) = ended_rx.recv() => {
                supervisor.watched.remove(&end.pid);
                if let Some(report) = end.report {
                    eprintln!("mapwatch: PID {} ended ({})", end.pid, report.target.exe);
                    supervisor.ended.push((Instant::now(), report));
                }
                changed = true;
            }
            Some(message) = execs.recv() => {
                if let IntakeMessage::Execs(pids) = message {
                    for pid in pids {
                        if let Some(candidate) = select::check(&options.selectors, pid) {
                            changed |= supervisor.consider(candidate).await;
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let candidates = scan(&options.selectors, supervisor.me);
                if candidates.is_empty() && supervisor.watched.is_empty() && !said_waiting {
                    eprintln!("mapwatch: no process matches {} yet; waiting", selectors.join(" "));
                    said_waiting = true;
                }
                let alive: HashSet<u32> = candidates.iter().map(|c| c.pid).collect();
                supervisor.refused.retain(|pid| alive.contains(pid));
                for candidate in candidates {
                    changed |= supervisor.consider(candidate).await;
                }
                changed |= supervisor.expire();
            }
        }
        if changed {
            let _ = scrapes_tx.send(Arc::new(supervisor.scrape()));
        }
    }
    eprintln!(
        "mapwatch: stopping: detaching from {} target(s)",
        supervisor.watched.len()
    );
    let _ = supervisor.stop.send(true);
    while supervisor.tasks.join_next().await.is_some() {}
    drop(server);
    Ok(())
}

/// Pages per CPU of the exec watcher's ring (an exec is 24 bytes).
const EXEC_RING_PAGES: usize = 8;

/// The daemon's state: the set of targets, owned by its one loop.
struct Supervisor<'a> {
    options: &'a DaemonOptions,
    recordings: Option<Arc<Recordings>>,
    /// Tells every target's task to stop.
    stop: watch::Sender<bool>,
    ended_tx: mpsc::UnboundedSender<Ended>,
    tasks: JoinSet<()>,
    watched: BTreeMap<u32, Watched>,
    /// Exited targets' final snapshots, while in their grace period.
    ended: Vec<(Instant, Arc<Snapshot>)>,
    /// Processes selected but not watched (they failed, or exceeded
    /// --max-targets): not tried again while they live.
    refused: HashSet<u32>,
    attach_errors: BTreeMap<AttachFailure, u64>,
    prepared: HashMap<(u64, u64), Arc<Prepared>>,
    /// Seconds dropped early by recordings since expired.
    dropped_early: u64,
    me: u32,
}

impl Supervisor<'_> {
    /// Watches a selected process unless it is watched, refused, or
    /// mapwatch itself; whether anything changed.
    async fn consider(&mut self, candidate: Candidate) -> bool {
        let pid = candidate.pid;
        if pid == self.me || self.watched.contains_key(&pid) || self.refused.contains(&pid) {
            return false;
        }
        let options = self.options;
        if self.watched.len() >= options.max_targets {
            log::warn!(
                "PID {pid} ({}): not watched, --max-targets {} reached",
                candidate.comm,
                options.max_targets
            );
            *self
                .attach_errors
                .entry(AttachFailure::MaxTargets)
                .or_default() += 1;
            self.refused.insert(pid);
            return true;
        }
        match start(pid, options, &mut self.prepared).await {
            Ok((target, pipeline)) => {
                eprintln!(
                    "mapwatch: attached {} probe(s) to PID {pid} ({})",
                    pipeline.attached, target.process.exe_display
                );
                self.watched.insert(
                    pid,
                    Watched {
                        snapshots: pipeline.subscribe(),
                    },
                );
                if let Some(recordings) = &self.recordings {
                    recordings.start(pid);
                }
                self.tasks.spawn(follow(
                    target,
                    pipeline,
                    self.stop.subscribe(),
                    self.ended_tx.clone(),
                    self.recordings.clone(),
                ));
            }
            Err((reason, error)) => {
                eprintln!(
                    "mapwatch: PID {pid} ({}) not watched: {error:#}",
                    candidate.comm
                );
                *self.attach_errors.entry(reason).or_default() += 1;
                self.refused.insert(pid);
            }
        }
        true
    }

    /// Drops what outlived its time: exited targets past their grace
    /// period, recorded seconds past the span; whether anything changed.
    fn expire(&mut self) -> bool {
        let mut changed = false;
        if let Some(recordings) = &self.recordings {
            self.dropped_early += recordings.expire(&self.watched);
            // The recorder's figures change every second.
            changed = true;
        }
        let before = self.ended.len();
        let grace = self.options.grace;
        self.ended.retain(|(at, _)| at.elapsed() < grace);
        changed | (self.ended.len() != before)
    }

    /// What scrapes show now.
    fn scrape(&self) -> Scrape {
        let mut targets: Vec<Feed> = self
            .watched
            .values()
            .map(|w| Feed::Live(w.snapshots.clone()))
            .collect();
        targets.extend(
            self.ended
                .iter()
                .map(|(_, report)| Feed::Ended(report.clone())),
        );
        Scrape {
            targets,
            daemon: Some(DaemonFigures {
                targets: self.watched.len(),
                attach_errors: self.attach_errors.iter().map(|(r, n)| (*r, *n)).collect(),
                recorder: self
                    .recordings
                    .as_ref()
                    .map(|r| r.figures(self.dropped_early)),
            }),
        }
    }
}

/// A span as flags give it: `15m`, `90s`, `1h`.
fn span_text(span: Duration) -> String {
    match span.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s > 0 => format!("{s}s"),
        _ => format!("{}ms", span.as_millis()),
    }
}

/// The next change of a watch channel, if there is one to watch.
async fn changed<T>(
    receiver: Option<&mut watch::Receiver<T>>,
) -> Result<(), watch::error::RecvError> {
    match receiver {
        Some(receiver) => receiver.changed().await,
        None => std::future::pending().await,
    }
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
            let seen = process.clone();
            let debug_dirs = options.debug_dirs.clone();
            let request = options.probes.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                let exe = crate::process::open_executable(&seen, &debug_dirs)
                    .with_context(|| format!("PID {pid}: {}", seen.exe_display))
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

/// One target's task: records its snapshots (with a recorder), waits for
/// its exit (or the daemon's stop, or the pipeline's failure), stops the
/// pipeline, hands the final snapshot back, then waits for its probes to
/// be detached.
async fn follow(
    target: Target,
    pipeline: Pipeline,
    mut stop: watch::Receiver<bool>,
    ended: mpsc::UnboundedSender<Ended>,
    recordings: Option<Arc<Recordings>>,
) {
    let pid = target.process.pid;
    let mut health = tokio::time::interval(Duration::from_millis(250));
    let mut raw = recordings.as_ref().map(|_| pipeline.subscribe_raw());
    let record = |raw: &mut watch::Receiver<Arc<Snapshot>>| {
        if let Some(recordings) = &recordings {
            recordings.record(pid, raw.borrow_and_update().clone());
        }
    };
    if let Some(raw) = raw.as_mut() {
        record(raw);
    }
    let reason = loop {
        tokio::select! {
            () = target.exited() => break StopReason::TargetExited,
            _ = stop.changed() => break StopReason::Signal,
            Ok(()) = changed(raw.as_mut()), if raw.is_some() => {
                if let Some(raw) = raw.as_mut() {
                    record(raw);
                }
            }
            _ = health.tick() => {
                if pipeline.is_finished() {
                    break StopReason::Signal;
                }
            }
        }
    };
    match pipeline.stop(reason).await {
        Ok((report, stopped)) => {
            // The pipeline sent its final snapshot, as seen, before the
            // report.
            if let Some(raw) = raw.as_mut() {
                record(raw);
            }
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
