//! One target's pipeline: probes attached, rings read, state aggregated,
//! and a snapshot of it published every tick.
//!
//! [`Pipeline::start`] attaches the plan to the process and spawns one task
//! that owns everything mutable — the attached probes, the aggregate, the
//! `--map` selection — and is the only writer of the target's state. Every
//! tick (one second) it reads the kernel's counters, folds them in, and
//! publishes an immutable [`Snapshot`] on a watch channel, which any number
//! of consumers (metrics, JSON lines, the live views) read without ever
//! locking the state. [`Pipeline::stop`] detaches the probes, drains the
//! rings, and returns the final snapshot: the report.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use probe_common::Control;

mod overhead;

use overhead::Overhead;

use crate::{
    advisor,
    aggregate::{Aggregator, Catalog, HealthReading, KernelSample, SnapshotInputs, Watched},
    goruntime,
    governor::Budget,
    intake::{Intake, IntakeError},
    loader::{AttachedProbes, LoadError, LoadedObject},
    maphealth,
    model::{MapImplementation, MapReadingCost, Snapshot, StopReason, TargetInfo},
    plan::{
        maps::{resolve_selector, MapSelector, SelectorError},
        native::{native_lock_calls, NativeLockCall},
        ProbePlan, SiteMode,
    },
    process::{
        monotonic_ns, own_peak_rss_bytes, pointer_globals, Memory, MemoryError, Process, Target,
    },
};

/// How often the pipeline reads the kernel's counters and publishes a
/// snapshot (the width of one time column).
pub const TICK: Duration = Duration::from_secs(1);

/// How often a governed pipeline reads its target's CPU time between ticks.
const CPU_POLL: Duration = Duration::from_millis(100);

