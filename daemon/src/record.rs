//! The flight recorder, pure: one target's snapshots, kept second by second
//! as what changed in each (its delta), within a time span and a memory
//! bound; and the report of any window of them, in the same document as a
//! session's report.
//!
//! A pipeline publishes cumulative snapshots as seen (sampled figures not
//! scaled). The recorder keeps the difference between consecutive ones,
//! listing only what changed: an idle lock or map costs nothing. A window's
//! report is the sum of its seconds' deltas, laid over the target's latest
//! snapshot (which names its locks, maps, probes), then scaled by the
//! window's own sampling: how long the probes were on within it.
//!
//! What the sum can and cannot say exactly:
//! - counts, sums of waits, histograms, per-CPU figures, probe counters and
//!   lost events are exact (sums of exact differences);
//! - a hot key's count is exact while the key stayed among the keys a
//!   snapshot lists ([`TOP_KEYS`]); a key that entered the list within the
//!   window may have had operations before it that no snapshot listed, and
//!   its `error` says how many at most;
//! - call sites likewise: one that entered a lock's listed sites within the
//!   window is credited with all its earlier wait (sites rarely move in and
//!   out of the first five);
//! - the longest wait is exact when it set the session's record within the
//!   window, else it is bounded by the highest histogram bucket;
//! - distinct keys, the advisor's findings and the overhead report are the
//!   session's, as of the latest snapshot;
//! - the lock and GC timelines are the latest snapshot's (its last
//!   [`TIMELINE_SECONDS`](crate::model::TIMELINE_SECONDS)) cut to the
//!   window, the GC figures are the sum of the GC timeline's seconds in
//!   it, the waits for a CPU likewise from their timeline, and the spikes
//!   are found again within it.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    model::{
        CallSite, CasReport, ConvoyReport, Heatmap, HoldTimes, HolderSite, KeyReport, LockReport,
        MapReport, OpCounts, ProbeCounters, RecordedWindow, RunQueueFigures, RunQueueReport,
        Sampling, Snapshot, WaitBucket, TOP_CALL_SITES, TOP_KEYS,
    },
    spikes,
};

/// The memory a recorder keeps at most by default, bytes (its seconds'
/// deltas; the latest snapshot besides).
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

/// One target's flight recorder.
#[derive(Debug)]
pub struct Recorder {
    span: Duration,
    max_bytes: usize,
    seconds: VecDeque<Second>,
    /// The latest snapshot recorded (cumulative, as seen).
    last: Option<Arc<Snapshot>>,
    /// When it was recorded.
    last_at: Option<SystemTime>,
    bytes: usize,
    /// Seconds dropped before their time to stay within `max_bytes`.
    dropped_for_memory: u64,
}

/// One recorded interval (about a second): what changed in it.
#[derive(Debug, Clone)]
struct Second {
    /// Wall-clock time at its end.
    at: SystemTime,
    /// Session seconds at its start and end.
    from_session: f64,
    to_session: f64,
    delta: Delta,
    bytes: usize,
}

impl Second {
    fn seconds(&self) -> f64 {
        (self.to_session - self.from_session).max(0.0)
    }

    /// Wall-clock time at its start.
    fn start(&self) -> SystemTime {
        self.at
            .checked_sub(Duration::from_secs_f64(self.seconds()))
            .unwrap_or(self.at)
    }
}

/// What changed between two snapshots: only entries whose figures moved.
#[derive(Debug, Clone, Default)]
struct Delta {
    locks: Vec<LockReport>,
    cas: Vec<CasReport>,
    maps: Vec<MapReport>,
    counters: ProbeCounters,
    events_lost: u64,
    map_events: u64,
    /// Seconds the counting probes were on in it.
    counting_on: f64,
    /// Seconds the wait probes were on in it.
    waits_on: f64,
    /// Whether any probe was sampled (off part of the time) in it.
    sampled: bool,
}

impl Recorder {
    /// A recorder keeping the last `span` of seconds in at most `max_bytes`
    /// (about: what its deltas hold).
    pub fn new(span: Duration, max_bytes: usize) -> Self {
        Self {
            span,
            max_bytes,
            seconds: VecDeque::new(),
            last: None,
            last_at: None,
            bytes: 0,
            dropped_for_memory: 0,
        }
    }

    /// Records `snapshot` (cumulative, as seen), taken at `at`: what
    /// changed since the previous one becomes a second of the recording.
    /// A snapshot no newer than the previous one is ignored.
    pub fn record(&mut self, snapshot: Arc<Snapshot>, at: SystemTime) {
        let previous = self.last.as_deref();
        let from_session = previous.map_or(0.0, |p| p.duration_seconds);
        if previous.is_some() && snapshot.duration_seconds <= from_session {
            // The same snapshot again, unless it is the final one.
            if snapshot.stopped_by.is_none() || previous.is_some_and(|p| p.stopped_by.is_some()) {
                return;
            }
        }
        let delta = Delta::between(previous, &snapshot);
        let bytes = delta.approx_bytes();
        self.seconds.push_back(Second {
            at,
            from_session,
            to_session: snapshot.duration_seconds.max(from_session),
            delta,
            bytes,
        });
        self.bytes += bytes;
        self.last = Some(snapshot);
        self.last_at = Some(at);
        self.expire(at);
    }

