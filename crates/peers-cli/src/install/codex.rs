//! Codex CLI: `$CODEX_HOME/config.toml` (default `~/.codex/config.toml`), edited losslessly
//! (comments, order and layout of everything else kept, through `toml_edit`).
//!
//! Install adds `[mcp_servers.peers]` running `peers-mcp`, with
//! `default_tools_approval_mode = "approve"` (without it `codex exec` refuses every peers
//! call: "MCP tool call requires approval, but approval policy is never"), and one
//! `[[hooks.<Event>]]` group running `peers-deliver` for SessionStart, UserPromptSubmit,
//! PostToolUse (matcher `*`) and Stop. Uninstall takes out exactly those (the MCP entry when it
//! runs `peers-mcp`, hook groups whose commands run `peers-deliver`), drops tables that removal
//! left empty, and writes back the original bytes (`config.toml.peers-backup`) when nothing
//! else changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use peers_core::claude_settings::{HOOK_TIMEOUT_SECS, MCP_SERVER_NAME, shell_quote};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::settings::{backup_path, write_bytes};
use super::{DELIVER, MCP};
use crate::shell::program_name;

/// The events peers hooks into, with their matcher.
pub const EVENTS: [(&str, Option<&str>); 4] = [
    ("SessionStart", None),
    ("UserPromptSubmit", None),
    ("PostToolUse", Some("*")),
    ("Stop", None),
];

/// `$CODEX_HOME/config.toml`, else `~/.codex/config.toml`.
pub fn config_path() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("CODEX_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h).join("config.toml"));
    }
    Ok(peers_core::paths::home()?.join(".codex/config.toml"))
}

pub fn parse(text: &str, path: &Path) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| {
        anyhow!(
            "{} is not valid TOML ({e}); fix it or move it away, then run this again",
            path.display()
        )
    })
}

fn is_ours(cmd: Option<&str>, program: &str) -> bool {
    cmd.is_some_and(|c| {
        program_name(c) == program || Path::new(c).file_name() == Some(program.as_ref())
    })
}

/// Whether a `[[hooks.X]]` group runs `peers-deliver`.
fn group_is_ours(t: &Table) -> bool {
    t.get("hooks")
        .and_then(Item::as_array_of_tables)
        .is_some_and(|hs| {
            hs.iter()
                .any(|h| is_ours(h.get("command").and_then(Item::as_str), DELIVER))
        })
}

/// Removes our MCP entry and hook groups; drops tables left empty. Returns what it removed.
pub fn strip(doc: &mut DocumentMut) -> usize {
    let mut removed = 0;
    if let Some(servers) = doc.get_mut("mcp_servers").and_then(Item::as_table_like_mut) {
        if is_ours(
            servers
                .get(MCP_SERVER_NAME)
                .and_then(|s| s.get("command"))
                .and_then(Item::as_str),
            MCP,
        ) {
            servers.remove(MCP_SERVER_NAME);
            removed += 1;
        }
        if servers.is_empty() {
            doc.remove("mcp_servers");
        }
    }
    if let Some(hooks) = doc.get_mut("hooks").and_then(Item::as_table_like_mut) {
        let events: Vec<String> = hooks.iter().map(|(k, _)| k.to_string()).collect();
        for e in events {
            if let Some(groups) = hooks.get_mut(&e).and_then(Item::as_array_of_tables_mut) {
                let before = groups.len();
                groups.retain(|g| !group_is_ours(g));
                removed += before - groups.len();
                if groups.is_empty() {
                    hooks.remove(&e);
                }
            }
        }
        if hooks.is_empty() {
            doc.remove("hooks");
        }
    }
    removed
}

/// The document with our entries (replacing any older set) for `mcp` and `deliver`.
pub fn merge(doc: &DocumentMut, mcp: &Path, deliver: &Path) -> Result<DocumentMut> {
    let mut d = doc.clone();
    strip(&mut d);
    let root = d.as_table_mut();
    let servers = root
        .entry("mcp_servers")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| anyhow!("`mcp_servers` in config.toml is not a table"))?;
    let mut server = Table::new();
    server["command"] = value(mcp.to_string_lossy().as_ref());
    server["default_tools_approval_mode"] = value("approve");
    servers.insert(MCP_SERVER_NAME, Item::Table(server));

    let hooks = root
        .entry("hooks")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| anyhow!("`hooks` in config.toml is not a table"))?;
    let cmd = shell_quote(&deliver.to_string_lossy());
    for (event, matcher) in EVENTS {
        let list = hooks
            .entry(event)
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .ok_or_else(|| anyhow!("`hooks.{event}` in config.toml is not a list of tables"))?;
        let mut group = Table::new();
        if let Some(m) = matcher {
            group["matcher"] = value(m);
        }
        let mut hook = Table::new();
        hook["type"] = value("command");
        hook["command"] = value(cmd.as_str());
        hook["timeout"] = value(HOOK_TIMEOUT_SECS as i64);
        let mut inner = ArrayOfTables::new();
        inner.push(hook);
        group.insert("hooks", Item::ArrayOfTables(inner));
        list.push(group);
    }
    Ok(d)
}

/// What install or uninstall did to the file, for the human.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Written,
    Restored,
    Removed,
}

/// Installs into `path` (created when missing). `dry`: change nothing.
pub fn install(path: &Path, mcp: &Path, deliver: &Path, dry: bool) -> Result<Outcome> {
    let original = read(path)?;
    let doc = parse(original.as_deref().unwrap_or(""), path)?;
    let new = merge(&doc, mcp, deliver)?;
    if new.to_string() == doc.to_string() {
        return Ok(Outcome::Unchanged);
    }
    if !dry {
        write_bytes(
            path,
            original.as_deref().map(str::as_bytes),
            new.to_string().as_bytes(),
            0o600,
        )?;
    }
    Ok(Outcome::Written)
}

