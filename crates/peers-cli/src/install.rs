//! `peers install` / `peers uninstall`: the MCP server entry and the hooks, put where Claude
//! Code reads them, with the absolute paths of the binaries next to `peers`.
//!
//! * MCP server: `claude mcp add --scope user|project peers -- <peers-mcp>` when `claude` is on
//!   PATH, else written directly: user scope → `~/.claude.json` `mcpServers.peers`, project
//!   scope → `./.mcp.json`.
//! * Hooks: `peers_core::claude_settings::hooks(<peers-deliver>)` merged into
//!   `~/.claude/settings.json` (user) or `./.claude/settings.json` (project).
//! * Permissions: `claude_settings::allowed_tools("mcp__peers__")` appended to
//!   `permissions.allow` of the same file (unless `--no-allow`), so a session woken by mail
//!   does not wait on a permission prompt nobody sees. Uninstall takes out those entries,
//!   except any the original file (the backup) already had.
//!
//! Files keep their key order and every other setting. The first change to a file saves the
//! original as `<file>.peers-backup`; uninstall restores those exact bytes when removing our
//! entries leaves the same JSON value as the backup. A hook is peers' own when the program it
//! runs is named `peers-deliver`; the MCP entry when it is named `peers` and runs `peers-mcp`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use peers_core::claude_settings::{self, MCP_SERVER_NAME, MCP_TOOL_PREFIX};
use serde_json::{Map, Value, json};

use crate::context;
use crate::shell::program_name;
use crate::{InstallArgs, InstallScope, UninstallArgs};

pub const DELIVER: &str = "peers-deliver";
pub const MCP: &str = "peers-mcp";
pub const BACKUP_SUFFIX: &str = ".peers-backup";

/// The files one scope touches.
#[derive(Debug, Clone)]
pub struct Target {
    pub scope: InstallScope,
    /// Where the hooks go.
    pub settings: PathBuf,
    /// Where the MCP server entry goes when written directly (`~/.claude.json` or `./.mcp.json`).
    pub mcp_file: PathBuf,
}

pub fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set"))
}

impl Target {
    pub fn new(scope: InstallScope) -> Result<Target> {
        Ok(match scope {
            InstallScope::User => {
                let home = home()?;
                Target {
                    scope,
                    settings: home.join(".claude/settings.json"),
                    mcp_file: home.join(".claude.json"),
                }
            }
            InstallScope::Project => {
                let dir = std::env::current_dir()?;
                Target {
                    scope,
                    settings: dir.join(".claude/settings.json"),
                    mcp_file: dir.join(".mcp.json"),
                }
            }
        })
    }

    fn scope_word(&self) -> &'static str {
        match self.scope {
            InstallScope::User => "user",
            InstallScope::Project => "project",
        }
    }
}

/// A JSON file as read: its bytes (if it existed) and value (`{}` when missing or empty).
pub struct JsonFile {
    pub path: PathBuf,
    pub original: Option<Vec<u8>>,
    pub value: Value,
}

impl JsonFile {
    pub fn read(path: &Path) -> Result<JsonFile> {
        let original = match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        let value = match &original {
            Some(b) if !b.iter().all(u8::is_ascii_whitespace) => serde_json::from_slice(b)
                .map_err(|e| {
                    anyhow!(
                        "{} is not valid JSON ({e}); fix it or move it away, then run this again",
                        path.display()
                    )
                })?,
            _ => json!({}),
        };
        if !value.is_object() {
            bail!(
                "{} does not hold a JSON object; fix it or move it away, then run this again",
                path.display()
            );
        }
        Ok(JsonFile {
            path: path.to_path_buf(),
            original,
            value,
        })
    }

    pub fn backup_path(&self) -> PathBuf {
        backup_path(&self.path)
    }
}

pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Claude Code's own format: 2-space pretty JSON and a trailing newline.
pub fn render(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("a JSON value serializes");
    b.push(b'\n');
    b
}

