//! The Claude Code plugin files at the repository root (`.claude-plugin/plugin.json`,
//! `hooks/hooks.json`, `.mcp.json`), generated from `peers_core::claude_settings` so the
//! plugin runs exactly the hook set `peers install` writes. A unit test keeps the checked-in
//! files equal to these values (`PEERS_WRITE_PLUGIN=1 cargo test -p peers-cli plugin` rewrites
//! them).
//!
//! The plugin finds its binaries in `$CLAUDE_PLUGIN_ROOT/bin/` (Claude Code sets that variable
//! for plugin hooks and MCP servers), else on PATH (`cargo xtask install` puts them in
//! `~/.local/bin`). A hook whose binary is nowhere exits 0 silently, like the hook itself does
//! on any failure. `$CLAUDE_PLUGIN_ROOT` is written without braces so that Claude Code does
//! not try to expand it itself when the root `.mcp.json` is read as a project's MCP config
//! (while working on this repository): the shell expands it, to nothing there.

#![cfg_attr(not(test), allow(dead_code))]

use peers_core::claude_settings::{self, MCP_SERVER_NAME};
use serde_json::{Value, json};

/// The hook command: the plugin's own binary, else the one on PATH.
pub const DELIVER_CMD: &str = r#"p="$CLAUDE_PLUGIN_ROOT/bin/peers-deliver"; [ -x "$p" ] || p=peers-deliver; command -v "$p" >/dev/null 2>&1 || exit 0; exec "$p""#;

/// The MCP server, started through `sh -c … exec` so that it ends up Claude Code's child.
/// Loaded from the plugin (`$CLAUDE_PLUGIN_ROOT` set) it is told the tool names the client
/// gives a plugin's server (`--tool-prefix mcp__plugin_peers_peers__`); read as this
/// repository's project `.mcp.json` it is a plain server `peers` and keeps the default.
pub fn mcp_script() -> String {
    format!(
        r#"p="$CLAUDE_PLUGIN_ROOT/bin/peers-mcp"; [ -x "$p" ] || p=peers-mcp; [ -z "$CLAUDE_PLUGIN_ROOT" ] || set -- --tool-prefix {}; exec "$p" "$@""#,
        claude_settings::plugin_tool_prefix()
    )
}

pub fn plugin_json() -> Value {
    json!({
        "name": claude_settings::PLUGIN_NAME,
        "version": peers_core::VERSION,
        "description": "Claude Code sessions that find each other by name and send each other mail that reaches the other model's context: mid-turn, at the end of a turn, or by waking an idle session.",
        "license": "MIT OR Apache-2.0",
        "keywords": ["messaging", "multi-session", "mcp", "hooks"]
    })
}

pub fn hooks_json() -> Value {
    json!({
        "description": "peers-deliver puts waiting peer mail in front of the model (SessionStart, UserPromptSubmit, PostToolUse, Stop); `peers-deliver --wait` wakes an idle session when mail arrives.",
        "hooks": claude_settings::hooks_for_command(DELIVER_CMD),
    })
}

pub fn mcp_json() -> Value {
    json!({
        "mcpServers": {
            MCP_SERVER_NAME: {"type": "stdio", "command": "sh", "args": ["-c", mcp_script()]}
        }
    })
}

/// `(path relative to the repository root, content)` of each plugin file.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            ".claude-plugin/plugin.json",
            crate::install::render(&plugin_json()),
        ),
        ("hooks/hooks.json", crate::install::render(&hooks_json())),
        (".mcp.json", crate::install::render(&mcp_json())),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_checked_in_plugin_files_match_the_hook_set() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let write = std::env::var_os("PEERS_WRITE_PLUGIN").is_some();
        for (rel, want) in super::files() {
            let path = root.join(rel);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read(&path).unwrap_or_default();
            assert!(
                have == want,
                "{rel} is out of date; regenerate with `PEERS_WRITE_PLUGIN=1 cargo test -p \
                 peers-cli plugin`:\n{}",
                String::from_utf8_lossy(&want)
            );
        }
    }

    /// The plugin's MCP command, run by `sh` as Claude Code runs it, against a stand-in
    /// `peers-mcp` that prints its arguments: the plugin prefix under the plugin only.
    #[test]
    fn the_mcp_command_passes_the_plugin_tool_prefix_under_the_plugin_only() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = bin.join("peers-mcp");
        std::fs::write(&fake, "#!/bin/sh\necho \"$0\" \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = |root: Option<&std::path::Path>| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(super::mcp_script());
            cmd.env_remove("CLAUDE_PLUGIN_ROOT");
            match root {
                Some(r) => cmd.env("CLAUDE_PLUGIN_ROOT", r),
                None => cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.display())),
            };
            String::from_utf8(cmd.output().unwrap().stdout).unwrap()
        };
        assert_eq!(
            run(Some(dir.path())),
            format!(
                "{} --tool-prefix mcp__plugin_peers_peers__\n",
                fake.display()
            )
        );
        assert_eq!(run(None), format!("{}\n", fake.display()));
    }

    #[test]
    fn plugin_commands_run_the_binaries() {
        assert_eq!(
            crate::shell::first_word(super::DELIVER_CMD),
            "p=$CLAUDE_PLUGIN_ROOT/bin/peers-deliver;"
        );
        let h = super::hooks_json();
        assert!(
            h["hooks"]["Stop"][0]["hooks"][1]["command"]
                .as_str()
                .unwrap()
                .ends_with(r#"exec "$p" --wait"#)
        );
    }
}
