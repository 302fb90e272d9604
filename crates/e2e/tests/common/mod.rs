//! Glue between the harness and the test kit: a broker in a throw-away environment, and
//! Claude Code sessions configured exactly as `peers install` configures them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use peers_core::BrokerClient;
use peers_core::claude_settings;
use peers_core::session::SessionFile;
use peers_core::wire::{
    ClaimRequest, InboxMessage, ListPeersQuery, MessageStatus, NoticeList, PeerInfo,
    RegisterRequest, Scope, SendRequest, SendResponse,
};
use peers_testkit::claude::{FakeApi, SessionSpec, claude_or_skip};
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv};

/// The peers tools and Bash, for `--allowedTools`.
pub const TOOLS: &[&str] = &[
    "Bash",
    "mcp__peers__whoami",
    "mcp__peers__list_peers",
    "mcp__peers__send_message",
    "mcp__peers__message_status",
    "mcp__peers__set_summary",
    "mcp__peers__check_messages",
    "mcp__peers__subscribe",
    "mcp__peers__unsubscribe",
    "mcp__peers__list_topics",
    "mcp__peers__read_topic",
    "mcp__peers__handover",
    "mcp__peers__read_thread",
    "mcp__peers__search_messages",
];

/// The peers tools as a user-scope MCP server `peers` names them (what `peers install`
/// puts into `permissions.allow`).
pub fn peers_tools() -> Vec<String> {
    claude_settings::allowed_tools(claude_settings::MCP_TOOL_PREFIX)
}

/// A peer the test registers itself, with a stand-in process as its Claude Code pid: a sender
/// or recipient without a model. Its client uses the peer token.
pub struct StandIn {
    pub claude: ChildGuard,
    pub name: String,
    pub address: String,
    pub client: BrokerClient,
}

/// Generous bounds: the runs are usually a few seconds; these only stop a hang.
pub const RUN: Duration = Duration::from_secs(180);
pub const WAIT: Duration = Duration::from_secs(90);

/// One scenario's world: a temp environment, its broker, the built binaries, the claude CLI.
pub struct World {
    pub name: String,
    pub env: TestEnv,
    pub claude: PathBuf,
    pub rt: tokio::runtime::Runtime,
    pub broker: Option<BrokerProcess>,
    pub deliver: PathBuf,
    pub mcp: PathBuf,
}

