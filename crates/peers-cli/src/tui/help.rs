//! `?`: the keys.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// The keys, as the help screen lists them.
pub const KEYS: &[(&str, &str)] = &[
    ("?", "this help (any key closes it)"),
    ("q, Ctrl-C", "quit"),
    ("Tab", "switch between the peers and the feed"),
    ("↑ ↓ j k, PgUp PgDn, g G", "move"),
    (
        "Enter",
        "feed: open the message and its thread; peers: write to the peer",
    ),
    (
        "c",
        "compose (to a peer, name@host, #topic, or * for every live peer)",
    ),
    ("r", "reply to the selected or open message"),
    (
        "/",
        "search the history (words, \"a phrase\", OR, NOT, prefix*); Enter opens a hit",
    ),
    ("t", "topic filter: only posts to #name"),
    (
        "Esc",
        "back: close the message, the composer, or clear a filter",
    ),
];

pub fn render(f: &mut Frame<'_>, area: Rect) {
    let w = 80.min(area.width);
    let h = (KEYS.len() as u16 + 4).min(area.height);
    let [row] = Layout::vertical([Constraint::Length(h)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(w)])
        .flex(Flex::Center)
        .areas(row);
    f.render_widget(Clear, popup);
    let mut lines = vec![Line::from("")];
    for (k, what) in KEYS {
        lines.push(Line::from(format!(" {k:<24} {what}")));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys ")
                .border_style(Style::default().fg(Color::Cyan)),
        ),
        popup,
    );
}
