//! The pinned Codex CLI and Gemini CLI used by the end-to-end tests of issue 17, installed
//! from npm into `target/codex/` and `target/gemini-cli/` (as `claude.rs` does for Claude Code).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

/// One agent CLI on npm.
pub struct Cli {
    pub package: &'static str,
    pub version: &'static str,
    /// Under `target/`.
    pub dir: &'static str,
    /// The file the tests run, under the install prefix.
    pub bin: &'static str,
    /// The variable that points the tests at it.
    pub env: &'static str,
}

pub const CODEX: Cli = Cli {
    package: "@openai/codex",
    version: "0.171.0",
    dir: "codex",
    bin: "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    env: "PEERS_CODEX_BIN",
};

pub const GEMINI: Cli = Cli {
    package: "@google/gemini-cli",
    version: "0.61.0",
    dir: "gemini-cli",
    bin: "node_modules/@google/gemini-cli/bundle/gemini.js",
    env: "PEERS_GEMINI_JS",
};

impl Cli {
    /// The installed file, installing the pinned version when it is missing.
    pub fn ensure(&self) -> Result<PathBuf> {
        let prefix = crate::root().join("target").join(self.dir);
        let bin = prefix.join(self.bin);
        let stamp = prefix.join(".peers-version");
        if bin.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(self.version) {
            return Ok(bin);
        }
        if Command::new("npm").arg("--version").output().is_err() {
            bail!(
                "npm is not installed; install Node.js and npm, or set {}",
                self.env
            );
        }
        std::fs::create_dir_all(&prefix)?;
        eprintln!(
            "xtask: installing {}@{} from npm …",
            self.package, self.version
        );
        crate::run_cmd(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("{}@{}", self.package, self.version)),
        )?;
        if !bin.is_file() {
            bail!(
                "npm installed {} but {} is missing (only linux-x64 is wired up)",
                self.package,
                bin.display()
            );
        }
        std::fs::write(&stamp, self.version)?;
        Ok(bin)
    }
}
