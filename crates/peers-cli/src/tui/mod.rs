//! `peers tui`: the human's live view of the peers network in a terminal: the peers, a live
//! feed of mail and topic posts, a message with its thread and delivery states, a composer,
//! a search of the history and a topic filter. It follows `GET /v1/events` (through
//! [`peers_core::client::EventFollower`]); while the broker does not answer it says so in a
//! banner and reconnects by itself.
//!
//! The state and every change to it live in [`app`] (pure, tested on its own); each pane
//! draws itself from that state in its own module; this one lays them out and runs the loop
//! that feeds keys and broker answers into the state.

mod app;
mod composer;
mod feed;
mod help;
mod message;
mod peers;
mod search;

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use crossterm::event::{Event as TermEvent, KeyEventKind};
use peers_core::BrokerClient;
use peers_core::client::{EventFollower, Followed};
use peers_core::wire::{Event, HistoryQuery, ListPeersQuery, MessageStatus, Scope};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use tokio::sync::mpsc;

use self::app::{App, Effect, Input, Link, Update, View};
use crate::context::Ctx;

#[derive(Args)]
pub struct TuiArgs {
    /// How many of the latest messages the feed loads when it (re)connects.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub backlog: u32,
}

/// How often the peers are listed again even without an event (their ages and waiting mail
/// move on).
const PEERS_EVERY: Duration = Duration::from_secs(5);

/// Mail events list the peers again (their waiting mail changed), at most this often.
const PEERS_AFTER_MAIL: Duration = Duration::from_secs(1);

pub fn run(a: TuiArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let url = ctx.url();
    ctx.rt.block_on(run_loop(client, url, a.backlog))
}

async fn run_loop(client: BrokerClient, url: String, backlog: u32) -> Result<()> {
    let (upd_tx, mut upd_rx) = mpsc::unbounded_channel::<Update>();
    let (key_tx, mut key_rx) = mpsc::unbounded_channel::<TermEvent>();
    // crossterm's reads block: a thread of their own.
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            if key_tx.send(ev).is_err() {
                return;
            }
        }
    });
    tokio::spawn(follow(client.clone(), upd_tx.clone(), backlog));
    let (c, tx) = (client.clone(), upd_tx.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PEERS_EVERY).await;
            load_peers(&c, &tx).await;
        }
    });
    let mut app = App::new(&url, peers_core::now_ms());
    let mut terminal = ratatui::init();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        if let Err(e) = terminal.draw(|f| draw(f, &app)) {
            break Err(e.into());
        }
        let effects = tokio::select! {
            ev = key_rx.recv() => match ev {
                Some(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => app.key(k),
                Some(_) => vec![],
                None => vec![Effect::Quit],
            },
            Some(u) = upd_rx.recv() => app.apply(u),
            _ = tick.tick() => app.apply(Update::Tick(peers_core::now_ms())),
        };
        if effects.contains(&Effect::Quit) {
            break Ok(());
        }
        for e in effects {
            tokio::spawn(perform(client.clone(), e, upd_tx.clone()));
        }
    };
    ratatui::restore();
    result
}

/// Carries out one effect, reporting back as an update.
async fn perform(client: BrokerClient, e: Effect, tx: mpsc::UnboundedSender<Update>) {
    let u = match e {
        Effect::Send(req) => match client.send(&req).await {
            Ok(s) => Update::Sent(s),
            Err(e) => Update::Failed(format!("not sent: {e}")),
        },
        Effect::Open(id) => match client.message_with_body(id).await {
            Ok(m) => match crate::show::thread_of(&client, m.message_id).await {
                Ok(thread) => Update::Opened {
                    message: Box::new(m),
                    thread,
                },
                Err(e) => Update::Failed(format!("cannot load the thread of #{id}: {e}")),
            },
            Err(e) => Update::Failed(format!("cannot load #{id}: {e}")),
        },
        Effect::Search(q) => match client.search(&q).await {
            Ok(r) => Update::Found {
                query: q.q,
                hits: r.hits,
            },
            Err(e) => Update::Failed(format!("search: {e}")),
        },
        Effect::Quit => return,
    };
    let _ = tx.send(u);
}

