//! The peers broker: the mail queue of Claude Code sessions behind an authenticated HTTP API.
//!
//! The broker is written against the [`peers_store::Store`] trait and holds no SQL: the
//! backends (`peers-store-sqlite`, the embedded default; `peers-store-postgres`, several
//! brokers on one database) keep every statement. What is the broker's own stays here: the
//! caches of authenticated peers and recipient lookups, the long-poll waiters, and which
//! peers have ended.
//!
//! * [`store`] — opens the backend the config's `db_url` names.
//! * [`api`] — the axum router and handlers for `/v1/…` (see `docs/PROTOCOL.md`).
//! * [`auth`] — bearer tokens: the per-user secret, the hub token, per-peer tokens.
//! * [`sweep`] — the periodic liveness / lease / expiry pass.
//! * [`waiters`] — long-poll slots that wake idle sessions' hooks.
//! * [`events`] — the live feed behind `GET /v1/events`.
//! * [`mailmark`] — the mail markers that let a local hook skip the network when no mail waits.
//! * [`logins`] — dashboard login codes and sessions (memory only).
//! * [`input`] — one-line field cleaning, broker-only notice kinds.
//!
//! [`run`] ties them together for the binary; tests start the binary itself.

pub mod api;
pub mod auth;
pub mod directory;
pub mod error;
pub mod events;
pub mod input;
pub mod logins;
pub mod mailmark;
pub mod store;
pub mod sweep;
pub mod waiters;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use peers_core::config::DbUrl;
use peers_core::{Config, identity, paths};
use peers_store::{NewNotice, PeerRecord, Store, StoreEvent};
use tokio::sync::{broadcast, watch};

/// The broker's shared state, one per process, handed to every handler.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    /// The per-user secret (registration and human calls on this machine).
    pub secret: String,
    /// The hub token, when configured.
    pub hub_token: Option<String>,
    pub started: Instant,
    /// Authenticated peers by id (rows whose token is still valid).
    pub peer_cache: RwLock<HashMap<String, Arc<PeerRecord>>>,
    pub waiters: waiters::Waiters,
    /// Recipient lookups, valid until any peer row changes.
    pub directory: directory::Directory,
    /// Flips to true when the broker should shut down.
    pub shutdown: watch::Sender<bool>,
    /// The local sessions' mail markers (set after commit, cleared by delete-then-check).
    pub mailmarks: mailmark::MailMarks,
    /// The live feed of `GET /v1/events` (handlers publish after their commit).
    pub feed: events::Feed,
    /// Dashboard login codes and sessions (memory only: a restart logs browsers out).
    pub logins: logins::Logins,
}

/// The state as handlers and layers take it (`State<SharedState>`).
pub type SharedState = Arc<AppState>;

/// What the broker needs from [`Config`], resolved once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub machine_id: String,
    pub host: String,
    pub max_message_bytes: usize,
    pub message_ttl_ms: i64,
    /// Delivered mail older than this is pruned by the sweep; `None`: kept forever.
    pub retain_ms: Option<i64>,
    pub lease_ms: u64,
    pub remote_alive_ms: i64,
    pub sweep: Duration,
    pub loop_budget: u32,
    pub loop_window_ms: i64,
    /// The address listened on, one of the names a `Host` header may give.
    pub bind: IpAddr,
    /// Further host names a `Host` header may give (lowercase).
    pub allowed_hosts: Vec<String>,
    /// Whether `/` serves the dashboard (and a session cookie counts as the human).
    pub dashboard: bool,
    pub dashboard_session_hours: u64,
    /// Whether the broker serves HTTPS (the session cookie is then `Secure`).
    pub tls: bool,
}