/// Uninstalls from `path`: the backup's bytes when the rest is unchanged, else the file
/// without our entries (no file when nothing else is left and install created it).
pub fn uninstall(path: &Path, dry: bool) -> Result<Outcome> {
    let Some(original) = read(path)? else {
        return Ok(Outcome::Unchanged);
    };
    let mut doc = parse(&original, path)?;
    if strip(&mut doc) == 0 {
        return Ok(Outcome::Unchanged);
    }
    if dry {
        return Ok(Outcome::Written);
    }
    let backup = backup_path(path);
    if let Ok(b) = std::fs::read_to_string(&backup)
        && parse(&b, &backup).is_ok_and(|bd| same_value(&bd, &doc))
    {
        write_bytes(path, None, b.as_bytes(), 0o600)?;
        let _ = std::fs::remove_file(&backup);
        return Ok(Outcome::Restored);
    }
    if doc.as_table().is_empty() && !backup.exists() {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
        return Ok(Outcome::Removed);
    }
    write_bytes(path, None, doc.to_string().as_bytes(), 0o600)?;
    Ok(Outcome::Written)
}

/// Whether two documents are the same text (what stripping a file install merged into gives
/// back, as the tests show).
fn same_value(a: &DocumentMut, b: &DocumentMut) -> bool {
    a.to_string() == b.to_string()
}

/// Whether `path` holds our MCP entry and hooks for `deliver` (for `peers doctor`).
pub fn installed(path: &Path) -> Result<Option<(String, usize)>> {
    let Some(text) = read(path)? else {
        return Ok(None);
    };
    let doc = parse(&text, path)?;
    let mcp = doc
        .get("mcp_servers")
        .and_then(|s| s.get(MCP_SERVER_NAME))
        .and_then(|s| s.get("command"))
        .and_then(Item::as_str)
        .filter(|c| is_ours(Some(c), MCP))
        .map(str::to_string);
    let hooks = doc
        .get("hooks")
        .and_then(Item::as_table_like)
        .map(|h| {
            h.iter()
                .filter_map(|(_, g)| g.as_array_of_tables())
                .flat_map(|g| g.iter())
                .filter(|g| group_is_ours(g))
                .count()
        })
        .unwrap_or(0);
    Ok(mcp.map(|m| (m, hooks)))
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: &str = "# my settings\nmodel = \"o4\"  # keep\n\n[mcp_servers.other]\ncommand = \"x\"\n\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = \"say done\"\n";

    #[test]
    fn merge_then_strip_gives_back_the_same_text() {
        let doc = parse(MINE, Path::new("c")).unwrap();
        let m = merge(
            &doc,
            Path::new("/b/peers-mcp"),
            Path::new("/b/peers-deliver"),
        )
        .unwrap();
        let text = m.to_string();
        assert!(
            text.starts_with("# my settings\nmodel = \"o4\"  # keep\n"),
            "{text}"
        );
        assert!(text.contains("[mcp_servers.peers]\ncommand = \"/b/peers-mcp\"\ndefault_tools_approval_mode = \"approve\""), "{text}");
        assert_eq!(installed_in(&m), 4);
        // Idempotent: merging again changes nothing.
        let again = merge(&m, Path::new("/b/peers-mcp"), Path::new("/b/peers-deliver")).unwrap();
        assert_eq!(again.to_string(), text);
        let mut back = m.clone();
        assert_eq!(strip(&mut back), 5);
        assert_eq!(back.to_string(), MINE);
        // A file of ours alone strips to nothing.
        let mut only = merge(
            &DocumentMut::new(),
            Path::new("/b/peers-mcp"),
            Path::new("/b/peers-deliver"),
        )
        .unwrap();
        strip(&mut only);
        assert_eq!(only.to_string(), "");
    }

    fn installed_in(d: &DocumentMut) -> usize {
        d.get("hooks")
            .and_then(Item::as_table_like)
            .map(|h| {
                h.iter()
                    .filter_map(|(_, g)| g.as_array_of_tables())
                    .flat_map(|g| g.iter())
                    .filter(|g| group_is_ours(g))
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn install_uninstall_round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, MINE).unwrap();
        let (mcp, del) = (Path::new("/b/peers-mcp"), Path::new("/b/peers-deliver"));
        assert!(matches!(
            install(&p, mcp, del, false).unwrap(),
            Outcome::Written
        ));
        assert!(matches!(
            install(&p, mcp, del, false).unwrap(),
            Outcome::Unchanged
        ));
        assert_eq!(installed(&p).unwrap(), Some(("/b/peers-mcp".into(), 4)));
        assert!(matches!(uninstall(&p, false).unwrap(), Outcome::Restored));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), MINE);
        assert!(!backup_path(&p).exists());
        // A file install created goes again.
        let fresh = dir.path().join("new/config.toml");
        install(&fresh, mcp, del, false).unwrap();
        assert!(matches!(
            uninstall(&fresh, false).unwrap(),
            Outcome::Removed
        ));
        assert!(!fresh.exists());
        // Bad TOML is refused, untouched.
        std::fs::write(&p, "model = ").unwrap();
        let e = install(&p, mcp, del, false).unwrap_err().to_string();
        assert!(e.contains("is not valid TOML"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "model = ");
    }
}
