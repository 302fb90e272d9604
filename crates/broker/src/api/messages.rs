//! `/v1/messages…`: send, a message's status, the human's message log.

use axum::Json;
use axum::extract::State;
use peers_core::now_ms;
use peers_core::wire::*;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::peers::{Place, resolve_or_404};
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use peers_core::address::Recipient;
use peers_store::{LogFilter, LogSender, NewMessage, PeerRecord, Reader, Sender, Sent, project_of};

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
    input::no_nul("to", &req.to)?;
    let tags = input::tags(&req.tags)?;
    let recipient = Recipient::parse(&req.to).map_err(ApiError::bad_request)?;
    if let Caller::Script(t) = &caller
        && !auth::script_may_post(t, &recipient)
    {
        return Err(ApiError::forbidden(auth::script_may(t)));
    }
    if req.scope.is_some() && recipient != Recipient::Broadcast {
        return Err(ApiError::bad_request(
            "`scope` is for a broadcast: send to \"*\" with a scope, or leave scope out",
        ));
    }
    if let Some(r) = req.reply_to
        && !state.store.message_exists(r).await?
    {
        return Err(ApiError::bad_request(format!(
            "reply_to names message {r}, which does not exist; use the message id you were shown"
        )));
    }
    let from = sender(&state, &caller);
    let (to_address, channel, readers) = match &recipient {
        Recipient::Peer(who) => {
            let to = resolve_or_404(&state, who).await?;
            // To a name no session of which runs now: the next session of that name takes
            // it, on any machine, unless the sender named the host (`take_handovers`).
            let address = if !to.alive() && who.eq_ignore_ascii_case(&to.name) {
                to.name.clone()
            } else {
                to.address()
            };
            (address, None, vec![(to, true)])
        }
        Recipient::Topic(topic) => {
            let readers = state.store.topic_readers(topic).await?;
            let readers = readers
                .into_iter()
                .filter(|r| from.peer_id.as_deref() != Some(r.peer.id.as_str()))
                .map(|r| (r.peer, r.wake))
                .collect();
            (recipient.label(), Some(recipient.label()), readers)
        }
        Recipient::Broadcast => {
            let readers = broadcast_readers(&state, &caller, req.scope).await?;
            ("*".to_string(), Some("*".to_string()), readers)
        }
    };
    let now = now_ms();
    let msg = NewMessage {
        tags,
        project: caller.peer().and_then(|p| project_of(p)),
        from,
        to_address: to_address.clone(),
        channel: channel.clone(),
        readers: readers
            .iter()
            .map(|(p, wake)| Reader {
                peer_id: p.id.clone(),
                address: p.address(),
                wake: *wake,
            })
            .collect(),
        body: req.message,
        reply_to: req.reply_to,
        sent_ms: now,
        expires_ms: now.saturating_add(state.settings.message_ttl_ms),
    };
    let Sent { id, readers: ids } = state.store.send(msg).await?;
    let mut out = Vec::with_capacity(ids.len());
    for ((to, wake), peer_id) in readers.iter().zip(ids) {
        // Committed; before the 200: a sender's 200 implies the reader's marker exists.
        state.mailmarks.mail_committed(&peer_id, &to.machine_id);
        // Asked before the wake: the waiter that this send ends is the one that counts.
        let can_wake = *wake && to.alive() && state.waiters.can_wake(&peer_id);
        state.waiters.wake(&peer_id);
        out.push(ReaderStatus {
            peer_id,
            to: to.address(),
            status: MessageState::Queued,
            delivered_at_ms: None,
            delivered_via: None,
            alive: to.alive(),
            wake: *wake,
            can_wake,
        });
    }
    let response = match channel {
        None => {
            let (to, r) = (&readers[0].0, out.remove(0));
            SendResponse {
                message_id: id,
                to: to.address(),
                to_peer_id: r.peer_id,
                status: MessageState::Queued,
                recipient_alive: r.alive,
                recipient_last_seen_ms: to.last_seen_ms,
                recipient_can_wake: r.can_wake,
                channel: None,
                readers: vec![],
            }
        }
        Some(channel) => SendResponse {
            message_id: id,
            to: to_address,
            to_peer_id: String::new(),
            status: MessageState::Queued,
            recipient_alive: out.iter().any(|r| r.alive),
            recipient_last_seen_ms: readers
                .iter()
                .map(|(p, _)| p.last_seen_ms)
                .max()
                .unwrap_or(0),
            recipient_can_wake: out.iter().any(|r| r.can_wake),
            channel: Some(channel),
            readers: out,
        },
    };
    state.publish_message(id).await;
    Ok(Json(response))
}

