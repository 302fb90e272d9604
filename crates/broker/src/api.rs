//! The HTTP API under `/v1`. Each handler reads like the call it serves; `docs/PROTOCOL.md`
//! has an example of each.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use peers_core::now_ms;
use peers_core::wire::*;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::input;
use crate::store::{NewMessage, PeerRow, Sender, messages, peers};

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    // The raw body may be larger than the message it carries (JSON escapes); the message
    // itself is checked against `max_message_bytes` with a clear error.
    let body_limit = state.settings.max_message_bytes * 2 + 16 * 1024;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/peers/register", post(register))
        .route("/v1/peers/heartbeat", post(heartbeat))
        .route("/v1/peers/summary", post(set_summary))
        .route("/v1/peers/unregister", post(unregister))
        .route("/v1/peers", get(list_peers))
        .route("/v1/peers/{who}", get(find_peer))
        .route("/v1/messages", post(send).get(message_log))
        .route("/v1/messages/{id}", get(message_status))
        .route("/v1/inbox", get(peek))
        .route("/v1/inbox/claim", post(claim))
        .route("/v1/inbox/ack", post(ack))
        .route("/v1/inbox/history", get(history))
        .route("/v1/inbox/wait", get(wait))
        .route("/v1/notices", get(notices).post(add_notice))
        .route("/v1/shutdown", post(shutdown))
        .fallback(|| async {
            ApiError::not_found("no such API call; see docs/PROTOCOL.md for the /v1 calls")
        })
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .layer(middleware::from_fn(require_json_posts))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_while_storage_lost,
        ))
        .layer(middleware::from_fn(refuse_head))
        // Outermost: a request for another host name is refused before anything else.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_own_host,
        ))
        .with_state(state)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this path does not take that method; see docs/PROTOCOL.md",
    )
}

/// Refuses a `Host` header that names neither loopback, the bind address nor a configured
/// `allowed_hosts` name: a page whose DNS name was rebound to 127.0.0.1 sends its own name.
async fn require_own_host(State(s): St, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if host_allowed(h, s.settings.bind, &s.settings.allowed_hosts) => {
            next.run(req).await
        }
        _ => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::BadHost,
            "this broker answers only to loopback (127.0.0.1, localhost, [::1]), its bind \
             address and the names in `allowed_hosts` (config.toml or PEERS_ALLOWED_HOSTS); \
             the Host header of this request names none of them",
        )
        .into_response(),
    }
}

/// Whether a `Host` header value (`name[:port]`, `[v6][:port]`) names this broker: loopback,
/// `localhost`, the bind address (any address when bound to all of them: an IP literal is
/// never the result of DNS rebinding), or one of `allowed`.
pub fn host_allowed(host: &str, bind: std::net::IpAddr, allowed: &[String]) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || tail.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || (name.contains(':') && !host.starts_with('[')) {
        return false;
    }
    if name == "localhost" {
        return true;
    }
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return ip.to_canonical().is_loopback() || ip == bind || bind.is_unspecified();
    }
    allowed.iter().any(|a| a.trim_end_matches('.') == name)
}

/// HEAD is no method of this API (axum would answer it for every GET route, body-less).
async fn refuse_head(req: Request, next: Next) -> Response {
    if req.method() == Method::HEAD {
        return method_not_allowed().into_response();
    }
    next.run(req).await
}

/// Once the database file is gone, every call but health, notices and shutdown is refused
/// with 503 `storage_lost`: nothing may claim success into a file nobody can open again.
async fn refuse_while_storage_lost(State(s): St, req: Request, next: Next) -> Response {
    let exempt = match req.uri().path() {
        "/v1/health" | "/v1/shutdown" => true,
        "/v1/notices" => req.method() == Method::GET,
        _ => false,
    };
    if !exempt && s.store.health().is_lost() {
        let db = s.store.health().db().to_path_buf();
        return ApiError::from(crate::store::StoreError::Lost(db)).into_response();
    }
    next.run(req).await
}

