//! The report as one self-contained HTML page (`--report FILE.html`): no
//! scripts, no external resources, inline SVG heatmaps and wait histograms,
//! viewable offline and easy to attach to an incident.

use std::{fmt::Write as _, io};

use super::{heatmap::render_svg, human_duration as dur, Format};
use crate::model::{outside, LockReport, Snapshot as Report};

/// The HTML report.
#[derive(Debug, Clone, Copy, Default)]
pub struct HtmlReport;

impl Format for HtmlReport {
    fn write(&self, report: &Report, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(render(report).as_bytes())
    }
}

/// A lock's name, or its address.
fn lock_label(lock: &LockReport) -> String {
    match (&lock.name, lock.region) {
        (Some(name), _) => name.clone(),
        (None, Some(region)) => format!("{:#x} ({region})", lock.address),
        (None, None) => format!("{:#x}", lock.address),
    }
}

/// `worker ×4: 1234 waits, 1.2 ms; …`: who waited, by thread name.
fn thread_line(lock: &LockReport) -> String {
    lock.threads
        .iter()
        .map(|g| {
            format!(
                "{} ×{}: {} waits, {}",
                g.name,
                g.threads,
                g.waits,
                dur(g.wait_seconds)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c if c.is_control() && c != '\n' => "?".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A lock's wait histogram as an inline SVG bar chart.
fn histogram_svg(lock: &LockReport) -> String {
    let peak = lock
        .wait_histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(0)
        .max(1);
    let (row, width) = (16, 360.0);
    let height = row * lock.wait_histogram.len() + 4;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{height}" role="img" aria-label="wait histogram">"#
    );
    for (i, bucket) in lock.wait_histogram.iter().enumerate() {
        let y = i * row + 2;
        let w = (bucket.count as f64 / peak as f64 * width).max(1.0);
        let _ = write!(
            svg,
            r##"<text x="0" y="{ty}" font-size="11" font-family="monospace">{lo} … {hi}</text><rect x="150" y="{y}" width="{w:.1}" height="{h}" fill="#c0392b"><title>{count} waits</title></rect><text x="{tx:.1}" y="{ty}" font-size="11" font-family="monospace">{count}</text>"##,
            ty = y + 11,
            lo = esc(&dur(bucket.ns_min as f64 / 1e9)),
            hi = esc(&dur(bucket.ns_max as f64 / 1e9)),
            h = row - 3,
            tx = 150.0 + w + 4.0,
            count = bucket.count,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Renders the whole report.
pub fn render(report: &Report) -> String {
    let t = &report.target;
    let mut h = String::new();
    let title = format!("mapwatch: PID {} {}", t.pid, t.exe);
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td.l,th.l{{text-align:left}}code{{font-size:90%}}h2{{margin-top:2em}}.muted{{color:#777}}
</style></head><body>"#,
        esc(&title)
    );
    let _ = write!(
        h,
        "<h1>mapwatch report</h1><p>PID <b>{}</b> <code>{}</code> ({}) — attached {}, stopped by {}. Events lost: <b>{}</b>.</p>",
        t.pid,
        esc(&t.exe),
        esc(t.go_version.as_deref().unwrap_or("not Go")),
        esc(&dur(report.duration_seconds)),
        esc(&report
            .stopped_by
            .map_or("nothing yet".to_string(), |r| r.to_string())),
        report.events_lost
    );
    if let Some(gc) = &report.gc {
        let _ = write!(h, "<p>{}.</p>", esc(&super::text::gc_line(gc)));
    }
    if let Some(queue) = &report.run_queue {
        let _ = write!(h, "<p>{}.</p>", esc(&super::text::run_queue_line(queue)));
    }
    if let Some(window) = &report.window {
        let _ = write!(
            h,
            "<p>Recorded window: {} to {} (seconds {:.0} to {:.0} of the session){}.</p>",
            esc(&super::utc_time(window.from_unix_seconds)),
            esc(&super::utc_time(window.to_unix_seconds)),
            window.from_session_seconds,
            window.to_session_seconds,
            if window.truncated {
                "; the recording begins later than asked"
            } else {
                ""
            }
        );
    }

    h.push_str("<h2>Lock contention</h2>");
    if report.locks.is_empty() {
        h.push_str("<p class=\"muted\">No contended locks seen.</p>");
    } else {
        h.push_str("<table><tr><th class=\"l\">lock</th><th class=\"l\">kind</th><th>contentions</th><th>wait total</th><th>wait max</th><th class=\"l\">top waiting call site</th><th class=\"l\">top holder</th></tr>");
        for lock in &report.locks {
            let site = lock
                .top_call_sites
                .first()
                .map(|s| {
                    let own = s.own_frame().map_or(String::new(), |f| esc(&f.to_string()));
                    format!("{:.0}% at <code>{own}</code>", s.share * 100.0)
                })
                .unwrap_or_default();
            let holder = lock
                .top_holder_sites
                .first()
                .map(|s| {
                    let own = s.own_frame().map_or(String::new(), |f| esc(&f.to_string()));
                    format!("{:.0}% at <code>{own}</code>", s.share * 100.0)
                })
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(&lock_label(lock)),
                lock.kind,
                lock.contentions,
                esc(&dur(lock.wait_seconds_total)),
                esc(&dur(lock.wait_seconds_max)),
                site,
                holder
            );
        }
        h.push_str("</table>");
        for lock in report.locks.iter().filter(|l| l.acquisitions > 0).take(5) {
            let _ = write!(
                h,
                "<h3>Waits of <code>{}</code> ({} acquisitions)</h3>",
                esc(&lock_label(lock)),
                lock.acquisitions
            );
            h.push_str(&histogram_svg(lock));
            for site in lock.top_call_sites.iter().take(3) {
                let _ = write!(
                    h,
                    "<p>{:.1}% of the wait, {} acquisitions:<br>{}</p>",
                    site.share * 100.0,
                    site.count,
                    site.frames
                        .iter()
                        .map(|f| format!("<code>{}</code>", esc(&f.to_string())))
                        .collect::<Vec<_>>()
                        .join("<br>")
                );
            }
            if !lock.threads.is_empty() {
                let _ = write!(h, "<p><b>Threads:</b> {}</p>", esc(&thread_line(lock)));
            }
            if let Some(convoys) = &lock.convoys {
                let _ = write!(
                    h,
                    "<p><b>Convoys:</b> {}</p>",
                    esc(&super::convoy_sentence(convoys))
                );
            }
            if let Some(caused) = lock.wait_caused_seconds_total {
                let _ = write!(
                    h,
                    "<p><b>Held by</b> ({} of the wait charged to holders' releases):</p>",
                    esc(&dur(caused))
                );
                for site in lock.top_holder_sites.iter().take(3) {
                    let _ = write!(
                        h,
                        "<p>{}:<br>{}</p>",
                        esc(&super::holder_phrase(site)),
                        site.frames
                            .iter()
                            .map(|f| format!("<code>{}</code>", esc(&f.to_string())))
                            .collect::<Vec<_>>()
                            .join("<br>")
                    );
                }
            }
        }
    }

    if !report.signal_waits.is_empty() {
        h.push_str("<h2>Waits for other threads</h2><p class=\"muted\">Condition variables and joins: waits for a signal or a thread's exit, not lock contention.</p>");
        h.push_str("<table><tr><th class=\"l\">object</th><th class=\"l\">kind</th><th>waits</th><th>wait total</th><th>wait max</th><th class=\"l\">waited at</th><th class=\"l\">threads</th></tr>");
        for wait in &report.signal_waits {
            let at = wait
                .top_call_sites
                .first()
                .and_then(|s| s.own_frame())
                .map_or(String::new(), |f| esc(&f.to_string()));
            let _ = write!(
                h,
                "<tr><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\"><code>{at}</code></td><td class=\"l\">{}</td></tr>",
                esc(&lock_label(wait)),
                wait.kind,
                wait.contentions,
                esc(&dur(wait.wait_seconds_total)),
                esc(&dur(wait.wait_seconds_max)),
                esc(&thread_line(wait)),
            );
        }
        h.push_str("</table>");
    }

    if !report.timeline.is_empty() {
        h.push_str("<h2>Lock wait over time</h2>");
        h.push_str(&timeline_svg(report));
        if report.spikes.is_empty() {
            h.push_str("<p class=\"muted\">No spike: no second's wait rose four times above its lock's usual.</p>");
        } else {
            h.push_str("<table><tr><th class=\"l\">spike</th><th class=\"l\">lock</th><th>seconds</th><th>wait</th><th>usual per second</th><th>p99</th><th class=\"l\">most wait from</th><th class=\"l\">most held by</th><th class=\"l\">GC meanwhile</th><th class=\"l\">CPU meanwhile</th><th class=\"l\">context</th></tr>");
            for spike in &report.spikes {
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td><td>{}–{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\"><code>{}</code></td><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                    esc(&super::utc_time(spike.start_unix_seconds)),
                    esc(&spike.label()),
                    spike.start_seconds,
                    spike.end_seconds,
                    esc(&dur(spike.wait_seconds)),
                    esc(&dur(spike.usual_wait_seconds)),
                    esc(&dur(spike.p99_seconds)),
                    esc(&spike.top_wait_site.as_ref().map_or(String::new(), ToString::to_string)),
                    esc(&spike.top_holder_site.as_ref().map_or(String::new(), ToString::to_string)),
                    esc(&spike
                        .gc
                        .as_ref()
                        .map_or_else(String::new, super::text::gc_figures)),
                    esc(&spike
                        .run_queue
                        .as_ref()
                        .map_or_else(String::new, super::text::run_queue_figures)),
                    esc(&spike.context.map_or(String::new(), |c| c.to_string())),
                );
            }
            h.push_str("</table>");
        }
    }

    if !report.maps.is_empty() {
        h.push_str("<h2>Maps and hot keys</h2><table><tr><th class=\"l\">map</th><th class=\"l\">kind</th><th>operations</th><th class=\"l\">by kind</th><th class=\"l\">hottest key</th></tr>");
        for map in &report.maps {
            let ops = map.ops.to_string();
            let hottest = map
                .top_keys
                .first()
                .map(|k| format!("<code>{}</code> ({})", esc(&k.key.to_string()), k.total))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(&map.label()),
                map.kind,
                map.total,
                esc(&ops),
                hottest
            );
        }
        h.push_str("</table>");
        for map in report.maps.iter().filter(|m| m.keyed).take(10) {
            let _ = write!(
                h,
                "<h3>Hot keys of <code>{}</code> (~{} distinct keys)</h3><table><tr><th class=\"l\">key</th><th>operations</th><th class=\"l\">by kind</th><th>exact</th></tr>",
                esc(&map.label()),
                map.distinct_keys
            );
            for key in &map.top_keys {
                let ops = key.ops.to_string();
                let _ = write!(
                    h,
                    "<tr><td class=\"l\"><code>{}</code></td><td>{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
                    esc(&key.key.to_string()),
                    key.total,
                    esc(&ops),
                    if key.exact { "yes".to_string() } else { format!("±{}", key.error) }
                );
            }
            h.push_str("</table>");
            if let Some(health) = &map.health {
                let _ = write!(
                    h,
                    "<p><b>Structure:</b> {}</p>",
                    esc(&super::health_sentence(health))
                );
            }
            for advice in &map.advice {
                let _ = write!(
                    h,
                    "<p class=\"advice\"><b>Advisor ({}):</b> {}</p>",
                    advice.finding,
                    esc(&advice.text)
                );
            }
        }
    }

    if !report.cas.is_empty() {
        h.push_str("<h2>Compare-and-swap outcomes</h2><table><tr><th class=\"l\">site</th><th class=\"l\">source</th><th>attempts</th><th>failures</th><th>ratio</th></tr>");
        for cas in &report.cas {
            let _ = write!(
                h,
                "<tr><td class=\"l\"><code>{}</code></td><td class=\"l\"><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
                esc(&cas.site.to_string()),
                esc(&cas.source.as_ref().map_or(String::new(), ToString::to_string)),
                cas.attempts,
                cas.failures,
                cas.failure_ratio * 100.0
            );
        }
        h.push_str("</table>");
    }

    if !report.heatmaps.is_empty() {
        h.push_str("<h2>Heatmaps</h2>");
        for map in &report.heatmaps {
            let _ = write!(h, "<div>{}</div>", render_svg(map));
        }
    }
    h.push_str("<p class=\"muted\">Generated by mapwatch.</p></body></html>\n");
    h
}

/// Wait per second of the locks that waited most, one line each, with the
/// spikes shaded.
fn timeline_svg(report: &Report) -> String {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 160.0;
    const COLORS: [&str; 5] = ["#c0392b", "#2471a3", "#229954", "#b7950b", "#7d3c98"];
    let rows = &report.timeline;
    let first = rows.iter().map(|r| r.second).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.second).max().unwrap_or(0);
    let span = (last - first + 1) as f64;
    let peak = rows
        .iter()
        .map(|r| r.wait_seconds)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let x = |second: u64| (second - first) as f64 / span * WIDTH;
    let y = |wait: f64| HEIGHT - wait / peak * (HEIGHT - 10.0);
    let mut totals: Vec<(u64, f64, String)> = Vec::new();
    for row in rows {
        match totals.iter_mut().find(|(lock, _, _)| *lock == row.lock) {
            Some((_, total, _)) => *total += row.wait_seconds,
            None => totals.push((row.lock, row.wait_seconds, row.label())),
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\"><rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>",
        WIDTH + 220.0,
        HEIGHT + 20.0
    );
    // Untimed seconds grey, spikes red, behind the lines.
    let shaded = report
        .timeline_unwatched
        .iter()
        .map(|r| (r.start, r.end, "#e5e7e9"))
        .chain(
            report
                .spikes
                .iter()
                .map(|s| (s.start_seconds, s.end_seconds, "#f5b7b1")),
        );
    for (start, end, fill) in shaded {
        if end <= first || start > last {
            continue;
        }
        let (from, to) = (x(start.max(first)), x(end.min(last + 1)));
        let _ = write!(
            svg,
            "<rect x=\"{from:.1}\" y=\"0\" width=\"{:.1}\" height=\"{HEIGHT}\" fill=\"{fill}\"/>",
            (to - from).max(1.0)
        );
    }
    for (i, (lock, total, name)) in totals.iter().take(COLORS.len()).enumerate() {
        // One line per run of timed seconds: an untimed second is a gap.
        let mut segments = vec![String::new()];
        let mut own = rows.iter().filter(|r| r.lock == *lock).peekable();
        for second in first..=last {
            let wait = match own.peek() {
                Some(row) if row.second == second => own.next().map_or(0.0, |r| r.wait_seconds),
                _ => 0.0,
            };
            if !outside(&report.timeline_unwatched, second) {
                if segments.last().is_some_and(|s| !s.is_empty()) {
                    segments.push(String::new());
                }
                continue;
            }
            if let Some(points) = segments.last_mut() {
                let _ = write!(
                    points,
                    "{:.1},{:.1} ",
                    x(second) + WIDTH / span / 2.0,
                    y(wait)
                );
            }
        }
        for points in segments.iter().filter(|s| !s.is_empty()) {
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
                COLORS[i],
                points.trim_end(),
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{} ({})</text>",
            WIDTH + 8.0,
            14.0 + 14.0 * i as f64,
            COLORS[i],
            esc(name),
            esc(&dur(*total))
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\" font-size=\"11\">second {first}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">second {last} · peak {} waited in a second</text></svg>",
        HEIGHT + 14.0,
        WIDTH,
        HEIGHT + 14.0,
        esc(&dur(peak))
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::{esc, render};

    #[test]
    fn shows_a_maps_structure() {
        let html = render(&crate::view::sample_snapshot());
        assert!(
            html.contains("<b>Structure:</b> 1000 entries (peak 1200) in 2000 slots"),
            "{html}"
        );
    }

    #[test]
    fn waits_for_a_signal_have_their_own_table() {
        let mut snapshot = crate::view::sample_snapshot();
        let mut cond = snapshot.locks[0].clone();
        cond.name = Some("queue_cv".into());
        cond.kind = crate::model::LockKind::Condvar;
        cond.threads = vec![crate::model::ThreadGroup {
            name: "consumer".into(),
            threads: 2,
            waits: 12,
            wait_seconds: 0.5,
        }];
        snapshot.signal_waits = vec![cond];
        let html = render(&snapshot);
        let table = &html[html
            .find("<h2>Waits for other threads</h2>")
            .expect("the table")..];
        assert!(
            table.contains("<code>queue_cv</code></td><td class=\"l\">condvar</td><td>12</td>"),
            "{table}"
        );
        assert!(table.contains("consumer ×2: 12 waits"), "{table}");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("a\u{1b}[31m"), "a?[31m");
    }
}
