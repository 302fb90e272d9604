//! `peers`: the human's tool. Send mail to Claude Code sessions, see who runs and what waits,
//! start and stop the local broker, plug peers into Claude Code (`install`), check every link
//! (`doctor`), and see it all work in ten seconds (`demo`).

mod broker_ctl;
mod commands;
mod context;
mod demo;
mod doctor;
mod hub;
mod install;
mod plugin;
mod shell;
mod terminal;

use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::context::Exit;

/// peers: Claude Code sessions that message each other. This is the human's tool.
///
/// Settings come from config.toml (PEERS_CONFIG) and PEERS_* variables; state (the secret,
/// the database, logs) lives in PEERS_STATE_DIR.
#[derive(Parser)]
#[command(name = "peers", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a message to a session, as you (shown to the model as `you@host`, a human).
    Send(SendArgs),
    /// List the sessions (peers) the broker knows.
    Peers(PeersArgs),
    /// The broker, the sessions with mail waiting, and recent notices (with who raised each).
    ///
    /// Exit status: 0 when the broker answers, 3 when it does not (the output says how to
    /// start it), 1 for any other failure.
    Status(JsonArg),
    /// Mail not delivered yet (the message log filtered to queued mail).
    Inbox(LogArgs),
    /// The message log, newest first.
    Log(LogArgs),
    /// Follow sends and deliveries as they happen, until Ctrl-C.
    Tail(TailArgs),
    /// One message: who, to whom, its status, when and how it was delivered, its text, and
    /// the thread it belongs to (the messages it answers and every reply, with their states).
    Show(ShowArgs),
    /// Start, stop and look at the local broker.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Make this machine the hub of your peers network (`peers hub init --bind ADDR`).
    #[command(subcommand)]
    Hub(hub::HubCommand),
    /// Plug peers into Claude Code: register the MCP server, merge the hooks, and allow the
    /// peers tools to run without a permission prompt.
    Install(InstallArgs),
    /// Remove exactly what `peers install` added.
    Uninstall(UninstallArgs),
    /// Check every link of the chain and say how to fix what is broken.
    Doctor(DoctorArgs),
    /// A ten-second demonstration with two simulated sessions; no Claude Code needed.
    Demo(DemoArgs),
    /// Print a shell completion script (e.g. `peers completions bash > ~/.local/share/bash-completion/completions/peers`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SendArgs {
    /// The recipient: a peer name, name@host, or peer id (see `peers peers`).
    pub to: String,
    /// The message text; `-` reads it from stdin.
    pub message: String,
    /// The id of the message this one answers.
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<i64>,
    /// Wait until the message is delivered into the recipient's context.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (e.g. 30s, 5m). Default: wait until Ctrl-C.
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    /// Print JSON instead of text (with --wait: the final message status).
    #[arg(long)]
    pub json: bool,
}

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
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LogArgs {
    /// Only messages from this sender (a peer name, name@host, id, or `you`).
    #[arg(long)]
    pub from: Option<String>,
    /// Only messages to this peer.
    #[arg(long)]
    pub to: Option<String>,
    /// Only messages sent within this long (e.g. 10m, 2h, 1d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// At most this many messages.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Also print each message's text (control characters shown as `\u{…}` escapes).
    #[arg(long)]
    pub body: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TailArgs {
    /// Also replay messages sent within this long before now (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The message id (as printed by `peers send` or `peers log`; a leading `#` is fine).
    pub id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BrokerCommand {
    /// Start the local broker in the background and wait until it answers.
    Start,
    /// Ask the local broker to shut down (through its API) and wait until it is gone.
    Stop,
    /// Whether the broker answers, its version, pid and uptime.
    Status(JsonArg),
    /// Print the broker's log file.
    Logs {
        /// Keep printing what is appended, until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum InstallScope {
    /// Every session of this user: ~/.claude/settings.json and ~/.claude.json.
    User,
    /// Sessions in the current directory: ./.claude/settings.json and ./.mcp.json.
    Project,
}

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
}

#[derive(Args)]
pub struct UninstallArgs {
    /// Where to uninstall from.
    #[arg(long, value_enum, default_value = "user")]
    pub scope: InstallScope,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct DoctorArgs {
    /// Check the peers plugin in this directory too (the route `claude --plugin-dir DIR`,
    /// which no settings file records). A plugin enabled in settings is found by itself.
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the demo's temporary directory (state, logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(a) => commands::send(a),
        Command::Peers(a) => commands::peers(a),
        Command::Status(a) => commands::status(a),
        Command::Inbox(a) => commands::log(a, true),
        Command::Log(a) => commands::log(a, false),
        Command::Tail(a) => commands::tail(a),
        Command::Show(a) => commands::show(a),
        Command::Broker(b) => broker_ctl::run(b),
        Command::Hub(h) => hub::run(h),
        Command::Install(a) => install::install(a),
        Command::Uninstall(a) => install::uninstall(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "peers", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            eprintln!("peers: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
