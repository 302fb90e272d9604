//! Issue 17: a real Claude Code session and a real Codex session exchange mail both ways
//! through one broker, each shown the other's message mid-turn by its own PostToolUse hook.
//!
//! Claude Code (`claude -p`, configured as `peers install` configures it, against the fake
//! Anthropic API) writes to the Codex session (`codex exec`, set up by the real `peers install
//! --agent codex`, against the fake OpenAI Responses API, its hooks trusted by that install:
//! no `--dangerously-bypass-hook-trust`). Each scripted model naps in one-second shell calls
//! until the mail shows up in what it is sent, so each turn is still running when the mail
//! comes; the Codex model answers with the `reply:` call its frame hints at. Both directions
//! are asserted on the requests each model received.

mod common;
mod net;

use std::time::Duration;

use common::{RUN, WAIT, World};
use peers_core::wire::{Agent, MessageState};
use peers_testkit::claude::shown::{peer_message_ids, reply_hints};
use peers_testkit::claude::{FakeApi, Headless, Reply, Step, serial};
use peers_testkit::fake_openai::{self, FakeOpenAi, calls_named, codex_or_skip, developer_texts};
use serde_json::{Value, json};

const PING: &str = "ping from claude code: is the api schema final?";
const PONG: &str = "pong from codex: yes, schema v3 is final";
/// How many one-second naps a model takes before it stops waiting for mail.
const NAPS: usize = 90;

/// The Codex model: naps until a developer message carries Claude's mail, then sends the
/// reply the frame hints at (`reply: {"to":…,"reply_to":…}`), then ends its turn.
fn codex_model(req: &Value) -> fake_openai::Reply {
    if calls_named(req, "send_message") > 0 {
        return fake_openai::Reply::text("codex: replied, done");
    }
    let mail = developer_texts(req)
        .into_iter()
        .filter(|t| t.contains(PING))
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(h) = reply_hints(&mail).into_iter().next() {
        return fake_openai::Reply::mcp(
            "peers",
            "send_message",
            json!({"to": h.to, "reply_to": h.reply_to, "message": PONG}),
        );
    }
    if calls_named(req, "exec_command") >= NAPS {
        return fake_openai::Reply::text("codex: no mail came");
    }
    fake_openai::Reply::shell("sleep 1")
}

#[test]
fn claude_code_and_codex_exchange_mail_mid_turn() {
    let _serial = serial();
    let name = "claude_code_and_codex_exchange_mail_mid_turn";
    let Some(codex) = codex_or_skip(name) else {
        return;
    };
    let Some(w) = World::new(name, &[]) else {
        return;
    };

    // The Codex session first (project `back`), napping while it waits.
    let cx_api = FakeOpenAi::start(vec![]);
    cx_api.set_fallback(codex_model);
    let home = net::codex_home(&w.env, &cx_api);
    let mut cx = net::codex_exec(
        &w.env,
        &codex,
        &home,
        &w.project("back"),
        "work on the api schema",
    );
    let back = w.wait_peer("back", true, WAIT);
    assert_eq!(back.agent, Agent::Codex, "{back:?}");
    assert_eq!(
        back.claude_pid,
        cx.pid(),
        "the codex process is the session"
    );

    // The Claude Code session (project `front`): writes to `back`, then naps until the reply
    // shows up beside a tool result.
    let cc_api = FakeApi::start(
        "front",
        vec![Step::tool(
            "mcp__peers__send_message",
            json!({"to": back.name, "message": PING}),
        )],
    );
    cc_api.set_fallback(Step::dynamic(|ctx| {
        if ctx.latest_text().contains(PONG) {
            Reply::text("claude: got the reply, done")
        } else if ctx.index > NAPS {
            Reply::text("claude: no reply came")
        } else {
            Reply::bash("sleep 1")
        }
    }));
    let mut cc = Headless::start(
        &w.spec("front", "front", &cc_api),
        "ask the api session about the schema",
    )
    .unwrap();
    let cc_out = cc.wait(RUN).unwrap();
    cc_api.dump_if_asked();
    assert!(
        cc_out.status.is_some_and(|s| s.success()),
        "claude -p did not exit cleanly: {cc_out:?}\n{}",
        cc_api.transcript()
    );
    assert!(
        cx.wait_timeout(RUN).is_some_and(|s| s.success()),
        "codex exec did not finish cleanly"
    );
    // (Gone by now: the session ended.)
    let front = w.wait_peer("front", false, WAIT);
    assert_eq!(front.agent, Agent::Claude, "{front:?}");

    // Codex's model got the mail mid-turn: a developer message beside a shell call's output,
    // naming the sender and the reply in Codex's own tool name.
    let shown = cx_api
        .wait_for_input(WAIT, PING)
        .expect("the Codex model was never shown Claude's mail");
    assert!(
        calls_named(&shown, "exec_command") >= 1,
        "not mid-turn (no tool call before it): {shown}"
    );
    let dev = developer_texts(&shown)
        .into_iter()
        .find(|t| t.contains(PING))
        .unwrap();
    assert!(dev.contains("<peer-message"), "{dev}");
    assert!(dev.contains("from=\"front"), "{dev}");
    assert!(dev.contains("mcp__peers.send_message"), "{dev}");
    let ping = *peer_message_ids(&dev).first().expect("a framed message id");
    let st = w.status(ping);
    assert_eq!(st.status, MessageState::Delivered, "{st:?}");
    assert_eq!(st.delivered_via.as_deref(), Some("PostToolUse"), "{st:?}");

    // Claude's model got the reply mid-turn, beside a Bash result, linked to the ping.
    let got = cc_api
        .wait_for(Duration::from_secs(5), |r| {
            r.main_loop && r.latest_text().contains(PONG)
        })
        .unwrap_or_else(|| panic!("Claude never saw the reply\n{}", cc_api.transcript()));
    let t = got.latest_text();
    assert!(
        t.contains("PostToolUse:Bash hook additional context"),
        "not PostToolUse context:\n{t}"
    );
    assert!(t.contains("from=\"back"), "{t}");
    assert!(
        t.contains(&format!("re=\"{ping}\"")),
        "not a reply to #{ping}:\n{t}"
    );
    let pong = *peer_message_ids(&t).first().expect("a framed message id");
    let st = w.status(pong);
    assert_eq!(st.status, MessageState::Delivered, "{st:?}");
    assert_eq!(st.delivered_via.as_deref(), Some("PostToolUse"), "{st:?}");
    w.assert_no_hook_errors(&cc_api);
}
