//! The metric families of one scrape as data, and the two text formats a
//! scraper can ask for, behind one interface ([`Exposition`]):
//! OpenMetrics 1.0 ([`OpenMetrics`]) and Prometheus's text format 0.0.4
//! ([`PrometheusText`]), which classic clients (promtool, older Prometheus
//! servers, many agents) speak and which has no `info` type, no units and
//! no `# EOF`.

use std::fmt::Write as _;

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic count; its samples are named `…_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
    /// Labels describing something, value 1; its sample is named `…_info`.
    Info,
}

/// A sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer count (counters).
    Count(u64),
    /// A real number (gauges; 1 for info).
    Real(f64),
    /// A histogram: each bucket's upper bound and the observations in it
    /// (not cumulative; the last bound is `+Inf` whatever it says), the
    /// observations' sum and count.
    Histogram {
        /// (upper bound, observations in the bucket), ascending.
        buckets: Vec<(f64, u64)>,
        /// Sum of the observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One labelled sample of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values, in order.
    pub labels: Vec<(&'static str, String)>,
    /// Its value.
    pub value: Value,
}

/// A metric family: name (the prefix included, without the `_total` or
/// `_info` suffix), help, unit (the name then ends with it), kind, samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Full name, e.g. `mapwatch_lock_wait_seconds`.
    pub name: String,
    /// One line of help.
    pub help: &'static str,
    /// The unit, e.g. `seconds`, if any.
    pub unit: Option<&'static str>,
    /// Its kind.
    pub kind: Kind,
    /// Its samples (none is fine).
    pub samples: Vec<Sample>,
}

/// A text format families are written in.
pub trait Exposition {
    /// The HTTP `Content-Type` of the body.
    fn content_type(&self) -> &'static str;
    /// The body.
    fn render(&self, families: &[Family]) -> String;
}

/// OpenMetrics 1.0 text.
#[derive(Debug, Clone, Copy)]
pub struct OpenMetrics;

/// Prometheus text format 0.0.4.
#[derive(Debug, Clone, Copy)]
pub struct PrometheusText;

impl Exposition for OpenMetrics {
    fn content_type(&self) -> &'static str {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    }

    fn render(&self, families: &[Family]) -> String {
        let mut out = String::new();
        for family in families {
            let name = &family.name;
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
                Kind::Info => "info",
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help, true));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if let Some(unit) = family.unit {
                let _ = writeln!(out, "# UNIT {name} {unit}");
            }
            write_samples(&mut out, family);
        }
        out.push_str("# EOF\n");
        out
    }
}

impl Exposition for PrometheusText {
    fn content_type(&self) -> &'static str {
        "text/plain; version=0.0.4; charset=utf-8"
    }

    fn render(&self, families: &[Family]) -> String {
        let mut out = String::new();
        for family in families {
            // The classic format names a family by its samples' name, and
            // knows no info type: an info metric is a gauge of value 1.
            let (name, kind) = match family.kind {
                Kind::Counter => (format!("{}_total", family.name), "counter"),
                Kind::Gauge => (family.name.clone(), "gauge"),
                Kind::Histogram => (family.name.clone(), "histogram"),
                Kind::Info => (format!("{}_info", family.name), "gauge"),
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help, false));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            write_samples(&mut out, family);
        }
        out
    }
}

/// The samples of a family, the same in both formats.
fn write_samples(out: &mut String, family: &Family) {
    let name = &family.name;
    for sample in &family.samples {
        match &sample.value {
            Value::Histogram {
                buckets,
                sum,
                count,
            } => {
                let mut cumulative = 0u64;
                for (i, &(bound, n)) in buckets.iter().enumerate() {
                    cumulative += n;
                    let le = if i + 1 == buckets.len() {
                        "+Inf".to_string()
                    } else {
                        real(bound)
                    };
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(&sample.labels, Some(&le))
                    );
                }
                if buckets.is_empty() {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {count}",
                        labels(&sample.labels, Some("+Inf"))
                    );
                }
                let set = labels(&sample.labels, None);
                let _ = writeln!(out, "{name}_sum{set} {}", real(*sum));
                let _ = writeln!(out, "{name}_count{set} {count}");
            }
            Value::Count(n) => write_scalar(out, family, sample, &n.to_string()),
            Value::Real(x) => write_scalar(out, family, sample, &real(*x)),
        }
    }
}

/// A counter's, gauge's or info's one line.
fn write_scalar(out: &mut String, family: &Family, sample: &Sample, value: &str) {
    let suffix = match family.kind {
        Kind::Counter => "_total",
        Kind::Info => "_info",
        Kind::Gauge | Kind::Histogram => "",
    };
    let _ = writeln!(
        out,
        "{}{suffix}{} {value}",
        family.name,
        labels(&sample.labels, None)
    );
}

/// `{a="x",b="y"}` (and `le` last, for a bucket), or nothing without labels.
fn labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let pairs = labels
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .chain(le.map(|le| ("le", le)));
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape_label(value));
    }
    out.push('}');
    out
}

/// A label value escaped (both formats): backslash, double quote, newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escaped: backslash and newline in both formats, the double
/// quote too in OpenMetrics (the classic parser rejects `\"` there).
fn escape_help(help: &str, quote: bool) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// A real number as both formats write it: `1.0`, `0.004`, `1.024e-6`,
/// `+Inf`, `-Inf`, `NaN`.
fn real(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x:?}")
    }
}