/// Refuses POSTs that are not `application/json`: a web page can send a `text/plain` or form
/// POST to loopback without a preflight, but not a JSON one.
async fn require_json_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !json {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "POST bodies must be JSON with `Content-Type: application/json`",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// `Json<T>` with the API's error format for bad bodies.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::too_large(
                    "request body too large; messages are limited to max_message_bytes \
                     (64 KiB by default): send a shorter message or a file path instead",
                ))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "POST bodies must be JSON with `Content-Type: application/json`",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "malformed JSON body: {}",
                e.body_text()
            ))),
        }
    }
}

/// `Query<T>` with the API's error format.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
    }
}

/// `Path<T>` with the API's error format.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}

async fn health(State(s): St) -> ApiResult<Health> {
    // With the database file gone the broker still answers (so no client starts a second
    // one), but not `ok`, and counts only if the old file can still be read.
    let lost = s.store.health().is_lost();
    let count = |r: Result<u64, crate::store::StoreError>| match r {
        Err(_) if lost => Ok(0),
        r => r,
    };
    Ok(Json(Health {
        ok: !lost,
        version: peers_core::VERSION.to_string(),
        uptime_ms: s.started.elapsed().as_millis() as u64,
        pid: std::process::id(),
        machine_id: s.settings.machine_id.clone(),
        host: s.settings.host.clone(),
        peers_alive: count(peers::count_live(s.store.reader()).await)?,
        queued: count(messages::count_waiting(s.store.reader()).await)?,
    }))
}

async fn register(
    State(s): St,
    caller: Caller,
    Body(req): Body<RegisterRequest>,
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
    let reg = s
        .store
        .write(move |c| Box::pin(peers::register(c, req, peer_id, hash, now)))
        .await?;
    s.directory.changed();
    for old in reg.replaced.iter().chain(&reg.ended) {
        s.uncache_peer(old);
    }
    let peer = reg.peer.clone();
    s.cache_peer(peer.clone());
    if reg.inherited_messages > 0 {
        s.waiters.wake(&peer.id);
    }
    tracing::info!(peer = %peer.id, name = %peer.name, replaced = ?reg.replaced, "registered");
    Ok(Json(RegisterResponse {
        address: peer.address(),
        peer_id: peer.id,
        name: peer.name,
        token,
        inherited_messages: reg.inherited_messages,
    }))
}

async fn heartbeat(
    State(s): St,
    caller: Caller,
    Body(_): Body<serde_json::Value>,
) -> ApiResult<HeartbeatResponse> {
    let me = caller.require_peer()?.clone();
    let now = now_ms();
    let id = me.id.clone();
    // A local peer whose Claude Code process ended stays gone, whatever its MCP server says.
    let may_revive = me.machine_id != s.settings.machine_id || me.process_alive();
    let row = s
        .store
        .write(move |c| Box::pin(async move { peers::heartbeat(c, &id, now, may_revive).await }))
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "this registration was replaced, unregistered, or its session ended; register again",
            )
        })?;
    s.directory.changed();
    if row.name != me.name || me.gone_ms.is_some() {
        s.cache_peer(row.clone());
    }
    let (queued, oldest) = messages::waiting_count(s.store.reader(), &row.id).await?;
    Ok(Json(HeartbeatResponse {
        peer_id: row.id,
        name: row.name,
        queued,
        oldest_queued_ms: oldest,
    }))
}

async fn set_summary(
    State(s): St,
    caller: Caller,
    Body(req): Body<SummaryRequest>,
) -> ApiResult<Ok> {
    let me = caller.require_peer()?.clone();
    let summary: String = input::one_line(&req.summary).chars().take(500).collect();
    let id = me.id.clone();
    s.store
        .write(move |c| Box::pin(async move { peers::set_summary(c, &id, &summary).await }))
        .await?;
    Ok(Json(Ok { ok: true }))
}

async fn unregister(
    State(s): St,
    caller: Caller,
    Body(_): Body<serde_json::Value>,
) -> ApiResult<UnregisterResponse> {
    let me = caller.require_peer()?.clone();
    let id = me.id.clone();
    let now = now_ms();
    s.store
        .write(move |c| Box::pin(async move { peers::unregister(c, &id, now).await }))
        .await?;
    s.directory.changed();
    s.uncache_peer(&me.id);
    s.waiters.wake(&me.id);
    let (queued, _) = messages::waiting_count(s.store.reader(), &me.id).await?;
    tracing::info!(peer = %me.id, name = %me.name, queued, "unregistered");
    Ok(Json(UnregisterResponse {
        peer_id: me.id.clone(),
        queued,
    }))
}

