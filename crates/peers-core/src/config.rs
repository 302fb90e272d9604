//! The one typed settings struct, loaded as defaults < `config.toml` < `PEERS_*` env.
//!
//! Every binary calls [`Config::load`]; tests point `PEERS_CONFIG` and `PEERS_STATE_DIR` at
//! temporary paths so nothing touches the real home.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::paths;

/// Everything configurable. Field names are the `config.toml` keys; each has a `PEERS_<KEY>`
/// environment override (upper case).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where state lives (`PEERS_STATE_DIR`).
    pub state_dir: PathBuf,
    /// The config file this was loaded from (`PEERS_CONFIG`), whether or not it exists.
    pub config_file: PathBuf,
    /// The brokers to talk to (`broker_urls`, or `broker_url` as a list of one;
    /// `PEERS_BROKER_URLS` comma-separated, or `PEERS_BROKER_URL`). Empty means the local
    /// broker at `bind:port`, which clients may start themselves. Set URLs are a hub (several:
    /// brokers on one shared database, tried in order with failover): clients never start or
    /// stop them.
    pub broker_urls: Vec<String>,
    /// The hub token, for registration and human calls on a hub (`PEERS_TOKEN`).
    pub token: Option<String>,
    /// Address the broker listens on (`PEERS_BIND`).
    pub bind: IpAddr,
    /// Port the broker listens on (`PEERS_PORT`).
    pub port: u16,
    /// The SQLite database (`PEERS_DB`); default `<state_dir>/peers.db`. Used when `db_url`
    /// names no other database.
    pub db: PathBuf,
    /// The broker's database (`PEERS_DB_URL`): `sqlite:///path/peers.db` (the default, from
    /// `db`) or `postgres://user:password@host:port/dbname`.
    pub db_url: DbUrl,
    /// The host label shown in `name@host` (`PEERS_HOST`); default the hostname.
    pub host: Option<String>,
    /// Largest message body in bytes.
    pub max_message_bytes: usize,
    /// How long undelivered mail is kept before it expires.
    pub message_ttl_secs: u64,
    /// How long delivered mail is kept (`PEERS_RETAIN_DAYS`; default 90): counted from when
    /// it was sent, once every copy is delivered or expired; the sweep then prunes it. `0`
    /// keeps it forever.
    pub retain_days: u64,
    /// How long a claim's lease holds before unacked mail returns to the queue.
    pub lease_ms: u64,
    /// A peer on another machine counts as alive this long after its last heartbeat.
    pub remote_alive_secs: u64,
    /// How often the broker sweeps for ended sessions, lapsed leases and expired mail.
    pub sweep_ms: u64,
    /// Automatic turn extensions or wakes allowed per session per window (the loop budget).
    pub loop_budget: u32,
    /// The loop budget's window.
    pub loop_window_secs: u64,
    /// Mail waiting this long for a session raises a notice to the human.
    pub escalate_after_secs: u64,
    /// Connect timeout of the hook's broker calls.
    pub hook_connect_timeout_ms: u64,
    /// After the hook failed to reach the broker, it stays quiet this long before trying again.
    pub hook_backoff_ms: u64,
    /// Let `peers-deliver --wait` wait in headless (`-p`) sessions too.
    pub wait_headless: bool,
    /// The broker's TLS certificate chain, PEM (`PEERS_TLS_CERT`); with `tls_key` the broker
    /// serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// The broker's TLS private key, PEM (`PEERS_TLS_KEY`).
    pub tls_key: Option<PathBuf>,
    /// What a client trusts for an `https` broker URL (`PEERS_TLS_CA`): a PEM file with a CA
    /// certificate or the hub's self-signed certificate. Without it, the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// Host names the broker answers to besides loopback and its bind address
    /// (`PEERS_ALLOWED_HOSTS`, comma-separated), e.g. a hub's DNS or tailnet name. A request
    /// whose `Host` header names anything else is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Whether the broker serves the web dashboard at `/` (`PEERS_DASHBOARD`; default on).
    pub dashboard: bool,
    /// How long a dashboard login lasts (`PEERS_DASHBOARD_SESSION_HOURS`; default 12).
    pub dashboard_session_hours: u64,
    /// Topics every session subscribes to when it starts (`topics = ["…"]`, `PEERS_TOPICS`
    /// comma-separated), normalised without `#`. A subscription made this way keeps the
    /// `wake`/`mute` a session chose for it since.
    pub topics: Vec<String>,
}

