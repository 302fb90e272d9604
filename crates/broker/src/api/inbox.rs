//! `/v1/inbox…`: a peer's own mail: peek, claim (lease), ack, history and the long-poll wait.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use peers_core::now_ms;
use peers_core::wire::*;

use super::extract::{ApiJson, ApiQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{SharedState, input};
use peers_store::{Ack, Acked, Claim, LoopBudget, NewNotice};

pub async fn claim(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<ClaimResponse> {
    let me = caller.require_peer()?.clone();
    let now = now_ms();
    // Most claims (one per tool call) find nothing: answer those from the read pool. Mail
    // committed after this check is simply claimed at the next event.
    if !state.store.claimable(&me.id, now).await? {
        state
            .mailmarks
            .claimed_nothing(state.store.as_ref(), &me.id, &me.machine_id)
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
    let (limit, window_ms) = (state.settings.loop_budget, state.settings.loop_window_ms);
    let budget = req.automatic.then(|| LoopBudget {
        machine_id: me.machine_id.clone(),
        claude_pid: me.claude_pid,
        limit,
        window_ms,
        notice: format!(
            "{} used its loop budget ({limit} automatic turns in {} min); its mail waits for \
             the next prompt. Look with `peers inbox`.",
            me.address(),
            window_ms / 60_000
        ),
    });
    let notice = budget.as_ref().map(|b| b.notice.clone());
    let out = state
        .store
        .claim(Claim {
            peer_id: me.id.clone(),
            lease_id: lease_id.clone(),
            max,
            now,
            lease_expires_ms: lease_expires,
            automatic: budget,
        })
        .await?;
    if out.budget_notice {
        tracing::warn!(peer = %me.id, name = %me.name, "loop budget exhausted");
        // The store wrote this notice in the claim's transaction; open streams hear of it.
        state.publish_notice(&NewNotice {
            kind: "loop_budget".into(),
            peer_id: Some(me.id.clone()),
            text: notice.unwrap_or_default(),
            author: input::BROKER_AUTHOR.into(),
            now,
        });
    }
    let has = !out.messages.is_empty();
    if !has {
        state
            .mailmarks
            .claimed_nothing(state.store.as_ref(), &me.id, &me.machine_id)
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
    input::no_nul("via", &req.via)?;
    input::no_nul("lease_id", &req.lease_id)?;
    let Acked {
        delivered,
        released,
    } = state
        .store
        .ack(Ack {
            peer_id: me.id.clone(),
            lease_id: req.lease_id,
            via: req.via.clone(),
            ids: req.message_ids.clone(),
            now: now_ms(),
        })
        .await?;
    if released > 0 {
        state.mailmarks.mail_committed(&me.id, &me.machine_id);
        state.waiters.wake(&me.id);
    }
    state.publish_acked(
        &me.id,
        req.message_ids,
        req.via,
        Acked {
            delivered,
            released,
        },
    );
    Ok(Json(AckResponse {
        delivered,
        released,
    }))
}

pub async fn peek(State(state): State<SharedState>, caller: Caller) -> ApiResult<InboxList> {
    let me = caller.require_peer()?;
    Ok(Json(InboxList {
        messages: state.store.waiting(&me.id).await?,
    }))
}

pub async fn history(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<InboxList> {
    let me = caller.require_peer()?;
    let ids = state.store.lineage(&me.id).await?;
    let messages = state
        .store
        .delivered_to(
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
        // Only mail that may wake an idle session ends the wait (a topic post without
        // `wake` waits for the next hook event, whose claim takes it with the rest).
        let queued = state.store.queued_to_wake(&me.id).await?;
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