async fn list_peers(State(s): St, caller: Caller, Q(q): Q<ListPeersQuery>) -> ApiResult<PeerList> {
    let rows = if q.include_gone {
        peers::live_and_gone(s.store.reader()).await?
    } else {
        peers::live(s.store.reader()).await?
    };
    let counts = peers::waiting_counts(s.store.reader()).await?;
    let me = caller.peer().cloned();
    let machine = me.as_ref().map(|p| p.machine_id.clone()).or(q.machine_id);
    let cwd = me.as_ref().map(|p| p.cwd.clone()).or(q.cwd);
    let repo = me.as_ref().and_then(|p| p.git_root.clone()).or(q.git_root);
    let peers = rows
        .into_iter()
        .filter(|r| me.as_ref().is_none_or(|m| m.id != r.id))
        .filter(|r| match q.scope {
            Scope::All => true,
            Scope::Machine => machine.as_deref().is_none_or(|m| r.machine_id == m),
            Scope::Directory => cwd.as_deref().is_none_or(|d| r.cwd == d),
            Scope::Repo => match repo.as_deref() {
                Some(g) => r.git_root.as_deref() == Some(g),
                None => cwd.as_deref().is_none_or(|d| r.cwd == d),
            },
        })
        .map(|r| {
            let n = counts.get(&r.id).copied().unwrap_or(0);
            r.info(n)
        })
        .collect();
    Ok(Json(PeerList { peers }))
}

async fn find_peer(State(s): St, _caller: Caller, P(who): P<String>) -> ApiResult<PeerInfo> {
    let row = resolve_or_404(&s, &who).await?;
    let n = messages::pending_count(s.store.reader(), &row.id).await?;
    Ok(Json(row.info(n)))
}

/// Finds a recipient or answers 404 naming the peers that do exist.
async fn resolve_or_404(s: &AppState, who: &str) -> Result<PeerRow, ApiError> {
    let name = who.trim().rsplit_once('@').map_or(who.trim(), |(n, _)| n);
    if input::is_reserved_name(name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownPeer,
            format!(
                "{who:?} is a reserved name, not a session (`you` is the human, who reads \
                 mail with `peers log`); name a peer, name@host or id"
            ),
        ));
    }
    if let Some(row) = s.directory.get(who) {
        return Ok(row);
    }
    let generation = s.directory.generation();
    if let Some(row) = peers::resolve(s.store.reader(), who).await? {
        s.directory.put(who, generation, row.clone());
        return Ok(row);
    }
    let live = peers::live(s.store.reader()).await?;
    let names: Vec<String> = live.iter().map(PeerRow::address).collect();
    let hint = if names.is_empty() {
        "no peers are registered right now".to_string()
    } else {
        format!("known peers: {}", names.join(", "))
    };
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownPeer,
        format!("no peer named {who:?}; {hint}"),
    ))
}

async fn send(
    State(s): St,
    caller: Caller,
    Body(req): Body<SendRequest>,
) -> ApiResult<SendResponse> {
    let max = s.settings.max_message_bytes;
    if req.message.len() > max {
        return Err(ApiError::too_large(format!(
            "message is {} bytes; the limit is {max} bytes: send a shorter message, or write \
             the details to a file and send its path",
            req.message.len()
        )));
    }
    if req.message.trim().is_empty() {
        return Err(ApiError::bad_request("message is empty"));
    }
    if req.to.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`to` is empty: name a peer, name@host or id",
        ));
    }
    if let Some(r) = req.reply_to
        && !messages::exists(s.store.reader(), r).await?
    {
        return Err(ApiError::bad_request(format!(
            "reply_to names message {r}, which does not exist; use the message id you were shown"
        )));
    }
    let to = resolve_or_404(&s, &req.to).await?;
    let from = match &caller {
        Caller::Peer(p) => Sender {
            kind: SenderKind::Peer,
            peer_id: Some(p.id.clone()),
            address: p.address(),
            cwd: Some(p.cwd.clone()),
        },
        Caller::User => Sender {
            kind: SenderKind::Human,
            peer_id: None,
            address: format!("you@{}", s.settings.host),
            cwd: None,
        },
    };
    let now = now_ms();
    let msg = NewMessage {
        from,
        to_peer: to.id.clone(),
        to_address: to.address(),
        body: req.message,
        reply_to: req.reply_to,
        sent_ms: now,
        expires_ms: now.saturating_add(s.settings.message_ttl_ms),
    };
    let (id, to_peer) = s.store.insert_message(msg).await?;
    // Asked before the wake: the waiter that this send ends is the one that counts.
    let can_wake = to.alive() && s.waiters.can_wake(&to_peer);
    s.waiters.wake(&to_peer);
    Ok(Json(SendResponse {
        message_id: id,
        to: to.address(),
        to_peer_id: to_peer,
        status: MessageState::Queued,
        recipient_alive: to.alive(),
        recipient_last_seen_ms: to.last_seen_ms,
        recipient_can_wake: can_wake,
    }))
}

