//! Issue 17: the real Gemini CLI (`@google/gemini-cli` 0.61.0, pinned, from npm) against the
//! project's scripted fake of the Gemini API (`peers_testkit::fake_gemini`), set up by the
//! real `peers install --agent gemini`. The other side is a session registered straight with
//! the broker (a stand-in), sending and reading mail over the real HTTP API.

use std::process::{Command, Stdio};
use std::time::Duration;

use peers_core::wire::{Agent, MessageState};
use peers_testkit::fake_gemini::{FakeGemini, Reply, gemini_js};

mod net;
use net::Net;
use peers_testkit::ChildGuard;
use serde_json::json;

#[test]
fn gemini_session_gets_mail_mid_turn_and_replies() {
    let name = "gemini_session_gets_mail_mid_turn_and_replies";
    let Some(js) = gemini_js() else {
        eprintln!(
            "SKIPPED {name}: no Gemini CLI (PEERS_GEMINI_JS unset and no target/gemini-cli \
             install; `cargo xtask test` installs it)"
        );
        println!("E2E-SKIPPED {name}");
        return;
    };
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED {name}: node is not installed (Gemini CLI runs on it)");
        return;
    }
    let net = Net::start();
    let (env, rt, web) = (&net.env, &net.rt, &net.web);

    // The user's own settings (API key auth, for the fake), then `peers install`; the test
    // also allows the shell tool for its scripted model.
    let gemini_dir = env.home.join(".gemini");
    std::fs::create_dir_all(gemini_dir.join("policies")).unwrap();
    std::fs::write(
        gemini_dir.join("settings.json"),
        json!({"security": {"auth": {"selectedType": "gemini-api-key"}}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        gemini_dir.join("policies/test-shell.toml"),
        "[[rule]]\ntoolName = [\"run_shell_command\"]\ndecision = \"allow\"\npriority = 100\n",
    )
    .unwrap();
    let out = env
        .apply(&mut Command::new(peers_testkit::bin("peers")))
        .args(["install", "--agent", "gemini"])
        .output()
        .unwrap();
    assert!(out.status.success(), "peers install: {out:?}");

    let api = FakeGemini::start(vec![
        Reply::shell("sleep 4"),
        Reply::call(
            "mcp_peers_send_message",
            json!({"to": web.reg.name, "message": "pong from gemini"}),
        ),
        Reply::text("done"),
    ]);
    let project = net.project("api");
    let mut session = ChildGuard::new(
        env.apply(&mut Command::new("node"))
            .arg(&js)
            .args([
                "--skip-trust",
                "-m",
                "gemini-2.5-pro",
                "-p",
                "work on the api",
            ])
            .current_dir(&project)
            .env("GOOGLE_GEMINI_BASE_URL", api.url())
            .env("GEMINI_API_KEY", "test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let user = env.user_client();
    let api_peer = net.wait_registered("api", Duration::from_secs(60));
    assert_eq!(api_peer.agent, Agent::Gemini, "{api_peer:?}");

    assert!(
        api.wait_main_requests(1, Duration::from_secs(60)),
        "no model request"
    );
    let sent = net.send_from_web("api", "ping from web");
    // Gemini CLI has no wake path: no promise of one.
    assert!(!sent.recipient_can_wake, "{sent:?}");

    // AfterTool: the mail is appended to the tool's output as <hook_context>, naming the
    // tools as Gemini CLI does.
    let shown = api
        .wait_for_contents(Duration::from_secs(30), "ping from web")
        .expect("the mail never reached the model");
    let contents = shown["contents"].to_string();
    assert!(contents.contains("<hook_context>"), "{contents}");
    assert!(contents.contains("functionResponse"), "{contents}");
    assert!(contents.contains("mcp_peers_send_message"), "{contents}");
    let status = rt.block_on(user.message_status(sent.message_id)).unwrap();
    assert_eq!(status.status, MessageState::Delivered);
    assert_eq!(status.delivered_via.as_deref(), Some("AfterTool"));

    assert!(
        session.wait_timeout(Duration::from_secs(60)).is_some(),
        "gemini -p did not finish"
    );
    let claimed = rt.block_on(web.client.claim(&Default::default())).unwrap();
    assert!(
        claimed
            .messages
            .iter()
            .any(|m| m.body == "pong from gemini"),
        "the reply never came: {:?}",
        claimed.messages
    );
}