impl Settings {
    pub fn from_config(c: &Config, machine_id: String) -> Settings {
        Settings {
            machine_id,
            host: identity::host_label(c.host.as_deref()),
            max_message_bytes: c.max_message_bytes,
            message_ttl_ms: (c.message_ttl_secs as i64).saturating_mul(1000),
            retain_ms: (c.retain_days > 0)
                .then(|| (c.retain_days.min(1_000_000) as i64) * 86_400_000),
            lease_ms: c.lease_ms,
            remote_alive_ms: (c.remote_alive_secs as i64).saturating_mul(1000),
            sweep: Duration::from_millis(c.sweep_ms.max(50)),
            loop_budget: c.loop_budget,
            loop_window_ms: (c.loop_window_secs as i64).saturating_mul(1000),
            bind: c.bind,
            allowed_hosts: c.allowed_hosts.clone(),
            dashboard: c.dashboard,
            dashboard_session_hours: c.dashboard_session_hours,
            tls: c.tls_cert.is_some() && c.tls_key.is_some(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot prepare the state dir {dir}: {source}")]
    StateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {0}, which is reachable from other machines, without a hub token; \
         set `token` in config.toml (or PEERS_TOKEN), e.g. with `peers hub init`"
    )]
    NoHubToken(SocketAddr),
    #[error(
        "port {port} on {addr} is taken by another program; pick another with --port or PEERS_PORT"
    )]
    PortTaken { addr: SocketAddr, port: u16 },
    #[error(
        "port {port} is used by a peers broker of another state dir (pid {pid}); \
         stop it (`peers broker stop`) or pick another port with --port or PEERS_PORT"
    )]
    OtherBroker { port: u16, pid: u32 },
    #[error("another peers-broker holds {lock} but does not answer at {url}; if it hangs, stop it")]
    LockedButSilent { lock: PathBuf, url: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "TLS needs both `tls_cert` and `tls_key` (PEERS_TLS_CERT / PEERS_TLS_KEY); only one is set"
    )]
    TlsHalf,
    #[error("cannot use the TLS certificate or key: {0}")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] peers_store::StoreError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// How a start ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    /// Served until shut down.
    Served,
    /// A broker for this state dir was already running and healthy.
    AlreadyRunning { pid: u32, url: String },
}

/// Runs the broker until SIGTERM/SIGINT or `POST /v1/shutdown`.
///
/// One broker per state dir: an exclusive lock on `<state_dir>/broker.lock` decides. A second
/// start finds the first healthy and returns [`Started::AlreadyRunning`].
pub async fn run(config: Config) -> Result<Started, BrokerError> {
    let state_dir = config.state_dir.clone();
    let state_err = |source| BrokerError::StateDir {
        dir: state_dir.clone(),
        source,
    };
    paths::ensure_private_dir(&state_dir).map_err(state_err)?;
    let addr = SocketAddr::new(config.bind, config.port);
    let local_url = format!("http://127.0.0.1:{}", config.port);

    let lock_path = state_dir.join("broker.lock");
    let Some(_lock) = lock::try_exclusive(&lock_path).map_err(state_err)? else {
        let probe = peers_core::BrokerClient::new(&local_url, None);
        for _ in 0..50 {
            if let Ok(h) = probe.health().await {
                return Ok(Started::AlreadyRunning {
                    pid: h.pid,
                    url: local_url,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        return Err(BrokerError::LockedButSilent {
            lock: lock_path,
            url: local_url,
        });
    };

    if !config.bind.is_loopback() && config.token.is_none() {
        return Err(BrokerError::NoHubToken(addr));
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(BrokerError::Tls)?),
        (None, None) => None,
        _ => return Err(BrokerError::TlsHalf),
    };

    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let probe = peers_core::BrokerClient::new(&local_url, None);
            return Err(match probe.health().await {
                Ok(h) => BrokerError::OtherBroker {
                    port: config.port,
                    pid: h.pid,
                },
                Err(_) => BrokerError::PortTaken {
                    addr,
                    port: config.port,
                },
            });
        }
        Err(source) => return Err(BrokerError::Bind { addr, source }),
    };

    // A state dir that has a secret had a broker before; an SQLite file missing then is one
    // that was deleted or moved, and starting empty must not go unnoticed. (A database server
    // is not the state dir's: nothing to tell from it.)
    let had_broker = paths::secret_file(&state_dir).exists();
    let new_file = match &config.db_url {
        DbUrl::Sqlite(path) => (!path.exists()).then(|| path.clone()),
        DbUrl::Postgres(_) => None,
    };
    let secret = paths::ensure_secret(&state_dir).map_err(state_err)?;
    let machine_id = identity::machine_id(&state_dir).map_err(state_err)?;
    let store = store::open(&config.db_url).await?;
    if had_broker && let Some(path) = new_file {
        let text = format!(
            "The broker started with a new, empty database at {}: the one used before is gone \
             (deleted or moved), and any mail in it is not here. If you have a copy of \
             peers.db, stop the broker (`peers broker stop`) and put it back.",
            path.display()
        );
        tracing::warn!(db = %path.display(), "storage_new: started with an empty database");
        store
            .add_notice(NewNotice {
                kind: "storage_new".into(),
                peer_id: None,
                text,
                author: input::BROKER_AUTHOR.into(),
                now: peers_core::now_ms(),
            })
            .await?;
    }
    let mailmarks = mailmark::MailMarks::for_config(&config, &machine_id, store.as_ref()).await;
    let (shutdown, _) = watch::channel(false);
    let state = Arc::new(AppState {
        store,
        settings: Settings::from_config(&config, machine_id),
        secret,
        hub_token: config.token.clone(),
        started: Instant::now(),
        peer_cache: RwLock::new(HashMap::new()),
        waiters: waiters::Waiters::default(),
        directory: directory::Directory::default(),
        shutdown,
        mailmarks,
        feed: events::Feed::default(),
        logins: logins::Logins::default(),
    });

    tokio::spawn(sweep::run(state.clone()));
    tokio::spawn(api::watch_storage(state.clone()));
    if let Some(events) = state.store.events() {
        tokio::spawn(apply_events(state.clone(), events));
    }
    let app = api::router(state.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let db = state.store.describe();
    tracing::info!(%addr, backend = db.backend, db = %db.location, scheme, "peers-broker listening");
    eprintln!(
        "peers-broker {} listening on {scheme}://{addr} (state dir {})",
        peers_core::VERSION,
        state_dir.display()
    );
    let mut stop = state.shutdown.subscribe();
    let make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => axum::serve(listener, make_service)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = signal_received() => {},
                    _ = stop.wait_for(|s| *s) => {},
                }
                tracing::info!("shutting down");
            })
            .await
            .map_err(BrokerError::Serve)?,
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let on_stop = handle.clone();
            let stopper = state.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = signal_received() => {},
                    _ = stop.wait_for(|s| *s) => {},
                }
                tracing::info!("shutting down");
                // Ends long polls, then lets requests in flight finish.
                let _ = stopper.send(true);
                on_stop.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let std_listener = listener.into_std().map_err(BrokerError::Serve)?;
            axum_server::from_tcp_rustls(std_listener, tls)
                .map_err(BrokerError::Serve)?
                .handle(handle)
                .serve(make_service)
                .await
                .map_err(BrokerError::Serve)?
        }
    }

    let _ = state.shutdown.send(true);
    state.mailmarks.stop();
    state.store.flush().await.ok();
    // Commits what is queued and checkpoints the WAL: a copy of peers.db alone is complete.
    state.store.close().await;
    tracing::info!("stopped");
    Ok(Started::Served)
}

