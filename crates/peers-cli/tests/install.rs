//! `peers install` / `peers uninstall` on the real binary with a throw-away HOME and no
//! `claude` on PATH (so the MCP entry is written directly).

use std::path::{Path, PathBuf};

use crate::util::{assert_contains, peers, project};
use peers_core::claude_settings;
use peers_testkit::{TestEnv, bin};
use serde_json::{Value, json};

/// Claude Code's own format.
fn render(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap();
    b.push(b'\n');
    b
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parse(p: &Path) -> Value {
    serde_json::from_slice(&read(p)).unwrap()
}

fn backup(p: &Path) -> std::path::PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(".peers-backup");
    s.into()
}

/// Settings a user might have: other hooks (one on an event we also use), other settings,
/// non-ASCII text, a particular key order.
fn user_settings() -> Value {
    json!({
        "$schema": "https://json.schemastore.org/claude-code-settings.json",
        "permissions": {"allow": ["Bash(npm test:*)"], "deny": []},
        "hooks": {
            "PostToolUse": [
                {"matcher": "Edit|Write", "hooks": [{"type": "command", "command": "prettier --write \"$FILE\"", "timeout": 30}]}
            ],
            "PreToolUse": [
                {"matcher": "Bash", "hooks": [{"type": "command", "command": "/usr/local/bin/guard"}]}
            ]
        },
        "env": {"GREETING": "grüß dich ✓"},
        "model": "opus",
        "alwaysThinkingEnabled": true
    })
}

fn claude_json() -> Value {
    json!({
        "numStartups": 12,
        "hasCompletedOnboarding": true,
        "projects": {"/home/me/proj": {"allowedTools": [], "hasTrustDialogAccepted": true}},
        "mcpServers": {"github": {"type": "stdio", "command": "gh-mcp", "args": ["--stdio"], "env": {}}},
        "userID": "abc"
    })
}

/// The permissions.allow entries install adds.
fn ours_allowed() -> Vec<String> {
    claude_settings::allowed_tools(claude_settings::MCP_TOOL_PREFIX)
}

/// Removes our hooks (whatever runs peers-deliver) and groups/events left empty, and our
/// permissions.allow entries.
fn without_ours(mut v: Value) -> Value {
    if let Some(allow) = v["permissions"]["allow"].as_array_mut() {
        allow.retain(|e| !ours_allowed().iter().any(|o| o == e));
    }
    let hooks = v["hooks"].as_object_mut().unwrap();
    for groups in hooks.values_mut() {
        let arr = groups.as_array_mut().unwrap();
        arr.retain(|g| {
            !g["hooks"].as_array().unwrap().iter().any(|h| {
                h["command"]
                    .as_str()
                    .unwrap()
                    .starts_with(&*bin("peers-deliver").to_string_lossy())
            })
        });
    }
    hooks.retain(|_, g| !g.as_array().unwrap().is_empty());
    v
}

/// A fresh environment, its project `name`, and the path of the user's Claude Code settings
/// file (not created): `(env, cwd, settings)`.
fn user_home(name: &str) -> (TestEnv, PathBuf, PathBuf) {
    let env = TestEnv::new();
    let cwd = project(&env, name);
    let settings = env.home.join(".claude/settings.json");
    (env, cwd, settings)
}

