//! This session as a peer: its facts, its registration with the broker, the session file,
//! recovery when the broker goes away, and the goodbye.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_core::client::Timeouts;
use peers_core::local_broker::{self, StartError, Up};
use peers_core::session::{self, SessionFile};
use peers_core::wire::{Agent, HeartbeatResponse, RegisterRequest, RegisterResponse};
use peers_core::{BrokerClient, ClientError, Config, identity, process};

use crate::claude;

/// How long to wait for a freshly started local broker to answer `/v1/health`.
const BROKER_START_WAIT: Duration = Duration::from_secs(6);

/// What this session is, collected once at start.
#[derive(Debug, Clone)]
pub struct Facts {
    pub claude_pid: u32,
    /// The Claude Code process's start time: with the pid, the session's identity.
    pub claude_start_time: Option<u64>,
    /// The parent pid this server started with.
    pub direct_parent: u32,
    pub mcp_pid: u32,
    pub session_id: Option<String>,
    pub machine_id: String,
    pub host: String,
    pub cwd: PathBuf,
    pub git_root: Option<PathBuf>,
    pub git_branch: Option<String>,
    pub tty: Option<String>,
    /// What the client calls the tools (`peers-mcp --tool-prefix`, or the agent's own).
    pub tools: peers_core::render::ToolNames,
    /// The agent CLI this server belongs to.
    pub agent: Agent,
}

impl Facts {
    pub fn collect(config: &Config) -> std::io::Result<Facts> {
        let direct_parent = claude::parent_pid();
        let gemini = claude::started_by_gemini(std::env::var("GEMINI_CLI").ok().as_deref());
        let (claude_pid, agent) = claude::find_agent(direct_parent, gemini, claude::proc_info);
        let cwd = std::env::current_dir()
            .ok()
            .or_else(|| std::env::var_os("CLAUDE_PROJECT_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/"));
        let git_root = identity::git_root(&cwd);
        let git_branch = git_root.as_deref().and_then(identity::git_branch);
        Ok(Facts {
            claude_pid,
            claude_start_time: process::start_time(claude_pid),
            direct_parent,
            mcp_pid: std::process::id(),
            session_id: std::env::var("CLAUDE_CODE_SESSION_ID")
                .ok()
                .filter(|s| !s.is_empty()),
            machine_id: identity::machine_id(&config.state_dir)?,
            host: identity::host_label(config.host.as_deref()),
            tty: claude::tty_of(claude_pid),
            cwd,
            git_root,
            git_branch,
            tools: peers_core::render::ToolNames::for_agent(agent),
            agent,
        })
    }

    /// The session file of this Claude Code process (same pid and start time), if there is one.
    pub fn own_session_file(&self, config: &Config) -> Option<SessionFile> {
        SessionFile::read(&config.state_dir, self.claude_pid)
            .ok()
            .flatten()
            .filter(|s| s.claude_start_time == self.claude_start_time && s.is_current())
    }

    /// The summary a session starts with: where it works.
    pub fn initial_summary(&self) -> String {
        let dir = self.git_root.as_deref().unwrap_or(&self.cwd);
        let mut s = format!("working in {}", dir.display());
        if let Some(b) = &self.git_branch {
            s.push_str(&format!(" (branch {b})"));
        }
        s
    }
}

/// A live registration.
#[derive(Debug)]
pub struct Registration {
    pub peer_id: String,
    pub name: String,
    pub address: String,
    /// A client carrying this peer's token.
    pub client: BrokerClient,
    pub inherited_messages: u64,
}

/// Why a peer call could not be made or failed.
#[derive(Debug)]
pub enum PeerError {
    /// Not registered, and registering failed for this reason.
    NotRegistered(String),
    /// The broker call failed (after one recovery attempt where that made sense).
    Client(ClientError),
    /// The broker no longer accepts this session's token and registering again failed.
    Lost(String),
}

pub struct Peer {
    pub config: Config,
    pub facts: Facts,
    anon: BrokerClient,
    reg: Mutex<Option<Arc<Registration>>>,
    /// The name held last, asked back on re-registration.
    last_name: Mutex<Option<String>>,
    summary: Mutex<String>,
    recovering: tokio::sync::Mutex<()>,
}

