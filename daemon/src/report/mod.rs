//! The report: a serializable summary of a session built from the
//! [`Aggregate`](crate::aggregate::Aggregate), and its views (text, JSON).

pub mod heatmap;
pub mod maps;
pub mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::{
    aggregate::cas::CasTimeline,
    aggregate::{bucket_label, Aggregate, CallSiteKey, LockStats, WAIT_BUCKETS},
    loader::ProbeCounters,
    plan::cas::describe,
    plan::{site::SiteChoice, ProbePlan},
    session::site_label,
    target::{demangle, dwarf::LockKind, lines::SourceLines, Target},
};
use heatmap::Heatmap;

/// The whole report; `--format json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The traced process.
    pub target: TargetInfo,
    /// How long the probes were attached.
    pub duration_seconds: f64,
    /// What ended the session: `target-exited`, `duration`, `signal`.
    pub stopped_by: String,
    /// Events the kernel dropped because a ring buffer was full (the larger
    /// of the rings' LOST records and the probes' failed writes).
    pub events_lost: u64,
    /// The probes attached.
    pub probes: Vec<ProbeInfo>,
    /// Kernel-side probe counters.
    pub probe_counters: ProbeCounters,
    /// Locks, most contended first.
    pub locks: Vec<LockReport>,
    /// Compare-and-swap sites watched with `--cas`, most failures first.
    pub cas: Vec<CasReport>,
    /// Maps (`sync.Map`, and runtime maps with `--probe maps`), most
    /// operations first, with hot keys and the advisor's findings.
    pub maps: Vec<maps::MapReport>,
    /// How to see the keys of maps that were only counted, when some were.
    pub maps_hint: Option<String>,
    /// Map operation events received (equal to `probe_counters.map_hits`
    /// when none was lost).
    pub map_events: u64,
    /// mapwatch's own peak resident memory (VmHWM), bytes: bounded
    /// whatever the number of distinct keys.
    pub mapwatch_peak_rss_bytes: u64,
    /// Heatmaps (time × CPU, time × site, …) for the views and `--heatmap-dir`.
    pub heatmaps: Vec<Heatmap>,
}

/// One compare-and-swap instruction watched with `--cas`.
#[derive(Debug, Clone, Serialize)]
pub struct CasReport {
    /// `function+0xOFFSET` of the `LOCK CMPXCHG`.
    pub site: String,
    /// The function.
    pub function: String,
    /// What a built-in CAS source belongs to (`sync.Map`); null for sites
    /// chosen with `--cas`.
    pub builtin: Option<&'static str>,
    /// Source `file:line` of the CAS, when the binary has line information
    /// (Go pclntab, else DWARF): in your function's code, through Go's inline
    /// tree (`main.go:36` for an inlined `atomic.Int64.CompareAndSwap` there),
    /// stripped binaries included (the tree is found through the module
    /// data); when no tree is found, the innermost inlined function's line
    /// (`sync/atomic/type.go:124`).
    pub source: Option<String>,
    /// Link-time address of the `LOCK CMPXCHG` (hex).
    pub address: String,
    /// Where its outcome is read: the probed instruction.
    pub probe: String,
    /// Compare-and-swaps executed.
    pub attempts: u64,
    /// Those that failed.
    pub failures: u64,
    /// failures / attempts (0 when there were no attempts).
    pub failure_ratio: f64,
    /// Failures per CPU (index = CPU number, every CPU of the host).
    pub per_cpu_failures: Vec<u64>,
}

/// The traced process.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// Its PID.
    pub pid: u32,
    /// Its executable as the process sees it.
    pub exe: String,
    /// Its Go version (`go1.23.9`), or null for non-Go targets.
    pub go_version: Option<String>,
}

