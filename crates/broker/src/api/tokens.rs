//! `/v1/tokens…`: script tokens for scripts and CI (the user secret only). A token is shown
//! once, when created; the store keeps its hash.

use axum::Json;
use axum::extract::State;
use peers_core::address::Recipient;
use peers_core::now_ms;
use peers_core::wire::{TokenCreateRequest, TokenCreated, TokenInfo, TokenList};
use peers_store::{NewScriptToken, ScriptToken};

use super::extract::{ApiJson, ApiPath};
use crate::SharedState;
use crate::auth::{Caller, new_script_token, token_hash};
use crate::error::{ApiError, ApiResult};
use crate::input;

fn info(t: ScriptToken) -> TokenInfo {
    TokenInfo {
        name: t.name,
        post_to: t.post_to,
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        last_used_ms: t.last_used_ms,
        revoked_ms: t.revoked_ms,
    }
}

/// 1-64 of letters, digits, `-`, `_`, `.`, starting with a letter or digit.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{name:?} is not a token name: use 1-64 of letters, digits, '-', '_', '.', starting \
             with a letter or digit, e.g. ci-deploy"
        )))
    }
}

pub async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(req): ApiJson<TokenCreateRequest>,
) -> ApiResult<TokenCreated> {
    caller.require_user()?;
    let name = req.name.trim().to_string();
    check_name(&name)?;
    let mut post_to = Vec::with_capacity(req.post_to.len());
    for to in &req.post_to {
        input::no_nul("post_to", to)?;
        let r = Recipient::parse(to).map_err(ApiError::bad_request)?;
        let label = match r {
            Recipient::Peer(p) => p.to_ascii_lowercase(),
            other => other.label(),
        };
        if !post_to.contains(&label) {
            post_to.push(label);
        }
    }
    if let Some(ms) = req.expires_in_ms
        && ms <= 0
    {
        return Err(ApiError::bad_request(
            "expires_in_ms must be positive (leave it out for a token valid until revoked)",
        ));
    }
    let now = now_ms();
    let token = new_script_token();
    let row = NewScriptToken {
        name: name.clone(),
        token_hash: token_hash(&token),
        post_to: post_to.clone(),
        created_ms: now,
        expires_ms: req.expires_in_ms.map(|ms| now.saturating_add(ms)),
    };
    let expires_ms = row.expires_ms;
    if !state.store.create_script_token(row).await? {
        return Err(ApiError::conflict(format!(
            "a script token named {name:?} exists: revoke it first (`peers token revoke \
             {name}`) or choose another name"
        )));
    }
    Ok(Json(TokenCreated {
        token,
        info: TokenInfo {
            name,
            post_to,
            created_ms: now,
            expires_ms,
            last_used_ms: None,
            revoked_ms: None,
        },
    }))
}

pub async fn list(State(state): State<SharedState>, caller: Caller) -> ApiResult<TokenList> {
    caller.require_user()?;
    let tokens = state.store.script_tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(info).collect(),
    }))
}

pub async fn revoke(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<TokenList> {
    caller.require_user()?;
    if !state.store.revoke_script_token(&name, now_ms()).await? {
        return Err(ApiError::not_found(format!(
            "no script token {name:?} that is not revoked yet; `peers token list` shows them"
        )));
    }
    list(State(state), caller).await
}
