//! What every command needs: the config, a runtime, broker clients, errors that say what to
//! do next, durations, and where the other binaries are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use peers_core::{BrokerClient, ClientError, Config};

/// An exit code without a further message (the command already printed what happened).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The loaded config and a runtime for the async broker client.
pub struct Ctx {
    pub cfg: Config,
    pub rt: tokio::runtime::Runtime,
    /// Every broker client of the command shares this one's pool and failover state.
    client: BrokerClient,
}

impl Ctx {
    pub fn load() -> Result<Ctx> {
        let cfg = Config::load().map_err(|e| anyhow!("{e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = cfg.client(None);
        Ok(Ctx { cfg, rt, client })
    }

    /// The broker URL the next call goes to: the first configured one, or the one that
    /// answered last.
    pub fn url(&self) -> String {
        self.client.base_url().to_string()
    }

    /// A client without credentials (health only).
    pub fn anon(&self) -> BrokerClient {
        self.client.clone()
    }

    /// A client carrying the human's credential: the hub token, else the local secret.
    pub fn user(&self) -> Result<BrokerClient> {
        let cred = self.cfg.user_credential().map_err(|e| {
            anyhow!(
                "cannot read the secret {}: {e}",
                peers_core::paths::secret_file(&self.cfg.state_dir).display()
            )
        })?;
        match cred {
            Some(c) => Ok(self.client.with_auth(Some(c))),
            None => {
                let running = self.rt.block_on(self.anon().health()).is_ok();
                if running {
                    Err(anyhow!(
                        "a broker answers at {} but there is no secret in {}: it was started \
                         with another state dir (PEERS_STATE_DIR). Use the same PEERS_STATE_DIR, \
                         or stop that broker and start it with `peers broker start`",
                        self.url(),
                        self.cfg.state_dir.display()
                    ))
                } else {
                    Err(not_running(&self.cfg))
                }
            }
        }
    }

    /// Turns a client error into one that says what to do next.
    pub fn explain(&self, e: ClientError) -> anyhow::Error {
        explain(&self.cfg, e)
    }
}

/// One configured broker and what its `GET /v1/health` said, asked on its own (no failover).
pub struct Probe {
    pub url: String,
    pub health: Result<peers_core::wire::Health, ClientError>,
}

/// Asks every configured broker, in order, whether it answers.
pub fn probe_brokers(cfg: &Config, rt: &tokio::runtime::Runtime) -> Vec<Probe> {
    cfg.broker_urls()
        .into_iter()
        .map(|url| {
            let health = rt.block_on(BrokerClient::new(&url, None).health());
            Probe { url, health }
        })
        .collect()
}

/// What to do when no broker answers: start it, or check the hub.
pub fn how_to_start(cfg: &Config) -> String {
    if cfg.is_remote() {
        format!(
            "check that the hub runs and that `broker_url(s)` in {} (or PEERS_BROKER_URL(S)) is \
             right",
            cfg.config_file.display()
        )
    } else {
        "start it with `peers broker start` (a Claude Code session with peers installed also \
         starts it when it opens)"
            .to_string()
    }
}

/// The error for "no broker answers".
pub fn not_running(cfg: &Config) -> anyhow::Error {
    if cfg.is_remote() {
        anyhow!(
            "the peers hub at {} does not answer: check that it runs and that `broker_url(s)` in \
             {} (or PEERS_BROKER_URL(S)) is right",
            cfg.broker_urls().join(", "),
            cfg.config_file.display()
        )
    } else {
        anyhow!(
            "the peers broker is not running at {}: start it with `peers broker start`",
            cfg.broker_url()
        )
    }
}

pub fn explain(cfg: &Config, e: ClientError) -> anyhow::Error {
    if e.is_unreachable() {
        return not_running(cfg);
    }
    match e.code() {
        Some(peers_core::wire::ErrorCode::Unauthorized) if cfg.is_remote() => anyhow!(
            "the hub refused the token: {e}\nSet the hub's token as `token` in {} (or PEERS_TOKEN)",
            cfg.config_file.display()
        ),
        Some(peers_core::wire::ErrorCode::Unauthorized) => anyhow!(
            "the broker refused the secret in {}: {e}\nThe broker at {} was probably started with \
             another state dir; restart it with `peers broker stop` and `peers broker start`",
            peers_core::paths::secret_file(&cfg.state_dir).display(),
            cfg.broker_url()
        ),
        _ => anyhow!("{e}"),
    }
}

/// [`parse_duration`] of an optional flag (`--since`, `--timeout`).
pub fn parse_optional_duration(s: Option<&str>) -> Result<Option<Duration>> {
    s.map(parse_duration).transpose()
}

/// [`peers_core::parse_duration`], as this crate's errors.
pub fn parse_duration(s: &str) -> Result<Duration> {
    peers_core::parse_duration(s).map_err(|e| anyhow!(e))
}

pub use peers_core::render::duration;

/// How long ago `ms` was, now (`5 min ago`): [`peers_core::render::ago`], as the models read it.
pub fn ago(ms: i64) -> String {
    peers_core::render::ago(ms, peers_core::now_ms())
}

/// The directory of the running `peers` executable: its sibling binaries live there.
pub fn exe_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the peers executable has no directory"))
}

/// A sibling binary's path (whether or not it exists).
pub fn sibling(name: &str) -> Result<PathBuf> {
    Ok(exe_dir()?.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

/// A binary next to `peers`, else on PATH.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    peers_core::local_broker::find_binary(name)
}

/// The first executable `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    peers_core::local_broker::is_executable(p)
}

/// `--json`, the one output switch every command that can print JSON flattens in.
#[derive(clap::Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How often `send --wait` polls the broker.
pub const POLL: Duration = Duration::from_millis(500);

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Resolves when Ctrl-C (SIGINT) or SIGTERM arrives.
pub async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
