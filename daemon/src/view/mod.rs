//! Every view and exporter of mapwatch's figures. They read only the model
//! ([`Snapshot`] and its parts) and produce text for people or programs:
//!
//! - reports of a finished session, behind one interface ([`Format`]):
//!   [`text`], [`json`], [`html`], [`pprof`]; and the heatmaps as SVG files
//!   ([`heatmap::write_svgs`]);
//! - live views of a running one, fed the snapshots the pipeline publishes:
//!   [`live`] (the full-screen view and the plain lines), [`jsonl`] (one
//!   JSON object per snapshot) and [`metrics`] (Prometheus `/metrics`).
//!
//! Formatting of values (durations, frames, keys) happens here and in the
//! model's `Display` impls, nowhere else.

pub mod heatmap;
pub mod html;
pub mod json;
pub mod jsonl;
pub mod live;
pub mod metrics;
pub mod pprof;
pub mod text;

use std::io;

use crate::model::Snapshot;

/// A format a finished report can be written in.
pub trait Format {
    /// Writes `report` to `out`.
    fn write(&self, report: &Snapshot, out: &mut dyn io::Write) -> io::Result<()>;
}

/// The report formats, by name (`--format`, file outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// The plain-text report.
    Text,
    /// The JSON document.
    Json,
    /// A self-contained HTML page.
    Html,
    /// A gzipped pprof profile.
    Pprof,
}

impl ReportFormat {
    /// The format's writer.
    pub fn writer(self) -> &'static dyn Format {
        match self {
            Self::Text => &text::TextReport,
            Self::Json => &json::JsonReport,
            Self::Html => &html::HtmlReport,
            Self::Pprof => &pprof::PprofReport,
        }
    }

    /// Writes `report` in this format.
    pub fn write(self, report: &Snapshot, out: &mut dyn io::Write) -> io::Result<()> {
        self.writer().write(report, out)
    }
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

