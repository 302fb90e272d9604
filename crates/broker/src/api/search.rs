//! `GET /v1/search`: full-text search over bodies and tags, or with no words the newest
//! history, with the history filters of `GET /v1/messages`. A peer finds mail it sent, got
//! a copy of, or that was posted to a topic it is subscribed to; the human finds everything.

use axum::Json;
use axum::extract::State;
use peers_core::wire::{SearchQuery, SearchResults};
use peers_store::{LogSender, SearchFilter, SearchViewer};

use super::extract::ApiQuery;
use super::messages::ids_named;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{SharedState, input};

pub async fn search(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<SearchResults> {
    // No words: the newest history that passes the filters.
    let query = q.q.trim().to_string();
    input::no_nul("q", &query)?;
    let viewer = match &caller {
        Caller::Peer(me) => Some(SearchViewer {
            peer_ids: state.store.lineage(&me.id).await?,
            machine_id: me.machine_id.clone(),
            cwd: me.cwd.clone(),
            name: me.name.clone(),
        }),
        Caller::User => None,
        Caller::Script(t) => return Err(ApiError::forbidden(crate::auth::script_may(t))),
    };
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
    let hits = state
        .store
        .search(SearchFilter {
            query,
            viewer,
            from,
            to,
            topic,
            tag,
            project: q.project.map(|p| p.trim().to_string()),
            since_ms: q.since_ms.unwrap_or(0),
            until_ms: q.until_ms,
            status: q.status,
            limit: q.limit.unwrap_or(20).clamp(1, 200),
        })
        .await?;
    Ok(Json(SearchResults { hits }))
}