#[test]
fn user_install_keeps_everything_else_is_idempotent_and_uninstall_restores() {
    let (env, cwd, settings) = user_home("somewhere");
    let mcp_file = env.home.join(".claude.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let orig_settings = render(&user_settings());
    let orig_claude = render(&claude_json());
    std::fs::write(&settings, &orig_settings).unwrap();
    std::fs::write(&mcp_file, &orig_claude).unwrap();

    // --dry-run writes nothing, and says what it would do.
    let dry = peers(&env, &cwd, &["install", "--dry-run"]).ok();
    assert!(dry.stdout.contains("would"), "{}", dry.stdout);
    assert_contains(&dry.stdout, "peers-deliver --wait");
    assert_eq!(read(&settings), orig_settings);
    assert_eq!(read(&mcp_file), orig_claude);
    assert!(!backup(&settings).exists() && !backup(&mcp_file).exists());

    let out = peers(&env, &cwd, &["install"]).ok();
    assert!(
        out.stdout.contains(&mcp_file.display().to_string())
            && out.stdout.contains("claude CLI is not on PATH"),
        "install must say how the MCP server was registered:\n{}",
        out.stdout
    );

    // The hooks: the user's all still there, untouched; ours appended, with absolute paths.
    let installed = parse(&settings);
    let deliver = bin("peers-deliver");
    let ours = claude_settings::hooks(&deliver);
    for (event, groups) in ours.as_object().unwrap() {
        let list = installed["hooks"][event].as_array().unwrap();
        let tail = &list[list.len() - groups.as_array().unwrap().len()..];
        assert_eq!(tail, groups.as_array().unwrap().as_slice(), "{event}");
    }
    assert_eq!(
        installed["hooks"]["PostToolUse"][0],
        user_settings()["hooks"]["PostToolUse"][0]
    );
    assert!(Path::new(deliver.to_str().unwrap()).is_absolute());
    // Byte for byte where untouched: taking our entries out gives back the original text.
    assert_eq!(
        String::from_utf8(render(&without_ours(installed.clone()))).unwrap(),
        String::from_utf8(orig_settings.clone()).unwrap()
    );
    // Key order is kept.
    let keys: Vec<&String> = installed.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "$schema",
            "permissions",
            "hooks",
            "env",
            "model",
            "alwaysThinkingEnabled"
        ]
    );
    assert_eq!(
        read(&backup(&settings)),
        orig_settings,
        "backup of the original"
    );

    // The MCP entry, in the top-level mcpServers of ~/.claude.json, next to the user's.
    let cj = parse(&mcp_file);
    assert_eq!(
        cj["mcpServers"]["peers"],
        claude_settings::mcp_server(&bin("peers-mcp"))
    );
    assert_eq!(
        cj["mcpServers"]["github"],
        claude_json()["mcpServers"]["github"]
    );
    assert_eq!(cj["projects"], claude_json()["projects"]);
    assert_eq!(read(&backup(&mcp_file)), orig_claude);

    // A second install changes nothing, byte for byte.
    let s1 = read(&settings);
    let m1 = read(&mcp_file);
    let again = peers(&env, &cwd, &["install"]).ok();
    assert_contains(&again.stdout, "nothing to change");
    assert_eq!(read(&settings), s1);
    assert_eq!(read(&mcp_file), m1);
    assert_eq!(
        read(&backup(&settings)),
        orig_settings,
        "the backup is written once"
    );

    // uninstall --dry-run writes nothing.
    peers(&env, &cwd, &["uninstall", "--dry-run"]).ok();
    assert_eq!(read(&settings), s1);
    assert_eq!(read(&mcp_file), m1);

    // uninstall restores both files exactly.
    let un = peers(&env, &cwd, &["uninstall"]).ok();
    assert!(un.stdout.contains("restored"), "{}", un.stdout);
    assert_eq!(read(&settings), orig_settings);
    assert_eq!(read(&mcp_file), orig_claude);
    assert!(!backup(&settings).exists() && !backup(&mcp_file).exists());

    // And a second uninstall finds nothing to do.
    let un2 = peers(&env, &cwd, &["uninstall"]).ok();
    assert_contains(&un2.stdout, "none of peers' hooks");
    assert_eq!(read(&settings), orig_settings);
}

#[test]
fn uninstall_restores_odd_formatting_byte_for_byte() {
    let (env, cwd, settings) = user_home("p");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    // Four-space indent, no trailing newline, an existing Stop hook of the user's.
    let odd = "{\n    \"model\": \"sonnet\",\n    \"hooks\": {\"Stop\": [{\"hooks\": [{\"type\": \"command\", \"command\": \"notify-send done\"}]}]}\n}";
    std::fs::write(&settings, odd).unwrap();
    peers(&env, &cwd, &["install"]).ok();
    let installed = parse(&settings);
    let stop = installed["hooks"]["Stop"].as_array().unwrap();
    assert_eq!(stop[0]["hooks"][0]["command"], "notify-send done");
    assert_eq!(stop.len(), 2);
    peers(&env, &cwd, &["uninstall"]).ok();
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), odd);
}