    /// Drops the seconds older than the span before `now`, and the oldest
    /// beyond the memory bound.
    pub fn expire(&mut self, now: SystemTime) {
        while let Some(oldest) = self.seconds.front() {
            let too_old = now
                .duration_since(oldest.at)
                .is_ok_and(|age| age > self.span);
            let too_big = self.bytes > self.max_bytes && self.seconds.len() > 1;
            if !too_old && !too_big {
                break;
            }
            if !too_old {
                self.dropped_for_memory += 1;
            }
            self.bytes -= oldest.bytes;
            self.seconds.pop_front();
        }
    }

    /// Whether nothing is left to report: every second recorded is older
    /// than the span.
    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
    }

    /// The memory the recorded seconds hold, bytes (about).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Seconds recorded.
    pub fn len(&self) -> usize {
        self.seconds.len()
    }

    /// Seconds dropped before their time to stay within the memory bound.
    pub fn dropped_for_memory(&self) -> u64 {
        self.dropped_for_memory
    }

    /// The latest snapshot recorded.
    pub fn latest(&self) -> Option<&Arc<Snapshot>> {
        self.last.as_ref()
    }

    /// When the recording ends: its newest second.
    pub fn newest(&self) -> Option<SystemTime> {
        self.seconds.back().map(|s| s.at)
    }

    /// When the recording begins: its oldest second's start.
    pub fn oldest(&self) -> Option<SystemTime> {
        self.seconds.front().map(Second::start)
    }

    /// The report of the seconds within `[from, to]` (those whose middle
    /// falls in it); `None` when none does.
    pub fn window(&self, from: SystemTime, to: SystemTime) -> Option<Snapshot> {
        let last = self.last.as_deref()?;
        let inside: Vec<&Second> = self
            .seconds
            .iter()
            .filter(|s| {
                let middle = s.start() + Duration::from_secs_f64(s.seconds() / 2.0);
                middle >= from && middle <= to
            })
            .collect();
        let (first, final_second) = (inside.first()?, inside.last()?);
        let mut report = Snapshot {
            duration_seconds: inside.iter().map(|s| s.seconds()).sum(),
            stopped_by: if std::ptr::eq(*final_second, self.seconds.back().unwrap_or(final_second))
            {
                last.stopped_by
            } else {
                None
            },
            events_lost: 0,
            probe_counters: ProbeCounters::default(),
            locks: last.locks.iter().map(zeroed_lock).collect(),
            // Not recorded per second: the session's totals would pass for
            // the window's.
            signal_waits: Vec::new(),
            cas: last.cas.iter().map(zeroed_cas).collect(),
            maps: last.maps.iter().map(zeroed_map).collect(),
            map_events: 0,
            heatmaps: last
                .heatmaps
                .iter()
                .map(|h| sliced(h, first.from_session, final_second.to_session))
                .collect(),
            window: Some(RecordedWindow {
                from_unix_seconds: unix_seconds(first.start()),
                to_unix_seconds: unix_seconds(final_second.at),
                from_session_seconds: first.from_session,
                to_session_seconds: final_second.to_session,
                truncated: self.oldest().is_some_and(|oldest| oldest > from)
                    && first.from_session > 0.0,
            }),
            ..last.clone()
        };
        let (mut on, mut waits_on, mut time, mut sampled) = (0.0, 0.0, 0.0, false);
        let mut wait_max_rose = HashMap::new();
        for second in &inside {
            let delta = &second.delta;
            report.probe_counters = add_counters(&report.probe_counters, &delta.counters);
            report.events_lost += delta.events_lost;
            report.map_events += delta.map_events;
            for lock in &delta.locks {
                let max = wait_max_rose.entry(lock.address).or_insert(0.0f64);
                *max = max.max(lock.wait_seconds_max);
                match report.locks.iter_mut().find(|l| l.address == lock.address) {
                    Some(sum) => add_lock(sum, lock),
                    None => report.locks.push(lock.clone()),
                }
            }
            for cas in &delta.cas {
                match report.cas.iter_mut().find(|c| c.address == cas.address) {
                    Some(sum) => add_cas(sum, cas),
                    None => report.cas.push(cas.clone()),
                }
            }
            for map in &delta.maps {
                match report.maps.iter_mut().find(|m| m.address == map.address) {
                    Some(sum) => add_map(sum, map),
                    None => report.maps.push(map.clone()),
                }
            }
            on += delta.counting_on;
            waits_on += delta.waits_on;
            time += second.seconds();
            sampled |= delta.sampled;
        }
        for lock in &mut report.locks {
            finish_lock(lock, wait_max_rose.get(&lock.address).copied());
        }
        report.locks.sort_by(|a, b| {
            b.contentions
                .cmp(&a.contentions)
                .then_with(|| a.address.cmp(&b.address))
        });
        for cas in &mut report.cas {
            cas.failure_ratio = if cas.attempts == 0 {
                0.0
            } else {
                cas.failures as f64 / cas.attempts as f64
            };
        }
        report.cas.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| a.site.cmp(&b.site))
        });
        for map in &mut report.maps {
            map.top_keys
                .sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
            map.top_keys.truncate(TOP_KEYS);
        }
        report.maps.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then_with(|| a.address.cmp(&b.address))
        });
        // The timeline of the window's seconds, and its spikes.
        let (first_second, end_second) = (
            first.from_session.floor() as u64,
            final_second.to_session.ceil() as u64,
        );
        report
            .timeline
            .retain(|row| row.second >= first_second && row.second < end_second);
        report.timeline_unwatched.retain_mut(|range| {
            range.start = range.start.max(first_second);
            range.end = range.end.min(end_second);
            range.start < range.end
        });
        report
            .gc_timeline
            .retain(|row| row.second >= first_second && row.second < end_second);
        if let Some(gc) = report.gc.as_mut() {
            *gc = gc.empty_like();
            for row in &report.gc_timeline {
                gc.add(&row.figures);
            }
        }
        report
            .run_queue_timeline
            .retain(|row| row.second >= first_second && row.second < end_second);
        if let Some(queue) = report.run_queue.as_mut() {
            let mut figures = RunQueueFigures::default();
            for row in &report.run_queue_timeline {
                figures.add(&row.figures);
            }
            let mut unwatched = std::mem::take(&mut queue.unwatched);
            unwatched.retain_mut(|range| {
                range.start = range.start.max(first_second);
                range.end = range.end.min(end_second);
                range.start < range.end
            });
            *queue = RunQueueReport::new(figures, unwatched);
        }
        report.spikes = spikes::spikes(
            &report.timeline,
            spikes::Span {
                first: first_second,
                end: end_second,
                unwatched: &report.timeline_unwatched,
                started_unix_seconds: last.started_unix_seconds,
                gc: report
                    .gc
                    .as_ref()
                    .map(|gc| (gc, report.gc_timeline.as_slice())),
                run_queue: report
                    .run_queue
                    .as_ref()
                    .map(|q| (q.unwatched.as_slice(), report.run_queue_timeline.as_slice())),
            },
        );
        if sampled && time > 0.0 {
            report.scale(Sampling {
                counting: (on / time).clamp(0.0, 1.0),
                waits: (waits_on / time).clamp(0.0, 1.0),
            });
        }
        Some(report)
    }
}