/// Errors running a pipeline.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// A `--map` names nothing.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// `--map` needs the target's memory.
    #[error("--map needs the target's memory")]
    Memory(#[source] MemoryError),
    /// The probes could not be attached, or read back.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The target exited while the probes were being attached.
    #[error("PID {0} exited while mapwatch was attaching")]
    Exited(u32),
    /// The pipeline's task ended without a report.
    #[error("the pipeline of PID {0} ended without a report")]
    NoReport(u32),
    /// The rings could not be read.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// The pipeline's task ended abnormally.
    #[error("the pipeline task of PID {pid} failed")]
    Task {
        /// The process.
        pid: u32,
        /// What happened to it.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// How a pipeline reads its target.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Pages per CPU ring buffer (a power of two).
    pub buffer_pages: usize,
    /// Maps whose keys to report (`--map`: names or addresses).
    pub map_selection: Vec<String>,
    /// The overhead governor's budget (`--overhead-budget`).
    pub overhead_budget: Budget,
}

/// A running pipeline.
pub struct Pipeline {
    feeds: Feeds,
    stop: oneshot::Sender<StopReason>,
    report: oneshot::Receiver<Snapshot>,
    task: JoinHandle<Result<(), PipelineError>>,
    pid: u32,
    /// Probes attached.
    pub attached: usize,
    /// CPUs whose rings are read.
    pub cpus: usize,
}

impl Pipeline {
    /// Attaches `plan` to the target with the programs of `object` and
    /// starts its task (within a tokio runtime).
    pub fn start(
        target: &Target,
        plan: Arc<ProbePlan>,
        object: LoadedObject,
        options: &PipelineOptions,
    ) -> Result<Self, PipelineError> {
        let pid = target.process.pid;
        // The line tables are read before anything is attached: events are
        // named through them (sync.Map's inlined operations), and reading
        // them later would stall the task that must keep up with the rings.
        let started = Instant::now();
        let symbolizer = Arc::new(target.symbolizer());
        symbolizer.warm();
        log::debug!("PID {pid}: line tables read in {:?}", started.elapsed());
        let native_calls = if plan.futex {
            native_calls(&target.process)
        } else {
            Vec::new()
        };
        let mut probes = match AttachedProbes::attach(
            object,
            &plan,
            pid,
            &target.process.exe_path,
            &target.process.exe_display,
            target.load_bias,
            &native_calls,
        ) {
            Ok(probes) => probes,
            Err(_) if !target.process.is_alive() => return Err(PipelineError::Exited(pid)),
            Err(e) => return Err(e.into()),
        };
        log::debug!("PID {pid}: probes attached in {:?}", started.elapsed());
        if std::env::var_os("MAPWATCH_RUN_STATS").is_some() {
            probes.keep_run_stats()?;
        }
        let mut selection = MapSelection::resolve(target, &options.map_selection)?;
        selection.refresh(&mut probes)?;
        if plan.counts_maps_in_kernel() {
            // Name the maps that exist already, in case the target exits
            // before the first second is up.
            selection.scan_names();
        }
        let events = probes.take_events()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let intake = Intake::start(events, options.buffer_pages, tx)?;
        let cpus = intake.cpus.len();
        // Counting starts now, with every probe attached and every ring
        // read (events before the readers would only fill the rings), and
        // the governor's accounting with it.
        probes.set_control(Control {
            holders: u32::from(plan.holders()),
            sched: u32::from(plan.sched),
            ..Control::default_on()
        })?;
        let overhead = Overhead::start(
            options.overhead_budget,
            plan.capabilities(),
            &mut probes,
            target.process.clone(),
        )?;
        let info = TargetInfo {
            pid,
            exe: target.process.exe_display.clone(),
            comm: target.process.comm().unwrap_or_default(),
            go_version: target.exe.go.as_ref().map(|go| go.version.clone()),
            build_id: target.exe.elf.build_id_hex(),
            debug_file: target
                .exe
                .debug_file
                .as_ref()
                .and_then(|d| d.path())
                .map(|p| p.display().to_string()),
            modules: vec![target.exe_mapping()],
        };
        let catalog = Catalog::new(info, &plan, &symbolizer);
        let aggregator = Aggregator::new(
            catalog,
            plan.clone(),
            symbolizer,
            monotonic_ns(),
            possible_cpus(),
        );
        let plan_futex = plan.futex;
        let mut state = State {
            aggregator,
            probes,
            selection,
            plan,
            stacks: HashMap::new(),
            started: Instant::now(),
            overhead,
            map_reading: None,
            process: target.process.clone(),
        };
        if plan_futex {
            if let Ok(regions) = target.process.memory_regions() {
                state.aggregator.set_memory_regions(regions);
            }
        }
        // The `sync.Map`s selected by name are read before the work goes
        // on: their promotions are counted from this state.
        state.read_health();
        // What subscribers see before the first tick: the target and its
        // probes, no figures (and nothing that needs the line tables).
        let first = state.aggregator.empty_snapshot();
        let feeds = Feeds {
            raw: Arc::new(watch::Sender::new(Arc::new(first.clone()))),
            scaled: Arc::new(watch::Sender::new(Arc::new(first))),
        };
        let (stop, stopped) = oneshot::channel();
        let (report_tx, report) = oneshot::channel();
        let attached = state.probes.attached;
        let task = tokio::spawn(run(state, intake, rx, feeds.clone(), stopped, report_tx));
        Ok(Self {
            feeds,
            stop,
            report,
            task,
            pid,
            attached,
            cpus,
        })
    }

    /// A receiver of the snapshots published from now on (the latest one is
    /// there at once).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.feeds.scaled.subscribe()
    }

    /// A receiver of the snapshots as seen, unscaled (what a flight
    /// recorder keeps: a window's figures are scaled by the window's own
    /// sampling). Unlike [`subscribe`](Self::subscribe)'s channel, this one
    /// is also sent the final snapshot before it closes.
    pub fn subscribe_raw(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.feeds.raw.subscribe()
    }

    /// Whether the task has ended (it failed, or was stopped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the pipeline: switches the probes off, drains the rings, and
    /// returns the final snapshot, which says it was stopped by `reason`
    /// (it is not published: subscribers see the channel close). The probes
    /// are detached afterwards, by the pipeline's task; await
    /// [`Stopped::detached`] for that.
    pub async fn stop(self, reason: StopReason) -> Result<(Snapshot, Stopped), PipelineError> {
        // The task may have ended already (with an error, returned below).
        let _ = self.stop.send(reason);
        match self.report.await {
            Ok(report) => Ok((
                report,
                Stopped {
                    task: self.task,
                    pid: self.pid,
                },
            )),
            // The task ended without a report: its error says why.
            Err(_) => match self.task.await {
                Ok(Ok(())) => Err(PipelineError::NoReport(self.pid)),
                Ok(Err(e)) => Err(e),
                Err(source) => Err(PipelineError::Task {
                    pid: self.pid,
                    source,
                }),
            },
        }
    }
}

