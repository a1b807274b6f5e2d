//! Heatmap views: shade blocks (or ANSI colours) for a terminal, and a
//! self-contained SVG. Both squeeze a map into the space they have by
//! summing adjacent time columns ([`Heatmap::aggregate_columns`]).

use std::{
    collections::HashSet,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::model::Heatmap;

/// A stable file name from a title: lowercase, `[a-z0-9-]` only, runs of
/// anything else turned into one `-`, e.g. `cas-failures-by-cpu.svg`;
/// `heatmap.svg` when nothing is left.
pub fn file_name(title: &str) -> String {
    let mut stem = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            stem.push(c);
        } else if !stem.is_empty() && !stem.ends_with('-') {
            stem.push('-');
        }
        if stem.len() >= 80 {
            break;
        }
    }
    let stem = stem.trim_end_matches('-');
    if stem.is_empty() {
        "heatmap.svg".to_string()
    } else {
        format!("{stem}.svg")
    }
}

/// How counts map to shades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// Level `ceil(levels * count / max)`.
    #[default]
    Linear,
    /// Level `ceil(levels * ln(1 + count) / ln(1 + max))`: small counts stay
    /// visible next to a few huge ones.
    Log,
}

impl Scale {
    fn name(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log => "log",
        }
    }

    /// 0 for a zero count, else a level in `1..=levels`.
    fn level(self, count: u64, max: u64, levels: usize) -> usize {
        if count == 0 || max == 0 || levels == 0 {
            return 0;
        }
        let count = count.min(max);
        let level = match self {
            Scale::Linear => {
                let (n, c, m) = (levels as u128, count as u128, max as u128);
                ((n * c).div_ceil(m)) as usize
            }
            Scale::Log => {
                let fraction = (count as f64).ln_1p() / (max as f64).ln_1p();
                (levels as f64 * fraction).ceil() as usize
            }
        };
        level.clamp(1, levels)
    }
}

/// Options of [`render_terminal_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalOptions {
    /// The most grid characters per line; wider maps get adjacent columns
    /// summed to fit.
    pub width: usize,
    /// ANSI 256-colour backgrounds instead of shade blocks.
    pub colour: bool,
    /// How counts map to shades.
    pub scale: Scale,
}

/// The shade blocks of the terminal view, level 0 (zero) to 4 (the max).
const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

/// ANSI 256-colour backgrounds from light pink to dark red.
const ANSI_REDS: [u8; 8] = [224, 217, 210, 203, 196, 160, 124, 88];

/// The longest row name the views show in full.
const MAX_NAME_CHARS: usize = 30;

/// Renders a heatmap for a terminal with a linear scale: a header, one line
/// per row (name, one character per time column, row total) and a time axis.
/// `width` is the most grid characters per line; when the map has more
/// columns, adjacent ones are summed so it fits and the header says so.
/// With `colour`, cells are ANSI 256-colour backgrounds instead of the shade
/// blocks ` ░▒▓█`.
pub fn render_terminal(map: &Heatmap, width: usize, colour: bool) -> String {
    render_terminal_with(
        map,
        &TerminalOptions {
            width,
            colour,
            scale: Scale::Linear,
        },
    )
}