/// Unix seconds of a wall-clock time.
fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Delta {
    /// What changed from `previous` (none: the start) to `current`.
    fn between(previous: Option<&Snapshot>, current: &Snapshot) -> Self {
        let sampling = |s: &Snapshot| s.overhead.as_ref().map_or(Sampling::EXACT, |o| o.sampling);
        let now = sampling(current);
        let (then, then_seconds) = previous.map_or((Sampling::EXACT, 0.0), |p| {
            (sampling(p), p.duration_seconds)
        });
        let seconds = (current.duration_seconds - then_seconds).max(0.0);
        let on = |now: f64, then: f64| {
            (now * current.duration_seconds - then * then_seconds).clamp(0.0, seconds)
        };
        let by_address = |locks: &[LockReport]| -> HashMap<u64, usize> {
            locks
                .iter()
                .enumerate()
                .map(|(i, l)| (l.address, i))
                .collect()
        };
        let prev_locks = previous.map(|p| by_address(&p.locks)).unwrap_or_default();
        let lock_of = |address| Some(&previous?.locks[*prev_locks.get(&address)?]);
        Self {
            locks: current
                .locks
                .iter()
                .filter_map(|lock| lock_delta(lock, lock_of(lock.address)))
                .collect(),
            cas: current
                .cas
                .iter()
                .filter_map(|cas| {
                    let before =
                        previous.and_then(|p| p.cas.iter().find(|c| c.address == cas.address));
                    cas_delta(cas, before)
                })
                .collect(),
            maps: current
                .maps
                .iter()
                .filter_map(|map| {
                    let before =
                        previous.and_then(|p| p.maps.iter().find(|m| m.address == map.address));
                    map_delta(map, before)
                })
                .collect(),
            counters: sub_counters(
                &current.probe_counters,
                &previous.map(|p| p.probe_counters).unwrap_or_default(),
            ),
            events_lost: current
                .events_lost
                .saturating_sub(previous.map_or(0, |p| p.events_lost)),
            map_events: current
                .map_events
                .saturating_sub(previous.map_or(0, |p| p.map_events)),
            counting_on: on(now.counting, then.counting),
            waits_on: on(now.waits.min(now.counting), then.waits.min(then.counting)),
            sampled: !now.is_exact() || !then.is_exact(),
        }
    }

    /// The memory it holds, about.
    fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let locks: usize = self
            .locks
            .iter()
            .map(|l| {
                size_of::<LockReport>()
                    + l.per_cpu.len() * 8
                    + l.wait_histogram.len() * size_of::<WaitBucket>()
                    + l.top_call_sites.len() * size_of::<CallSite>()
                    + l.top_holder_sites.len() * size_of::<HolderSite>()
                    + l.name.as_ref().map_or(0, String::len)
            })
            .sum();
        let cas: usize = self
            .cas
            .iter()
            .map(|c| size_of::<CasReport>() + c.per_cpu_failures.len() * 8 + c.function.len() * 2)
            .sum();
        let maps: usize = self
            .maps
            .iter()
            .map(|m| {
                size_of::<MapReport>()
                    + m.per_cpu.len() * 8
                    + (m.ops.0.len() + m.internal.0.len()) * 16
                    + m.name.as_ref().map_or(0, String::len)
                    + m.top_keys
                        .iter()
                        .map(|k| {
                            size_of::<KeyReport>()
                                + k.per_cpu.len() * 8
                                + k.ops.0.len() * 16
                                + key_heap_bytes(&k.key)
                        })
                        .sum::<usize>()
            })
            .sum();
        size_of::<Second>() + locks + cas + maps
    }
}

