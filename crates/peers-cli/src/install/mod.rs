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
//!
//! Codex CLI and Gemini CLI (`--agent codex|gemini`; by default every agent CLI on PATH) have
//! their own files: [`codex`] (`$CODEX_HOME/config.toml`, edited losslessly) and [`gemini`]
//! (`~/.gemini/settings.json` and a policy file), with the same backup and restore rules.
//!
//! The module follows those seams: [`settings`] (a JSON settings file: read, key order kept,
//! written atomically with its backup), [`hooks`], [`allow`] (`permissions.allow`), [`mcp`]
//! (the MCP entry written directly), [`restore`] (what uninstall writes back), and
//! [`command`] (the two commands).

mod allow;
pub mod codex;
mod command;
pub mod gemini;
mod hooks;
mod mcp;
mod restore;
mod settings;

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;

pub use allow::allow_entries;
pub use command::{InstallArgs, UninstallArgs, install, uninstall};
pub use hooks::our_hooks;
pub use mcp::mcp_command;
pub use settings::{JsonFile, render};

pub const DELIVER: &str = "peers-deliver";
pub const MCP: &str = "peers-mcp";

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum InstallScope {
    /// Every session of this user: ~/.claude/settings.json and ~/.claude.json.
    User,
    /// Sessions in the current directory: ./.claude/settings.json and ./.mcp.json.
    Project,
}

/// The files one scope touches.
#[derive(Debug, Clone)]
pub struct Target {
    pub scope: InstallScope,
    /// Where the hooks go.
    pub settings: PathBuf,
    /// Where the MCP server entry goes when written directly (`~/.claude.json` or `./.mcp.json`).
    pub mcp_file: PathBuf,
}

impl Target {
    pub fn new(scope: InstallScope) -> Result<Target> {
        Ok(match scope {
            InstallScope::User => {
                let home = peers_core::paths::home()?;
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

    pub(crate) fn scope_word(&self) -> &'static str {
        match self.scope {
            InstallScope::User => "user",
            InstallScope::Project => "project",
        }
    }
}
