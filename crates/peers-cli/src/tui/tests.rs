//! The TUI's state changes and frames, without a terminal: keys and updates go into [`App`],
//! frames are drawn on ratatui's `TestBackend` and compared as text.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use expect_test::{Expect, expect};
use peers_core::wire::{
    MessageState, MessageStatus, PeerInfo, ReaderStatus, SearchHit, SearchQuery, SendRequest,
    SendResponse, SenderKind,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, Effect, Input, Link, Pane, Update, View};
use super::draw;

/// 2026-11-21T13:35:00Z.
const NOW: i64 = 1_795_268_100_000;

fn peer(name: &str, alive: bool, queued: u64) -> PeerInfo {
    PeerInfo {
        peer_id: format!("id-{name}"),
        name: name.into(),
        host: "box".into(),
        address: format!("{name}@box"),
        machine_id: "m".into(),
        claude_pid: 1,
        cwd: format!("/src/{name}"),
        git_root: None,
        git_branch: Some("main".into()),
        tty: None,
        summary: Some(format!("{name} is busy")),
        registered_ms: NOW - 600_000,
        last_seen_ms: NOW - 5_000,
        alive,
        queued,
        agent: Default::default(),
    }
}

fn msg(id: i64, from: &str, to: &str, status: MessageState, body: &str) -> MessageStatus {
    MessageStatus {
        tags: vec![],
        project: None,
        message_id: id,
        from: from.into(),
        from_kind: if from.starts_with("you@") {
            SenderKind::Human
        } else {
            SenderKind::Peer
        },
        to: to.into(),
        to_peer_id: format!("id-{to}"),
        status,
        sent_at_ms: NOW - 60_000 + id * 1000,
        delivered_at_ms: (status == MessageState::Delivered)
            .then_some(NOW - 60_000 + id * 1000 + 1200),
        delivered_via: (status == MessageState::Delivered).then(|| "Stop".into()),
        expires_at_ms: NOW + 86_400_000,
        reply_to: None,
        replies: vec![],
        recipient_alive: true,
        recipient_can_wake: false,
        bytes: body.len() as u64,
        body: Some(body.into()),
        channel: None,
        readers: vec![],
    }
}