/// The heap memory a key holds.
fn key_heap_bytes(key: &crate::model::Key) -> usize {
    match key {
        crate::model::Key::Str { text, .. } => text.len(),
        crate::model::Key::Other { type_name, .. } => type_name.as_ref().map_or(0, String::len),
        _ => 0,
    }
}

/// `current - previous`, element by element (as long as `current`).
fn sub_vec(current: &[u64], previous: &[u64]) -> Vec<u64> {
    current
        .iter()
        .enumerate()
        .map(|(i, &n)| n.saturating_sub(previous.get(i).copied().unwrap_or(0)))
        .collect()
}

/// `sum += more`, element by element (growing `sum` as needed).
fn add_vec(sum: &mut Vec<u64>, more: &[u64]) {
    if sum.len() < more.len() {
        sum.resize(more.len(), 0);
    }
    for (s, &m) in sum.iter_mut().zip(more) {
        *s += m;
    }
}

/// `current - previous` per operation, non-zero only.
fn sub_ops(current: &OpCounts, previous: Option<&OpCounts>) -> OpCounts {
    OpCounts(
        current
            .0
            .iter()
            .filter_map(|&(op, n)| {
                let before = previous
                    .and_then(|p| p.0.iter().find(|(o, _)| *o == op))
                    .map_or(0, |(_, n)| *n);
                let d = n.saturating_sub(before);
                (d > 0).then_some((op, d))
            })
            .collect(),
    )
}

/// `sum += more` per operation, keeping name order.
fn add_ops(sum: &mut OpCounts, more: &OpCounts) {
    for &(op, n) in &more.0 {
        match sum.0.iter_mut().find(|(o, _)| *o == op) {
            Some((_, s)) => *s += n,
            None => sum.0.push((op, n)),
        }
    }
    sum.0.sort_by_key(|(op, _)| op.name());
}

/// Probe counters, field by field: `a - b`.
fn sub_counters(a: &ProbeCounters, b: &ProbeCounters) -> ProbeCounters {
    combine_counters(a, b, u64::saturating_sub)
}

/// Probe counters, field by field: `a + b`.
fn add_counters(a: &ProbeCounters, b: &ProbeCounters) -> ProbeCounters {
    combine_counters(a, b, u64::saturating_add)
}