/// The keys of `config.toml`; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    state_dir: Option<PathBuf>,
    broker_url: Option<String>,
    broker_urls: Option<Vec<String>>,
    token: Option<String>,
    bind: Option<IpAddr>,
    port: Option<u16>,
    db: Option<PathBuf>,
    db_url: Option<String>,
    host: Option<String>,
    max_message_bytes: Option<usize>,
    message_ttl_secs: Option<u64>,
    retain_days: Option<u64>,
    lease_ms: Option<u64>,
    remote_alive_secs: Option<u64>,
    sweep_ms: Option<u64>,
    loop_budget: Option<u32>,
    loop_window_secs: Option<u64>,
    escalate_after_secs: Option<u64>,
    hook_connect_timeout_ms: Option<u64>,
    hook_backoff_ms: Option<u64>,
    wait_headless: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    allowed_hosts: Option<Vec<String>>,
    dashboard: Option<bool>,
    dashboard_session_hours: Option<u64>,
    topics: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config file {path} is not valid: {message}\nfix the file or point PEERS_CONFIG elsewhere"
    )]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?} is not valid: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
}

impl Config {
    /// Loads from the process environment. Also makes `tls_ca` the trust anchor of every
    /// [`crate::BrokerClient`] this process builds for an `https` URL.
    pub fn load() -> Result<Config, ConfigError> {
        let c = Self::load_from(|k| std::env::var(k).ok())?;
        if let Some(ca) = &c.tls_ca {
            crate::client::set_default_tls_ca(ca.clone());
        }
        Ok(c)
    }

    /// Loads with `env` standing in for the environment (tests use this).
    pub fn load_from(env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let config_file = env("PEERS_CONFIG")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(paths::default_config_file);
        let file = read_file_config(&config_file)?;

        let state_dir = env("PEERS_STATE_DIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or(file.state_dir)
            .unwrap_or_else(paths::default_state_dir);

        let parse = |var: &str| -> Result<Option<String>, ConfigError> {
            Ok(env(var).filter(|s| !s.is_empty()))
        };
        let num = |var: &str, file_value: Option<u64>, default: u64| -> Result<u64, ConfigError> {
            match parse(var)? {
                Some(v) => {
                    v.trim()
                        .parse()
                        .map_err(|e: std::num::ParseIntError| ConfigError::Env {
                            var: var.into(),
                            value: v.clone(),
                            message: e.to_string(),
                        })
                }
                None => Ok(file_value.unwrap_or(default)),
            }
        };

        let bind = match parse("PEERS_BIND")? {
            Some(v) => {
                v.trim()
                    .parse()
                    .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                        var: "PEERS_BIND".into(),
                        value: v.clone(),
                        message: e.to_string(),
                    })?
            }
            None => file.bind.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        };
        let port = num("PEERS_PORT", file.port.map(u64::from), 7900)?;
        let port = u16::try_from(port).map_err(|_| ConfigError::Env {
            var: "PEERS_PORT".into(),
            value: port.to_string(),
            message: "not a port number".into(),
        })?;
        let db = parse("PEERS_DB")?
            .map(PathBuf::from)
            .or(file.db)
            .unwrap_or_else(|| paths::default_db_file(&state_dir));
        let db_url = match parse("PEERS_DB_URL")? {
            Some(v) => DbUrl::parse(&v).map_err(|message| ConfigError::Env {
                var: "PEERS_DB_URL".into(),
                value: DbUrl::redact(&v),
                message,
            })?,
            None => match &file.db_url {
                Some(v) => DbUrl::parse(v).map_err(|message| ConfigError::Parse {
                    path: config_file.clone(),
                    message: format!("db_url {:?}: {message}", DbUrl::redact(v)),
                })?,
                None => DbUrl::Sqlite(db.clone()),
            },
        };
        let wait_headless = match parse("PEERS_WAIT_HEADLESS")? {
            Some(v) => matches!(v.trim(), "1" | "true" | "yes" | "on"),
            None => file.wait_headless.unwrap_or(false),
        };
        let dashboard = match parse("PEERS_DASHBOARD")? {
            Some(v) => !matches!(v.trim(), "0" | "false" | "no" | "off"),
            None => file.dashboard.unwrap_or(true),
        };

