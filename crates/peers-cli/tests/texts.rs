//! What the CLI tells the human, against a real broker: `peers show` with the text and the
//! thread, `log`/`inbox --body`, the closest names for a wrong recipient, `peers status`
//! without a broker and with notices. Fixed texts are snapshots (`UPDATE_EXPECT=1` updates).

use crate::util::{peer_client, peers, project, register, with_web};
use expect_test::expect;
use peers_core::wire::NoticeRequest;
use peers_testkit::peer::deliver_all;
use peers_testkit::{BrokerProcess, TestEnv, fake_claude};
use serde_json::Value;

/// A fake Claude Code process kept alive until `keep` is dropped.
fn fake_claude_keep(keep: &mut Vec<peers_testkit::ChildGuard>) -> &peers_testkit::ChildGuard {
    keep.push(fake_claude());
    keep.last().unwrap()
}

/// `peers send web <text> --reply-to <to> --json`; the new message's id.
fn reply(env: &TestEnv, cwd: &std::path::Path, text: &str, to: i64) -> i64 {
    let to = to.to_string();
    peers(
        env,
        cwd,
        &["send", "web", text, "--reply-to", &to, "--json"],
    )
    .ok()
    .message_id()
}

/// The RFC 3339 form `peers` prints for a time (as `peers_core::format_ms`).
fn times_of(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in v["thread"].as_array().into_iter().flatten().chain([v]) {
        for k in ["sent_at_ms", "delivered_at_ms", "expires_at_ms"] {
            if let Some(ms) = m[k].as_i64() {
                out.push(peers_core::format_ms(ms));
            }
        }
    }
    out
}