fn post(id: i64, from: &str, topic: &str, readers: &[(&str, MessageState)]) -> MessageStatus {
    let mut m = msg(
        id,
        from,
        &format!("#{topic}"),
        MessageState::Queued,
        "deploy done",
    );
    m.channel = Some(format!("#{topic}"));
    m.to_peer_id = String::new();
    m.readers = readers
        .iter()
        .map(|(to, st)| ReaderStatus {
            peer_id: format!("id-{to}"),
            to: format!("{to}@box"),
            status: *st,
            delivered_at_ms: None,
            delivered_via: None,
            alive: true,
            wake: false,
            can_wake: false,
        })
        .collect();
    m
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn typed(app: &mut App, text: &str) -> Vec<Effect> {
    text.chars()
        .flat_map(|c| app.key(key(KeyCode::Char(c))))
        .collect()
}

fn app() -> App {
    let mut a = App::new("http://127.0.0.1:7900", NOW);
    a.apply(Update::Link(Link::Live));
    a.apply(Update::Peers(vec![
        peer("web", true, 1),
        peer("old", false, 0),
        peer("api", true, 0),
    ]));
    a.apply(Update::Messages(vec![
        msg(
            1,
            "api@box",
            "web@box",
            MessageState::Delivered,
            "the schema changed",
        ),
        msg(
            2,
            "you@box",
            "web@box",
            MessageState::Queued,
            "please run the e2e tests",
        ),
    ]));
    a
}

/// The frame as text, trailing spaces cut.
fn frame(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn check(app: &App, want: Expect) {
    want.assert_eq(&frame(app, 100, 16));
}

#[test]
fn the_main_screen_shows_peers_running_first_and_the_feed_newest_first() {
    check(
        &app(),
        expect![[r#"
             peers · http://127.0.0.1:7900 · live
            ┌ peers 2 live ────────────┐┌ feed 2 ──────────────────────────────────────────────────────────────┐
            │● api@box                 ││13:34:02 #2    you@box → web@box queued  please run the e2e tests     │
            │● web@box ✉1              ││13:34:01 #1    api@box → web@box delivered  the schema changed        │
            │○ old@box                 ││                                                                      │
            │                          ││                                                                      │
            │                          ││                                                                      │
            │                          ││                                                                      │
            └──────────────────────────┘│                                                                      │
            ┌──────────────────────────┐│                                                                      │
            │running · seen 5 s ago    ││                                                                      │
            │/src/api (main)           ││                                                                      │
            │api is busy               ││                                                                      │
            │                          ││                                                                      │
            └──────────────────────────┘└──────────────────────────────────────────────────────────────────────┘
             ? help · q quit · Tab pane · Enter open · c compose · r reply · / search · t topic
        "#]],
    );
}

#[test]
fn a_new_message_goes_on_top_and_the_cursor_stays_on_its_message() {
    let mut a = app();
    a.key(key(KeyCode::Down));
    assert_eq!(a.selected_message().unwrap().message_id, 1);
    a.apply(Update::Messages(vec![msg(
        3,
        "api@box",
        "web@box",
        MessageState::Queued,
        "new",
    )]));
    assert_eq!(a.visible_feed()[0].message_id, 3);
    assert_eq!(a.selected_message().unwrap().message_id, 1);
    // A refresh without the body (a delivery) keeps the body known.
    let mut delivered = msg(2, "you@box", "web@box", MessageState::Delivered, "");
    delivered.body = None;
    a.apply(Update::Messages(vec![delivered]));
    let m = &a.feed[&2];
    assert_eq!(m.status, MessageState::Delivered);
    assert_eq!(m.body.as_deref(), Some("please run the e2e tests"));
}

#[test]
fn the_broker_down_shows_a_banner() {
    let mut a = app();
    a.apply(Update::Link(Link::Down {
        reason: "connection refused".into(),
        retry_in_ms: 2000,
    }));
    let f = frame(&a, 140, 16);
    let banner = f.lines().nth(1).unwrap();
    expect![[r#" the broker at http://127.0.0.1:7900 does not answer (connection refused); reconnecting by itself (next try in 2 s)"#]]
        .assert_eq(banner);
    assert!(f.lines().next().unwrap().contains("broker down"), "{f}");
    a.apply(Update::Link(Link::Live));
    assert!(!frame(&a, 140, 16).contains("does not answer"));
}

#[test]
fn enter_opens_the_message_and_esc_goes_back() {
    let mut a = app();
    let fx = a.key(key(KeyCode::Enter));
    assert_eq!(fx, vec![Effect::Open(2)]);
    assert_eq!(a.view, View::Message(2));
    let mut m = msg(
        2,
        "you@box",
        "web@box",
        MessageState::Queued,
        "please run\nthe e2e tests",
    );
    m.replies = vec![4];
    let mut reply = msg(
        4,
        "web@box",
        "you@box",
        MessageState::Delivered,
        "done, all green",
    );
    reply.reply_to = Some(2);
    a.apply(Update::Opened {
        message: Box::new(m.clone()),
        thread: vec![(0, m), (1, reply)],
    });
    check(
        &a,
        expect![[r#"
             peers · http://127.0.0.1:7900 · live
            ┌ message #2 ──────────────────────────────────────────────────────────────────────────────────────┐
            │from       you@box (you)                                                                          │
            │to         web@box                                                                                │
            │sent       2026-11-21T13:34:02Z (58 s ago)                                                        │
            │status     queued                                                                                 │
            │                                                                                                  │
            │  please run                                                                                      │
            │  the e2e tests                                                                                   │
            │                                                                                                  │
            │thread (2 messages, oldest first)                                                                 │
            │▶ #2 13:34:02 you@box → web@box  queued  please run the e2e tests                                 │
            │    #4 13:34:04 web@box → you@box  delivered via Stop after 1.2 s  done, all green                │
            │                                                                                                  │
            └ Esc back · r reply · c compose ──────────────────────────────────────────────────────────────────┘
             ? help · q quit · Tab pane · Enter open · c compose · r reply · / search · t topic
        "#]],
    );
    // A new reply to the thread loads it again.
    let mut again = msg(5, "api@box", "you@box", MessageState::Queued, "me too");
    again.reply_to = Some(4);
    assert_eq!(
        a.apply(Update::Messages(vec![again])),
        vec![Effect::Open(2)]
    );
    a.key(key(KeyCode::Esc));
    assert_eq!(a.view, View::Main);
}

#[test]
fn the_composer_sends_to_the_selected_peer_and_closes_when_sent() {
    let mut a = app();
    a.key(key(KeyCode::Tab));
    assert_eq!(a.focus, Pane::Peers);
    a.key(key(KeyCode::Down));
    a.key(key(KeyCode::Char('c')));
    assert_eq!(a.input, Input::Compose);
    assert_eq!(a.composer.to, "web@box");
    assert!(typed(&mut a, "hello web").is_empty());
    let fx = a.key(key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::Send(SendRequest {
            tags: vec![],
            to: "web@box".into(),
            message: "hello web".into(),
            reply_to: None,
            scope: None,
        })]
    );
    check(
        &a,
        expect![[r#"
             peers · http://127.0.0.1:7900 · live
            ┌ peers 2 live ────────────┐┌ feed 2 ──────────────────────────────────────────────────────────────┐
            │● api@box                 ││13:34:02 #2    you@box → web@box queued  please run the e2e tests     │
            │● web@box ✉1              ││13:34:01 #1    api@box → web@box delivered  the schema changed        │
            │○ old@box                 ││                                                                      │
            │                          ││                                                                      │
            │                          ││                                                                      │
            │                          ││                                                                      │
            ┌ new message ─────────────────────────────────────────────────────────────────────────────────────┐
            │to:   web@box   (a peer, name@host, #topic or * for everyone)                                     │
            │text: hello web▏                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            └ Enter send · Alt-Enter new line · Tab field · Esc cancel ────────────────────────────────────────┘
             ? help · q quit · Tab pane · Enter open · c compose · r reply · / search · t topic
        "#]],
    );
    a.apply(Update::Sent(SendResponse {
        message_id: 9,
        to: "web@box".into(),
        to_peer_id: "id-web".into(),
        status: MessageState::Queued,
        recipient_alive: true,
        recipient_last_seen_ms: NOW,
        recipient_can_wake: false,
        channel: None,
        readers: vec![],
    }));
    assert_eq!(a.input, Input::None);
    assert_eq!(a.status.as_deref(), Some("sent #9 to web@box (queued)"));
}

#[test]
fn the_composer_refuses_a_bad_recipient_or_an_empty_text_and_keeps_the_text() {
    let mut a = app();
    a.key(key(KeyCode::Char('c')));
    assert_eq!(
        a.composer.to, "",
        "the feed has the focus: no recipient guessed"
    );
    typed(&mut a, "#bad topic");
    a.key(key(KeyCode::Enter));
    typed(&mut a, "hi");
    assert!(a.key(key(KeyCode::Enter)).is_empty());
    assert!(
        a.composer
            .error
            .as_deref()
            .unwrap()
            .contains("not a topic name"),
        "{:?}",
        a.composer.error
    );
    assert_eq!(a.composer.body, "hi");
    // The broker's refusal shows in the composer, which stays open.
    a.apply(Update::Failed("not sent: no peer named \"nobody\"".into()));
    assert_eq!(a.input, Input::Compose);
    assert!(a.composer.error.as_deref().unwrap().contains("nobody"));
    a.key(key(KeyCode::Esc));
    assert_eq!(a.input, Input::None);
}

#[test]
fn reply_goes_to_the_sender_or_the_topic() {
    let mut a = app();
    a.key(key(KeyCode::Down));
    a.key(key(KeyCode::Char('r')));
    assert_eq!(
        (a.composer.to.as_str(), a.composer.reply_to),
        ("api@box", Some(1))
    );
    a.key(key(KeyCode::Esc));
    a.apply(Update::Messages(vec![post(7, "api@box", "deploys", &[])]));
    a.key(key(KeyCode::Char('g')));
    a.key(key(KeyCode::Char('r')));
    assert_eq!(
        (a.composer.to.as_str(), a.composer.reply_to),
        ("#deploys", Some(7))
    );
}

#[test]
fn the_topic_filter_narrows_the_feed_and_the_search_stays_within_it() {
    let mut a = app();
    a.apply(Update::Messages(vec![
        post(
            7,
            "api@box",
            "deploys",
            &[
                ("web", MessageState::Delivered),
                ("old", MessageState::Queued),
            ],
        ),
        post(8, "web@box", "alerts", &[]),
    ]));
    a.key(key(KeyCode::Char('t')));
    typed(&mut a, "deploys");
    a.key(key(KeyCode::Enter));
    let ids: Vec<i64> = a.visible_feed().iter().map(|m| m.message_id).collect();
    assert_eq!(ids, [7]);
    check(
        &a,
        expect![[r#"
             peers · http://127.0.0.1:7900 · live
            topic #deploys
            ┌ peers 2 live ────────────┐┌ feed 1 ──────────────────────────────────────────────────────────────┐
            │● api@box                 ││13:34:07 #7    api@box → #deploys 1/2 delivered  deploy done          │
            │● web@box ✉1              ││                                                                      │
            │○ old@box                 ││                                                                      │
            │                          ││                                                                      │
            │                          ││                                                                      │
            └──────────────────────────┘│                                                                      │
            ┌──────────────────────────┐│                                                                      │
            │running · seen 5 s ago    ││                                                                      │
            │/src/api (main)           ││                                                                      │
            │api is busy               ││                                                                      │
            │                          ││                                                                      │
            └──────────────────────────┘└──────────────────────────────────────────────────────────────────────┘
             ? help · q quit · Tab pane · Enter open · c compose · r reply · / search · t topic
        "#]],
    );
    // `/` searches the history within the topic filter; Esc clears the topic.
    a.key(key(KeyCode::Char('/')));
    typed(&mut a, "rollback OR \"hot fix\"");
    let asked = a.key(key(KeyCode::Enter));
    assert_eq!(
        asked,
        vec![Effect::Search(SearchQuery {
            q: "rollback OR \"hot fix\"".into(),
            topic: Some("deploys".into()),
            limit: Some(100),
            ..Default::default()
        })]
    );
    a.key(key(KeyCode::Esc));
    assert_eq!(a.visible_feed().len(), 4);
}

fn hit(id: i64, from: &str, to: &str, snippet: &str) -> SearchHit {
    SearchHit {
        message_id: id,
        thread_id: id,
        from: from.into(),
        from_kind: SenderKind::Peer,
        to: to.into(),
        sent_at_ms: NOW - 60_000 + id * 1000,
        snippet: snippet.into(),
        tags: vec![],
        project: None,
    }
}

#[test]
fn search_lists_the_hits_and_enter_opens_one_then_esc_goes_back_to_them() {
    let mut a = app();
    assert!(
        typed(&mut a, "/schema").is_empty(),
        "nothing asked while typing"
    );
    assert_eq!(a.input, Input::Search);
    let asked = a.key(key(KeyCode::Enter));
    assert_eq!(
        asked,
        vec![Effect::Search(SearchQuery {
            q: "schema".into(),
            limit: Some(100),
            ..Default::default()
        })]
    );
    a.apply(Update::Found {
        query: "schema".into(),
        hits: vec![
            hit(1, "api@box", "web@box", "the **schema** changed"),
            hit(9, "web@box", "#deploys", "old **schema** \u{1b}[2J gone"),
        ],
    });
    assert_eq!(a.view, View::Results);
    check(
        &a,
        expect![[r#"
             peers · http://127.0.0.1:7900 · live
            ┌ search schema · 2 found ─────────────────────────────────────────────────────────────────────────┐
            │13:34:01 #1    api@box → web@box                                                                  │
            │    the schema changed                                                                            │
            │13:34:09 #9    web@box → #deploys                                                                 │
            │    old schema \u{1b}[2J gone                                                                     │
            │                                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            │                                                                                                  │
            └ Enter open · / search again · Esc back ──────────────────────────────────────────────────────────┘
             2 found for "schema", best first
        "#]],
    );
    a.key(key(KeyCode::Down));
    assert_eq!(a.key(key(KeyCode::Enter)), vec![Effect::Open(9)]);
    assert_eq!(a.view, View::Message(9));
    a.key(key(KeyCode::Esc));
    assert_eq!(a.view, View::Results, "back to the hits");
    a.key(key(KeyCode::Esc));
    assert_eq!(a.view, View::Main);
    assert!(a.found.is_none());

    // A query the broker refuses: its error on the status line, the screen unchanged.
    typed(&mut a, "/\"open");
    a.key(key(KeyCode::Enter));
    a.apply(Update::Failed(
        "search: the search is not a valid query".into(),
    ));
    assert_eq!(a.view, View::Main);
    assert!(frame(&a, 100, 16).contains("search: the search is not a valid query"));
}

#[test]
fn help_lists_the_keys_and_any_key_closes_it() {
    let mut a = app();
    a.key(key(KeyCode::Char('?')));
    assert_eq!(a.view, View::Help);
    let f = frame(&a, 100, 20);
    for k in ["? ", "q, Ctrl-C", "Tab", "Enter", "Esc", "/", "t "] {
        assert!(f.contains(&format!("│ {k}")), "{k}:\n{f}");
    }
    a.key(key(KeyCode::Char('x')));
    assert_eq!(a.view, View::Main);
    assert_eq!(a.key(key(KeyCode::Char('q'))), vec![Effect::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(a.key(ctrl_c), vec![Effect::Quit]);
}

#[test]
fn text_from_peers_cannot_reach_the_terminal_as_escapes() {
    let mut a = app();
    a.apply(Update::Messages(vec![msg(
        3,
        "api@box",
        "web@box",
        MessageState::Queued,
        "\u{1b}[2Jgotcha\u{202e}",
    )]));
    let f = frame(&a, 120, 16);
    assert!(f.contains("\\u{1b}[2Jgotcha\\u{202e}"), "{f}");
    assert!(!f.contains('\u{1b}'));
}
