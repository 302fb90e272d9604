//! `/v1/inbox…`: a peer's own mail: peek, claim (lease), ack, history and the long-poll wait.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use peers_core::now_ms;
use peers_core::wire::*;

use super::extract::{ApiJson, ApiQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::store::{LoopBudget, messages};
use crate::{SharedState, input};

pub async fn claim(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<ClaimResponse> {
    let me = caller.require_peer()?.clone();
    let now = now_ms();
    // Most claims (one per tool call) find nothing: answer those from the read pool. Mail
    // committed after this check is simply claimed at the next event.
    if !messages::claimable(state.store.reader(), &me.id, now).await? {
        state
            .mailmarks
            .claimed_nothing(&state.store, &me.id, &me.machine_id)
            .await;
        return Ok(Json(ClaimResponse {
            lease_id: None,
            lease_expires_ms: 0,
            messages: vec![],
            budget_exhausted: false,
        }));
    }
    let lease_ms = req
        .lease_ms
        .unwrap_or(state.settings.lease_ms)
        .clamp(100, 600_000);
    let lease_expires = now + lease_ms as i64;
    let lease_id = peers_core::paths::random_hex(16);
    let max = req.max.unwrap_or(50).clamp(1, 1000);
    let budget = req.automatic.then(|| LoopBudget {
        machine_id: me.machine_id.clone(),
        claude_pid: me.claude_pid,
        limit: state.settings.loop_budget,
        window_ms: state.settings.loop_window_ms,
    });
    let (id, lid, name) = (me.id.clone(), lease_id.clone(), me.address());
    let out = state
        .store
        .write_volatile(move |c| {
            Box::pin(async move {
                let budget = budget.as_ref();
                let out = messages::claim(c, &id, &lid, max, now, lease_expires, budget).await?;
                if out.budget_notice {
                    let b = budget.expect("notice only for automatic claims");
                    let text = format!(
                        "{name} used its loop budget ({} automatic turns in {} min); its mail \
                         waits for the next prompt. Look with `peers inbox`.",
                        b.limit,
                        b.window_ms / 60_000
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
    if !has {
        state
            .mailmarks
            .claimed_nothing(&state.store, &me.id, &me.machine_id)
            .await;
    }
    Ok(Json(ClaimResponse {
        lease_id: has.then_some(lease_id),
        lease_expires_ms: if has { lease_expires } else { 0 },
        messages: out.messages,
        budget_exhausted: out.budget_exhausted,
    }))
}

pub async fn ack(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<AckRequest>,
) -> ApiResult<AckResponse> {
    let me = caller.require_peer()?.clone();
    if req.via.trim().is_empty() || req.via.len() > 64 {
        return Err(ApiError::bad_request(
            "`via` names the hook event or tool that showed the mail (1-64 characters)",
        ));
    }
    let now = now_ms();
    let id = me.id.clone();
    let (delivered, released) = state
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
        state.mailmarks.mail_committed(&me.id, &me.machine_id);
        state.waiters.wake(&me.id);
    }
    Ok(Json(AckResponse {
        delivered,
        released,
    }))
}

pub async fn peek(State(state): State<SharedState>, caller: Caller) -> ApiResult<InboxList> {
    let me = caller.require_peer()?;
    Ok(Json(InboxList {
        messages: messages::waiting(state.store.reader(), &me.id).await?,
    }))
}

pub async fn history(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<InboxList> {
    let me = caller.require_peer()?;
    let ids = messages::lineage(state.store.reader(), &me.id).await?;
    let messages = messages::delivered_to(
        state.store.reader(),
        &ids,
        q.since_ms.unwrap_or(0),
        q.limit.unwrap_or(50).min(1000),
    )
    .await?;
    Ok(Json(InboxList { messages }))
}

pub async fn wait(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<WaitResponse> {
    let me = caller.require_peer()?.clone();
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(25_000).min(600_000));
    let deadline = tokio::time::Instant::now() + timeout;
    // Armed until this handler ends, however it ends (the guard leaves the slot).
    let armed = state.waiters.arm(&me.id);
    let (slot, generation) = (armed.slot(), armed.generation);
    let mut stop = state.shutdown.subscribe();
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
        let (queued, _) = messages::waiting_count(state.store.reader(), &me.id).await?;
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
