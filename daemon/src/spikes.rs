//! Spike detection, pure: a lock timeline in, its spikes out.
//!
//! Only the seconds whose waits were timed count (under the overhead
//! governor, waits are timed in some seconds only). A lock's usual wait is
//! the median of its summed wait per second over those seconds, seconds it
//! was not contended counting as zero; its usual 99th percentile is the
//! median of its per-second p99 over the timed seconds it was contended in.
//! A second is part of a spike of that lock when
//! - its wait is at least [`FACTOR`] times the usual wait and at least
//!   [`FLOOR_SECONDS`], or
//! - its p99 is at least [`FACTOR`] times the usual p99, at least
//!   [`FLOOR_P99_SECONDS`], with at least [`MIN_ACQUISITIONS`] waits.
//!
//! Consecutive such seconds of one lock are one spike. Spikes are listed
//! with the most wait first.
//!
//! A spike carries Go's GC cycles and pauses of its seconds, and its
//! context is a GC pause ([`SpikeContext::GcPause`]) when at least half of
//! its wait was in seconds in which the world stopped for at least half that
//! second's p99 wait.
//!
//! Else its context is CPU starvation ([`SpikeContext::CpuStarvation`]) when,
//! over its seconds in which waits for a CPU were timed, the target's
//! threads waited for a CPU (runnable, not running) for at least
//! [`STARVED_SHARE`] of the lock's wait, and the p99 of those waits is at
//! least [`FLOOR_RUN_QUEUE_P99_SECONDS`] and at least [`FACTOR`] times the
//! usual one (the median per-second p99 over the span's watched seconds,
//! seconds without waits counting as zero): a
//! holder that waits for a CPU holds the lock all that time, and the
//! spike's seconds were starved as the others were not.
//!
//! Else, for an RWMutex, its context is a writer convoy
//! ([`SpikeContext::WriterConvoy`]) when at least [`CONVOY_SHARE`] of its
//! wait was readers' waits charged to writer convoys: readers queued behind
//! a writer that waited for the readers inside.

use std::{collections::BTreeMap, sync::Arc};

use crate::model::{
    outside, Frame, GcReport, GcSecond, LockSecond, RunQueueFigures, RunQueueSecond, SecondRange,
    Spike, SpikeContext,
};

/// How far above usual a second must be.
pub const FACTOR: f64 = 4.0;

/// The least summed wait in a second that can be a spike, seconds: less is
/// noise whatever the ratio (on Debian's Prometheus under a query load, a
/// floor of 1 ms made 23 spikes in 15 s of locks contended two or three
/// times, the largest 6.5 ms).
pub const FLOOR_SECONDS: f64 = 0.01;

/// The least p99 that can be a spike, seconds.
pub const FLOOR_P99_SECONDS: f64 = 0.001;

/// The fewest waits in a second whose p99 can make it a spike: with
/// fewer, the p99 is one of the few longest waits, and a single stray
/// millisecond (a preemption, a GC assist) would be a spike.
pub const MIN_ACQUISITIONS: u64 = 100;

/// The least share of a spike's lock wait its seconds' waits for a CPU
/// must come to for the spike to be put down to CPU starvation.
pub const STARVED_SHARE: f64 = 0.5;

/// The least share of a spike's wait that readers stalled behind writer
/// convoys must come to for the spike to be called a writer convoy.
pub const CONVOY_SHARE: f64 = 0.5;

/// The least p99 wait for a CPU that can make a spike's context CPU
/// starvation, seconds (a Linux scheduler slice is a few milliseconds).
pub const FLOOR_RUN_QUEUE_P99_SECONDS: f64 = 0.001;

