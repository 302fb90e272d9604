//! The pinned Claude Code CLI used by the end-to-end tests, installed from npm into
//! `target/claude-code/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

/// The client version `docs/CLAUDE_CODE.md` and the tests are checked against by default.
pub const VERSION: &str = "2.1.332";
/// Set by `cargo xtask test` for the test processes; also how a developer points at a build.
pub const ENV_BIN: &str = "PEERS_CLAUDE_BIN";
/// Another npm version to install and test against instead of [`VERSION`] (e.g. `2.1.328`).
pub const ENV_VERSION: &str = "PEERS_CLAUDE_VERSION";

/// The version to install: `$PEERS_CLAUDE_VERSION` when set, else [`VERSION`].
pub fn version() -> String {
    std::env::var(ENV_VERSION)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| VERSION.to_string())
}

/// Returns the claude binary: `$PEERS_CLAUDE_BIN` if set, else the npm package of
/// [`version()`] under `target/claude-code`, installing it (in place of another version
/// found there) when npm is present.
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
    let version = version();
    if bin.is_file() && installed_version(&bin).as_deref() == Some(version.as_str()) {
        return Ok(bin);
    }
    if Command::new("npm").arg("--version").output().is_err() {
        bail!("npm is not installed; install Node.js and npm, or set {ENV_BIN}");
    }
    std::fs::create_dir_all(&prefix)?;
    eprintln!("xtask: installing @anthropic-ai/claude-code@{version} from npm …");
    crate::run_cmd(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("@anthropic-ai/claude-code@{version}")),
    )?;
    if !bin.is_file() {
        bail!(
            "npm installed the package but {} is missing (only linux-x64 is wired up)",
            bin.display()
        );
    }
    Ok(bin)
}

/// What `claude --version` says (`2.1.332`), if it runs.
pub fn installed_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
}
