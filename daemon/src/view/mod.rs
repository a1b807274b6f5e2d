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

/// What a holder site's releases did, in words: "62.0% of the waiting
/// caused, 1234 releases to waiters, contended holds 1.10ms on average
/// (980)".
pub fn holder_phrase(site: &crate::model::HolderSite) -> String {
    let mut phrase = format!(
        "{:.1}% of the waiting caused ({}), {} releases to waiters",
        site.share * 100.0,
        human_duration(site.wait_caused_seconds),
        site.releases
    );
    if let Some(hold) = site.contended_hold.as_ref().filter(|h| h.count > 0) {
        phrase.push_str(&format!(
            ", contended holds {} on average ({})",
            human_duration(hold.seconds_total / hold.count as f64),
            hold.count
        ));
    }
    phrase
}

/// A map's structure in a sentence: entries, capacity, what deletes left,
/// and how the reading went.
pub fn health_sentence(h: &crate::model::MapHealth) -> String {
    use crate::model::MapImplementation;
    if h.replaced {
        return "replaced (its variable holds another map now)".to_string();
    }
    if let Some(error) = &h.error {
        return format!("unreadable now ({error}): freed or reused");
    }
    let shape = match h.implementation {
        MapImplementation::SyncMap => {
            let rates = match (h.promotions_per_second, h.entries_copied_per_second) {
                (Some(p), Some(c)) => format!(" ({p:.1}/s, about {c:.0} entries copied/s)"),
                _ => String::new(),
            };
            return format!(
                "{} entries: read-only map {}, dirty map {}{}, {} misses since the last promotion; {} promotion(s) while watched{rates}; read {} bytes in {:.0} µs",
                h.entries,
                h.read_entries.unwrap_or(0),
                h.dirty_entries.unwrap_or(0),
                if h.amended == Some(true) {
                    " (amended: loads of its new keys miss)"
                } else {
                    ""
                },
                h.misses.unwrap_or(0),
                h.promotions.unwrap_or(0),
                h.bytes_read,
                h.read_microseconds,
            );
        }
        MapImplementation::Buckets => format!(
            "{} buckets, {} overflow (longest chain {}){}",
            h.buckets.unwrap_or(0),
            h.overflow_buckets.unwrap_or(0),
            h.longest_chain.unwrap_or(0),
            if h.growing == Some(true) {
                ", growing"
            } else {
                ""
            }
        ),
        MapImplementation::Swiss => format!(
            "{} table(s), directory {}, growth left {}",
            h.tables.unwrap_or(0),
            h.directory.unwrap_or(0),
            h.growth_left.unwrap_or(0)
        ),
    };
    format!(
        "{} entries (peak {}) in {} slots (grew {} times), load {:.1}%, {} deleted ({:.1}%); {shape}{}; read {} bytes in {:.0} µs{}",
        h.entries,
        h.peak_entries,
        h.capacity,
        h.grows,
        100.0 * h.load_factor,
        h.tombstones,
        100.0 * h.tombstone_ratio,
        h.skew.map_or(String::new(), |s| format!(", skew {s:.2}")),
        h.bytes_read,
        h.read_microseconds,
        if h.complete { "" } else { " (a prefix: over the read budget)" },
    )
}

/// An RWMutex's convoys in a sentence: how many, the worst, the writer.
pub fn convoy_sentence(convoys: &crate::model::ConvoyReport) -> String {
    let writer = convoys
        .top_writer_sites
        .first()
        .and_then(|w| crate::model::own_frame(&w.frames))
        .map_or_else(String::new, |f| format!(", most from the writer at {f}"));
    format!(
        "{} writer convoy(s): a writer waited for readers while up to {} reader(s) queued behind it, the longest for {}; {} reader(s) stalled in all, waiting {}{writer}",
        convoys.episodes,
        convoys.max_readers_stalled,
        human_duration(convoys.longest_seconds),
        convoys.readers_stalled,
        human_duration(convoys.reader_wait_caused_seconds),
    )
}

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

/// A Unix time for humans, in UTC: `2026-12-02 10:49:20 UTC`.
pub fn utc_time(unix_seconds: f64) -> String {
    let seconds = unix_seconds.max(0.0) as i64;
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date, in eras of 400 years that
    // start on March 1st (so that leap days end a year).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
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

#[cfg(test)]
pub(crate) use crate::model::sample_snapshot;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc_time(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_796_206_160.7), "2026-12-02 10:09:20 UTC");
    }

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
