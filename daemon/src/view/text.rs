//! The plain-text report of a session.

use std::{fmt::Write as _, io};

use super::{heatmap, human_duration as seconds, truncate, Format};
use crate::model::{skip_when_name, LockKind, ProbeKind, Snapshot as Report, SpikeContext};

/// The plain-text report.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextReport;

impl Format for TextReport {
    fn write(&self, report: &Report, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(render(report).as_bytes())
    }
}

/// How many locks the text view lists.
pub const TOP_LOCKS: usize = 20;

/// How many locks get a wait histogram in the text view.
pub const HISTOGRAM_LOCKS: usize = 3;

/// Width of the heatmaps' time axis, in characters.
pub const HEATMAP_WIDTH: usize = 60;

/// The worst spike in a line: when, which lock, how much, from where.
pub fn spike_line(spike: &crate::model::Spike, more: usize) -> String {
    let lock = spike.label();
    let span = spike.end_seconds - spike.start_seconds;
    let mut line = format!(
        "worst spike: {} for {span} s (seconds {}-{} of the session): {lock} waited {} ({} in a usual second), p99 {}",
        super::utc_time(spike.start_unix_seconds),
        spike.start_seconds,
        spike.end_seconds,
        seconds(spike.wait_seconds),
        seconds(spike.usual_wait_seconds),
        seconds(spike.p99_seconds),
    );
    if let Some(site) = &spike.top_wait_site {
        let _ = write!(line, ", most from {site}");
    }
    if let Some(site) = &spike.top_holder_site {
        let _ = write!(line, ", most held by {site}");
    }
    let mut meanwhile = Vec::new();
    if let Some(gc) = spike
        .gc
        .as_ref()
        .filter(|gc| gc.cycles > 0 || gc.pauses > 0)
    {
        meanwhile.push(gc_figures(gc));
    }
    if let Some(queue) = spike.run_queue.as_ref().filter(|q| q.waits > 0) {
        meanwhile.push(run_queue_figures(queue));
    }
    if !meanwhile.is_empty() {
        let _ = write!(line, "; meanwhile {}", meanwhile.join(", "));
    }
    match spike.context {
        Some(SpikeContext::GcPause) => {
            line.push_str(": a GC pause as long as the waits");
        }
        Some(SpikeContext::CpuStarvation) => {
            line.push_str(": CPU starvation (the lock's holders waited for a CPU too)");
        }
        Some(SpikeContext::WriterConvoy) => {
            line.push_str(
                ": a writer convoy (readers queued behind a writer that waited for the readers inside)",
            );
        }
        None => match (spike.gc.is_some(), spike.run_queue.is_some()) {
            (true, true) => line.push_str(": not a GC pause, nor CPU starvation"),
            (true, false) => line.push_str(": not a GC pause"),
            (false, true) => line.push_str(": not CPU starvation"),
            (false, false) => {}
        },
    }
    if more > 0 {
        let _ = write!(line, "; {more} more spike(s)");
    }
    line
}

/// Go's GC cycles and pauses in a phrase: `3 GC cycle(s), the world
/// stopped 6 time(s) for 1.20ms (longest 400.0µs)`.
pub fn gc_figures(gc: &crate::model::GcReport) -> String {
    format!(
        "{} GC cycle(s), the world stopped {} time(s) for {} (longest {})",
        gc.cycles,
        gc.pauses,
        seconds(gc.pause_seconds_total),
        seconds(gc.pause_seconds_max),
    )
}

/// Waits for a CPU in a phrase: `threads waited 2.10s for a CPU (1200
/// waits, p99 8.4ms)`.
pub fn run_queue_figures(queue: &crate::model::RunQueueFigures) -> String {
    format!(
        "threads waited {} for a CPU ({} wait(s), p99 {}, longest {})",
        seconds(queue.wait_seconds_total),
        queue.waits,
        seconds(queue.p99_seconds),
        seconds(queue.wait_seconds_max),
    )
}

/// The waits for a CPU over the session in a line, saying which seconds
/// were not watched.
pub fn run_queue_line(queue: &crate::model::RunQueueReport) -> String {
    let mut line = format!("cpu: {}", run_queue_figures(&queue.figures));
    let unwatched: u64 = queue.unwatched.iter().map(|r| r.end - r.start).sum();
    if unwatched > 0 {
        let _ = write!(
            line,
            "; not watched in {unwatched} s of it (the overhead governor attached the scheduler tracepoints only some seconds: they cost more than half its budget)"
        );
    }
    line
}