/// One attached probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeInfo {
    /// `lock-entry`, `lock-return`, `cas` or `map`.
    pub kind: &'static str,
    /// The function probed.
    pub function: String,
    /// The probed instruction's link-time address (hex).
    pub address: String,
    /// Its offset from the function's entry.
    pub offset: u64,
    /// `emulated` (a cheap site found by decoding) or `entry`.
    pub site: &'static str,
    /// When a hit is not counted (`never`, `below-or-equal`, `below`).
    pub skip_when: &'static str,
}

/// One lock.
#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    /// Name of the global variable it is (`main.hotMu`), or null.
    pub name: Option<String>,
    /// Its runtime address (hex).
    pub address: String,
    /// `mutex` or `rwmutex` (known from DWARF, or from a reader or writer
    /// semaphore wait seen on it), or `futex` for a futex word waited on
    /// (`--futex`: a native mutex, or another futex user such as a
    /// condition variable).
    pub kind: &'static str,
    /// Entries into its contended slow path.
    pub contentions: u64,
    /// Contentions per CPU (index = CPU number).
    pub per_cpu: Vec<u64>,
    /// With `--blocked-time`: the time goroutines spent parked on the
    /// lock's semaphores (park to runnable; no spinning, no wait for a
    /// CPU), the figure Go's `/sync/mutex/wait/total` estimates; else null.
    pub blocked_seconds_total: Option<f64>,
    /// With `--blocked-time`: the parks counted in it.
    pub blocked_parks: Option<u64>,
    /// Contended acquisitions whose wait was measured (slow-path returns).
    pub acquisitions: u64,
    /// Sum of their waits (slow-path entry to return), seconds.
    pub wait_seconds_total: f64,
    /// Longest of them, seconds.
    pub wait_seconds_max: f64,
    /// Their waits by log2 bucket (non-empty buckets only).
    pub wait_histogram: Vec<WaitBucket>,
    /// For an RWMutex: readers' waits for writers (`RLock`), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_wait_seconds_total: Option<f64>,
    /// For an RWMutex: writers' waits (its inner mutex, then the readers to
    /// leave), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_wait_seconds_total: Option<f64>,
    /// For an RWMutex: contentions of readers (included in `contentions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_contentions: Option<u64>,
    /// Where the waiters were, most wait first (at most
    /// [`TOP_CALL_SITES`]).
    pub top_call_sites: Vec<CallSite>,
}

/// How many call sites a lock's report lists.
pub const TOP_CALL_SITES: usize = 5;

/// How many frames a call site shows.
pub const CALL_SITE_FRAMES: usize = 8;

/// One waiting call site: a user stack.
#[derive(Debug, Clone, Serialize)]
pub struct CallSite {
    /// Frames, innermost first, from the slow path's caller outwards:
    /// functions inlined at a call as `function (file:line)` (Go's inline
    /// tree: e.g. `sync.(*Mutex).Lock`), each real function as
    /// `function+0xOFFSET (file:line)`.
    pub frames: Vec<String>,
    /// Total wait of the acquisitions from here, seconds.
    pub wait_seconds: f64,
    /// Acquisitions from here.
    pub count: u64,
    /// Share of the lock's total wait, 0 to 1.
    pub share: f64,
}

/// One log2 bucket of a wait histogram: waits in `[ns_min, ns_max)`.
#[derive(Debug, Clone, Serialize)]
pub struct WaitBucket {
    /// Lower bound, ns (inclusive).
    pub ns_min: u64,
    /// Upper bound, ns (exclusive).
    pub ns_max: u64,
    /// Waits in the bucket.
    pub count: u64,
}

