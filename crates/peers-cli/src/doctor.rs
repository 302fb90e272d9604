//! `peers doctor`: every link of the chain, ✓ / ⚠ / ✗, with the fix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use peers_core::claude_settings::{self, MCP_SERVER_NAME, MCP_TOOL_PREFIX, PLUGIN_TOOL_PREFIX};
use peers_core::{BrokerClient, Config};
use serde::Serialize;

use crate::context::{self, Exit, JsonArg};
use crate::install::InstallScope;
use crate::install::{self, JsonFile};
use crate::shell::first_word;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(
        &mut self,
        check: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.0.push(Check {
            check,
            status,
            detail: detail.into(),
            fix,
        });
    }
    fn ok(&mut self, check: &'static str, detail: impl Into<String>) {
        self.add(check, Status::Ok, detail, None);
    }
    fn fail(&mut self, check: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(check, Status::Fail, detail, Some(fix.into()));
    }
    fn warn(&mut self, check: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(check, Status::Warn, detail, Some(fix.into()));
    }
}

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Check the peers plugin in this directory too (the route `claude --plugin-dir DIR`,
    /// which no settings file records). A plugin enabled in settings is found by itself.
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub output: JsonArg,
}

pub fn run(a: DoctorArgs) -> Result<()> {
    let mut r = Report::default();
    binaries(&mut r);
    match Config::load() {
        Ok(cfg) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            broker(&mut r, &cfg, &rt);
        }
        Err(e) => r.fail(
            "config",
            format!("{e}"),
            "fix the config file or the PEERS_* variable it names",
        ),
    }
    let plugins = plugin(&mut r, a.plugin_dir.as_deref());
    let via_plugin = !plugins.is_empty();
    let hooked = hooks(&mut r, via_plugin);
    let registered = mcp(&mut r, via_plugin);
    permissions(&mut r, hooked || registered, via_plugin);
    claude_cli(&mut r, via_plugin);
    codex(&mut r);
    gemini(&mut r);

    let failed = r.0.iter().any(|c| c.status == Status::Fail);
    if a.output.json {
        context::print_json(&serde_json::json!({"ok": !failed, "checks": r.0}))?;
    } else {
        for c in &r.0 {
            let mark = match c.status {
                Status::Ok => "✓",
                Status::Warn => "⚠",
                Status::Fail => "✗",
                Status::Skip => "-",
            };
            println!("{mark} {}: {}", c.check, c.detail);
            if let Some(f) = &c.fix {
                println!("    fix: {f}");
            }
        }
        if failed {
            println!(
                "\nSome links are broken; fix the ✗ lines above and run `peers doctor` again."
            );
        } else if r.0.iter().any(|c| c.status == Status::Warn) {
            println!("\nAll links work; the ⚠ lines say what to look at.");
        } else {
            println!("\nAll links work.");
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

/// Codex CLI: `[mcp_servers.peers]` and the hooks in `$CODEX_HOME/config.toml`, when Codex is
/// on PATH or that file has them.
fn codex(r: &mut Report) {
    use crate::install::codex;
    let on_path = context::which("codex").is_some();
    let Ok(path) = codex::config_path() else {
        return;
    };
    match codex::installed(&path) {
        Ok(Some(i))
            if i.hooks == codex::EVENTS.len()
                && i.trusted == i.hooks
                && context::is_executable(Path::new(&i.mcp)) =>
        {
            r.ok(
                "codex",
                format!(
                    "{}: the peers MCP server ({}) and {} hooks, trusted",
                    path.display(),
                    i.mcp,
                    i.hooks
                ),
            )
        }
        Ok(Some(i)) => r.warn(
            "codex",
            format!(
                "{}: MCP server {}, {} of {} hooks, {} of them trusted (Codex skips the others)",
                path.display(),
                i.mcp,
                i.hooks,
                codex::EVENTS.len(),
                i.trusted
            ),
            "run `peers install --agent codex`",
        ),
        Ok(None) if on_path => r.warn(
            "codex",
            format!(
                "the codex CLI is on PATH but {} has no peers entries",
                path.display()
            ),
            "run `peers install --agent codex`",
        ),
        Ok(None) => r.add(
            "codex",
            Status::Skip,
            "Codex CLI not found".to_string(),
            None,
        ),
        Err(e) => r.fail("codex", format!("{e}"), format!("fix {}", path.display())),
    }
}

/// Gemini CLI: `mcpServers.peers`, the hooks and the policy file under `~/.gemini`, when
/// Gemini is on PATH or its settings have them.
fn gemini(r: &mut Report) {
    use crate::install::gemini;
    let on_path = context::which("gemini").is_some();
    let Ok(dir) = gemini::dir() else {
        return;
    };
    let settings = gemini::settings_path(&dir);
    match gemini::installed(&dir) {
        Ok((Some(mcp), 4, true)) => r.ok(
            "gemini",
            format!(
                "{}: the peers MCP server ({mcp}), 4 hooks and the policy file",
                settings.display()
            ),
        ),
        Ok((None, 0, false)) if !on_path => r.add(
            "gemini",
            Status::Skip,
            "Gemini CLI not found".to_string(),
            None,
        ),
        Ok((mcp, hooks, policy)) => r.warn(
            "gemini",
            format!(
                "{}: MCP server {}, {hooks} of 4 hooks, policy file {}",
                settings.display(),
                mcp.as_deref().unwrap_or("missing"),
                if policy { "present" } else { "missing" }
            ),
            "run `peers install --agent gemini`",
        ),
        Err(e) => r.fail(
            "gemini",
            format!("{e}"),
            format!("fix {}", settings.display()),
        ),
    }
}

fn binaries(r: &mut Report) {
    let dir = match context::exe_dir() {
        Ok(d) => d,
        Err(e) => {
            r.fail(
                "binaries",
                format!("{e}"),
                "run peers from its install directory",
            );
            return;
        }
    };
    let missing: Vec<&str> = [
        "peers-broker",
        "peers-mcp",
        "peers-deliver",
        "peers-deliver-net",
    ]
    .into_iter()
    .filter(|n| !context::is_executable(&dir.join(n)))
    .collect();
    if missing.is_empty() {
        r.ok(
            "binaries",
            format!(
                "peers-broker, peers-mcp, peers-deliver, peers-deliver-net next to peers in {}",
                dir.display()
            ),
        );
    } else {
        r.fail(
            "binaries",
            format!("missing in {}: {}", dir.display(), missing.join(", ")),
            "install all five binaries together: `cargo xtask install`",
        );
    }
}

fn broker(r: &mut Report, cfg: &Config, rt: &tokio::runtime::Runtime) {
    // Each configured broker on its own, so a dead one behind a live one still shows.
    let probes = context::probe_brokers(cfg, rt);
    let several = probes.len() > 1;
    let any_answers = probes.iter().any(|p| p.health.is_ok());
    for p in &probes {
        let url = &p.url;
        match &p.health {
            Ok(h) if h.version != peers_core::VERSION => r.warn(
                "broker",
                format!(
                    "peers-broker {} answers at {url} (pid {}), but this peers is {}",
                    h.version,
                    h.pid,
                    peers_core::VERSION
                ),
                if cfg.is_remote() {
                    "upgrade the hub to the same version".to_string()
                } else {
                    "restart it: `peers broker stop && peers broker start`".to_string()
                },
            ),
            Ok(h) => r.ok(
                "broker",
                format!(
                    "peers-broker {} answers at {url} (pid {}, up {})",
                    h.version,
                    h.pid,
                    context::duration(h.uptime_ms as i64)
                ),
            ),
            // Clients fail over to the brokers that answer.
            Err(e) if several && any_answers => r.warn(
                "broker",
                format!("{url} does not answer ({e}); clients use the others"),
                "start that broker again, or drop it from `broker_urls`",
            ),
            Err(_) if cfg.is_remote() => r.fail(
                "broker",
                format!("the hub at {url} does not answer"),
                format!(
                    "check that the hub runs and that `broker_url(s)` in {} is right",
                    cfg.config_file.display()
                ),
            ),
            // Not broken: the first Claude Code session with peers starts it.
            Err(_) => r.warn(
                "broker",
                format!(
                    "not running at {url} (a Claude Code session with peers starts it when it \
                     opens)"
                ),
                "nothing to do; or start it now with `peers broker start`",
            ),
        }
    }
    let health = probes
        .iter()
        .find(|p| p.health.is_ok())
        .map(|p| &p.health)
        .unwrap_or(&probes[0].health);
    let url = probes
        .iter()
        .find(|p| p.health.is_ok())
        .unwrap_or(&probes[0])
        .url
        .clone();

    if cfg.is_remote() {
        match &cfg.token {
            None => r.fail(
                "hub token",
                "no hub token configured",
                format!(
                    "set `token` in {} (or PEERS_TOKEN) to the hub's token",
                    cfg.config_file.display()
                ),
            ),
            Some(t) if health.is_ok() => {
                let c = BrokerClient::new(&url, Some(t.clone()));
                match rt.block_on(c.notices()) {
                    Ok(_) => r.ok("hub token", "the hub accepts the token"),
                    Err(e) => r.fail(
                        "hub token",
                        format!("the hub refuses the token: {e}"),
                        format!(
                            "set the hub's token as `token` in {}",
                            cfg.config_file.display()
                        ),
                    ),
                }
            }
            Some(_) => r.add(
                "hub token",
                Status::Skip,
                "not checked: the hub does not answer",
                None,
            ),
        }
        return;
    }

    // Local mode: the per-user secret.
    let secret = peers_core::paths::secret_file(&cfg.state_dir);
    match std::fs::metadata(&secret) {
        Err(_) if health.is_err() => r.warn(
            "secret",
            format!(
                "no secret file at {} yet: the broker creates it when it first starts",
                secret.display()
            ),
            "nothing to do; `peers broker start` creates it now",
        ),
        Err(_) => r.fail(
            "secret",
            format!(
                "a broker answers at {url} but there is no secret file at {}",
                secret.display()
            ),
            "the running broker uses another state dir: `peers broker stop`, then \
             `peers broker start` with this PEERS_STATE_DIR",
        ),
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.fail(
                    "secret",
                    format!(
                        "{} has mode {mode:04o}: other users can read it and act as you",
                        secret.display()
                    ),
                    format!("chmod 600 {}", secret.display()),
                );
            } else if health.is_ok() {
                let cred = peers_core::paths::read_secret(&cfg.state_dir)
                    .ok()
                    .flatten();
                let c = BrokerClient::new(&url, cred);
                match rt.block_on(c.notices()) {
                    Ok(_) => r.ok(
                        "secret",
                        format!(
                            "{} (mode {mode:04o}) is accepted by the broker",
                            secret.display()
                        ),
                    ),
                    Err(e) if e.is_unreachable() => r.ok(
                        "secret",
                        format!("{} has mode {mode:04o}", secret.display()),
                    ),
                    Err(e) => r.fail(
                        "secret",
                        format!("the broker refuses {}: {e}", secret.display()),
                        "the running broker uses another state dir: `peers broker stop`, then \
                         `peers broker start` with this PEERS_STATE_DIR",
                    ),
                }
            } else {
                r.ok(
                    "secret",
                    format!("{} has mode {mode:04o}", secret.display()),
                );
            }
        }
    }
}