/// Where a pipeline publishes its snapshots.
#[derive(Clone)]
struct Feeds {
    /// As seen (sampled figures unscaled).
    raw: Arc<watch::Sender<Arc<Snapshot>>>,
    /// Scaled to the whole time: what the views show.
    scaled: Arc<watch::Sender<Arc<Snapshot>>>,
}

/// A stopped pipeline whose probes are being detached.
pub struct Stopped {
    task: JoinHandle<Result<(), PipelineError>>,
    pid: u32,
}

impl Stopped {
    /// Waits until every probe is detached.
    pub async fn detached(self) -> Result<(), PipelineError> {
        match self.task.await {
            Ok(result) => result,
            Err(source) => Err(PipelineError::Task {
                pid: self.pid,
                source,
            }),
        }
    }
}

/// Number of possible CPUs (the per-CPU maps' width).
fn possible_cpus() -> usize {
    aya::util::nr_cpus().unwrap_or(1)
}

/// What the pipeline's task owns.
struct State {
    aggregator: Aggregator,
    probes: AttachedProbes,
    selection: MapSelection,
    plan: Arc<ProbePlan>,
    /// User stacks read from the kernel so far (an id's stack never changes).
    stacks: HashMap<i64, Vec<u64>>,
    started: Instant,
    /// The overhead governor at work; `None` with no budget.
    overhead: Option<Overhead>,
    /// The last second's readings of maps' structure.
    map_reading: Option<MapReadingCost>,
    /// The target process (its mappings, read each tick with `--futex`).
    process: Process,
}

impl State {
    /// Reads the kernel's counters and tables.
    fn kernel_sample(&self) -> Result<KernelSample, LoadError> {
        Ok(KernelSample {
            counters: self.probes.counters()?,
            cas: self.probes.cas_counts(&self.aggregator.cas_sites())?,
            map_counts: if self.plan.counts_maps_in_kernel() {
                Some(self.probes.map_counts()?)
            } else {
                None
            },
            lock_stats: self.probes.lock_stats()?,
            thread_waits: if self.plan.futex {
                self.probes.thread_waits()?
            } else {
                Vec::new()
            },
            // Gone (the target exited): the last reading stands.
            memory_regions: if self.plan.futex {
                self.process.memory_regions().ok()
            } else {
                None
            },
            blocked: if self.plan.blocked_time() {
                self.probes.blocked_stats()?
            } else {
                Vec::new()
            },
            holders: if self.plan.holders() {
                self.probes.holder_stats()?
            } else {
                Vec::new()
            },
            convoys: if self.plan.holders() {
                self.probes.convoy_stats()?
            } else {
                Vec::new()
            },
            key_counts: if self.plan.map_sites.is_empty() {
                Vec::new()
            } else {
                self.probes.key_counts()?
            },
            run_queue: if self.plan.sched {
                Some(self.probes.run_queue_stats()?)
            } else {
                None
            },
        })
    }

    /// Which governed probes were on through the second that ends.
    fn watched(&self) -> Watched {
        self.overhead.as_ref().map_or(Watched::ALL, |o| Watched {
            waits: o.waits_timed(),
            run_queue: o.run_queue_watched(),
        })
    }

    /// Reads the stacks a snapshot shows that were not read yet.
    fn read_stacks(&mut self) -> Result<(), LoadError> {
        let wanted: Vec<i64> = self
            .aggregator
            .stack_ids()
            .into_iter()
            .filter(|id| !self.stacks.contains_key(id))
            .collect();
        if !wanted.is_empty() {
            self.stacks.extend(self.probes.stacks(&wanted)?);
        }
        Ok(())
    }

    /// A snapshot of everything so far, as seen (sampled figures not
    /// scaled; its overhead report says how they were sampled).
    fn raw_snapshot(&self, stopped_by: Option<StopReason>) -> Snapshot {
        self.aggregator.snapshot(&SnapshotInputs {
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            stopped_by,
            map_names: Some(&self.selection.names),
            stacks: Some(&self.stacks),
            peak_rss_bytes: own_peak_rss_bytes().unwrap_or(0),
            overhead: self.overhead.as_ref().map(Overhead::report),
            map_reading: self.map_reading,
        })
    }