/// `text` cut to `width` characters, with `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A snapshot for the views' tests: one contended mutex with a call site,
/// one map with a hot key, one CAS site.
#[cfg(test)]
pub(crate) fn sample_snapshot() -> Snapshot {
    use crate::model::*;
    let frame = |function: &str, offset: Option<u64>, inlined: bool, line: u32| Frame {
        function: Some(function.into()),
        offset,
        source: Some(SourceLine {
            file: "/src/main.go".into(),
            line,
        }),
        inlined,
        address: 0x401000,
    };
    let mut ops = [0u64; MAP_OPS];
    ops[MapOp::Load as usize] = 100;
    let key = Key::Str {
        text: "k1".into(),
        truncated: false,
    };
    let mut key_ops = [0u64; MAP_OPS];
    key_ops[MapOp::Load as usize] = 75;
    let site = CodeLocation {
        function: "main.f".into(),
        offset: 0x10,
    };
    Snapshot {
        target: TargetInfo {
            pid: 7,
            exe: "/bin/x".into(),
            comm: "x".into(),
            go_version: Some("go1.27.3".into()),
        },
        duration_seconds: 3.0,
        stopped_by: Some(StopReason::TargetExited),
        events_lost: 0,
        probes: vec![ProbeInfo {
            kind: ProbeKind::LockEntry,
            function: "internal/sync.(*Mutex).lockSlow".into(),
            address: 0x47_6184,
            offset: 4,
            site: SiteCost::Emulated,
            skip_when: SkipWhen::BelowOrEqual,
        }],
        probe_counters: ProbeCounters {
            hits: 24,
            ..ProbeCounters::default()
        },
        locks: vec![LockReport {
            name: Some("main.hotMu".into()),
            address: 0xc000_1000,
            kind: LockKind::Mutex,
            contentions: 12,
            per_cpu: vec![6, 6],
            blocked_seconds_total: None,
            blocked_parks: None,
            acquisitions: 12,
            wait_seconds_total: 0.002,
            wait_seconds_max: 0.0005,
            wait_histogram: vec![WaitBucket {
                ns_min: 1 << 17,
                ns_max: 1 << 18,
                count: 12,
            }],
            reader_wait_seconds_total: None,
            writer_wait_seconds_total: None,
            reader_contentions: None,
            top_call_sites: vec![CallSite {
                frames: vec![
                    frame("sync.(*Mutex).Lock", None, true, 46),
                    frame("main.worker", Some(0x2c), false, 12),
                ],
                wait_seconds: 0.002,
                count: 12,
                share: 1.0,
            }],
            exact: true,
            sampled_fraction: 1.0,
        }],
        cas: vec![CasReport {
            site: site.clone(),
            function: "main.f".into(),
            builtin: None,
            source: Some(SourceLine {
                file: "/src/main.go".into(),
                line: 30,
            }),
            address: 0x40_1010,
            probe: CasProbe {
                mnemonic: "je".into(),
                address: 0x40_101a,
                cas_address: 0x40_1010,
                via_call: false,
                emulated: true,
                condition: CasCondition::Zf { set: false },
                ambiguous: false,
            },
            attempts: 9,
            failures: 2,
            failure_ratio: 2.0 / 9.0,
            per_cpu_failures: vec![1, 1],
            exact: true,
            sampled_fraction: 1.0,
        }],
        maps: vec![MapReport {
            name: Some("main.cache".into()),
            address: 0xc000_2000,
            kind: MapKind::Runtime,
            ops: OpCounts::from_counts(&ops, MapOp::is_user_op),
            total: 100,
            internal: OpCounts::default(),
            keyed: true,
            per_cpu: vec![50, 50],
            distinct_keys: 2,
            top_keys: vec![KeyReport {
                key: key.clone(),
                ops: OpCounts::from_counts(&key_ops, MapOp::is_user_op),
                total: 75,
                exact: true,
                error: 0,
                per_cpu: vec![40, 35],
            }],
            top_k_capacity: 1024,
            top_k_error_bound: 0,
            advice: Vec::new(),
            exact: true,
            sampled_fraction: 1.0,
            key_sampled_fraction: 1.0,
        }],
        maps_hint: None,
        map_events: 100,
        mapwatch_peak_rss_bytes: 1 << 20,
        heatmaps: vec![{
            let mut map = Heatmap::new(
                HeatmapKind::CasFailuresBySite,
                1.0,
                vec![RowLabel::Site(site)],
                3,
            );
            map.add(0, 1, 2);
            map
        }],
        overhead: Some(OverheadReport {
            budget_percent: Some(2.0),
            estimated_percent: 0.4,
            per_second_percent: vec![0.5, 0.3, 0.4],
            probe_seconds: 0.004,
            target_cpu_seconds: 1.0,
            trap_cost: TrapCost {
                emulated_ns: 725.0,
                single_stepped_ns: 12_000.0,
                calibrated: true,
                indirect_factor: 2.0,
            },
            setting: GovernorSetting::FULL,
            actions: Vec::new(),
            sampling: Sampling::EXACT,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_figures_are_scaled_and_marked() {
        use crate::model::Sampling;
        let mut report = sample_snapshot();
        let lock = &mut report.locks[0];
        lock.scale(Sampling {
            counting: 0.5,
            waits: 0.25,
        });
        assert!(!lock.exact);
        assert_eq!(lock.sampled_fraction, 0.25);
        assert_eq!((lock.contentions, lock.per_cpu.clone()), (24, vec![12, 12]));
        assert_eq!(lock.acquisitions, 48);
        assert_eq!(lock.wait_histogram[0].count, 48);
        assert!((lock.wait_seconds_total - 0.008).abs() < 1e-12);
        // The longest wait seen is not scaled.
        assert_eq!(lock.wait_seconds_max, 0.0005);
        let map = &mut report.maps[0];
        map.key_sampled_fraction = 0.25;
        map.scale(1.0);
        assert!(!map.exact && !map.top_keys[0].exact);
        assert_eq!(map.total, 100, "key sampling leaves totals exact");
        map.scale(0.5);
        assert_eq!((map.total, map.top_keys[0].total), (200, 150));
        let cas = &mut report.cas[0];
        cas.scale(1.0);
        assert!(cas.exact);
        cas.scale(0.5);
        assert_eq!((cas.attempts, cas.failures, cas.exact), (18, 4, false));
    }

    // The model's scaling, on the sample every view test uses.
    #[test]
    fn waits_never_seen_on_are_not_scaled_to_infinity() {
        let mut lock = sample_snapshot().locks.remove(0);
        let (seen, acquisitions) = (lock.wait_seconds_total, lock.acquisitions);
        lock.scale(crate::model::Sampling {
            counting: 0.5,
            waits: 0.0,
        });
        assert!(!lock.exact);
        assert_eq!(lock.wait_seconds_total, seen);
        assert_eq!(lock.acquisitions, acquisitions);
        assert!(lock
            .top_call_sites
            .iter()
            .all(|s| s.wait_seconds.is_finite()));
        lock.scale(crate::model::Sampling {
            counting: 0.5,
            waits: 0.25,
        });
        assert_eq!(lock.wait_seconds_total, seen * 4.0);
    }

    #[test]
    fn durations_for_humans() {
        assert_eq!(human_duration(0.0), "0");
        assert_eq!(human_duration(850e-9), "850ns");
        assert_eq!(human_duration(12.3e-6), "12.3µs");
        assert_eq!(human_duration(0.002), "2.00ms");
        assert_eq!(human_duration(1.2), "1.20s");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn every_format_writes_the_sample() {
        let report = sample_snapshot();
        for format in [
            ReportFormat::Text,
            ReportFormat::Json,
            ReportFormat::Html,
            ReportFormat::Pprof,
        ] {
            let mut out = Vec::new();
            format.write(&report, &mut out).unwrap();
            assert!(!out.is_empty(), "{format:?}");
        }
    }
}
