//! Making sure the local broker runs: start `peers-broker` detached and wait until healthy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peers_core::{BrokerClient, Config};

/// How long to wait for a freshly started broker to answer `/v1/health`.
const START_WAIT: Duration = Duration::from_secs(6);

/// Ensures a broker answers at the configured URL. A remote (hub) broker is never started:
/// when it does not answer, that is an error.
pub async fn ensure(config: &Config, anon: &BrokerClient) -> Result<(), String> {
    if anon.health().await.is_ok() {
        return Ok(());
    }
    if config.is_remote() {
        return Err(format!(
            "the peers hub at {} does not answer; it is configured as a remote broker, so it \
             is not started from here",
            config.broker_url()
        ));
    }
    let bin = find_broker_binary().ok_or_else(|| {
        "cannot find the peers-broker binary next to peers-mcp or on PATH; install peers \
         (`peers install`) or start the broker by hand"
            .to_string()
    })?;
    tracing::info!(bin = %bin.display(), url = %config.broker_url(), "starting the local broker");
    spawn_detached(&bin, config).map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let deadline = Instant::now() + START_WAIT;
    loop {
        if anon.health().await.is_ok() {
            tracing::info!("the local broker is up");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "started {} but it did not answer at {} within {} s; see the logs in {}",
                bin.display(),
                config.broker_url(),
                START_WAIT.as_secs(),
                config.logs_dir().display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `peers-broker` next to the running executable, else on `PATH`.
pub fn find_broker_binary() -> Option<PathBuf> {
    let name = format!("peers-broker{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let p = dir.join(&name);
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    })
}

/// Starts the broker in its own session with no tie to this session's stdio, so it outlives
/// the Claude Code session that happened to start it. Its output goes to a log file.
fn spawn_detached(bin: &Path, config: &Config) -> std::io::Result<()> {
    let logs = config.logs_dir();
    peers_core::paths::ensure_private_dir(&logs)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("broker.out"))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .current_dir(&config.state_dir)
        .kill_on_drop(false);
    // The broker serves every session; it carries nothing of the one that started it.
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
    // Dropping the child handle leaves the process running; tokio reaps it if it exits while
    // this server still runs (a second broker finding the first one healthy exits at once).
    let child = cmd.spawn()?;
    tracing::info!(pid = child.id(), "spawned peers-broker");
    drop(child);
    Ok(())
}