    /// Sampled figures scaled to the whole time.
    fn scaled(&self, mut snapshot: Snapshot) -> Snapshot {
        if let Some(overhead) = &self.overhead {
            snapshot.scale(overhead.sampling());
            // Rates the advisor judges by were scaled with the rest.
            for map in &mut snapshot.maps {
                advisor::refresh_health_advice(map);
            }
        }
        snapshot
    }

    /// Publishes a snapshot of everything so far to whoever listens: as
    /// seen, and scaled.
    fn publish(&self, feeds: &Feeds, stopped_by: Option<StopReason>) -> Snapshot {
        let raw = self.raw_snapshot(stopped_by);
        if feeds.raw.receiver_count() > 0 {
            feeds.raw.send_replace(Arc::new(raw.clone()));
        }
        self.scaled(raw)
    }

    /// Reads the structure of the maps watched (see
    /// [`MapSelection::read_health`]).
    fn read_health(&mut self) {
        let sync_maps = self.aggregator.sync_map_addresses();
        let busiest = self.aggregator.typed_runtime_maps();
        let started = Instant::now();
        let readings =
            self.selection
                .read_health(self.aggregator.map_types(), &busiest, &sync_maps);
        let microseconds = started.elapsed().as_secs_f64() * 1e6;
        // A map found replaced was not read.
        let read = readings
            .iter()
            .filter(|(_, _, reading)| !matches!(reading, HealthReading::Replaced));
        let (maps, bytes) = read.fold((0, 0), |(maps, bytes), (_, _, reading)| {
            let read = match reading {
                HealthReading::Read { structure, .. } => structure.bytes_read,
                _ => 0,
            };
            (maps + 1, bytes + read)
        });
        self.map_reading = (maps > 0).then_some(MapReadingCost {
            budget_bytes_per_second: maphealth::READ_BUDGET_PER_SECOND,
            maps,
            bytes,
            microseconds,
        });
        for (map, implementation, reading) in readings {
            self.aggregator.add_health(map, implementation, reading);
        }
    }

    /// One tick: the selection refreshed, the kernel read, maps named.
    fn tick(&mut self) -> Result<(), LoadError> {
        self.selection.refresh(&mut self.probes)?;
        let sample = self.kernel_sample()?;
        let counters = sample.counters;
        self.aggregator.sample(sample, true, self.watched());
        self.selection.name_maps(&self.aggregator.map_addresses());
        self.read_health();
        if let Some(overhead) = &mut self.overhead {
            let key_weight = overhead.tick(&mut self.probes, &counters)?;
            self.aggregator.set_key_weight(key_weight);
        }
        Ok(())
    }
}

/// The pipeline's task: aggregates until told to stop, publishing a
/// snapshot every tick while anyone listens.
async fn run(
    mut state: State,
    intake: Intake,
    mut messages: mpsc::UnboundedReceiver<crate::intake::IntakeMessage>,
    feeds: Feeds,
    mut stopped: oneshot::Receiver<StopReason>,
    report_tx: oneshot::Sender<Snapshot>,
) -> Result<(), PipelineError> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate

    // The governor's reading of the target's CPU time, kept fresh for the
    // last part-second (the target may be gone when the session stops).
    let mut cpu_poll = tokio::time::interval(CPU_POLL);
    cpu_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            reason = &mut stopped => break reason.unwrap_or(StopReason::Signal),
            _ = cpu_poll.tick(), if state.overhead.is_some() => {
                if let Some(overhead) = &mut state.overhead {
                    overhead.poll_cpu();
                }
            }
            message = messages.recv() => match message {
                Some(message) => state.aggregator.apply(message),
                // The intake's tasks ended: a ring could not be read.
                None => break StopReason::Signal,
            },
            _ = tick.tick() => {
                let ticking = Instant::now();
                state.tick()?;
                let sampled = ticking.elapsed();
                if feeds.scaled.receiver_count() > 0 || feeds.raw.receiver_count() > 0 {
                    state.read_stacks()?;
                    let snapshot = state.publish(&feeds, None);
                    feeds.scaled.send_replace(Arc::new(snapshot));
                }
                log::debug!("tick: sampled in {sampled:?}, published in {:?}", ticking.elapsed());
            }
        }
    };
    // The CAS counts up to now go to the current column; then no probe
    // fires any more, and what the rings hold is all there will be.
    let stopping = Instant::now();
    // The probes stop counting at once (detaching them takes a kernel grace
    // period each, about 0.1 s here: that waits until the report is out).
    state.probes.set_control(Control::all_off())?;
    // Let probes that were already running on other CPUs finish (they run
    // for microseconds).
    tokio::time::sleep(Duration::from_millis(5)).await;
    intake.stop().await?;
    log::debug!("rings drained in {:?}", stopping.elapsed());
    while let Ok(message) = messages.try_recv() {
        state.aggregator.apply(message);
    }
    let last = state.kernel_sample()?;
    let counters = last.counters;
    let watched = state.watched();
    state.aggregator.sample(last, false, watched);
    if let Some(overhead) = &mut state.overhead {
        overhead.finish(&state.probes, &counters);
    }
    state.read_stacks()?;
    // Runtime maps are named by the variables holding them, read while the
    // target ran and once more now (if it is still there).
    state.selection.name_maps(&state.aggregator.map_addresses());
    let report = state.publish(&feeds, Some(reason));
    log::debug!("report built in {:?}", stopping.elapsed());
    if report_tx.send(report).is_err() {
        log::debug!("nobody waits for the report");
    }
    for runs in state.probes.program_runs() {
        if runs.runs > 0 {
            log::debug!(
                "{}: {} runs, {:.0} ns each",
                runs.program,
                runs.runs,
                runs.run_ns as f64 / runs.runs as f64
            );
        }
    }
    let detaching = Instant::now();
    state.probes.detach()?;
    log::debug!("detached in {:?}", detaching.elapsed());
    Ok(())
}

