//! `GET /v1/health` and `POST /v1/shutdown`.

use axum::Json;
use axum::extract::State;
use peers_core::wire::*;

use super::extract::ApiJson;
use crate::SharedState;
use crate::auth::Caller;
use crate::error::ApiResult;
use peers_store::StoreError;

pub async fn health(State(state): State<SharedState>) -> ApiResult<Health> {
    // With the database file gone the broker still answers (so no client starts a second
    // one), but not `ok`, and counts only if the old file can still be read.
    let lost = state.store.health().lost_since.is_some();
    let count = |r: Result<u64, StoreError>| match r {
        Err(_) if lost => Ok(0),
        r => r,
    };
    Ok(Json(Health {
        ok: !lost,
        version: peers_core::VERSION.to_string(),
        uptime_ms: state.started.elapsed().as_millis() as u64,
        pid: std::process::id(),
        machine_id: state.settings.machine_id.clone(),
        host: state.settings.host.clone(),
        peers_alive: count(state.store.count_live().await)?,
        queued: count(state.store.count_pending().await)?,
    }))
}

pub async fn shutdown(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(_): ApiJson<serde_json::Value>,
) -> ApiResult<ShutdownResponse> {
    caller.require_user()?;
    tracing::info!("shutdown requested through the API");
    let _ = state.shutdown.send(true);
    Ok(Json(ShutdownResponse {
        shutting_down: true,
    }))
}
