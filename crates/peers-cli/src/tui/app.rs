//! The state of `peers tui` and every change to it: keys pressed, answers and events from
//! the broker. Pure logic (no terminal, no network), so it is tested on its own; what the
//! state asks the outside world to do comes back as [`Effect`]s.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use peers_core::wire::{
    MessageStatus, PeerInfo, SearchHit, SearchQuery, SendRequest, SendResponse,
};

use super::composer::Composer;
use super::search::{Found, LineInput};

/// At most this many messages are kept in the feed (the oldest go first).
pub const FEED_MAX: usize = 2000;

/// The two panes of the main screen; Tab moves between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Peers,
    Feed,
}

/// What covers the main screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Main,
    /// One message with its thread (Enter on the feed or on a search hit).
    Message(i64),
    /// The hits of a history search (`/`, Enter).
    Results,
    Help,
}

/// Which one-line or composer input has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    None,
    Compose,
    Search,
    Topic,
}

/// The link to the broker's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    /// The broker does not answer; the stream reconnects by itself.
    Down {
        reason: String,
        retry_in_ms: u64,
    },
}

/// What the outside world told the app.
#[derive(Debug, Clone)]
pub enum Update {
    Link(Link),
    Peers(Vec<PeerInfo>),
    /// Messages new or changed (the log loaded on connect, or one refreshed after an event).
    Messages(Vec<MessageStatus>),
    /// The message view's content: the message (with its body) and its thread.
    Opened {
        message: Box<MessageStatus>,
        thread: Vec<(usize, MessageStatus)>,
    },
    Sent(SendResponse),
    /// A history search's hits, best first.
    Found {
        query: String,
        hits: Vec<SearchHit>,
    },
    /// A request failed: shown on the status line.
    Failed(String),
    /// The clock moved (ages re-render).
    Tick(i64),
}

/// What the app asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send(SendRequest),
    /// Fetch the message (with body) and its thread for the message view.
    Open(i64),
    /// Search the history (`GET /v1/search`).
    Search(SearchQuery),
    Quit,
}

/// The message view's loaded content.
#[derive(Debug, Clone)]
pub struct Opened {
    pub message: MessageStatus,
    pub thread: Vec<(usize, MessageStatus)>,
}

pub struct App {
    /// The broker URL, for the title and the banner.
    pub url: String,
    pub now_ms: i64,
    pub link: Link,
    pub peers: Vec<PeerInfo>,
    pub peer_sel: usize,
    /// Every loaded message by id.
    pub feed: BTreeMap<i64, MessageStatus>,
    /// The selected row of the (filtered) feed, 0 = newest.
    pub feed_sel: usize,
    pub focus: Pane,
    pub view: View,
    pub input: Input,
    pub composer: Composer,
    /// The history search being typed (`/`).
    pub search: LineInput,
    /// The last search's hits, while they are shown (or a hit is open).
    pub found: Option<Found>,
    /// Only posts to this topic (`t`; the text without `#`).
    pub topic: LineInput,
    pub opened: Option<Opened>,
    /// The last outcome worth a line (sent, failed).
    pub status: Option<String>,
}

impl App {
    pub fn new(url: &str, now_ms: i64) -> App {
        App {
            url: url.to_string(),
            now_ms,
            link: Link::Connecting,
            peers: Vec::new(),
            peer_sel: 0,
            feed: BTreeMap::new(),
            feed_sel: 0,
            focus: Pane::Feed,
            view: View::Main,
            input: Input::None,
            composer: Composer::default(),
            search: LineInput::default(),
            found: None,
            topic: LineInput::default(),
            opened: None,
            status: None,
        }
    }

    /// The topic filter without its `#` ("" when off).
    pub fn topic_filter(&self) -> String {
        self.topic
            .text
            .trim()
            .trim_start_matches('#')
            .to_lowercase()
    }

    /// The feed as shown: newest first, filtered by topic.
    pub fn visible_feed(&self) -> Vec<&MessageStatus> {
        let topic = self.topic_filter();
        self.feed
            .values()
            .rev()
            .filter(|m| {
                topic.is_empty()
                    || m.channel
                        .as_deref()
                        .is_some_and(|c| c.trim_start_matches('#').eq_ignore_ascii_case(&topic))
            })
            .collect()
    }

    /// The message under the feed's cursor.
    pub fn selected_message(&self) -> Option<&MessageStatus> {
        self.visible_feed().get(self.feed_sel).copied()
    }

    pub fn selected_peer(&self) -> Option<&PeerInfo> {
        self.peers.get(self.peer_sel)
    }