async fn message_status(
    State(s): St,
    caller: Caller,
    P(id): P<i64>,
    Q(q): Q<MessageStatusQuery>,
) -> ApiResult<MessageStatus> {
    let not_found = || ApiError::not_found(format!("no message {id}"));
    // Whoever may see the status may read the body: the human, the sender, the recipient.
    let (mut status, from_peer) = messages::status(s.store.reader(), id, q.body)
        .await?
        .ok_or_else(not_found)?;
    status.recipient_can_wake = status.recipient_alive && s.waiters.can_wake(&status.to_peer_id);
    if let Caller::Peer(me) = &caller {
        let mine = messages::lineage(s.store.reader(), &me.id).await?;
        let involved = from_peer.as_ref().is_some_and(|f| mine.contains(f))
            || mine.contains(&status.to_peer_id);
        if !involved {
            // Do not reveal whether other peers' messages exist.
            return Err(not_found());
        }
    }
    Ok(Json(status))
}

async fn message_log(State(s): St, caller: Caller, Q(q): Q<HistoryQuery>) -> ApiResult<MessageLog> {
    caller.require_user()?;
    let from = match q.from.as_deref() {
        None => None,
        Some("you") | Some("human") => Some(None),
        Some(who) => Some(Some(ids_named(&s, who).await?)),
    };
    let to = match q.to.as_deref() {
        None => None,
        Some(who) => Some(ids_named(&s, who).await?),
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let mut messages = messages::log(
        s.store.reader(),
        from,
        to,
        q.since_ms.unwrap_or(0),
        limit,
        q.body,
    )
    .await?;
    for m in &mut messages {
        m.recipient_can_wake = m.recipient_alive && s.waiters.can_wake(&m.to_peer_id);
    }
    Ok(Json(MessageLog { messages }))
}

/// Every registration of the peer `who` names (it and those it replaced).
async fn ids_named(s: &AppState, who: &str) -> Result<Vec<String>, ApiError> {
    let row = resolve_or_404(s, who).await?;
    Ok(messages::lineage(s.store.reader(), &row.id).await?)
}

async fn claim(
    State(s): St,
    caller: Caller,
    Body(req): Body<ClaimRequest>,
) -> ApiResult<ClaimResponse> {
    let me = caller.require_peer()?.clone();
    let now = now_ms();
    // Most claims (one per tool call) find nothing: answer those from the read pool. Mail
    // committed after this check is simply claimed at the next event.
    if !messages::claimable(s.store.reader(), &me.id, now).await? {
        return Ok(Json(ClaimResponse {
            lease_id: None,
            lease_expires_ms: 0,
            messages: vec![],
            budget_exhausted: false,
        }));
    }
    let lease_ms = req
        .lease_ms
        .unwrap_or(s.settings.lease_ms)
        .clamp(100, 600_000);
    let lease_expires = now + lease_ms as i64;
    let lease_id = peers_core::paths::random_hex(16);
    let max = req.max.unwrap_or(50).clamp(1, 1000);
    let budget = req.automatic.then(|| {
        (
            me.machine_id.clone(),
            me.claude_pid,
            s.settings.loop_budget,
            s.settings.loop_window_ms,
        )
    });
    let (id, lid, name) = (me.id.clone(), lease_id.clone(), me.address());
    let window_min = s.settings.loop_window_ms / 60_000;
    let out = s
        .store
        .write_volatile(move |c| {
            Box::pin(async move {
                let auto = budget.as_ref().map(|(m, p, b, w)| (m.as_str(), *p, *b, *w));
                let out = messages::claim(c, &id, &lid, max, now, lease_expires, auto).await?;
                if out.budget_notice {
                    let (_, _, b, _) = budget.as_ref().expect("notice only for automatic claims");
                    let text = format!(
                        "{name} used its loop budget ({b} automatic turns in {window_min} min); \
                         its mail waits for the next prompt. Look with `peers inbox`."
                    );
                    messages::add_notice(
                        c,
                        "loop_budget",
                        Some(&id),
                        &text,
                        input::BROKER_AUTHOR,
                        now,
                    )
                    .await?;
                }
                Ok(out)
            })
        })
        .await?;
    if out.budget_notice {
        tracing::warn!(peer = %me.id, name = %me.name, "loop budget exhausted");
    }
    let has = !out.messages.is_empty();
    Ok(Json(ClaimResponse {
        lease_id: has.then_some(lease_id),
        lease_expires_ms: if has { lease_expires } else { 0 },
        messages: out.messages,
        budget_exhausted: out.budget_exhausted,
    }))
}

async fn ack(State(s): St, caller: Caller, Body(req): Body<AckRequest>) -> ApiResult<AckResponse> {
    let me = caller.require_peer()?.clone();
    if req.via.trim().is_empty() || req.via.len() > 64 {
        return Err(ApiError::bad_request(
            "`via` names the hook event or tool that showed the mail (1-64 characters)",
        ));
    }
    let now = now_ms();
    let id = me.id.clone();
    let (delivered, released) = s
        .store
        .write(move |c| {
            Box::pin(async move {
                messages::ack(
                    c,
                    &id,
                    &req.lease_id,
                    &req.via,
                    req.message_ids.as_deref(),
                    now,
                )
                .await
            })
        })
        .await?;
    if released > 0 {
        s.waiters.wake(&me.id);
    }
    Ok(Json(AckResponse {
        delivered,
        released,
    }))
}

async fn peek(State(s): St, caller: Caller) -> ApiResult<InboxList> {
    let me = caller.require_peer()?;
    Ok(Json(InboxList {
        messages: messages::waiting(s.store.reader(), &me.id).await?,
    }))
}

async fn history(State(s): St, caller: Caller, Q(q): Q<HistoryQuery>) -> ApiResult<InboxList> {
    let me = caller.require_peer()?;
    let ids = messages::lineage(s.store.reader(), &me.id).await?;
    let messages = messages::delivered_to(
        s.store.reader(),
        &ids,
        q.since_ms.unwrap_or(0),
        q.limit.unwrap_or(50).min(1000),
    )
    .await?;
    Ok(Json(InboxList { messages }))
}

async fn wait(State(s): St, caller: Caller, Q(q): Q<WaitQuery>) -> ApiResult<WaitResponse> {
    let me = caller.require_peer()?.clone();
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(25_000).min(600_000));
    let deadline = tokio::time::Instant::now() + timeout;
    // Armed until this handler ends, however it ends (the guard leaves the slot).
    let armed = s.waiters.arm(&me.id);
    let (slot, generation) = (armed.slot(), armed.generation);
    let mut stop = s.shutdown.subscribe();
    let result = loop {
        let notified = slot.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !slot.is_current(generation) {
            break WaitResponse {
                mail: false,
                superseded: true,
                queued: 0,
            };
        }
        let (queued, _) = messages::waiting_count(s.store.reader(), &me.id).await?;
        if queued > 0 {
            break WaitResponse {
                mail: true,
                superseded: false,
                queued,
            };
        }
        tokio::select! {
            _ = &mut notified => continue,
            _ = tokio::time::sleep_until(deadline) => break WaitResponse { mail: false, superseded: false, queued: 0 },
            _ = stop.wait_for(|v| *v) => break WaitResponse { mail: false, superseded: false, queued: 0 },
        }
    };
    drop(armed);
    Ok(Json(result))
}