/// A reading's outcome as the aggregator takes it; `None` when the target
/// has exited (its maps went with it: no finding about them).
fn reading(
    outcome: Result<maphealth::MapStructure, maphealth::HealthError>,
    started: Instant,
    target: &Target,
) -> Option<HealthReading> {
    match outcome {
        Ok(structure) => Some(HealthReading::Read {
            structure,
            cost_ns: started.elapsed().as_nanos() as u64,
        }),
        Err(_) if !target.process.is_alive() => None,
        Err(e) => Some(HealthReading::Failed(e)),
    }
}

/// The maps chosen with `--map`, kept up to date in the kernel's selection,
/// and the names of runtime maps.
struct MapSelection {
    /// Selectors with their runtime addresses.
    selectors: Vec<MapSelector>,
    selected: HashSet<u64>,
    memory: Option<Memory>,
    target: Target,
    /// Maps by address → the pointer-sized global holding them.
    names: HashMap<u64, String>,
    /// Maps left unnamed by the last scan of the globals.
    unnamed_at_last_scan: usize,
    /// How the target's runtime maps are laid out, if it is a Go program.
    layout: Option<goruntime::MapLayout>,
    /// How the target's `sync.Map`s are laid out (Go ≤ 1.23).
    sync_layout: Option<goruntime::SyncMapLayout>,
    /// Where the turn of the other maps' readings is (see
    /// [`OTHER_MAPS_PER_TICK`]).
    next_other: usize,
    /// Selected maps whose variable now holds another map.
    replaced: HashSet<u64>,
    /// The maps the selectors pointed at when last refreshed.
    pointed_at: HashSet<u64>,
}

/// Most maps whose structure is read each tick.
pub const MAX_HEALTH_MAPS: usize = 8;

/// Runtime maps not selected read each tick, in turn among the busiest
/// [`MAX_HEALTH_MAPS`]: watching a map nobody asked about must cost the
/// target's host next to nothing (measured on the maps flood test: reading
/// its seven busiest other maps whole took 8.5 MB and 15 ms a second, and
/// the rings lost events).
pub const OTHER_MAPS_PER_TICK: usize = 2;

/// Bytes a reading of a runtime map not selected may read (a prefix of a
/// bigger one).
pub const OTHER_READ_BUDGET: u64 = 256 << 10;

impl MapSelection {
    /// Resolves the `--map` arguments against the target.
    fn resolve(target: &Target, names: &[String]) -> Result<Self, PipelineError> {
        let selectors = names
            .iter()
            .map(|name| resolve_selector(&target.exe, name))
            .collect::<Result<Vec<_>, _>>()?;
        let memory = match Memory::open(target.process.pid) {
            Ok(memory) => Some(memory),
            Err(e) if selectors.is_empty() => {
                log::warn!("runtime maps will not be named: {e}");
                None
            }
            Err(e) => return Err(PipelineError::Memory(e)),
        };
        Ok(Self {
            selectors,
            selected: HashSet::new(),
            memory,
            target: target.clone(),
            names: HashMap::new(),
            unnamed_at_last_scan: 0,
            layout: goruntime::map_layout(target.exe.go_version()),
            sync_layout: goruntime::sync_map_layout(target.exe.go_version()),
            replaced: HashSet::new(),
            next_other: 0,
            pointed_at: HashSet::new(),
        })
    }

