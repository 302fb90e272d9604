//! `/v1/messages…`: send, a message's status, the human's message log.

use axum::Json;
use axum::extract::State;
use peers_core::now_ms;
use peers_core::wire::*;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::peers::resolve_or_404;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use peers_store::{LogFilter, LogSender, NewMessage, Sender, Sent};

use crate::{AppState, SharedState, input};

pub async fn send(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<SendRequest>,
) -> ApiResult<SendResponse> {
    let max = state.settings.max_message_bytes;
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
    input::no_nul("message", &req.message)?;
    if req.to.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`to` is empty: name a peer, name@host or id",
        ));
    }
    if let Some(r) = req.reply_to
        && !state.store.message_exists(r).await?
    {
        return Err(ApiError::bad_request(format!(
            "reply_to names message {r}, which does not exist; use the message id you were shown"
        )));
    }
    let to = resolve_or_404(&state, &req.to).await?;
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
            address: format!("you@{}", state.settings.host),
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
        expires_ms: now.saturating_add(state.settings.message_ttl_ms),
    };
    let Sent { id, to_peer } = state.store.send(msg).await?;
    // Committed; before the 200: a sender's 200 implies the recipient's marker exists.
    state.mailmarks.mail_committed(&to_peer, &to.machine_id);
    // Asked before the wake: the waiter that this send ends is the one that counts.
    let can_wake = to.alive() && state.waiters.can_wake(&to_peer);
    state.waiters.wake(&to_peer);
    state.publish_message(id).await;
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

pub async fn status(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<MessageStatusQuery>,
) -> ApiResult<MessageStatus> {
    let not_found = || ApiError::not_found(format!("no message {id}"));
    // Whoever may see the status may read the body: the human, the sender, the recipient.
    let (mut status, from_peer) = state
        .store
        .status(id, q.body)
        .await?
        .ok_or_else(not_found)?;
    status.recipient_can_wake =
        status.recipient_alive && state.waiters.can_wake(&status.to_peer_id);
    if let Caller::Peer(me) = &caller {
        let mine = state.store.lineage(&me.id).await?;
        let involved = from_peer.as_ref().is_some_and(|f| mine.contains(f))
            || mine.contains(&status.to_peer_id);
        if !involved {
            // Do not reveal whether other peers' messages exist.
            return Err(not_found());
        }
    }
    Ok(Json(status))
}

pub async fn log(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<MessageLog> {
    caller.require_user()?;
    let from = match q.from.as_deref() {
        None => None,
        Some("you") | Some("human") => Some(LogSender::Human),
        Some(who) => Some(LogSender::Peers(ids_named(&state, who).await?)),
    };
    let to = match q.to.as_deref() {
        None => None,
        Some(who) => Some(ids_named(&state, who).await?),
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let mut messages = state
        .store
        .log(LogFilter {
            from,
            to,
            since_ms: q.since_ms.unwrap_or(0),
            limit,
            with_body: q.body,
        })
        .await?;
    for m in &mut messages {
        m.recipient_can_wake = m.recipient_alive && state.waiters.can_wake(&m.to_peer_id);
    }
    Ok(Json(MessageLog { messages }))
}

/// Every registration of the peer `who` names (it and those it replaced).
async fn ids_named(state: &AppState, who: &str) -> Result<Vec<String>, ApiError> {
    let row = resolve_or_404(state, who).await?;
    Ok(state.store.lineage(&row.id).await?)
}
