//! The hooks in a settings file: which are peers', merging ours in (replacing any older set),
//! and taking them out.

use anyhow::Result;
use serde_json::Value;

use super::DELIVER;
use super::settings::{list_at, object_at, object_mut};
use crate::shell::program_name;

/// Whether a hook entry (`{"type":"command","command":…}`) runs `peers-deliver`.
pub fn is_our_hook(h: &Value) -> bool {
    h.get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| program_name(c) == DELIVER)
}

/// Every hook of a `{event: [group, …]}` object, as `(event, hook)`, in order.
fn each_hook(hooks: Option<&Value>) -> impl Iterator<Item = (&String, &Value)> {
    hooks
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .flat_map(|(event, groups)| {
            groups
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.get("hooks").and_then(Value::as_array))
                .flatten()
                .map(move |h| (event, h))
        })
}

/// The command a hook runs (`""` when it has none).
fn command_of(h: &Value) -> &str {
    h.get("command").and_then(Value::as_str).unwrap_or("")
}

/// Every peers hook command in a settings value, as `(event, command)`.
pub fn our_hooks(settings: &Value) -> Vec<(String, String)> {
    each_hook(settings.get("hooks"))
        .filter(|(_, h)| is_our_hook(h))
        .map(|(event, h)| (event.clone(), command_of(h).to_string()))
        .collect()
}

/// Whether a hook group (`{"matcher":…,"hooks":[…]}`) holds one of peers' hooks.
fn has_our_hook(group: &Value) -> bool {
    group
        .get("hooks")
        .and_then(Value::as_array)
        .is_some_and(|hs| hs.iter().any(is_our_hook))
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
            .filter(|g| has_our_hook(g))
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
        .filter(|g| has_our_hook(g))
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
    let obj = object_mut(&mut s, "the settings are not a JSON object")?;
    let hooks = object_at(obj, "hooks", "`hooks` in the settings is not an object")?;
    for (event, groups) in ours.as_object().into_iter().flatten() {
        let list = list_at(
            hooks,
            event,
            &format!("`hooks.{event}` in the settings is not a list"),
        )?;
        list.extend(groups.as_array().cloned().unwrap_or_default());
    }
    Ok(Some(s))
}

/// Our hooks as lines for the human: `Event: command`, with what an async one does.
pub fn describe_hooks(ours: &Value) -> Vec<String> {
    each_hook(Some(ours))
        .map(|(event, h)| {
            let mut line = format!("{event}: {}", command_of(h));
            if h.get("asyncRewake").and_then(Value::as_bool) == Some(true) {
                line.push_str(" (asyncRewake: wakes an idle session)");
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use peers_core::claude_settings;
    use serde_json::json;

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
}