/// Go's GC over the session in a line.
pub fn gc_line(gc: &crate::model::GcReport) -> String {
    let mut line = format!("go runtime: {}", gc_figures(gc));
    if let (Some(n), Some(total)) = (gc.gc_pauses, gc.gc_pause_seconds_total) {
        let _ = write!(line, ", {n} of them for the GC ({})", seconds(total));
    }
    line
}

/// Renders the report for a terminal or a log.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let t = &report.target;
    let _ = writeln!(
        out,
        "mapwatch: PID {} {} ({}), {:.1} s, {}",
        t.pid,
        t.exe,
        t.go_version.as_deref().unwrap_or("not Go"),
        report.duration_seconds,
        match report.stopped_by {
            Some(reason) => format!("stopped by {reason}"),
            None => "running".to_string(),
        }
    );
    if let Some(debug) = &t.debug_file {
        let _ = writeln!(out, "  names and lines from the debug file {debug}");
    }
    if let Some(spike) = report.spikes.first() {
        let _ = writeln!(out, "  {}", spike_line(spike, report.spikes.len() - 1));
    }
    if let Some(gc) = &report.gc {
        let _ = writeln!(out, "  {}", gc_line(gc));
    }
    if let Some(queue) = &report.run_queue {
        let _ = writeln!(out, "  {}", run_queue_line(queue));
    }
    if let Some(window) = &report.window {
        let _ = writeln!(
            out,
            "  recorded window: {} to {} (seconds {:.0} to {:.0} of the session){}",
            super::utc_time(window.from_unix_seconds),
            super::utc_time(window.to_unix_seconds),
            window.from_session_seconds,
            window.to_session_seconds,
            if window.truncated {
                "; the recording begins later than asked"
            } else {
                ""
            }
        );
    }
    let returns = report
        .probes
        .iter()
        .filter(|p| p.kind == ProbeKind::LockReturn)
        .count();
    if returns > 0 {
        let _ = writeln!(
            out,
            "  probe {returns} RET instruction(s) of the lock slow paths (wait times)"
        );
    }
    for probe in report
        .probes
        .iter()
        .filter(|p| p.kind != ProbeKind::LockReturn && p.kind != ProbeKind::Map)
    {
        let _ = writeln!(
            out,
            "  probe {} +{:#x} ({} site, skip when {})",
            probe.function,
            probe.offset,
            probe.site,
            skip_when_name(probe.skip_when)
        );
    }
    let map_probes: Vec<&str> = report
        .probes
        .iter()
        .filter(|p| p.kind == ProbeKind::Map)
        .map(|p| p.function.as_str())
        .collect();
    if !map_probes.is_empty() {
        let _ = writeln!(
            out,
            "  probe {} map function(s): {}",
            map_probes.len(),
            map_probes.join(", ")
        );
    }
    if let Some(overhead) = &report.overhead {
        let _ = writeln!(out, "  {}", overhead_line(overhead));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "LOCK CONTENTION (entries into the slow path)");
    if let Some(lock) = report.locks.iter().find(|lock| !lock.exact) {
        let _ = writeln!(
            out,
            "  sampled: scaled estimates from probes on {:.0}% of the time",
            100.0 * lock.sampled_fraction
        );
    }
    if report.locks.is_empty() {
        let _ = writeln!(out, "  no contended locks seen");
    } else {
        let _ = writeln!(
            out,
            "  {:>12}  {:>12}  {:>10}  {:<18}  NAME",
            "CONTENTIONS", "WAIT TOTAL", "WAIT MAX", "ADDRESS"
        );
        for lock in report.locks.iter().take(TOP_LOCKS) {
            let _ = writeln!(
                out,
                "  {:>12}  {:>12}  {:>10}  {:<18}  {}{}",
                lock.contentions,
                seconds(lock.wait_seconds_total),
                seconds(lock.wait_seconds_max),
                format!("{:#x}", lock.address),
                match (&lock.name, lock.region) {
                    (Some(name), _) => name.clone(),
                    (None, Some(region)) => format!("(not a global: {region})"),
                    (None, None) => "(not a global)".to_string(),
                },
                match (lock.kind, lock.reader_contentions) {
                    (LockKind::RwMutex, _) => " (RWMutex)".to_string(),
                    (LockKind::Rwlock, readers) => format!(
                        " (pthread rwlock: {} reader, {} writer waits)",
                        readers.unwrap_or(0),
                        lock.contentions - readers.unwrap_or(0).min(lock.contentions)
                    ),
                    (LockKind::Futex, _) => " (futex)".to_string(),
                    (LockKind::Runtime, _) => " (runtime)".to_string(),
                    (LockKind::Condvar, _) => " (condition variable)".to_string(),
                    (LockKind::ThreadJoin, _) => " (thread join)".to_string(),
                    (LockKind::Mutex, _) => String::new(),
                }
            );
        }
        // Wait histograms of the most contended locks.
        for lock in report
            .locks
            .iter()
            .filter(|l| l.acquisitions > 0)
            .take(HISTOGRAM_LOCKS)
        {
            let _ = writeln!(
                out,
                "\n  waits of {} ({} acquisitions{}):",
                lock.name
                    .clone()
                    .unwrap_or_else(|| format!("{:#x}", lock.address)),
                lock.acquisitions,
                match (lock.blocked_seconds_total, lock.blocked_parks) {
                    (Some(blocked), Some(parks)) => format!(
                        "; parked {} in {parks} parks, park to runnable",
                        seconds(blocked)
                    ),
                    _ => String::new(),
                }
            );
            let peak = lock
                .wait_histogram
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(1);
            for site in lock.top_call_sites.iter().take(3) {
                // From the first frame outside the lock's own code.
                let own = crate::model::own_frame_index(&site.frames).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "    {:>5.1}% of the wait, {} acquisitions, at {}",
                    site.share * 100.0,
                    site.count,
                    site.frames
                        .get(own)
                        .map_or("(unknown)".to_string(), ToString::to_string)
                );
                for frame in site.frames.iter().skip(own + 1).take(2) {
                    let _ = writeln!(out, "{:>32}{frame}", "from ");
                }
            }
            if !lock.threads.is_empty() {
                let _ = writeln!(out, "    threads: {}", thread_groups(&lock.threads));
            }
            if let Some(convoys) = &lock.convoys {
                let _ = writeln!(out, "    {}", super::convoy_sentence(convoys));
            }
            if let Some(caused) = lock.wait_caused_seconds_total {
                let _ = writeln!(
                    out,
                    "    held by ({} of the wait charged to holders' releases):",
                    seconds(caused)
                );
                for site in lock.top_holder_sites.iter().take(3) {
                    let _ = writeln!(
                        out,
                        "    {}, at {}",
                        super::holder_phrase(site),
                        site.own_frame()
                            .map_or("(unknown)".to_string(), ToString::to_string)
                    );
                }
            }
            for bucket in &lock.wait_histogram {
                let bar = (bucket.count * 40).div_ceil(peak) as usize;
                let _ = writeln!(
                    out,
                    "    {:>10} … {:<10} {:>10}  {}",
                    seconds(bucket.ns_min as f64 / 1e9),
                    seconds(bucket.ns_max as f64 / 1e9),
                    bucket.count,
                    "█".repeat(bar)
                );
            }
        }
        if report.locks.len() > TOP_LOCKS {
            let _ = writeln!(out, "  … and {} more", report.locks.len() - TOP_LOCKS);
        }
    }
    if !report.signal_waits.is_empty() {
        let _ = writeln!(
            out,
            "\nWAITS FOR OTHER THREADS (condition variables, joins: not lock contention)"
        );
        let _ = writeln!(
            out,
            "  {:>12}  {:>12}  {:>10}  {:<18}  NAME, WAITED AT",
            "WAITS", "WAIT TOTAL", "WAIT MAX", "ADDRESS"
        );
        for cond in report.signal_waits.iter().take(TOP_LOCKS) {
            let at = cond
                .top_call_sites
                .first()
                .and_then(|site| crate::model::own_frame(&site.frames))
                .map_or_else(|| "(unknown)".to_string(), ToString::to_string);
            let _ = writeln!(
                out,
                "  {:>12}  {:>12}  {:>10}  {:<18}  {}, at {at}",
                cond.contentions,
                seconds(cond.wait_seconds_total),
                seconds(cond.wait_seconds_max),
                format!("{:#x}", cond.address),
                match (cond.kind, cond.name.as_deref()) {
                    (LockKind::ThreadJoin, _) => "a thread's exit (join)".to_string(),
                    (_, Some(name)) => format!("{name} (condition variable)"),
                    (_, None) => "a condition variable (not a global)".to_string(),
                },
            );
            if !cond.threads.is_empty() {
                let _ = writeln!(out, "{:>24}by {}", "", thread_groups(&cond.threads));
            }
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
    render_maps(&mut out, report);
    for map in &report.heatmaps {
        let _ = writeln!(out);
        out.push_str(&heatmap::render_terminal(map, HEATMAP_WIDTH, false));
    }
    let _ = writeln!(out);
    let c = &report.probe_counters;
    let _ = writeln!(
        out,
        "events lost: {}   lock probe hits: {}   skipped re-entries: {}   CAS probe hits: {}   map events: {}",
        report.events_lost, c.hits, c.skipped_reentry, c.cas_hits, c.map_hits
    );
    if c.map_counts_full > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} map operations were not counted: more maps than the per-map table holds",
            c.map_counts_full
        );
    }
    if c.output_errors > 0 || c.unknown_site > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} events could not be written by the kernel, {} hits at unknown sites",
            c.output_errors, c.unknown_site
        );
    }
    out
}

