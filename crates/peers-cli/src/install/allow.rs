//! The peers tools in `permissions.allow`: appended on install, taken out on uninstall except
//! the entries the user had before.

use anyhow::Result;
use peers_core::claude_settings::{self, MCP_TOOL_PREFIX};
use serde_json::Value;

use super::settings::{JsonFile, list_at, object_at, object_mut};

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
    let obj = object_mut(&mut s, "the settings are not a JSON object")?;
    let perms = object_at(
        obj,
        "permissions",
        "`permissions` in the settings is not an object",
    )?;
    let allow = list_at(
        perms,
        "allow",
        "`permissions.allow` in the settings is not a list",
    )?;
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
pub fn backup_allow(file: &JsonFile) -> Vec<String> {
    std::fs::read(file.backup_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| allow_entries(&v))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn allow_merge_is_idempotent_and_strip_keeps_the_users_entries() {
        let orig = json!({"permissions": {"allow": ["Read", "mcp__peers__whoami"], "deny": []}});
        let ours = our_allow();
        let merged = merge_allow(&orig, &ours).unwrap().unwrap();
        let allow = allow_entries(&merged);
        let tools = peers_core::claude_settings::TOOLS.len();
        assert_eq!(allow.len(), 1 + tools, "{allow:?}");
        assert_eq!(&allow[..2], ["Read", "mcp__peers__whoami"]);
        assert!(merge_allow(&merged, &ours).unwrap().is_none());
        // The user had whoami before: it stays.
        let strip = allow_to_strip(&merged, &allow_entries(&orig));
        assert_eq!(strip.len(), tools - 1);
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
}
