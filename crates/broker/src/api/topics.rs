//! `/v1/topics…`: subscribe, unsubscribe, list topics, read a topic's posts. Posting is
//! `POST /v1/messages` with `to: "#topic"` (see `messages::send`).

use axum::Json;
use axum::extract::State;
use peers_core::address::topic_name;
use peers_core::now_ms;
use peers_core::wire::*;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::messages::fill_can_wake;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{AppState, SharedState, input};
use peers_store::{Subscribe, TopicPostsFilter};

/// A topic name from the caller, normalised, or a 400 naming the rule.
fn topic_arg(raw: &str) -> Result<String, ApiError> {
    input::no_nul("topic", raw)?;
    topic_name(raw).map_err(ApiError::bad_request)
}

pub async fn subscribe(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<SubscribeRequest>,
) -> ApiResult<Subscription> {
    let me = caller.require_peer()?.clone();
    let topic = topic_arg(&req.topic)?;
    let sub = state
        .store
        .subscribe(Subscribe {
            peer_id: me.id.clone(),
            topic,
            wake: req.wake,
            mute: req.mute,
            now: now_ms(),
        })
        .await?
        .ok_or_else(|| ApiError::unauthorized("this registration is unknown; register again"))?;
    tracing::info!(peer = %me.id, topic = %sub.topic, wake = sub.wake, mute = sub.mute, "subscribed");
    state.publish_topic(&sub.topic, &me.id, true);
    Ok(Json(sub))
}

pub async fn unsubscribe(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<UnsubscribeRequest>,
) -> ApiResult<Unsubscribed> {
    let me = caller.require_peer()?.clone();
    let topic = topic_arg(&req.topic)?;
    let was_subscribed = state.store.unsubscribe(&me.id, &topic).await?;
    state.publish_topic(&topic, &me.id, false);
    Ok(Json(Unsubscribed {
        topic,
        was_subscribed,
    }))
}

pub async fn list(State(state): State<SharedState>, caller: Caller) -> ApiResult<TopicList> {
    let viewer = caller.peer().map(|p| p.id.clone());
    Ok(Json(TopicList {
        topics: state.store.topics(viewer.as_deref()).await?,
    }))
}

pub async fn posts(
    State(state): State<SharedState>,
    _caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<TopicPostsQuery>,
) -> ApiResult<TopicPosts> {
    let topic = topic_arg(&name)?;
    if !state.store.topic_exists(&topic).await? {
        return Err(unknown_topic(&state, &topic).await?);
    }
    let mut posts = state
        .store
        .topic_posts(TopicPostsFilter {
            topic: topic.clone(),
            since_id: q.since_id,
            limit: q.limit.unwrap_or(50).clamp(1, 500),
        })
        .await?;
    for p in &mut posts {
        fill_can_wake(&state, p);
    }
    Ok(Json(TopicPosts { topic, posts }))
}

/// The 404 for a topic nobody has posted to or subscribed to, naming the ones there are.
async fn unknown_topic(state: &AppState, topic: &str) -> Result<ApiError, ApiError> {
    let known: Vec<String> = state
        .store
        .topics(None)
        .await?
        .into_iter()
        .map(|t| format!("#{}", t.topic))
        .collect();
    let hint = if known.is_empty() {
        "there are no topics yet (a post or a subscription creates one)".to_string()
    } else {
        format!("topics: {}", known.join(", "))
    };
    Ok(ApiError::not_found(format!("no topic #{topic}; {hint}")))
}
