//! `cargo xtask …`: the project's own commands, in Rust so they run wherever cargo does.
//!
//! * `cargo xtask test`    — the full suite: fetches the pinned Claude Code CLI (when npm is
//!   present), then `cargo test --workspace`, which includes the end-to-end tests.
//! * `cargo xtask e2e`     — only the end-to-end scenarios against the real Claude Code CLI.
//! * `cargo xtask bench …` — benchmarks; figures go to `docs/BENCHMARKS.md`.
//! * `cargo xtask tidy`    — the architecture invariants (also a test in `cargo test`).
//! * `cargo xtask install` — release build, install the binaries, `peers install`, `peers doctor`.

mod agents;
mod bench;
mod claude;
mod e2e;
mod static_front;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Project tasks for peers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole test suite (fetches the pinned Claude Code CLI from npm when npm exists).
    Test {
        /// Extra arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Run the end-to-end scenarios against the real Claude Code CLI.
    E2e {
        /// Extra arguments passed to the e2e test binary (a scenario name filters).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Build in release mode and install the five binaries (default: ~/.local/bin).
    Install {
        /// Where to put the binaries.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Install the pinned Claude Code CLI for the tests and print its path.
    FetchClaude,
    /// Check the architecture invariants of docs/ARCHITECTURE.md (also run by `cargo test`).
    Tidy,
    /// Run benchmarks and print figures for this machine.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Test { args } => test(&args),
        Cmd::E2e { args } => e2e::run(&args),
        Cmd::Tidy => tidy::run(),
        Cmd::FetchClaude => {
            let bin = claude::ensure()?;
            println!("{}", bin.display());
            Ok(())
        }
        Cmd::Bench { which } => bench::run(which),
        Cmd::Install { bin_dir } => install(bin_dir),
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` (relative to the workspace) when set,
/// else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root().join(d),
        None => root().join("target"),
    }
}

pub fn cargo_cmd() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its name when it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    match claude::ensure() {
        Ok(bin) => {
            eprintln!(
                "xtask: Claude Code CLI for the end-to-end tests: {}",
                bin.display()
            );
            // SAFETY: single-threaded here; set before spawning the test processes.
            unsafe { std::env::set_var(claude::ENV_BIN, &bin) };
        }
        Err(e) => eprintln!(
            "xtask: WARNING: no Claude Code CLI ({e:#}); the end-to-end tests will be skipped"
        ),
    }
    for cli in [agents::CODEX, agents::GEMINI] {
        match cli.ensure() {
            // SAFETY: single-threaded here; set before spawning the test processes.
            Ok(bin) => unsafe { std::env::set_var(cli.env, &bin) },
            Err(e) => eprintln!(
                "xtask: WARNING: no {} ({e:#}); its end-to-end tests will be skipped",
                cli.package
            ),
        }
    }
    run_cmd(cargo_cmd().args(["build", "--workspace", "--bins"]))?;
    // The hook's own suite runs against the front as `cargo xtask install` installs it.
    let mut cmd = cargo_cmd();
    match static_front::build("debug")? {
        Some(front) => {
            cmd.env("PEERS_TEST_DELIVER_BIN", front)
                .env("PEERS_TEST_DELIVER_STATIC", "1");
        }
        None => {
            eprintln!("xtask: no static hook front here; the hook tests run the dynamic one")
        }
    }
    run_cmd(cmd.args(["test", "--workspace"]).args(args))
}

/// The binaries a user installs (`peers-deliver-net` is the full hook the front
/// `peers-deliver` execs; it must sit beside it).
const BINARIES: [&str; 5] = [
    "peers-broker",
    "peers-mcp",
    "peers-deliver",
    "peers-deliver-net",
    "peers",
];

fn install(bin_dir: Option<PathBuf>) -> Result<()> {
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => peers_core::paths::home()
            .map_err(|e| anyhow::anyhow!("{e}; pass --bin-dir"))?
            .join(".local/bin"),
    };
    run_cmd(cargo_cmd().args(["build", "--release", "--bins"]).args([
        "-p",
        "peers-broker",
        "-p",
        "peers-mcp",
        "-p",
        "deliver-hook",
        "-p",
        "peers-cli",
    ]))?;
    // The front every hook event starts, linked statically where that is possible.
    let front = static_front::build("release")?;
    std::fs::create_dir_all(&bin_dir)
        .with_context(|| format!("cannot create {}", bin_dir.display()))?;
    for name in BINARIES {
        let from = match &front {
            Some(front) if name == "peers-deliver" => front.clone(),
            _ => target_dir().join("release").join(name),
        };
        let to = bin_dir.join(name);
        // Copy to a temp name and rename, so a running binary is never overwritten in place.
        let tmp = bin_dir.join(format!(".{name}.new"));
        std::fs::copy(&from, &tmp).with_context(|| format!("copy {}", from.display()))?;
        std::fs::rename(&tmp, &to)?;
        println!("installed {}", to.display());
    }
    // Plug the installed binaries into Claude Code, start the broker, and check every link.
    let peers = bin_dir.join("peers");
    println!();
    run_cmd(Command::new(&peers).arg("install"))?;
    println!();
    run_cmd(Command::new(&peers).args(["broker", "start"]))?;
    println!();
    run_cmd(Command::new(&peers).arg("doctor")).context(
        "`peers doctor` found a problem (see the ✗ lines above); fix it and run `peers doctor` again",
    )?;
    if std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).all(|d| d != bin_dir) {
        println!(
            "\nNote: {} is not on your PATH; add it to run `peers` by name.",
            bin_dir.display()
        );
    }
    Ok(())
}
