//! Issue 17: the real Codex CLI (`@openai/codex` 0.171.0, pinned, from npm) against the
//! project's scripted fake of the OpenAI Responses API (`peers_testkit::fake_openai`), set up
//! by the real `peers install --agent codex`. No `--dangerously-bypass-hook-trust`: the hooks
//! run because install recorded their trust in `config.toml` (`[hooks.state]`).
//!
//! The other side of the exchange is a session registered straight with the broker (a
//! stand-in, as in the broker tests), not a second CLI: it sends and reads mail over the real
//! HTTP API.

use std::process::Command;
use std::time::{Duration, Instant};

use peers_core::wire::{Agent, MessageState};
use peers_testkit::fake_openai::{FakeOpenAi, Reply, codex_or_skip, developer_texts};
use peers_testkit::peer::deliver_all;

mod net;
use net::{Net, codex_home};
use serde_json::json;

#[test]
fn codex_session_gets_mail_mid_turn_and_replies() {
    let name = "codex_session_gets_mail_mid_turn_and_replies";
    let Some(codex) = codex_or_skip(name) else {
        return;
    };
    let net = Net::start();
    let (env, rt, web) = (&net.env, &net.rt, &net.web);

    // The model: a shell call that takes a while (the mail arrives meanwhile and PostToolUse
    // shows it), then a reply through the namespace tool, then done.
    let api = FakeOpenAi::start(vec![
        Reply::shell("sleep 4"),
        Reply::mcp(
            "peers",
            "send_message",
            json!({"to": web.reg.name, "message": "pong from codex"}),
        ),
        Reply::text("done"),
    ]);
    let home = codex_home(env, &api);
    let project = net.project("api");
    let mut session = net::codex_exec(env, &codex, &home, &project, "work on the api");

    // peers-mcp found the codex process and registered it as a Codex session.
    let user = env.user_client();
    let api_peer = net.wait_registered("api", Duration::from_secs(30));
    assert_eq!(api_peer.agent, Agent::Codex, "{api_peer:?}");
    assert_eq!(
        api_peer.claude_pid,
        session.pid(),
        "the codex process is the session"
    );

    // The shell call is running: send now.
    assert!(
        api.wait_main_requests(1, Duration::from_secs(30)),
        "no model request"
    );
    let sent = net.send_from_web("api", "ping from web");

    // Mid-turn: the next request (after the shell call) shows the mail as a developer
    // message, naming the tools as Codex offers them.
    let shown = api
        .wait_for_input(Duration::from_secs(30), "ping from web")
        .expect("the mail never reached the model");
    let dev = developer_texts(&shown).join("\n");
    assert!(dev.contains("ping from web"), "{dev}");
    assert!(dev.contains("mcp__peers.send_message"), "{dev}");
    assert!(!dev.contains("mcp__peers__send_message"), "{dev}");
    let status = rt.block_on(user.message_status(sent.message_id)).unwrap();
    assert_eq!(status.status, MessageState::Delivered);
    assert_eq!(status.delivered_via.as_deref(), Some("PostToolUse"));

    // The reply went out through the namespace tool.
    assert!(
        session.wait_timeout(Duration::from_secs(60)).is_some(),
        "codex exec did not finish"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        let c = rt.block_on(web.client.claim(&Default::default())).unwrap();
        got = c.messages;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        got.iter().any(|m| m.body == "pong from codex"),
        "the reply never came: {got:?}"
    );
    let _ = rt.block_on(deliver_all(&web.client, "test"));
}

/// A private tmux server running one command; killed on drop.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn start(socket: std::path::PathBuf, script: &std::path::Path) -> Option<Tmux> {
        let ok = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["new-session", "-d", "-x", "200", "-y", "50"])
            .arg(script)
            .status()
            .ok()?
            .success();
        ok.then_some(Tmux { socket })
    }

    fn send(&self, keys: &[&str]) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .status();
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

#[test]
fn idle_interactive_codex_session_is_woken_by_mail() {
    let name = "idle_interactive_codex_session_is_woken_by_mail";
    let Some(codex) = codex_or_skip(name) else {
        return;
    };
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED {name}: tmux is not installed (the interactive Codex TUI runs in it)");
        return;
    }
    let net = Net::start();
    let (env, rt) = (&net.env, &net.rt);

    // One short first turn, then idle; the wake's turn answers.
    let api = FakeOpenAi::start(vec![Reply::text("first turn done"), Reply::text("woken")]);
    let home = codex_home(env, &api);
    let project = net.project("api");
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in env.vars() {
        script.push_str(&format!("export {k}='{v}'\n"));
    }
    script.push_str(&format!(
        "export CODEX_HOME='{}' FAKE_API_KEY=sk-test\ncd '{}'\nexec '{}' --no-alt-screen \
         --dangerously-bypass-approvals-and-sandbox\n",
        home.display(),
        project.display(),
        codex.display()
    ));
    let script_path = env.dir.path().join("codex-tui.sh");
    std::fs::write(&script_path, script).unwrap();
    std::fs::set_permissions(
        &script_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let tmux = Tmux::start(env.dir.path().join("tmux.sock"), &script_path).expect("start tmux");

    // Wait for the session to register, then run one turn so that its Stop arms the waiter.
    let user = env.user_client();
    assert_eq!(
        net.wait_registered("api", Duration::from_secs(30)).agent,
        Agent::Codex
    );
    std::thread::sleep(Duration::from_secs(2));
    tmux.send(&["-l", "hello"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux.send(&["Enter"]);
    assert!(
        api.wait_main_requests(1, Duration::from_secs(30)),
        "the first turn never reached the model"
    );
    // The Stop hook marks the session idle and starts the Codex waiter; give the waiter a
    // moment to start its long poll, then send once.
    let turn_file = env.state_dir.join(format!(
        "hook-turn-{}",
        net.wait_registered("api", Duration::from_secs(5))
            .claude_pid
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&turn_file).is_ok_and(|t| t.starts_with("idle")) {
        assert!(Instant::now() < deadline, "the first turn never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let sent = net.send_from_web("api", "ping from web");
    // The sender is told the idle session can be woken (its waiter is armed).
    assert!(sent.recipient_can_wake, "no waiter armed: {sent:?}");
    // `codex queue` starts a new turn whose user message is the framed mail.
    let woken = api
        .wait_for_input(Duration::from_secs(40), "ping from web")
        .expect("the idle Codex session was not woken by mail");
    let users: Vec<String> = woken["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["role"] == "user")
        .map(|i| i["content"].to_string())
        .collect();
    assert!(
        users.iter().any(|u| u.contains("peer-message")),
        "the wake is not a user turn carrying the mail: {users:?}"
    );
    // Acked once `codex queue` returned.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = rt.block_on(user.message_status(sent.message_id)).unwrap();
        if status.status == MessageState::Delivered {
            assert_eq!(status.delivered_via.as_deref(), Some("wake"), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never acked: {status:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(tmux);
}
