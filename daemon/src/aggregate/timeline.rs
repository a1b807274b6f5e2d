//! The lock timeline: at each tick, what every lock gained since the last
//! one becomes that second's row (contentions, wait, percentiles from the
//! gained histogram, the call site that gained the most wait).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
};

use super::locks::{gained_max_ns, CallSiteKey, LockStats, WAIT_BUCKETS};
use crate::{
    model::{own_frame, Frame, LockSecond, SecondRange, TIMELINE_LOCKS, TIMELINE_SECONDS},
    target::Symbolizer,
};

/// A lock's figures at the last tick.
#[derive(Debug, Clone)]
struct Cumulative {
    contentions: u64,
    acquisitions: u64,
    wait_ns: u64,
    max_ns: u64,
    histogram: [u64; WAIT_BUCKETS],
    /// Wait by call site, ns.
    sites: HashMap<CallSiteKey, u64>,
    /// Waiting caused by holder call site, ns.
    holders: HashMap<CallSiteKey, u64>,
    /// Readers' waits charged to writer convoys, ns.
    convoy_wait_ns: u64,
}

impl Cumulative {
    fn of(stats: &LockStats) -> Self {
        Self {
            contentions: stats.contentions,
            acquisitions: stats.acquisitions,
            wait_ns: stats.wait_total_ns,
            max_ns: stats.wait_max_ns,
            histogram: stats.wait_histogram,
            sites: stats
                .call_sites
                .iter()
                .map(|(&site, &(_, wait))| (site, wait))
                .collect(),
            holders: stats
                .holders
                .iter()
                .map(|(&site, totals)| (site, totals.caused_ns))
                .collect(),
            convoy_wait_ns: stats.convoys.values().map(|c| c.reader_wait_ns).sum(),
        }
    }
}

/// The rows of the last [`TIMELINE_SECONDS`] seconds.
#[derive(Debug, Default)]
pub struct Timeline {
    last: HashMap<u64, Cumulative>,
    rows: VecDeque<LockSecond>,
    /// The seconds whose waits were not timed, oldest first.
    unwatched: VecDeque<SecondRange>,
    /// Names and sites resolved once, shared by every row (and every copy
    /// of a snapshot) that shows them.
    names: Names,
}

/// Lock names and call-site frames, resolved once each.
#[derive(Debug, Default)]
struct Names {
    locks: HashMap<u64, Option<Arc<str>>>,
    sites: HashMap<u64, Option<Arc<Frame>>>,
}

impl Names {
    fn lock(&mut self, lock: u64, symbolizer: &Symbolizer) -> Option<Arc<str>> {
        self.locks
            .entry(lock)
            .or_insert_with(|| symbolizer.global_name(lock).map(Arc::from))
            .clone()
    }

    fn site(&mut self, ip: u64, symbolizer: &Symbolizer) -> Option<Arc<Frame>> {
        self.sites
            .entry(ip)
            .or_insert_with(|| {
                own_frame(&symbolizer.return_frames(ip))
                    .cloned()
                    .map(Arc::new)
            })
            .clone()
    }
}

impl Timeline {
    /// Folds in every lock's cumulative statistics at the end of `second`:
    /// what each gained becomes its row of that second (added to a row the
    /// second has already: the final, partial, reading tops it up).
    /// `timed`: whether lock waits were timed in that second.
    pub fn sample(
        &mut self,
        locks: &BTreeMap<u64, LockStats>,
        second: u64,
        timed: bool,
        names: &Symbolizer,
    ) {
        if !timed {
            match self.unwatched.back_mut() {
                Some(last) if last.end > second => {}
                Some(last) if last.end == second => last.end = second + 1,
                _ => self.unwatched.push_back(SecondRange {
                    start: second,
                    end: second + 1,
                }),
            }
        }
        let mut gained: Vec<LockSecond> = Vec::new();
        for (&lock, stats) in locks {
            let now = Cumulative::of(stats);
            let before = self.last.get(&lock);
            let contentions =
                now.contentions - before.map_or(0, |b| b.contentions.min(now.contentions));
            let acquisitions =
                now.acquisitions - before.map_or(0, |b| b.acquisitions.min(now.acquisitions));
            if contentions > 0 || acquisitions > 0 {
                gained.push(row(
                    lock,
                    second,
                    &now,
                    before,
                    (contentions, acquisitions),
                    &mut self.names,
                    names,
                ));
            }
            self.last.insert(lock, now);
        }
        gained.sort_by(|a, b| b.wait_seconds.total_cmp(&a.wait_seconds));
        gained.truncate(TIMELINE_LOCKS);
        for row in gained {
            match self
                .rows
                .iter_mut()
                .rev()
                .take_while(|r| r.second == second)
                .find(|r| r.lock == row.lock)
            {
                Some(existing) => top_up(existing, &row),
                None => self.rows.push_back(row),
            }
        }
        let oldest = second.saturating_sub(TIMELINE_SECONDS - 1);
        while self.rows.front().is_some_and(|r| r.second < oldest) {
            self.rows.pop_front();
        }
        while self.unwatched.front().is_some_and(|r| r.end <= oldest) {
            self.unwatched.pop_front();
        }
        if let Some(first) = self.unwatched.front_mut() {
            first.start = first.start.max(oldest);
        }
    }