impl Peer {
    pub fn new(config: Config, facts: Facts) -> Peer {
        let anon = BrokerClient::with_failover(
            &config.broker_urls(),
            None,
            Timeouts {
                connect: Duration::from_secs(2),
                request: Duration::from_secs(15),
            },
        );
        // A session file left by an earlier server of this same Claude Code process (a
        // reconnect) names the name to ask back; one left by another process that had this
        // pid before does not.
        let last_name = facts.own_session_file(&config).map(|s| s.name);
        let summary = facts.initial_summary();
        Peer {
            config,
            facts,
            anon,
            reg: Mutex::new(None),
            last_name: Mutex::new(last_name),
            summary: Mutex::new(summary),
            recovering: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Option<Arc<Registration>> {
        self.reg.lock().unwrap().clone()
    }

    pub fn set_local_summary(&self, s: &str) {
        *self.summary.lock().unwrap() = s.to_string();
    }

    /// Makes sure a broker answers, starting the local one if needed (a hub is never started).
    async fn ensure_broker(&self) -> Result<(), String> {
        match local_broker::ensure_running(&self.config, &self.anon, BROKER_START_WAIT).await {
            Ok(Up::Already(_)) => Ok(()),
            Ok(Up::Started { health, bin }) => {
                tracing::info!(pid = health.pid, bin = %bin.display(), "started the local broker");
                Ok(())
            }
            Err(e @ StartError::NoBinary { .. }) => Err(format!(
                "{e}; install peers (`peers install`) or start the broker by hand"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Starts the local broker if needed, registers, and writes the session file.
    pub async fn register(&self) -> Result<Arc<Registration>, String> {
        self.ensure_broker().await?;
        let cred = self
            .config
            .user_credential()
            .map_err(|e| format!("cannot read the peers secret: {e}"))?;
        let f = &self.facts;
        let req = RegisterRequest {
            claude_pid: f.claude_pid,
            claude_start_time: f.claude_start_time,
            mcp_pid: f.mcp_pid,
            session_id: f.session_id.clone(),
            machine_id: f.machine_id.clone(),
            host: f.host.clone(),
            cwd: f.cwd.to_string_lossy().into_owned(),
            git_root: f
                .git_root
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            git_branch: f.git_branch.clone(),
            tty: f.tty.clone(),
            summary: Some(self.summary.lock().unwrap().clone()),
            previous_name: self.last_name.lock().unwrap().clone(),
            agent: f.agent,
        };
        let resp: RegisterResponse = self
            .anon
            .with_auth(cred)
            .register(&req)
            .await
            .map_err(|e| format!("registering with the peers broker failed: {e}"))?;
        let reg = Arc::new(Registration {
            client: self.anon.with_auth(Some(resp.token.clone())),
            peer_id: resp.peer_id.clone(),
            name: resp.name.clone(),
            address: resp.address.clone(),
            inherited_messages: resp.inherited_messages,
        });
        tracing::info!(
            name = %resp.name, peer_id = %resp.peer_id, inherited = resp.inherited_messages,
            "registered"
        );
        let file = SessionFile {
            peer_id: resp.peer_id,
            name: resp.name.clone(),
            address: resp.address,
            token: resp.token,
            broker_url: self.anon.base_url().to_string(),
            broker_urls: session::broker_list(self.anon.base_urls(), self.anon.base_url()),
            claude_pid: f.claude_pid,
            claude_start_time: f.claude_start_time,
            mcp_pid: f.mcp_pid,
            session_id: f.session_id.clone(),
            machine_id: f.machine_id.clone(),
            cwd: f.cwd.to_string_lossy().into_owned(),
            written_ms: peers_core::now_ms(),
            tool_prefix: f.tools.prefix().to_string(),
            agent: f.agent,
        };
        if let Err(e) = file.write(&self.config.state_dir) {
            tracing::warn!("cannot write the session file: {e}");
        }
        *self.last_name.lock().unwrap() = Some(resp.name);
        *self.reg.lock().unwrap() = Some(reg.clone());
        self.subscribe_configured(&reg).await;
        Ok(reg)
    }

    /// Subscribes to the topics of `config.toml`'s `topics` (keeping the `wake`/`mute` chosen
    /// since). A failure is logged, never fatal: the session works without them.
    async fn subscribe_configured(&self, reg: &Registration) {
        for topic in &self.config.topics {
            let req = peers_core::wire::SubscribeRequest {
                topic: topic.clone(),
                wake: None,
                mute: None,
            };
            if let Err(e) = reg.client.subscribe(&req).await {
                tracing::warn!("cannot subscribe to #{topic} (from config topics): {e}");
            }
        }
    }

    /// Registers again after `failed` stopped working (the broker restarted or forgot us),
    /// restarting a local broker first. Concurrent callers share one attempt.
    pub async fn recover(
        &self,
        failed: Option<&Arc<Registration>>,
    ) -> Result<Arc<Registration>, String> {
        let _guard = self.recovering.lock().await;
        if let Some(cur) = self.current()
            && failed.is_none_or(|f| !Arc::ptr_eq(f, &cur))
        {
            return Ok(cur);
        }
        if failed.is_some()
            && let Some(other) = self.superseded_by()
        {
            // Two servers for one Claude Code process must not take the registration from
            // each other in turn; the newer one (which wrote the session file) keeps it.
            return Err(format!(
                "another peers-mcp (pid {other}) now serves this Claude Code session"
            ));
        }
        tracing::warn!("re-registering with the broker");
        self.register().await
    }

    /// The pid of another live `peers-mcp` that wrote this session's file since.
    fn superseded_by(&self) -> Option<u32> {
        let f = self.facts.own_session_file(&self.config)?;
        (f.mcp_pid != self.facts.mcp_pid && process::pid_alive(f.mcp_pid)).then_some(f.mcp_pid)
    }

    /// Runs a call with this peer's client; when the broker was unreachable or no longer knows
    /// the token, recovers once and tries again.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, PeerError>
    where
        F: Fn(BrokerClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let reg = match self.current() {
            Some(r) => r,
            None => self.recover(None).await.map_err(PeerError::NotRegistered)?,
        };
        match f(reg.client.clone()).await {
            Ok(v) => Ok(v),
            Err(e) if needs_recovery(&e) => {
                tracing::warn!("broker call failed ({e}); recovering");
                let reg = self.recover(Some(&reg)).await.map_err(|reason| {
                    if e.is_unreachable() {
                        PeerError::Client(e)
                    } else {
                        PeerError::Lost(reason)
                    }
                })?;
                f(reg.client.clone()).await.map_err(PeerError::Client)
            }
            Err(e) => Err(PeerError::Client(e)),
        }
    }

    /// One heartbeat; re-registers (restarting a local broker) when needed. Returns the
    /// broker's answer when the heartbeat went through.
    pub async fn heartbeat(&self) -> Option<(Arc<Registration>, HeartbeatResponse)> {
        let Some(reg) = self.current() else {
            if let Err(e) = self.recover(None).await {
                tracing::warn!("still not registered: {e}");
            }
            return None;
        };
        match reg.client.heartbeat().await {
            Ok(hb) => return Some((reg, hb)),
            Err(e)
                if needs_recovery(&e)
                    || e.code() == Some(peers_core::wire::ErrorCode::NotFound) =>
            {
                tracing::warn!("heartbeat failed ({e}); recovering");
                if let Err(e) = self.recover(Some(&reg)).await {
                    tracing::warn!("recovery failed: {e}");
                }
            }
            Err(e) => tracing::warn!("heartbeat failed: {e}"),
        }
        None
    }

    /// Unregisters and removes the session file; bounded in time.
    pub async fn goodbye(&self) {
        let Some(reg) = self.reg.lock().unwrap().take() else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(3), reg.client.unregister()).await {
            Ok(Ok(r)) => tracing::info!(queued = r.queued, "unregistered"),
            Ok(Err(e)) => tracing::warn!("unregister failed: {e}"),
            Err(_) => tracing::warn!("unregister timed out"),
        }
        if let Err(e) =
            SessionFile::remove_if_ours(&self.config.state_dir, self.facts.claude_pid, &reg.peer_id)
        {
            tracing::warn!("cannot remove the session file: {e}");
        }
    }
}

fn needs_recovery(e: &ClientError) -> bool {
    e.is_unreachable()
        || e.status() == Some(401)
        || e.code() == Some(peers_core::wire::ErrorCode::Unauthorized)
}
