//! `peers tui` under tmux and `peers tail` over the broker's event stream: the real binaries
//! against a real broker, mail sent by stand-in sessions, the broker killed and restarted.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{peer_client, peers_cmd, project, register, with_web};
use peers_core::wire::{ClaimRequest, SendRequest};
use peers_testkit::tmux::Tmux;
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv, bin, fake_claude};

const WAIT: Duration = Duration::from_secs(20);

fn send_req(to: &str, text: &str) -> SendRequest {
    peers_testkit::requests::send_req(to, text)
}

/// `peers tui args…` in a 120×40 tmux pane of `env`, or `None` (with a loud SKIPPED) without
/// tmux.
fn start_tui(env: &TestEnv, cwd: &std::path::Path, test: &str, args: &[&str]) -> Option<Tmux> {
    if !Tmux::available() {
        eprintln!("SKIPPED {test}: tmux is not installed (apt-get install tmux)");
        return None;
    }
    let mut vars = env.vars();
    vars.push(("PATH".into(), "/usr/bin:/bin".into()));
    let t = Tmux::start(
        "peers tui",
        &env.dir.path().join("tui"),
        cwd,
        &vars,
        &bin("peers"),
        &std::iter::once("tui")
            .chain(args.iter().copied())
            .map(String::from)
            .collect::<Vec<_>>(),
        (120, 40),
    )
    .expect("start peers tui in tmux");
    Some(t)
}

#[tokio::test]
async fn the_tui_shows_peers_and_live_mail_sends_and_rides_out_a_broker_restart() {
    let (env, cwd, mut broker, claude, _web, web_client) = with_web().await;
    let api_claude = fake_claude();
    let api = register(&env, &api_claude, &project(&env, "api")).await;
    let api_client = peer_client(&env, &api);
    let Some(tui) = start_tui(&env, &cwd, "the_tui_shows_peers_and_live_mail", &[]) else {
        return;
    };

    // It starts and shows the peers, live.
    tui.wait_screen(WAIT, |s| {
        s.contains("web@testhost") && s.contains("api@testhost") && s.contains(" live")
    })
    .unwrap();

    // A message a stand-in peer sends appears without a key pressed.
    api_client
        .send(&send_req("web", "the schema changed"))
        .await
        .unwrap();
    let s = tui
        .wait_screen(WAIT, |s| s.contains("the schema changed"))
        .unwrap();
    assert!(s.contains("api@testhost → web@testhost"), "{s}");

    // The composer sends one that the stand-in's claim receives.
    tui.keys(&["c"]).unwrap();
    tui.wait_screen(WAIT, |s| s.contains("new message"))
        .unwrap();
    tui.type_text("web").unwrap();
    tui.keys(&["Enter"]).unwrap();
    tui.type_text("from the tui").unwrap();
    tui.keys(&["Enter"]).unwrap();
    tui.wait_screen(WAIT, |s| s.contains("sent #") && !s.contains("new message"))
        .unwrap();
    let got = web_client.claim(&ClaimRequest::default()).await.unwrap();
    let bodies: Vec<&str> = got.messages.iter().map(|m| m.body.as_str()).collect();
    assert!(bodies.contains(&"from the tui"), "{bodies:?}");
    let mine = got
        .messages
        .iter()
        .find(|m| m.body == "from the tui")
        .unwrap();
    assert!(mine.from.starts_with("you@"), "{}", mine.from);

    // Enter opens the newest message (the composer's) with its text.
    tui.keys(&["g", "Enter"]).unwrap();
    tui.wait_screen(WAIT, |s| s.contains("message #") && s.contains("(you)"))
        .unwrap();
    tui.keys(&["Escape"]).unwrap();

    // The broker dies: a banner says so, and the TUI keeps running.
    broker.kill9();
    tui.wait_screen(WAIT, |s| {
        s.contains("does not answer") && s.contains("broker down")
    })
    .unwrap();

    // It comes back: the TUI reconnects by itself and shows new mail.
    let _broker = BrokerProcess::start(&env).await;
    tui.wait_screen(WAIT, |s| {
        !s.contains("does not answer") && s.contains(" live")
    })
    .unwrap();
    api_client
        .send(&send_req("web", "after the restart"))
        .await
        .unwrap();
    tui.wait_screen(WAIT, |s| s.contains("after the restart"))
        .unwrap();

    // q quits and gives the terminal back.
    tui.keys(&["q"]).unwrap();
    tui.wait_screen(WAIT, |s| !s.contains("after the restart"))
        .unwrap();
    drop((claude, api_claude));
}

