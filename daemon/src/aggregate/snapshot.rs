//! The projection of the aggregate onto the model: a [`Snapshot`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use probe_common::ConvoyStats;

use super::{
    gc::Gc, locks::LockStats, locks::Locks, locks::WAIT_BUCKETS, maps::MapStats,
    runqueue::RunQueue, Aggregator,
};
use crate::{
    advisor::{self, MapMix},
    model::{
        log2_buckets, CallSite, CasReport, ConvoyReport, Frame, GcReport, Heatmap, HeatmapKind,
        HoldTimes, HolderSite, KeyReport, LockKind, LockReport, MapOp, MapReadingCost, MapReport,
        MapsHint, MemoryRegion, OpCounts, OverheadReport, RowLabel, RunQueueReport, Snapshot,
        StopReason, ThreadGroup, WaitBucket, WriterSite, TIMELINE_SECONDS, TOP_THREAD_GROUPS,
    },
    spikes,
};

pub use crate::model::{TOP_CALL_SITES, TOP_KEYS};

/// How many frames a call site shows.
pub const CALL_SITE_FRAMES: usize = 8;

/// Maps listed.
pub const MAX_MAPS: usize = 50;

/// Rows of a hot-key heatmap.
pub const HEATMAP_KEYS: usize = 10;

/// Hot-key heatmaps at most.
pub const MAX_KEY_HEATMAPS: usize = 8;

/// How reports name the nil map (loads from a nil map are legal Go).
pub const NIL_MAP: &str = "(nil map)";

/// What a snapshot needs besides the aggregate: facts the pipeline holds.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInputs<'a> {
    /// Seconds since attach.
    pub elapsed_seconds: f64,
    /// What ended the session, for the final snapshot.
    pub stopped_by: Option<StopReason>,
    /// Runtime maps by address → the pointer-sized global holding them.
    pub map_names: Option<&'a HashMap<u64, String>>,
    /// User stacks by id (instruction pointers, innermost first).
    pub stacks: Option<&'a HashMap<i64, Vec<u64>>>,
    /// mapwatch's own peak resident memory.
    pub peak_rss_bytes: u64,
    /// The overhead governor's figures, once there are some.
    pub overhead: Option<OverheadReport>,
    /// The last second's readings of maps' structure.
    pub map_reading: Option<MapReadingCost>,
}

impl Aggregator {
    /// A snapshot of the target and its probes with no figures (what there
    /// is before anything was read).
    pub fn empty_snapshot(&self) -> Snapshot {
        Snapshot {
            target: self.catalog.target.clone(),
            started_unix_seconds: self.catalog.started_unix_seconds,
            duration_seconds: 0.0,
            stopped_by: None,
            events_lost: 0,
            probes: self.catalog.probes.clone(),
            probe_counters: Default::default(),
            locks: Vec::new(),
            signal_waits: Vec::new(),
            cas: Vec::new(),
            maps: Vec::new(),
            maps_hint: None,
            map_events: 0,
            mapwatch_peak_rss_bytes: 0,
            map_reading: None,
            heatmaps: Vec::new(),
            timeline: Vec::new(),
            timeline_unwatched: Vec::new(),
            spikes: Vec::new(),
            gc: self
                .catalog
                .go_runtime
                .map(|probes| GcReport::empty(probes.gc_pauses_told_apart)),
            gc_timeline: Vec::new(),
            run_queue: self.catalog.run_queue.then(RunQueueReport::default),
            run_queue_timeline: Vec::new(),
            overhead: None,
            window: None,
        }
    }