impl Report {
    /// Builds the report from a session's parts.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        target: &Target,
        plan: &ProbePlan,
        aggregate: &Aggregate,
        stacks: &HashMap<i64, Vec<u64>>,
        cas: Option<&CasTimeline>,
        counters: ProbeCounters,
        duration_seconds: f64,
        stopped_by: &str,
    ) -> Self {
        let probes = plan
            .sites
            .iter()
            .map(|site| ProbeInfo {
                kind: match site.kind {
                    probe_common::SiteKind::LockSlowEntry => "lock-entry",
                    probe_common::SiteKind::LockSlowReturn => "lock-return",
                    probe_common::SiteKind::CasOutcome => "cas",
                    probe_common::SiteKind::SemaEntry => "sema-entry",
                    probe_common::SiteKind::Ready => "ready",
                },
                function: site.function.clone(),
                address: format!("{:#x}", site.address),
                offset: site.address - site.function_address,
                site: match site.choice {
                    SiteChoice::Entry => "entry",
                    SiteChoice::Emulated { .. } => "emulated",
                    SiteChoice::SingleStepped { .. } => "single-stepped",
                },
                skip_when: skip_name(site.skip_when),
            })
            .chain(plan.map_sites.iter().map(|site| ProbeInfo {
                kind: "map",
                function: site.function.name.to_string(),
                address: format!("{:#x}", site.address),
                offset: site.address - site.function_address,
                site: match site.choice {
                    SiteChoice::Entry => "entry",
                    SiteChoice::Emulated { .. } => "emulated",
                    SiteChoice::SingleStepped { .. } => "single-stepped",
                },
                skip_when: skip_name(site.skip_when),
            }))
            .collect();
        let lines = SourceLines::new(&target.elf);
        let blocked = plan
            .sites
            .iter()
            .any(|site| site.kind == probe_common::SiteKind::Ready);
        // Every lock seen, plus every global lock DWARF knows of (with zero
        // contentions when never seen).
        let kinds: BTreeMap<u64, LockKind> = target
            .global_locks
            .iter()
            .map(|lock| (lock.address.wrapping_add(target.load_bias), lock.kind))
            .collect();
        let mut addresses: BTreeSet<u64> = aggregate.locks.keys().copied().collect();
        addresses.extend(kinds.keys().copied());
        let mut locks: Vec<LockReport> = addresses
            .into_iter()
            .map(|address| {
                let stats = aggregate.locks.get(&address);
                let kind = match stats {
                    Some(stats) => stats.kind(kinds.get(&address) == Some(&LockKind::RwMutex)),
                    None if kinds.get(&address) == Some(&LockKind::RwMutex) => "rwmutex",
                    None => "mutex",
                };
                let rwmutex = kind == "rwmutex";
                let rw = |f: &dyn Fn(&LockStats) -> f64| rwmutex.then(|| stats.map_or(0.0, f));
                LockReport {
                    name: target.global_name(address),
                    address: format!("{address:#x}"),
                    kind,
                    reader_wait_seconds_total: rw(&|s| s.reader_wait_total_ns as f64 / 1e9),
                    writer_wait_seconds_total: rw(&|s| s.writer_wait_total_ns() as f64 / 1e9),
                    reader_contentions: rwmutex.then(|| stats.map_or(0, |s| s.reader_contentions)),
                    blocked_seconds_total: blocked
                        .then(|| stats.map_or(0.0, |s| s.blocked_total_ns as f64 / 1e9)),
                    blocked_parks: blocked.then(|| stats.map_or(0, |s| s.blocked_count)),
                    top_call_sites: stats
                        .map(|s| call_sites(target, &lines, stacks, s))
                        .unwrap_or_default(),
                    contentions: stats.map_or(0, |s| s.contentions),
                    per_cpu: stats.map(|s| s.per_cpu.clone()).unwrap_or_default(),
                    acquisitions: stats.map_or(0, |s| s.acquisitions),
                    wait_seconds_total: stats.map_or(0.0, |s| s.wait_total_ns as f64 / 1e9),
                    wait_seconds_max: stats.map_or(0.0, |s| s.wait_max_ns as f64 / 1e9),
                    wait_histogram: stats.map(wait_buckets).unwrap_or_default(),
                }
            })
            .collect();
        locks.sort_by(|a, b| {
            b.contentions
                .cmp(&a.contentions)
                .then_with(|| a.address.cmp(&b.address))
        });
        let mut heatmaps = Vec::new();
        if let Some(waits) = wait_heatmap(aggregate) {
            heatmaps.push(waits);
        }
        let cas = match cas {
            Some(timeline) => {
                heatmaps.push(timeline.failures_by_cpu.clone());
                heatmaps.push(timeline.failures_by_site.clone());
                cas_reports(plan, timeline, &lines)
            }
            None => Vec::new(),
        };
        Self {
            target: TargetInfo {
                pid: target.process.pid,
                exe: target.process.exe_display.clone(),
                go_version: target.go.as_ref().map(|go| go.version.clone()),
            },
            duration_seconds,
            stopped_by: stopped_by.to_string(),
            // The kernel reports a full ring as a LOST record only when a
            // later write succeeds; the probes count every failed write.
            events_lost: aggregate.events_lost().max(counters.output_errors),
            probes,
            probe_counters: counters,
            locks,
            cas,
            maps: Vec::new(),
            maps_hint: None,
            map_events: aggregate.maps.events,
            mapwatch_peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
            heatmaps,
        }
    }

    /// Adds the maps section and its heatmaps.
    pub fn add_maps(&mut self, maps: Vec<maps::MapReport>, heatmaps: Vec<Heatmap>) {
        let counted: Vec<&maps::MapReport> = maps
            .iter()
            .filter(|m| !m.keyed && m.address != "0x0")
            .collect();
        self.maps_hint = counted.first().map(|busiest| {
            format!(
                "{} map(s) were only counted; for their keys attach with --map {}",
                counted.len(),
                busiest
                    .name
                    .clone()
                    .unwrap_or_else(|| busiest.address.clone())
            )
        });
        self.maps = maps;
        self.heatmaps.extend(heatmaps);
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// How reports name a skip condition.
fn skip_name(skip: probe_common::SkipWhen) -> &'static str {
    match skip {
        probe_common::SkipWhen::Never => "never",
        probe_common::SkipWhen::BelowOrEqual => "below-or-equal",
        probe_common::SkipWhen::Below => "below",
    }
}

