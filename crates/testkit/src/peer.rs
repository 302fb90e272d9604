//! Registering simulated sessions straight with the broker's API, as `peers-mcp` would: the
//! request a test session sends, and a registered [`Peer`] (its Claude Code stand-in, its
//! registration, a client with its token).

use std::fmt::Display;

use peers_core::BrokerClient;
use peers_core::wire::{AckRequest, ClaimRequest, RegisterRequest, RegisterResponse};

use crate::{ChildGuard, TestEnv, fake_claude};

/// The registration of a session on this machine: `claude_pid` is its Claude Code stand-in,
/// `mcp_pid` this test process, the machine id the one `env`'s broker uses, host `box`.
/// Change fields with struct-update syntax (`RegisterRequest { host: …, ..request(…) }`).
pub fn request(env: &TestEnv, claude_pid: u32, cwd: impl Display) -> RegisterRequest {
    RegisterRequest {
        claude_pid,
        mcp_pid: std::process::id(),
        machine_id: machine_id(env),
        host: "box".into(),
        cwd: cwd.to_string(),
        ..Default::default()
    }
}

/// The registration of a session on another machine (`machine_id`): no process of this
/// machine stands behind it, it stays alive by heartbeat only.
pub fn remote(machine_id: &str, claude_pid: u32, cwd: impl Display) -> RegisterRequest {
    RegisterRequest {
        claude_pid,
        mcp_pid: 1,
        machine_id: machine_id.into(),
        host: "remote".into(),
        cwd: cwd.to_string(),
        ..Default::default()
    }
}

/// The machine id of `env` (the broker started in it reads the same file).
pub fn machine_id(env: &TestEnv) -> String {
    peers_core::identity::machine_id(&env.state_dir).expect("the machine id of the test env")
}

/// Registers `req` with the per-user secret of `env`, panicking on an error.
pub async fn register(env: &TestEnv, req: &RegisterRequest) -> RegisterResponse {
    env.user_client().register(req).await.expect("register")
}

/// A registered session: its Claude Code stand-in, its registration, a client with its token.
pub struct Peer {
    pub claude: ChildGuard,
    pub reg: RegisterResponse,
    pub client: BrokerClient,
}

impl Peer {
    /// A new stand-in Claude Code process registered in `cwd` ([`request`]).
    pub async fn register(env: &TestEnv, cwd: impl Display) -> Peer {
        Self::register_as(env, fake_claude(), cwd).await
    }

    /// Registers the stand-in `claude` in `cwd` ([`request`]).
    pub async fn register_as(env: &TestEnv, claude: ChildGuard, cwd: impl Display) -> Peer {
        let req = request(env, claude.pid(), cwd);
        Self::register_with(env, claude, req).await
    }

    /// Registers `req` for the stand-in `claude`: its pid replaces `req.claude_pid`; an
    /// unset `mcp_pid`, `machine_id` or `host` is filled as in [`request`].
    pub async fn register_with(env: &TestEnv, claude: ChildGuard, req: RegisterRequest) -> Peer {
        let like = request(env, claude.pid(), &req.cwd);
        let req = RegisterRequest {
            claude_pid: like.claude_pid,
            mcp_pid: if req.mcp_pid == 0 {
                like.mcp_pid
            } else {
                req.mcp_pid
            },
            machine_id: if req.machine_id.is_empty() {
                like.machine_id
            } else {
                req.machine_id
            },
            host: if req.host.is_empty() {
                like.host
            } else {
                req.host
            },
            ..req
        };
        let reg = register(env, &req).await;
        let client = BrokerClient::new(&env.url(), Some(reg.token.clone()));
        Peer {
            claude,
            reg,
            client,
        }
    }

    pub fn claude_pid(&self) -> u32 {
        self.claude.pid()
    }
}

/// Claims and acks everything waiting for a peer (`via` an occasion, as its hook would);
/// returns how many messages that delivered.
pub async fn deliver_all(peer: &BrokerClient, via: &str) -> usize {
    let c = peer.claim(&ClaimRequest::default()).await.expect("claim");
    let n = c.messages.len();
    if let Some(lease_id) = c.lease_id {
        peer.ack(&AckRequest {
            lease_id,
            via: via.into(),
            message_ids: None,
        })
        .await
        .expect("ack");
    }
    n
}