impl World {
    /// `None` (after a loud SKIPPED line) when there is no Claude Code CLI. `vars` are set for
    /// every process (broker, claude, its hooks and MCP server).
    pub fn new(name: &str, vars: &[(&str, &str)]) -> Option<World> {
        let claude = claude_or_skip(name)?;
        let mut env = TestEnv::new();
        for (k, v) in vars {
            env.set(k, *v);
        }
        if std::env::var_os("E2E_KEEP").is_some() {
            // Kept runs also keep the hook's own debug log.
            let log = env.dir.path().join("deliver-debug.log");
            env.set("PEERS_DELIVER_DEBUG", log.display().to_string());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let deliver = peers_testkit::bin("peers-deliver");
        let mcp = peers_testkit::bin("peers-mcp");
        peers_testkit::bin("peers-broker");
        let broker = rt.block_on(BrokerProcess::start(&env));
        eprintln!("[{name}] environment in {}", env.dir.path().display());
        Some(World {
            name: name.to_string(),
            env,
            claude,
            rt,
            broker: Some(broker),
            deliver,
            mcp,
        })
    }

    /// A project directory named `name` (the peer's name comes from it).
    pub fn project(&self, name: &str) -> PathBuf {
        let p = self.env.dir.path().join("work").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A session in project `project`, labelled `label`, talking to `api`, with the peers
    /// hooks and MCP server as `peers install` writes them.
    pub fn spec(&self, label: &str, project: &str, api: &FakeApi) -> SessionSpec {
        let mut s = SessionSpec::new(
            label,
            &self.claude,
            &self.project(project),
            &self.env.dir.path().join("sessions").join(label),
            &api.url(),
        );
        s.settings = Some(claude_settings::settings(&self.deliver));
        s.mcp_config = Some(claude_settings::mcp_config(&self.mcp));
        s.allowed_tools = TOOLS.iter().map(|t| t.to_string()).collect();
        s.env = self.env.vars();
        s
    }

    /// A session as `peers install` sets it up, minus the `--allowedTools` flag: whether the
    /// peers tools run without a prompt is up to the settings file (`permissions.allow`).
    pub fn unattended_spec(&self, label: &str, project: &str, api: &FakeApi) -> SessionSpec {
        let mut s = self.spec(label, project, api);
        s.allowed_tools = vec![];
        s
    }

    /// A session that loads the repository's plugin (`--plugin-dir`): its plugin files copied
    /// into a directory whose `bin/` links the built binaries, nothing else configured.
    /// `allowed` goes to `--allowedTools`.
    pub fn plugin_spec(
        &self,
        label: &str,
        project: &str,
        api: &FakeApi,
        allowed: &[&str],
    ) -> SessionSpec {
        let plugin = self.env.dir.path().join("plugin");
        if !plugin.exists() {
            peers_testkit::plugin::lay_out(&plugin);
        }
        let mut s = self.spec(label, project, api);
        s.settings = None;
        s.mcp_config = None;
        s.allowed_tools = allowed.iter().map(|t| t.to_string()).collect();
        s.args = vec!["--plugin-dir".into(), plugin.display().to_string()];
        s
    }

    /// Registers a stand-in peer in project `project` (its name comes from it).
    pub fn stand_in(&self, project: &str) -> StandIn {
        let claude = peers_testkit::fake_claude();
        let machine_id = peers_core::identity::machine_id(&self.env.state_dir).unwrap();
        let r = self
            .rt
            .block_on(self.user().register(&RegisterRequest {
                claude_pid: claude.pid(),
                mcp_pid: std::process::id(),
                session_id: None,
                machine_id,
                host: "e2e".into(),
                cwd: self.project(project).display().to_string(),
                ..Default::default()
            }))
            .unwrap_or_else(|e| panic!("[{}] register {project}: {e}", self.name));
        StandIn {
            claude,
            name: r.name,
            address: r.address,
            client: BrokerClient::new(&self.env.url(), Some(r.token)),
        }
    }

    /// Claims (and acks) whatever mail waits for `who`.
    pub fn take_mail(&self, who: &StandIn) -> Vec<InboxMessage> {
        self.rt.block_on(async {
            let r = who
                .client
                .claim(&ClaimRequest {
                    max: Some(50),
                    lease_ms: Some(30_000),
                    automatic: false,
                })
                .await
                .unwrap_or_else(|e| panic!("claim for {}: {e}", who.name));
            if let Some(lease_id) = r.lease_id.clone() {
                who.client
                    .ack(&peers_core::wire::AckRequest {
                        lease_id,
                        via: "test".into(),
                        message_ids: None,
                    })
                    .await
                    .unwrap();
            }
            r.messages
        })
    }

    /// Sends `message` from `who` to `to`.
    pub fn send_from(&self, who: &StandIn, to: &str, message: &str) -> (SendResponse, Instant) {
        let t0 = Instant::now();
        let r = self
            .rt
            .block_on(who.client.send(&SendRequest {
                tags: vec![],
                to: to.into(),
                message: message.into(),
                reply_to: None,
                scope: None,
            }))
            .unwrap_or_else(|e| panic!("[{}] send {} -> {to}: {e}", self.name, who.name));
        (r, t0)
    }

    /// Waits until the session of `claude_pid` has its session file (peers-mcp registered).
    pub fn wait_session_file(&self, claude_pid: u32, timeout: Duration) -> SessionFile {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(f)) = SessionFile::read(&self.env.state_dir, claude_pid) {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] no session file for claude pid {claude_pid} after {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn user(&self) -> peers_core::BrokerClient {
        self.env.user_client()
    }

    /// Sends as the human; returns the response and the moment just before sending.
    pub fn send_as_user(&self, to: &str, message: &str) -> (SendResponse, Instant) {
        let t0 = Instant::now();
        let r = self
            .rt
            .block_on(self.user().send(&SendRequest {
                tags: vec![],
                to: to.into(),
                message: message.into(),
                reply_to: None,
                scope: None,
            }))
            .unwrap_or_else(|e| panic!("[{}] send to {to} failed: {e}", self.name));
        (r, t0)
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        self.rt
            .block_on(self.user().list_peers(&ListPeersQuery {
                scope: Scope::All,
                include_gone: true,
                ..Default::default()
            }))
            .map(|l| l.peers)
            .unwrap_or_default()
    }

    /// Waits until a peer named `name` is registered and alive (or gone, for `alive=false`).
    pub fn wait_peer(&self, name: &str, alive: bool, timeout: Duration) -> PeerInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let peers = self.peers();
            if let Some(p) = peers
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name) && p.alive == alive)
            {
                return p.clone();
            }
            assert!(
                Instant::now() < deadline,
                "[{}] no peer {name} with alive={alive} after {timeout:?}; peers: {peers:#?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn status(&self, id: i64) -> MessageStatus {
        self.rt
            .block_on(self.user().message_status(id))
            .unwrap_or_else(|e| panic!("[{}] status of {id}: {e}", self.name))
    }

    pub fn notices(&self) -> NoticeList {
        self.rt
            .block_on(self.user().notices())
            .unwrap_or_else(|e| panic!("[{}] notices: {e}", self.name))
    }

    pub fn healthy(&self) -> bool {
        self.rt
            .block_on(peers_core::BrokerClient::new(&self.env.url(), None).health())
            .is_ok()
    }

    /// Kills the broker as a crash would.
    pub fn kill_broker(&mut self) {
        if let Some(mut b) = self.broker.take() {
            b.kill9();
        }
        self.kill_stray_broker();
    }

    /// Starts the broker again on the same state dir and port (unless one already answers,
    /// e.g. restarted by a session's peers-mcp). Returns whether this call started it.
    pub fn restart_broker(&mut self) -> bool {
        if self.healthy() {
            return false;
        }
        let b = self.rt.block_on(BrokerProcess::start(&self.env));
        self.broker = Some(b);
        true
    }

    /// A broker on our port that is not our child (peers-mcp starts one detached when it
    /// finds none): ask it to stop, then kill it.
    fn kill_stray_broker(&self) {
        let health = self
            .rt
            .block_on(peers_core::BrokerClient::new(&self.env.url(), None).health());
        if let Ok(h) = health {
            let ours = self.broker.as_ref().map(|b| b.pid());
            if Some(h.pid) != ours && h.pid > 1 {
                let _ = self.rt.block_on(self.user().shutdown());
                std::thread::sleep(Duration::from_millis(300));
                // SAFETY: the broker process on this test's private port.
                unsafe { libc::kill(h.pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }

    /// The hook must never make its errors visible to the model.
    pub fn assert_no_hook_errors(&self, api: &FakeApi) {
        for r in api.main_requests() {
            let t = peers_testkit::claude::shown::messages_text(&r.body);
            for bad in [
                "hook error",
                "Hook error",
                "hook failed",
                "non-blocking status code",
            ] {
                assert!(
                    !t.contains(bad),
                    "[{}] the model was shown a hook error ({bad:?}) in request #{}:\n{}",
                    api.label(),
                    r.seq,
                    peers_testkit::claude::shown::truncate(&t, 4000)
                );
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::env::var_os("E2E_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.env.dir, tempfile::tempdir().unwrap());
            eprintln!("[{}] E2E_KEEP: left {}", self.name, kept.keep().display());
        }
        self.kill_stray_broker();
        if let Some(mut b) = self.broker.take()
            && !b.terminate()
        {
            b.kill9();
        }
    }
}