/// The seconds a timeline covers and what else is known of them.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    /// The first second.
    pub first: u64,
    /// The second after the last.
    pub end: u64,
    /// Seconds whose waits were not timed (sorted, disjoint).
    pub unwatched: &'a [SecondRange],
    /// When second 0 began, Unix seconds.
    pub started_unix_seconds: f64,
    /// Go's GC, when probed: the session's report (for its kind) and the
    /// seconds that had any, in order.
    pub gc: Option<(&'a GcReport, &'a [GcSecond])>,
    /// Waits for a CPU, when timed: the seconds they were not (sorted,
    /// disjoint), and the watched seconds that had any, in order.
    pub run_queue: Option<(&'a [SecondRange], &'a [RunQueueSecond])>,
}

/// The spikes of `timeline` over `span`.
pub fn spikes(timeline: &[LockSecond], span: Span<'_>) -> Vec<Spike> {
    let Span {
        first,
        end,
        unwatched,
        started_unix_seconds,
        gc,
        run_queue,
    } = span;
    let timed = |second: u64| second >= first && second < end && outside(unwatched, second);
    let seconds = (first..end).filter(|&s| timed(s)).count().max(1);
    let mut by_lock: BTreeMap<u64, Vec<&LockSecond>> = BTreeMap::new();
    for row in timeline.iter().filter(|r| timed(r.second)) {
        by_lock.entry(row.lock).or_default().push(row);
    }
    let mut found = Vec::new();
    for (lock, mut rows) in by_lock {
        rows.sort_by_key(|r| r.second);
        let mut waits: Vec<f64> = rows.iter().map(|r| r.wait_seconds).collect();
        waits.resize(seconds.max(waits.len()), 0.0);
        let usual_wait = median(&mut waits);
        let mut p99s: Vec<f64> = rows.iter().map(|r| r.p99_seconds).collect();
        let usual_p99 = median(&mut p99s);
        let spiking = |r: &LockSecond| {
            let by_wait = r.wait_seconds >= FLOOR_SECONDS && r.wait_seconds >= FACTOR * usual_wait;
            let by_p99 = r.acquisitions >= MIN_ACQUISITIONS
                && r.p99_seconds >= FLOOR_P99_SECONDS
                && r.p99_seconds >= FACTOR * usual_p99;
            by_wait || by_p99
        };
        let mut current: Option<Building> = None;
        for row in rows.iter().filter(|r| spiking(r)) {
            let continues = current
                .as_ref()
                .is_some_and(|(spike, _, _)| spike.end_seconds == row.second);
            if !continues {
                found.extend(current.take().map(finish));
                current = Some((
                    Spike {
                        start_seconds: row.second,
                        end_seconds: row.second,
                        start_unix_seconds: started_unix_seconds + row.second as f64,
                        lock,
                        name: row.name.clone(),
                        wait_seconds: 0.0,
                        p99_seconds: 0.0,
                        usual_wait_seconds: usual_wait,
                        top_wait_site: None,
                        top_holder_site: None,
                        gc: None,
                        run_queue: None,
                        context: None,
                    },
                    Vec::new(),
                    Vec::new(),
                ));
            }
            if let Some((spike, sites, holders)) = current.as_mut() {
                spike.end_seconds = row.second + 1;
                spike.wait_seconds += row.wait_seconds;
                spike.p99_seconds = spike.p99_seconds.max(row.p99_seconds);
                tally(sites, row.top_wait_site.as_ref(), row.wait_seconds);
                tally(holders, row.top_holder_site.as_ref(), row.wait_seconds);
            }
        }
        found.extend(current.take().map(finish));
    }
    if let Some((session, seconds)) = gc {
        let second_of = |second: u64| {
            seconds
                .binary_search_by_key(&second, |s| s.second)
                .ok()
                .map(|i| &seconds[i].figures)
        };
        for spike in &mut found {
            let mut figures = session.empty_like();
            for second in spike.start_seconds..spike.end_seconds {
                if let Some(more) = second_of(second) {
                    figures.add(more);
                }
            }
            // The wait of the spike's seconds in which the world stopped
            // for at least half that second's p99 wait.
            let paused_wait: f64 = timeline
                .iter()
                .filter(|r| {
                    r.lock == spike.lock
                        && r.second >= spike.start_seconds
                        && r.second < spike.end_seconds
                        && second_of(r.second).is_some_and(|s| {
                            s.pauses > 0 && s.pause_seconds_max >= r.p99_seconds / 2.0
                        })
                })
                .map(|r| r.wait_seconds)
                .sum();
            if paused_wait >= spike.wait_seconds / 2.0 && paused_wait > 0.0 {
                spike.context = Some(SpikeContext::GcPause);
            }
            spike.gc = Some(figures);
        }
    }
    if let Some((unwatched_cpu, seconds)) = run_queue {
        let watched =
            |second: u64| second >= first && second < end && outside(unwatched_cpu, second);
        let mut p99s: Vec<f64> = seconds
            .iter()
            .filter(|s| watched(s.second))
            .map(|s| s.figures.p99_seconds)
            .collect();
        let watched_seconds = (first..end).filter(|&s| watched(s)).count();
        p99s.resize(watched_seconds.max(p99s.len()), 0.0);
        let usual_p99 = median(&mut p99s);
        for spike in &mut found {
            // None of its seconds watched: nothing known of the CPU.
            if !(spike.start_seconds..spike.end_seconds).any(watched) {
                continue;
            }
            let mut figures = RunQueueFigures::default();
            for s in seconds.iter().filter(|s| {
                s.second >= spike.start_seconds && s.second < spike.end_seconds && watched(s.second)
            }) {
                figures.add(&s.figures);
            }
            let starved = figures.wait_seconds_total >= STARVED_SHARE * spike.wait_seconds
                && figures.p99_seconds >= FLOOR_RUN_QUEUE_P99_SECONDS
                && figures.p99_seconds >= FACTOR * usual_p99;
            if spike.context.is_none() && starved {
                spike.context = Some(SpikeContext::CpuStarvation);
            }
            spike.run_queue = Some(figures);
        }
    }
    for spike in found.iter_mut().filter(|s| s.context.is_none()) {
        let convoy: f64 = timeline
            .iter()
            .filter(|r| {
                r.lock == spike.lock
                    && r.second >= spike.start_seconds
                    && r.second < spike.end_seconds
                    && timed(r.second)
            })
            .map(|r| r.convoy_wait_seconds)
            .sum();
        if convoy > 0.0 && convoy >= CONVOY_SHARE * spike.wait_seconds {
            spike.context = Some(SpikeContext::WriterConvoy);
        }
    }
    found.sort_by(|a, b| {
        b.wait_seconds
            .total_cmp(&a.wait_seconds)
            .then_with(|| a.start_seconds.cmp(&b.start_seconds))
    });
    found
}