/// This process's peak resident set size (VmHWM), bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A lock's waiting call sites, most wait first, symbolized.
fn call_sites(
    target: &Target,
    lines: &SourceLines,
    stacks: &HashMap<i64, Vec<u64>>,
    stats: &LockStats,
) -> Vec<CallSite> {
    let mut sites: Vec<(&CallSiteKey, &(u64, u64))> = stats.call_sites.iter().collect();
    sites.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(b.0)));
    let total = stats.wait_total_ns.max(1) as f64;
    sites
        .into_iter()
        .take(TOP_CALL_SITES)
        .map(|(&(caller_ip, stack_id), &(count, wait_ns))| {
            // Frame 0 of the walked stack is the slow path itself; the
            // caller's return address comes first, then the rest outwards.
            let walked = stacks.get(&stack_id).map(|s| s.get(1..).unwrap_or(&[]));
            let frames = std::iter::once(caller_ip)
                .filter(|&ip| ip != 0)
                .chain(walked.into_iter().flatten().copied())
                .flat_map(|ip| symbolize(target, lines, ip))
                .take(CALL_SITE_FRAMES)
                .collect();
            CallSite {
                frames,
                wait_seconds: wait_ns as f64 / 1e9,
                count,
                share: wait_ns as f64 / total,
            }
        })
        .collect()
}

/// The logical frames at a return address in the target, innermost first:
/// functions inlined at the call (`function (file:line)`, from Go's inline
/// tree when the binary has one), then the real function as
/// `function+0xOFFSET (file:line)`.
fn symbolize(target: &Target, lines: &SourceLines, runtime_ip: u64) -> Vec<String> {
    let ip = runtime_ip.wrapping_sub(target.load_bias);
    // A return address: the call is the instruction before it.
    let call = ip.saturating_sub(1);
    let function = target.symbols.function_at(ip);
    let name = match function {
        Some(f) => format!("{}+{:#x}", demangle(&f.name), ip - f.start),
        None => format!("{runtime_ip:#x}"),
    };
    let mut logical = lines.frames(call);
    if logical.len() > 1 {
        // The last logical frame is the real function: give it its offset.
        if let Some(last) = logical.last_mut() {
            if let Some((_, position)) = last.split_once(" (") {
                *last = format!("{name} ({position}");
            }
        }
        return logical;
    }
    vec![match lines.line(call) {
        Some(line) => format!("{name} ({line})"),
        None => name,
    }]
}