/// Follows the event stream for good, turning what it says into updates.
async fn follow(client: BrokerClient, tx: mpsc::UnboundedSender<Update>, backlog: u32) {
    let mut feed = EventFollower::new(client.clone());
    let mut peers_at = tokio::time::Instant::now();
    loop {
        let next = feed.next().await;
        if matches!(
            next,
            Followed::Event(Event::Message { .. } | Event::Delivered { .. })
        ) && peers_at.elapsed() >= PEERS_AFTER_MAIL
        {
            peers_at = tokio::time::Instant::now();
            load_peers(&client, &tx).await;
        }
        let sent = match next {
            Followed::Connected => {
                let _ = tx.send(Update::Link(Link::Live));
                load_peers(&client, &tx).await;
                load_log(&client, &tx, backlog).await;
                continue;
            }
            Followed::Down {
                reason, retry_in, ..
            } => tx.send(Update::Link(Link::Down {
                reason,
                retry_in_ms: retry_in.as_millis() as u64,
            })),
            Followed::Event(Event::Message { message }) => {
                let id = message.message_id;
                let _ = tx.send(Update::Messages(vec![message]));
                // The event leaves the body out: the feed shows its start.
                refresh(&client, &tx, &[id], true).await;
                continue;
            }
            Followed::Event(Event::Delivered {
                message_ids: Some(ids),
                ..
            }) => {
                refresh(&client, &tx, &ids, false).await;
                continue;
            }
            Followed::Event(Event::Delivered {
                message_ids: None, ..
            })
            | Followed::Event(Event::Resync { .. }) => {
                load_log(&client, &tx, backlog).await;
                continue;
            }
            Followed::Event(Event::Peers { .. } | Event::Topic { .. }) => {
                load_peers(&client, &tx).await;
                continue;
            }
            Followed::Event(Event::Notice { notice }) => tx.send(Update::Failed(format!(
                "notice ({}): {}",
                notice.kind,
                crate::terminal::safe_line(&notice.text)
            ))),
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn load_peers(client: &BrokerClient, tx: &mpsc::UnboundedSender<Update>) {
    let q = ListPeersQuery {
        scope: Scope::All,
        include_gone: true,
        ..Default::default()
    };
    if let Ok(list) = client.list_peers(&q).await {
        let _ = tx.send(Update::Peers(list.peers));
    }
}

async fn load_log(client: &BrokerClient, tx: &mpsc::UnboundedSender<Update>, backlog: u32) {
    let q = HistoryQuery {
        limit: Some(backlog),
        body: true,
        ..Default::default()
    };
    if let Ok(log) = client.messages(&q).await {
        let _ = tx.send(Update::Messages(log.messages));
    }
}

/// The current status of each message (with the body when `body`).
async fn refresh(
    client: &BrokerClient,
    tx: &mpsc::UnboundedSender<Update>,
    ids: &[i64],
    body: bool,
) {
    let mut out: Vec<MessageStatus> = Vec::with_capacity(ids.len());
    for &id in ids {
        let got = if body {
            client.message_with_body(id).await
        } else {
            client.message_status(id).await
        };
        if let Ok(m) = got {
            out.push(m);
        }
    }
    if !out.is_empty() {
        let _ = tx.send(Update::Messages(out));
    }
}

/// The whole screen: title, the banner while the broker is down, the panes, the key line;
/// the message view, help or composer over them.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let banner = !matches!(app.link, Link::Live);
    let filter = search::shown(app);
    let [title_area, banner_area, filter_area, main_area, keys_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner as u16),
        Constraint::Length(filter as u16),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" peers ", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!("· {} · ", app.url)),
            match app.link {
                Link::Live => Span::styled("live", Style::default().fg(Color::Green)),
                Link::Connecting => Span::styled("connecting…", Style::default().fg(Color::Yellow)),
                Link::Down { .. } => Span::styled("broker down", Style::default().fg(Color::Red)),
            },
        ])),
        title_area,
    );
    if banner {
        render_banner(f, banner_area, app);
    }
    if filter {
        search::render(f, filter_area, app);
    }
    match app.view {
        View::Message(id) => message::render(f, main_area, app, id),
        View::Results => search::render_results(f, main_area, app),
        _ => {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(28), Constraint::Percentage(72)])
                    .areas(main_area);
            peers::render(f, left, app);
            feed::render(f, right, app);
        }
    }
    if app.view == View::Help {
        help::render(f, main_area);
    }
    if app.input == Input::Compose {
        composer::render(f, main_area, &app.composer);
    }
    let keys = match &app.status {
        Some(s) => Line::styled(format!(" {s}"), Style::default().fg(Color::Yellow)),
        None => Line::styled(
            " ? help · q quit · Tab pane · Enter open · c compose · r reply · / search · t topic",
            Style::default().fg(Color::DarkGray),
        ),
    };
    f.render_widget(Paragraph::new(keys), keys_area);
}

fn render_banner(f: &mut Frame<'_>, area: Rect, app: &App) {
    let (text, bg) = match &app.link {
        Link::Down {
            reason,
            retry_in_ms,
        } => (
            format!(
                " the broker at {} does not answer ({}); reconnecting by itself (next try in {}) ",
                app.url,
                crate::terminal::safe_line(reason),
                peers_core::render::duration(*retry_in_ms as i64)
            ),
            Color::Red,
        ),
        _ => (format!(" connecting to {}… ", app.url), Color::Yellow),
    };
    f.render_widget(
        Paragraph::new(text).style(
            Style::default()
                .bg(bg)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
        ),
        area,
    );
}

#[cfg(test)]
mod tests;
