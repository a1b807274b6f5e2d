//! Aggregation: the state of one target, owned by one task. Kernel events
//! and counter readings go in; a [`Snapshot`](crate::model::Snapshot) of
//! everything observed comes out whenever asked (each tick, and at the end).
//!
//! The state is plain data: [`Aggregator::apply`] folds in what the intake
//! read from the rings, [`Aggregator::sample`] what the pipeline read from
//! the kernel's counters, and [`Aggregator::snapshot`] projects it all onto
//! the model, naming addresses through the target's symbols.

pub mod cas;
pub mod gc;
pub mod locks;
pub mod maps;
pub mod runqueue;
mod snapshot;
pub mod timeline;
pub mod topk;

use std::{collections::BTreeMap, sync::Arc};

use probe_common::{
    BlockedStats, CasCounts, ConvoyStats, HolderKey, HolderStats, KeyCounts, KeyCountsKey,
    LockRole, LockStats as KernelStats, LockStatsKey, MapCounts, MapOp, RunQueueStats,
    ThreadWaitKey, ThreadWaitStats,
};

use crate::{
    intake::IntakeMessage,
    model::{CodeLocation, LockKind, MapKind, MemoryRegion, ProbeCounters, ProbeInfo, TargetInfo},
    plan::{GoRuntimeProbes, ProbePlan},
    target::Symbolizer,
};
use cas::CasTimeline;
use gc::Gc;
use locks::Locks;
pub use maps::{HealthReading, PromotionTrack};
use maps::{MapAggregate, MapSiteInfo, OpResolver, DEFAULT_KEY_CAPACITY};
use runqueue::RunQueue;
use timeline::Timeline;

pub use snapshot::SnapshotInputs;

/// What a snapshot says about the target and its probes that does not
/// change while attached.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The target.
    pub target: TargetInfo,
    /// The probes attached.
    pub probes: Vec<ProbeInfo>,
    /// Global locks DWARF knows of, by runtime address.
    pub global_locks: BTreeMap<u64, LockKind>,
    /// Whether blocked time is measured.
    pub blocked_time: bool,
    /// The CAS sites, in report order: plan index and the CAS's location.
    pub cas_sites: Vec<(usize, CodeLocation)>,
    /// When counting began, Unix seconds (second 0 of the timeline).
    pub started_unix_seconds: f64,
    /// Whether Go's GC and pauses are probed, and whether pauses carry
    /// their reason.
    pub go_runtime: Option<GoRuntimeProbes>,
    /// Whether the target's waits for a CPU are timed.
    pub run_queue: bool,
}

