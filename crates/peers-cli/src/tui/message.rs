//! The message view (Enter on the feed): who, to whom, each reader's delivery state, the
//! text, and the thread it belongs to. Esc goes back, `r` replies.

use peers_core::wire::{MessageStatus, SenderKind};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::app::App;
use super::feed::clock;
use crate::log::state_text;
use crate::terminal;

pub fn render(f: &mut Frame<'_>, area: Rect, app: &App, id: i64) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" message #{id} "))
        .title_bottom(" Esc back · r reply · c compose ")
        .border_style(Style::default().fg(Color::Cyan));
    let Some(o) = &app.opened else {
        f.render_widget(Paragraph::new("loading…").block(block), area);
        return;
    };
    let m = &o.message;
    let key = Style::default().fg(Color::Cyan);
    let field = |k: &str, v: String| {
        Line::from(vec![
            ratatui::text::Span::styled(format!("{k:<10} "), key),
            ratatui::text::Span::raw(v),
        ])
    };
    let mut lines = vec![
        field(
            "from",
            format!(
                "{}{}",
                terminal::safe_line(&m.from),
                if m.from_kind == SenderKind::Human {
                    " (you)"
                } else {
                    ""
                }
            ),
        ),
        field("to", terminal::safe_line(&m.to)),
        field(
            "sent",
            format!(
                "{} ({})",
                peers_core::format_ms(m.sent_at_ms),
                peers_core::render::ago(m.sent_at_ms, app.now_ms)
            ),
        ),
        field("status", state_text(m)),
    ];
    if let Some(r) = m.reply_to {
        lines.push(field("reply to", format!("#{r}")));
    }
    if !m.readers.is_empty() && (m.channel.is_some() || m.readers.len() > 1) {
        let (done, of) = m.delivered_of();
        lines.push(field("readers", format!("{done} of {of} delivered")));
        for r in &m.readers {
            let how = match (&r.delivered_via, r.delivered_at_ms) {
                (Some(v), Some(at)) => format!(
                    " via {v} after {}",
                    peers_core::render::duration(at - m.sent_at_ms)
                ),
                _ => String::new(),
            };
            lines.push(Line::from(format!(
                "           {} {}{}{}",
                terminal::safe_line(&r.to),
                r.status.as_str(),
                how,
                if r.alive { "" } else { " (session ended)" }
            )));
        }
    }
    lines.push(Line::from(""));
    for l in terminal::safe(m.body.as_deref().unwrap_or("")).split('\n') {
        lines.push(Line::from(format!("  {l}")));
    }
    if o.thread.len() > 1 {
        lines.push(Line::from(""));
        lines.push(Line::styled(
            format!("thread ({} messages, oldest first)", o.thread.len()),
            key,
        ));
        for (depth, t) in &o.thread {
            lines.push(thread_line(*depth, t, t.message_id == m.message_id));
        }
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

fn thread_line(depth: usize, t: &MessageStatus, this: bool) -> Line<'static> {
    let text = t
        .body
        .as_deref()
        .map(terminal::safe_line)
        .unwrap_or_default();
    let line = format!(
        "{} {}#{} {} {} → {}  {}  {}",
        if this { "▶" } else { " " },
        "  ".repeat(depth),
        t.message_id,
        clock(t.sent_at_ms),
        terminal::safe_line(&t.from),
        terminal::safe_line(&t.to),
        state_text(t),
        text
    );
    if this {
        Line::styled(line, Style::default().add_modifier(Modifier::BOLD))
    } else {
        Line::from(line)
    }
}