    /// Reads the structure of the selected runtime maps whose type their
    /// operations passed (`types`: map → `*abi.MapType`; the selectors as
    /// this tick's [`refresh`](Self::refresh) resolved them), then of the
    /// `sync.Map`s (Go ≤ 1.23: those selected by name, then `sync_maps`,
    /// seen, busiest first), then of [`OTHER_MAPS_PER_TICK`] of the
    /// `busiest` other runtime maps whose type is known, in turn; at most
    /// [`MAX_HEALTH_MAPS`] in all, a selected runtime map within
    /// [`maphealth::DEFAULT_READ_BUDGET`] bytes, another within
    /// [`OTHER_READ_BUDGET`], a `sync.Map`
    /// in four small reads, all of them within
    /// [`maphealth::READ_BUDGET_PER_SECOND`] bytes. A selected runtime map
    /// its variable no longer holds is reported replaced, once, and read no
    /// more.
    fn read_health(
        &mut self,
        types: &BTreeMap<u64, u64>,
        busiest: &[u64],
        sync_maps: &[u64],
    ) -> Vec<(u64, MapImplementation, HealthReading)> {
        /// What a candidate for a reading is.
        #[derive(Clone, Copy, PartialEq)]
        enum Candidate {
            /// A runtime map selected with `--map` (its variable says
            /// whether it was replaced).
            Selected,
            /// A `sync.Map`.
            Sync,
            /// Another runtime map: no variable tells whether it was
            /// replaced; a freed one fails to read.
            Other,
        }
        let Some(memory) = &self.memory else {
            return Vec::new();
        };
        // In order: selected runtime maps, selected then busiest
        // `sync.Map`s, then the busiest other runtime maps.
        let mut candidates: Vec<(u64, Candidate)> = Vec::new();
        if self.layout.is_some() {
            let mut selected: Vec<u64> = self.selected.iter().copied().collect();
            selected.sort_unstable();
            candidates.extend(selected.into_iter().map(|m| (m, Candidate::Selected)));
        }
        if self.sync_layout.is_some() {
            let bias = self.target.load_bias;
            let by_name = self.selectors.iter().filter_map(|selector| match selector {
                MapSelector::Global { address, .. } => Some(address.wrapping_add(bias)),
                _ => None,
            });
            let mut seen = HashSet::new();
            for map in by_name.chain(sync_maps.iter().copied()) {
                if seen.insert(map) {
                    candidates.push((map, Candidate::Sync));
                }
            }
        }
        if self.layout.is_some() {
            let others: Vec<u64> = busiest
                .iter()
                .copied()
                .filter(|map| !self.selected.contains(map))
                .take(MAX_HEALTH_MAPS)
                .collect();
            if !others.is_empty() {
                let turn = self.next_other % others.len();
                let now = OTHER_MAPS_PER_TICK.min(others.len());
                candidates.extend(
                    (0..now).map(|i| (others[(turn + i) % others.len()], Candidate::Other)),
                );
                self.next_other = turn + now;
            }
        }
        let mut readings = Vec::new();
        let mut read = 0;
        let mut left = maphealth::READ_BUDGET_PER_SECOND;
        for (map, candidate) in candidates {
            let started = Instant::now();
            let (implementation, outcome) = match (candidate, self.layout, self.sync_layout) {
                (Candidate::Sync, _, Some(layout)) => {
                    if read >= MAX_HEALTH_MAPS {
                        continue;
                    }
                    read += 1;
                    (
                        MapImplementation::SyncMap,
                        maphealth::read_sync_map(memory, layout, map),
                    )
                }
                (Candidate::Selected | Candidate::Other, Some(layout), _) => {
                    let Some(&map_type) = types.get(&map) else {
                        continue;
                    };
                    if self.replaced.contains(&map) {
                        continue;
                    }
                    if candidate == Candidate::Selected && !self.pointed_at.contains(&map) {
                        self.replaced.insert(map);
                        readings.push((map, layout.implementation(), HealthReading::Replaced));
                        continue;
                    }
                    if read >= MAX_HEALTH_MAPS {
                        continue;
                    }
                    read += 1;
                    let budget = if candidate == Candidate::Selected {
                        maphealth::DEFAULT_READ_BUDGET
                    } else {
                        OTHER_READ_BUDGET
                    };
                    let outcome =
                        maphealth::read_map(memory, layout, map, map_type, budget.min(left));
                    if let Ok(structure) = &outcome {
                        left = left.saturating_sub(structure.bytes_read);
                    }
                    (layout.implementation(), outcome)
                }
                _ => continue,
            };
            match reading(outcome, started, &self.target) {
                Some(reading) => readings.push((map, implementation, reading)),
                None => break,
            }
        }
        readings
    }