impl Catalog {
    /// The catalog of a plan attached to a target.
    pub fn new(target: TargetInfo, plan: &ProbePlan, symbolizer: &Symbolizer) -> Self {
        let probes = plan
            .sites
            .iter()
            .map(|site| ProbeInfo {
                kind: site.probe_kind(),
                function: site.at.function.clone(),
                address: site.at.address,
                offset: site.at.offset(),
                site: site.at.cost(),
                skip_when: site.at.skip_when,
            })
            .chain(plan.map_sites.iter().map(|site| ProbeInfo {
                kind: crate::model::ProbeKind::Map,
                function: site.at.function.clone(),
                address: site.at.address,
                offset: site.at.offset(),
                site: site.at.cost(),
                skip_when: site.at.skip_when,
            }))
            .collect();
        let bias = symbolizer.load_bias();
        let global_locks = symbolizer
            .executable()
            .global_locks
            .iter()
            .map(|lock| (lock.address.wrapping_add(bias), lock.kind))
            .collect();
        let cas_sites = plan
            .sites
            .iter()
            .enumerate()
            .filter_map(|(index, site)| {
                let (cas, _) = site.cas()?;
                Some((
                    index,
                    CodeLocation {
                        function: site.at.function.clone(),
                        offset: cas.cmpxchg_address - site.at.function_address,
                    },
                ))
            })
            .collect();
        Self {
            target,
            probes,
            global_locks,
            blocked_time: plan.blocked_time(),
            cas_sites,
            go_runtime: plan.go_runtime(),
            run_queue: plan.sched,
            started_unix_seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

/// What the pipeline read from the kernel's counters at one tick.
#[derive(Debug, Clone, Default)]
pub struct KernelSample {
    /// The probe counters.
    pub counters: ProbeCounters,
    /// Per CAS site (in [`Catalog::cas_sites`] order) and CPU, cumulative.
    pub cas: Vec<Vec<CasCounts>>,
    /// Per map counted in the kernel, cumulative, if map sites count there.
    pub map_counts: Option<Vec<(u64, MapCounts)>>,
    /// The kernel's lock table: per (lock, call site, role) and CPU.
    pub lock_stats: Vec<(LockStatsKey, Vec<KernelStats>)>,
    /// The kernel's park table: per lock and CPU.
    pub blocked: Vec<(u64, Vec<BlockedStats>)>,
    /// The kernel's table of native threads' waits: per (lock, thread,
    /// role), cumulative (empty without `--futex`).
    pub thread_waits: Vec<(ThreadWaitKey, ThreadWaitStats)>,
    /// The target's writable mappings, in address order, when read (with
    /// `--futex`: where native locks that are no globals lie).
    pub memory_regions: Option<Vec<(u64, u64, MemoryRegion)>>,
    /// The kernel's holder table: per (lock, holder call site) and CPU.
    pub holders: Vec<(HolderKey, Vec<HolderStats>)>,
    /// The kernel's convoy table: per (RWMutex, writer call site) and CPU.
    pub convoys: Vec<(HolderKey, Vec<ConvoyStats>)>,
    /// The kernel's key table: per (map, key, caller) and CPU.
    pub key_counts: Vec<(KeyCountsKey, Vec<KeyCounts>)>,
    /// The target's waits for a CPU per CPU, cumulative, when timed.
    pub run_queue: Option<Vec<RunQueueStats>>,
}

/// Which of the governed probes were on through the second a reading
/// closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// Lock waits were timed.
    pub waits: bool,
    /// Waits for a CPU were timed.
    pub run_queue: bool,
}

impl Watched {
    /// Everything on (no governor).
    pub const ALL: Self = Self {
        waits: true,
        run_queue: true,
    };
}

/// Whether a lock event or table row of kernel role `role` is a wait for
/// another thread, in a condition variable or a join (reported apart from
/// the locks).
fn is_signal_wait(role: u32) -> bool {
    matches!(
        LockRole::from_raw(role),
        Some(LockRole::CondWait | LockRole::ThreadJoin)
    )
}

/// The state of one target.
pub struct Aggregator {
    catalog: Catalog,
    plan: Arc<ProbePlan>,
    symbolizer: Arc<Symbolizer>,
    /// `CLOCK_MONOTONIC` ns when the session began (time column 0).
    start_ns: u64,
    locks: Locks,
    /// Native threads' waits in condition variables and joins: kept apart
    /// from the locks, since a wait for another thread is not contention.
    signal_waits: Locks,
    /// Native threads' waits per (lock, thread, role), as last read.
    thread_waits: Vec<(ThreadWaitKey, ThreadWaitStats)>,
    /// The target's writable mappings, as last read.
    memory_regions: Vec<(u64, u64, MemoryRegion)>,
    maps: MapAggregate,
    cas: Option<CasTimeline>,
    /// The CAS time column the next sample goes to.
    cas_column: usize,
    /// Per second, per lock.
    timeline: Timeline,
    /// Go's GC cycles and pauses, when probed.
    gc: Option<Gc>,
    /// The target's waits for a CPU, when timed.
    run_queue: Option<RunQueue>,
    counters: ProbeCounters,
    lost_per_cpu: BTreeMap<u32, u64>,
    /// Samples that could not be decoded.
    malformed: u64,
    /// Lock events received.
    events: u64,
    /// Events from processes other than the target (should stay zero: the
    /// probes are attached to one process).
    foreign: u64,
}

impl Aggregator {
    /// An empty aggregate for `plan` attached to the target `catalog`
    /// describes, in a session that began at `start_ns` (`CLOCK_MONOTONIC`,
    /// the clock of `bpf_ktime_get_ns`) on a host with `cpus` possible CPUs.
    pub fn new(
        catalog: Catalog,
        plan: Arc<ProbePlan>,
        symbolizer: Arc<Symbolizer>,
        start_ns: u64,
        cpus: usize,
    ) -> Self {
        let sites: Vec<MapSiteInfo> = plan
            .map_sites
            .iter()
            .map(|site| MapSiteInfo {
                kind: site.function.kind,
                refine_op: site.function.kind == crate::model::MapKind::SyncMap
                    && site.function.user_op,
            })
            .collect();
        let resolver: Option<OpResolver> = sites.iter().any(|s| s.refine_op).then(|| {
            let symbolizer = symbolizer.clone();
            Arc::new(move |return_address: u64| symbolizer.sync_map_operation(return_address))
                as OpResolver
        });
        let gc_probes = catalog.go_runtime;
        let run_queue = catalog.run_queue;
        let cas = (!catalog.cas_sites.is_empty())
            .then(|| CasTimeline::new(catalog.cas_sites.clone(), cpus));
        Self {
            catalog,
            plan,
            symbolizer,
            start_ns,
            locks: Locks::default(),
            signal_waits: Locks::default(),
            thread_waits: Vec::new(),
            memory_regions: Vec::new(),
            maps: MapAggregate::new(sites, resolver, DEFAULT_KEY_CAPACITY),
            cas,
            cas_column: 0,
            timeline: Timeline::default(),
            gc: gc_probes.map(|probes| Gc::new(probes.gc_pauses_told_apart)),
            run_queue: run_queue.then(RunQueue::default),
            counters: ProbeCounters::default(),
            lost_per_cpu: BTreeMap::new(),
            malformed: 0,
            events: 0,
            foreign: 0,
        }
    }

    /// The time column (seconds since the session began) of a timestamp.
    fn column(&self, timestamp_ns: u64) -> usize {
        (timestamp_ns.saturating_sub(self.start_ns) / 1_000_000_000) as usize
    }

    /// Each keyed map operation read from now on stands for `weight`
    /// operations (key sampling; see `MapAggregate::set_key_weight`).
    pub fn set_key_weight(&mut self, weight: u64) {
        self.maps.set_key_weight(weight);
    }

    /// Folds one intake message in. Events from a process other than the
    /// target are counted as foreign and otherwise ignored.
    pub fn apply(&mut self, message: IntakeMessage) {
        let pid = self.catalog.target.pid;
        match message {
            IntakeMessage::Events(events) => {
                for event in events {
                    self.events += 1;
                    if event.header.tgid != pid {
                        self.foreign += 1;
                        continue;
                    }
                    let column = self.column(event.header.timestamp_ns);
                    let locks = if is_signal_wait(event.role) {
                        &mut self.signal_waits
                    } else {
                        &mut self.locks
                    };
                    if !locks.add(&event, column) {
                        self.malformed += 1;
                    }
                }
            }
            IntakeMessage::MapEvents(events) => {
                for event in events {
                    if event.header.tgid != pid {
                        self.foreign += 1;
                        continue;
                    }
                    let column = self.column(event.header.timestamp_ns);
                    self.maps.add(&event, column.min(locks::MAX_COLUMNS) as u64);
                }
            }
            IntakeMessage::RuntimeEvents(events) => {
                for event in events {
                    if event.header.tgid != pid {
                        self.foreign += 1;
                        continue;
                    }
                    let second = self.column(event.header.timestamp_ns) as u64;
                    let known = self.gc.as_mut().is_some_and(|gc| gc.add(&event, second));
                    if !known {
                        self.malformed += 1;
                    }
                }
            }
            IntakeMessage::Lost { cpu, count } => {
                *self.lost_per_cpu.entry(cpu).or_default() += count;
            }
            IntakeMessage::Malformed { .. } => self.malformed += 1,
            // A target's rings carry no exec events (the exec watcher's
            // ring has its own reader).
            IntakeMessage::Execs(_) => self.malformed += 1,
        }
    }

    /// Folds in a reading of the kernel's counters; with `advance`, the
    /// reading closes a time column (a tick), else it tops up the current
    /// one (the final reading). `watched`: which governed probes were on
    /// during it (lock waits are not timed while the overhead governor has
    /// them off, nor waits for a CPU once it gave them up).
    pub fn sample(&mut self, reading: KernelSample, advance: bool, watched: Watched) {
        self.counters = reading.counters;
        let column = self.cas_column;
        if let (Some(queue), Some(per_cpu)) = (self.run_queue.as_mut(), &reading.run_queue) {
            queue.sample(per_cpu, column as u64, watched.run_queue);
        }
        if let Some(cas) = self.cas.as_mut() {
            cas.sample(column, &reading.cas);
        }
        if let Some(counts) = &reading.map_counts {
            self.maps.set_kernel_counts(counts);
        }
        let (signal_waits, locks): (Vec<_>, Vec<_>) = reading
            .lock_stats
            .into_iter()
            .partition(|(key, _)| is_signal_wait(key.role));
        self.locks.set_tables(locks, reading.blocked, column);
        self.signal_waits
            .set_tables(signal_waits, Vec::new(), column);
        self.thread_waits = reading.thread_waits;
        if let Some(regions) = reading.memory_regions {
            self.set_memory_regions(regions);
        }
        self.locks.set_holders(reading.holders, reading.convoys);
        self.maps.apply_table(&reading.key_counts, column as u64);
        self.timeline.sample(
            self.locks.merged(),
            column as u64,
            watched.waits,
            &self.symbolizer,
        );
        if advance {
            self.cas_column += 1;
        }
    }

    /// Where the target's writable memory is (`/proc/PID/maps`, in address
    /// order), for the locks no global names: read at attach, then with
    /// each sample while the target lives.
    pub fn set_memory_regions(&mut self, regions: Vec<(u64, u64, MemoryRegion)>) {
        self.memory_regions = regions;
    }

    /// The plan indexes of the CAS sites, in the order
    /// [`KernelSample::cas`] lists them.
    pub fn cas_sites(&self) -> Vec<usize> {
        self.catalog.cas_sites.iter().map(|(i, _)| *i).collect()
    }

    /// Runtime maps' types by map, as their operations passed them.
    pub fn map_types(&self) -> &BTreeMap<u64, u64> {
        &self.maps.map_types
    }

    /// Folds in a reading of map `map`'s structure (laid out as
    /// `implementation`), taken now.
    pub fn add_health(
        &mut self,
        map: u64,
        implementation: crate::model::MapImplementation,
        reading: maps::HealthReading,
    ) {
        let column = self.cas_column as u64;
        let copies = self
            .maps
            .maps
            .get(&map)
            .map_or(0, |stats| stats.all_ops()[MapOp::DirtyCopy as usize]);
        self.maps
            .health
            .entry(map)
            .or_insert_with(|| maps::HealthRecord::new(implementation))
            .add(reading, column, copies);
    }

    /// The runtime maps whose type is known (from their events or the
    /// kernel's counts), busiest first.
    pub fn typed_runtime_maps(&self) -> Vec<u64> {
        self.maps
            .busiest()
            .into_iter()
            .filter(|(address, stats)| {
                stats.kind == MapKind::Runtime && self.maps.map_types.contains_key(address)
            })
            .map(|(address, _)| address)
            .collect()
    }

    /// The `sync.Map`s seen so far, busiest first.
    pub fn sync_map_addresses(&self) -> Vec<u64> {
        self.maps
            .busiest()
            .into_iter()
            .filter(|(_, stats)| stats.kind == MapKind::SyncMap)
            .map(|(address, _)| address)
            .collect()
    }

    /// The addresses of the maps seen so far.
    pub fn map_addresses(&self) -> Vec<u64> {
        self.maps.maps.keys().copied().collect()
    }

    /// The user stack ids a snapshot shows (those of each lock's top call
    /// sites, waiting and holding), to read from the kernel for it.
    pub fn stack_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .locks
            .merged()
            .values()
            .flat_map(|stats| {
                let waiters = stats
                    .sites_by_wait()
                    .into_iter()
                    .take(snapshot::TOP_CALL_SITES)
                    .map(|((_, id), _)| id);
                let holders = stats
                    .holders_by_caused()
                    .into_iter()
                    .take(snapshot::TOP_CALL_SITES)
                    .map(|((_, id), _)| id);
                let writers = stats
                    .writers_by_time()
                    .into_iter()
                    .take(snapshot::TOP_CALL_SITES)
                    .map(|((_, id), _)| id);
                waiters.chain(holders).chain(writers).collect::<Vec<_>>()
            })
            .filter(|&id| id >= 0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Events lost in total: the larger of the rings' LOST records and the
    /// probes' failed writes (the kernel reports a full ring as LOST only
    /// when a later write succeeds).
    pub fn events_lost(&self) -> u64 {
        self.lost_per_cpu
            .values()
            .sum::<u64>()
            .max(self.counters.output_errors)
    }
}

#[cfg(test)]
mod tests;