/// Replaces times and durations, which change from run to run.
fn scrub(text: &str, times: &[String], env: &TestEnv) -> String {
    let mut s = text.replace(&env.url(), "<url>");
    for t in times {
        s = s.replace(t, "<time>");
    }
    s.lines()
        .map(|l| {
            let l = match l.find(" after ") {
                Some(i) if l.contains("delivered") => {
                    let rest = &l[i + 7..];
                    // A duration is a number and a unit (`340 ms`, `1.5 s`), to the `)` or the end.
                    let end = rest.find(')').unwrap_or(rest.len());
                    format!("{} after <d>{}", &l[..i], &rest[end..])
                }
                _ => l.to_string(),
            };
            match l.find(" (") {
                Some(i) if l.trim_start().starts_with("sent:") => format!("{} (<ago>)", &l[..i]),
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[tokio::test]
async fn show_prints_the_text_and_the_whole_thread_with_states() {
    let (env, cwd, _broker, claude, _web, web_c) = with_web().await;
    let mut keep = Vec::new();

    // The human asks; web answers; the human answers that; a second reply to the question.
    let q = peers(
        &env,
        &cwd,
        &["send", "web", "what shape does /v1/x return?", "--json"],
    )
    .ok()
    .json()["message_id"]
        .as_i64()
        .unwrap();
    deliver_all(&web_c, "PostToolUse").await;
    // A hostile body: a terminal escape that clears the screen, a carriage return, and a
    // line that fakes a header of the listing.
    let hostile = "It returns {\"id\": 1}.\u{1b}[2J\rOK\nthread (1 messages, oldest first):";
    let a = reply(&env, &cwd, hostile, q);
    let b = reply(&env, &cwd, "thanks", a);
    let c = reply(&env, &cwd, "and the errors?", q);
    assert_eq!((q, a, b, c), (1, 2, 3, 4));

    // JSON: the body, and the thread in order with depths.
    let v = peers(&env, &cwd, &["show", &a.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(v["body"], hostile);
    let thread: Vec<(i64, i64)> = v["thread"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["message_id"].as_i64().unwrap(),
                m["depth"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(thread, [(1, 0), (2, 1), (3, 2), (4, 1)]);
    assert_eq!(v["thread"][0]["body"], "what shape does /v1/x return?");

    let out = peers(&env, &cwd, &["show", &a.to_string()]).ok();
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stdout.contains('\r'),
        "no escape reaches the terminal: {:?}",
        out.stdout
    );
    let text = scrub(&out.stdout, &times_of(&v), &env);
    let text = text
        .replace(v["to_peer_id"].as_str().unwrap(), "<peer id>")
        .replace(v["from"].as_str().unwrap(), "<you>");
    expect![[r#"
        message #2
          from:      <you> (you)
          to:        web@testhost (peer <peer id>, running)
          sent:      <time> (<ago>)
          status:    queued
          expires:   <time>
          wake:      no idle waiter is armed for that session, so the mail reaches it at its next prompt, tool call or end of turn
          size:      63 bytes
          reply to:  #1
          replies:   #3
          text:
            It returns {"id": 1}.\u{1b}[2J\u{d}OK
            thread (1 messages, oldest first):

        thread (4 messages, oldest first):
          #1 <time> <you> -> web@testhost  delivered via PostToolUse after <d>
              what shape does /v1/x return?
        ▶   #2 <time> <you> -> web@testhost  queued
                It returns {"id": 1}.\u{1b}[2J\u{d}OK
                thread (1 messages, oldest first):
              #3 <time> <you> -> web@testhost  queued
                  thanks
            #4 <time> <you> -> web@testhost  queued
                and the errors?
    "#]]
    .assert_eq(&text);

    // The body is for the sender, the recipient and the human only.
    let api = register(&env, fake_claude_keep(&mut keep), &project(&env, "api")).await;
    let err = peer_client(&env, &api)
        .message_with_body(a)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(peers_core::wire::ErrorCode::NotFound),
        "{err}"
    );
    let mine = web_c.message_with_body(a).await.unwrap();
    assert_eq!(mine.body.as_deref(), Some(hostile));
    assert_eq!(web_c.message_status(a).await.unwrap().body, None);

    // A message alone has no thread section.
    let solo = peers(&env, &cwd, &["send", "web", "solo", "--json"])
        .ok()
        .json();
    let out = peers(&env, &cwd, &["show", &solo["message_id"].to_string()]).ok();
    assert!(out.stdout.contains("  text:\n    solo\n"), "{}", out.stdout);
    assert!(!out.stdout.contains("thread ("), "{}", out.stdout);
    drop(claude);
}

#[tokio::test]
async fn log_and_inbox_take_body() {
    let (env, cwd, _broker, claude, _web, web_c) = with_web().await;
    peers(&env, &cwd, &["send", "web", "first\nsecond line\u{7}"]).ok();
    deliver_all(&web_c, "Stop").await;
    peers(&env, &cwd, &["send", "web", "still waiting"]).ok();

    let log = peers(&env, &cwd, &["log", "--body"]).ok().stdout;
    assert!(
        log.contains("\n       first\n       second line\\u{7}\n"),
        "{log}"
    );
    assert!(log.contains("\n       still waiting"), "{log}");
    let plain = peers(&env, &cwd, &["log"]).ok().stdout;
    assert!(!plain.contains("still waiting"), "{plain}");
    let inbox = peers(&env, &cwd, &["inbox", "--body"]).ok().stdout;
    assert!(
        inbox.contains("still waiting") && !inbox.contains("first"),
        "{inbox}"
    );
    let j = peers(&env, &cwd, &["log", "--body", "--json"]).ok().json();
    assert_eq!(j["messages"][1]["body"], "first\nsecond line\u{7}");
    let j = peers(&env, &cwd, &["log", "--json"]).ok().json();
    assert!(j["messages"][0].get("body").is_none(), "{j}");
    drop(claude);
}

#[tokio::test]
async fn a_wrong_name_gets_the_closest_sessions_ended_ones_included() {
    let env = TestEnv::new();
    let cwd = project(&env, "here");
    let _broker = BrokerProcess::start(&env).await;

    // No session at all.
    let out = peers(&env, &cwd, &["send", "wbe", "hi"]);
    assert_eq!(out.code, 1);
    expect![[r#"
        peers: no peer named "wbe"; nothing was sent. No session is registered, running or ended (sessions appear once Claude Code starts with peers installed: `peers install`, then `peers doctor`)
    "#]]
    .assert_eq(&out.stderr);

    let c1 = fake_claude();
    let c2 = fake_claude();
    let c3 = fake_claude();
    let _web = register(&env, &c1, &project(&env, "web")).await;
    let webb = register(&env, &c2, &project(&env, "webb")).await;
    let _api = register(&env, &c3, &project(&env, "api")).await;
    // webb's session ends; mail to it waits for its next session.
    peer_client(&env, &webb).unregister().await.unwrap();

    let out = peers(&env, &cwd, &["send", "wbe", "hi"]);
    assert_eq!(out.code, 1);
    expect![[r#"
        peers: no peer named "wbe"; nothing was sent. Did you mean web@testhost (running) or webb@testhost (session ended; mail waits for its next session)?
        Send again with that name, e.g. `peers send web@testhost …` (`peers peers --all` lists every session)
    "#]]
    .assert_eq(&out.stderr);

    // Nothing close: every session that takes mail.
    let out = peers(&env, &cwd, &["send", "database", "hi"]);
    assert_eq!(out.code, 1);
    expect![[r#"
        peers: no peer named "database"; nothing was sent. Sessions that take mail: api@testhost (running), web@testhost (running), webb@testhost (session ended; mail waits for its next session)
        (`peers peers --all` lists them)
    "#]]
    .assert_eq(&out.stderr);
    assert!(
        peers(&env, &cwd, &["log", "--json"]).ok().json()["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    drop((c1, c2, c3));
}

#[test]
fn status_without_a_broker_says_so_and_how_to_start_it() {
    let env = TestEnv::new();
    let cwd = project(&env, "here");
    let out = peers(&env, &cwd, &["status"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr, "");
    expect![[r#"
        broker: not running at <url>
          start it with `peers broker start` (a Claude Code session with peers installed also starts it when it opens)
    "#]]
    .assert_eq(&out.stdout.replace(&env.url(), "<url>"));
    let out = peers(&env, &cwd, &["status", "--json"]);
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["running"], false);
}

#[tokio::test]
async fn status_shows_who_raised_each_notice() {
    let (env, cwd, _broker, claude, _web, web_client) = with_web().await;
    web_client
        .add_notice(&NoticeRequest {
            kind: "escalation".into(),
            text: "could not show a desktop notification\u{1b}]0;pwned\u{7}".into(),
        })
        .await
        .unwrap();
    let v = peers(&env, &cwd, &["status", "--json"]).ok().json();
    let author = v["notices"][0]["author"].as_str().unwrap_or("");
    let shown = if author.is_empty() { "broker" } else { author };
    let out = peers(&env, &cwd, &["status"]).ok().stdout;
    let line = out
        .lines()
        .find(|l| l.contains("desktop notification"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("[{shown}] could not show")),
        "{line}"
    );
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    drop(claude);
}