/// Probe counters, field by field (every field named: a new one must be
/// added here to compile).
fn combine_counters(
    a: &ProbeCounters,
    b: &ProbeCounters,
    f: impl Fn(u64, u64) -> u64,
) -> ProbeCounters {
    let ProbeCounters {
        hits,
        skipped_reentry,
        unknown_site,
        output_errors,
        cas_hits,
        unmatched_returns,
        inflight_errors,
        map_hits,
        map_counts_full,
        lock_stats_full,
        key_counts_full,
        not_exits,
        map_ops_counted,
        disabled_hits,
        keys_unsampled,
        runtime_events,
        stw_unmatched,
        holder_stats_full,
        release_logs_full,
        release_log_short,
        releases,
        run_queue_threads_full,
        sched_target_runs,
        futex_target_runs,
        thread_waits_full,
    } = *a;
    ProbeCounters {
        hits: f(hits, b.hits),
        skipped_reentry: f(skipped_reentry, b.skipped_reentry),
        unknown_site: f(unknown_site, b.unknown_site),
        output_errors: f(output_errors, b.output_errors),
        cas_hits: f(cas_hits, b.cas_hits),
        unmatched_returns: f(unmatched_returns, b.unmatched_returns),
        inflight_errors: f(inflight_errors, b.inflight_errors),
        map_hits: f(map_hits, b.map_hits),
        map_counts_full: f(map_counts_full, b.map_counts_full),
        lock_stats_full: f(lock_stats_full, b.lock_stats_full),
        key_counts_full: f(key_counts_full, b.key_counts_full),
        not_exits: f(not_exits, b.not_exits),
        map_ops_counted: f(map_ops_counted, b.map_ops_counted),
        disabled_hits: f(disabled_hits, b.disabled_hits),
        keys_unsampled: f(keys_unsampled, b.keys_unsampled),
        runtime_events: f(runtime_events, b.runtime_events),
        stw_unmatched: f(stw_unmatched, b.stw_unmatched),
        holder_stats_full: f(holder_stats_full, b.holder_stats_full),
        release_logs_full: f(release_logs_full, b.release_logs_full),
        release_log_short: f(release_log_short, b.release_log_short),
        releases: f(releases, b.releases),
        run_queue_threads_full: f(run_queue_threads_full, b.run_queue_threads_full),
        sched_target_runs: f(sched_target_runs, b.sched_target_runs),
        futex_target_runs: f(futex_target_runs, b.futex_target_runs),
        thread_waits_full: f(thread_waits_full, b.thread_waits_full),
    }
}

fn sub_opt(current: Option<u64>, previous: Option<u64>) -> Option<u64> {
    current.map(|n| n.saturating_sub(previous.unwrap_or(0)))
}

fn sub_opt_seconds(current: Option<f64>, previous: Option<f64>) -> Option<f64> {
    current.map(|s| (s - previous.unwrap_or(0.0)).max(0.0))
}

fn add_opt<T: std::ops::Add<Output = T> + Copy>(sum: &mut Option<T>, more: Option<T>) {
    if let Some(more) = more {
        *sum = Some(match *sum {
            Some(s) => s + more,
            None => more,
        });
    }
}

/// What changed of a lock; `None` when nothing did. Its `wait_seconds_max`
/// is the lock's longest wait if it rose (a new longest wait), else 0.
fn lock_delta(current: &LockReport, previous: Option<&LockReport>) -> Option<LockReport> {
    let Some(before) = previous else {
        let moved = current.contentions > 0
            || current.acquisitions > 0
            || current.blocked_parks.unwrap_or(0) > 0;
        return moved.then(|| current.clone());
    };
    let contentions = current.contentions.saturating_sub(before.contentions);
    let acquisitions = current.acquisitions.saturating_sub(before.acquisitions);
    let parks = sub_opt(current.blocked_parks, before.blocked_parks);
    if contentions == 0 && acquisitions == 0 && parks.unwrap_or(0) == 0 {
        return None;
    }
    let wait_histogram = sub_buckets(&current.wait_histogram, &before.wait_histogram);
    let top_call_sites = current
        .top_call_sites
        .iter()
        .filter_map(|site| {
            let then = before
                .top_call_sites
                .iter()
                .find(|s| s.frames == site.frames);
            let count = site.count.saturating_sub(then.map_or(0, |s| s.count));
            let wait = (site.wait_seconds - then.map_or(0.0, |s| s.wait_seconds)).max(0.0);
            (count > 0 || wait > 0.0).then(|| CallSite {
                frames: site.frames.clone(),
                wait_seconds: wait,
                count,
                share: 0.0,
            })
        })
        .collect();
    Some(LockReport {
        name: current.name.clone(),
        region: current.region,
        address: current.address,
        kind: current.kind,
        contentions,
        per_cpu: sub_vec(&current.per_cpu, &before.per_cpu),
        blocked_seconds_total: sub_opt_seconds(
            current.blocked_seconds_total,
            before.blocked_seconds_total,
        ),
        blocked_parks: parks,
        acquisitions,
        wait_seconds_total: (current.wait_seconds_total - before.wait_seconds_total).max(0.0),
        wait_seconds_max: if current.wait_seconds_max > before.wait_seconds_max {
            current.wait_seconds_max
        } else {
            0.0
        },
        wait_histogram,
        reader_wait_seconds_total: sub_opt_seconds(
            current.reader_wait_seconds_total,
            before.reader_wait_seconds_total,
        ),
        writer_wait_seconds_total: sub_opt_seconds(
            current.writer_wait_seconds_total,
            before.writer_wait_seconds_total,
        ),
        reader_contentions: sub_opt(current.reader_contentions, before.reader_contentions),
        top_call_sites,
        wait_caused_seconds_total: sub_opt_seconds(
            current.wait_caused_seconds_total,
            before.wait_caused_seconds_total,
        ),
        convoys: convoy_delta(current.convoys.as_ref(), before.convoys.as_ref()),
        top_holder_sites: current
            .top_holder_sites
            .iter()
            .filter_map(|site| {
                let then = before
                    .top_holder_sites
                    .iter()
                    .find(|s| s.frames == site.frames);
                holder_delta(site, then)
            })
            .collect(),
        // Not recorded per second: how many threads of a name waited in a
        // window is not the difference of two totals.
        threads: Vec::new(),
        exact: true,
        sampled_fraction: 1.0,
    })
}

