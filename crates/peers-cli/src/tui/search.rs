//! The one-line inputs of the main screen — the search prompt (`/`) and the topic filter
//! (`t`) — and the search hits. Enter in the prompt searches the whole history through
//! `GET /v1/search` (FTS5 syntax; within the topic filter when one is set); the hits show
//! each match's snippet; Enter opens one in the message view.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use peers_core::wire::SearchHit;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use super::app::{App, Input};
use super::feed::clock;
use super::peers::highlight;
use crate::terminal;

/// A search's hits, best first, and the one under the cursor.
#[derive(Debug, Clone)]
pub struct Found {
    pub query: String,
    pub hits: Vec<SearchHit>,
    pub sel: usize,
}

impl Found {
    /// The message id of the hit under the cursor.
    pub fn selected(&self) -> Option<i64> {
        self.hits.get(self.sel).map(|h| h.message_id)
    }
}

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
            "  (Enter searches the history: words, \"a phrase\", OR, NOT, prefix* · Esc cancels)",
            Style::default().fg(Color::DarkGray),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Whether the filter line is shown.
pub fn shown(app: &App) -> bool {
    matches!(app.input, Input::Search | Input::Topic) || !app.topic.text.is_empty()
}

/// The search hits: one line of who, to whom and when, one of the snippet with the matched
/// terms in bold.
pub fn render_results(f: &mut Frame<'_>, area: Rect, app: &App) {
    let Some(found) = &app.found else {
        return;
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(
            " search {} · {} found ",
            terminal::safe_line(&found.query),
            found.hits.len()
        ))
        .title_bottom(" Enter open · / search again · Esc back ")
        .border_style(Style::default().fg(Color::Cyan));
    if found.hits.is_empty() {
        f.render_widget(
            Paragraph::new("nothing matches (Esc goes back, / searches again)").block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem<'_>> = found
        .hits
        .iter()
        .map(|h| {
            ListItem::new(vec![
                Line::from(format!(
                    "{} #{:<4} {} → {}",
                    clock(h.sent_at_ms),
                    h.message_id,
                    terminal::safe_line(&h.from),
                    terminal::safe_line(&h.to)
                )),
                snippet(&h.snippet),
            ])
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(found.sel));
    f.render_stateful_widget(
        List::new(items)
            .block(block)
            .highlight_style(highlight(true)),
        area,
        &mut state,
    );
}

/// A snippet as a line: the terms the broker marked between `**` in bold.
fn snippet(s: &str) -> Line<'static> {
    let mut spans = vec![Span::raw("    ")];
    for (i, part) in terminal::safe_line(s).split("**").enumerate() {
        if part.is_empty() {
            continue;
        }
        spans.push(if i % 2 == 1 {
            Span::styled(
                part.to_string(),
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            )
        } else {
            Span::styled(part.to_string(), Style::default().fg(Color::Gray))
        });
    }
    Line::from(spans)
}
