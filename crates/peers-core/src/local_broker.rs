//! Starting the local broker from a client (`peers-mcp` on demand, `peers broker start`):
//! [`ensure_running`] finds the `peers-broker` binary, starts it detached and waits until it
//! answers. Only ever for the local broker; a hub (`broker_url` set) is never started by a
//! client.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::wire::Health;
use crate::{BrokerClient, Config, paths};

/// How often [`ensure_running`] asks a freshly started broker whether it answers.
const POLL: Duration = Duration::from_millis(50);

/// What [`ensure_running`] found or did.
#[derive(Debug)]
pub enum Up {
    /// A broker already answered; nothing was started.
    Already(Health),
    /// This call started `bin`, and it answers now.
    Started { health: Health, bin: PathBuf },
}

impl Up {
    /// The health the broker answered with.
    pub fn health(&self) -> &Health {
        match self {
            Up::Already(h) | Up::Started { health: h, .. } => h,
        }
    }
}

/// Why no broker answers after [`ensure_running`]. The messages are whole sentences both
/// callers show; they may add what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the peers hub at {url} does not answer; it is configured as a remote broker, so it is \
         not started from here"
    )]
    Remote { url: String },
    #[error("cannot find the peers-broker binary next to {} or on PATH", .dir.display())]
    NoBinary {
        /// The directory of the running executable (where `cargo xtask install` puts them all).
        dir: PathBuf,
    },
    #[error("cannot start {}: {error}", .bin.display())]
    Spawn { bin: PathBuf, error: std::io::Error },
    #[error(
        "started {} but it does not answer at {url} after {} s; see {} and {}",
        .bin.display(),
        .waited.as_secs(),
        .logs.join("broker.log").display(),
        .logs.join("broker.out").display()
    )]
    NoAnswer {
        bin: PathBuf,
        url: String,
        waited: Duration,
        /// The broker's log directory.
        logs: PathBuf,
    },
}

/// Makes sure a broker answers at `config`'s URL (asked through `client`): when none does and
/// the broker is local, starts `peers-broker` detached ([`detached_command`]) and waits up to
/// `wait` until it answers `/v1/health`. A remote hub is never started: when it does not
/// answer, that is [`StartError::Remote`].
///
/// The broker is spawned through tokio, so a broker that exits while the caller still runs (a
/// second one finding the first healthy) is reaped rather than left a zombie; the caller need
/// not wait for it, and it outlives the caller.
pub async fn ensure_running(
    config: &Config,
    client: &BrokerClient,
    wait: Duration,
) -> Result<Up, StartError> {
    if let Ok(h) = client.health().await {
        return Ok(Up::Already(h));
    }
    if config.is_remote() {
        return Err(StartError::Remote {
            url: config.broker_url(),
        });
    }
    let bin = find_binary("peers-broker").ok_or_else(|| StartError::NoBinary {
        dir: exe_dir().unwrap_or_default(),
    })?;
    let spawned = detached_command(&bin, config).and_then(|cmd| {
        tokio::process::Command::from(cmd)
            .kill_on_drop(false)
            .spawn()
    });
    if let Err(error) = spawned {
        return Err(StartError::Spawn { bin, error });
    }
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(health) = client.health().await {
            return Ok(Up::Started { health, bin });
        }
        if Instant::now() >= deadline {
            return Err(StartError::NoAnswer {
                bin,
                url: config.broker_url(),
                waited: wait,
                logs: config.logs_dir(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The directory of the running executable, links resolved.
fn exe_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    exe.parent().map(Path::to_path_buf)
}

/// A peers binary next to the running executable (where `cargo xtask install` puts them all),
/// else the first executable of that name on `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let beside = exe_dir().map(|d| d.join(&name));
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

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[tokio::test]
    async fn a_hub_that_does_not_answer_is_not_started() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let config_file = dir.path().join("config.toml");
        let config = Config::load_from(|k| match k {
            "PEERS_STATE_DIR" => Some(state.to_string_lossy().into_owned()),
            "PEERS_CONFIG" => Some(config_file.to_string_lossy().into_owned()),
            // Port 9 (discard) on loopback: nothing answers.
            "PEERS_BROKER_URL" => Some("http://127.0.0.1:9".into()),
            _ => None,
        })
        .unwrap();
        let client = BrokerClient::new(&config.broker_url(), None);
        let e = ensure_running(&config, &client, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, StartError::Remote { .. }), "{e:?}");
        expect!["the peers hub at http://127.0.0.1:9 does not answer; it is configured as a remote broker, so it is not started from here"]
            .assert_eq(&e.to_string());
        assert!(!state.exists(), "nothing was prepared for a broker");
    }

    #[test]
    fn start_errors_read_as_sentences() {
        let bin = PathBuf::from("/opt/peers/peers-broker");
        let texts = [
            StartError::NoBinary {
                dir: "/opt/peers".into(),
            },
            StartError::Spawn {
                bin: bin.clone(),
                error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
            StartError::NoAnswer {
                bin,
                url: "http://127.0.0.1:7900".into(),
                waited: Duration::from_secs(15),
                logs: "/state/logs".into(),
            },
        ]
        .map(|e| e.to_string());
        expect![[r#"
            cannot find the peers-broker binary next to /opt/peers or on PATH
            cannot start /opt/peers/peers-broker: permission denied
            started /opt/peers/peers-broker but it does not answer at http://127.0.0.1:7900 after 15 s; see /state/logs/broker.log and /state/logs/broker.out"#]]
        .assert_eq(&texts.join("\n"));
    }
}