/// The source line of an instruction in the caller's own code: the
/// outermost logical frame's, so an inlined `atomic.CompareAndSwap` is
/// placed at its call in your function; else the innermost line.
fn user_line(lines: &SourceLines, address: u64) -> Option<String> {
    let frames = lines.frames(address);
    if frames.len() > 1 {
        let last = frames.last()?;
        let (_, position) = last.split_once(" (")?;
        return position.strip_suffix(')').map(str::to_string);
    }
    lines.line(address)
}

/// A duration for humans: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
pub fn human_duration(seconds: f64) -> String {
    match seconds {
        0.0 => "0".into(),
        s if s < 1e-6 => format!("{:.0}ns", s * 1e9),
        s if s < 1e-3 => format!("{:.1}µs", s * 1e6),
        s if s < 1.0 => format!("{:.2}ms", s * 1e3),
        s => format!("{s:.2}s"),
    }
}

/// The non-empty log2 buckets of a lock's waits.
fn wait_buckets(stats: &LockStats) -> Vec<WaitBucket> {
    stats
        .wait_histogram
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .map(|(bucket, &count)| WaitBucket {
            ns_min: if bucket == 0 { 0 } else { 1u64 << bucket },
            ns_max: 1u64.checked_shl(bucket as u32 + 1).unwrap_or(u64::MAX),
            count,
        })
        .collect()
}

/// Lock waits over time: rows = log2 wait buckets (longest on top), columns
/// = seconds, cells = acquisitions. `None` when no wait was measured.
/// The lock-wait heatmap (time × log2 wait bucket), if any wait was seen.
pub fn wait_heatmap(aggregate: &Aggregate) -> Option<Heatmap> {
    let used = |bucket: usize| aggregate.wait_timeline.iter().any(|col| col[bucket] > 0);
    let lowest = (0..WAIT_BUCKETS).find(|&b| used(b))?;
    let highest = (0..WAIT_BUCKETS).rev().find(|&b| used(b))?;
    let buckets: Vec<usize> = (lowest..=highest).rev().collect();
    let mut map = Heatmap::new(
        "Lock wait time",
        "wait",
        1.0,
        buckets.iter().map(|&b| bucket_label(b)).collect(),
        aggregate.wait_timeline.len(),
    );
    for (column, counts) in aggregate.wait_timeline.iter().enumerate() {
        for (row, &bucket) in buckets.iter().enumerate() {
            map.add(row, column, counts[bucket]);
        }
    }
    Some(map)
}

/// The CAS section of the report, most failures first.
fn cas_reports(plan: &ProbePlan, timeline: &CasTimeline, lines: &SourceLines) -> Vec<CasReport> {
    let mut reports: Vec<CasReport> = timeline
        .sites
        .iter()
        .enumerate()
        .filter_map(|(row, &index)| {
            let site = plan.sites.get(index)?;
            let cas = site.cas.as_ref()?;
            let (attempts, failures, per_cpu_failures) = timeline.site_totals(row);
            Some(CasReport {
                site: site_label(site),
                function: site.function.clone(),
                builtin: site.builtin,
                source: user_line(lines, cas.cmpxchg_address),
                address: format!("{:#x}", cas.cmpxchg_address),
                probe: describe(cas),
                attempts,
                failures,
                failure_ratio: if attempts == 0 {
                    0.0
                } else {
                    failures as f64 / attempts as f64
                },
                per_cpu_failures,
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