#[test]
fn a_fresh_home_gets_new_files_and_uninstall_leaves_none() {
    let (env, cwd, settings) = user_home("p");
    let mcp_file = env.home.join(".claude.json");
    peers(&env, &cwd, &["install"]).ok();
    let mut want = claude_settings::settings(&bin("peers-deliver"));
    want["permissions"] = json!({ "allow": ours_allowed() });
    assert_eq!(parse(&settings), want);
    assert_eq!(
        parse(&mcp_file),
        claude_settings::mcp_config(&bin("peers-mcp"))
    );
    assert!(!backup(&settings).exists());
    peers(&env, &cwd, &["uninstall"]).ok();
    assert!(
        !settings.exists(),
        "install created it, uninstall removes it"
    );
    assert!(!mcp_file.exists());
}

#[test]
fn uninstall_keeps_changes_made_after_install() {
    let (env, cwd, settings) = user_home("p");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, render(&user_settings())).unwrap();
    peers(&env, &cwd, &["install"]).ok();
    let mut v = parse(&settings);
    v["theme"] = json!("dark");
    std::fs::write(&settings, render(&v)).unwrap();
    peers(&env, &cwd, &["uninstall"]).ok();
    let mut want = user_settings();
    want["theme"] = json!("dark");
    assert_eq!(std::fs::read(&settings).unwrap(), render(&want));
}

#[test]
fn project_scope_writes_the_project_files_only() {
    let env = TestEnv::new();
    let proj = project(&env, "proj");
    std::fs::create_dir_all(proj.join(".claude")).unwrap();
    let local = proj.join(".claude/settings.json");
    let orig = render(&json!({"permissions": {"allow": ["Read"]}}));
    std::fs::write(&local, &orig).unwrap();

    let dry = peers(&env, &proj, &["install", "--scope", "project", "--dry-run"]).ok();
    assert!(dry.stdout.contains(".mcp.json"), "{}", dry.stdout);
    assert!(!proj.join(".mcp.json").exists());
    assert_eq!(read(&local), orig);

    let out = peers(&env, &proj, &["install", "--scope", "project"]).ok();
    assert!(out.stdout.contains(".mcp.json"), "{}", out.stdout);
    assert_eq!(
        parse(&proj.join(".mcp.json")),
        claude_settings::mcp_config(&bin("peers-mcp"))
    );
    let v = parse(&local);
    let mut allow = vec!["Read".to_string()];
    allow.extend(ours_allowed());
    assert_eq!(v["permissions"], json!({ "allow": allow }));
    assert_eq!(v["hooks"], claude_settings::hooks(&bin("peers-deliver")));
    // Nothing in HOME.
    assert!(!env.home.join(".claude/settings.json").exists());
    assert!(!env.home.join(".claude.json").exists());

    peers(&env, &proj, &["uninstall", "--scope", "project"]).ok();
    assert_eq!(read(&local), orig);
    assert!(!proj.join(".mcp.json").exists());
}

#[test]
fn broken_settings_json_is_refused_not_overwritten() {
    let (env, cwd, settings) = user_home("p");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, "{\"model\": ").unwrap();
    let out = peers(&env, &cwd, &["install"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not valid JSON"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{\"model\": ");
}

