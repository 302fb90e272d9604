//! `peers doctor` names each fault of a broken set-up and passes on a good one.

use std::path::{Path, PathBuf};

use crate::util::{assert_contains, peers, peers_cmd, plain_path, project};
use peers_core::claude_settings::{self, PLUGIN_TOOL_PREFIX};
use peers_testkit::{BrokerProcess, TestEnv, bin};
use serde_json::json;

#[test]
fn doctor_names_each_fault_of_a_broken_set_up() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    // A secret readable by others, no broker running, hooks pointing at a missing binary.
    let secret = peers_core::paths::secret_file(&env.state_dir);
    peers_core::paths::ensure_secret(&env.state_dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    peers(&env, &cwd, &["install"]).ok();
    let settings = env.home.join(".claude/settings.json");
    let text = std::fs::read_to_string(&settings).unwrap();
    let deliver = bin("peers-deliver").display().to_string();
    std::fs::write(
        &settings,
        text.replace(&deliver, "/nonexistent/bin/peers-deliver"),
    )
    .unwrap();

    let out = peers(&env, &cwd, &["doctor"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let s = &out.stdout;
    // Not running is no fault (a session starts it), but it is said.
    assert!(s.contains("⚠ broker: not running"), "{s}");
    assert!(s.contains("peers broker start"), "{s}");
    assert!(s.contains("✗ secret") && s.contains("mode 0644"), "{s}");
    assert!(
        s.contains(&format!("chmod 600 {}", secret.display())),
        "{s}"
    );
    assert!(
        s.contains("✗ hooks") && s.contains("/nonexistent/bin/peers-deliver, which does not exist"),
        "{s}"
    );
    assert!(
        s.contains("✓ binaries") && s.contains("✓ mcp server"),
        "{s}"
    );

    // The same as JSON.
    let out = peers(&env, &cwd, &["doctor", "--json"]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(v["ok"], false);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"secret") && failed.contains(&"hooks"),
        "{failed:?}"
    );

    // Nothing installed at all: hooks and MCP server are named.
    let bare = TestEnv::new();
    let out = peers(&bare, &project(&bare, "p"), &["doctor"]);
    assert_eq!(out.code, 1);
    assert_contains(&out.stdout, "✗ hooks: no peers hooks");
    assert!(out.stdout.contains("✗ mcp server"), "{}", out.stdout);
    assert!(out.stdout.contains("run `peers install`"), "{}", out.stdout);
}

/// `peers install` done in project `p` of a fresh environment, its broker running:
/// `(env, cwd, broker)`.
async fn installed_with_broker() -> (TestEnv, PathBuf, BrokerProcess) {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    let broker = BrokerProcess::start(&env).await;
    peers(&env, &cwd, &["install"]).ok();
    (env, cwd, broker)
}

#[tokio::test]
async fn doctor_passes_on_a_good_set_up() {
    let (env, cwd, _broker) = installed_with_broker().await;
    let out = peers(&env, &cwd, &["doctor"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    for line in [
        "✓ binaries",
        "✓ broker",
        "✓ secret",
        "✓ hooks",
        "✓ mcp server",
    ] {
        assert!(out.stdout.contains(line), "{line}:\n{}", out.stdout);
    }
    assert!(out.stdout.contains(peers_core::VERSION));
    assert!(!out.stdout.contains('✗'), "{}", out.stdout);
}

#[test]
fn the_first_doctor_after_a_plain_install_has_no_failure() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    peers(&env, &cwd, &["install"]).ok();
    // No broker has run yet: no secret either. Both come with the first session.
    let out = peers(&env, &cwd, &["doctor"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains('✗'), "{}", out.stdout);
    assert_contains(&out.stdout, "⚠ broker: not running");
    assert_contains(&out.stdout, "⚠ secret: no secret file");
    assert!(out.stdout.contains("✓ permissions"), "{}", out.stdout);

    // --no-allow: a warning that says what it costs.
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    peers(&env, &cwd, &["install", "--no-allow"]).ok();
    let out = peers(&env, &cwd, &["doctor"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "⚠ permissions: {} of the peers tools are not in permissions.allow",
            peers_core::claude_settings::TOOLS.len()
        )) && out.stdout.contains("permission prompt nobody sees"),
        "{}",
        out.stdout
    );
}

/// A plugin directory as Claude Code keeps one: the manifest, and the binaries in bin/.
fn plugin_dir(env: &TestEnv) -> std::path::PathBuf {
    let root = env.dir.path().join("plugins/cache/local/peers/0.1.0");
    std::fs::create_dir_all(root.join(".claude-plugin")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(
        root.join(".claude-plugin/plugin.json"),
        r#"{"name": "peers"}"#,
    )
    .unwrap();
    for b in ["peers-deliver", "peers-mcp"] {
        std::os::unix::fs::symlink(bin(b), root.join("bin").join(b)).unwrap();
    }
    root
}

#[test]
fn doctor_recognises_the_plugin_route() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    let root = plugin_dir(&env);
    let settings = env.home.join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, r#"{"enabledPlugins": {"peers@local": true}}"#).unwrap();
    std::fs::create_dir_all(env.home.join(".claude/plugins")).unwrap();
    std::fs::write(
        env.home.join(".claude/plugins/installed_plugins.json"),
        serde_json::to_vec(&json!({"version": 2, "plugins": {"peers@local": [
            {"scope": "user", "installPath": root, "version": "0.1.0"}
        ]}}))
        .unwrap(),
    )
    .unwrap();

    let out = peers(&env, &cwd, &["doctor"]);
    let s = &out.stdout;
    assert_eq!(out.code, 0, "{s}");
    assert!(!s.contains("run `peers install`"), "{s}");
    assert!(s.contains("✓ plugin: peers plugin (peers@local)"), "{s}");
    assert!(s.contains("✓ hooks: from the plugin"), "{s}");
    assert!(s.contains(&format!("✓ mcp server: `peers` comes from the plugin; the model sees its tools as {PLUGIN_TOOL_PREFIX}*")), "{s}");
    assert!(
        s.contains(&format!(
            "⚠ permissions: {} of the plugin's peers tools",
            peers_core::claude_settings::TOOLS.len()
        )) && s.contains("mcp__plugin_peers_peers__send_message"),
        "{s}"
    );

    // With the entries the fix names, nothing is left to warn about permissions.
    std::fs::write(
        &settings,
        serde_json::to_vec(&json!({
            "enabledPlugins": {"peers@local": true},
            "permissions": {"allow": claude_settings::allowed_tools(PLUGIN_TOOL_PREFIX)}
        }))
        .unwrap(),
    )
    .unwrap();
    let out = peers(&env, &cwd, &["doctor"]);
    assert!(out.stdout.contains("✓ permissions"), "{}", out.stdout);

    // Installed as well: every hook would run twice.
    peers(&env, &cwd, &["install"]).ok();
    let out = peers(&env, &cwd, &["doctor"]);
    assert!(
        out.stdout.contains("in the plugin: every hook runs twice")
            && out.stdout.contains("run `peers uninstall`"),
        "{}",
        out.stdout
    );

    // The --plugin-dir route, which no settings file records.
    let bare = TestEnv::new();
    let cwd = project(&bare, "p");
    let root = plugin_dir(&bare);
    let out = peers(
        &bare,
        &cwd,
        &["doctor", "--plugin-dir", root.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_contains(&out.stdout, "✓ plugin: peers plugin (--plugin-dir)");
    let out = peers(
        &bare,
        &cwd,
        &["doctor", "--plugin-dir", cwd.to_str().unwrap()],
    );
    assert!(out.stdout.contains("✗ plugin"), "{}", out.stdout);
}

/// A `claude` stand-in whose `mcp list` starts the peers-mcp that ~/.claude.json names and
/// initializes it, as the real CLI's health check does.
fn fake_claude_cli(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.dir.path().join("fakeclaude");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("claude");
    std::fs::write(
        &script,
        r#"#!/bin/sh
[ "$1 $2" = "mcp list" ] || exit 1
mcp=$(sed -n 's/.*"command": "\(.*peers-mcp\)".*/\1/p' "$HOME/.claude.json" | head -n 1)
printf '%s
' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"0"}}}' | "$mcp" >/dev/null 2>&1
echo "peers: $mcp  - ✓ Connected"
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test]
async fn doctor_leaves_no_ended_session_behind() {
    let (env, cwd, _broker) = installed_with_broker().await;
    let fake = fake_claude_cli(&env);
    let out: crate::util::Run = peers_cmd(&env, &cwd, &["doctor"])
        .env("PATH", format!("{}:{}", fake.display(), plain_path(&env)))
        .output()
        .unwrap()
        .into();
    assert_contains(&out.stdout, "✓ claude mcp list: peers:");
    let all = peers(&env, &cwd, &["peers", "--all", "--json"]).ok().json();
    assert_eq!(
        all["peers"],
        json!([]),
        "doctor's probe registered a session"
    );
    assert!(Path::new(&env.state_dir).exists());
}

/// The probe's peers-mcp (PEERS_PROBE) still answers MCP — with exactly the tools install
/// allows — and registers nothing.
#[tokio::test]
async fn the_probe_serves_every_allowed_tool_and_registers_nothing() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    let _broker = BrokerProcess::start(&env).await;
    let mut cmd = Command::new(bin("peers-mcp"));
    env.apply(&mut cmd)
        .env(claude_settings::PROBE_ENV, "1")
        .current_dir(&cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut mcp = peers_testkit::ChildGuard::new(cmd.spawn().unwrap());
    let mut stdin = mcp.child().stdin.take().unwrap();
    let stdout = mcp.child().stdout.take().unwrap();
    for line in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "probe", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    ] {
        writeln!(stdin, "{line}").unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
                && v["id"] == 2
            {
                let _ = tx.send(v);
                break;
            }
        }
    });
    let listed = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("tools/list answered");
    drop(stdin);
    let mut names: Vec<String> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = claude_settings::TOOLS
        .iter()
        .map(|t| t.to_string())
        .collect();
    want.sort();
    assert_eq!(
        names, want,
        "claude_settings::TOOLS is the server's tool list"
    );
    assert!(
        mcp.wait_timeout(std::time::Duration::from_secs(20))
            .is_some()
    );
    let all = peers(&env, &cwd, &["peers", "--all", "--json"]).ok().json();
    assert_eq!(all["peers"], json!([]));
    assert!(
        !env.state_dir
            .join("sessions")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}

#[test]
fn doctor_names_a_hook_front_without_its_full_hook() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    peers(&env, &cwd, &["install"]).ok();
    // The hooks run a peers-deliver alone in its directory: it would hand every event with
    // mail to a peers-deliver-net that is not there.
    let alone = env.dir.path().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    let front = alone.join("peers-deliver");
    std::fs::copy(bin("peers-deliver"), &front).unwrap();
    let settings = env.home.join(".claude/settings.json");
    let text = std::fs::read_to_string(&settings).unwrap();
    let deliver = bin("peers-deliver").display().to_string();
    std::fs::write(
        &settings,
        text.replace(&deliver, &front.display().to_string()),
    )
    .unwrap();

    let out = peers(&env, &cwd, &["doctor"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let net = alone.join("peers-deliver-net");
    assert_contains(
        &out.stdout,
        &format!(
            "but {} (the full hook it hands mail to) does not exist",
            net.display()
        ),
    );
}