/// [`render_terminal`] with every option, including a log scale.
pub fn render_terminal_with(map: &Heatmap, options: &TerminalOptions) -> String {
    let mut out = String::new();
    let title = clean(&map.title(), usize::MAX);
    if map.is_empty() {
        let _ = writeln!(out, "{title}: no data");
        return out;
    }
    let factor = map.columns().div_ceil(options.width.max(1));
    let shown = map.aggregate_columns(factor);
    let columns = shown.columns();
    let max = shown.max();
    let seconds = shown.seconds_per_column();
    let levels = if options.colour {
        ANSI_REDS.len()
    } else {
        SHADES.len() - 1
    };

    let _ = write!(
        out,
        "{title}: max {max} per cell, {} per column",
        format_seconds(seconds)
    );
    if factor > 1 {
        let _ = write!(out, " ({factor} columns summed to fit)");
    }
    let _ = writeln!(out, ", {} scale", options.scale.name());

    let names: Vec<String> = shown
        .rows
        .iter()
        .map(|r| clean(&r.to_string(), MAX_NAME_CHARS))
        .collect();
    let label = clean(map.kind.row_label(), MAX_NAME_CHARS);
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .chain([label.chars().count()])
        .max()
        .unwrap_or(0);
    let totals: Vec<u64> = (0..shown.rows.len()).map(|r| shown.row_total(r)).collect();
    let total_width = totals
        .iter()
        .map(|t| t.to_string().len())
        .chain(["total".len()])
        .max()
        .unwrap_or(0);

    let _ = writeln!(
        out,
        "{label:<name_width$} ┌{}┐ {:>total_width$}",
        "─".repeat(columns),
        "total"
    );
    for (row, name) in names.iter().enumerate() {
        let _ = write!(out, "{name:<name_width$} │");
        let mut current: Option<u8> = None;
        for column in 0..columns {
            let level = options.scale.level(shown.cell(row, column), max, levels);
            if options.colour {
                let code = level.checked_sub(1).and_then(|i| ANSI_REDS.get(i)).copied();
                if code != current {
                    match code {
                        Some(code) => {
                            let _ = write!(out, "\x1b[48;5;{code}m");
                        }
                        None => out.push_str("\x1b[0m"),
                    }
                    current = code;
                }
                out.push(' ');
            } else {
                out.push(SHADES.get(level).copied().unwrap_or(' '));
            }
        }
        if current.is_some() {
            out.push_str("\x1b[0m");
        }
        let total = totals.get(row).copied().unwrap_or(0);
        let _ = writeln!(out, "│ {total:>total_width$}");
    }

    // Axis: a tick every 10 columns, labelled with its start time.
    let axis: String = (0..columns)
        .map(|c| if c % 10 == 0 { '┴' } else { '─' })
        .collect();
    let _ = writeln!(out, "{:name_width$} └{axis}┘", "");
    let mut labels = String::new();
    for column in (0..columns).step_by(10) {
        let text = format_seconds(column as f64 * seconds);
        let at = column;
        let used = labels.chars().count();
        if at < used + usize::from(used > 0) {
            continue;
        }
        labels.push_str(&" ".repeat(at - used));
        labels.push_str(&text);
    }
    let _ = writeln!(out, "{:name_width$}  {labels}", "");
    out
}

/// The SVG cell size in pixels.
const CELL_W: usize = 12;
const CELL_H: usize = 14;
/// The widest SVG the renderer aims for, in pixels.
const MAX_SVG_WIDTH: usize = 1200;
const MARGIN: usize = 10;
const TOTALS_W: usize = 70;
const GRID_TOP: usize = 58;
const LEGEND_STEPS: usize = 30;

