//! The JSON that plugs peers into Claude Code: the hook set and the MCP server entry.
//!
//! One source for `peers install`, the plugin files under `hooks/`, and the end-to-end
//! harness, so what the tests run is exactly what users get.

use std::path::Path;

use serde_json::{Value, json};

/// The MCP server name; the model sees its tools as `mcp__peers__<tool>`.
pub const MCP_SERVER_NAME: &str = "peers";

/// The tools `peers-mcp` gives the model (the list lives with the renderer, which names them).
pub const TOOLS: [&str; crate::render::TOOLS.len()] = crate::render::TOOLS;

/// The plugin's name (`.claude-plugin/plugin.json`). Claude Code names the tools of a
/// plugin's server `mcp__plugin_<plugin>_<server>__<tool>`.
pub const PLUGIN_NAME: &str = "peers";

/// The tool-name prefix of a user- or project-scope server named [`MCP_SERVER_NAME`].
pub const MCP_TOOL_PREFIX: &str = crate::render::DEFAULT_TOOL_PREFIX;
/// The tool-name prefix when the same server comes from the plugin [`PLUGIN_NAME`]
/// (`peers-mcp --tool-prefix`).
pub const PLUGIN_TOOL_PREFIX: &str = "mcp__plugin_peers_peers__";

/// [`PLUGIN_TOOL_PREFIX`] as an owned string.
pub fn plugin_tool_prefix() -> String {
    PLUGIN_TOOL_PREFIX.to_string()
}

/// The `permissions.allow` entries that let the peers tools run without a prompt, for the
/// tool-name prefix of the client's route ([`MCP_TOOL_PREFIX`] or [`PLUGIN_TOOL_PREFIX`]).
/// A woken, unattended session would otherwise wait on a permission prompt nobody sees.
pub fn allowed_tools(prefix: &str) -> Vec<String> {
    TOOLS.iter().map(|t| format!("{prefix}{t}")).collect()
}

/// Set (to anything) in the environment of a `claude` that only probes the MCP server
/// (`peers doctor` runs `claude mcp list`): `peers-mcp` then serves its tools without starting
/// the broker or registering, so the probe leaves no ended session behind.
pub const PROBE_ENV: &str = "PEERS_PROBE";

/// How long Claude Code lets the ordinary hook run. The hook bounds itself far below this.
pub const HOOK_TIMEOUT_SECS: u64 = 10;
/// How long Claude Code lets the `--wait` (asyncRewake) hook run before killing it.
pub const WAIT_HOOK_TIMEOUT_SECS: u64 = 24 * 3600;

/// Quotes a path for `/bin/sh` when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `"hooks"` object: `peers-deliver` on SessionStart, UserPromptSubmit, PostToolUse and
/// Stop, plus `peers-deliver --wait` as an asyncRewake hook on SessionStart (a session that
/// never finished a turn is woken too) and on Stop (each idle spell gets a fresh waiter,
/// which supersedes the one before).
pub fn hooks(deliver_bin: &Path) -> Value {
    hooks_for_command(&shell_quote(&deliver_bin.to_string_lossy()))
}

/// The same hook set for a command line that is already shell-ready (the plugin's
/// `${CLAUDE_PLUGIN_ROOT}` form); the waiter runs `<cmd> --wait`.
pub fn hooks_for_command(cmd: &str) -> Value {
    let plain = json!({"type": "command", "command": cmd, "timeout": HOOK_TIMEOUT_SECS});
    let wait = json!({
        "type": "command",
        "command": format!("{cmd} --wait"),
        "asyncRewake": true,
        "timeout": WAIT_HOOK_TIMEOUT_SECS,
    });
    json!({
        "SessionStart": [{"hooks": [plain.clone(), wait.clone()]}],
        "UserPromptSubmit": [{"hooks": [plain.clone()]}],
        "PostToolUse": [{"matcher": "*", "hooks": [plain.clone()]}],
        "Stop": [{"hooks": [plain, wait]}],
    })
}

/// A whole settings file holding only the peers hooks (for `--settings FILE`).
pub fn settings(deliver_bin: &Path) -> Value {
    json!({ "hooks": hooks(deliver_bin) })
}

/// The MCP server entry (`{"type":"stdio","command":…,"args":[]}`).
pub fn mcp_server(mcp_bin: &Path) -> Value {
    json!({"type": "stdio", "command": mcp_bin.to_string_lossy(), "args": []})
}

/// A whole MCP config file (for `--mcp-config FILE` or a project `.mcp.json`).
pub fn mcp_config(mcp_bin: &Path) -> Value {
    json!({"mcpServers": {MCP_SERVER_NAME: mcp_server(mcp_bin)}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_prefix_is_claude_codes_name_for_the_plugins_server() {
        assert_eq!(
            PLUGIN_TOOL_PREFIX,
            format!("mcp__plugin_{PLUGIN_NAME}_{MCP_SERVER_NAME}__")
        );
    }

    #[test]
    fn hooks_cover_four_events_and_the_waiter() {
        let h = hooks(Path::new("/opt/peers/bin/peers-deliver"));
        for ev in ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"] {
            assert_eq!(
                h[ev][0]["hooks"][0]["command"], "/opt/peers/bin/peers-deliver",
                "{ev}"
            );
        }
        for ev in ["SessionStart", "Stop"] {
            assert_eq!(h[ev][0]["hooks"][1]["asyncRewake"], true, "{ev}");
            assert_eq!(
                h[ev][0]["hooks"][1]["command"], "/opt/peers/bin/peers-deliver --wait",
                "{ev}"
            );
        }
        for ev in ["UserPromptSubmit", "PostToolUse"] {
            assert_eq!(h[ev][0]["hooks"].as_array().map(Vec::len), Some(1), "{ev}");
        }
    }

    #[test]
    fn a_ready_command_is_used_as_is() {
        let h = hooks_for_command("exec \"$p\"");
        assert_eq!(h["PostToolUse"][0]["hooks"][0]["command"], "exec \"$p\"");
        assert_eq!(h["Stop"][0]["hooks"][1]["command"], "exec \"$p\" --wait");
        assert_eq!(
            hooks(Path::new("/a b/peers-deliver")),
            hooks_for_command("'/a b/peers-deliver'")
        );
    }

    #[test]
    fn allowed_tools_name_each_tool_for_the_route() {
        let mut user = allowed_tools(MCP_TOOL_PREFIX);
        user.sort();
        assert_eq!(
            user,
            [
                "mcp__peers__check_messages",
                "mcp__peers__handover",
                "mcp__peers__list_peers",
                "mcp__peers__list_topics",
                "mcp__peers__message_status",
                "mcp__peers__read_thread",
                "mcp__peers__read_topic",
                "mcp__peers__search_messages",
                "mcp__peers__send_message",
                "mcp__peers__set_summary",
                "mcp__peers__subscribe",
                "mcp__peers__unsubscribe",
                "mcp__peers__whoami",
            ]
        );
        assert_eq!(
            allowed_tools(PLUGIN_TOOL_PREFIX)[2],
            "mcp__plugin_peers_peers__send_message"
        );
    }

    #[test]
    fn odd_paths_are_quoted() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(shell_quote("/usr/bin/x"), "/usr/bin/x");
    }
}