    /// Everything observed so far, as seen: figures of sampled probes are
    /// not scaled yet ([`Snapshot::scale`] does that).
    pub fn snapshot(&self, inputs: &SnapshotInputs<'_>) -> Snapshot {
        let mut heatmaps = Vec::new();
        heatmaps.extend(self.wait_heatmap());
        if let Some(cas) = &self.cas {
            heatmaps.push(cas.failures_by_cpu.clone());
            heatmaps.push(cas.failures_by_site.clone());
        }
        let (maps, key_heatmaps) = self.map_reports(inputs.map_names);
        let locks = self.lock_reports(&self.locks, true, inputs.stacks);
        let signal_waits = self.lock_reports(&self.signal_waits, false, inputs.stacks);
        let cas = self.cas_reports();
        heatmaps.extend(key_heatmaps);
        let counted: Vec<&MapReport> = maps.iter().filter(|m| !m.keyed && m.address != 0).collect();
        let maps_hint = counted.first().map(|busiest| MapsHint {
            counted: counted.len(),
            busiest: busiest.label(),
        });
        let timeline = self.timeline.rows();
        let timeline_unwatched = self.timeline.unwatched();
        let end = self.cas_column as u64 + 1;
        let gc = self.gc.as_ref().map(|gc| gc.total().clone());
        let gc_timeline = self.gc.as_ref().map_or_else(Vec::new, Gc::seconds);
        let run_queue = self.run_queue.as_ref().map(RunQueue::report);
        let run_queue_timeline = self
            .run_queue
            .as_ref()
            .map_or_else(Vec::new, RunQueue::seconds);
        let spikes = spikes::spikes(
            &timeline,
            spikes::Span {
                first: end.saturating_sub(TIMELINE_SECONDS),
                end,
                unwatched: &timeline_unwatched,
                started_unix_seconds: self.catalog.started_unix_seconds,
                gc: gc.as_ref().map(|gc| (gc, gc_timeline.as_slice())),
                run_queue: run_queue
                    .as_ref()
                    .map(|q| (q.unwatched.as_slice(), run_queue_timeline.as_slice())),
            },
        );
        Snapshot {
            target: self.catalog.target.clone(),
            started_unix_seconds: self.catalog.started_unix_seconds,
            duration_seconds: inputs.elapsed_seconds,
            stopped_by: inputs.stopped_by,
            events_lost: self.events_lost(),
            probes: self.catalog.probes.clone(),
            probe_counters: self.counters,
            locks,
            signal_waits,
            cas,
            maps_hint,
            maps,
            map_events: self.maps.events,
            mapwatch_peak_rss_bytes: inputs.peak_rss_bytes,
            map_reading: inputs.map_reading,
            heatmaps,
            timeline,
            timeline_unwatched,
            spikes,
            gc,
            gc_timeline,
            run_queue,
            run_queue_timeline,
            overhead: inputs.overhead.clone(),
            window: None,
        }
    }

