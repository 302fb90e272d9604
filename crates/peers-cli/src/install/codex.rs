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
//!
//! **Hook trust.** Codex runs a user hook only when `[hooks.state."<key>"] trusted_hash`
//! matches the hook (what its `/hooks` screen records when you trust one). The key is
//! `<config file>:<event>:<group index>:<handler index>` (event in snake case, indices counted
//! in this file, the file as Codex names it: `$CODEX_HOME` resolved, `~/.codex` as it is); the
//! hash is `sha256:` and the hex SHA-256 of the hook's normalised identity as compact JSON with
//! sorted keys (see [`trust_hash`]; checked against Codex 0.171.0's own `hooks/list`). Install
//! records trust for the groups it adds; because the keys are positions, removing our groups
//! renumbers the trust entries of the user's groups after them, and drops ours.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use peers_core::claude_settings::{HOOK_TIMEOUT_SECS, MCP_SERVER_NAME, shell_quote};
use serde::Serialize;
use sha2::{Digest, Sha256};
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value, value};

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

/// The table under `hooks` where Codex keeps each hook's trust (and enabled flag).
const STATE: &str = "state";

/// `$CODEX_HOME/config.toml`, else `~/.codex/config.toml`.
pub fn config_path() -> Result<PathBuf> {
    if let Some(h) = codex_home() {
        return Ok(PathBuf::from(h).join("config.toml"));
    }
    Ok(peers_core::paths::home()?.join(".codex/config.toml"))
}

fn codex_home() -> Option<std::ffi::OsString> {
    std::env::var_os("CODEX_HOME").filter(|h| !h.is_empty())
}

/// The name Codex gives `path` (the file [`config_path`] found) in its trust keys: Codex
/// resolves `$CODEX_HOME` (symbolic links, `..`) and takes `~/.codex` as it is.
pub fn trust_source(path: &Path) -> String {
    let resolved = codex_home()
        .and_then(|_| path.parent()?.canonicalize().ok())
        .map(|d| d.join("config.toml"));
    resolved.as_deref().unwrap_or(path).display().to_string()
}

/// An event's name in Codex's trust keys and hashes: `PostToolUse` → `post_tool_use`.
fn event_label(event: &str) -> String {
    let mut out = String::new();
    for (i, c) in event.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The trust key of handler `handler` of group `group` of `event` in the file `source`.
fn trust_key(source: &str, label: &str, group: usize, handler: usize) -> String {
    format!("{source}:{label}:{group}:{handler}")
}

/// `(event label, group, handler)` of a trust key of the file `source`.
fn parse_trust_key<'a>(key: &'a str, source: &str) -> Option<(&'a str, usize, usize)> {
    let rest = key.strip_prefix(source)?.strip_prefix(':')?;
    let mut parts = rest.split(':');
    let (label, group, handler) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((label, group.parse().ok()?, handler.parse().ok()?))
}

/// What Codex hashes for a command hook: the event, the group's matcher and the one handler
/// as Codex normalises it (timeout filled in, `async` false, no status message). The fields
/// are declared in sorted order: serialised in that order they are the canonical JSON Codex
/// hashes (whatever `serde_json`'s `preserve_order` says).
#[derive(Serialize)]
struct HookIdentity<'a> {
    event_name: &'a str,
    hooks: [CommandHandler<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    matcher: Option<&'a str>,
}

#[derive(Serialize)]
struct CommandHandler<'a> {
    r#async: bool,
    command: &'a str,
    timeout: u64,
    r#type: &'static str,
}

/// The `trusted_hash` Codex expects for our hook on `event` with `matcher` running `command`.
pub fn trust_hash(event: &str, matcher: Option<&str>, command: &str) -> String {
    let label = event_label(event);
    let identity = HookIdentity {
        event_name: &label,
        hooks: [CommandHandler {
            r#async: false,
            command,
            timeout: HOOK_TIMEOUT_SECS,
            r#type: "command",
        }],
        matcher,
    };
    let json = serde_json::to_vec(&identity).expect("a hook identity serialises");
    format!("sha256:{}", hex::encode(Sha256::digest(json)))
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

/// For one event whose groups lost ours: the event's label and, per old group index, its
/// new index (`None`: ours, removed).
type Renumbering = (String, Vec<Option<usize>>);

/// Removes our MCP entry and hook groups, and the trust entries of `source` that named them
/// (renumbering those of the groups that moved up); drops tables left empty. Returns how
/// many entries (the MCP server, hook groups) it removed.
pub fn strip(doc: &mut DocumentMut, source: &str) -> usize {
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
        let mut moved: Vec<Renumbering> = vec![];
        for e in events {
            if let Some(groups) = hooks.get_mut(&e).and_then(Item::as_array_of_tables_mut) {
                let mut next = 0;
                let map: Vec<Option<usize>> = groups
                    .iter()
                    .map(|g| {
                        (!group_is_ours(g)).then(|| {
                            next += 1;
                            next - 1
                        })
                    })
                    .collect();
                let before = groups.len();
                groups.retain(|g| !group_is_ours(g));
                removed += before - groups.len();
                if groups.is_empty() {
                    hooks.remove(&e);
                }
                if map.iter().any(Option::is_none) {
                    moved.push((event_label(&e), map));
                }
            }
        }
        renumber_trust(hooks, source, &moved);
        if hooks.is_empty() {
            doc.remove("hooks");
        }
    }
    removed
}

