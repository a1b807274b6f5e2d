//! The plain-text view of a [`Report`].

use std::fmt::Write as _;

use super::{heatmap, Report};

/// How many locks the text view lists.
pub const TOP_LOCKS: usize = 20;

/// Width of the heatmaps' time axis, in characters.
pub const HEATMAP_WIDTH: usize = 60;

/// Renders the report for a terminal or a log.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let t = &report.target;
    let _ = writeln!(
        out,
        "mapwatch: PID {} {} ({}), {:.1} s, stopped by {}",
        t.pid,
        t.exe,
        t.go_version.as_deref().unwrap_or("not Go"),
        report.duration_seconds,
        report.stopped_by
    );
    for probe in &report.probes {
        let _ = writeln!(
            out,
            "  probe {} +{:#x} ({} site, skip when {})",
            probe.function, probe.offset, probe.site, probe.skip_when
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "LOCK CONTENTION (entries into the slow path)");
    if report.locks.is_empty() {
        let _ = writeln!(out, "  no contended locks seen");
    } else {
        let _ = writeln!(out, "  {:>12}  {:<18}  NAME", "CONTENTIONS", "ADDRESS");
        for lock in report.locks.iter().take(TOP_LOCKS) {
            let _ = writeln!(
                out,
                "  {:>12}  {:<18}  {}",
                lock.contentions,
                lock.address,
                lock.name.as_deref().unwrap_or("(not a global)")
            );
        }
        if report.locks.len() > TOP_LOCKS {
            let _ = writeln!(out, "  … and {} more", report.locks.len() - TOP_LOCKS);
        }
    }
    if !report.cas.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "COMPARE-AND-SWAP OUTCOMES");
        let _ = writeln!(
            out,
            "  {:>12}  {:>12}  {:>7}  SITE",
            "FAILURES", "ATTEMPTS", "RATIO"
        );
        for cas in &report.cas {
            let _ = writeln!(
                out,
                "  {:>12}  {:>12}  {:>6.1}%  {}",
                cas.failures,
                cas.attempts,
                cas.failure_ratio * 100.0,
                cas.site
            );
            let _ = writeln!(
                out,
                "  {:>12}  {:>12}  {:>7}  probe: {}",
                "", "", "", cas.probe
            );
        }
    }
    for map in &report.heatmaps {
        let _ = writeln!(out);
        out.push_str(&heatmap::render_terminal(map, HEATMAP_WIDTH, false));
    }
    let _ = writeln!(out);
    let c = &report.probe_counters;
    let _ = writeln!(
        out,
        "events lost: {}   lock probe hits: {}   skipped re-entries: {}   CAS probe hits: {}",
        report.events_lost, c.hits, c.skipped_reentry, c.cas_hits
    );
    if c.output_errors > 0 || c.unknown_site > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} events could not be written by the kernel, {} hits at unknown sites",
            c.output_errors, c.unknown_site
        );
    }
    out
}