/// Renders a heatmap as a self-contained SVG document (no scripts, no
/// external references): the title, row names on the left, the grid, row
/// totals on the right, a time axis with a tick every 10 columns and a
/// colour legend. Colours run from white to dark red on a log scale.
///
/// Only non-zero cells are drawn, each as one `<rect class="cell">` with a
/// `<title>` tooltip `row, t=Ns: count` (N = the column's start time); zero
/// cells show the grid's background. Maps wider than about 1200 px get
/// adjacent columns summed, as in the terminal view. An empty map gives a
/// small SVG saying "no data".
pub fn render_svg(map: &Heatmap) -> String {
    let mut out = String::new();
    let raw_title = map.title();
    let title = xml_escape(&clean(&raw_title, usize::MAX));
    if map.is_empty() {
        let width = (MARGIN * 2 + raw_title.chars().count() * 8).max(200);
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" viewBox="0 0 {width} 60" font-family="sans-serif">"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{MARGIN}" y="22" font-size="14" font-weight="bold">{title}</text>"#
        );
        let _ = writeln!(
            out,
            r##"<text x="{MARGIN}" y="44" font-size="12" fill="#666">no data</text>"##
        );
        out.push_str("</svg>\n");
        return out;
    }

    let row_names: Vec<String> = map.rows.iter().map(ToString::to_string).collect();
    let names: Vec<String> = row_names.iter().map(|r| clean(r, MAX_NAME_CHARS)).collect();
    let label = clean(map.kind.row_label(), MAX_NAME_CHARS);
    let name_chars = names
        .iter()
        .map(|n| n.chars().count())
        .chain([label.chars().count()])
        .max()
        .unwrap_or(0);
    let grid_x = MARGIN + name_chars * 7 + 8;
    let max_columns = (MAX_SVG_WIDTH.saturating_sub(grid_x + TOTALS_W + MARGIN) / CELL_W).max(10);
    let factor = map.columns().div_ceil(max_columns);
    let shown = map.aggregate_columns(factor);
    let columns = shown.columns();
    let rows = shown.rows.len();
    let max = shown.max();
    let min = shown.min_nonzero();
    let seconds = shown.seconds_per_column();

    let grid_w = columns * CELL_W;
    let grid_h = rows * CELL_H;
    let axis_y = GRID_TOP + grid_h;
    let legend_y = axis_y + 34;
    let height = legend_y + 34;
    let width = (grid_x + grid_w + TOTALS_W + MARGIN)
        .max(grid_x + LEGEND_STEPS * 5 + 160)
        .max(MARGIN * 2 + raw_title.chars().count() * 9);

    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(
        out,
        r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN}" y="22" font-size="14" font-weight="bold">{title}</text>"#
    );
    let mut subtitle = format!("max {max} per cell, {} per column", format_seconds(seconds));
    if factor > 1 {
        let _ = write!(subtitle, " ({factor} columns summed to fit)");
    }
    let _ = write!(subtitle, ", total {}, log colour scale", shown.total());
    let _ = writeln!(
        out,
        r##"<text x="{MARGIN}" y="38" fill="#555">{}</text>"##,
        xml_escape(&subtitle)
    );

    // Column headings and the grid background.
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN}" y="{}" font-weight="bold">{}</text>"#,
        GRID_TOP - 5,
        xml_escape(&label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-weight="bold">total</text>"#,
        grid_x + grid_w + 6,
        GRID_TOP - 5
    );
    let _ = writeln!(
        out,
        r##"<rect class="grid" x="{grid_x}" y="{GRID_TOP}" width="{grid_w}" height="{grid_h}" fill="#f6f6f6" stroke="#cccccc" stroke-width="0.5"/>"##
    );

    // Rows: name, cells, total.
    for (row, name) in names.iter().enumerate() {
        let y = GRID_TOP + row * CELL_H;
        let full = xml_escape(&clean(row_names.get(row).map_or("", String::as_str), 200));
        let _ = writeln!(
            out,
            r#"<text x="{MARGIN}" y="{}">{}<title>{full}</title></text>"#,
            y + CELL_H - 3,
            xml_escape(name)
        );
        for column in 0..columns {
            let count = shown.cell(row, column);
            if count == 0 {
                continue;
            }
            let fill = count_colour(count, max);
            let t = format_seconds(column as f64 * seconds);
            let _ = writeln!(
                out,
                r#"<rect class="cell" x="{}" y="{y}" width="{}" height="{}" fill="{fill}"><title>{full}, t={t}: {count}</title></rect>"#,
                grid_x + column * CELL_W,
                CELL_W - 1,
                CELL_H - 1
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            grid_x + grid_w + 6,
            y + CELL_H - 3,
            shown.row_total(row)
        );
    }

    // Time axis.
    let _ = writeln!(
        out,
        r##"<line x1="{grid_x}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333333"/>"##,
        grid_x + grid_w
    );
    for column in (0..=columns).step_by(10) {
        let x = grid_x + column * CELL_W;
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{axis_y}" x2="{x}" y2="{}" stroke="#333333"/>"##,
            axis_y + 4
        );
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            axis_y + 16,
            format_seconds(column as f64 * seconds)
        );
    }

    // Legend: the scale from the smallest non-zero count to the max.
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN}" y="{}">count</text>"#,
        legend_y + 9
    );
    for step in 0..LEGEND_STEPS {
        let fraction = (step as f64 + 0.5) / LEGEND_STEPS as f64;
        let _ = writeln!(
            out,
            r#"<rect class="legend" x="{}" y="{legend_y}" width="5" height="10" fill="{}"/>"#,
            grid_x + step * 5,
            colour_at(MIN_SHADE + (1.0 - MIN_SHADE) * fraction)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{grid_x}" y="{}">{min}</text>"#,
        legend_y + 22
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{max}</text>"#,
        grid_x + LEGEND_STEPS * 5,
        legend_y + 22
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" fill="#555">log scale</text>"##,
        grid_x + LEGEND_STEPS * 5 + 8,
        legend_y + 9
    );
    out.push_str("</svg>\n");
    out
}

/// Writes [`render_svg`] of each map to `dir/`[`file_name`] of its title,
/// creating `dir`, and returns the paths in order. Maps whose file names
/// clash get `-2`, `-3`, … appended rather than overwriting each other.
pub fn write_svgs(dir: &Path, maps: &[Heatmap]) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut used = HashSet::new();
    let mut paths = Vec::with_capacity(maps.len());
    for map in maps {
        let base = file_name(&map.title());
        let stem = base.trim_end_matches(".svg").to_string();
        let mut name = base;
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{stem}-{n}.svg");
            n += 1;
        }
        let path = dir.join(name);
        std::fs::write(&path, render_svg(map))?;
        paths.push(path);
    }
    Ok(paths)
}