/// Who sent it: the calling peer, a script, or the human.
pub(super) fn sender(state: &AppState, caller: &Caller) -> Sender {
    match caller {
        Caller::Peer(p) => Sender {
            kind: SenderKind::Peer,
            peer_id: Some(p.id.clone()),
            address: p.address(),
            cwd: Some(p.cwd.clone()),
        },
        Caller::Script(t) => Sender {
            kind: SenderKind::Script,
            peer_id: None,
            address: auth::script_label(t),
            cwd: None,
        },
        Caller::User => Sender {
            kind: SenderKind::Human,
            peer_id: None,
            address: format!("you@{}", state.settings.host),
            cwd: None,
        },
    }
}

/// The live peers a broadcast in `scope` reaches (default: the sender's repository, or
/// everyone for the human), never the sender. None in scope is a 400: nothing is stored.
async fn broadcast_readers(
    state: &AppState,
    caller: &Caller,
    scope: Option<Scope>,
) -> Result<Vec<(PeerRecord, bool)>, ApiError> {
    let me = caller.peer();
    let scope = scope.unwrap_or(if me.is_some() {
        Scope::Repo
    } else {
        Scope::All
    });
    let place = match me {
        Some(p) => Place::of(p),
        // The human is on the broker's machine and in no directory.
        None if matches!(scope, Scope::Directory | Scope::Repo) => {
            return Err(ApiError::bad_request(
                "the human has no directory or repository to broadcast to: use scope \
                 machine or all",
            ));
        }
        None => Place {
            machine_id: Some(state.settings.machine_id.clone()),
            ..Place::default()
        },
    };
    let readers: Vec<(PeerRecord, bool)> = state
        .store
        .live_peers()
        .await?
        .into_iter()
        .filter(|r| me.is_none_or(|m| m.id != r.id) && place.holds(scope, r))
        .map(|r| (r, true))
        .collect();
    if readers.is_empty() {
        let wider = match scope {
            Scope::All => "nobody else is registered right now; nothing was sent",
            _ => "nothing was sent; widen it with scope machine, repo or all",
        };
        return Err(ApiError::unknown_peer(format!(
            "no live peer is in scope {:?} of the broadcast: {wider}",
            format!("{scope:?}").to_lowercase()
        )));
    }
    Ok(readers)
}

pub async fn status(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<MessageStatusQuery>,
) -> ApiResult<MessageStatus> {
    let not_found = || ApiError::not_found(format!("no message {id}"));
    // Whoever may see the status may read the body: the human, the sender, a reader, and
    // for a topic post anyone (topics are readable with read_topic anyway).
    let (mut status, from_peer) = state
        .store
        .status(id, q.body)
        .await?
        .ok_or_else(not_found)?;
    if let Caller::Script(t) = &caller {
        // A script sees the status of its own posts only.
        if !(status.from_kind == SenderKind::Script && status.from == auth::script_label(t)) {
            return Err(not_found());
        }
    } else if let Some(mine) = peer_lineage(&state, &caller).await?
        && !may_see(&mine, &status, from_peer.as_deref())
    {
        // Do not reveal whether other peers' messages exist.
        return Err(not_found());
    }
    fill_can_wake(&state, &mut status);
    Ok(Json(status))
}