/// Maps listed in the text report.
const TEXT_MAPS: usize = 10;
/// Hot keys listed per map.
const TEXT_KEYS: usize = 10;

/// The maps section: operations per map, hot keys, the advisor.
/// The overhead governor's line: its estimate, its budget, what it did.
fn overhead_line(overhead: &crate::model::OverheadReport) -> String {
    let budget = match overhead.budget_percent {
        Some(percent) => format!("budget {percent}%"),
        None => "no budget".to_string(),
    };
    if overhead.per_second_percent.is_empty() {
        // The governor judges once a second: nothing was estimated.
        return format!("overhead: not estimated (the session lasted under a second; {budget})");
    }
    let setting = overhead.setting;
    let mut degraded = Vec::new();
    if !setting.stacks {
        degraded.push("callers only (no stacks)".to_string());
    }
    if setting.waits_one_in > 1 {
        degraded.push(format!("wait times 1 s in {}", setting.waits_one_in));
    }
    if setting.keys_one_in > 1 {
        degraded.push(format!("keys of 1 op in {}", setting.keys_one_in));
    }
    if setting.probes_one_in > 1 {
        degraded.push(format!("probes 1 s in {}", setting.probes_one_in));
    }
    let now = if degraded.is_empty() {
        "everything in full".to_string()
    } else {
        degraded.join(", ")
    };
    format!(
        "overhead: ~{:.2}% of the target's CPU ({budget}; {} governor change(s)); now: {now}",
        overhead.estimated_percent,
        overhead.actions.len(),
    )
}

