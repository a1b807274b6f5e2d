//! The report: a serializable summary of a session built from the
//! [`Aggregate`](crate::aggregate::Aggregate), and its views (text, JSON).

pub mod heatmap;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::{
    aggregate::cas::CasTimeline,
    aggregate::Aggregate,
    loader::ProbeCounters,
    plan::cas::describe,
    plan::{site::SiteChoice, ProbePlan},
    session::site_label,
    target::{dwarf::LockKind, Target},
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
    /// Events the kernel dropped because a ring buffer was full.
    pub events_lost: u64,
    /// The probes attached.
    pub probes: Vec<ProbeInfo>,
    /// Kernel-side probe counters.
    pub probe_counters: ProbeCounters,
    /// Locks, most contended first.
    pub locks: Vec<LockReport>,
    /// Compare-and-swap sites watched with `--cas`, most failures first.
    pub cas: Vec<CasReport>,
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
    /// Source `file:line`, when known (not yet resolved: null).
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
    /// `mutex`, or `rwmutex` for a global RWMutex (whose count is then its
    /// writer lock's contention); unknown locks are reported as `mutex`.
    pub kind: &'static str,
    /// Entries into its contended slow path.
    pub contentions: u64,
    /// Contentions per CPU (index = CPU number).
    pub per_cpu: Vec<u64>,
}

impl Report {
    /// Builds the report from a session's parts.
    pub fn build(
        target: &Target,
        plan: &ProbePlan,
        aggregate: &Aggregate,
        cas: Option<&CasTimeline>,
        counters: ProbeCounters,
        duration_seconds: f64,
        stopped_by: &str,
    ) -> Self {
        let probes = plan
            .sites
            .iter()
            .map(|site| ProbeInfo {
                function: site.function.clone(),
                address: format!("{:#x}", site.address),
                offset: site.address - site.function_address,
                site: match site.choice {
                    SiteChoice::Entry => "entry",
                    SiteChoice::Emulated { .. } => "emulated",
                    SiteChoice::SingleStepped { .. } => "single-stepped",
                },
                skip_when: match site.skip_when {
                    probe_common::SkipWhen::Never => "never",
                    probe_common::SkipWhen::BelowOrEqual => "below-or-equal",
                    probe_common::SkipWhen::Below => "below",
                },
            })
            .collect();
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
                LockReport {
                    name: target.global_name(address),
                    address: format!("{address:#x}"),
                    kind: match kinds.get(&address) {
                        Some(LockKind::RwMutex) => "rwmutex",
                        _ => "mutex",
                    },
                    contentions: stats.map_or(0, |s| s.contentions),
                    per_cpu: stats.map(|s| s.per_cpu.clone()).unwrap_or_default(),
                }
            })
            .collect();
        locks.sort_by(|a, b| {
            b.contentions
                .cmp(&a.contentions)
                .then_with(|| a.address.cmp(&b.address))
        });
        let (cas, heatmaps) = match cas {
            Some(timeline) => (
                cas_reports(plan, timeline),
                vec![
                    timeline.failures_by_cpu.clone(),
                    timeline.failures_by_site.clone(),
                ],
            ),
            None => (Vec::new(), Vec::new()),
        };
        Self {
            target: TargetInfo {
                pid: target.process.pid,
                exe: target.process.exe_display.clone(),
                go_version: target.go.as_ref().map(|go| go.version.clone()),
            },
            duration_seconds,
            stopped_by: stopped_by.to_string(),
            events_lost: aggregate.events_lost(),
            probes,
            probe_counters: counters,
            locks,
            cas,
            heatmaps,
        }
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The CAS section of the report, most failures first.
fn cas_reports(plan: &ProbePlan, timeline: &CasTimeline) -> Vec<CasReport> {
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
                source: None,
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
