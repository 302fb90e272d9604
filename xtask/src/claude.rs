//! The pinned Claude Code CLI used by the end-to-end tests, installed from npm into
//! `target/claude-code/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

/// The client version the facts file and the tests are checked against.
pub const VERSION: &str = "2.1.328";
/// Set by `cargo xtask test` for the test processes; also how a developer points at a build.
pub const ENV_BIN: &str = "PEERS_CLAUDE_BIN";

/// Returns the claude binary: `$PEERS_CLAUDE_BIN` if set, else the pinned npm package under
/// `target/claude-code`, installing it when npm is present.
pub fn ensure() -> Result<PathBuf> {
    if let Ok(p) = std::env::var(ENV_BIN) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{ENV_BIN}={} does not exist", p.display());
    }
    let prefix = crate::root().join("target").join("claude-code");
    let bin = prefix.join("node_modules/@anthropic-ai/claude-code-linux-x64/claude");
    if bin.is_file() && installed_version(&bin).as_deref() == Some(VERSION) {
        return Ok(bin);
    }
    if Command::new("npm").arg("--version").output().is_err() {
        bail!("npm is not installed; install Node.js and npm, or set {ENV_BIN}");
    }
    std::fs::create_dir_all(&prefix)?;
    eprintln!("xtask: installing @anthropic-ai/claude-code@{VERSION} from npm …");
    crate::run_cmd(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("@anthropic-ai/claude-code@{VERSION}")),
    )?;
    if !bin.is_file() {
        bail!(
            "npm installed the package but {} is missing (only linux-x64 is wired up)",
            bin.display()
        );
    }
    Ok(bin)
}

fn installed_version(bin: &PathBuf) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
}