/// The settings files Claude Code reads hooks from, as (label, path).
fn settings_files() -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    if let Ok(t) = install::Target::new(InstallScope::User) {
        v.push(("user".into(), t.settings));
    }
    if let Ok(cwd) = std::env::current_dir() {
        v.push(("project".into(), cwd.join(".claude/settings.json")));
        v.push((
            "project-local".into(),
            cwd.join(".claude/settings.local.json"),
        ));
    }
    v
}

/// Checks the hooks `peers install` writes; returns whether any were found. With the plugin
/// route, none is fine (the plugin brings its own) and some means every hook runs twice.
fn hooks(r: &mut Report, via_plugin: bool) -> bool {
    let mut found: Vec<(PathBuf, String, String)> = Vec::new();
    let mut unreadable = Vec::new();
    for (_, path) in settings_files() {
        if !path.exists() {
            continue;
        }
        match JsonFile::read(&path) {
            Ok(f) => {
                for (event, cmd) in install::our_hooks(&f.value) {
                    found.push((path.clone(), event, cmd));
                }
            }
            Err(e) => unreadable.push(format!("{e}")),
        }
    }
    for u in unreadable {
        r.fail(
            "hooks",
            u,
            "fix the JSON; Claude Code cannot read it either",
        );
    }
    let user = install::Target::new(InstallScope::User)
        .map(|t| t.settings.display().to_string())
        .unwrap_or_else(|_| "~/.claude/settings.json".into());
    if found.is_empty() {
        if via_plugin {
            r.ok(
                "hooks",
                "from the plugin (none in the settings files, so none runs twice)",
            );
        } else {
            r.fail(
                "hooks",
                format!("no peers hooks in {user} or ./.claude/settings.json"),
                "run `peers install`, or use the plugin (`claude --plugin-dir DIR`, then \
                 `peers doctor --plugin-dir DIR`)",
            );
        }
        return false;
    }
    if via_plugin {
        let mut files: Vec<String> = found
            .iter()
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        files.dedup();
        r.warn(
            "hooks",
            format!(
                "peers hooks are in {} and in the plugin: every hook runs twice",
                files.join(", ")
            ),
            "run `peers uninstall` (the plugin route needs no install)",
        );
        return true;
    }
    let mut missing_events = Vec::new();
    for ev in ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"] {
        if !found
            .iter()
            .any(|(_, e, c)| e == ev && !c.contains("--wait"))
        {
            missing_events.push(ev.to_string());
        }
    }
    for (ev, what) in [
        ("SessionStart", "wakes sessions that never had a turn"),
        ("Stop", "wakes idle sessions"),
    ] {
        if !found
            .iter()
            .any(|(_, e, c)| e == ev && c.contains("--wait"))
        {
            missing_events.push(format!("{ev} (--wait, {what})"));
        }
    }
    let mut bad = Vec::new();
    for (path, ev, cmd) in &found {
        let prog = first_word(cmd);
        if !context::is_executable(Path::new(&prog)) {
            bad.push(format!(
                "{ev} in {} runs {prog}, which {}",
                path.display(),
                if Path::new(&prog).exists() {
                    "is not executable"
                } else {
                    "does not exist"
                }
            ));
        } else if let Some(net) = full_hook_missing(Path::new(&prog)) {
            bad.push(format!(
                "{ev} in {} runs {prog}, but {} (the full hook it hands mail to) {}",
                path.display(),
                net.display(),
                if net.exists() {
                    "is not executable"
                } else {
                    "does not exist"
                }
            ));
        }
    }
    let files: Vec<String> = {
        let mut f: Vec<String> = found
            .iter()
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        f.dedup();
        f
    };
    if !missing_events.is_empty() {
        r.fail(
            "hooks",
            format!(
                "missing in {}: {}",
                files.join(", "),
                missing_events.join(", ")
            ),
            "run `peers install`",
        );
    }
    for b in &bad {
        r.fail(
            "hooks",
            b.clone(),
            "run `peers install` again from the directory the binaries are in now",
        );
    }
    if missing_events.is_empty() && bad.is_empty() {
        r.ok(
            "hooks",
            format!(
                "{} peers hooks in {}, each runs an existing peers-deliver",
                found.len(),
                files.join(", ")
            ),
        );
    }
    true
}

