//! Go's GC cycles and stop-the-world pauses, from the runtime probes'
//! events: over the session and per second.

use std::collections::VecDeque;

use probe_common::{RuntimeEvent, RuntimeEventKind, NO_STW_REASON};

use crate::{
    goruntime::GC_STW_REASONS,
    model::{GcReport, GcSecond, TIMELINE_SECONDS},
};

/// The session's GC figures.
#[derive(Debug, Clone)]
pub struct Gc {
    total: GcReport,
    /// Seconds that had any, oldest first (the last [`TIMELINE_SECONDS`]).
    seconds: VecDeque<GcSecond>,
}

impl Gc {
    /// Nothing yet; `told_apart`: whether pauses carry their reason.
    pub fn new(told_apart: bool) -> Self {
        Self {
            total: GcReport::empty(told_apart),
            seconds: VecDeque::new(),
        }
    }

    /// Folds in one event of time column (second) `second`; false for an
    /// event of unknown kind.
    pub fn add(&mut self, event: &RuntimeEvent, second: u64) -> bool {
        let Some(kind) = RuntimeEventKind::from_raw(event.kind) else {
            return false;
        };
        let told_apart = self.total.gc_pauses.is_some();
        let index = match self.seconds.iter().rposition(|s| s.second <= second) {
            Some(i) if self.seconds[i].second == second => i,
            found => {
                let at = found.map_or(0, |i| i + 1);
                self.seconds.insert(
                    at,
                    GcSecond {
                        second,
                        figures: GcReport::empty(told_apart),
                    },
                );
                at
            }
        };
        let reports = [&mut self.total, &mut self.seconds[index].figures];
        match kind {
            RuntimeEventKind::GcCycle => reports.into_iter().for_each(GcReport::add_cycle),
            RuntimeEventKind::WorldStopped => {
                let gc =
                    (event.reason != NO_STW_REASON).then(|| GC_STW_REASONS.contains(&event.reason));
                let seconds = event.duration_ns as f64 / 1e9;
                for report in reports {
                    report.add_pause(seconds, gc);
                }
            }
        }
        while self
            .seconds
            .front()
            .is_some_and(|s| s.second + TIMELINE_SECONDS <= second)
        {
            self.seconds.pop_front();
        }
        true
    }

    /// The session's figures.
    pub fn total(&self) -> &GcReport {
        &self.total
    }

    /// The seconds that had any, oldest first.
    pub fn seconds(&self) -> Vec<GcSecond> {
        self.seconds.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::{EventHeader, EventTag};

    fn event(kind: RuntimeEventKind, reason: u32, duration_ns: u64) -> RuntimeEvent {
        RuntimeEvent {
            header: EventHeader {
                tag: EventTag::Runtime as u32,
                cpu: 0,
                tgid: 1,
                tid: 1,
                timestamp_ns: 0,
            },
            kind: kind as u32,
            reason,
            duration_ns,
        }
    }

    #[test]
    fn cycles_and_pauses_add_up_per_second_and_in_all() {
        let mut gc = Gc::new(true);
        assert!(gc.add(&event(RuntimeEventKind::GcCycle, NO_STW_REASON, 0), 3));
        // Sweep termination (2), mark termination (1), and another stop
        // (a heap dump, 3).
        assert!(gc.add(&event(RuntimeEventKind::WorldStopped, 2, 100_000), 3));
        assert!(gc.add(&event(RuntimeEventKind::WorldStopped, 1, 300_000), 3));
        assert!(gc.add(&event(RuntimeEventKind::WorldStopped, 3, 50_000), 1));
        let mut unknown = event(RuntimeEventKind::GcCycle, 0, 0);
        unknown.kind = 99;
        assert!(!gc.add(&unknown, 3));
        let total = gc.total();
        assert_eq!((total.cycles, total.pauses), (1, 3));
        assert_eq!(total.gc_pauses, Some(2));
        assert!((total.gc_pause_seconds_total.unwrap() - 0.000_4).abs() < 1e-12);
        assert!((total.pause_seconds_max - 0.000_3).abs() < 1e-12);
        let seconds = gc.seconds();
        assert_eq!(
            seconds.iter().map(|s| s.second).collect::<Vec<_>>(),
            [1, 3],
            "in order, though second 1 came last"
        );
        assert_eq!(seconds[1].figures.pauses, 2);
        assert_eq!(seconds[0].figures.gc_pauses, Some(0));
    }

    #[test]
    fn without_reasons_gc_pauses_are_unknown() {
        let mut gc = Gc::new(false);
        gc.add(&event(RuntimeEventKind::WorldStopped, NO_STW_REASON, 10), 0);
        assert_eq!(gc.total().pauses, 1);
        assert_eq!(gc.total().gc_pauses, None);
        assert_eq!(gc.total().gc_pause_seconds_total, None);
    }
}