/// The palest shade a non-zero cell gets, so it stands out from zero.
const MIN_SHADE: f64 = 0.12;

/// The fill of a non-zero cell: log scale from [`MIN_SHADE`] to dark red.
fn count_colour(count: u64, max: u64) -> String {
    let fraction = if max == 0 {
        0.0
    } else {
        ((count.min(max) as f64).ln_1p() / (max as f64).ln_1p()).clamp(0.0, 1.0)
    };
    colour_at(MIN_SHADE + (1.0 - MIN_SHADE) * fraction)
}

/// A colour on the white → dark red ramp, `t` in `0..=1`.
fn colour_at(t: f64) -> String {
    const STOPS: [(f64, [f64; 3]); 4] = [
        (0.0, [255.0, 255.0, 255.0]),
        (0.35, [250.0, 185.0, 150.0]),
        (0.7, [225.0, 60.0, 40.0]),
        (1.0, [110.0, 0.0, 15.0]),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut rgb = STOPS[STOPS.len() - 1].1;
    for pair in STOPS.windows(2) {
        let ((t0, a), (t1, b)) = (pair[0], pair[1]);
        if t <= t1 {
            let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
            for (i, channel) in rgb.iter_mut().enumerate() {
                *channel = a[i] + (b[i] - a[i]) * f;
            }
            break;
        }
    }
    format!(
        "#{:02x}{:02x}{:02x}",
        rgb[0].round() as u8,
        rgb[1].round() as u8,
        rgb[2].round() as u8
    )
}

/// Seconds for humans: `10s`, `0.5s`, `2.25s`.
fn format_seconds(seconds: f64) -> String {
    if seconds.fract() == 0.0 && seconds.abs() < 1e15 {
        format!("{}s", seconds as i64)
    } else {
        let text = format!("{seconds:.3}");
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A label safe to print: control characters (which could be terminal
/// escapes, or invalid in XML) replaced by `?`, and cut to `max_chars` with
/// a trailing `…`.
fn clean(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max_chars)
        .collect();
    if text.chars().nth(max_chars).is_some() && max_chars > 0 {
        out.pop();
        out.push('…');
    }
    out
}

/// Escapes the XML special characters.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeatmapKind, Key, RowLabel};

    fn cpus(n: usize, columns: usize) -> Heatmap {
        let rows = (0..n).map(RowLabel::Cpu).collect();
        Heatmap::new(HeatmapKind::CasFailuresByCpu, 1.0, rows, columns)
    }

    fn key(text: &str) -> RowLabel {
        RowLabel::Key(Key::Str {
            text: text.into(),
            truncated: false,
        })
    }

    #[test]
    fn terminal_shape() {
        let mut map = cpus(3, 20);
        map.add(0, 0, 100);
        map.add(0, 1, 1);
        map.add(2, 19, 50);
        let text = render_terminal(&map, 100, false);
        let lines: Vec<&str> = text.lines().collect();
        // header, top border, 3 rows, axis, axis labels
        assert_eq!(lines.len(), 7, "{text}");
        assert!(lines[0].contains("CAS failures by CPU"));
        assert!(lines[0].contains("max 100"));
        assert!(lines[0].contains("1s per column"));
        let grid = |line: &str| -> Vec<char> {
            let start = line.find('│').unwrap_or(0) + '│'.len_utf8();
            line[start..].chars().take(20).collect()
        };
        let row0 = grid(lines[2]);
        assert_eq!(row0[0], '█');
        assert_eq!(row0[1], '░');
        assert!(row0[2..].iter().all(|&c| c == ' '));
        assert!(grid(lines[3]).iter().all(|&c| c == ' '));
        assert_eq!(grid(lines[4])[19], '▒', "50 of 100 is level 2");
        assert!(lines[2].trim_end().ends_with("101"));
        assert!(lines[6].contains("0s") && lines[6].contains("10s"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn terminal_aggregates_wide_maps() {
        let mut map = cpus(1, 250);
        map.add(0, 249, 3);
        let text = render_terminal(&map, 100, false);
        assert!(text.contains("3s per column"), "{text}");
        assert!(text.contains("3 columns summed"), "{text}");
        let row = text.lines().nth(2).unwrap_or_default();
        let grid: Vec<&str> = row.split('│').collect();
        assert_eq!(grid.len(), 3, "{row}");
        assert_eq!(grid[1].chars().count(), 84);
        assert_eq!(grid[1].chars().last(), Some('█'));
        assert!(text.contains("30s"));
    }

    #[test]
    fn terminal_colour_and_log() {
        let mut map = cpus(1, 3);
        map.add(0, 0, 1000);
        map.add(0, 2, 1);
        let text = render_terminal(&map, 100, true);
        assert!(text.contains("\x1b[48;5;88m"));
        assert!(text.contains("\x1b[0m"));
        let log = render_terminal_with(
            &map,
            &TerminalOptions {
                width: 100,
                colour: false,
                scale: Scale::Log,
            },
        );
        assert!(log.contains("log scale"));
        assert_eq!(Scale::Log.level(1, 1000, 4), 1);
        assert_eq!(Scale::Log.level(1000, 1000, 4), 4);
        assert_eq!(Scale::Linear.level(1, 1000, 4), 1);
        assert_eq!(Scale::Linear.level(0, 1000, 4), 0);
    }

    #[test]
    fn empty_maps_say_no_data() {
        for map in [cpus(0, 0), cpus(2, 0), cpus(2, 4)] {
            assert_eq!(
                render_terminal(&map, 100, false),
                "CAS failures by CPU: no data\n"
            );
            let svg = render_svg(&map);
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("no data"));
        }
    }

    #[test]
    fn svg_shape_and_escaping() {
        let mut map = Heatmap::new(
            HeatmapKind::HotKeys {
                map_name: Some("<top>".into()),
                map_address: 0,
            },
            0.5,
            vec![key("a<b & \"c\">"), key("plain"), key("\x1b[31mred")],
            0,
        );
        map.add(0, 0, 5);
        map.add(0, 3, 1);
        map.add(2, 30, 9);
        let svg = render_svg(&map);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"<rect class="cell""#).count(), 3);
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot;&gt;"));
        assert!(!svg.contains("a<b"));
        assert!(svg.contains("Hot keys of &lt;top&gt;"));
        assert!(!svg.contains('\x1b'));
        assert!(svg.contains("t=1.5s: 1"));
        assert!(!svg.contains("<script"));
        // Balanced tags, as a cheap well-formedness check.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(
            svg.matches("<title>").count(),
            svg.matches("</title>").count()
        );
    }

    #[test]
    fn svg_aggregates_wide_maps() {
        let mut map = cpus(2, 0);
        for c in 0..1000 {
            map.add(c % 2, c, 1);
        }
        let svg = render_svg(&map);
        assert!(svg.contains("columns summed to fit"));
        let width: usize = svg
            .split("width=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        assert!(width <= MAX_SVG_WIDTH, "{width}");
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name(&cpus(0, 0).title()), "cas-failures-by-cpu.svg");
        assert_eq!(
            file_name("  Lock waits (log2 ns) / main.mu!! "),
            "lock-waits-log2-ns-main-mu.svg"
        );
        assert_eq!(file_name("../../etc/passwd"), "etc-passwd.svg");
        assert_eq!(file_name("ÿ€"), "heatmap.svg");
    }

    #[test]
    fn writes_svgs() {
        let dir = std::env::temp_dir().join(format!("mapwatch-heatmap-{}", std::process::id()));
        let maps = vec![cpus(1, 1), cpus(1, 1)];
        let paths = write_svgs(&dir, &maps).expect("write");
        assert_eq!(paths.len(), 2);
        assert!(paths[0].ends_with("cas-failures-by-cpu.svg"));
        assert!(paths[1].ends_with("cas-failures-by-cpu-2.svg"));
        assert!(paths.iter().all(|p| p.exists()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Renders a sample to `/tmp/heatmap-sample.svg` when
    /// `MAPWATCH_HEATMAP_SAMPLE` is set, and checks it with `xmllint` when
    /// that is installed.
    #[test]
    fn sample_and_xmllint() {
        let mut map = cpus(8, 0);
        map.rows[7] = key("<odd & \"name\">");
        for c in 0..90u64 {
            for r in 0..8u64 {
                let v = ((c * 7 + r * 13) % 23).saturating_sub(8 + r) * (1 + (c / 30)) * (r + 1);
                map.add(r as usize, c as usize, v * v);
            }
        }
        let svg = render_svg(&map);
        if std::env::var_os("MAPWATCH_HEATMAP_SAMPLE").is_some() {
            let _ = std::fs::write("/tmp/heatmap-sample.svg", &svg);
            print!("{}", render_terminal(&map, 100, false));
        }
        let path = std::env::temp_dir().join(format!("mapwatch-lint-{}.svg", std::process::id()));
        if std::fs::write(&path, &svg).is_ok() {
            if let Ok(output) = std::process::Command::new("xmllint")
                .arg("--noout")
                .arg(&path)
                .output()
            {
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}
