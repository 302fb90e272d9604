//! Starting the local broker from a client (`peers-mcp` on demand, `peers broker start`):
//! finding the `peers-broker` binary and preparing it to run detached. Only ever for the local
//! broker; a hub (`broker_url` set) is never started by a client.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Config, paths};

/// A peers binary next to the running executable (where `cargo xtask install` puts them all),
/// else the first executable of that name on `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| std::fs::canonicalize(&exe).unwrap_or(exe))
        .and_then(|exe| exe.parent().map(|d| d.join(&name)));
    if let Some(p) = beside.filter(|p| is_executable(p)) {
        return Some(p);
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|d| d.join(&name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// The command that starts `bin` detached: in its own session (no tie to the caller's
/// terminal, process group or stdio), in the state dir, output appended to
/// `<logs>/broker.out`, and without the variables of the Claude Code session that happened to
/// start it — the broker serves every session. The caller spawns it and need not wait.
pub fn detached_command(bin: &Path, config: &Config) -> std::io::Result<Command> {
    paths::ensure_private_dir(&config.state_dir)?;
    let logs = config.logs_dir();
    paths::ensure_private_dir(&logs)?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("broker.out"))?;
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .current_dir(&config.state_dir);
    for var in [
        "CLAUDECODE",
        "CLAUDE_CODE_SESSION_ID",
        "CLAUDE_CODE_ENTRYPOINT",
        "CLAUDE_PROJECT_DIR",
        "CLAUDE_PID",
        "PEERS_HEARTBEAT_MS",
    ] {
        cmd.env_remove(var);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Ok(cmd)
}