    /// Every lock of `locks` seen, plus, `with_known`, every global lock
    /// DWARF knows of (with zero contentions when never seen), most
    /// contended first.
    fn lock_reports(
        &self,
        locks: &Locks,
        with_known: bool,
        stacks: Option<&HashMap<i64, Vec<u64>>>,
    ) -> Vec<LockReport> {
        let threads = self.thread_groups();
        let none = BTreeMap::new();
        let known = if with_known {
            &self.catalog.global_locks
        } else {
            &none
        };
        let merged = locks.merged();
        let mut addresses: BTreeSet<u64> = merged.keys().copied().collect();
        addresses.extend(known.keys().copied());
        let blocked = self.catalog.blocked_time;
        let holders = self.plan.holders();
        let mut locks: Vec<LockReport> = addresses
            .into_iter()
            .map(|address| {
                let stats = merged.get(&address);
                let known_rwmutex = known.get(&address) == Some(&LockKind::RwMutex);
                let kind = match stats {
                    Some(stats) => stats.kind(known_rwmutex),
                    None if known_rwmutex => LockKind::RwMutex,
                    None => LockKind::Mutex,
                };
                let rwmutex = matches!(kind, LockKind::RwMutex | LockKind::Rwlock);
                // Runtime locks have no release probes.
                let holders = holders && kind != LockKind::Runtime;
                let rw = |f: &dyn Fn(&LockStats) -> f64| rwmutex.then(|| stats.map_or(0.0, f));
                let name = self.symbolizer.global_name(address);
                let region = name.is_none().then(|| self.region_of(address)).flatten();
                LockReport {
                    name,
                    region,
                    address,
                    kind,
                    reader_wait_seconds_total: rw(&|s| s.reader_wait_total_ns as f64 / 1e9),
                    writer_wait_seconds_total: rw(&|s| s.writer_wait_total_ns() as f64 / 1e9),
                    reader_contentions: rwmutex.then(|| stats.map_or(0, |s| s.reader_contentions)),
                    blocked_seconds_total: blocked
                        .then(|| stats.map_or(0.0, |s| s.blocked_total_ns as f64 / 1e9)),
                    blocked_parks: blocked.then(|| stats.map_or(0, |s| s.blocked_count)),
                    top_call_sites: stats
                        .map(|s| self.call_sites(s, stacks))
                        .unwrap_or_default(),
                    wait_caused_seconds_total: holders
                        .then(|| stats.map_or(0.0, |s| s.caused_total_ns() as f64 / 1e9)),
                    top_holder_sites: stats
                        .map(|s| self.holder_sites(s, stacks))
                        .unwrap_or_default(),
                    convoys: stats.and_then(|s| self.convoys(s, stacks)),
                    contentions: stats.map_or(0, |s| s.contentions),
                    per_cpu: stats.map(|s| s.per_cpu.clone()).unwrap_or_default(),
                    acquisitions: stats.map_or(0, |s| s.acquisitions),
                    wait_seconds_total: stats.map_or(0.0, |s| s.wait_total_ns as f64 / 1e9),
                    wait_seconds_max: stats.map_or(0.0, |s| s.wait_max_ns as f64 / 1e9),
                    wait_histogram: stats.map(wait_buckets).unwrap_or_default(),
                    threads: threads.get(&address).cloned().unwrap_or_default(),
                    exact: true,
                    sampled_fraction: 1.0,
                }
            })
            .collect();
        locks.sort_by(|a, b| {
            b.contentions
                .cmp(&a.contentions)
                .then_with(|| a.address.cmp(&b.address))
        });
        locks
    }

    /// The kind of memory `address` lies in, when the mappings were read.
    fn region_of(&self, address: u64) -> Option<MemoryRegion> {
        let regions = &self.memory_regions;
        let at = regions.partition_point(|&(start, _, _)| start <= address);
        let &(_, end, kind) = regions.get(at.checked_sub(1)?)?;
        (address < end).then_some(kind)
    }

    /// Each lock's waiting native threads grouped by name, most wait first
    /// (at most [`TOP_THREAD_GROUPS`]).
    fn thread_groups(&self) -> HashMap<u64, Vec<ThreadGroup>> {
        // Per lock and name: the threads (one thread waiting in several
        // roles, a rwlock's reader and writer, is one), waits and ns.
        type Group = (BTreeSet<u32>, u64, u64);
        let mut by_lock: HashMap<u64, BTreeMap<String, Group>> = HashMap::new();
        for (key, stats) in &self.thread_waits {
            let group = by_lock
                .entry(key.lock_addr)
                .or_default()
                .entry(thread_name(&stats.comm, key.tid))
                .or_default();
            group.0.insert(key.tid);
            group.1 += stats.waits;
            group.2 = group.2.saturating_add(stats.wait_ns);
        }
        by_lock
            .into_iter()
            .map(|(lock, groups)| {
                let mut groups: Vec<ThreadGroup> = groups
                    .into_iter()
                    .map(|(name, (tids, waits, ns))| ThreadGroup {
                        name,
                        threads: tids.len() as u64,
                        waits,
                        wait_seconds: ns as f64 / 1e9,
                    })
                    .collect();
                groups.sort_by(|a, b| {
                    b.wait_seconds
                        .total_cmp(&a.wait_seconds)
                        .then_with(|| a.name.cmp(&b.name))
                });
                groups.truncate(TOP_THREAD_GROUPS);
                (lock, groups)
            })
            .collect()
    }