/// Applies `moved` to the trust entries of `source` in `hooks.state`: entries of removed
/// groups go, entries of groups that moved get their new key. Drops `state` when empty.
fn renumber_trust(hooks: &mut dyn TableLike, source: &str, moved: &[Renumbering]) {
    let Some(state) = hooks.get_mut(STATE).and_then(Item::as_table_like_mut) else {
        return;
    };
    let keys: Vec<String> = state.iter().map(|(k, _)| k.to_string()).collect();
    // Take every affected entry out first, then put the moved ones back under their new
    // keys: a new key may be one still to be taken out.
    let mut put_back = vec![];
    for k in keys {
        let Some((label, group, handler)) = parse_trust_key(&k, source) else {
            continue;
        };
        let Some((_, map)) = moved.iter().find(|(l, _)| l == label) else {
            continue;
        };
        match map.get(group) {
            Some(None) => {
                state.remove(&k);
            }
            Some(Some(new)) if *new != group => {
                let new_key = trust_key(source, label, *new, handler);
                if let Some(item) = state.remove(&k) {
                    put_back.push((new_key, item));
                }
            }
            _ => {}
        }
    }
    for (k, item) in put_back {
        state.insert(&k, item);
    }
    if state.is_empty() {
        hooks.remove(STATE);
    }
}

/// Records `hash` as the trusted hash of the hook `key` in `hooks.state`.
fn trust(hooks: &mut Table, key: &str, hash: &str) -> Result<()> {
    let state = hooks.entry(STATE).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    match state {
        Item::Table(t) => {
            let mut entry = Table::new();
            entry["trusted_hash"] = value(hash);
            t.insert(key, Item::Table(entry));
        }
        Item::Value(Value::InlineTable(t)) => {
            let mut entry = InlineTable::new();
            entry.insert("trusted_hash", hash.into());
            t.insert(key, Value::InlineTable(entry));
        }
        _ => bail!("`hooks.state` in config.toml is not a table"),
    }
    Ok(())
}