/// For a hook that runs the front `peers-deliver`: its `peers-deliver-net` when that is not
/// an executable beside it (the front would then show no mail at all).
fn full_hook_missing(prog: &Path) -> Option<PathBuf> {
    if prog.file_name()? != install::DELIVER {
        return None;
    }
    let net = prog.with_file_name(format!("{}-net", install::DELIVER));
    (!context::is_executable(&net)).then_some(net)
}

/// Checks the MCP server entry `peers install` writes; returns whether one was found.
fn mcp(r: &mut Report, via_plugin: bool) -> bool {
    let mut places: Vec<(String, String)> = Vec::new();
    if let Ok(home) = peers_core::paths::home() {
        let p = home.join(".claude.json");
        if let Ok(f) = JsonFile::read(&p) {
            if let Some(c) = install::mcp_command(&f.value) {
                places.push((format!("{} (user scope)", p.display()), c));
            }
            if let Ok(cwd) = std::env::current_dir()
                && let Some(c) = f
                    .value
                    .get("projects")
                    .and_then(|p| p.get(cwd.to_string_lossy().as_ref()))
                    .and_then(install::mcp_command)
            {
                places.push((format!("{} (local scope, this directory)", p.display()), c));
            }
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        let p = cwd.join(".mcp.json");
        if let Ok(f) = JsonFile::read(&p)
            && let Some(c) = install::mcp_command(&f.value)
        {
            places.push((format!("{} (project scope)", p.display()), c));
        }
    }
    if places.is_empty() {
        if via_plugin {
            r.ok(
                "mcp server",
                format!(
                    "`{MCP_SERVER_NAME}` comes from the plugin; the model sees its tools as \
                     {PLUGIN_TOOL_PREFIX}*"
                ),
            );
        } else {
            r.fail(
                "mcp server",
                format!(
                    "`{MCP_SERVER_NAME}` is registered neither in ~/.claude.json nor in ./.mcp.json"
                ),
                "run `peers install`, or use the plugin",
            );
        }
        return false;
    }
    if via_plugin {
        let list: Vec<String> = places.iter().map(|(p, _)| p.clone()).collect();
        r.warn(
            "mcp server",
            format!(
                "`{MCP_SERVER_NAME}` is registered in {} and comes from the plugin too: the \
                 model gets every tool twice",
                list.join(", ")
            ),
            "run `peers uninstall` (the plugin route needs no install)",
        );
        return true;
    }
    for (place, cmd) in places {
        let prog = first_word(&cmd);
        let path = Path::new(&prog);
        if context::is_executable(path) || (!prog.contains('/') && context::which(&prog).is_some())
        {
            r.ok(
                "mcp server",
                format!("`{MCP_SERVER_NAME}` runs {cmd} ({place})"),
            );
        } else {
            r.fail(
                "mcp server",
                format!("`{MCP_SERVER_NAME}` in {place} runs {cmd}, which does not exist"),
                "run `peers install` again from the directory the binaries are in now",
            );
        }
    }
    true
}

/// Whether `entries` let `tool` (a full tool name under `prefix`) run without a prompt: the
/// tool itself, the whole server (`mcp__peers`), or `mcp__peers__*`.
fn allowed(entries: &[String], prefix: &str, tool: &str) -> bool {
    let server = prefix.trim_end_matches('_');
    entries
        .iter()
        .any(|e| e == tool || e == server || *e == format!("{prefix}*"))
}

/// The `permissions.allow` entries for the routes in use: without them a session woken by
/// mail waits on a permission prompt nobody sees. A warning, not a failure: `peers install
/// --no-allow` leaves them out on purpose.
fn permissions(r: &mut Report, installed: bool, via_plugin: bool) {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    for (_, path) in settings_files() {
        if let Ok(f) = JsonFile::read(&path) {
            let e = install::allow_entries(&f.value);
            if !e.is_empty() {
                files.push(path.display().to_string());
            }
            entries.extend(e);
        }
    }
    let mut routes = Vec::new();
    if installed {
        routes.push(MCP_TOOL_PREFIX);
    }
    if via_plugin {
        routes.push(PLUGIN_TOOL_PREFIX);
    }
    for prefix in routes {
        let missing: Vec<String> = claude_settings::allowed_tools(prefix)
            .into_iter()
            .filter(|t| !allowed(&entries, prefix, t))
            .collect();
        let user = install::Target::new(InstallScope::User)
            .map(|t| t.settings.display().to_string())
            .unwrap_or_else(|_| "~/.claude/settings.json".into());
        if missing.is_empty() {
            r.ok(
                "permissions",
                format!(
                    "the peers tools ({prefix}*) run without a prompt (permissions.allow in {})",
                    files.join(", ")
                ),
            );
        } else if prefix == PLUGIN_TOOL_PREFIX {
            r.warn(
                "permissions",
                format!(
                    "{} of the plugin's peers tools are not in permissions.allow: a session woken \
                     by mail stops at a permission prompt nobody sees",
                    missing.len()
                ),
                format!(
                    "add to \"permissions\": {{\"allow\": [...]}} in {user}: {}",
                    serde_json::to_string(&missing).unwrap_or_default()
                ),
            );
        } else {
            r.warn(
                "permissions",
                format!(
                    "{} of the peers tools are not in permissions.allow ({}): a session woken \
                     by mail stops at a permission prompt nobody sees",
                    missing.len(),
                    missing.join(", ")
                ),
                "run `peers install` (which adds them; `--no-allow` leaves them out on purpose)",
            );
        }
    }
}

/// The peers plugin, as Claude Code loads it.
struct Plugin {
    /// `peers@marketplace`, or `--plugin-dir`.
    id: String,
    /// The plugin's root directory, when known.
    root: Option<PathBuf>,
}

/// Finds the plugin route: `--plugin-dir`, or `enabledPlugins` (`"peers@…": true`) in a
/// settings file, with its directory from `~/.claude/plugins/installed_plugins.json`; checks
/// that its hooks and MCP server find their binaries.
fn plugin(r: &mut Report, plugin_dir: Option<&Path>) -> Vec<Plugin> {
    let mut out = Vec::new();
    if let Some(dir) = plugin_dir {
        let manifest = dir.join(".claude-plugin/plugin.json");
        let name = JsonFile::read(&manifest).ok().and_then(|f| {
            f.value
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
        });
        if name.as_deref() == Some("peers") {
            out.push(Plugin {
                id: "--plugin-dir".into(),
                root: Some(dir.to_path_buf()),
            });
        } else {
            r.fail(
                "plugin",
                format!(
                    "{} is not the peers plugin (no {} naming `peers`)",
                    dir.display(),
                    manifest.display()
                ),
                "pass the directory of this repository (it holds .claude-plugin/plugin.json)",
            );
        }
    }
    let installed = installed_plugins();
    for (label, path) in settings_files() {
        let Ok(f) = JsonFile::read(&path) else {
            continue;
        };
        let Some(enabled) = f.value.get("enabledPlugins").and_then(|e| e.as_object()) else {
            continue;
        };
        for (id, on) in enabled {
            if on.as_bool() == Some(true) && (id == "peers" || id.starts_with("peers@")) {
                let root = installed
                    .iter()
                    .find(|(k, _)| k == id)
                    .map(|(_, p)| p.clone());
                if root.is_none() {
                    r.warn(
                        "plugin",
                        format!(
                            "{id} is enabled in {} ({label} settings) but not installed (not in \
                             ~/.claude/plugins/installed_plugins.json)",
                            path.display()
                        ),
                        format!("install it: `claude plugin install {id}`"),
                    );
                }
                out.push(Plugin {
                    id: id.clone(),
                    root,
                });
            }
        }
    }
    for p in &out {
        let Some(root) = &p.root else { continue };
        let find = |name: &str| {
            let own = root.join("bin").join(name);
            if context::is_executable(&own) {
                Some(own)
            } else {
                context::which(name)
            }
        };
        let (deliver, server) = (find(install::DELIVER), find(install::MCP));
        match (&deliver, &server) {
            (Some(d), Some(m)) => r.ok(
                "plugin",
                format!(
                    "peers plugin ({}) at {}: its hooks run {}, its MCP server {}",
                    p.id,
                    root.display(),
                    d.display(),
                    m.display()
                ),
            ),
            _ => r.fail(
                "plugin",
                format!(
                    "the peers plugin ({}) at {} finds no {} (neither in its bin/ nor on PATH): \
                     its hooks do nothing",
                    p.id,
                    root.display(),
                    [
                        (deliver.is_none(), install::DELIVER),
                        (server.is_none(), install::MCP)
                    ]
                    .iter()
                    .filter(|(m, _)| *m)
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(" and ")
                ),
                "`cargo xtask install` (puts the binaries in ~/.local/bin; keep it on PATH), or \
                 link them into the plugin's bin/",
            ),
        }
    }
    out
}

/// `(plugin id, install path)` from `~/.claude/plugins/installed_plugins.json` (a map of id
/// to one install or to a list of them).
fn installed_plugins() -> Vec<(String, PathBuf)> {
    let Ok(home) = peers_core::paths::home() else {
        return Vec::new();
    };
    let Ok(f) = JsonFile::read(&home.join(".claude/plugins/installed_plugins.json")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (id, v) in f
        .value
        .get("plugins")
        .and_then(|p| p.as_object())
        .into_iter()
        .flatten()
    {
        let first = if v.is_array() { v.get(0) } else { Some(v) };
        if let Some(p) = first
            .and_then(|x| x.get("installPath"))
            .and_then(|p| p.as_str())
        {
            out.push((id.clone(), PathBuf::from(p)));
        }
    }
    out
}

fn claude_cli(r: &mut Report, via_plugin: bool) {
    let Some(claude) = context::which("claude") else {
        r.add(
            "claude mcp list",
            Status::Skip,
            "the claude CLI is not on PATH; not checked",
            None,
        );
        return;
    };
    let out = match run_with_timeout(&claude, &["mcp", "list"], Duration::from_secs(60)) {
        Ok(o) => o,
        Err(e) => {
            r.warn(
                "claude mcp list",
                format!("could not run `{} mcp list`: {e}", claude.display()),
                "run `claude mcp list` yourself and look for peers",
            );
            return;
        }
    };
    let line = out
        .lines()
        .find(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("{MCP_SERVER_NAME}:")) || l.starts_with("plugin:peers:peers")
        })
        .map(str::trim)
        .map(str::to_string);
    match line {
        None if via_plugin => r.add(
            "claude mcp list",
            Status::Skip,
            "does not list `peers` (a --plugin-dir plugin is loaded only by that session)",
            None,
        ),
        None => r.fail(
            "claude mcp list",
            format!("`claude mcp list` does not list `{MCP_SERVER_NAME}`"),
            "run `peers install` (in the directory you start Claude Code in, for project scope)",
        ),
        Some(l) if l.contains("Connected") || l.contains('✓') => r.ok("claude mcp list", l),
        Some(l) => r.warn(
            "claude mcp list",
            l,
            "the server is registered but did not connect: see the logs in the state dir's \
             logs/ and run `peers-mcp` by hand to see its error",
        ),
    }
}

/// Runs a command with stdin closed, killing it after `timeout`; returns stdout + stderr.
fn run_with_timeout(bin: &Path, args: &[&str], timeout: Duration) -> Result<String> {
    use std::io::Read;
    let mut child = std::process::Command::new(bin)
        .args(args)
        // peers-mcp, started by the probe, then neither starts the broker nor registers.
        .env(claude_settings::PROBE_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("timed out after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = out_t.join().unwrap_or_default();
    s.push_str(&err_t.join().unwrap_or_default());
    Ok(s)
}