/// A lock with its figures at zero (as a window's report lists a lock it
/// knows of with nothing in the window).
fn zeroed_lock(lock: &LockReport) -> LockReport {
    LockReport {
        contentions: 0,
        per_cpu: Vec::new(),
        blocked_seconds_total: lock.blocked_seconds_total.map(|_| 0.0),
        blocked_parks: lock.blocked_parks.map(|_| 0),
        acquisitions: 0,
        wait_seconds_total: 0.0,
        wait_seconds_max: 0.0,
        wait_histogram: Vec::new(),
        reader_wait_seconds_total: lock.reader_wait_seconds_total.map(|_| 0.0),
        writer_wait_seconds_total: lock.writer_wait_seconds_total.map(|_| 0.0),
        reader_contentions: lock.reader_contentions.map(|_| 0),
        top_call_sites: Vec::new(),
        wait_caused_seconds_total: lock.wait_caused_seconds_total.map(|_| 0.0),
        top_holder_sites: Vec::new(),
        convoys: None,
        threads: Vec::new(),
        exact: true,
        sampled_fraction: 1.0,
        ..lock.clone()
    }
}

fn add_lock(sum: &mut LockReport, more: &LockReport) {
    sum.contentions += more.contentions;
    add_vec(&mut sum.per_cpu, &more.per_cpu);
    add_opt(&mut sum.blocked_seconds_total, more.blocked_seconds_total);
    add_opt(&mut sum.blocked_parks, more.blocked_parks);
    sum.acquisitions += more.acquisitions;
    sum.wait_seconds_total += more.wait_seconds_total;
    add_buckets(&mut sum.wait_histogram, &more.wait_histogram);
    add_opt(
        &mut sum.reader_wait_seconds_total,
        more.reader_wait_seconds_total,
    );
    add_opt(
        &mut sum.writer_wait_seconds_total,
        more.writer_wait_seconds_total,
    );
    add_opt(&mut sum.reader_contentions, more.reader_contentions);
    for site in &more.top_call_sites {
        match sum
            .top_call_sites
            .iter_mut()
            .find(|s| s.frames == site.frames)
        {
            Some(s) => {
                s.count += site.count;
                s.wait_seconds += site.wait_seconds;
            }
            None => sum.top_call_sites.push(site.clone()),
        }
    }
    add_opt(
        &mut sum.wait_caused_seconds_total,
        more.wait_caused_seconds_total,
    );
    add_convoys(&mut sum.convoys, more.convoys.as_ref());
    for site in &more.top_holder_sites {
        match sum
            .top_holder_sites
            .iter_mut()
            .find(|s| s.frames == site.frames)
        {
            Some(s) => add_holder(s, site),
            None => sum.top_holder_sites.push(site.clone()),
        }
    }
    sum.kind = more.kind;
    sum.name = sum.name.take().or_else(|| more.name.clone());
}

/// An RWMutex's convoys between two snapshots (`None`: none). The longest
/// episode and the most readers stalled are the session's, when an
/// episode was in the window.
fn convoy_delta(now: Option<&ConvoyReport>, before: Option<&ConvoyReport>) -> Option<ConvoyReport> {
    let now = now?;
    let episodes = now
        .episodes
        .saturating_sub(before.map_or(0, |b| b.episodes));
    if episodes == 0 {
        return None;
    }
    let sub = |f: fn(&ConvoyReport) -> f64| (f(now) - before.map_or(0.0, f)).max(0.0);
    Some(ConvoyReport {
        episodes,
        seconds_total: sub(|c| c.seconds_total),
        readers_stalled: now
            .readers_stalled
            .saturating_sub(before.map_or(0, |b| b.readers_stalled)),
        reader_wait_caused_seconds: sub(|c| c.reader_wait_caused_seconds),
        ..now.clone()
    })
}

