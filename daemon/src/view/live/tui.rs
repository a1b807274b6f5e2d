//! The full-screen live view (ratatui): top locks with their waits, hot keys
//! per map, CAS failures, and the heatmaps, refreshed every second. Keys:
//! `1`–`4` or Tab switch views, `←`/`→` (or `h`/`l`) page through heatmaps,
//! `q`, Esc or Ctrl-C stop the session (the final report follows).

use std::{io, time::Duration};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::{
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row, Table, Tabs},
    DefaultTerminal, Frame,
};
use tokio::sync::mpsc;

use super::{seconds, target_label};
use crate::{model::Snapshot, view::heatmap};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Locks by contentions, with waits.
    Locks,
    /// Maps with their hot keys.
    Maps,
    /// CAS sites by failures.
    Cas,
    /// One heatmap at a time.
    Heatmaps,
}

const VIEWS: [(View, &str); 4] = [
    (View::Locks, "1 Locks"),
    (View::Maps, "2 Hot keys"),
    (View::Cas, "3 CAS"),
    (View::Heatmaps, "4 Heatmaps"),
];

/// What the session should do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop the session.
    Quit,
    /// Nothing (the view was redrawn if it changed).
    Continue,
}

/// The running full-screen view. Dropping it restores the terminal.
pub struct LiveTui {
    terminal: DefaultTerminal,
    view: View,
    heatmap: usize,
    snapshot: Snapshot,
}

impl LiveTui {
    /// Switches the terminal to the full-screen view and starts reading
    /// keys, which arrive on the returned channel (for [`LiveTui::handle_key`]).
    pub fn start(first: Snapshot) -> io::Result<(Self, mpsc::UnboundedReceiver<KeyEvent>)> {
        let terminal = ratatui::try_init()?;
        let (tx, keys) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            while !tx.is_closed() {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => {
                        if let Ok(Event::Key(key)) = event::read() {
                            if key.kind != KeyEventKind::Release && tx.send(key).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        });
        let tui = Self {
            terminal,
            view: View::Locks,
            heatmap: 0,
            snapshot: first,
        };
        Ok((tui, keys))
    }

    /// Shows a new snapshot.
    pub fn show(&mut self, snapshot: Snapshot) -> io::Result<()> {
        self.snapshot = snapshot;
        self.draw()
    }

    /// Applies a key.
    pub fn handle_key(&mut self, key: KeyEvent) -> io::Result<Action> {
        let heatmaps = self.snapshot.heatmaps.len().max(1);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Ok(Action::Quit),
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Ok(Action::Quit)
            }
            KeyCode::Char(c @ '1'..='4') => self.view = VIEWS[(c as u8 - b'1') as usize].0,
            KeyCode::Tab => {
                let at = VIEWS.iter().position(|(v, _)| *v == self.view).unwrap_or(0);
                self.view = VIEWS[(at + 1) % VIEWS.len()].0;
            }
            KeyCode::Right | KeyCode::Char('l') => {
                self.view = View::Heatmaps;
                self.heatmap = (self.heatmap + 1) % heatmaps;
            }
            KeyCode::Left | KeyCode::Char('h') => {
                self.view = View::Heatmaps;
                self.heatmap = (self.heatmap + heatmaps - 1) % heatmaps;
            }
            _ => return Ok(Action::Continue),
        }
        self.draw()?;
        Ok(Action::Continue)
    }

    fn draw(&mut self) -> io::Result<()> {
        let (view, heatmap, snapshot) = (self.view, self.heatmap, &self.snapshot);
        self.terminal
            .draw(|frame| render(frame, view, heatmap, snapshot))
            .map(|_| ())
    }
}