        let path =
            |var: &str, file_value: Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
                Ok(parse(var)?.map(PathBuf::from).or(file_value))
            };
        let allowed_hosts = match parse("PEERS_ALLOWED_HOSTS")? {
            Some(v) => v.split(',').map(str::to_string).collect(),
            None => file.allowed_hosts.unwrap_or_default(),
        };
        let allowed_hosts = allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let topics = match parse("PEERS_TOPICS")? {
            Some(v) => v.split(',').map(str::to_string).collect(),
            None => file.topics.unwrap_or_default(),
        };
        let topics = topics
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                crate::address::topic_name(t).map_err(|message| ConfigError::Parse {
                    path: config_file.clone(),
                    message: format!("topics: {message}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            topics,
            allowed_hosts,
            dashboard,
            dashboard_session_hours: num(
                "PEERS_DASHBOARD_SESSION_HOURS",
                file.dashboard_session_hours,
                12,
            )?
            .max(1),
            tls_cert: path("PEERS_TLS_CERT", file.tls_cert)?,
            tls_key: path("PEERS_TLS_KEY", file.tls_key)?,
            tls_ca: path("PEERS_TLS_CA", file.tls_ca)?,
            broker_urls: broker_urls(
                parse("PEERS_BROKER_URL")?,
                parse("PEERS_BROKER_URLS")?,
                file.broker_url,
                file.broker_urls,
                &config_file,
            )?,
            token: parse("PEERS_TOKEN")?.or(file.token),
            bind,
            port,
            db,
            db_url,
            host: parse("PEERS_HOST")?.or(file.host),
            max_message_bytes: num(
                "PEERS_MAX_MESSAGE_BYTES",
                file.max_message_bytes.map(|v| v as u64),
                crate::wire::DEFAULT_MAX_MESSAGE_BYTES as u64,
            )? as usize,
            message_ttl_secs: num(
                "PEERS_MESSAGE_TTL_SECS",
                file.message_ttl_secs,
                7 * 24 * 3600,
            )?,
            retain_days: num("PEERS_RETAIN_DAYS", file.retain_days, 90)?,
            lease_ms: num("PEERS_LEASE_MS", file.lease_ms, 30_000)?,
            remote_alive_secs: num("PEERS_REMOTE_ALIVE_SECS", file.remote_alive_secs, 75)?,
            sweep_ms: num("PEERS_SWEEP_MS", file.sweep_ms, 2_000)?,
            loop_budget: num("PEERS_LOOP_BUDGET", file.loop_budget.map(u64::from), 10)? as u32,
            loop_window_secs: num("PEERS_LOOP_WINDOW_SECS", file.loop_window_secs, 600)?,
            escalate_after_secs: num("PEERS_ESCALATE_AFTER_SECS", file.escalate_after_secs, 90)?,
            hook_connect_timeout_ms: num(
                "PEERS_HOOK_CONNECT_TIMEOUT_MS",
                file.hook_connect_timeout_ms,
                100,
            )?,
            hook_backoff_ms: num("PEERS_HOOK_BACKOFF_MS", file.hook_backoff_ms, 5_000)?,
            wait_headless,
            state_dir,
            config_file,
        })
    }

    /// The first broker URL clients use: the configured hub's (the first of `broker_urls`),
    /// or the local broker's.
    pub fn broker_url(&self) -> String {
        match self.broker_urls.first() {
            Some(u) => u.clone(),
            None => format!("http://{}", std::net::SocketAddr::new(self.bind, self.port))
                .replace("0.0.0.0", "127.0.0.1"),
        }
    }

    /// Every broker URL clients use, in order: the configured ones, or the local broker's.
    /// Give these to [`crate::BrokerClient::with_failover`].
    pub fn broker_urls(&self) -> Vec<String> {
        if self.broker_urls.is_empty() {
            vec![self.broker_url()]
        } else {
            self.broker_urls.clone()
        }
    }

    /// A client for the configured brokers (failing over between them) with the default
    /// timeouts.
    pub fn client(&self, auth: Option<String>) -> crate::BrokerClient {
        crate::BrokerClient::with_failover(
            &self.broker_urls(),
            auth,
            crate::client::Timeouts::default(),
        )
    }

    /// True when clients talk to a broker they must not start or stop themselves.
    pub fn is_remote(&self) -> bool {
        !self.broker_urls.is_empty()
    }

    /// The credential for registration and human calls: the hub token when configured, else
    /// the local per-user secret (read from the state dir; `None` before any broker started).
    pub fn user_credential(&self) -> std::io::Result<Option<String>> {
        match &self.token {
            Some(t) => Ok(Some(t.clone())),
            None => paths::read_secret(&self.state_dir),
        }
    }

    pub fn sessions_dir(&self) -> PathBuf {
        paths::sessions_dir(&self.state_dir)
    }

    pub fn logs_dir(&self) -> PathBuf {
        paths::logs_dir(&self.state_dir)
    }
}