/// Adds one window's convoys to another's.
fn add_convoys(sum: &mut Option<ConvoyReport>, more: Option<&ConvoyReport>) {
    let Some(more) = more else {
        return;
    };
    match sum {
        None => *sum = Some(more.clone()),
        Some(sum) => {
            sum.episodes += more.episodes;
            sum.seconds_total += more.seconds_total;
            sum.readers_stalled += more.readers_stalled;
            sum.reader_wait_caused_seconds += more.reader_wait_caused_seconds;
            sum.longest_seconds = sum.longest_seconds.max(more.longest_seconds);
            sum.max_readers_stalled = sum.max_readers_stalled.max(more.max_readers_stalled);
        }
    }
}

/// What a holder site did between two snapshots (`None`: nothing).
fn holder_delta(site: &HolderSite, before: Option<&HolderSite>) -> Option<HolderSite> {
    let releases = site
        .releases
        .saturating_sub(before.map_or(0, |s| s.releases));
    let caused =
        (site.wait_caused_seconds - before.map_or(0.0, |s| s.wait_caused_seconds)).max(0.0);
    if releases == 0 && caused <= 0.0 {
        return None;
    }
    let then = before.and_then(|s| s.contended_hold.as_ref());
    let contended_hold = site.contended_hold.as_ref().and_then(|hold| {
        let count = hold.count.saturating_sub(then.map_or(0, |h| h.count));
        (count > 0).then(|| HoldTimes {
            count,
            seconds_total: (hold.seconds_total - then.map_or(0.0, |h| h.seconds_total)).max(0.0),
            histogram: sub_buckets(&hold.histogram, then.map_or(&[], |h| &h.histogram)),
        })
    });
    Some(HolderSite {
        frames: site.frames.clone(),
        wait_caused_seconds: caused,
        releases,
        share: 0.0,
        contended_hold,
    })
}

/// Adds a holder site's figures of one window to another's.
fn add_holder(sum: &mut HolderSite, more: &HolderSite) {
    sum.releases += more.releases;
    sum.wait_caused_seconds += more.wait_caused_seconds;
    let Some(hold) = &more.contended_hold else {
        return;
    };
    let total = sum.contended_hold.get_or_insert_with(|| HoldTimes {
        count: 0,
        seconds_total: 0.0,
        histogram: Vec::new(),
    });
    total.count += hold.count;
    total.seconds_total += hold.seconds_total;
    add_buckets(&mut total.histogram, &hold.histogram);
    total.histogram.sort_by_key(|b| b.ns_min);
}

/// Adds the buckets of `more` to those of `sum` (by lower bound).
fn add_buckets(sum: &mut Vec<WaitBucket>, more: &[WaitBucket]) {
    for bucket in more {
        match sum.iter_mut().find(|b| b.ns_min == bucket.ns_min) {
            Some(b) => b.count += bucket.count,
            None => sum.push(bucket.clone()),
        }
    }
}

/// The buckets of `now` less those of `before` (non-empty ones only).
fn sub_buckets(now: &[WaitBucket], before: &[WaitBucket]) -> Vec<WaitBucket> {
    now.iter()
        .filter_map(|bucket| {
            let then = before
                .iter()
                .find(|b| b.ns_min == bucket.ns_min)
                .map_or(0, |b| b.count);
            let count = bucket.count.saturating_sub(then);
            (count > 0).then(|| WaitBucket {
                count,
                ..bucket.clone()
            })
        })
        .collect()
}

/// Orders a window's sums as a report lists them: histogram by bucket,
/// the call sites with the most wait first with their shares; the longest
/// wait from the session's record if it rose in the window
/// (`record_in_window`), else bounded by the highest bucket.
fn finish_lock(lock: &mut LockReport, record_in_window: Option<f64>) {
    lock.wait_histogram.sort_by_key(|b| b.ns_min);
    lock.top_call_sites.sort_by(|a, b| {
        b.wait_seconds
            .total_cmp(&a.wait_seconds)
            .then_with(|| b.count.cmp(&a.count))
    });
    lock.top_call_sites.truncate(TOP_CALL_SITES);
    lock.top_holder_sites.sort_by(|a, b| {
        b.wait_caused_seconds
            .total_cmp(&a.wait_caused_seconds)
            .then_with(|| b.releases.cmp(&a.releases))
    });
    lock.top_holder_sites.truncate(TOP_CALL_SITES);
    let caused: f64 = lock.wait_caused_seconds_total.unwrap_or(0.0);
    for site in &mut lock.top_holder_sites {
        site.share = if caused > 0.0 {
            site.wait_caused_seconds / caused
        } else {
            0.0
        };
    }
    let total = lock.wait_seconds_total;
    for site in &mut lock.top_call_sites {
        site.share = if total > 0.0 {
            site.wait_seconds / total
        } else {
            0.0
        };
    }
    lock.wait_seconds_max = match record_in_window {
        Some(max) if max > 0.0 => max,
        _ => lock
            .wait_histogram
            .last()
            .map_or(0.0, |b| b.ns_max as f64 / 1e9)
            .min(lock.wait_seconds_total),
    };
}