#[tokio::test]
async fn the_tui_searches_the_whole_history_and_opens_a_hit() {
    let (env, cwd, _broker, claude, _web, _web_client) = with_web().await;
    let api_claude = fake_claude();
    let api = register(&env, &api_claude, &project(&env, "api")).await;
    let api_client = peer_client(&env, &api);
    let old = api_client
        .send(&send_req("web", "the zebracorn migration is done"))
        .await
        .unwrap();
    for n in 1..=3 {
        api_client
            .send(&send_req("web", &format!("filler {n}")))
            .await
            .unwrap();
    }
    // The feed loads the last two only: what `/` finds comes from the broker's search.
    let Some(tui) = start_tui(&env, &cwd, "the_tui_searches", &["--backlog", "2"]) else {
        return;
    };
    let s = tui
        .wait_screen(WAIT, |s| s.contains("filler 3") && s.contains(" live"))
        .unwrap();
    assert!(!s.contains("zebracorn"), "{s}");

    tui.keys(&["?"]).unwrap();
    tui.wait_screen(WAIT, |s| s.contains("search the history"))
        .unwrap();
    tui.keys(&["Escape"]).unwrap();

    tui.keys(&["/"]).unwrap();
    tui.type_text("zebracorn").unwrap();
    tui.keys(&["Enter"]).unwrap();
    let s = tui
        .wait_screen(WAIT, |s| s.contains("search zebracorn · 1 found"))
        .unwrap();
    assert!(s.contains("the zebracorn migration is done"), "{s}");
    assert!(
        s.contains(&format!(
            "#{:<4} api@testhost → web@testhost",
            old.message_id
        )),
        "{s}"
    );

    // Enter opens it in the message view; Esc goes back to the hits.
    tui.keys(&["Enter"]).unwrap();
    tui.wait_screen(WAIT, |s| {
        s.contains(&format!("message #{}", old.message_id)) && s.contains("  the zebracorn")
    })
    .unwrap();
    tui.keys(&["Escape"]).unwrap();
    tui.wait_screen(WAIT, |s| s.contains("1 found")).unwrap();

    // A query FTS5 cannot read: the broker's explanation on the status line.
    tui.keys(&["/"]).unwrap();
    tui.type_text("\"zebra").unwrap();
    tui.keys(&["Enter"]).unwrap();
    tui.wait_screen(WAIT, |s| s.contains("not a valid query"))
        .unwrap();
    drop((claude, api_claude));
}

/// Lines of a running `peers tail`'s stdout and stderr.
fn lines_of(child: &mut ChildGuard) -> (mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let pipe = |r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let out = child.child().stdout.take().unwrap();
    let err = child.child().stderr.take().unwrap();
    (pipe(Box::new(out)), pipe(Box::new(err)))
}

fn until(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    panic!("no line with {what:?}; saw:\n{}", seen.join("\n"));
}

#[tokio::test]
async fn tail_follows_the_event_stream_through_a_broker_restart() {
    let (env, cwd, mut broker, claude, _web, web_client) = with_web().await;
    let mut cmd = peers_cmd(&env, &cwd, &["tail"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut tail = ChildGuard::new(cmd.spawn().unwrap());
    let (out, err) = lines_of(&mut tail);
    // Said once the stream is open and the log read: nothing sent after it is missed.
    until(&err, "following");

    let sent = crate::util::peers(&env, &cwd, &["send", "web", "first", "--json"])
        .ok()
        .message_id();
    let line = until(&out, "sent ");
    assert!(
        line.contains(&format!("#{sent} you@")) && line.contains("-> web@testhost"),
        "{line}"
    );
    peers_testkit::peer::deliver_all(&web_client, "Stop").await;
    let line = until(&out, "delivered");
    assert!(
        line.contains(&format!("#{sent} to web@testhost via Stop after")),
        "{line}"
    );

    broker.kill9();
    until(&err, "broker not answering");
    let _broker = BrokerProcess::start(&env).await;
    until(&err, "reconnected");
    let again = crate::util::peers(&env, &cwd, &["send", "web", "second", "--json"])
        .ok()
        .message_id();
    let line = until(&out, "sent ");
    assert!(line.contains(&format!("#{again} ")), "{line}");

    tail.signal(libc::SIGINT);
    let status = tail.wait_timeout(WAIT).expect("tail exits on Ctrl-C");
    assert!(status.success(), "{status:?}");
    drop(claude);
}

#[tokio::test]
async fn tail_topic_shows_only_that_topics_posts_and_each_readers_delivery() {
    let (env, cwd, _broker, claude, _web, web_client) = with_web().await;
    web_client
        .subscribe(&peers_core::wire::SubscribeRequest {
            topic: "deploys".into(),
            wake: None,
            mute: None,
        })
        .await
        .unwrap();
    let mut cmd = peers_cmd(&env, &cwd, &["tail", "--topic", "#deploys"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut tail = ChildGuard::new(cmd.spawn().unwrap());
    let (out, err) = lines_of(&mut tail);
    until(&err, "following");

    crate::util::peers(&env, &cwd, &["send", "web", "direct, not shown"]).ok();
    let post = crate::util::peers(&env, &cwd, &["send", "#deploys", "v2 is out", "--json"])
        .ok()
        .message_id();
    let line = until(&out, "sent ");
    assert!(
        line.contains(&format!("#{post} you@")) && line.contains("-> #deploys"),
        "{line}"
    );
    peers_testkit::peer::deliver_all(&web_client, "Stop").await;
    let line = until(&out, "delivered");
    assert!(
        line.contains(&format!("#{post} to web@testhost via Stop")),
        "{line}"
    );
    tail.signal(libc::SIGINT);
    tail.wait_timeout(WAIT).expect("tail exits on Ctrl-C");
    drop(claude);
}