/// The document with our entries (replacing any older set) for `mcp` and `deliver`, our hooks
/// trusted under the file name `source` ([`trust_source`]).
pub fn merge(doc: &DocumentMut, mcp: &Path, deliver: &Path, source: &str) -> Result<DocumentMut> {
    let mut d = doc.clone();
    strip(&mut d, source);
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
        let key = trust_key(source, &event_label(event), list.len() - 1, 0);
        trust(hooks, &key, &trust_hash(event, matcher, &cmd))?;
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
    if !dry && let Some(dir) = path.parent() {
        // Codex names the file by its resolved directory, which must exist to be resolved.
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let new = merge(&doc, mcp, deliver, &trust_source(path))?;
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
    if strip(&mut doc, &trust_source(path)) == 0 {
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

/// What of ours a config.toml holds (for `peers doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The `peers-mcp` our MCP entry runs.
    pub mcp: String,
    /// Our hook groups.
    pub hooks: usize,
    /// Those of them Codex will run: a trust entry with the hash of the hook as it is now.
    pub trusted: usize,
}

/// What `path` holds of our MCP entry and hooks, `None` without our MCP entry.
pub fn installed(path: &Path) -> Result<Option<Installed>> {
    let Some(text) = read(path)? else {
        return Ok(None);
    };
    let doc = parse(&text, path)?;
    let Some(mcp) = doc
        .get("mcp_servers")
        .and_then(|s| s.get(MCP_SERVER_NAME))
        .and_then(|s| s.get("command"))
        .and_then(Item::as_str)
        .filter(|c| is_ours(Some(c), MCP))
    else {
        return Ok(None);
    };
    let source = trust_source(path);
    let (mut hooks, mut trusted) = (0, 0);
    if let Some(h) = doc.get("hooks").and_then(Item::as_table_like) {
        let state = h.get(STATE).and_then(Item::as_table_like);
        for (event, groups) in h.iter() {
            for (i, g) in groups
                .as_array_of_tables()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if !group_is_ours(g) {
                    continue;
                }
                hooks += 1;
                let cmd = g
                    .get("hooks")
                    .and_then(Item::as_array_of_tables)
                    .and_then(|hs| hs.get(0))
                    .and_then(|h| h.get("command"))
                    .and_then(Item::as_str)
                    .unwrap_or_default();
                let matcher = g.get("matcher").and_then(Item::as_str);
                let key = trust_key(&source, &event_label(event), i, 0);
                let recorded = state
                    .and_then(|s| s.get(&key))
                    .and_then(|e| e.get("trusted_hash"))
                    .and_then(Item::as_str);
                if recorded == Some(trust_hash(event, matcher, cmd).as_str()) {
                    trusted += 1;
                }
            }
        }
    }
    Ok(Some(Installed {
        mcp: mcp.to_string(),
        hooks,
        trusted,
    }))
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

    /// The file name the trust keys of the pure merge/strip tests use.
    const SRC: &str = "/h/.codex/config.toml";

    /// `doc` with our entries for `/b/peers-mcp` and `/b/peers-deliver`, trusted under [`SRC`].
    fn merged(doc: &DocumentMut) -> DocumentMut {
        merge(
            doc,
            Path::new("/b/peers-mcp"),
            Path::new("/b/peers-deliver"),
            SRC,
        )
        .unwrap()
    }

    const MINE: &str = "# my settings\nmodel = \"o4\"  # keep\n\n[mcp_servers.other]\ncommand = \"x\"\n\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = \"say done\"\n";

    #[test]
    fn merge_then_strip_gives_back_the_same_text() {
        let doc = parse(MINE, Path::new("c")).unwrap();
        let m = merged(&doc);
        let text = m.to_string();
        assert!(
            text.starts_with("# my settings\nmodel = \"o4\"  # keep\n"),
            "{text}"
        );
        assert!(text.contains("[mcp_servers.peers]\ncommand = \"/b/peers-mcp\"\ndefault_tools_approval_mode = \"approve\""), "{text}");
        assert_eq!(installed_in(&m), 4);
        // Idempotent: merging again changes nothing.
        let again = merged(&m);
        assert_eq!(again.to_string(), text);
        let mut back = m.clone();
        assert_eq!(strip(&mut back, SRC), 5);
        assert_eq!(back.to_string(), MINE);
        // A file of ours alone strips to nothing.
        let mut only = merged(&DocumentMut::new());
        strip(&mut only, SRC);
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
        assert_eq!(
            installed(&p).unwrap(),
            Some(Installed {
                mcp: "/b/peers-mcp".into(),
                hooks: 4,
                trusted: 4
            })
        );
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

    #[test]
    fn trust_hashes_are_the_ones_codex_computes() {
        // Codex 0.171.0's own `hooks/list` (app-server) for these two hooks in a config.toml.
        assert_eq!(
            trust_hash("PostToolUse", Some("*"), "/b/peers-deliver"),
            "sha256:4f2a721cf7655eeb0e47381813f6570105f71b1cc5930e9eb418da06ee161f7e"
        );
        assert_eq!(
            trust_hash("SessionStart", None, "/b/peers-deliver"),
            "sha256:5f9bf0d2a4735b9aec468acb8a363c3395b7267db4924f48f774a269dd937763"
        );
        assert_eq!(event_label("UserPromptSubmit"), "user_prompt_submit");
        assert_eq!(
            parse_trust_key("/a:b/config.toml:stop:2:0", "/a:b/config.toml"),
            Some(("stop", 2, 0))
        );
        assert_eq!(parse_trust_key("/other/config.toml:stop:2:0", SRC), None);
    }

    /// The user's Stop group (trusted) comes first; ours goes after it with its own trust
    /// entry. A group the user adds after ours moves up when ours goes, and so does its trust.
    #[test]
    fn install_trusts_our_hooks_and_uninstall_renumbers_the_users_trust() {
        let theirs =
            format!("{MINE}\n[hooks.state.\"{SRC}:stop:0:0\"]\ntrusted_hash = \"sha256:mine\"\n");
        let doc = parse(&theirs, Path::new("c")).unwrap();
        let m = merged(&doc);
        let state = |d: &DocumentMut| -> Vec<(String, String)> {
            d["hooks"]["state"]
                .as_table_like()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.to_string(), v["trusted_hash"].as_str().unwrap().into()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut want = vec![(format!("{SRC}:stop:0:0"), "sha256:mine".to_string())];
        for (event, matcher) in EVENTS {
            let group = usize::from(event == "Stop");
            want.push((
                trust_key(SRC, &event_label(event), group, 0),
                trust_hash(event, matcher, "/b/peers-deliver"),
            ));
        }
        let mut got = state(&m);
        got.sort();
        want.sort();
        assert_eq!(got, want);

        // The user adds a trusted Stop group after ours.
        let later = format!(
            "{}\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = \"say later\"\n",
            m
        )
        .replace(
            &format!("[hooks.state.\"{SRC}:stop:0:0\"]"),
            &format!(
                "[hooks.state.\"{SRC}:stop:2:0\"]\ntrusted_hash = \"sha256:later\"\n\n[hooks.state.\"{SRC}:stop:0:0\"]"
            ),
        );
        let mut back = parse(&later, Path::new("c")).unwrap();
        assert_eq!(strip(&mut back, SRC), 5);
        let mut got = state(&back);
        got.sort();
        assert_eq!(
            got,
            vec![
                (format!("{SRC}:stop:0:0"), "sha256:mine".to_string()),
                (format!("{SRC}:stop:1:0"), "sha256:later".to_string()),
            ]
        );
        // Trust entries of other files are not ours to renumber.
        let other = format!(
            "{MINE}\n[hooks.state.\"/p/.codex/config.toml:stop:1:0\"]\ntrusted_hash = \"x\"\n"
        );
        let mut o = merged(&parse(&other, Path::new("c")).unwrap());
        strip(&mut o, SRC);
        assert_eq!(o.to_string(), other);
    }
}