/// A spike being built, with the wait of the seconds each top waiting
/// site and each top holder site was the top of.
type Building = (Spike, Vec<(Arc<Frame>, f64)>, Vec<(Arc<Frame>, f64)>);

/// Adds a second's wait to its top site's tally.
fn tally(sites: &mut Vec<(Arc<Frame>, f64)>, site: Option<&Arc<Frame>>, wait: f64) {
    let Some(site) = site else {
        return;
    };
    match sites.iter_mut().find(|(f, _)| f == site) {
        Some((_, total)) => *total += wait,
        None => sites.push((site.clone(), wait)),
    }
}

/// A spike with its top sites: those whose seconds waited most.
fn finish((mut spike, sites, holders): Building) -> Spike {
    let top = |sites: Vec<(Arc<Frame>, f64)>| {
        sites
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(frame, _)| frame)
    };
    spike.top_wait_site = top(sites);
    spike.top_holder_site = top(holders);
    spike
}

/// The median of `values` (0 when empty).
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: u64, end: u64, unwatched: &[SecondRange], started: f64) -> Span<'_> {
        Span {
            first,
            end,
            unwatched,
            started_unix_seconds: started,
            gc: None,
            run_queue: None,
        }
    }

    fn row(second: u64, lock: u64, wait: f64, p99: f64, site: &str) -> LockSecond {
        LockSecond {
            second,
            lock,
            name: Some(format!("main.mu{lock}").into()),
            contentions: 100,
            acquisitions: 100,
            wait_seconds: wait,
            p50_seconds: p99 / 4.0,
            p99_seconds: p99,
            max_seconds: p99 * 2.0,
            convoy_wait_seconds: 0.0,
            top_wait_site: Some(Arc::new(Frame {
                function: Some(site.into()),
                ..Frame::unknown(0x1000)
            })),
            top_holder_site: Some(Arc::new(Frame {
                function: Some(format!("{site}.holder")),
                ..Frame::unknown(0x2000)
            })),
        }
    }

    #[test]
    fn a_burst_over_steady_contention_is_one_spike() {
        let mut timeline: Vec<LockSecond> = (0..20)
            .map(|s| row(s, 1, 0.002, 0.000_05, "main.steady"))
            .collect();
        // Seconds 8 and 9: twenty times the usual wait, on another site.
        for s in [8, 9] {
            timeline[s as usize] = row(s, 1, 0.040, 0.002, "main.burst");
        }
        let spikes = spikes(&timeline, span(0, 20, &[], 1000.0));
        assert_eq!(spikes.len(), 1, "{spikes:#?}");
        let spike = &spikes[0];
        assert_eq!((spike.start_seconds, spike.end_seconds), (8, 10));
        assert_eq!(spike.start_unix_seconds, 1008.0);
        assert!((spike.wait_seconds - 0.080).abs() < 1e-12);
        assert_eq!(spike.p99_seconds, 0.002);
        assert_eq!(spike.usual_wait_seconds, 0.002);
        assert_eq!(
            spike
                .top_wait_site
                .as_ref()
                .and_then(|f| f.function.as_deref()),
            Some("main.burst")
        );
        assert_eq!(
            spike
                .top_holder_site
                .as_ref()
                .and_then(|f| f.function.as_deref()),
            Some("main.burst.holder")
        );
    }

    #[test]
    fn steady_contention_and_noise_are_not_spikes() {
        // The same wait every second.
        let steady: Vec<LockSecond> = (0..20)
            .map(|s| row(s, 1, 0.5, 0.01, "main.steady"))
            .collect();
        assert!(spikes(&steady, span(0, 20, &[], 0.0)).is_empty());
        // A lock contended once, far below the floor.
        let noise = vec![row(3, 2, 0.000_2, 0.000_05, "main.rare")];
        assert!(spikes(&noise, span(0, 20, &[], 0.0)).is_empty());
        // One stray long wait among twenty: its p99, eight times the usual,
        // is that one wait, and no spike.
        let mut stray = steady.clone();
        stray[6].acquisitions = 20;
        stray[6].p99_seconds = 0.08;
        assert!(spikes(&stray, span(0, 20, &[], 0.0)).is_empty());
        // The same p99 over a hundred waits is one.
        stray[6].acquisitions = 100;
        assert_eq!(spikes(&stray, span(0, 20, &[], 0.0)).len(), 1);
    }

    #[test]
    fn a_lock_quiet_most_of_the_time_spikes_when_it_waits() {
        let burst = vec![
            row(4, 3, 0.3, 0.002, "main.burst"),
            row(5, 3, 0.2, 0.002, "main.burst"),
            row(7, 3, 0.1, 0.002, "main.burst"),
        ];
        let found = spikes(&burst, span(0, 20, &[], 0.0));
        assert_eq!(found.len(), 2, "seconds 4-5 and 7: {found:#?}");
        assert_eq!((found[0].start_seconds, found[0].end_seconds), (4, 6));
        assert_eq!((found[1].start_seconds, found[1].end_seconds), (7, 8));
        // Outside the window asked for: nothing.
        assert!(spikes(&burst, span(10, 20, &[], 0.0)).is_empty());
    }

    #[test]
    fn a_pause_as_long_as_the_waits_is_the_spikes_context() {
        let mut timeline: Vec<LockSecond> = (0..20)
            .map(|s| row(s, 1, 0.002, 0.000_05, "main.steady"))
            .collect();
        timeline[5] = row(5, 1, 0.040, 0.004, "main.burst");
        timeline[12] = row(12, 1, 0.040, 0.004, "main.burst");
        let pause = |second, seconds: f64| {
            let mut figures = GcReport::empty(true);
            figures.add_cycle();
            figures.add_pause(seconds, Some(true));
            GcSecond { second, figures }
        };
        // A 3 ms pause in second 5 (p99 4 ms); a 0.1 ms one in second 12.
        // Seconds 12-13 are one spike whose long pause is in its lesser
        // second only: most of its wait was not paused.
        timeline[13] = row(13, 1, 0.012, 0.001, "main.burst");
        let seconds = [pause(5, 0.003), pause(12, 0.000_1), pause(13, 0.003)];
        let session = GcReport::empty(true);
        let found = spikes(
            &timeline,
            Span {
                gc: Some((&session, &seconds)),
                ..span(0, 20, &[], 0.0)
            },
        );
        assert_eq!(found.len(), 2, "{found:#?}");
        let at = |second| found.iter().find(|s| s.start_seconds == second).unwrap();
        assert_eq!(at(5).context, Some(SpikeContext::GcPause));
        assert_eq!(at(5).gc.as_ref().map(|g| g.cycles), Some(1));
        assert_eq!(at(12).end_seconds, 14);
        assert_eq!(at(12).context, None);
        assert_eq!(at(12).gc.as_ref().map(|g| g.gc_pauses), Some(Some(2)));
        // Unprobed: no figures, no context.
        assert!(spikes(&timeline, span(0, 20, &[], 0.0))
            .iter()
            .all(|s| s.gc.is_none() && s.context.is_none()));
    }

    #[test]
    fn waits_for_a_cpu_as_long_as_the_locks_are_starvation() {
        let mut timeline: Vec<LockSecond> = (0..20)
            .map(|s| row(s, 1, 0.002, 0.000_05, "main.steady"))
            .collect();
        // Two spikes: seconds 5-6, starved (threads waited 2 s a second for
        // a CPU, p99 8 ms), and second 14, whose waits for a CPU were as
        // usual.
        for s in [5, 6, 14] {
            timeline[s as usize] = row(s, 1, 0.2, 0.004, "main.burst");
        }
        // 100 waits in the log2 bucket `bucket`, summing to `total`.
        let cpu = |second, total: f64, bucket: usize| {
            let mut buckets = [0; probe_common::WAIT_HIST_BUCKETS];
            buckets[bucket] = 100;
            let figures = RunQueueFigures::new(100, (total * 1e9) as u64, 1 << bucket, buckets);
            RunQueueSecond { second, figures }
        };
        // Usually ~0.5 ms (bucket 18); ~8 ms (bucket 22) when starved.
        let mut seconds: Vec<RunQueueSecond> = (0..20).map(|s| cpu(s, 0.150, 18)).collect();
        seconds[5] = cpu(5, 2.0, 22);
        seconds[6] = cpu(6, 2.0, 22);
        let found = spikes(
            &timeline,
            Span {
                run_queue: Some((&[], &seconds)),
                ..span(0, 20, &[], 0.0)
            },
        );
        let at = |found: &[Spike], second| {
            found
                .iter()
                .find(|s| s.start_seconds == second)
                .map(|s| s.context)
        };
        assert_eq!(at(&found, 5), Some(Some(SpikeContext::CpuStarvation)));
        assert_eq!(at(&found, 14), Some(None));
        let starved = found.iter().find(|s| s.start_seconds == 5).unwrap();
        let figures = starved.run_queue.as_ref().unwrap();
        assert_eq!(figures.waits, 200);
        assert!((figures.wait_seconds_total - 4.0).abs() < 1e-9);
        // Starved as much but waiting less for a CPU than on the lock: a
        // lock problem.
        let mut less = seconds.clone();
        less[5] = cpu(5, 0.09, 22);
        less[6] = cpu(6, 0.09, 22);
        let found = spikes(
            &timeline,
            Span {
                run_queue: Some((&[], &less)),
                ..span(0, 20, &[], 0.0)
            },
        );
        assert_eq!(at(&found, 5), Some(None));
        // The starved seconds unwatched (the governor's windows): nothing
        // known, not even that it was not starvation.
        let off = [SecondRange { start: 4, end: 8 }];
        let found = spikes(
            &timeline,
            Span {
                run_queue: Some((&off, &seconds)),
                ..span(0, 20, &[], 0.0)
            },
        );
        assert_eq!(at(&found, 5), Some(None));
        let unknown = found.iter().find(|s| s.start_seconds == 5).unwrap();
        assert!(unknown.run_queue.is_none(), "{unknown:#?}");
        // A GC pause explains it first.
        let mut figures = GcReport::empty(true);
        figures.add_pause(0.004, Some(true));
        let gc = [
            GcSecond {
                second: 5,
                figures: figures.clone(),
            },
            GcSecond { second: 6, figures },
        ];
        let session = GcReport::empty(true);
        let found = spikes(
            &timeline,
            Span {
                gc: Some((&session, &gc)),
                run_queue: Some((&[], &seconds)),
                ..span(0, 20, &[], 0.0)
            },
        );
        assert_eq!(at(&found, 5), Some(Some(SpikeContext::GcPause)));
    }

    #[test]
    fn readers_stalled_behind_writers_for_most_of_it_are_a_writer_convoy() {
        let mut timeline: Vec<LockSecond> = (0..20)
            .map(|s| row(s, 1, 0.002, 0.000_05, "main.steady"))
            .collect();
        // Second 6: 0.3 s of wait, 0.2 s of it readers behind writers;
        // second 12: as much wait, 0.1 s of it.
        timeline[6] = row(6, 1, 0.3, 0.004, "main.reader");
        timeline[6].convoy_wait_seconds = 0.2;
        timeline[12] = row(12, 1, 0.3, 0.004, "main.reader");
        timeline[12].convoy_wait_seconds = 0.1;
        let found = spikes(&timeline, span(0, 20, &[], 0.0));
        let at = |second| found.iter().find(|s| s.start_seconds == second).unwrap();
        assert_eq!(at(6).context, Some(SpikeContext::WriterConvoy));
        assert_eq!(at(12).context, None);
        // Untimed, the second says nothing.
        let off = [SecondRange { start: 6, end: 7 }];
        assert!(spikes(&timeline, span(0, 20, &off, 0.0))
            .iter()
            .all(|s| s.start_seconds != 6));
    }

    #[test]
    fn only_timed_seconds_set_what_is_usual() {
        // Steady waits, timed one second in eight (the governor's windows):
        // the untimed seconds are no quiet seconds, so nothing spikes.
        let timeline: Vec<LockSecond> = (0..40)
            .step_by(8)
            .map(|s| row(s, 1, 0.02, 0.001, "main.steady"))
            .collect();
        let unwatched: Vec<SecondRange> = (0..5)
            .map(|w| SecondRange {
                start: w * 8 + 1,
                end: w * 8 + 8,
            })
            .collect();
        assert!(spikes(&timeline, span(0, 40, &unwatched, 0.0)).is_empty());
        // Counted as quiet, they would have made every timed second a spike.
        assert_eq!(spikes(&timeline, span(0, 40, &[], 0.0)).len(), 5);
        // A timed second far above the others still is one.
        let mut burst = timeline.clone();
        burst[2] = row(16, 1, 0.2, 0.01, "main.burst");
        let found = spikes(&burst, span(0, 40, &unwatched, 0.0));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].start_seconds, 16);
    }
}
