//! The plain live view: when stdout is not a terminal, a few lines of text
//! per second (busiest locks, hottest keys, failing CAS sites), for logs.

use std::{
    fmt::Write as _,
    io::{self, Write as _},
    sync::Arc,
};

use tokio::sync::watch;

use super::{seconds, target_label};
use crate::model::Snapshot;

/// Items listed per section.
const TOP: usize = 3;

/// The lines for one snapshot, ending in a newline.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[{:.0}s] {}: events lost {}",
        snapshot.duration_seconds,
        target_label(snapshot),
        snapshot.events_lost
    );
    if let Some(context) = super::context_label(snapshot) {
        let _ = writeln!(out, "  {context}");
    }
    let locks: Vec<String> = snapshot
        .locks
        .iter()
        .filter(|l| l.contentions > 0)
        .take(TOP)
        .map(|l| {
            format!(
                "{} {} contentions, {} waited",
                l.name
                    .clone()
                    .unwrap_or_else(|| format!("{:#x}", l.address)),
                l.contentions,
                seconds(l.wait_seconds_total)
            )
        })
        .collect();
    if !locks.is_empty() {
        let _ = writeln!(out, "  locks: {}", locks.join("; "));
    }
    for map in snapshot
        .maps
        .iter()
        .filter(|m| m.keyed && !m.top_keys.is_empty())
        .take(TOP)
    {
        let keys: Vec<String> = map
            .top_keys
            .iter()
            .take(TOP)
            .map(|key| {
                format!(
                    "{} {} ({:.0}%)",
                    key.key,
                    key.total,
                    100.0 * key.total as f64 / map.total.max(1) as f64
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  hot keys of {} ({} ops): {}",
            map.label(),
            map.total,
            keys.join(", ")
        );
    }
    let cas: Vec<String> = snapshot
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

/// Prints the lines of every snapshot published on `snapshots` to stdout
/// until the channel closes.
pub async fn follow(mut snapshots: watch::Receiver<Arc<Snapshot>>) -> io::Result<()> {
    while snapshots.changed().await.is_ok() {
        let text = render(&snapshots.borrow_and_update());
        let mut stdout = io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_busiest_lock_and_hottest_key() {
        let text = render(&crate::view::sample_snapshot());
        assert!(text.starts_with("[3s] PID 7"), "{text}");
        assert!(
            text.contains("locks: main.hotMu 12 contentions, 2.00ms waited"),
            "{text}"
        );
        assert!(
            text.contains("hot keys of main.cache (100 ops): k1 75 (75%)"),
            "{text}"
        );
        assert!(text.contains("CAS: main.f+0x10 2/9 failed"), "{text}");
    }
}