#[test]
fn install_allows_the_peers_tools_no_allow_skips_and_uninstall_keeps_the_users_own() {
    let (env, cwd, settings) = user_home("p");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    // The user already allowed one peers tool and something else.
    let orig = render(&json!({
        "permissions": {"allow": ["Read", "mcp__peers__whoami"]},
        "model": "opus"
    }));
    std::fs::write(&settings, &orig).unwrap();

    let dry = peers(&env, &cwd, &["install", "--dry-run"]).ok();
    assert!(
        dry.stdout
            .contains("permissions: would add to permissions.allow")
            && dry.stdout.contains("+ mcp__peers__send_message")
            && !dry.stdout.contains("+ mcp__peers__whoami"),
        "{}",
        dry.stdout
    );
    assert_eq!(read(&settings), orig);

    peers(&env, &cwd, &["install"]).ok();
    let v = parse(&settings);
    let mut want = vec!["Read".to_string(), "mcp__peers__whoami".to_string()];
    want.extend(
        ours_allowed()
            .into_iter()
            .filter(|t| t != "mcp__peers__whoami"),
    );
    assert_eq!(v["permissions"]["allow"], json!(want));
    let again = peers(&env, &cwd, &["install"]).ok();
    assert_contains(&again.stdout, "already in permissions.allow");
    assert_eq!(parse(&settings), v, "idempotent");

    // A change after install: uninstall cannot restore the bytes, and still keeps the user's
    // own whoami entry.
    let mut changed = v.clone();
    changed["theme"] = json!("dark");
    std::fs::write(&settings, render(&changed)).unwrap();
    let un = peers(&env, &cwd, &["uninstall"]).ok();
    assert!(
        un.stdout.contains("- mcp__peers__send_message")
            && !un.stdout.contains("- mcp__peers__whoami"),
        "{}",
        un.stdout
    );
    assert_eq!(
        parse(&settings),
        json!({"permissions": {"allow": ["Read", "mcp__peers__whoami"]}, "model": "opus", "theme": "dark"})
    );

    // --no-allow: hooks, no permissions; says what that means.
    let bare = TestEnv::new();
    let cwd = project(&bare, "p");
    let out = peers(&bare, &cwd, &["install", "--no-allow"]).ok();
    assert!(
        out.stdout.contains("not added (--no-allow)") && out.stdout.contains("prompt"),
        "{}",
        out.stdout
    );
    let v = parse(&bare.home.join(".claude/settings.json"));
    assert!(v.get("permissions").is_none(), "{v}");
    assert_eq!(v["hooks"], claude_settings::hooks(&bin("peers-deliver")));
}

#[test]
fn uninstall_help_says_where_from() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    let out = peers(&env, &cwd, &["uninstall", "--help"]).ok();
    assert_contains(&out.stdout, "Where to uninstall from");
    let out = peers(&env, &cwd, &["install", "--help"]).ok();
    assert!(out.stdout.contains("--no-allow"), "{}", out.stdout);
}

/// `peers install --agent codex` (and uninstall) with `CODEX_HOME` set to `codex_home`.
fn codex_peers(env: &TestEnv, cwd: &Path, codex_home: &Path, args: &[&str]) -> crate::util::Run {
    crate::util::peers_cmd(env, cwd, args)
        .env("CODEX_HOME", codex_home)
        .output()
        .expect("run peers")
        .into()
}