    /// Applies an update; a reply to the open thread asks for the thread again.
    pub fn apply(&mut self, u: Update) -> Vec<Effect> {
        let mut effects = Vec::new();
        match u {
            Update::Link(l) => self.link = l,
            Update::Peers(mut p) => {
                // Running sessions first, then by name; keep the cursor on the same peer.
                p.sort_by(|a, b| (!a.alive, &a.address).cmp(&(!b.alive, &b.address)));
                let keep = self.selected_peer().map(|s| s.peer_id.clone());
                self.peers = p;
                self.peer_sel = keep
                    .and_then(|id| self.peers.iter().position(|p| p.peer_id == id))
                    .unwrap_or(0)
                    .min(self.peers.len().saturating_sub(1));
            }
            Update::Messages(list) => {
                // A new message arriving above the cursor would move what it points at.
                let keep = self.selected_message().map(|m| m.message_id);
                for m in list {
                    let slot = self.feed.entry(m.message_id).or_insert_with(|| m.clone());
                    let known_body = slot.body.take();
                    *slot = m;
                    // A refresh without the body keeps the one already known.
                    if slot.body.is_none() {
                        slot.body = known_body;
                    }
                    if let Some(o) = self.opened.as_mut()
                        && refresh_opened(o, slot)
                    {
                        effects.push(Effect::Open(o.message.message_id));
                    }
                }
                while self.feed.len() > FEED_MAX {
                    self.feed.pop_first();
                }
                if let Some(id) = keep
                    && self.feed_sel > 0
                    && let Some(i) = self.visible_feed().iter().position(|m| m.message_id == id)
                {
                    self.feed_sel = i;
                }
                self.clamp_feed();
            }
            Update::Opened { message, thread } => {
                if self.view == View::Message(message.message_id) {
                    self.feed
                        .entry(message.message_id)
                        .or_insert_with(|| (*message).clone());
                    self.opened = Some(Opened {
                        message: *message,
                        thread,
                    });
                }
            }
            Update::Sent(s) => {
                self.status = Some(format!(
                    "sent #{} to {} ({})",
                    s.message_id,
                    s.to,
                    s.status.as_str()
                ));
                self.composer = Composer::default();
                if self.input == Input::Compose {
                    self.input = Input::None;
                }
            }
            Update::Found { query, hits } => {
                self.status = Some(match hits.len() {
                    0 => format!("nothing found for {query:?}"),
                    n => format!("{n} found for {query:?}, best first"),
                });
                self.found = Some(Found {
                    query,
                    hits,
                    sel: 0,
                });
                if self.view != View::Help {
                    self.view = View::Results;
                }
            }
            Update::Failed(e) => {
                if self.input == Input::Compose {
                    self.composer.error = Some(e);
                } else {
                    self.status = Some(e);
                }
            }
            Update::Tick(now) => self.now_ms = now,
        }
        effects
    }

    fn clamp_feed(&mut self) {
        let n = self.visible_feed().len();
        self.feed_sel = self.feed_sel.min(n.saturating_sub(1));
    }

