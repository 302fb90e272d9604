//! `peers peers`: the sessions the broker knows.

use anyhow::Result;
use clap::{Args, ValueEnum};
use peers_core::identity;
use peers_core::wire::{ListPeersQuery, PeerInfo, Scope};

use crate::context::{self, Ctx, JsonArg, ago};
use crate::terminal;

#[derive(Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    Machine,
    Directory,
    Repo,
    All,
}

#[derive(Args)]
pub struct PeersArgs {
    /// Which peers, relative to this machine and the current directory.
    #[arg(long, value_enum, default_value = "all")]
    pub scope: ScopeArg,
    /// Also list sessions that ended (their mail waits for the next session of that name).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub output: JsonArg,
}

fn list_query(ctx: &Ctx, scope: Scope, include_gone: bool) -> ListPeersQuery {
    let cwd = std::env::current_dir().ok();
    ListPeersQuery {
        scope,
        include_gone,
        machine_id: identity::machine_id(&ctx.cfg.state_dir).ok(),
        git_root: cwd
            .as_deref()
            .and_then(identity::git_root)
            .map(|p| p.display().to_string()),
        cwd: cwd.map(|p| p.display().to_string()),
    }
}

pub fn run(a: PeersArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let scope = match a.scope {
        ScopeArg::Machine => Scope::Machine,
        ScopeArg::Directory => Scope::Directory,
        ScopeArg::Repo => Scope::Repo,
        ScopeArg::All => Scope::All,
    };
    let list = ctx
        .rt
        .block_on(client.list_peers(&list_query(&ctx, scope, a.all)))
        .map_err(|e| ctx.explain(e))?;
    if a.output.json {
        return context::print_json(&list);
    }
    if list.peers.is_empty() {
        println!(
            "no sessions{} (they appear once Claude Code, Codex or Gemini CLI starts with peers installed: \
             `peers install`, then `peers doctor`)",
            if a.all { "" } else { " running" }
        );
        return Ok(());
    }
    print_peers(&list.peers);
    Ok(())
}

fn print_peers(peers: &[PeerInfo]) {
    let w = peers
        .iter()
        .map(|p| p.address.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:<12}  {:<6}  {:<5}  {:>4}  {:<10}  WHERE",
        "NAME", "ID", "AGENT", "STATE", "MAIL", "SEEN"
    );
    for p in peers {
        let mut where_ = p.cwd.clone();
        if let Some(b) = &p.git_branch {
            where_.push_str(&format!(" ({b})"));
        }
        println!(
            "{:<w$}  {:<12}  {:<6}  {:<5}  {:>4}  {:<10}  {}",
            p.address,
            p.peer_id,
            p.agent.as_str(),
            if p.alive { "live" } else { "gone" },
            p.queued,
            ago(p.last_seen_ms),
            where_
        );
        if let Some(s) = p.summary.as_deref().filter(|s| !s.is_empty()) {
            println!("{:<w$}  {}", "", one_line(&terminal::safe_line(s), 100));
        }
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    } else {
        s
    }
}
