//! The two commands: `peers install` and `peers uninstall`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use peers_core::claude_settings::{self, MCP_SERVER_NAME};

use super::allow::{
    allow_entries, allow_to_strip, backup_allow, merge_allow, our_allow, strip_allow,
};
use super::hooks::{describe_hooks, merge_hooks, our_hooks, strip_hooks};
use super::mcp::{mcp_entry, mcp_entry_is_ours, mcp_matches, merge_mcp, strip_mcp};
use super::restore::{Restore, apply_restore, restore_plan};
use super::settings::{JsonFile, render, write_json_file};
use super::{DELIVER, InstallScope, MCP, Target};
use crate::context;

#[derive(Args)]
pub struct InstallArgs {
    /// Where to install.
    #[arg(long, value_enum, default_value = "user")]
    pub scope: InstallScope,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not add the peers tools to `permissions.allow`. Claude Code then asks before each
    /// peers tool call, and a session woken by mail waits on that prompt until you answer it.
    #[arg(long)]
    pub no_allow: bool,
    /// Which agent CLIs to set up (repeatable): `claude` (Claude Code: settings.json and the
    /// MCP entry), `codex` (Codex CLI: $CODEX_HOME/config.toml), `gemini` (Gemini CLI:
    /// ~/.gemini/settings.json and ~/.gemini/policies/peers.toml). Default: every one of them
    /// found on PATH (Claude Code when none is). `--scope` applies to Claude Code only.
    #[arg(long, value_enum)]
    pub agent: Vec<AgentArg>,
}

/// An agent CLI on the command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum AgentArg {
    Claude,
    Codex,
    Gemini,
}

impl AgentArg {
    const ALL: [AgentArg; 3] = [AgentArg::Claude, AgentArg::Codex, AgentArg::Gemini];

    /// The executable on PATH that shows the CLI is installed.
    fn program(self) -> &'static str {
        match self {
            AgentArg::Claude => "claude",
            AgentArg::Codex => "codex",
            AgentArg::Gemini => "gemini",
        }
    }
}

/// The agents asked for, or every one found on PATH (Claude Code when none is).
fn agents(asked: &[AgentArg]) -> Vec<AgentArg> {
    if !asked.is_empty() {
        let mut v = asked.to_vec();
        v.dedup();
        return v;
    }
    let found: Vec<AgentArg> = AgentArg::ALL
        .into_iter()
        .filter(|a| context::which(a.program()).is_some())
        .collect();
    if found.is_empty() {
        vec![AgentArg::Claude]
    } else {
        found
    }
}

fn codex_install(mcp: &Path, deliver: &Path, dry: bool, uninstall: bool) -> Result<()> {
    use super::codex::{self, Outcome};
    let path = codex::config_path()?;
    let would = if dry { "would " } else { "" };
    let outcome = if uninstall {
        codex::uninstall(&path, dry)?
    } else {
        codex::install(&path, mcp, deliver, dry)?
    };
    let what = match (outcome, uninstall) {
        (Outcome::Unchanged, false) => "already set up, nothing to change".to_string(),
        (Outcome::Unchanged, true) => "nothing of peers in it".to_string(),
        (Outcome::Written, false) => format!(
            "{would}add [mcp_servers.peers] (default_tools_approval_mode = \"approve\") and \
             hooks on SessionStart, UserPromptSubmit, PostToolUse and Stop, trusted \
             ([hooks.state], as Codex's /hooks screen records it)"
        ),
        (Outcome::Written, true) => format!("{would}remove peers' entries and their trust"),
        (Outcome::Restored, _) => "restored the original".to_string(),
        (Outcome::Removed, _) => "removed the file (install had created it)".to_string(),
    };
    println!("Codex CLI: {}: {what}", path.display());
    Ok(())
}

fn gemini_install(mcp: &Path, deliver: &Path, dry: bool, uninstall: bool) -> Result<()> {
    use super::gemini;
    let dir = gemini::dir()?;
    let would = if dry { "would " } else { "" };
    let changed = if uninstall {
        gemini::uninstall(&dir, dry)?
    } else {
        gemini::install(&dir, mcp, deliver, dry)?
    };
    let what = match (changed, uninstall) {
        (false, false) => "already set up, nothing to change".to_string(),
        (false, true) => "nothing of peers in it".to_string(),
        (true, false) => format!(
            "{would}add mcpServers.peers and hooks on SessionStart, BeforeAgent, AfterTool and \
             AfterAgent, and {} allowing the peers tools",
            gemini::policy_path(&dir).display()
        ),
        (true, true) => format!(
            "{would}remove peers' entries and {}",
            gemini::policy_path(&dir).display()
        ),
    };
    println!(
        "Gemini CLI: {}: {what}",
        gemini::settings_path(&dir).display()
    );
    Ok(())
}

pub fn install(a: InstallArgs) -> Result<()> {
    let list = agents(&a.agent);
    for agent in &list {
        match agent {
            AgentArg::Claude => install_claude(&a)?,
            AgentArg::Codex | AgentArg::Gemini => {
                let (deliver, mcp) = binaries()?;
                if *agent == AgentArg::Codex {
                    codex_install(&mcp, &deliver, a.dry_run, false)?;
                } else {
                    gemini_install(&mcp, &deliver, a.dry_run, false)?;
                }
            }
        }
    }
    if !a.dry_run && list != [AgentArg::Claude] {
        println!(
            "\nStart new sessions (hooks are read at start); `peers doctor` checks every link."
        );
    }
    Ok(())
}

pub fn uninstall(a: UninstallArgs) -> Result<()> {
    for agent in agents(&a.agent) {
        match agent {
            AgentArg::Claude => uninstall_claude(&a)?,
            AgentArg::Codex => codex_install(Path::new(""), Path::new(""), a.dry_run, true)?,
            AgentArg::Gemini => gemini_install(Path::new(""), Path::new(""), a.dry_run, true)?,
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct UninstallArgs {
    /// Where to uninstall from.
    #[arg(long, value_enum, default_value = "user")]
    pub scope: InstallScope,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Which agent CLIs to undo (repeatable; default: every one found on PATH, Claude Code
    /// when none is), as for `peers install --agent`.
    #[arg(long, value_enum)]
    pub agent: Vec<AgentArg>,
}

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

fn install_claude(a: &InstallArgs) -> Result<()> {
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

fn uninstall_claude(a: &UninstallArgs) -> Result<()> {
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