/// The format a scraper asked for in its `Accept` header: the supported
/// media range with the highest `q` (ties: the first listed); OpenMetrics
/// for `application/openmetrics-text`, the classic text for `text/plain`,
/// `text/*`, `*/*`, no header or nothing supported.
pub fn negotiate(accept: Option<&str>) -> &'static dyn Exposition {
    let mut best: Option<(f64, bool)> = None;
    for range in accept.unwrap_or("").split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let openmetrics = match media.as_str() {
            "application/openmetrics-text" => true,
            "text/plain" | "text/*" | "*/*" => false,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, openmetrics));
        }
    }
    match best {
        Some((_, true)) => &OpenMetrics,
        _ => &PrometheusText,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        vec![
            Family {
                name: "x_target".into(),
                help: "The traced process.",
                unit: None,
                kind: Kind::Info,
                samples: vec![Sample {
                    labels: vec![("pid", "7".into()), ("exe", "/bin/\"x\"".into())],
                    value: Value::Real(1.0),
                }],
            },
            Family {
                name: "x_ops".into(),
                help: "Operations; key=\"other\" holds the rest.",
                unit: None,
                kind: Kind::Counter,
                samples: vec![Sample {
                    labels: vec![("key", "other".into())],
                    value: Value::Count(25),
                }],
            },
            Family {
                name: "x_wait_seconds".into(),
                help: "Waits.",
                unit: Some("seconds"),
                kind: Kind::Histogram,
                samples: vec![Sample {
                    labels: vec![("lock", "m".into())],
                    value: Value::Histogram {
                        buckets: vec![(0.5, 1), (1.0, 2), (f64::MAX, 3)],
                        sum: 4.5,
                        count: 6,
                    },
                }],
            },
            Family {
                name: "x_ratio".into(),
                help: "A ratio.",
                unit: None,
                kind: Kind::Gauge,
                samples: vec![Sample {
                    labels: vec![],
                    value: Value::Real(0.004),
                }],
            },
        ]
    }

    #[test]
    fn openmetrics_has_types_units_and_eof() {
        let text = OpenMetrics.render(&families());
        assert_eq!(
            text,
            "# HELP x_target The traced process.\n\
             # TYPE x_target info\n\
             x_target_info{pid=\"7\",exe=\"/bin/\\\"x\\\"\"} 1.0\n\
             # HELP x_ops Operations; key=\\\"other\\\" holds the rest.\n\
             # TYPE x_ops counter\n\
             x_ops_total{key=\"other\"} 25\n\
             # HELP x_wait_seconds Waits.\n\
             # TYPE x_wait_seconds histogram\n\
             # UNIT x_wait_seconds seconds\n\
             x_wait_seconds_bucket{lock=\"m\",le=\"0.5\"} 1\n\
             x_wait_seconds_bucket{lock=\"m\",le=\"1.0\"} 3\n\
             x_wait_seconds_bucket{lock=\"m\",le=\"+Inf\"} 6\n\
             x_wait_seconds_sum{lock=\"m\"} 4.5\n\
             x_wait_seconds_count{lock=\"m\"} 6\n\
             # HELP x_ratio A ratio.\n\
             # TYPE x_ratio gauge\n\
             x_ratio 0.004\n\
             # EOF\n"
        );
    }

    #[test]
    fn the_classic_format_names_families_by_their_samples() {
        let text = PrometheusText.render(&families());
        assert!(
            text.contains("# TYPE x_target_info gauge\nx_target_info{"),
            "{text}"
        );
        assert!(
            text.contains("# HELP x_ops_total Operations; key=\"other\" holds"),
            "{text}"
        );
        assert!(text.contains("# TYPE x_ops_total counter\nx_ops_total{key=\"other\"} 25\n"));
        assert!(!text.contains("# UNIT") && !text.contains("# EOF") && !text.contains(" info"));
        assert!(text.contains("x_wait_seconds_bucket{lock=\"m\",le=\"+Inf\"} 6\n"));
    }

    #[test]
    fn real_numbers_are_written_as_both_formats_read_them() {
        assert_eq!(real(1.0), "1.0");
        assert_eq!(real(1.024e-6), "1.024e-6");
        assert_eq!(real(f64::INFINITY), "+Inf");
        assert_eq!(real(f64::NEG_INFINITY), "-Inf");
        assert_eq!(real(f64::NAN), "NaN");
    }

    #[test]
    fn the_scraper_gets_the_format_it_prefers() {
        let is_openmetrics = |accept| {
            negotiate(accept)
                .content_type()
                .starts_with("application/openmetrics-text")
        };
        // What Prometheus 2.x sends.
        assert!(is_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!is_openmetrics(None));
        assert!(!is_openmetrics(Some("*/*")));
        assert!(!is_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!is_openmetrics(Some("application/json")));
        assert!(!is_openmetrics(Some(
            "application/openmetrics-text;q=0.2, text/plain;q=0.9"
        )));
        assert!(is_openmetrics(Some(
            "text/plain;q=0.1, Application/OpenMetrics-Text"
        )));
        assert!(!is_openmetrics(Some("application/openmetrics-text;q=0")));
    }
}
