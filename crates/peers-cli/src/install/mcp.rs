//! The `peers` MCP server entry when install writes it directly (no `claude` CLI on PATH, or
//! it failed): `mcpServers.peers` of `~/.claude.json` or `./.mcp.json`.

use std::path::Path;

use anyhow::Result;
use peers_core::claude_settings::{self, MCP_SERVER_NAME};
use serde_json::Value;

use super::MCP;
use super::settings::{object_at, object_mut};
use crate::shell::program_name;

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

pub fn mcp_entry_is_ours(entry: &Value) -> bool {
    entry
        .get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| program_name(c) == MCP || Path::new(c).file_name() == Some(MCP.as_ref()))
}

/// The file value with our MCP entry (`None`: already there).
pub fn merge_mcp(v: &Value, mcp_bin: &Path) -> Result<Option<Value>> {
    merge_mcp_entry(v, claude_settings::mcp_server(mcp_bin), mcp_bin)
}

/// The file value with `want` as the `peers` entry of `mcpServers` (`None`: an entry running
/// `mcp_bin` is there already).
pub fn merge_mcp_entry(v: &Value, want: Value, mcp_bin: &Path) -> Result<Option<Value>> {
    if mcp_entry(v).is_some_and(|e| mcp_matches(e, mcp_bin)) {
        return Ok(None);
    }
    let mut s = v.clone();
    let obj = object_mut(&mut s, "not a JSON object")?;
    let servers = object_at(obj, "mcpServers", "`mcpServers` is not an object")?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
