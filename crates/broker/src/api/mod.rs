//! The HTTP API under `/v1`: [`router`] maps each call to its handler, one module per
//! resource (`peers`, `messages`, `inbox`, `search`, `handovers`, `topics`, `tokens`,
//! `notices`, `events`, `export`, `dashboard`, `admin`); `guards` are the layers every
//! request passes first, `extract` the extractors that answer bad input with the API's JSON
//! error. Each handler reads like the call it serves; `docs/PROTOCOL.md` has an example of
//! each.

mod admin;
mod dashboard;
mod events;
mod export;
mod extract;
mod guards;
mod handovers;
mod inbox;
mod messages;
mod notices;
mod peers;
mod search;
mod tokens;
mod topics;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

pub use guards::host_allowed;
pub use notices::watch_storage;

use crate::SharedState;
use crate::error::ApiError;

pub fn router(state: SharedState) -> Router {
    // The raw body may be larger than the message it carries (JSON escapes); the message
    // itself is checked against `max_message_bytes` with a clear error.
    let body_limit = state.settings.max_message_bytes * 2 + 16 * 1024;
    Router::new()
        .route("/v1/health", get(admin::health))
        .route("/v1/peers/register", post(peers::register))
        .route("/v1/peers/heartbeat", post(peers::heartbeat))
        .route("/v1/peers/summary", post(peers::set_summary))
        .route("/v1/peers/unregister", post(peers::unregister))
        .route("/v1/peers", get(peers::list))
        .route("/v1/peers/{who}", get(peers::find))
        .route("/v1/messages", post(messages::send).get(messages::log))
        .route("/v1/messages/{id}", get(messages::status))
        .route("/v1/messages/{id}/thread", get(messages::thread))
        .route("/v1/inbox", get(inbox::peek))
        .route("/v1/inbox/claim", post(inbox::claim))
        .route("/v1/inbox/ack", post(inbox::ack))
        .route("/v1/inbox/history", get(inbox::history))
        .route("/v1/inbox/wait", get(inbox::wait))
        .route("/v1/handovers", post(handovers::leave))
        .route("/v1/search", get(search::search))
        .route("/v1/export", get(export::export))
        .route("/v1/topics", get(topics::list))
        .route("/v1/topics/subscribe", post(topics::subscribe))
        .route("/v1/topics/unsubscribe", post(topics::unsubscribe))
        .route("/v1/topics/{name}/messages", get(topics::posts))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{name}/revoke", post(tokens::revoke))
        .route("/v1/notices", get(notices::list).post(notices::add))
        .route("/v1/events", get(events::stream))
        .route("/v1/dashboard/code", post(dashboard::code))
        .route("/v1/dashboard/login", post(dashboard::login))
        .route("/v1/dashboard/session", get(dashboard::session))
        .route("/v1/dashboard/logout-all", post(dashboard::logout_all))
        .route("/", get(dashboard::index))
        .route("/login", get(dashboard::login_page))
        .route("/assets/{name}", get(dashboard::asset))
        .route("/v1/shutdown", post(admin::shutdown))
        .fallback(|| async {
            ApiError::not_found("no such API call; see docs/PROTOCOL.md for the /v1 calls")
        })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn(guards::require_json_posts))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guards::refuse_while_storage_lost,
        ))
        .layer(middleware::from_fn(guards::refuse_head))
        // Outermost: a request for another host name is refused before anything else.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guards::require_own_host,
        ))
        .with_state(state)
}
