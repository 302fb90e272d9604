//! With the real Claude Code CLI (`PEERS_CLAUDE_BIN`, or the pinned copy under
//! `target/claude-code`; skipped loudly when neither exists): after `peers install`,
//! `claude mcp list` shows `peers` connected, and a headless `claude -p` session in that HOME
//! runs the hooks and gets mail mid-turn.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::util::{assert_contains, peers, peers_cmd, project, wait_until};
use peers_testkit::claude::{FakeApi, Gate, Reply, Step, claude_or_skip, serial};
use peers_testkit::{BrokerProcess, TestEnv, bin};
use serde_json::json;

const LONG: Duration = Duration::from_secs(90);

/// A directory holding only a `claude` symlink, for PATH.
fn claude_dir(env: &TestEnv, claude: &Path) -> PathBuf {
    let d = env.dir.path().join("claudebin");
    std::fs::create_dir_all(&d).unwrap();
    let link = d.join("claude");
    if !link.exists() {
        std::os::unix::fs::symlink(claude, &link).unwrap();
    }
    d
}

/// What Claude Code needs besides the environment's own variables.
fn claude_vars(env: &TestEnv, path: &str) -> Vec<(String, String)> {
    let mut v = env.vars();
    v.extend(
        [
            ("PATH", path),
            ("LANG", "C.UTF-8"),
            ("TERM", "xterm-256color"),
            ("SHELL", "/bin/bash"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("ANTHROPIC_API_KEY", "sk-test"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    v
}

fn seed_claude_json(env: &TestEnv, trusted: &[&Path]) {
    let mut projects = serde_json::Map::new();
    for p in trusted {
        projects.insert(
            p.display().to_string(),
            json!({"hasTrustDialogAccepted": true, "hasCompletedProjectOnboarding": true}),
        );
    }
    std::fs::write(
        env.home.join(".claude.json"),
        serde_json::to_vec_pretty(&json!({"hasCompletedOnboarding": true, "projects": projects}))
            .unwrap(),
    )
    .unwrap();
}

/// What a headless-session test starts with: the client (`None`, after saying SKIPPED,
/// without one), the serial lock, an environment with its broker, and a project `proj` the
/// client trusts: `(claude, serial, env, proj, broker)`.
fn trusted_project(
    test: &str,
) -> Option<(
    PathBuf,
    MutexGuard<'static, ()>,
    TestEnv,
    PathBuf,
    BrokerProcess,
)> {
    let claude = claude_or_skip(test)?;
    let serial = serial();
    let env = TestEnv::new();
    let proj = std::fs::canonicalize(project(&env, "proj")).unwrap();
    let broker = start_broker(&env);
    seed_claude_json(&env, &[&proj]);
    Some((claude, serial, env, proj, broker))
}

fn start_broker(env: &TestEnv) -> BrokerProcess {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(BrokerProcess::start(env))
}

/// A claude process group killed on drop.
struct Claude(Option<Child>);

impl Claude {
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while let Some(c) = self.0.as_mut() {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Claude {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SAFETY: kill(2) of the process group this test created.
            unsafe { libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn install_through_the_claude_cli_and_mcp_list_shows_peers_connected() {
    let Some(claude) =
        claude_or_skip("install_through_the_claude_cli_and_mcp_list_shows_peers_connected")
    else {
        return;
    };
    let _serial = serial();
    let env = TestEnv::new();
    let cwd = project(&env, "proj");
    let _broker = start_broker(&env);
    seed_claude_json(&env, &[]);
    let path = format!("{}:/usr/bin:/bin", claude_dir(&env, &claude).display());

    let run = |args: &[&str]| -> crate::util::Run {
        let mut c = peers_cmd(&env, &cwd, args);
        c.envs(claude_vars(&env, &path));
        c.output().unwrap().into()
    };
    let out = run(&["install"]).ok();
    assert!(
        out.stdout
            .contains("registered with `claude mcp add --scope user peers --"),
        "{}",
        out.stdout
    );
    let cj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.home.join(".claude.json")).unwrap()).unwrap();
    assert_eq!(
        cj["mcpServers"]["peers"]["command"],
        bin("peers-mcp").display().to_string()
    );
    let again = run(&["install"]).ok();
    assert_contains(&again.stdout, "nothing to change");

    let list = Command::new(&claude)
        .args(["mcp", "list"])
        .current_dir(&cwd)
        .env_clear()
        .envs(claude_vars(&env, &path))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("peers:"))
        .unwrap_or_else(|| panic!("claude mcp list does not list peers:\n{text}"));
    assert!(line.contains("Connected"), "{line}");

    let doc = run(&["doctor"]);
    assert_eq!(doc.code, 0, "{}", doc.stdout);
    assert!(doc.stdout.contains("✓ claude mcp list"), "{}", doc.stdout);

    let un = run(&["uninstall"]).ok();
    assert_contains(&un.stdout, "claude mcp remove --scope user peers");
    let cj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.home.join(".claude.json")).unwrap()).unwrap();
    assert!(cj["mcpServers"].get("peers").is_none(), "{cj}");
    assert!(!env.home.join(".claude/settings.json").exists());
}

#[test]
fn a_headless_session_after_install_runs_the_hooks() {
    let Some((claude, _serial, env, proj, _broker)) =
        trusted_project("a_headless_session_after_install_runs_the_hooks")
    else {
        return;
    };
    // Installed the way a user without the claude CLI on PATH would: files written directly.
    let out = peers(&env, &proj, &["install"]).ok();
    assert!(out.stdout.contains(".claude.json"), "{}", out.stdout);

    mail_reaches_a_headless_session(&claude, &env, &proj, &[], "/usr/bin:/bin");
}

/// Runs `claude -p` in `proj` against a fake model that makes one Bash call; sends the session
/// mail once its turn runs and checks the PostToolUse hook showed it (and SessionStart ran).
fn mail_reaches_a_headless_session(
    claude: &Path,
    env: &TestEnv,
    proj: &Path,
    extra_args: &[&str],
    path: &str,
) {
    let gate = Gate::new();
    let fake = FakeApi::start(
        "proj",
        vec![
            Step::after(&gate, LONG, Reply::bash("echo working")),
            Step::text("done"),
        ],
    );
    let mut vars = claude_vars(env, path);
    vars.push(("ANTHROPIC_BASE_URL".into(), fake.url()));
    let out_dir = env.dir.path().join("claude-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut session = Claude(Some(
        Command::new(claude)
            .args([
                "-p",
                "do the work",
                "--allowedTools",
                "Bash mcp__peers__send_message",
            ])
            .args(extra_args)
            .current_dir(proj)
            .env_clear()
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out_dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(out_dir.join("stderr")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap(),
    ));

    // The MCP server registers the session.
    wait_until(LONG, "the session registers as `proj`", || {
        let l = peers(env, proj, &["peers", "--json"]);
        l.code == 0 && l.json()["peers"][0]["name"] == "proj"
    });
    // Send once the model is mid-turn (its first request waits at the gate): SessionStart and
    // UserPromptSubmit have run, so the next chance is the PostToolUse hook after its tool call.
    fake.wait_for(LONG, |r| r.main_loop)
        .expect("claude sends its first request");
    let sent = peers(
        env,
        proj,
        &["send", "proj", "hello from the test", "--json"],
    )
    .ok()
    .json();
    let id = sent["message_id"].to_string();
    gate.open();

    // The PostToolUse hook puts it in front of the model.
    let rec = fake
        .wait_for_text(LONG, "hello from the test")
        .unwrap_or_else(|| panic!("the mail never reached the model:\n{}", fake.transcript()));
    let t = rec.all_text();
    let at = t.find("hello from the test").unwrap();
    let around = &t[t[..at].char_indices().rev().nth(1500).map_or(0, |(i, _)| i)..];
    assert!(
        t.contains("PostToolUse:Bash hook additional context"),
        "request {} shows the mail, but not as PostToolUse context:\n{around}",
        rec.seq
    );
    // SessionStart ran too: the first request already told the model its peer name.
    let first = fake.main_requests()[0].all_text();
    assert!(
        first.contains("SessionStart hook additional context"),
        "{first}"
    );
    assert!(session.wait(LONG).is_some(), "claude -p did not finish");
    let st = peers(env, proj, &["show", &id, "--json"]).ok().json();
    assert_eq!(st["status"], "delivered");
    assert_eq!(st["delivered_via"], "PostToolUse");
}

#[test]
fn the_plugin_directory_loads_and_its_hooks_run() {
    let Some((claude, _serial, env, proj, _broker)) =
        trusted_project("the_plugin_directory_loads_and_its_hooks_run")
    else {
        return;
    };
    // The repository's plugin files, with the binaries in the plugin's bin/ (not on PATH, and
    // nothing installed into HOME).
    let plugin = env.dir.path().join("plugin");
    peers_testkit::plugin::lay_out(&plugin);
    let plugin_s = plugin.display().to_string();
    mail_reaches_a_headless_session(
        &claude,
        &env,
        &proj,
        &["--plugin-dir", &plugin_s],
        "/usr/bin:/bin",
    );
    assert!(!env.home.join(".claude/settings.json").exists());
}