impl Drop for LiveTui {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Draws one frame.
pub fn render(frame: &mut Frame, view: View, heatmap: usize, snapshot: &Snapshot) {
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(format!(
            "mapwatch · {} · {:.0}s attached · events lost {}{}",
            target_label(snapshot),
            snapshot.duration_seconds,
            snapshot.events_lost,
            super::context_label(snapshot).map_or(String::new(), |c| format!(" · {c}"))
        )),
        header,
    );
    let selected = VIEWS.iter().position(|(v, _)| *v == view).unwrap_or(0);
    frame.render_widget(
        Tabs::new(VIEWS.iter().map(|(_, name)| *name))
            .select(selected)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        tabs,
    );
    frame.render_widget(
        Paragraph::new("1-4/Tab: views   ←/→: heatmaps   q: stop and print the report"),
        footer,
    );
    let bold = Style::new().add_modifier(Modifier::BOLD);
    match view {
        View::Locks => {
            let rows = snapshot.locks.iter().map(|l| {
                Row::new(vec![
                    Cell::from(
                        l.name
                            .clone()
                            .unwrap_or_else(|| format!("{:#x}", l.address)),
                    ),
                    Cell::from(l.kind.to_string()),
                    Cell::from(l.contentions.to_string()),
                    Cell::from(l.acquisitions.to_string()),
                    Cell::from(seconds(l.wait_seconds_total)),
                    Cell::from(super::sparkline(snapshot, l.address)),
                ])
            });
            let table = Table::new(
                rows,
                [
                    Constraint::Min(24),
                    Constraint::Length(8),
                    Constraint::Length(12),
                    Constraint::Length(12),
                    Constraint::Length(12),
                    Constraint::Length(super::SPARKLINE_SECONDS as u16),
                ],
            )
            .header(
                Row::new([
                    "LOCK",
                    "KIND",
                    "CONTENTIONS",
                    "WAITS",
                    "WAIT TOTAL",
                    "WAIT PER SECOND, LAST 30 S",
                ])
                .style(bold),
            )
            .block(
                Block::new()
                    .borders(Borders::TOP)
                    .title("Locks, most contended first"),
            );
            frame.render_widget(table, body);
        }
        View::Maps => {
            let mut lines = Vec::new();
            for map in &snapshot.maps {
                let total = map.total;
                let mut ops = map.ops.to_string();
                if !map.internal.is_empty() {
                    ops = format!("{ops}, {}", map.internal);
                }
                lines.push(Line::styled(
                    format!("{} {} — {total} ops: {ops}", map.kind, map.label()),
                    bold,
                ));
                if let Some(health) = &map.health {
                    lines.push(Line::from(format!(
                        "  structure: {}",
                        crate::view::health_sentence(health)
                    )));
                }
                let findings: Vec<String> = map
                    .advice
                    .iter()
                    .filter(|a| a.finding != crate::model::Finding::Fits)
                    .map(|a| a.finding.to_string())
                    .collect();
                if !findings.is_empty() {
                    lines.push(Line::from(format!("  advice: {}", findings.join(", "))));
                }
                let share = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
                for key in &map.top_keys {
                    lines.push(Line::from(format!(
                        "    {:>10}  {:>5.1}%  {}",
                        key.total,
                        share(key.total),
                        key.key
                    )));
                }
                if map.keyed {
                    let listed: u64 = map.top_keys.iter().map(|k| k.total).sum();
                    let other = total.saturating_sub(listed);
                    lines.push(Line::from(format!(
                        "    {other:>10}  {:>5.1}%  other",
                        share(other)
                    )));
                }
            }
            if lines.is_empty() {
                lines.push(Line::from("no map operations seen yet"));
            }
            frame.render_widget(
                Paragraph::new(lines).block(
                    Block::new()
                        .borders(Borders::TOP)
                        .title("Maps and their hot keys"),
                ),
                body,
            );
        }
        View::Cas => {
            let rows = snapshot.cas.iter().map(|c| {
                let ratio = if c.attempts == 0 {
                    0.0
                } else {
                    100.0 * c.failures as f64 / c.attempts as f64
                };
                Row::new(vec![
                    Cell::from(c.site.to_string()),
                    Cell::from(c.attempts.to_string()),
                    Cell::from(c.failures.to_string()),
                    Cell::from(format!("{ratio:.1}%")),
                ])
            });
            let table = Table::new(
                rows,
                [
                    Constraint::Min(30),
                    Constraint::Length(12),
                    Constraint::Length(12),
                    Constraint::Length(8),
                ],
            )
            .header(Row::new(["CAS SITE", "ATTEMPTS", "FAILURES", "RATIO"]).style(bold))
            .block(
                Block::new()
                    .borders(Borders::TOP)
                    .title("Compare-and-swap sites, most failures first"),
            );
            frame.render_widget(table, body);
        }
        View::Heatmaps => {
            let count = snapshot.heatmaps.len();
            let text = match snapshot.heatmaps.get(heatmap.min(count.saturating_sub(1))) {
                Some(map) => {
                    let width = (body.width as usize).saturating_sub(50).max(10);
                    heatmap::render_terminal(map, width, false)
                }
                None => "no heatmap yet".to_string(),
            };
            frame.render_widget(
                Paragraph::new(text).block(Block::new().borders(Borders::TOP).title(format!(
                    "Heatmap {} of {count} (←/→)",
                    (heatmap.min(count.saturating_sub(1))) + usize::from(count > 0)
                ))),
                body,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::{backend::TestBackend, Terminal};

    fn screen(view: View) -> String {
        let snapshot = crate::view::sample_snapshot();
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal
            .draw(|frame| render(frame, view, 0, &snapshot))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn each_view_shows_its_figures() {
        let locks = screen(View::Locks);
        assert!(locks.contains("main.hotMu"), "{locks}");
        assert!(locks.contains("2.00ms"), "{locks}");
        let maps = screen(View::Maps);
        assert!(maps.contains("main.cache"), "{maps}");
        assert!(maps.contains("75.0%  k1"), "{maps}");
        assert!(maps.contains("25.0%  other"), "{maps}");
        assert!(
            maps.contains("structure: 1000 entries (peak 1200) in 2000 slots"),
            "{maps}"
        );
        assert!(screen(View::Cas).contains("main.f+0x10"));
        assert!(screen(View::Heatmaps).contains("CAS failures by site"));
    }
}