/// What changed of a CAS site; `None` when nothing did.
fn cas_delta(current: &CasReport, previous: Option<&CasReport>) -> Option<CasReport> {
    let attempts = current
        .attempts
        .saturating_sub(previous.map_or(0, |p| p.attempts));
    let failures = current
        .failures
        .saturating_sub(previous.map_or(0, |p| p.failures));
    (attempts > 0 || failures > 0).then(|| CasReport {
        attempts,
        failures,
        per_cpu_failures: sub_vec(
            &current.per_cpu_failures,
            previous.map_or(&[][..], |p| &p.per_cpu_failures),
        ),
        ..current.clone()
    })
}

fn zeroed_cas(cas: &CasReport) -> CasReport {
    CasReport {
        attempts: 0,
        failures: 0,
        failure_ratio: 0.0,
        per_cpu_failures: Vec::new(),
        exact: true,
        sampled_fraction: 1.0,
        ..cas.clone()
    }
}

fn add_cas(sum: &mut CasReport, more: &CasReport) {
    sum.attempts += more.attempts;
    sum.failures += more.failures;
    add_vec(&mut sum.per_cpu_failures, &more.per_cpu_failures);
}

/// What changed of a map; `None` when nothing did. A key that was not in
/// the previous snapshot's list, when that list was full, may have had up
/// to the list's smallest count before: that much is added to its error.
fn map_delta(current: &MapReport, previous: Option<&MapReport>) -> Option<MapReport> {
    let total = current
        .total
        .saturating_sub(previous.map_or(0, |p| p.total));
    let internal = sub_ops(&current.internal, previous.map(|p| &p.internal));
    if total == 0 && internal.is_empty() {
        return None;
    }
    let listed_before = previous.map_or(&[][..], |p| &p.top_keys[..]);
    let unlisted_bound = if listed_before.len() >= TOP_KEYS {
        listed_before.iter().map(|k| k.total).min().unwrap_or(0)
    } else {
        0
    };
    let top_keys = current
        .top_keys
        .iter()
        .filter_map(|key| {
            let before = listed_before.iter().find(|k| k.key == key.key);
            let total = key.total.saturating_sub(before.map_or(0, |k| k.total));
            let error = match before {
                Some(before) => key.error.saturating_sub(before.error),
                None => key.error + unlisted_bound,
            };
            (total > 0).then(|| KeyReport {
                key: key.key.clone(),
                ops: sub_ops(&key.ops, before.map(|k| &k.ops)),
                total,
                exact: error == 0,
                error,
                per_cpu: sub_vec(&key.per_cpu, before.map_or(&[][..], |k| &k.per_cpu)),
            })
        })
        .collect();
    Some(MapReport {
        name: current.name.clone(),
        ops: sub_ops(&current.ops, previous.map(|p| &p.ops)),
        total,
        internal,
        per_cpu: sub_vec(&current.per_cpu, previous.map_or(&[][..], |p| &p.per_cpu)),
        top_keys,
        advice: Vec::new(),
        exact: true,
        sampled_fraction: 1.0,
        ..current.clone()
    })
}

fn zeroed_map(map: &MapReport) -> MapReport {
    MapReport {
        ops: OpCounts::default(),
        total: 0,
        internal: OpCounts::default(),
        per_cpu: Vec::new(),
        top_keys: Vec::new(),
        exact: true,
        sampled_fraction: 1.0,
        ..map.clone()
    }
}

fn add_map(sum: &mut MapReport, more: &MapReport) {
    // A map's structure is a state: the later reading stands.
    if more.health.is_some() {
        sum.health = more.health.clone();
    }
    add_ops(&mut sum.ops, &more.ops);
    sum.total += more.total;
    add_ops(&mut sum.internal, &more.internal);
    add_vec(&mut sum.per_cpu, &more.per_cpu);
    for key in &more.top_keys {
        match sum.top_keys.iter_mut().find(|k| k.key == key.key) {
            Some(k) => {
                add_ops(&mut k.ops, &key.ops);
                k.total += key.total;
                k.error += key.error;
                k.exact = k.error == 0;
                add_vec(&mut k.per_cpu, &key.per_cpu);
            }
            None => sum.top_keys.push(key.clone()),
        }
    }
}

/// The columns of a heatmap within session seconds `[from, to)`.
fn sliced(heatmap: &Heatmap, from: f64, to: f64) -> Heatmap {
    let width = heatmap.column_seconds.max(f64::MIN_POSITIVE);
    let first = (from / width).floor().max(0.0) as usize;
    let end = ((to / width).ceil().max(0.0) as usize).max(first);
    Heatmap {
        cells: heatmap
            .cells
            .iter()
            .map(|row| {
                let end = end.min(row.len());
                row.get(first.min(end)..end).unwrap_or(&[]).to_vec()
            })
            .collect(),
        ..heatmap.clone()
    }
}

#[cfg(test)]
mod tests;
