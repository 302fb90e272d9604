//! The live feed: mail and topic posts, newest first, as the event stream brings them.

use peers_core::wire::{MessageState, MessageStatus};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use super::app::{App, Pane};
use super::peers::{border, highlight};
use crate::terminal;

pub fn render(f: &mut Frame<'_>, area: Rect, app: &App) {
    let focused = app.focus == Pane::Feed;
    let rows = app.visible_feed();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" feed {} ", rows.len()))
        .border_style(border(focused));
    if rows.is_empty() {
        let text = if app.feed.is_empty() {
            "no mail yet: new messages and topic posts appear here as they are sent (c writes one)"
        } else {
            "nothing matches the filter (Esc clears it)"
        };
        f.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let width = area.width.saturating_sub(2) as usize;
    let items: Vec<ListItem<'_>> = rows.iter().map(|m| ListItem::new(row(m, width))).collect();
    let mut state = ListState::default().with_selected(Some(app.feed_sel));
    f.render_stateful_widget(
        List::new(items)
            .block(block)
            .highlight_style(highlight(focused)),
        area,
        &mut state,
    );
}

/// One feed row: time, id, who to whom, state, the start of the text.
fn row(m: &MessageStatus, width: usize) -> Line<'static> {
    let time = clock(m.sent_at_ms);
    let (state, color) = state_label(m);
    let head = format!(
        "{time} #{:<4} {} → {} ",
        m.message_id,
        terminal::safe_line(&m.from),
        terminal::safe_line(&m.to)
    );
    let used = head.chars().count() + state.chars().count() + 2;
    let text = m
        .body
        .as_deref()
        .map(terminal::safe_line)
        .unwrap_or_default();
    let room = width.saturating_sub(used);
    let text: String = if text.chars().count() > room {
        let mut t: String = text.chars().take(room.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        text
    };
    Line::from(vec![
        Span::raw(head),
        Span::styled(state, Style::default().fg(color)),
        Span::raw("  "),
        Span::styled(text, Style::default().fg(Color::Gray)),
    ])
}

/// `HH:MM:SS` (UTC) of a time.
pub fn clock(ms: i64) -> String {
    let t = peers_core::format_ms(ms);
    t.get(11..19).unwrap_or(&t).to_string()
}

/// The state of a row, short: `queued`, `delivered`, `2/3 read` for a post.
fn state_label(m: &MessageStatus) -> (String, Color) {
    let color = match m.status {
        MessageState::Delivered => Color::Green,
        MessageState::Expired => Color::Red,
        _ => Color::Yellow,
    };
    if m.channel.is_some() {
        let (done, of) = m.delivered_of();
        return (format!("{done}/{of} delivered"), color);
    }
    let s = match m.status {
        MessageState::Queued if !m.recipient_alive => "queued (ended)".to_string(),
        s => s.as_str().to_string(),
    };
    (s, color)
}