async fn notices(State(s): St, caller: Caller) -> ApiResult<NoticeList> {
    caller.require_user()?;
    // A storage fault cannot be written to the database it is about: it is shown from
    // memory, first, for as long as it lasts.
    let health = s.store.health();
    let mut notices = vec![];
    if let Some(at_ms) = health.lost_since() {
        notices.push(broker_notice(
            at_ms,
            "storage_lost",
            format!(
                "The database file {} was deleted or replaced while the broker ran; every \
                 write is refused (503) and nothing new is stored. Restart the broker \
                 (`peers broker stop`); put a copy of peers.db back first if you have one.",
                health.db().display()
            ),
        ));
    }
    if let Some(at_ms) = health.full_since() {
        notices.push(broker_notice(
            at_ms,
            "storage_full",
            format!(
                "The disk holding {} is full or failing: sends and other writes are refused \
                 (507) and nothing of them is stored. Free space there; the broker recovers by \
                 itself.",
                health.db().display()
            ),
        ));
    }
    match messages::notices(s.store.reader(), 100).await {
        Ok(stored) => notices.extend(stored),
        Err(_) if !notices.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Json(NoticeList { notices }))
}

/// A notice the broker raises about itself, not (yet) stored.
fn broker_notice(at_ms: i64, kind: &str, text: String) -> Notice {
    Notice {
        id: 0,
        at_ms,
        kind: kind.to_string(),
        peer_id: None,
        text,
        author: input::BROKER_AUTHOR.to_string(),
    }
}