/// `GET /v1/messages/{id}/thread`: the message's conversation, root first, with the entries
/// the caller may see (the requested one must be one of them).
pub async fn thread(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<MessageThread> {
    let not_found = || ApiError::not_found(format!("no message {id}"));
    let entries = state.store.thread(id).await?;
    let root_id = entries
        .first()
        .map(|(m, _)| m.message_id)
        .ok_or_else(not_found)?;
    let mine = peer_lineage(&state, &caller).await?;
    let visible = |m: &MessageStatus, from: Option<&str>| {
        mine.as_ref().is_none_or(|ids| may_see(ids, m, from))
    };
    if !entries
        .iter()
        .any(|(m, from)| m.message_id == id && visible(m, from.as_deref()))
    {
        return Err(not_found());
    }
    let mut messages: Vec<MessageStatus> = entries
        .into_iter()
        .filter(|(m, from)| visible(m, from.as_deref()))
        .map(|(m, _)| m)
        .collect();
    for m in &mut messages {
        fill_can_wake(&state, m);
    }
    Ok(Json(MessageThread { root_id, messages }))
}

/// A peer caller's registrations (it and those it replaced); `None` for the human, who sees
/// everything.
async fn peer_lineage(state: &AppState, caller: &Caller) -> Result<Option<Vec<String>>, ApiError> {
    match caller {
        Caller::Peer(me) => Ok(Some(state.store.lineage(&me.id).await?)),
        Caller::User => Ok(None),
        // Scripts never get here (the extractor lets them post and read statuses only).
        Caller::Script(t) => Err(ApiError::forbidden(crate::auth::script_may(t))),
    }
}

/// Whether a peer with registrations `mine` may see a message (status, body, thread entry):
/// it sent it, got a copy, or it is a topic post (topics are readable with read_topic).
fn may_see(mine: &[String], status: &MessageStatus, from_peer: Option<&str>) -> bool {
    let public = status
        .channel
        .as_deref()
        .is_some_and(|c| c.starts_with('#'));
    public
        || from_peer.is_some_and(|f| mine.iter().any(|m| m == f))
        || mine.contains(&status.to_peer_id)
        || status.readers.iter().any(|r| mine.contains(&r.peer_id))
}

/// Fills what only this broker knows: whether an idle-session waiter is armed for each
/// reader now.
pub fn fill_can_wake(state: &AppState, status: &mut MessageStatus) {
    for r in &mut status.readers {
        r.can_wake = r.wake && r.alive && state.waiters.can_wake(&r.peer_id);
    }
    status.recipient_can_wake = if status.channel.is_some() {
        status.readers.iter().any(|r| r.can_wake)
    } else {
        status.recipient_alive && state.waiters.can_wake(&status.to_peer_id)
    };
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
    let topic = match q.topic.as_deref() {
        None => None,
        Some(t) => Some(peers_core::address::topic_name(t).map_err(ApiError::bad_request)?),
    };
    let tag = match q.tag.as_deref() {
        None => None,
        Some(t) => input::tags(&[t.to_string()])?.pop(),
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let mut messages = state
        .store
        .log(LogFilter {
            from,
            to,
            topic,
            tag,
            project: q.project.map(|p| p.trim().to_string()),
            until_ms: q.until_ms,
            status: q.status,
            since_ms: q.since_ms.unwrap_or(0),
            limit,
            with_body: q.body,
        })
        .await?;
    for m in &mut messages {
        fill_can_wake(&state, m);
    }
    Ok(Json(MessageLog { messages }))
}

/// Every registration of the peer `who` names (it and those it replaced).
pub(super) async fn ids_named(state: &AppState, who: &str) -> Result<Vec<String>, ApiError> {
    let row = resolve_or_404(state, who).await?;
    Ok(state.store.lineage(&row.id).await?)
}