    /// The runtime address a selector points at now (a map variable may
    /// have been assigned a new map; a nil map has none).
    fn current(&self, selector: &MapSelector) -> Option<u64> {
        let bias = self.target.load_bias;
        match selector {
            MapSelector::Runtime(address) => Some(*address),
            MapSelector::Global { address, .. } => Some(address.wrapping_add(bias)),
            MapSelector::Variable { address, .. } => self
                .memory
                .as_ref()?
                .read_u64(address.wrapping_add(bias))
                .ok()
                .filter(|&v| v != 0),
        }
    }

    /// Names the maps among `seen` not named yet, by reading the target's
    /// pointer-sized globals again (a map may be created at any time; a
    /// name found once is kept when the target has exited).
    fn name_maps(&mut self, seen: &[u64]) {
        if self.memory.is_none() {
            return;
        }
        let bias = self.target.load_bias;
        let unnamed = seen
            .iter()
            .filter(|&&address| {
                !self.names.contains_key(&address)
                    && self
                        .target
                        .exe
                        .global_name(address.wrapping_sub(bias))
                        .is_none()
            })
            .count();
        // Scan again only when maps appeared that the last scan did not see.
        if unnamed == 0 || unnamed == self.unnamed_at_last_scan {
            return;
        }
        self.unnamed_at_last_scan = unnamed;
        self.scan_names();
    }

    /// Reads the target's pointer-sized globals: maps by the variable
    /// holding them.
    fn scan_names(&mut self) {
        let Some(memory) = &self.memory else {
            return;
        };
        for (address, name) in pointer_globals(&self.target.exe, self.target.load_bias, memory) {
            self.names.entry(address).or_insert(name);
        }
    }

    /// Selects in the kernel the maps the selectors point at now.
    fn refresh(&mut self, probes: &mut AttachedProbes) -> Result<(), LoadError> {
        self.pointed_at = self
            .selectors
            .iter()
            .filter_map(|selector| self.current(selector))
            .collect();
        let fresh: Vec<u64> = self
            .pointed_at
            .iter()
            .copied()
            .filter(|address| !self.selected.contains(address))
            .collect();
        if !fresh.is_empty() {
            probes.select_maps(&fresh)?;
            self.selected.extend(fresh);
        }
        Ok(())
    }
}

/// The uprobes that tell a native process's condition-variable and rwlock
/// waits apart, in each glibc module it has mapped (`libc.so.6`, and
/// `libpthread.so.0` before glibc 2.34), opened through the process's root.
/// A module that cannot be read is logged and passed over: its waits stay
/// plain futex waits.
fn native_calls(process: &Process) -> Vec<(std::path::PathBuf, NativeLockCall)> {
    let pid = process.pid;
    let files = match process.mapped_code_files() {
        Ok(files) => files,
        Err(e) => {
            log::warn!("PID {pid}: condition variables and rwlocks not told apart: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for file in files {
        let name = std::path::Path::new(&file.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !(name.starts_with("libc.so") || name.starts_with("libpthread")) {
            continue;
        }
        let path = std::path::PathBuf::from(format!("/proc/{pid}/root{}", file.path));
        match crate::target::elf::ElfImage::open(&path) {
            Ok(module) => {
                let calls = native_lock_calls(&module, SiteMode::Auto);
                log::debug!("PID {pid}: {} pthread waits probed in {name}", calls.len());
                out.extend(calls.into_iter().map(|call| (path.clone(), call)));
            }
            Err(e) => log::warn!("PID {pid}: {name}: condition variables not told apart: {e}"),
        }
    }
    out
}