    /// A lock's waiting call sites, most wait first, symbolized.
    fn call_sites(
        &self,
        stats: &LockStats,
        stacks: Option<&HashMap<i64, Vec<u64>>>,
    ) -> Vec<CallSite> {
        let total = stats.wait_total_ns.max(1) as f64;
        stats
            .sites_by_wait()
            .into_iter()
            .take(TOP_CALL_SITES)
            .map(|((caller_ip, stack_id), (count, wait_ns))| CallSite {
                frames: self.site_frames(caller_ip, stack_id, stacks),
                wait_seconds: wait_ns as f64 / 1e9,
                count,
                share: wait_ns as f64 / total,
            })
            .collect()
    }

    /// A lock's holder call sites, most waiting caused first, symbolized.
    fn holder_sites(
        &self,
        stats: &LockStats,
        stacks: Option<&HashMap<i64, Vec<u64>>>,
    ) -> Vec<HolderSite> {
        let total = stats.caused_total_ns().max(1) as f64;
        stats
            .holders_by_caused()
            .into_iter()
            .take(TOP_CALL_SITES)
            .map(|((caller_ip, stack_id), totals)| HolderSite {
                frames: self.site_frames(caller_ip, stack_id, stacks),
                wait_caused_seconds: totals.caused_ns as f64 / 1e9,
                releases: totals.releases,
                share: totals.caused_ns as f64 / total,
                contended_hold: (totals.holds > 0).then(|| HoldTimes {
                    count: totals.holds,
                    seconds_total: totals.hold_ns as f64 / 1e9,
                    histogram: log2_buckets(&totals.hold_hist),
                }),
            })
            .collect()
    }

    /// An RWMutex's writer convoys, if it had any.
    fn convoys(
        &self,
        stats: &LockStats,
        stacks: Option<&HashMap<i64, Vec<u64>>>,
    ) -> Option<ConvoyReport> {
        if stats.convoys.is_empty() {
            return None;
        }
        let mut all = ConvoyStats::default();
        for writer in stats.convoys.values() {
            all.merge(writer);
        }
        Some(ConvoyReport {
            episodes: all.episodes,
            longest_seconds: all.max_ns as f64 / 1e9,
            seconds_total: all.total_ns as f64 / 1e9,
            max_readers_stalled: all.max_stalled,
            readers_stalled: all.stalled,
            reader_wait_caused_seconds: all.reader_wait_ns as f64 / 1e9,
            top_writer_sites: stats
                .writers_by_time()
                .into_iter()
                .take(TOP_CALL_SITES)
                .map(|((caller_ip, stack_id), c)| WriterSite {
                    frames: self.site_frames(caller_ip, stack_id, stacks),
                    episodes: c.episodes,
                    seconds_total: c.total_ns as f64 / 1e9,
                    readers_stalled: c.stalled,
                })
                .collect(),
        })
    }

    /// The frames of a lock's call site (waiting or releasing): the slow
    /// path's caller, then the rest of the walked stack outwards (its frame
    /// 0 is the slow path itself).
    fn site_frames(
        &self,
        caller_ip: u64,
        stack_id: i64,
        stacks: Option<&HashMap<i64, Vec<u64>>>,
    ) -> std::sync::Arc<[Frame]> {
        // The walk starts at the probed instruction; where the probe read
        // the caller from the frame (runtime locks), the walk's next frame
        // is the caller again.
        let walked = stacks.and_then(|s| s.get(&stack_id)).map(|s| {
            let rest = s.get(1..).unwrap_or(&[]);
            match rest.split_first() {
                Some((&first, tail)) if first == caller_ip => tail,
                _ => rest,
            }
        });
        std::iter::once(caller_ip)
            .filter(|&ip| ip != 0)
            .chain(walked.into_iter().flatten().copied())
            .flat_map(|ip| self.symbolizer.return_frames(ip))
            .take(CALL_SITE_FRAMES)
            .collect::<Vec<Frame>>()
            .into()
    }

