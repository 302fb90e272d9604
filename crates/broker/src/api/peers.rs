//! `/v1/peers/…`: register, heartbeat, summary, unregister, list and find; and the recipient
//! lookup every call that names a peer uses.

use axum::Json;
use axum::extract::State;
use peers_core::now_ms;
use peers_core::wire::*;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use peers_store::{NewRegistration, PeerRecord};

use crate::{AppState, SharedState, input};

pub async fn register(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<RegisterResponse> {
    caller.require_user()?;
    let req = input::registration(req);
    if req.cwd.is_empty() || req.machine_id.is_empty() || req.host.is_empty() {
        return Err(ApiError::bad_request(
            "register needs non-empty machine_id, host and cwd",
        ));
    }
    let peer_id = peers_core::paths::random_hex(6);
    let token = auth::new_token(&peer_id);
    let hash = auth::token_hash(&token);
    let now = now_ms();
    let reg = state
        .store
        .register(NewRegistration {
            request: req,
            peer_id,
            token_hash: hash,
            now,
        })
        .await?;
    state.directory.changed();
    for old in reg.replaced.iter().chain(&reg.ended) {
        state.uncache_peer(old);
    }
    let peer = reg.peer.clone();
    state.cache_peer(peer.clone());
    // Handovers left for this name before it registered, and mail sent to the name while no
    // session of it ran (on any machine), are this session's now.
    let handed = state.store.take_handovers(&peer.id).await?;
    if reg.inherited_messages > 0 || handed > 0 {
        state.mailmarks.mail_committed(&peer.id, &peer.machine_id);
        state.waiters.wake(&peer.id);
    }
    tracing::info!(peer = %peer.id, name = %peer.name, replaced = ?reg.replaced, "registered");
    state.publish_peers(PeerChange::Registered, vec![peer.id.clone()]);
    Ok(Json(RegisterResponse {
        address: peer.address(),
        peer_id: peer.id,
        name: peer.name,
        token,
        inherited_messages: reg.inherited_messages,
    }))
}

pub async fn heartbeat(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(_): ApiJson<serde_json::Value>,
) -> ApiResult<HeartbeatResponse> {
    let me = caller.require_peer()?.clone();
    let now = now_ms();
    // A local peer whose Claude Code process ended stays gone, whatever its MCP server says.
    let may_revive = me.machine_id != state.settings.machine_id || me.process_alive();
    let row = state
        .store
        .heartbeat(&me.id, now, may_revive)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "this registration was replaced, unregistered, or its session ended; register again",
            )
        })?;
    state.directory.changed();
    if row.name != me.name || me.gone_ms.is_some() {
        state.cache_peer(row.clone());
        state.publish_peers(PeerChange::Revived, vec![row.id.clone()]);
    }
    let (queued, oldest) = state.store.queued_count(&row.id).await?;
    Ok(Json(HeartbeatResponse {
        peer_id: row.id,
        name: row.name,
        queued,
        oldest_queued_ms: oldest,
    }))
}

pub async fn set_summary(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<SummaryRequest>,
) -> ApiResult<Done> {
    let me = caller.require_peer()?.clone();
    let summary: String = input::one_line(&req.summary).chars().take(500).collect();
    state.store.set_summary(&me.id, &summary).await?;
    state.publish_peers(PeerChange::Summary, vec![me.id.clone()]);
    Ok(Json(Done { ok: true }))
}

pub async fn unregister(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(_): ApiJson<serde_json::Value>,
) -> ApiResult<UnregisterResponse> {
    let me = caller.require_peer()?.clone();
    state.store.unregister(&me.id, now_ms()).await?;
    state.directory.changed();
    state.uncache_peer(&me.id);
    state.waiters.wake(&me.id);
    let (queued, _) = state.store.queued_count(&me.id).await?;
    tracing::info!(peer = %me.id, name = %me.name, queued, "unregistered");
    state.publish_peers(PeerChange::Unregistered, vec![me.id.clone()]);
    Ok(Json(UnregisterResponse {
        peer_id: me.id.clone(),
        queued,
    }))
}

pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListPeersQuery>,
) -> ApiResult<PeerList> {
    let rows = if q.include_gone {
        state.store.unreplaced_peers().await?
    } else {
        state.store.live_peers().await?
    };
    let counts = state.store.pending_counts().await?;
    let me = caller.peer().cloned();
    let place = Place {
        machine_id: me.as_ref().map(|p| p.machine_id.clone()).or(q.machine_id),
        cwd: me.as_ref().map(|p| p.cwd.clone()).or(q.cwd),
        git_root: me.as_ref().and_then(|p| p.git_root.clone()).or(q.git_root),
    };
    let peers = rows
        .into_iter()
        .filter(|r| me.as_ref().is_none_or(|m| m.id != r.id))
        .filter(|r| place.holds(q.scope, r))
        .map(|r| {
            let n = counts.get(&r.id).copied().unwrap_or(0);
            r.info(n)
        })
        .collect();
    Ok(Json(PeerList { peers }))
}

/// Where a scope is measured from: a peer's machine, directory and repository, or those the
/// human named. An unknown part does not narrow the scope.
#[derive(Debug, Clone, Default)]
pub struct Place {
    pub machine_id: Option<String>,
    pub cwd: Option<String>,
    pub git_root: Option<String>,
}

impl Place {
    pub fn of(p: &PeerRecord) -> Place {
        Place {
            machine_id: Some(p.machine_id.clone()),
            cwd: Some(p.cwd.clone()),
            git_root: p.git_root.clone(),
        }
    }

    /// Whether `r` is within `scope` of this place (`repo` without a repository is the
    /// directory).
    pub fn holds(&self, scope: Scope, r: &PeerRecord) -> bool {
        let dir = || self.cwd.as_deref().is_none_or(|d| r.cwd == d);
        match scope {
            Scope::All => true,
            Scope::Machine => self.machine_id.as_deref().is_none_or(|m| r.machine_id == m),
            Scope::Directory => dir(),
            Scope::Repo => match self.git_root.as_deref() {
                Some(g) => r.git_root.as_deref() == Some(g),
                None => dir(),
            },
        }
    }
}

pub async fn find(
    State(state): State<SharedState>,
    _caller: Caller,
    ApiPath(who): ApiPath<String>,
) -> ApiResult<PeerInfo> {
    let row = resolve_or_404(&state, &who).await?;
    let n = state.store.pending_count(&row.id).await?;
    Ok(Json(row.info(n)))
}

/// Finds a recipient or answers 404 naming the peers that do exist.
pub async fn resolve_or_404(state: &AppState, who: &str) -> Result<PeerRecord, ApiError> {
    input::no_nul("peer", who)?;
    let name = who.trim().rsplit_once('@').map_or(who.trim(), |(n, _)| n);
    if peers_core::identity::is_reserved_name(name) {
        return Err(ApiError::unknown_peer(format!(
            "{who:?} is a reserved name, not a session (`you` is the human, who reads mail \
             with `peers log`); name a peer, name@host or id"
        )));
    }
    if let Some(row) = state.directory.get(who) {
        return Ok(row);
    }
    let generation = state.directory.generation();
    if let Some(row) = state.store.resolve(who).await? {
        state.directory.put(who, generation, row.clone());
        return Ok(row);
    }
    let live = state.store.live_peers().await?;
    let names: Vec<String> = live.iter().map(PeerRecord::address).collect();
    let hint = if names.is_empty() {
        "no peers are registered right now".to_string()
    } else {
        format!("known peers: {}", names.join(", "))
    };
    Err(ApiError::unknown_peer(format!(
        "no peer named {who:?}; {hint}"
    )))
}
