//! send / peers / status / inbox / log / show / tail against a real broker, text and --json.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{assert_contains, peers, peers_cmd, project, with_web};
use peers_testkit::peer::deliver_all;
use peers_testkit::{ChildGuard, TestEnv};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn send_peers_status_inbox_log_show() {
    let (env, cwd, _broker, claude, web, web_client) = with_web().await;
    assert_eq!(web.name, "web");

    let list = peers(&env, &cwd, &["peers", "--json"]).ok().json();
    let names: Vec<&str> = list["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);
    assert_eq!(list["peers"][0]["alive"], true);
    let text = peers(&env, &cwd, &["peers"]).ok().stdout;
    assert!(
        text.contains("web@testhost") && text.contains("live"),
        "{text}"
    );
    let machine = peers(&env, &cwd, &["peers", "--scope", "machine", "--json"])
        .ok()
        .json();
    assert_eq!(machine["peers"].as_array().unwrap().len(), 1);
    let dir = peers(&env, &cwd, &["peers", "--scope", "directory", "--json"])
        .ok()
        .json();
    assert_eq!(
        dir["peers"].as_array().unwrap().len(),
        0,
        "web works elsewhere"
    );

    // Send as the human.
    let sent = peers(&env, &cwd, &["send", "web", "please rebase", "--json"])
        .ok()
        .json();
    let id = sent["message_id"].as_i64().unwrap();
    assert_eq!(sent["to"], "web@testhost");
    assert_eq!(sent["status"], "queued");
    let text = peers(&env, &cwd, &["send", "web", "and run the tests"])
        .ok()
        .stdout;
    assert!(text.contains(&format!("sent #{}", id + 1)), "{text}");

    let show = peers(&env, &cwd, &["show", &id.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(show["from_kind"], "human");
    assert!(show["from"].as_str().unwrap().starts_with("you@"), "{show}");
    assert_eq!(show["status"], "queued");

    let inbox = peers(&env, &cwd, &["inbox", "--json"]).ok().json();
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 2);
    let status = peers(&env, &cwd, &["status", "--json"]).ok().json();
    assert_eq!(status["broker"]["version"], peers_core::VERSION);
    assert_eq!(status["waiting"][0]["name"], "web");
    assert_eq!(status["waiting"][0]["queued"], 2);
    let text = peers(&env, &cwd, &["status"]).ok().stdout;
    assert!(
        text.contains("web@testhost") && text.contains("2 message(s)"),
        "{text}"
    );

    // The session's hook takes the mail.
    assert_eq!(deliver_all(&web_client, "PostToolUse").await, 2);

    let log = peers(
        &env,
        &cwd,
        &[
            "log", "--from", "you", "--to", "web", "--since", "10m", "--json",
        ],
    )
    .ok()
    .json();
    let msgs = log["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs.iter()
            .all(|m| m["status"] == "delivered" && m["delivered_via"] == "PostToolUse")
    );
    let limited = peers(&env, &cwd, &["log", "--limit", "1", "--json"])
        .ok()
        .json();
    assert_eq!(limited["messages"].as_array().unwrap().len(), 1);
    let text = peers(&env, &cwd, &["log"]).ok().stdout;
    assert!(
        text.contains(&format!("#{id}")) && text.contains("delivered via PostToolUse"),
        "{text}"
    );
    let inbox = peers(&env, &cwd, &["inbox", "--json"]).ok().json();
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 0);
    let text = peers(&env, &cwd, &["show", &format!("#{id}")]).ok().stdout;
    assert!(
        text.contains("delivered:") && text.contains("PostToolUse"),
        "{text}"
    );

    // A reply links back.
    let r = peers(
        &env,
        &cwd,
        &[
            "send",
            "web",
            "thanks",
            "--reply-to",
            &id.to_string(),
            "--json",
        ],
    )
    .ok()
    .json();
    let show = peers(
        &env,
        &cwd,
        &["show", &r["message_id"].to_string(), "--json"],
    )
    .ok()
    .json();
    assert_eq!(show["reply_to"], id);

    // Errors say what to do.
    let bad = peers(&env, &cwd, &["send", "wbe", "hi"]);
    assert_eq!(bad.code, 1);
    assert_contains(&bad.stderr, "Did you mean web@testhost (running)?");
    let bad = peers(&env, &cwd, &["show", "999"]);
    assert!(bad.stderr.contains("no message #999"), "{}", bad.stderr);
    let bad = peers(&env, &cwd, &["log", "--since", "soon"]);
    assert!(bad.stderr.contains("10m"), "{}", bad.stderr);
    drop(claude);
}

#[tokio::test]
async fn send_wait_follows_the_message_until_delivered() {
    let (env, cwd, _broker, claude, _web, web_client) = with_web().await;

    let mut cmd = peers_cmd(&env, &cwd, &["send", "web", "ping", "--wait", "--json"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = ChildGuard::new(cmd.spawn().unwrap());
    let mut stdout = child.child().stdout.take().unwrap();
    // Once the message is queued, the "hook" takes it.
    let user = env.user_client();
    peers_testkit::eventually(WAIT, "the message is sent", || async {
        let log = user.messages(&Default::default()).await.ok()?;
        (!log.messages.is_empty()).then_some(())
    })
    .await;
    assert!(
        child.wait_timeout(Duration::from_millis(700)).is_none(),
        "--wait returned before delivery"
    );
    assert_eq!(deliver_all(&web_client, "Stop").await, 1);
    let status = child
        .wait_timeout(WAIT)
        .expect("send --wait returns once delivered");
    assert!(status.success());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let printed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(printed["status"], "delivered", "{text}");
    let st = peers(&env, &cwd, &["show", "1", "--json"]).ok().json();
    assert_eq!(st["status"], "delivered");
    assert_eq!(st["delivered_via"], "Stop");

    // With a timeout and nobody taking the mail: exit 1, the mail stays queued.
    let out = peers(
        &env,
        &cwd,
        &["send", "web", "anyone?", "--wait", "--timeout", "1s"],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("stays queued"), "{}", out.stderr);
    drop(claude);
}

#[tokio::test]
async fn tail_prints_sends_and_deliveries_as_json_lines() {
    let (env, cwd, _broker, claude, _web, web_client) = with_web().await;

    let mut cmd = peers_cmd(&env, &cwd, &["tail", "--json", "--since", "5m"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut tail = ChildGuard::new(cmd.spawn().unwrap());
    let stdout = tail.child().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });

    peers(&env, &cwd, &["send", "web", "watch this"]).ok();
    let ev = rx.recv_timeout(WAIT).expect("a sent event");
    assert_eq!(ev["event"], "sent");
    assert_eq!(ev["message"]["to"], "web@testhost");
    deliver_all(&web_client, "UserPromptSubmit").await;
    let ev = rx.recv_timeout(WAIT).expect("a delivered event");
    assert_eq!(ev["event"], "delivered");
    assert_eq!(ev["message"]["delivered_via"], "UserPromptSubmit");

    // Ctrl-C ends it cleanly.
    tail.signal(libc::SIGINT);
    let status = tail.wait_timeout(WAIT).expect("tail exits on Ctrl-C");
    assert!(status.success(), "{status:?}");
    drop(claude);
}

#[test]
fn without_a_broker_every_command_says_how_to_start_it() {
    let env = TestEnv::new();
    let cwd = project(&env, "here");
    for args in [
        &["send", "web", "hi"][..],
        &["peers"],
        &["log"],
        &["inbox"],
        &["show", "1"],
    ] {
        let out = peers(&env, &cwd, args);
        assert_eq!(out.code, 1, "{args:?}");
        assert!(
            out.stderr.contains("start it with `peers broker start`"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // `peers status` is not an error: it says so on stdout and exits 3.
    let out = peers(&env, &cwd, &["status"]);
    assert_eq!(out.code, 3);
    assert_contains(&out.stdout, "start it with `peers broker start`");
}