    /// Lock waits over time: rows = log2 wait buckets (longest on top),
    /// columns = seconds, cells = acquisitions. `None` when no wait was
    /// measured.
    fn wait_heatmap(&self) -> Option<Heatmap> {
        let timeline = &self.locks.timeline;
        let used = |bucket: usize| timeline.iter().any(|col| col[bucket] > 0);
        let lowest = (0..WAIT_BUCKETS).find(|&b| used(b))?;
        let highest = (0..WAIT_BUCKETS).rev().find(|&b| used(b))?;
        let buckets: Vec<usize> = (lowest..=highest).rev().collect();
        let mut map = Heatmap::new(
            HeatmapKind::LockWait,
            1.0,
            buckets.iter().map(|&b| RowLabel::WaitBucket(b)).collect(),
            timeline.len(),
        );
        for (column, counts) in timeline.iter().enumerate() {
            for (row, &bucket) in buckets.iter().enumerate() {
                map.add(row, column, counts[bucket]);
            }
        }
        Some(map)
    }

    /// The CAS sites, most failures first.
    fn cas_reports(&self) -> Vec<CasReport> {
        let Some(timeline) = &self.cas else {
            return Vec::new();
        };
        let mut reports: Vec<CasReport> = timeline
            .sites
            .iter()
            .enumerate()
            .filter_map(|(row, &index)| {
                let site = self.plan.sites.get(index)?;
                let (cas, builtin) = site.cas()?;
                let (attempts, failures, per_cpu_failures) = timeline.site_totals(row);
                Some(CasReport {
                    site: self.catalog.cas_sites.get(row)?.1.clone(),
                    function: site.at.function.clone(),
                    builtin,
                    source: self.symbolizer.user_line(cas.cmpxchg_address),
                    address: cas.cmpxchg_address,
                    probe: cas.probe(),
                    attempts,
                    failures,
                    failure_ratio: if attempts == 0 {
                        0.0
                    } else {
                        failures as f64 / attempts as f64
                    },
                    per_cpu_failures,
                    exact: true,
                    sampled_fraction: 1.0,
                })
            })
            .collect();
        reports.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| a.site.cmp(&b.site))
        });
        reports
    }

    /// Names a map: a `sync.Map` by the global it is, a runtime map by the
    /// pointer-sized global holding it.
    fn map_name(&self, names: Option<&HashMap<u64, String>>, address: u64) -> Option<String> {
        if address == 0 {
            // Go allows loads from (and deletes in) a nil map.
            return Some(NIL_MAP.to_string());
        }
        names
            .and_then(|names| names.get(&address).cloned())
            .or_else(|| {
                self.symbolizer
                    .global_name(address)
                    .filter(|name| !name.contains('+'))
            })
    }

    /// Every map's report, busiest first, and a hot-key heatmap per keyed
    /// map (at most a few).
    fn map_reports(&self, names: Option<&HashMap<u64, String>>) -> (Vec<MapReport>, Vec<Heatmap>) {
        let mut reports = Vec::new();
        let mut heatmaps = Vec::new();
        for (address, stats) in self.maps.busiest().into_iter().take(MAX_MAPS) {
            let name = self.map_name(names, address);
            let mut top_keys = Vec::new();
            let (capacity, bound) = match &stats.keys {
                Some(keys) => (keys.capacity(), keys.error_bound()),
                None => (0, 0),
            };
            if let Some(keys) = &stats.keys {
                let top = keys.top(TOP_KEYS.max(HEATMAP_KEYS));
                let named: Vec<_> = top
                    .iter()
                    .map(|entry| entry.key.to_key(Some(&self.symbolizer)))
                    .collect();
                for (entry, key) in top.iter().zip(&named).take(TOP_KEYS) {
                    top_keys.push(KeyReport {
                        key: key.clone(),
                        ops: OpCounts::from_counts(&entry.payload.ops, MapOp::is_user_op),
                        total: entry.payload.ops.iter().sum(),
                        exact: entry.error == 0,
                        error: entry.error,
                        per_cpu: entry.payload.per_cpu.clone(),
                    });
                }
                let columns = top.iter().map(|e| e.payload.cells.len()).max().unwrap_or(0);
                if columns > 0 && heatmaps.len() < MAX_KEY_HEATMAPS {
                    let mut heatmap = Heatmap::new(
                        HeatmapKind::HotKeys {
                            map_name: name.clone(),
                            map_address: address,
                        },
                        self.maps.column_scale as f64,
                        Vec::new(),
                        columns,
                    );
                    for (entry, key) in top.iter().zip(named).take(HEATMAP_KEYS) {
                        let row = heatmap.add_row(RowLabel::Key(key));
                        for (column, &count) in entry.payload.cells.iter().enumerate() {
                            heatmap.add(row, column, count);
                        }
                    }
                    heatmaps.push(heatmap);
                }
            }
            let advice = if stats.keyed {
                advisor::advise(&mix_of(stats, top_keys.first()))
            } else {
                Vec::new()
            };
            let health = self
                .maps
                .health
                .get(&address)
                .map(|r| r.report(&stats.all_ops()));
            let mut report = MapReport {
                name,
                address,
                kind: stats.kind,
                ops: OpCounts::from_counts(&stats.all_ops(), MapOp::is_user_op),
                total: stats.total_ops(),
                internal: OpCounts::from_counts(&stats.all_ops(), |op| !op.is_user_op()),
                keyed: stats.keyed,
                per_cpu: stats.per_cpu.clone(),
                distinct_keys: if stats.keyed {
                    stats.distinct_keys.estimate()
                } else {
                    0
                },
                top_keys,
                top_k_capacity: capacity,
                top_k_error_bound: bound,
                advice,
                exact: true,
                sampled_fraction: 1.0,
                key_sampled_fraction: if stats.keyed_ops_weighted > stats.keyed_ops_seen {
                    stats.keyed_ops_seen as f64 / stats.keyed_ops_weighted as f64
                } else {
                    1.0
                },
                health,
            };
            advisor::refresh_health_advice(&mut report);
            reports.push(report);
        }
        (reports, heatmaps)
    }
}