/// Where the broker keeps its data.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// An SQLite file (`sqlite:///abs/path`, `sqlite://rel/path`, or `sqlite:path`).
    Sqlite(PathBuf),
    /// A PostgreSQL server, as a `postgres://` or `postgresql://` URL (passed to the driver
    /// as it is; it may hold a password).
    Postgres(String),
}

impl DbUrl {
    /// Reads a `db_url` value; the error says what forms are accepted.
    pub fn parse(s: &str) -> Result<DbUrl, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("an sqlite URL needs a path: sqlite:///path/to/peers.db".into());
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(s.to_string()));
        }
        Err("expected sqlite:///path/to/peers.db or postgres://user:password@host:port/db".into())
    }

    /// The URL with any password replaced by `***`, for logs, errors and texts.
    pub fn redact(url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string();
        };
        let (authority, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                let masked = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    user.to_string()
                };
                format!("{scheme}://{masked}@{host}{tail}")
            }
            None => url.to_string(),
        }
    }

    /// How it is shown: the SQLite path, or the PostgreSQL URL without its password.
    pub fn display(&self) -> String {
        match self {
            DbUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DbUrl::Postgres(u) => DbUrl::redact(u),
        }
    }
}

/// Never prints a password.
impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// The configured broker URLs. The environment beats the file; within one of them, naming
/// both `broker_url` and `broker_urls` is an error (which one was meant is a guess).
fn broker_urls(
    env_one: Option<String>,
    env_list: Option<String>,
    file_one: Option<String>,
    file_list: Option<Vec<String>>,
    config_file: &Path,
) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = match (env_one, env_list) {
        (Some(one), Some(_)) => {
            return Err(ConfigError::Env {
                var: "PEERS_BROKER_URL".into(),
                value: one,
                message: "PEERS_BROKER_URLS is set too: set only one of them (a list of one \
                          URL is fine)"
                    .into(),
            });
        }
        (Some(one), None) => vec![one],
        (None, Some(list)) => list.split(',').map(str::to_string).collect(),
        (None, None) => match (file_one, file_list) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Parse {
                    path: config_file.to_path_buf(),
                    message: "both broker_url and broker_urls are set: keep only broker_urls \
                              (broker_url = \"…\" is the same as broker_urls = [\"…\"])"
                        .into(),
                });
            }
            (Some(one), None) => vec![one],
            (None, Some(list)) => list,
            (None, None) => Vec::new(),
        },
    };
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        let u = u.trim().trim_end_matches('/').to_string();
        if !u.is_empty() && !out.contains(&u) {
            out.push(u);
        }
    }
    Ok(out)
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(|k| map.get(k).cloned())
    }

    #[test]
    fn db_url_defaults_to_the_sqlite_file_and_takes_postgres() {
        let c = load(&[
            ("PEERS_STATE_DIR", "/s"),
            ("PEERS_CONFIG", "/nonexistent.toml"),
        ])
        .unwrap();
        assert_eq!(c.db_url, DbUrl::Sqlite(PathBuf::from("/s/peers.db")));
        let c = load(&[
            ("PEERS_CONFIG", "/nonexistent.toml"),
            ("PEERS_DB_URL", "sqlite:///tmp/x.db"),
        ])
        .unwrap();
        assert_eq!(c.db_url, DbUrl::Sqlite(PathBuf::from("/tmp/x.db")));
        let url = "postgres://peers:hunter2@127.0.0.1:5432/peers";
        let c = load(&[("PEERS_CONFIG", "/nonexistent.toml"), ("PEERS_DB_URL", url)]).unwrap();
        assert_eq!(c.db_url, DbUrl::Postgres(url.into()));
        assert!(!format!("{:?}", c.db_url).contains("hunter2"));
        assert_eq!(
            c.db_url.display(),
            "postgres://peers:***@127.0.0.1:5432/peers"
        );
        let e = load(&[
            ("PEERS_CONFIG", "/nonexistent.toml"),
            ("PEERS_DB_URL", "mysql://u:secret@h/db"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("postgres://") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn defaults_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        let cfg = cfg_path.to_str().unwrap();
        let state = dir.path().join("state");
        let state = state.to_str().unwrap();

        let c = load(&[("PEERS_CONFIG", cfg), ("PEERS_STATE_DIR", state)]).unwrap();
        assert_eq!(c.port, 7900);
        assert_eq!(c.broker_url(), "http://127.0.0.1:7900");
        assert_eq!(c.db, Path::new(state).join("peers.db"));
        assert!(!c.is_remote());

        std::fs::write(&cfg_path, "port = 8100\nloop_budget = 3\nhost = \"lap\"\n").unwrap();
        let c = load(&[("PEERS_CONFIG", cfg), ("PEERS_STATE_DIR", state)]).unwrap();
        assert_eq!(
            (c.port, c.loop_budget, c.host.as_deref()),
            (8100, 3, Some("lap"))
        );

        let c = load(&[
            ("PEERS_CONFIG", cfg),
            ("PEERS_STATE_DIR", state),
            ("PEERS_PORT", "8200"),
            ("PEERS_BROKER_URL", "http://10.0.0.1:7900/"),
        ])
        .unwrap();
        assert_eq!(c.port, 8200);
        assert_eq!(c.loop_budget, 3);
        assert_eq!(c.broker_url(), "http://10.0.0.1:7900");
        assert!(c.is_remote());
    }

    #[test]
    fn broker_urls_from_file_then_env_and_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        let cfg = cfg_path.to_str().unwrap();
        std::fs::write(
            &cfg_path,
            "broker_urls = [\"http://a:7900/\", \" \", \"http://b:7900\", \"http://a:7900\"]\n",
        )
        .unwrap();
        let c = load(&[("PEERS_CONFIG", cfg)]).unwrap();
        assert_eq!(c.broker_urls(), ["http://a:7900", "http://b:7900"]);
        assert_eq!(c.broker_url(), "http://a:7900");
        assert!(c.is_remote());
        // The environment beats the file, as a list or as one URL.
        let c = load(&[
            ("PEERS_CONFIG", cfg),
            ("PEERS_BROKER_URLS", "http://c:1, http://d:2"),
        ])
        .unwrap();
        assert_eq!(c.broker_urls(), ["http://c:1", "http://d:2"]);
        let c = load(&[("PEERS_CONFIG", cfg), ("PEERS_BROKER_URL", "http://e:3")]).unwrap();
        assert_eq!(c.broker_urls(), ["http://e:3"]);
        // Both in one layer: a clear error naming both keys.
        let e = load(&[
            ("PEERS_CONFIG", cfg),
            ("PEERS_BROKER_URL", "http://e:3"),
            ("PEERS_BROKER_URLS", "http://c:1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PEERS_BROKER_URL") && e.contains("PEERS_BROKER_URLS"),
            "{e}"
        );
        std::fs::write(
            &cfg_path,
            "broker_url = \"http://a:7900\"\nbroker_urls = [\"http://b:7900\"]\n",
        )
        .unwrap();
        let e = load(&[("PEERS_CONFIG", cfg)]).unwrap_err().to_string();
        assert!(
            e.contains("broker_url and broker_urls") && e.contains(cfg),
            "{e}"
        );
        // One URL is a list of one.
        std::fs::write(&cfg_path, "broker_url = \"http://a:7900\"\n").unwrap();
        let c = load(&[("PEERS_CONFIG", cfg)]).unwrap();
        assert_eq!(c.broker_urls(), ["http://a:7900"]);
        // None: the local broker, not remote.
        std::fs::write(&cfg_path, "port = 8101\n").unwrap();
        let c = load(&[("PEERS_CONFIG", cfg)]).unwrap();
        assert_eq!(c.broker_urls(), ["http://127.0.0.1:8101"]);
        assert!(!c.is_remote());
    }

    #[test]
    fn retain_days_defaults_to_90_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        let cfg = cfg_path.to_str().unwrap();
        assert_eq!(load(&[("PEERS_CONFIG", cfg)]).unwrap().retain_days, 90);
        std::fs::write(&cfg_path, "retain_days = 0\n").unwrap();
        assert_eq!(load(&[("PEERS_CONFIG", cfg)]).unwrap().retain_days, 0);
        let c = load(&[("PEERS_CONFIG", cfg), ("PEERS_RETAIN_DAYS", "30")]).unwrap();
        assert_eq!(c.retain_days, 30);
    }

    #[test]
    fn tls_paths_from_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        std::fs::write(
            &cfg_path,
            "tls_cert = \"/etc/hub.pem\"\ntls_key = \"/etc/hub.key\"\ntls_ca = \"/a.pem\"\n",
        )
        .unwrap();
        let cfg = cfg_path.to_str().unwrap();
        let c = load(&[("PEERS_CONFIG", cfg), ("PEERS_TLS_CA", "/b.pem")]).unwrap();
        assert_eq!(c.tls_cert.as_deref(), Some(Path::new("/etc/hub.pem")));
        assert_eq!(c.tls_key.as_deref(), Some(Path::new("/etc/hub.key")));
        assert_eq!(c.tls_ca.as_deref(), Some(Path::new("/b.pem")));
    }

    #[test]
    fn allowed_hosts_from_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        let cfg = cfg_path.to_str().unwrap();
        assert!(
            load(&[("PEERS_CONFIG", cfg)])
                .unwrap()
                .allowed_hosts
                .is_empty()
        );
        std::fs::write(
            &cfg_path,
            "allowed_hosts = [\"Hub.Tailnet.ts.net\", \" \"]\n",
        )
        .unwrap();
        let c = load(&[("PEERS_CONFIG", cfg)]).unwrap();
        assert_eq!(c.allowed_hosts, ["hub.tailnet.ts.net"]);
        let c = load(&[
            ("PEERS_CONFIG", cfg),
            ("PEERS_ALLOWED_HOSTS", "a.example, b"),
        ])
        .unwrap();
        assert_eq!(c.allowed_hosts, ["a.example", "b"]);
    }

    #[test]
    fn topics_from_file_then_env_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        let cfg = cfg_path.to_str().unwrap();
        std::fs::write(&cfg_path, "topics = [\"#Deploys\", \"myproj:events\"]\n").unwrap();
        let c = load(&[("PEERS_CONFIG", cfg)]).unwrap();
        assert_eq!(c.topics, ["deploys", "myproj:events"]);
        let c = load(&[("PEERS_CONFIG", cfg), ("PEERS_TOPICS", "ci, ")]).unwrap();
        assert_eq!(c.topics, ["ci"]);
        std::fs::write(&cfg_path, "topics = [\"no spaces\"]\n").unwrap();
        let e = load(&[("PEERS_CONFIG", cfg)]).unwrap_err().to_string();
        assert!(
            e.contains("topics") && e.contains("not a topic name"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_culprit() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        std::fs::write(&cfg_path, "prot = 1\n").unwrap();
        let err = load(&[("PEERS_CONFIG", cfg_path.to_str().unwrap())]).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");

        let err = load(&[
            (
                "PEERS_CONFIG",
                dir.path().join("none.toml").to_str().unwrap(),
            ),
            ("PEERS_PORT", "seventy"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("PEERS_PORT"), "{err}");
    }
}
