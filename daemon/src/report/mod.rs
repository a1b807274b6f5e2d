//! The report: a serializable summary of a session built from the
//! [`Aggregate`](crate::aggregate::Aggregate), and its views (text, JSON).

pub mod heatmap;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::{
    aggregate::Aggregate,
    loader::ProbeCounters,
    plan::{site::SiteChoice, ProbePlan},
    target::{dwarf::LockKind, Target},
};

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
        }
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
