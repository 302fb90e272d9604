//! The peers pane: every session the broker knows, running ones first, with the mail
//! waiting for each; the selected one's details below the list.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};

use super::app::{App, Pane};
use crate::terminal;

pub fn render(f: &mut Frame<'_>, area: Rect, app: &App) {
    let focused = app.focus == Pane::Peers;
    let live = app.peers.iter().filter(|p| p.alive).count();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" peers {live} live "))
        .border_style(border(focused));
    let [list_area, detail_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(area);
    if app.peers.is_empty() {
        f.render_widget(
            Paragraph::new("no sessions yet (they appear once Claude Code starts with peers)")
                .wrap(Wrap { trim: true })
                .block(block),
            list_area,
        );
    } else {
        let items: Vec<ListItem<'_>> = app
            .peers
            .iter()
            .map(|p| {
                let (mark, style) = if p.alive {
                    ("●", Style::default().fg(Color::Green))
                } else {
                    ("○", Style::default().fg(Color::DarkGray))
                };
                let mut spans = vec![
                    Span::styled(format!("{mark} "), style),
                    Span::raw(terminal::safe_line(&p.address)),
                ];
                if p.queued > 0 {
                    spans.push(Span::styled(
                        format!(" ✉{}", p.queued),
                        Style::default().fg(Color::Yellow),
                    ));
                }
                ListItem::new(Line::from(spans))
            })
            .collect();
        let mut state = ListState::default().with_selected(Some(app.peer_sel));
        f.render_stateful_widget(
            List::new(items)
                .block(block)
                .highlight_style(highlight(focused)),
            list_area,
            &mut state,
        );
    }
    let detail = match app.selected_peer() {
        Some(p) => {
            let mut where_ = terminal::safe_line(&p.cwd);
            if let Some(b) = &p.git_branch {
                where_.push_str(&format!(" ({})", terminal::safe_line(b)));
            }
            let mut lines = vec![
                Line::from(format!(
                    "{} · seen {}",
                    if p.alive { "running" } else { "session ended" },
                    peers_core::render::ago(p.last_seen_ms, app.now_ms)
                )),
                Line::from(where_),
            ];
            if let Some(s) = p.summary.as_deref().filter(|s| !s.trim().is_empty()) {
                lines.push(Line::styled(
                    terminal::safe_line(s),
                    Style::default().fg(Color::Gray),
                ));
            }
            Paragraph::new(lines).wrap(Wrap { trim: true })
        }
        None => Paragraph::new(""),
    };
    f.render_widget(
        detail.block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(border(false)),
        ),
        detail_area,
    );
}

/// The border of a pane, bright when it has the focus.
pub fn border(focused: bool) -> Style {
    if focused {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    }
}

/// The selected row: reversed when its pane has the focus, underlined otherwise.
pub fn highlight(focused: bool) -> Style {
    if focused {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        Style::default().add_modifier(Modifier::UNDERLINED)
    }
}