/// The hooks the real Codex reports for `cwd`, as `(command, trustStatus)`, sorted.
fn codex_trust(
    codex: &Path,
    env: &TestEnv,
    codex_home: &Path,
    cwd: &Path,
) -> Vec<(String, String)> {
    let hooks = peers_testkit::fake_openai::hooks_list(codex, &env.home, codex_home, cwd)
        .expect("codex app-server answered hooks/list");
    let mut out: Vec<(String, String)> = hooks
        .iter()
        .map(|h| {
            (
                format!(
                    "{} {}",
                    h["eventName"].as_str().unwrap_or("?"),
                    h["command"].as_str().unwrap_or("?")
                ),
                h["trustStatus"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Install records trust for the peers hooks the way Codex checks it, keeps the trust the user
/// gave their own hooks (renumbered when ours go from between them), and uninstall gives the
/// original bytes back. The real Codex (its app server's `hooks/list`) is the judge; CODEX_HOME
/// is a symbolic link, as Codex resolves it.
#[test]
fn codex_install_records_hook_trust_codex_accepts_and_uninstall_restores() {
    let name = "codex_install_records_hook_trust_codex_accepts_and_uninstall_restores";
    let Some(codex) = peers_testkit::fake_openai::codex_or_skip(name) else {
        return;
    };
    let env = TestEnv::new();
    let cwd = project(&env, "proj");
    let real = env.dir.path().join("codex-home");
    std::fs::create_dir_all(&real).unwrap();
    let link = env.dir.path().join("codex-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let config = real.join("config.toml");

    // The user's own Stop hook, trusted as Codex's /hooks screen would record it.
    let mine = "# mine\nmodel = \"o4\"\n\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = \"say done\"\n";
    std::fs::write(&config, mine).unwrap();
    let hooks = peers_testkit::fake_openai::hooks_list(&codex, &env.home, &link, &cwd).unwrap();
    let (key, hash) = (
        hooks[0]["key"].as_str().unwrap(),
        hooks[0]["currentHash"].as_str().unwrap(),
    );
    let orig = format!("{mine}\n[hooks.state.\"{key}\"]\ntrusted_hash = \"{hash}\"\n");
    std::fs::write(&config, &orig).unwrap();
    assert_eq!(
        codex_trust(&codex, &env, &link, &cwd),
        vec![("stop say done".to_string(), "trusted".to_string())]
    );

    // After install Codex trusts all four peers hooks, and still the user's.
    let out = codex_peers(&env, &cwd, &link, &["install", "--agent", "codex"]).ok();
    assert_contains(&out.stdout, "trusted");
    let deliver = bin("peers-deliver").display().to_string();
    let mut want: Vec<(String, String)> =
        ["postToolUse", "sessionStart", "stop", "userPromptSubmit"]
            .iter()
            .map(|e| (format!("{e} {deliver}"), "trusted".to_string()))
            .collect();
    want.push(("stop say done".into(), "trusted".into()));
    want.sort();
    assert_eq!(codex_trust(&codex, &env, &link, &cwd), want);
    let doctor = codex_peers(&env, &cwd, &link, &["doctor"]);
    assert_contains(&doctor.stdout, "4 hooks, trusted");
    // A trust entry that no longer matches (Codex: "modified") is what doctor warns about.
    let installed = std::fs::read_to_string(&config).unwrap();
    let post = peers_testkit::fake_openai::hooks_list(&codex, &env.home, &link, &cwd)
        .unwrap()
        .into_iter()
        .find(|h| h["eventName"] == "postToolUse")
        .unwrap();
    let stale = installed.replace(post["currentHash"].as_str().unwrap(), "sha256:0");
    assert_ne!(stale, installed);
    std::fs::write(&config, stale).unwrap();
    let doctor = codex_peers(&env, &cwd, &link, &["doctor"]);
    assert_contains(&doctor.stdout, "4 of 4 hooks, 3 of them trusted");
    std::fs::write(&config, &installed).unwrap();

    // Uninstall right away: the original bytes.
    codex_peers(&env, &cwd, &link, &["uninstall", "--agent", "codex"]).ok();
    assert_eq!(std::fs::read_to_string(&config).unwrap(), orig);

    // Install again, then the user adds (and trusts) a second Stop hook after ours: when
    // uninstall takes ours out from between, the user's trust follows their hook.
    codex_peers(&env, &cwd, &link, &["install", "--agent", "codex"]).ok();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = \"say later\"\n",
    );
    std::fs::write(&config, &text).unwrap();
    let later = peers_testkit::fake_openai::hooks_list(&codex, &env.home, &link, &cwd)
        .unwrap()
        .into_iter()
        .find(|h| h["command"] == "say later")
        .unwrap();
    text.push_str(&format!(
        "\n[hooks.state.\"{}\"]\ntrusted_hash = \"{}\"\n",
        later["key"].as_str().unwrap(),
        later["currentHash"].as_str().unwrap()
    ));
    std::fs::write(&config, &text).unwrap();
    codex_peers(&env, &cwd, &link, &["uninstall", "--agent", "codex"]).ok();
    assert_eq!(
        codex_trust(&codex, &env, &link, &cwd),
        vec![
            ("stop say done".to_string(), "trusted".to_string()),
            ("stop say later".to_string(), "trusted".to_string()),
        ]
    );
}
