//! The composer (`c`, or `r` to reply): a recipient (a peer, `#topic` or `*` for every live
//! peer) and the text, sent as the human over `POST /v1/messages`.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use peers_core::address::Recipient;
use peers_core::wire::SendRequest;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::terminal;

/// Which field of the composer has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Field {
    #[default]
    To,
    Body,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Composer {
    pub to: String,
    pub body: String,
    pub field: Field,
    pub reply_to: Option<i64>,
    /// Why the last try did not send (bad recipient, empty text, the broker's answer).
    pub error: Option<String>,
}

impl Composer {
    /// A composer to `to` (may be empty: typed in), answering `reply_to`. The cursor starts
    /// in the text when the recipient is known.
    pub fn new(to: String, reply_to: Option<i64>) -> Composer {
        let field = if to.is_empty() {
            Field::To
        } else {
            Field::Body
        };
        Composer {
            to,
            field,
            reply_to,
            ..Default::default()
        }
    }

    /// One key: Tab switches fields, Enter in the recipient moves to the text, Enter in the
    /// text sends (Alt-Enter starts a new line). Returns the request when it is ready to go.
    pub fn key(&mut self, k: KeyEvent) -> Option<SendRequest> {
        let field = match self.field {
            Field::To => &mut self.to,
            Field::Body => &mut self.body,
        };
        match k.code {
            KeyCode::Tab | KeyCode::BackTab => {
                self.field = match self.field {
                    Field::To => Field::Body,
                    Field::Body => Field::To,
                }
            }
            KeyCode::Enter if self.field == Field::To => self.field = Field::Body,
            KeyCode::Enter if k.modifiers.contains(KeyModifiers::ALT) => field.push('\n'),
            KeyCode::Enter => return self.ready(),
            KeyCode::Backspace => {
                field.pop();
            }
            KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => field.clear(),
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => field.push(c),
            _ => {}
        }
        None
    }

    /// The request, or `None` with [`Composer::error`] saying what to fix.
    fn ready(&mut self) -> Option<SendRequest> {
        if let Err(e) = Recipient::parse(&self.to) {
            self.error = Some(e);
            self.field = Field::To;
            return None;
        }
        if self.body.trim().is_empty() {
            self.error = Some("the message is empty: write the text to send".into());
            return None;
        }
        self.error = None;
        Some(SendRequest {
            tags: vec![],
            to: self.to.trim().to_string(),
            message: self.body.clone(),
            reply_to: self.reply_to,
            scope: None,
        })
    }
}

/// The composer, over the bottom of `area`.
pub fn render(f: &mut Frame<'_>, area: Rect, c: &Composer) {
    let h = (c.body.lines().count() as u16 + 6).clamp(7, area.height.max(7));
    let [_, box_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(h)]).areas(area);
    f.render_widget(Clear, box_area);
    let title = match c.reply_to {
        Some(id) => format!(" reply to #{id} "),
        None => " new message ".to_string(),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .title_bottom(" Enter send · Alt-Enter new line · Tab field · Esc cancel ")
        .border_style(Style::default().fg(Color::Yellow));
    let inner = block.inner(box_area);
    f.render_widget(block, box_area);
    let active = Style::default()
        .fg(Color::Yellow)
        .add_modifier(Modifier::BOLD);
    let label = |field: Field, text: &'static str| {
        Span::styled(
            text,
            if c.field == field {
                active
            } else {
                Style::default().fg(Color::Cyan)
            },
        )
    };
    let cursor = |field: Field| {
        if c.field == field { "▏" } else { "" }
    };
    let mut lines = vec![Line::from(vec![
        label(Field::To, "to:   "),
        Span::raw(terminal::safe_line(&c.to)),
        Span::styled(cursor(Field::To), active),
        Span::styled(
            "   (a peer, name@host, #topic or * for everyone)",
            Style::default().fg(Color::DarkGray),
        ),
    ])];
    let mut body: Vec<String> = terminal::safe(&c.body)
        .split('\n')
        .map(str::to_string)
        .collect();
    if let Some(last) = body.last_mut() {
        last.push_str(cursor(Field::Body));
    }
    for (i, l) in body.into_iter().enumerate() {
        lines.push(Line::from(vec![
            if i == 0 {
                label(Field::Body, "text: ")
            } else {
                Span::raw("      ")
            },
            Span::raw(l),
        ]));
    }
    if let Some(e) = &c.error {
        lines.push(Line::styled(
            terminal::safe_line(e),
            Style::default().fg(Color::Red),
        ));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