/// Writes `bytes` over `file` (following a symlink to its target), atomically, keeping the
/// file's mode (new files: `new_mode`). Saves the original as the backup first, once.
fn write_json_file(file: &JsonFile, bytes: &[u8], new_mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::fs::canonicalize(&file.path).unwrap_or_else(|_| file.path.clone());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(new_mode);
    if let Some(orig) = &file.original {
        let backup = file.backup_path();
        if !backup.exists() {
            write_atomic(&backup, orig, mode)
                .with_context(|| format!("cannot write the backup {}", backup.display()))?;
        }
    }
    write_atomic(&path, bytes, mode).with_context(|| format!("cannot write {}", path.display()))
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.peers-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

// ---------------------------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------------------------

/// Whether a hook entry (`{"type":"command","command":…}`) runs `peers-deliver`.
pub fn is_our_hook(h: &Value) -> bool {
    h.get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| program_name(c) == DELIVER)
}

/// Every peers hook command in a settings value, as `(event, command)`.
pub fn our_hooks(settings: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(hooks) = settings.get("hooks").and_then(Value::as_object) {
        for (event, groups) in hooks {
            for g in groups.as_array().into_iter().flatten() {
                for h in g
                    .get("hooks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if is_our_hook(h) {
                        let cmd = h.get("command").and_then(Value::as_str).unwrap_or("");
                        out.push((event.clone(), cmd.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Whether `settings` holds exactly our hook groups and no other peers hook.
fn hooks_installed(settings: &Value, ours: &Value) -> bool {
    let Some(ours) = ours.as_object() else {
        return false;
    };
    let hooks = settings.get("hooks").and_then(Value::as_object);
    let mut expected = 0;
    for (event, groups) in ours {
        let want = groups.as_array().cloned().unwrap_or_default();
        expected += want.len();
        let have: Vec<&Value> = hooks
            .and_then(|h| h.get(event))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|g| {
                g.get("hooks")
                    .and_then(Value::as_array)
                    .is_some_and(|hs| hs.iter().any(is_our_hook))
            })
            .collect();
        if have.len() != want.len() || have.iter().zip(&want).any(|(a, b)| *a != b) {
            return false;
        }
    }
    // No peers hook under an event we do not install.
    let groups_with_ours = hooks
        .into_iter()
        .flat_map(|h| h.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter(|g| {
            g.get("hooks")
                .and_then(Value::as_array)
                .is_some_and(|hs| hs.iter().any(is_our_hook))
        })
        .count();
    groups_with_ours == expected
}

/// Removes every peers hook. With `prune`, groups, event lists and the `hooks` object that
/// this removal left empty are removed too. Returns how many hooks were removed.
pub fn strip_hooks(settings: &mut Value, prune: bool) -> usize {
    let mut removed = 0;
    let Some(obj) = settings.as_object_mut() else {
        return 0;
    };
    let mut drop_hooks_key = false;
    if let Some(hooks) = obj.get_mut("hooks").and_then(Value::as_object_mut) {
        let mut emptied_events = Vec::new();
        for (event, groups) in hooks.iter_mut() {
            let Some(arr) = groups.as_array_mut() else {
                continue;
            };
            let mut emptied_groups = false;
            let mut keep = Vec::with_capacity(arr.len());
            for mut g in std::mem::take(arr) {
                let mut emptied = false;
                if let Some(hs) = g.get_mut("hooks").and_then(Value::as_array_mut) {
                    let before = hs.len();
                    hs.retain(|h| !is_our_hook(h));
                    removed += before - hs.len();
                    emptied = before > 0 && hs.is_empty();
                }
                if emptied && prune {
                    emptied_groups = true;
                } else {
                    keep.push(g);
                }
            }
            *arr = keep;
            if emptied_groups && arr.is_empty() {
                emptied_events.push(event.clone());
            }
        }
        if prune && !emptied_events.is_empty() {
            for e in &emptied_events {
                hooks.shift_remove(e);
            }
            drop_hooks_key = hooks.is_empty();
        }
    }
    if drop_hooks_key {
        obj.shift_remove("hooks");
    }
    removed
}

/// The settings with our hooks merged in (`None`: already installed, nothing to change).
pub fn merge_hooks(settings: &Value, ours: &Value) -> Result<Option<Value>> {
    if hooks_installed(settings, ours) {
        return Ok(None);
    }
    let mut s = settings.clone();
    strip_hooks(&mut s, true);
    let obj = s
        .as_object_mut()
        .ok_or_else(|| anyhow!("the settings are not a JSON object"))?;
    let hooks = obj
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| anyhow!("`hooks` in the settings is not an object"))?;
    for (event, groups) in ours.as_object().into_iter().flatten() {
        let list = hooks
            .entry(event.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| anyhow!("`hooks.{event}` in the settings is not a list"))?;
        list.extend(groups.as_array().cloned().unwrap_or_default());
    }
    Ok(Some(s))
}

// ---------------------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------------------

/// The `permissions.allow` entries install adds: the peers tools of a user- or project-scope
/// server.
pub fn our_allow() -> Vec<String> {
    claude_settings::allowed_tools(MCP_TOOL_PREFIX)
}

/// The string entries of `permissions.allow`.
pub fn allow_entries(settings: &Value) -> Vec<String> {
    settings
        .get("permissions")
        .and_then(|p| p.get("allow"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The settings with `ours` appended to `permissions.allow` (`None`: all there already).
pub fn merge_allow(settings: &Value, ours: &[String]) -> Result<Option<Value>> {
    let have = allow_entries(settings);
    let missing: Vec<&String> = ours.iter().filter(|o| !have.contains(o)).collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let mut s = settings.clone();
    let obj = s
        .as_object_mut()
        .ok_or_else(|| anyhow!("the settings are not a JSON object"))?;
    let allow = obj
        .entry("permissions")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| anyhow!("`permissions` in the settings is not an object"))?
        .entry("allow")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| anyhow!("`permissions.allow` in the settings is not a list"))?;
    allow.extend(missing.into_iter().map(|m| Value::String(m.clone())));
    Ok(Some(s))
}

/// The entries of `ours` in the settings' `permissions.allow` that uninstall takes out: all
/// but those in `keep` (the original file's own entries).
pub fn allow_to_strip(settings: &Value, keep: &[String]) -> Vec<String> {
    let ours = our_allow();
    allow_entries(settings)
        .into_iter()
        .filter(|e| ours.contains(e) && !keep.contains(e))
        .collect()
}

/// Removes the `strip` entries from `permissions.allow`. With `prune`, an `allow` list and a
/// `permissions` object this removal left empty are removed too.
pub fn strip_allow(settings: &mut Value, strip: &[String], prune: bool) {
    if strip.is_empty() {
        return;
    }
    let Some(obj) = settings.as_object_mut() else {
        return;
    };
    let Some(perms) = obj.get_mut("permissions").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(allow) = perms.get_mut("allow").and_then(Value::as_array_mut) else {
        return;
    };
    allow.retain(|e| !e.as_str().is_some_and(|s| strip.iter().any(|x| x == s)));
    if prune && allow.is_empty() {
        perms.shift_remove("allow");
        if perms.is_empty() {
            obj.shift_remove("permissions");
        }
    }
}

/// The `permissions.allow` entries of a file's backup (what the user had before install).
fn backup_allow(file: &JsonFile) -> Vec<String> {
    std::fs::read(file.backup_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| allow_entries(&v))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// MCP entry (written directly)
// ---------------------------------------------------------------------------------------------

/// The `peers` MCP entry of a `mcpServers` file, if any.
pub fn mcp_entry(v: &Value) -> Option<&Value> {
    v.get("mcpServers")?.get(MCP_SERVER_NAME)
}

pub fn mcp_command(v: &Value) -> Option<String> {
    mcp_entry(v)?
        .get("command")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Whether an entry runs exactly `mcp_bin` over stdio with no arguments (as
/// `claude_settings::mcp_server` writes it, or `claude mcp add`, which adds `"env": {}`).
pub fn mcp_matches(entry: &Value, mcp_bin: &Path) -> bool {
    entry.get("command").and_then(Value::as_str) == Some(&*mcp_bin.to_string_lossy())
        && entry
            .get("args")
            .is_none_or(|a| a.as_array().is_some_and(Vec::is_empty))
        && entry
            .get("type")
            .is_none_or(|t| t.as_str() == Some("stdio"))
}

fn mcp_entry_is_ours(entry: &Value) -> bool {
    entry
        .get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| program_name(c) == MCP || Path::new(c).file_name() == Some(MCP.as_ref()))
}

/// The file value with our MCP entry (`None`: already there).
pub fn merge_mcp(v: &Value, mcp_bin: &Path) -> Result<Option<Value>> {
    let want = claude_settings::mcp_server(mcp_bin);
    if mcp_entry(v).is_some_and(|e| mcp_matches(e, mcp_bin)) {
        return Ok(None);
    }
    let mut s = v.clone();
    let obj = s
        .as_object_mut()
        .ok_or_else(|| anyhow!("not a JSON object"))?;
    let servers = obj
        .entry("mcpServers")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| anyhow!("`mcpServers` is not an object"))?;
    servers.insert(MCP_SERVER_NAME.to_string(), want);
    Ok(Some(s))
}

/// Removes our MCP entry; with `prune`, an `mcpServers` left empty too. Returns whether
/// something was removed.
pub fn strip_mcp(v: &mut Value, prune: bool) -> bool {
    let Some(obj) = v.as_object_mut() else {
        return false;
    };
    let Some(servers) = obj.get_mut("mcpServers").and_then(Value::as_object_mut) else {
        return false;
    };
    if !servers.get(MCP_SERVER_NAME).is_some_and(mcp_entry_is_ours) {
        return false;
    }
    servers.shift_remove(MCP_SERVER_NAME);
    if prune && servers.is_empty() {
        obj.shift_remove("mcpServers");
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Restoring on uninstall
// ---------------------------------------------------------------------------------------------

/// What uninstall writes for a file after removing our entries: the backup's exact bytes
/// when the value matches it (and then the backup is no longer needed), else the pruned value.
enum Restore {
    /// Write these bytes back (from the backup), and remove the backup.
    Backup(Vec<u8>),
    /// Remove the file: install created it and nothing else is in it.
    Remove,
    /// Write this value.
    Value(Value),
}

fn restore_plan(file: &JsonFile, kept: &Value, pruned: &Value) -> Restore {
    if let Ok(b) = std::fs::read(file.backup_path()) {
        let bv: Value = if b.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(&b) {
                Ok(v) => v,
                Err(_) => return Restore::Value(pruned.clone()),
            }
        };
        if &bv == kept || &bv == pruned {
            return Restore::Backup(b);
        }
        return Restore::Value(pruned.clone());
    }
    if pruned.as_object().is_some_and(Map::is_empty) {
        return Restore::Remove;
    }
    Restore::Value(pruned.clone())
}

fn apply_restore(file: &JsonFile, plan: Restore) -> Result<&'static str> {
    match plan {
        Restore::Backup(bytes) => {
            write_json_file(file, &bytes, 0o644)?;
            let _ = std::fs::remove_file(file.backup_path());
            Ok("restored the original")
        }
        Restore::Remove => {
            std::fs::remove_file(&file.path)
                .with_context(|| format!("cannot remove {}", file.path.display()))?;
            Ok("removed the file (install had created it)")
        }
        Restore::Value(v) => {
            write_json_file(file, &render(&v), 0o644)?;
            Ok("updated")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------------------

fn binaries() -> Result<(PathBuf, PathBuf)> {
    let deliver = context::sibling(DELIVER)?;
    let mcp = context::sibling(MCP)?;
    for p in [&deliver, &mcp] {
        if !context::is_executable(p) {
            bail!(
                "{} is missing: install puts the absolute paths of the binaries next to `peers` \
                 into Claude Code, so they must be there (`cargo xtask install` puts all four \
                 in ~/.local/bin)",
                p.display()
            );
        }
    }
    Ok((deliver, mcp))
}

fn describe_hooks(ours: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (event, groups) in ours.as_object().into_iter().flatten() {
        for g in groups.as_array().into_iter().flatten() {
            for h in g
                .get("hooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut line = format!(
                    "{event}: {}",
                    h.get("command").and_then(Value::as_str).unwrap_or("")
                );
                if h.get("asyncRewake").and_then(Value::as_bool) == Some(true) {
                    line.push_str(" (asyncRewake: wakes an idle session)");
                }
                out.push(line);
            }
        }
    }
    out
}

pub fn install(a: InstallArgs) -> Result<()> {
    let target = Target::new(a.scope)?;
    let (deliver, mcp) = binaries()?;
    let dry = a.dry_run;
    let would = if dry { "would " } else { "" };

    // Hooks and permissions, in the one settings file.
    let ours = claude_settings::hooks(&deliver);
    let settings = JsonFile::read(&target.settings)?;
    let verb = if settings.original.is_some() {
        "merge into"
    } else {
        "create"
    };
    let with_hooks = merge_hooks(&settings.value, &ours)?;
    match &with_hooks {
        None => println!(
            "hooks: already in {}, nothing to change",
            target.settings.display()
        ),
        Some(_) => {
            println!("hooks: {would}{verb} {}:", target.settings.display());
            for (e, c) in our_hooks(&settings.value) {
                println!("  - {e}: {c}");
            }
            for l in describe_hooks(&ours) {
                println!("  + {l}");
            }
        }
    }
    let hooked = with_hooks.clone().unwrap_or_else(|| settings.value.clone());
    let allow = our_allow();
    let with_allow = if a.no_allow {
        println!(
            "permissions: not added (--no-allow): Claude Code asks before each peers tool call, \
             and a session woken by mail waits on that prompt until you answer it"
        );
        None
    } else {
        let merged = merge_allow(&hooked, &allow)?;
        match &merged {
            None => println!(
                "permissions: the peers tools are already in permissions.allow of {}, nothing \
                 to change",
                target.settings.display()
            ),
            Some(_) => {
                let have = allow_entries(&hooked);
                println!(
                    "permissions: {would}add to permissions.allow in {} (the peers tools run \
                     without a prompt, so a session woken by mail does not wait on one; \
                     `--no-allow` skips this):",
                    target.settings.display()
                );
                for t in allow.iter().filter(|t| !have.contains(t)) {
                    println!("  + {t}");
                }
            }
        }
        merged
    };
    if let Some(new) = with_allow.or(with_hooks)
        && !dry
    {
        write_json_file(&settings, &render(&new), 0o644)?;
        if settings.original.is_some() {
            println!(
                "  (the original is saved as {})",
                settings.backup_path().display()
            );
        }
    }

    // MCP server.
    install_mcp(&target, &mcp, dry)?;

    if !dry {
        println!(
            "\nDone. Start a new Claude Code session (hooks are read at start); \
             `peers doctor` checks every link."
        );
    }
    Ok(())
}

fn install_mcp(target: &Target, mcp: &Path, dry: bool) -> Result<()> {
    let would = if dry { "would " } else { "" };
    let file = JsonFile::read(&target.mcp_file)?;
    let current = mcp_entry(&file.value).cloned();
    if current.as_ref().is_some_and(|e| mcp_matches(e, mcp)) {
        println!(
            "MCP server: `{MCP_SERVER_NAME}` already registered in {}, nothing to change",
            target.mcp_file.display()
        );
        return Ok(());
    }
    if let Some(claude) = context::which("claude") {
        let scope = target.scope_word();
        let add = format!(
            "claude mcp add --scope {scope} {MCP_SERVER_NAME} -- {}",
            claude_settings::shell_quote(&mcp.to_string_lossy())
        );
        if dry {
            if current.is_some() {
                println!(
                    "MCP server: would run `claude mcp remove --scope {scope} {MCP_SERVER_NAME}`"
                );
            }
            println!("MCP server: would run `{add}` (the claude CLI is on PATH)");
            return Ok(());
        }
        if current.is_some() {
            let _ = run_claude(
                &claude,
                &["mcp", "remove", "--scope", scope, MCP_SERVER_NAME],
            );
        }
        let mcp_s = mcp.to_string_lossy().into_owned();
        match run_claude(
            &claude,
            &[
                "mcp",
                "add",
                "--scope",
                scope,
                MCP_SERVER_NAME,
                "--",
                &mcp_s,
            ],
        ) {
            Ok(()) => {
                println!("MCP server: registered with `{add}`");
                return Ok(());
            }
            Err(e) => {
                println!(
                    "MCP server: `{add}` failed ({e}); writing {} directly instead",
                    target.mcp_file.display()
                );
            }
        }
    }
    let file = JsonFile::read(&target.mcp_file)?;
    let Some(new) = merge_mcp(&file.value, mcp)? else {
        return Ok(());
    };
    println!(
        "MCP server: {would}write `{MCP_SERVER_NAME}` → {} into {} ({}{})",
        mcp.display(),
        target.mcp_file.display(),
        match target.scope {
            InstallScope::User => "the user-scope `mcpServers` Claude Code reads",
            InstallScope::Project =>
                "the project's MCP config; Claude Code asks once to approve it",
        },
        if context::which("claude").is_none() {
            "; the claude CLI is not on PATH"
        } else {
            ""
        }
    );
    if !dry {
        let mode = match target.scope {
            InstallScope::User => 0o600,
            InstallScope::Project => 0o644,
        };
        write_json_file(&file, &render(&new), mode)?;
    }
    Ok(())
}

fn run_claude(claude: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(claude)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", claude.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let msg = if msg.is_empty() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            msg
        };
        Err(anyhow!("{}: {msg}", out.status))
    }
}

pub fn uninstall(a: UninstallArgs) -> Result<()> {
    let target = Target::new(a.scope)?;
    let dry = a.dry_run;
    let would = if dry { "would " } else { "" };

    let settings = JsonFile::read(&target.settings)?;
    let found = our_hooks(&settings.value);
    let allowed = allow_to_strip(&settings.value, &backup_allow(&settings));
    if found.is_empty() {
        println!(
            "hooks: none of peers' hooks in {}",
            target.settings.display()
        );
    } else {
        println!("hooks: {would}remove from {}:", target.settings.display());
        for (e, c) in &found {
            println!("  - {e}: {c}");
        }
    }
    if !allowed.is_empty() {
        println!(
            "permissions: {would}remove from permissions.allow in {}:",
            target.settings.display()
        );
        for t in &allowed {
            println!("  - {t}");
        }
    }
    if !found.is_empty() || !allowed.is_empty() {
        let mut kept = settings.value.clone();
        strip_hooks(&mut kept, false);
        strip_allow(&mut kept, &allowed, false);
        let mut pruned = settings.value.clone();
        strip_hooks(&mut pruned, true);
        strip_allow(&mut pruned, &allowed, true);
        let plan = restore_plan(&settings, &kept, &pruned);
        if dry {
            if let Restore::Backup(_) = plan {
                println!(
                    "  ({would}restore the original from {})",
                    settings.backup_path().display()
                );
            }
        } else {
            let what = apply_restore(&settings, plan)?;
            println!("  ({what})");
        }
    }

    let file = JsonFile::read(&target.mcp_file)?;
    let entry = mcp_entry(&file.value).cloned();
    match entry {
        None => println!(
            "MCP server: `{MCP_SERVER_NAME}` is not registered in {}",
            target.mcp_file.display()
        ),
        Some(e) if !mcp_entry_is_ours(&e) => println!(
            "MCP server: the `{MCP_SERVER_NAME}` entry in {} does not run peers-mcp; left alone",
            target.mcp_file.display()
        ),
        Some(_) => {
            if let Some(claude) = context::which("claude") {
                let scope = target.scope_word();
                let cmd = format!("claude mcp remove --scope {scope} {MCP_SERVER_NAME}");
                if dry {
                    println!("MCP server: would run `{cmd}`");
                    return Ok(());
                }
                match run_claude(
                    &claude,
                    &["mcp", "remove", "--scope", scope, MCP_SERVER_NAME],
                ) {
                    Ok(()) => {
                        println!("MCP server: removed with `{cmd}`");
                        // The CLI rewrote the file; restore the original bytes if that is all
                        // that changed.
                        if let Ok(after) = JsonFile::read(&target.mcp_file)
                            && let Restore::Backup(b) =
                                restore_plan(&after, &after.value, &after.value)
                        {
                            write_json_file(&after, &b, 0o600)?;
                            let _ = std::fs::remove_file(after.backup_path());
                        }
                        return Ok(());
                    }
                    Err(e) => println!(
                        "MCP server: `{cmd}` failed ({e}); editing {} directly instead",
                        target.mcp_file.display()
                    ),
                }
            }
            let file = JsonFile::read(&target.mcp_file)?;
            let mut kept = file.value.clone();
            strip_mcp(&mut kept, false);
            let mut pruned = file.value.clone();
            strip_mcp(&mut pruned, true);
            println!(
                "MCP server: {would}remove `{MCP_SERVER_NAME}` from {}",
                target.mcp_file.display()
            );
            if !dry {
                let what = apply_restore(&file, restore_plan(&file, &kept, &pruned))?;
                println!("  ({what})");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver() -> PathBuf {
        PathBuf::from("/opt/peers/bin/peers-deliver")
    }

    #[test]
    fn merge_keeps_other_hooks_and_is_idempotent() {
        let orig = json!({
            "model": "opus",
            "hooks": {
                "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "echo mine"}]}],
                "PreToolUse": [{"hooks": [{"type": "command", "command": "lint"}]}]
            },
            "zeta": 1
        });
        let ours = claude_settings::hooks(&deliver());
        let merged = merge_hooks(&orig, &ours).unwrap().unwrap();
        assert_eq!(merged["hooks"]["PostToolUse"].as_array().unwrap().len(), 2);
        assert_eq!(
            merged["hooks"]["PostToolUse"][0],
            orig["hooks"]["PostToolUse"][0]
        );
        assert_eq!(merged["hooks"]["PreToolUse"], orig["hooks"]["PreToolUse"]);
        let keys: Vec<&String> = merged.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "hooks", "zeta"]);
        assert!(merge_hooks(&merged, &ours).unwrap().is_none());
        // Four events, plus the waiter on SessionStart and on Stop.
        assert_eq!(our_hooks(&merged).len(), 6);

        let mut back = merged.clone();
        assert_eq!(strip_hooks(&mut back, true), 6);
        assert_eq!(back, orig);
    }

    #[test]
    fn a_moved_binary_replaces_the_old_hooks() {
        let old = claude_settings::settings(Path::new("/old/peers-deliver"));
        let ours = claude_settings::hooks(&deliver());
        let merged = merge_hooks(&old, &ours).unwrap().unwrap();
        assert_eq!(merged, json!({"hooks": ours}));
    }

    #[test]
    fn strip_keeps_a_shared_group() {
        let mut v = json!({"hooks": {"Stop": [{"hooks": [
            {"type": "command", "command": "/x/peers-deliver"},
            {"type": "command", "command": "say done"}
        ]}]}});
        assert_eq!(strip_hooks(&mut v, true), 1);
        assert_eq!(
            v,
            json!({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "say done"}]}]}})
        );
    }

    #[test]
    fn allow_merge_is_idempotent_and_strip_keeps_the_users_entries() {
        let orig = json!({"permissions": {"allow": ["Read", "mcp__peers__whoami"], "deny": []}});
        let ours = our_allow();
        let merged = merge_allow(&orig, &ours).unwrap().unwrap();
        let allow = allow_entries(&merged);
        assert_eq!(allow.len(), 7, "{allow:?}");
        assert_eq!(&allow[..2], ["Read", "mcp__peers__whoami"]);
        assert!(merge_allow(&merged, &ours).unwrap().is_none());
        // The user had whoami before: it stays.
        let strip = allow_to_strip(&merged, &allow_entries(&orig));
        assert_eq!(strip.len(), 5);
        let mut back = merged.clone();
        strip_allow(&mut back, &strip, true);
        assert_eq!(back, orig);

        let fresh = merge_allow(&json!({"model": "opus"}), &ours)
            .unwrap()
            .unwrap();
        let mut back = fresh.clone();
        strip_allow(&mut back, &allow_to_strip(&fresh, &[]), true);
        assert_eq!(back, json!({"model": "opus"}));
    }

    #[test]
    fn mcp_entry_merge_and_strip() {
        let v = json!({"numStartups": 3, "mcpServers": {"other": {"command": "x"}}});
        let m = merge_mcp(&v, Path::new("/b/peers-mcp")).unwrap().unwrap();
        assert_eq!(mcp_command(&m).as_deref(), Some("/b/peers-mcp"));
        assert!(merge_mcp(&m, Path::new("/b/peers-mcp")).unwrap().is_none());
        let mut back = m.clone();
        assert!(strip_mcp(&mut back, true));
        assert_eq!(back, v);
        let mut only = merge_mcp(&json!({}), Path::new("/b/peers-mcp"))
            .unwrap()
            .unwrap();
        assert!(strip_mcp(&mut only, true));
        assert_eq!(only, json!({}));
    }
}