    /// The rows, oldest first.
    pub fn rows(&self) -> Vec<LockSecond> {
        self.rows.iter().cloned().collect()
    }

    /// The seconds whose waits were not timed, oldest first.
    pub fn unwatched(&self) -> Vec<SecondRange> {
        self.unwatched.iter().copied().collect()
    }
}

/// One lock's row of `second`, with the (contentions, acquisitions) it
/// gained.
fn row(
    lock: u64,
    second: u64,
    now: &Cumulative,
    before: Option<&Cumulative>,
    (contentions, acquisitions): (u64, u64),
    names: &mut Names,
    symbolizer: &Symbolizer,
) -> LockSecond {
    let mut histogram = now.histogram;
    if let Some(before) = before {
        for (bucket, then) in histogram.iter_mut().zip(before.histogram) {
            *bucket = bucket.saturating_sub(then);
        }
    }
    let wait_ns = now.wait_ns.saturating_sub(before.map_or(0, |b| b.wait_ns));
    let max_ns = gained_max_ns(now.max_ns, before.map(|b| b.max_ns), &histogram);
    let convoy_ns = now
        .convoy_wait_ns
        .saturating_sub(before.map_or(0, |b| b.convoy_wait_ns));
    let top = top_gained(&now.sites, before.map(|b| &b.sites));
    let top_holder = top_gained(&now.holders, before.map(|b| &b.holders));
    LockSecond {
        second,
        lock,
        name: names.lock(lock, symbolizer),
        contentions,
        acquisitions,
        wait_seconds: wait_ns as f64 / 1e9,
        p50_seconds: quantile_ns(&histogram, 0.5) as f64 / 1e9,
        p99_seconds: quantile_ns(&histogram, 0.99) as f64 / 1e9,
        max_seconds: max_ns as f64 / 1e9,
        convoy_wait_seconds: convoy_ns as f64 / 1e9,
        top_wait_site: top
            .filter(|&ip| ip != 0)
            .and_then(|ip| names.site(ip, symbolizer)),
        top_holder_site: top_holder
            .filter(|&ip| ip != 0)
            .and_then(|ip| names.site(ip, symbolizer)),
    }
}

/// The return address of the site that gained the most since `before`.
fn top_gained(
    now: &HashMap<CallSiteKey, u64>,
    before: Option<&HashMap<CallSiteKey, u64>>,
) -> Option<u64> {
    now.iter()
        .map(|(site, &total)| {
            let then = before.and_then(|b| b.get(site)).copied().unwrap_or(0);
            (site, total.saturating_sub(then))
        })
        .filter(|&(_, gained)| gained > 0)
        .max_by_key(|&(site, gained)| (gained, std::cmp::Reverse(*site)))
        .map(|(site, _)| site.0)
}

/// Adds a later reading of the same second to its row.
fn top_up(row: &mut LockSecond, more: &LockSecond) {
    row.contentions += more.contentions;
    row.acquisitions += more.acquisitions;
    row.wait_seconds += more.wait_seconds;
    row.p50_seconds = row.p50_seconds.max(more.p50_seconds);
    row.p99_seconds = row.p99_seconds.max(more.p99_seconds);
    row.max_seconds = row.max_seconds.max(more.max_seconds);
    row.convoy_wait_seconds += more.convoy_wait_seconds;
    if row.top_wait_site.is_none() {
        row.top_wait_site = more.top_wait_site.clone();
    }
    if row.top_holder_site.is_none() {
        row.top_holder_site = more.top_holder_site.clone();
    }
}

/// The upper bound of the bucket holding quantile `q` of `histogram` (0
/// when empty).
fn quantile_ns(histogram: &[u64; WAIT_BUCKETS], q: f64) -> u64 {
    crate::model::log2_quantile_ns(histogram, q)
}
