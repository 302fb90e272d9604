//! The one-line inputs of the main screen: the search box (`/`, a filter of the loaded
//! feed) and the topic filter (`t`). Issue #14's full-text search of the history is not
//! built yet; until it is, `/` filters what the feed has loaded (sender, recipient, topic,
//! body text), and says so.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Input};

/// A single line of text being typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineInput {
    pub text: String,
}

impl LineInput {
    /// Edits: characters, Backspace, Ctrl-U (clear).
    pub fn key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Backspace => {
                self.text.pop();
            }
            KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => self.clear(),
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => self.text.push(c),
            _ => {}
        }
    }

    pub fn clear(&mut self) {
        self.text.clear();
    }
}

/// The filter line above the feed: what is typed or set, or nothing when no filter is on.
pub fn render(f: &mut Frame<'_>, area: Rect, app: &App) {
    let typing = |on: bool| {
        if on {
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Cyan)
        }
    };
    let mut spans = Vec::new();
    if app.input == Input::Topic || !app.topic.text.is_empty() {
        spans.push(Span::styled("topic #", typing(app.input == Input::Topic)));
        spans.push(Span::raw(app.topic.text.clone()));
        if app.input == Input::Topic {
            spans.push(Span::styled("▏", typing(true)));
        }
        spans.push(Span::raw("   "));
    }
    if app.input == Input::Search || !app.search.text.is_empty() {
        spans.push(Span::styled("search ", typing(app.input == Input::Search)));
        spans.push(Span::raw(app.search.text.clone()));
        if app.input == Input::Search {
            spans.push(Span::styled("▏", typing(true)));
        }
        spans.push(Span::styled(
            "  (filters the loaded feed; full search comes with history)",
            Style::default().fg(Color::DarkGray),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Whether the filter line is shown.
pub fn shown(app: &App) -> bool {
    matches!(app.input, Input::Search | Input::Topic)
        || !app.search.text.is_empty()
        || !app.topic.text.is_empty()
}