/// Applies what other brokers on the same database committed: mail wakes its peer's long
/// poll; changed peer rows make the caches stale. Ends with the broker or the stream.
async fn apply_events(state: SharedState, mut events: broadcast::Receiver<StoreEvent>) {
    let mut stop = state.shutdown.subscribe();
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.wait_for(|v| *v) => return,
        };
        if let Ok(e) = &event {
            state.publish_store_event(e);
        }
        match event {
            Ok(StoreEvent::Mail { peer_id }) => state.waiters.wake(&peer_id),
            Ok(StoreEvent::PeersChanged) => state.peers_changed(),
            Ok(StoreEvent::Lagged) | Err(broadcast::error::RecvError::Lagged(_)) => {
                state.publish_store_event(&StoreEvent::Lagged);
                state.peers_changed();
                state.waiters.wake_all();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The server side of the optional TLS.
mod tls {
    use std::path::Path;
    use std::sync::Arc;

    use axum_server::tls_rustls::RustlsConfig;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// Reads the PEM certificate chain and key into a rustls config (ring provider).
    pub fn server_config(cert: &Path, key: &Path) -> Result<RustlsConfig, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "tls_cert {} holds no PEM certificate",
                cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("tls_key {}: {e}", key.display()))?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(peers_core::client::crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(RustlsConfig::from_config(Arc::new(config)))
    }
}

async fn signal_received() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// The single-instance lock.
mod lock {
    use std::fs::{File, OpenOptions};
    use std::os::fd::AsRawFd;
    use std::path::Path;

    /// Takes an exclusive `flock` on `path`, or `None` if another process holds it. The lock
    /// lives as long as the returned file (and dies with the process, even on kill -9).
    pub fn try_exclusive(path: &Path) -> std::io::Result<Option<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(Some(f))
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}
