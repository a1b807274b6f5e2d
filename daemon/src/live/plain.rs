//! The plain live view: when stdout is not a terminal, a few lines of text
//! per second (busiest locks, hottest keys, failing CAS sites), for logs.

use std::fmt::Write as _;

use super::{seconds, LiveSnapshot};

/// Items listed per section.
const TOP: usize = 3;

/// The lines for one snapshot, ending in a newline.
pub fn render(snapshot: &LiveSnapshot) -> String {
    let f = &snapshot.figures;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[{:.0}s] {}: events lost {}",
        f.elapsed_seconds, snapshot.target, f.events_lost
    );
    let locks: Vec<String> = f
        .locks
        .iter()
        .filter(|l| l.contentions > 0)
        .take(TOP)
        .map(|l| {
            format!(
                "{} {} contentions, {} waited",
                l.lock,
                l.contentions,
                seconds(l.wait_seconds)
            )
        })
        .collect();
    if !locks.is_empty() {
        let _ = writeln!(out, "  locks: {}", locks.join("; "));
    }
    for map in f.maps.iter().filter(|m| !m.hot_keys.is_empty()).take(TOP) {
        let total: u64 = map.hot_keys.iter().map(|(_, n)| n).sum();
        let keys: Vec<String> = map
            .hot_keys
            .iter()
            .filter(|(key, _)| key != "other")
            .take(TOP)
            .map(|(key, n)| {
                format!(
                    "{key} {n} ({:.0}%)",
                    100.0 * *n as f64 / total.max(1) as f64
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  hot keys of {} ({total} ops): {}",
            map.map,
            keys.join(", ")
        );
    }
    let cas: Vec<String> = f
        .cas
        .iter()
        .filter(|c| c.failures > 0)
        .take(TOP)
        .map(|c| format!("{} {}/{} failed", c.site, c.failures, c.attempts))
        .collect();
    if !cas.is_empty() {
        let _ = writeln!(out, "  CAS: {}", cas.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::metrics::{LockMetric, MapMetric, MetricsSnapshot};

    #[test]
    fn lists_the_busiest_lock_and_hottest_key() {
        let snapshot = LiveSnapshot {
            target: "PID 7 /bin/x (go1.27.3)".into(),
            figures: MetricsSnapshot {
                elapsed_seconds: 3.0,
                locks: vec![LockMetric {
                    lock: "main.hotMu".into(),
                    kind: "mutex",
                    contentions: 12,
                    acquisitions: 12,
                    wait_seconds: 0.002,
                    histogram: Vec::new(),
                }],
                maps: vec![MapMetric {
                    map: "main.cache".into(),
                    kind: "map",
                    ops: vec![("load", 100)],
                    hot_keys: vec![("k1".into(), 75), ("other".into(), 25)],
                }],
                ..MetricsSnapshot::default()
            },
            heatmaps: Vec::new(),
        };
        let text = render(&snapshot);
        assert!(text.starts_with("[3s] PID 7"), "{text}");
        assert!(
            text.contains("locks: main.hotMu 12 contentions, 2.00ms waited"),
            "{text}"
        );
        assert!(
            text.contains("hot keys of main.cache (100 ops): k1 75 (75%)"),
            "{text}"
        );
    }
}