/// A client's notice for the human: about the calling peer (peer token) or about nothing in
/// particular (user secret).
async fn add_notice(State(s): St, caller: Caller, Body(req): Body<NoticeRequest>) -> ApiResult<Ok> {
    let kind = req.kind.trim().to_string();
    if kind.is_empty()
        || kind.len() > 32
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::bad_request(
            "`kind` is 1-32 characters of a-z, 0-9 and _ (e.g. `escalation`)",
        ));
    }
    if input::BROKER_NOTICE_KINDS.contains(&kind.as_str()) {
        return Err(ApiError::forbidden(format!(
            "notices of kind `{kind}` are raised only by the broker itself; pick another kind \
             (e.g. `escalation`)"
        )));
    }
    let text = input::one_line(&req.text);
    if text.is_empty() || text.chars().count() > 2000 {
        return Err(ApiError::bad_request("`text` is 1-2000 characters"));
    }
    let peer_id = caller.peer().map(|p| p.id.clone());
    let author = caller
        .peer()
        .map_or_else(|| "you".to_string(), |p| p.address());
    let now = now_ms();
    s.store
        .write(move |c| {
            Box::pin(async move {
                messages::add_notice(c, &kind, peer_id.as_deref(), &text, &author, now).await
            })
        })
        .await?;
    Ok(Json(Ok { ok: true }))
}

async fn shutdown(
    State(s): St,
    caller: Caller,
    Body(_): Body<serde_json::Value>,
) -> ApiResult<ShutdownResponse> {
    caller.require_user()?;
    tracing::info!("shutdown requested through the API");
    let _ = s.shutdown.send(true);
    Ok(Json(ShutdownResponse {
        shutting_down: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_that_name_this_broker() {
        let local = "127.0.0.1".parse().unwrap();
        let hub = "10.0.0.2".parse().unwrap();
        let any = "0.0.0.0".parse().unwrap();
        let names = vec!["hub.example".to_string()];
        for h in [
            "127.0.0.1:7900",
            "127.9.9.9",
            "localhost:1",
            "LocalHost.",
            "[::1]:7900",
        ] {
            assert!(host_allowed(h, local, &[]), "{h}");
            assert!(host_allowed(h, hub, &[]), "{h}");
        }
        assert!(host_allowed("10.0.0.2:7900", hub, &[]));
        assert!(!host_allowed("10.0.0.2:7900", local, &[]));
        assert!(host_allowed("192.168.1.5:7900", any, &[]));
        assert!(host_allowed("HUB.example:7900", hub, &names));
        for h in [
            "",
            "evil.example",
            "hub.example.evil",
            "localhost.evil.example",
            "::1",
            "[::1]x",
            "127.0.0.1:http",
        ] {
            assert!(!host_allowed(h, any, &names), "{h}");
        }
    }
}
