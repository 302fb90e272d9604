//! The harness on its own: a hook that is a tiny shell script, no peers binaries.

use std::time::Duration;

use peers_testkit::claude::{FakeApi, Headless, SessionSpec, Step, claude_or_skip, serial};
use serde_json::json;

#[test]
fn post_tool_use_context_reaches_the_model() {
    let _serial = serial();
    let Some(claude) = claude_or_skip("post_tool_use_context_reaches_the_model") else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("peers-e2e-")
        .tempdir()
        .unwrap();
    let hook = tmp.path().join("hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\ncat >/dev/null\nprintf '%s' '{\"hookSpecificOutput\":{\"hookEventName\":\"PostToolUse\",\"additionalContext\":\"smoke-context-4711\"}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let api = FakeApi::start(
        "smoke",
        vec![Step::bash("echo hello-from-bash"), Step::text("all done")],
    );
    let mut spec = SessionSpec::new(
        "smoke",
        &claude,
        &tmp.path().join("proj"),
        &tmp.path().join("session"),
        &api.url(),
    );
    spec.settings = Some(json!({"hooks": {"PostToolUse": [{"matcher": "*", "hooks": [
        {"type": "command", "command": hook.to_string_lossy(), "timeout": 10}
    ]}]}}));
    spec.allowed_tools = vec!["Bash".into()];

    let mut run = Headless::start(&spec, "run the smoke step").unwrap();
    let out = run.wait(Duration::from_secs(120)).unwrap();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "claude -p failed: {out:?}\n{}",
        api.transcript()
    );
    assert!(out.stdout.contains("all done"), "stdout: {}", out.stdout);

    let mains = api.main_requests();
    assert!(mains.len() >= 2, "{}", api.transcript());
    let after_tool = api
        .wait_for(Duration::from_secs(1), |r| {
            r.main_loop && r.latest_text().contains("hello-from-bash")
        })
        .unwrap_or_else(|| panic!("no request carried the Bash result\n{}", api.transcript()));
    api.dump_if_asked();
    let text = after_tool.latest_text();
    assert!(
        text.contains("PostToolUse:Bash hook additional context: smoke-context-4711"),
        "the hook's context is not beside the tool result:\n{text}"
    );
}