fn render_maps(out: &mut String, report: &Report) {
    if report.maps.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "MAPS (operations by kind; hot keys of keyed maps)");
    if let Some(cost) = &report.map_reading {
        let _ = writeln!(
            out,
            "  structure read from the target's memory: {} map(s), {} bytes in {:.0} µs in the last second (budget {} bytes a second)",
            cost.maps, cost.bytes, cost.microseconds, cost.budget_bytes_per_second
        );
    }
    for map in report.maps.iter().take(TEXT_MAPS) {
        let ops = map.ops.to_string();
        let internal = map.internal.to_string();
        let _ = writeln!(
            out,
            "  {} {} ({:#x}): {} ops: {}{}",
            map.kind,
            map.name.as_deref().unwrap_or("(not a global)"),
            map.address,
            map.total,
            ops,
            if internal.is_empty() {
                String::new()
            } else {
                format!("; internal: {}", internal)
            }
        );
        if !map.exact {
            let _ = writeln!(
                out,
                "    sampled: scaled estimates from probes on {:.0}% of the time, keys of {:.1}% of the operations",
                100.0 * map.sampled_fraction,
                100.0 * map.key_sampled_fraction
            );
        }
        if let Some(health) = &map.health {
            let _ = writeln!(out, "    structure: {}", super::health_sentence(health));
        }
        if !map.keyed {
            continue;
        }
        let _ = writeln!(
            out,
            "    ~{} distinct keys; top keys{}:",
            map.distinct_keys,
            if !map.exact {
                " (estimates)".to_string()
            } else if map.top_k_error_bound == 0 {
                " (exact)".to_string()
            } else {
                format!(
                    " (counts may overestimate by up to {})",
                    map.top_k_error_bound
                )
            }
        );
        for key in map.top_keys.iter().take(TEXT_KEYS) {
            let ops = key.ops.to_string();
            let share = if map.total > 0 {
                100.0 * key.total as f64 / map.total as f64
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "    {:>10}  {:>5.1}%  {:<32}  {}",
                key.total,
                share,
                truncate(&key.key.to_string(), 32),
                ops
            );
        }
        // Where the hottest keys are used: their share per CPU.
        for key in map.top_keys.iter().take(3) {
            let total: u64 = key.per_cpu.iter().sum();
            if total == 0 {
                continue;
            }
            let shares: Vec<String> = key
                .per_cpu
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(cpu, &n)| format!("cpu{cpu} {:.0}%", 100.0 * n as f64 / total as f64))
                .collect();
            let _ = writeln!(
                out,
                "    {} by CPU: {}",
                truncate(&key.key.to_string(), 32),
                shares.join(", ")
            );
        }
        for advice in &map.advice {
            let _ = writeln!(out, "    advice ({}): {}", advice.finding, advice.text);
        }
    }
    if report.maps.len() > TEXT_MAPS {
        let _ = writeln!(out, "  … and {} more", report.maps.len() - TEXT_MAPS);
    }
    if let Some(hint) = &report.maps_hint {
        let _ = writeln!(out, "  {hint}");
    }
}

