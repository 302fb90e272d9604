//! `peers-mcp`: the per-session stdio MCP server (server name `peers`).
//!
//! `--tool-prefix` says what the client calls its tools (`mcp__peers__` by default,
//! `mcp__plugin_peers_peers__` under the plugin); it goes into every text for the model and
//! into the session file for the hook.
//!
//! On start it finds its agent process (Claude Code, Codex CLI or Gemini CLI: `claude.rs`), makes sure the local broker runs, registers,
//! and writes the session file the hook reads. It heartbeats in the background (restarting
//! the local broker and re-registering under the same name when the broker went away), and
//! exits — unregistering and removing the session file — on stdin EOF, when its agent
//! process is gone, or on SIGTERM/SIGINT. Mail left waiting too long for this session raises
//! one desktop notification per batch (`escalate.rs`). Logs go to stderr and
//! `<state_dir>/logs`, never stdout (stdout is the MCP channel).

mod claude;
mod escalate;
mod peer;
mod tools;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use peers_core::session::SessionFile;
use peers_core::{Config, render};
use rmcp::ServiceExt;

use crate::peer::{Facts, Peer};

/// How often the server heartbeats (`PEERS_HEARTBEAT_MS` overrides it, for tests).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often it checks that its Claude Code process still runs.
const CLAUDE_CHECK: Duration = Duration::from_secs(1);
/// How long start-up waits for the broker and registration before serving anyway.
const REGISTER_WAIT: Duration = Duration::from_secs(10);

/// The per-session MCP server of peers, started by Claude Code, Codex CLI or Gemini CLI (stdio).
///
/// It registers this agent session with the peers broker (starting a local one when
/// needed), writes the session file the `peers-deliver` hook reads, and serves the tools
/// whoami, list_peers, send_message, message_status, set_summary and check_messages. Settings
/// come from config.toml and PEERS_* variables (see `peers doctor`).
#[derive(Debug, Parser)]
#[command(name = "peers-mcp", version, about, long_about)]
struct Args {
    /// What this session's client calls the peers tools, up to the bare tool name. Claude Code
    /// names the tools of an MCP server `mcp__<server>__<tool>`: a server added as `peers`
    /// (what `peers install` does) is the default; the peers plugin's server is
    /// `mcp__plugin_peers_peers__` (the plugin's .mcp.json passes that). Every tool name
    /// shown to the model (server instructions, tool descriptions, tool results and, through
    /// the session file, the hook's texts) uses it. ASCII letters, digits, `_` and `-`.
    /// Codex CLI and Gemini CLI sessions ignore it: their clients name the tools their own way
    /// (`mcp__peers.send_message`, `mcp_peers_send_message`).
    #[arg(long, value_name = "PREFIX", value_parser = render::ToolNames::new)]
    tool_prefix: Option<render::ToolNames>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peers-mcp: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config, args.tool_prefix)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, tools: Option<render::ToolNames>) -> Result<(), String> {
    let mut facts = Facts::collect(&config).map_err(|e| {
        format!(
            "cannot set up the state dir {}: {e}",
            config.state_dir.display()
        )
    })?;
    if let Some(tools) = tools.filter(|_| facts.agent == peers_core::wire::Agent::Claude) {
        facts.tools = tools;
    }
    tracing::info!(
        agent = %facts.agent, claude_pid = facts.claude_pid, parent = facts.direct_parent, cwd = %facts.cwd.display(),
        broker = %config.broker_urls().join(", "), "peers-mcp {} starting (pid {})", peers_core::VERSION,
        std::process::id()
    );
    remove_stale_session_files(&config);
    let peer = Arc::new(Peer::new(config, facts));

    // A probe (`peers doctor` running `claude mcp list`) only looks at the tools.
    let probe = std::env::var_os(peers_core::claude_settings::PROBE_ENV).is_some();
    if probe {
        tracing::info!("a probe: serving the tools without registering");
    } else {
        match tokio::time::timeout(REGISTER_WAIT, peer.register()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("not registered yet, will keep trying: {e}"),
            Err(_) => {
                tracing::warn!("registration is taking long; serving anyway, will keep trying")
            }
        }
    }

    let peer_hb = peer.clone();
    let heartbeat = tokio::spawn(async move {
        if !probe {
            heartbeat_loop(peer_hb).await
        }
    });
    let server = tools::PeersServer::new(peer.clone());
    let (claude_pid, start, parent) = (
        peer.facts.claude_pid,
        peer.facts.claude_start_time,
        peer.facts.direct_parent,
    );

    let reason = tokio::select! {
        r = async {
            let running = server.serve(rmcp::transport::stdio_pipes()).await
                .map_err(|e| e.to_string())?;
            running.waiting().await.map_err(|e| e.to_string())
        } => match r {
            Ok(q) => format!("the MCP connection ended ({q:?})"),
            Err(e) => format!("the MCP connection failed: {e}"),
        },
        _ = claude_gone(claude_pid, start, parent) => format!("{} (pid {claude_pid}) is gone", peer.facts.agent.product()),
        s = termination() => format!("received {s}"),
    };
    tracing::info!("exiting: {reason}");
    heartbeat.abort();
    peer.goodbye().await;
    Ok(())
}

async fn heartbeat_loop(peer: Arc<Peer>) {
    let every = std::env::var("PEERS_HEARTBEAT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(HEARTBEAT);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut escalation =
        escalate::Escalation::new(Duration::from_secs(peer.config.escalate_after_secs));
    loop {
        tick.tick().await;
        if let Some((reg, hb)) = peer.heartbeat().await {
            escalate::on_heartbeat(&mut escalation, &peer, &reg, &hb).await;
        }
    }
}

async fn claude_gone(claude_pid: u32, start: Option<u64>, parent: u32) {
    loop {
        if claude::claude_gone(claude_pid, start, parent) {
            return;
        }
        tokio::time::sleep(CLAUDE_CHECK).await;
    }
}

#[cfg(unix)]
async fn termination() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    }
}

#[cfg(not(unix))]
async fn termination() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

/// Session files of Claude Code processes that no longer exist (or whose pid now belongs to
/// another process) are leftovers of servers that died without cleaning up (kill -9); drop
/// them so hooks never pick a dead token.
fn remove_stale_session_files(config: &Config) {
    let Ok(dir) = std::fs::read_dir(config.sessions_dir()) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let current = match SessionFile::read(&config.state_dir, pid) {
            Ok(Some(s)) => s.claude_pid == pid && s.is_current(),
            Ok(None) => continue,
            // Unreadable or not a regular file: judge by the pid alone.
            Err(_) => peers_core::process::pid_alive(pid),
        };
        if !current {
            tracing::info!(pid, "removing the session file of an ended session");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::MakeWriterExt;

    let filter =
        EnvFilter::try_from_env("PEERS_LOG").unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let file = peers_core::paths::ensure_private_dir(&config.logs_dir())
        .ok()
        .and_then(|_| {
            let mut o = std::fs::OpenOptions::new();
            o.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            o.open(config.logs_dir().join("peers-mcp.log")).ok()
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    match file {
        Some(f) => builder.with_writer(std::io::stderr.and(Arc::new(f))).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}