    /// One key press.
    pub fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            return vec![Effect::Quit];
        }
        match self.input {
            Input::Compose => return self.compose_key(k),
            Input::Search | Input::Topic => return self.filter_key(k),
            Input::None => {}
        }
        match (&self.view, k.code) {
            (View::Help, KeyCode::Char('q')) => return vec![Effect::Quit],
            (View::Help, _) => {
                self.view = View::Main;
                return vec![];
            }
            (_, KeyCode::Char('q')) => return vec![Effect::Quit],
            (_, KeyCode::Char('?')) => self.view = View::Help,
            (_, KeyCode::Char('c')) => self.open_composer(None),
            (View::Message(id), KeyCode::Char('r')) => {
                let id = *id;
                self.open_composer(Some(id));
            }
            (View::Main, KeyCode::Char('r')) if self.focus == Pane::Feed => {
                if let Some(id) = self.selected_message().map(|m| m.message_id) {
                    self.open_composer(Some(id));
                }
            }
            (View::Message(_), KeyCode::Esc) => {
                // Back where it was opened from: the search hits, else the feed.
                self.view = if self.found.is_some() {
                    View::Results
                } else {
                    View::Main
                };
                self.opened = None;
            }
            (View::Message(_), _) => {}
            (View::Results, KeyCode::Esc) => {
                self.view = View::Main;
                self.found = None;
                self.status = None;
            }
            (View::Results, KeyCode::Char('/')) => self.input = Input::Search,
            (View::Results, KeyCode::Up | KeyCode::Char('k')) => self.move_hit(-1),
            (View::Results, KeyCode::Down | KeyCode::Char('j')) => self.move_hit(1),
            (View::Results, KeyCode::Enter) => {
                if let Some(id) = self.found.as_ref().and_then(Found::selected) {
                    self.view = View::Message(id);
                    self.opened = None;
                    return vec![Effect::Open(id)];
                }
            }
            (View::Results, _) => {}
            (View::Main, KeyCode::Esc) => {
                self.topic.clear();
                self.clamp_feed();
            }
            (View::Main, KeyCode::Tab | KeyCode::BackTab) => {
                self.focus = match self.focus {
                    Pane::Peers => Pane::Feed,
                    Pane::Feed => Pane::Peers,
                }
            }
            (View::Main, KeyCode::Char('/')) => self.input = Input::Search,
            (View::Main, KeyCode::Char('t')) => self.input = Input::Topic,
            (View::Main, KeyCode::Up | KeyCode::Char('k')) => self.move_cursor(-1),
            (View::Main, KeyCode::Down | KeyCode::Char('j')) => self.move_cursor(1),
            (View::Main, KeyCode::PageUp) => self.move_cursor(-10),
            (View::Main, KeyCode::PageDown) => self.move_cursor(10),
            (View::Main, KeyCode::Home | KeyCode::Char('g')) => self.move_cursor(i64::MIN / 2),
            (View::Main, KeyCode::End | KeyCode::Char('G')) => self.move_cursor(i64::MAX / 2),
            (View::Main, KeyCode::Enter) => match self.focus {
                Pane::Feed => {
                    if let Some(id) = self.selected_message().map(|m| m.message_id) {
                        self.view = View::Message(id);
                        self.opened = None;
                        return vec![Effect::Open(id)];
                    }
                }
                // Enter on a peer writes to it.
                Pane::Peers => self.open_composer(None),
            },
            _ => {}
        }
        vec![]
    }

    fn move_cursor(&mut self, by: i64) {
        let (sel, n) = match self.focus {
            Pane::Peers => (&mut self.peer_sel, self.peers.len()),
            Pane::Feed => {
                let n = self.visible_feed().len();
                (&mut self.feed_sel, n)
            }
        };
        let max = n.saturating_sub(1) as i64;
        *sel = (*sel as i64).saturating_add(by).clamp(0, max) as usize;
    }

    /// Opens the composer: a reply to `reply_to`, else to the selected peer when the peers
    /// pane has the focus, else with the recipient typed in.
    fn open_composer(&mut self, reply_to: Option<i64>) {
        let to = match reply_to {
            Some(id) => self.feed.get(&id).map(reply_address).unwrap_or_default(),
            None if self.focus == Pane::Peers && self.view == View::Main => self
                .selected_peer()
                .map(|p| p.address.clone())
                .unwrap_or_default(),
            None => String::new(),
        };
        self.composer = Composer::new(to, reply_to);
        self.input = Input::Compose;
    }

    fn compose_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => {
                self.input = Input::None;
                vec![]
            }
            _ => match self.composer.key(k) {
                Some(req) => vec![Effect::Send(req)],
                None => vec![],
            },
        }
    }

    fn filter_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if self.input == Input::Search {
            return self.search_key(k);
        }
        match k.code {
            KeyCode::Enter => self.input = Input::None,
            KeyCode::Esc => {
                self.topic.clear();
                self.input = Input::None;
            }
            _ => self.topic.key(k),
        }
        self.feed_sel = 0;
        vec![]
    }

    /// The search prompt: Enter searches the history (within the topic filter when one is
    /// set), Esc leaves it.
    fn search_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => {
                self.search.clear();
                self.input = Input::None;
            }
            KeyCode::Enter => {
                let q = self.search.text.trim().to_string();
                if q.is_empty() {
                    return vec![];
                }
                self.input = Input::None;
                self.search.clear();
                self.status = Some(format!("searching for {q:?}…"));
                let topic = self.topic_filter();
                return vec![Effect::Search(SearchQuery {
                    q,
                    topic: (!topic.is_empty()).then_some(topic),
                    limit: Some(100),
                    ..Default::default()
                })];
            }
            _ => self.search.key(k),
        }
        vec![]
    }

    fn move_hit(&mut self, by: i64) {
        if let Some(f) = self.found.as_mut() {
            let max = f.hits.len().saturating_sub(1) as i64;
            f.sel = (f.sel as i64 + by).clamp(0, max) as usize;
        }
    }
}

/// Whom a reply to `m` goes to: the topic of a post, the sender of direct mail (the human's
/// own mail: its recipient).
fn reply_address(m: &MessageStatus) -> String {
    if let Some(c) = &m.channel
        && c.starts_with('#')
    {
        return c.clone();
    }
    if m.from_kind == peers_core::wire::SenderKind::Human {
        m.to.clone()
    } else {
        m.from.clone()
    }
}

/// Carries a refreshed message into the open view (its state, or a reply's); true when `m`
/// is a new reply within the thread (the view should load the thread again).
fn refresh_opened(o: &mut Opened, m: &MessageStatus) -> bool {
    let keep_body = |old: &MessageStatus| {
        let mut new = m.clone();
        if new.body.is_none() {
            new.body = old.body.clone();
        }
        new
    };
    if o.message.message_id == m.message_id {
        o.message = keep_body(&o.message);
    }
    let mut known = o.message.message_id == m.message_id;
    for (_, t) in o.thread.iter_mut() {
        if t.message_id == m.message_id {
            *t = keep_body(t);
            known = true;
        }
    }
    let answers_thread = m.reply_to.is_some_and(|r| {
        r == o.message.message_id || o.thread.iter().any(|(_, t)| t.message_id == r)
    });
    !known && answers_thread
}
