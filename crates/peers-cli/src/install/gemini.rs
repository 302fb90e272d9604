//! Gemini CLI: `~/.gemini/settings.json` and a policy file `~/.gemini/policies/peers.toml`.
//!
//! Install merges into settings.json (key order and every other setting kept, the original
//! saved as `settings.json.peers-backup`, as for Claude Code's files) `mcpServers.peers`
//! running `peers-mcp` and one hook group running `peers-deliver` for SessionStart,
//! BeforeAgent, AfterTool (matcher `.*`, a regex) and AfterAgent (timeouts in ms). Without the
//! policy file Gemini CLI does not even declare the peers tools to the model outside `--yolo`;
//! it allows exactly the peers tools. Uninstall takes out those entries (restoring the
//! original bytes when nothing else changed) and removes the policy file if it is still ours.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use peers_core::claude_settings::{HOOK_TIMEOUT_SECS, shell_quote};
use peers_core::render::{GEMINI_TOOL_PREFIX, TOOLS};
use serde_json::{Value, json};

use super::hooks::{merge_hooks, our_hooks, strip_hooks};
use super::mcp::{merge_mcp_entry, strip_mcp};
use super::restore::{apply_restore, restore_plan};
use super::settings::{JsonFile, render, write_bytes, write_json_file};

/// `~/.gemini`.
pub fn dir() -> Result<PathBuf> {
    Ok(peers_core::paths::home()?.join(".gemini"))
}

pub fn settings_path(dir: &Path) -> PathBuf {
    dir.join("settings.json")
}

pub fn policy_path(dir: &Path) -> PathBuf {
    dir.join("policies/peers.toml")
}

/// Our hook groups for `deliver`.
pub fn hooks(deliver: &Path) -> Value {
    let plain = json!({
        "type": "command",
        "command": shell_quote(&deliver.to_string_lossy()),
        "timeout": HOOK_TIMEOUT_SECS * 1000,
    });
    json!({
        "SessionStart": [{"hooks": [plain.clone()]}],
        "BeforeAgent": [{"hooks": [plain.clone()]}],
        "AfterTool": [{"matcher": ".*", "hooks": [plain.clone()]}],
        "AfterAgent": [{"hooks": [plain]}],
    })
}

/// The MCP server entry.
pub fn mcp_server(mcp: &Path) -> Value {
    json!({"command": mcp.to_string_lossy(), "args": []})
}

/// The policy file: the peers tools run without a prompt.
pub fn policy() -> String {
    let names: Vec<String> = TOOLS
        .iter()
        .map(|t| format!("\"{GEMINI_TOOL_PREFIX}{t}\""))
        .collect();
    format!(
        "# Written by `peers install --agent gemini`; `peers uninstall` removes it.\n\
         # The peers tools run without a prompt (a session must be able to answer its mail).\n\
         [[rule]]\ntoolName = [{}]\ndecision = \"allow\"\npriority = 100\n",
        names.join(", ")
    )
}

/// The settings value with our entries merged in (`None`: nothing to change).
pub fn merge(settings: &Value, mcp: &Path, deliver: &Path) -> Result<Option<Value>> {
    let hooked = merge_hooks(settings, &hooks(deliver))?;
    let base = hooked.clone().unwrap_or_else(|| settings.clone());
    let with_mcp = merge_mcp_entry(&base, mcp_server(mcp), mcp)?;
    Ok(with_mcp.or(hooked))
}

/// Installs into `dir`; returns whether something changed.
pub fn install(dir: &Path, mcp: &Path, deliver: &Path, dry: bool) -> Result<bool> {
    let file = JsonFile::read(&settings_path(dir))?;
    let merged = merge(&file.value, mcp, deliver)?;
    let policy_file = policy_path(dir);
    let policy_ok = std::fs::read_to_string(&policy_file).is_ok_and(|p| p == policy());
    if dry {
        return Ok(merged.is_some() || !policy_ok);
    }
    if let Some(v) = &merged {
        write_json_file(&file, &render(v), 0o600)?;
    }
    if !policy_ok {
        write_bytes(&policy_file, None, policy().as_bytes(), 0o644)?;
    }
    Ok(merged.is_some() || !policy_ok)
}

/// Uninstalls from `dir`; returns whether something changed.
pub fn uninstall(dir: &Path, dry: bool) -> Result<bool> {
    let path = settings_path(dir);
    let file = JsonFile::read(&path)?;
    let mut kept = file.value.clone();
    let n = strip_hooks(&mut kept, false) + usize::from(strip_mcp(&mut kept, false));
    let policy_file = policy_path(dir);
    let policy_ours = std::fs::read_to_string(&policy_file).is_ok_and(|p| p == policy());
    if dry {
        return Ok(n > 0 || policy_ours);
    }
    if n > 0 {
        let mut pruned = file.value.clone();
        strip_hooks(&mut pruned, true);
        strip_mcp(&mut pruned, true);
        apply_restore(&file, restore_plan(&file, &kept, &pruned))?;
    }
    if policy_ours {
        std::fs::remove_file(&policy_file)
            .with_context(|| format!("cannot remove {}", policy_file.display()))?;
        let _ = std::fs::remove_dir(policy_file.parent().unwrap_or(dir));
    }
    Ok(n > 0 || policy_ours)
}

/// What `dir` holds of ours: the MCP command, the number of hook commands, whether the
/// policy file is there (for `peers doctor`).
pub fn installed(dir: &Path) -> Result<(Option<String>, usize, bool)> {
    let file = JsonFile::read(&settings_path(dir))?;
    let mcp = super::mcp::mcp_command(&file.value);
    let hooks = our_hooks(&file.value).len();
    let policy = std::fs::read_to_string(policy_path(dir)).is_ok_and(|p| p == policy());
    Ok((mcp, hooks, policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_uninstall_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mine = "{\n  \"security\": {\"auth\": {\"selectedType\": \"gemini-api-key\"}},\n  \"hooks\": {\"AfterTool\": [{\"matcher\": \"x\", \"hooks\": [{\"type\": \"command\", \"command\": \"lint\"}]}]}\n}\n";
        std::fs::write(settings_path(d), mine).unwrap();
        let (mcp, del) = (Path::new("/b/peers-mcp"), Path::new("/b/peers-deliver"));
        assert!(install(d, mcp, del, false).unwrap());
        assert!(!install(d, mcp, del, false).unwrap(), "idempotent");
        let v: Value = serde_json::from_slice(&std::fs::read(settings_path(d)).unwrap()).unwrap();
        assert_eq!(v["mcpServers"]["peers"]["command"], "/b/peers-mcp");
        assert_eq!(v["hooks"]["AfterTool"].as_array().unwrap().len(), 2);
        assert_eq!(v["hooks"]["AfterAgent"][0]["hooks"][0]["timeout"], 10_000);
        assert_eq!(v["security"]["auth"]["selectedType"], "gemini-api-key");
        assert_eq!(
            installed(d).unwrap(),
            (Some("/b/peers-mcp".into()), 4, true)
        );
        let p = std::fs::read_to_string(policy_path(d)).unwrap();
        assert!(p.contains("\"mcp_peers_send_message\""), "{p}");
        assert!(uninstall(d, false).unwrap());
        assert_eq!(std::fs::read_to_string(settings_path(d)).unwrap(), mine);
        assert!(!policy_path(d).exists());
        assert!(!uninstall(d, false).unwrap());
        // Created by install: removed again.
        let fresh = tempfile::tempdir().unwrap();
        install(fresh.path(), mcp, del, false).unwrap();
        uninstall(fresh.path(), false).unwrap();
        assert!(!settings_path(fresh.path()).exists());
    }
}