/// The non-empty log2 buckets of a lock's waits.
fn wait_buckets(stats: &LockStats) -> Vec<WaitBucket> {
    log2_buckets(&stats.wait_histogram)
}

/// The advisor's view of one map.
fn mix_of(stats: &MapStats, hottest: Option<&KeyReport>) -> MapMix {
    let ops = stats.all_ops();
    let mut mix = MapMix {
        kind: Some(stats.kind),
        total: stats.total_ops(),
        distinct_written: stats.distinct_written.estimate(),
        keyed_writes: stats.keyed_writes,
        misses: ops[MapOp::Miss as usize],
        dirty_copies: ops[MapOp::DirtyCopy as usize],
        expansions: ops[MapOp::Expand as usize],
        cpus: stats.per_cpu.iter().filter(|&&n| n > 0).count(),
        hottest: hottest.map(|key| {
            (
                key.key.clone(),
                key.total,
                key.per_cpu.iter().filter(|&&n| n > 0).count(),
            )
        }),
        ..MapMix::default()
    };
    for op in MapOp::ALL {
        mix.add_ops(op, ops[op as usize]);
    }
    mix
}

/// A thread's name from its NUL-padded `comm`, or `tid N` when it has none.
fn thread_name(comm: &[u8], tid: u32) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    match String::from_utf8_lossy(&comm[..end]).trim() {
        "" => format!("tid {tid}"),
        name => name.to_string(),
    }
}
