//! `/v1/notices`: what the human is told (the broker's own, then the stored ones) and the
//! notices clients raise.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use peers_core::now_ms;
use peers_core::wire::*;

use super::extract::ApiJson;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{AppState, SharedState, input};
use peers_store::NewNotice;

pub async fn list(State(state): State<SharedState>, caller: Caller) -> ApiResult<NoticeList> {
    caller.require_user()?;
    let mut notices = storage_faults(&state);
    match state.store.notices(100).await {
        Ok(stored) => notices.extend(stored),
        Err(_) if !notices.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Json(NoticeList { notices }))
}

/// The storage faults that last now. A storage fault cannot be written to the database it is
/// about: it is shown from memory, first, for as long as it lasts.
fn storage_faults(state: &AppState) -> Vec<Notice> {
    let health = state.store.health();
    let db = state.store.describe().location;
    let mut notices = vec![];
    if let Some(at_ms) = health.lost_since {
        notices.push(broker_notice(
            at_ms,
            "storage_lost",
            format!(
                "The database file {db} was deleted or replaced while the broker ran; every \
                 write is refused (503) and nothing new is stored. Restart the broker \
                 (`peers broker stop`); put a copy of peers.db back first if you have one."
            ),
        ));
    }
    if let Some(at_ms) = health.full_since {
        notices.push(broker_notice(
            at_ms,
            "storage_full",
            format!(
                "The disk holding {db} is full or failing: sends and other writes are refused \
                 (507) and nothing of them is stored. Free space there; the broker recovers by \
                 itself."
            ),
        ));
    }
    if let Some(at_ms) = health.unavailable_since {
        notices.push(broker_notice(
            at_ms,
            "storage_unavailable",
            format!(
                "The database {db} cannot be reached: writes and reads are refused (503) and \
                 nothing new is stored. Check that the database server runs and accepts \
                 connections; the broker reconnects by itself."
            ),
        ));
    }
    notices
}

/// How often [`watch_storage`] looks at the store's health (a few atomic loads).
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Pushes each storage fault on `/v1/events` as a `notice` event once it starts (the store
/// marks faults where it meets them, on any connection; this reads its marks). Runs for the
/// broker's life.
pub async fn watch_storage(state: SharedState) {
    let mut told: HashSet<(String, i64)> = HashSet::new();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = storage_faults(&state);
        // A fault that ended is forgotten: the next spell is told again.
        told.retain(|seen| now.iter().any(|n| (&n.kind, n.at_ms) == (&seen.0, seen.1)));
        for notice in now {
            if told.insert((notice.kind.clone(), notice.at_ms)) {
                state.publish(Event::Notice { notice });
            }
        }
    }
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
pub async fn add(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<NoticeRequest>,
) -> ApiResult<Done> {
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
    let notice = NewNotice {
        kind,
        peer_id,
        text,
        author,
        now: now_ms(),
    };
    state.store.add_notice(notice.clone()).await?;
    state.publish_notice(&notice);
    Ok(Json(Done { ok: true }))
}
