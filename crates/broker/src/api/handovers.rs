//! `/v1/handovers`: a note for the next session of a name (issue #14). It is stored as a
//! message with channel [`HANDOVER_CHANNEL`] and one copy waiting for no registration yet;
//! the next registration of that name (on any machine, or on the host `name@host` names)
//! takes it at [`super::peers::register`], and its SessionStart claim shows it.

use axum::Json;
use axum::extract::State;
use peers_core::now_ms;
use peers_core::wire::{HANDOVER_CHANNEL, HandoverRequest, HandoverResponse};
use peers_store::{NewMessage, Reader};

use super::extract::ApiJson;
use super::messages::sender;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{SharedState, input};

pub async fn leave(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<HandoverRequest>,
) -> ApiResult<HandoverResponse> {
    let me = caller.require_peer()?.clone();
    let max = state.settings.max_message_bytes;
    if req.note.len() > max {
        return Err(ApiError::too_large(format!(
            "the note is {} bytes; the limit is {max} bytes: write the details to a file and \
             leave its path",
            req.note.len()
        )));
    }
    if req.note.trim().is_empty() {
        return Err(ApiError::bad_request("note is empty"));
    }
    input::no_nul("note", &req.note)?;
    let to = match req.to.as_deref().map(str::trim) {
        None | Some("") => me.name.clone(),
        Some(to) => {
            input::no_nul("to", to)?;
            valid_target(to)?;
            to.to_lowercase()
        }
    };
    let now = now_ms();
    let expires_ms = now.saturating_add(state.settings.message_ttl_ms);
    let sent = state
        .store
        .send(NewMessage {
            from: sender(&state, &caller),
            to_address: to.clone(),
            channel: Some(HANDOVER_CHANNEL.to_string()),
            readers: vec![Reader {
                peer_id: String::new(),
                address: to.clone(),
                wake: false,
            }],
            body: req.note,
            tags: vec![],
            project: caller.peer().and_then(|p| peers_store::project_of(p)),
            reply_to: None,
            sent_ms: now,
            expires_ms,
        })
        .await?;
    state.publish_message(sent.id).await;
    Ok(Json(HandoverResponse {
        message_id: sent.id,
        to,
        expires_at_ms: expires_ms,
    }))
}

/// `name` or `name@host`: one word each side, no topic or broadcast.
fn valid_target(to: &str) -> Result<(), ApiError> {
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let ok = match to.split_once('@') {
        Some((name, host)) => ok_part(name) && ok_part(host),
        None => ok_part(to),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`to` is a session name or name@host (letters, digits, -, _, .), not {to:?}"
        )))
    }
}