/// `worker ×4 (1234 waits, 1.20s), main ×1 (…)`: who waited, by name.
fn thread_groups(groups: &[crate::model::ThreadGroup]) -> String {
    groups
        .iter()
        .map(|g| {
            format!(
                "{} ×{} ({} waits, {})",
                g.name,
                g.threads,
                g.waits,
                seconds(g.wait_seconds)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_lock_map_and_cas() {
        let text = render(&crate::view::sample_snapshot());
        assert!(
            text.starts_with("mapwatch: PID 7 /bin/x (go1.27.3), 3.0 s, stopped by target-exited"),
            "{text}"
        );
        assert!(text.contains("main.hotMu"), "{text}");
        assert!(
            text.contains("at main.worker+0x2c (/src/main.go:12)")
                || text.contains("at sync.(*Mutex).Lock (/src/main.go:46)"),
            "{text}"
        );
        assert!(
            text.contains("map main.cache (0xc0002000): 100 ops: load 100"),
            "{text}"
        );
        assert!(text.contains("main.f+0x10"), "{text}");
        assert!(
            text.contains("structure: 1000 entries (peak 1200) in 2000 slots (grew 2 times), load 50.0%, 250 deleted (12.5%); 2 table(s), directory 2, growth left 500; read 34000 bytes in 25 µs"),
            "{text}"
        );
        assert!(
            text.contains("100.0% of the waiting caused (1.80ms), 9 releases to waiters, contended holds 1.00ms on average (3), at main.holder+0x40"),
            "{text}"
        );
        assert!(
            text.contains("2 writer convoy(s): a writer waited for readers while up to 6 reader(s) queued behind it, the longest for 40.00ms; 11 reader(s) stalled in all, waiting 300.00ms, most from the writer at main.writer+0x1a"),
            "{text}"
        );
        assert!(
            text.contains("overhead: ~0.40% of the target's CPU (budget 2%; 0 governor change(s)); now: everything in full"),
            "{text}"
        );
        // A session shorter than the governor's first judgement.
        let mut short = crate::view::sample_snapshot();
        if let Some(overhead) = short.overhead.as_mut() {
            overhead.per_second_percent.clear();
        }
        let short = render(&short);
        assert!(
            short
                .contains("overhead: not estimated (the session lasted under a second; budget 2%)"),
            "{short}"
        );
        assert!(text.contains("probe internal/sync.(*Mutex).lockSlow +0x4 (emulated site, skip when below-or-equal)"), "{text}");
    }
}
