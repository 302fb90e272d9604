//! `peers`: the human's tool. Send mail to Claude Code sessions, see who runs and what waits,
//! start and stop the local broker, plug peers into Claude Code (`install`), check every link
//! (`doctor`), and see it all work in ten seconds (`demo`).

// The subcommands, each with its clap arguments and its `run`.
mod broker_ctl;
mod dashboard;
mod demo;
mod doctor;
mod export;
mod hub;
mod install;
mod log;
mod peers;
mod search;
mod send;
mod show;
mod status;
mod tail;
mod token;
mod topics;
mod tui;

// What the subcommands share.
mod context;
mod plugin;
mod shell;
mod terminal;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Send a message to a session, a `#topic` or everyone (`*`), as you (shown to the model
    /// as `you@host`, a human).
    Send(send::SendArgs),
    /// List the sessions (peers) the broker knows.
    Peers(peers::PeersArgs),
    /// The broker, the sessions with mail waiting, and recent notices (with who raised each).
    ///
    /// Exit status: 0 when the broker answers, 3 when it does not (the output says how to
    /// start it), 1 for any other failure.
    Status(status::StatusArgs),
    /// Mail not delivered yet (the message log filtered to queued mail).
    Inbox(log::LogArgs),
    /// The message log, newest first.
    Log(log::LogArgs),
    /// Follow sends and deliveries as they happen, until Ctrl-C.
    Tail(tail::TailArgs),
    /// A live terminal view: the peers, the feed of mail and topic posts as it moves, a message
    /// with its thread and delivery states, a composer, and a search of the history (`/`;
    /// `?` lists the keys).
    Tui(tui::TuiArgs),
    /// One message: who, to whom, its status, when and how it was delivered, its text, and
    /// the thread it belongs to (the messages it answers and every reply, with their states).
    Show(show::ShowArgs),
    /// A whole conversation: the message's root and every reply, in order, with text,
    /// sender, recipients, time and delivery state.
    Thread(show::ThreadArgs),
    /// Full-text search over every message's text and tags, best matches first.
    Search(search::SearchArgs),
    /// Every message on the broker as JSON lines (text, thread, tags, project and each
    /// reader's delivery state), for backups and audits.
    Export(export::ExportArgs),
    /// Log in to the web dashboard: prints (and on a desktop opens) a one-time login link.
    Dashboard(dashboard::DashboardArgs),
    /// The topics, with subscriber and post counts and the last post.
    Topics(topics::TopicsArgs),
    /// One topic's recent posts, with their text and each reader's delivery state.
    Topic(topics::TopicArgs),
    /// Script tokens for scripts and CI: create (printed once), list, revoke. A script token may
    /// only post (to the recipients listed) and read the status of its own posts.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Start, stop and look at the local broker.
    #[command(subcommand)]
    Broker(broker_ctl::BrokerCommand),
    /// Make this machine the hub of your peers network (`peers hub init --bind ADDR`).
    #[command(subcommand)]
    Hub(hub::HubCommand),
    /// Plug peers into Claude Code: register the MCP server, merge the hooks, and allow the
    /// peers tools to run without a permission prompt.
    Install(install::InstallArgs),
    /// Remove exactly what `peers install` added.
    Uninstall(install::UninstallArgs),
    /// Check every link of the chain and say how to fix what is broken.
    Doctor(doctor::DoctorArgs),
    /// A ten-second demonstration with two simulated sessions; no Claude Code needed.
    Demo(demo::DemoArgs),
    /// Print a shell completion script (e.g. `peers completions bash > ~/.local/share/bash-completion/completions/peers`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(a) => send::run(a),
        Command::Peers(a) => peers::run(a),
        Command::Status(a) => status::run(a),
        Command::Inbox(a) => log::run(a, true),
        Command::Log(a) => log::run(a, false),
        Command::Tail(a) => tail::run(a),
        Command::Tui(a) => tui::run(a),
        Command::Show(a) => show::run(a),
        Command::Thread(a) => show::thread(a),
        Command::Search(a) => search::run(a),
        Command::Export(a) => export::run(a),
        Command::Dashboard(a) => dashboard::run(a),
        Command::Topics(a) => topics::list(a),
        Command::Topic(a) => topics::show(a),
        Command::Token(c) => token::run(c),
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
