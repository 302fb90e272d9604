//! Who is calling: a peer (its own token), a script (a script token: see [`ScriptScope`]) or
//! the human (the per-user secret, the hub token,
//! or a dashboard session cookie: see [`crate::logins`]). The broker takes a sender's identity from here, never from a request body.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use peers_core::address::Recipient;
use peers_store::{PeerRecord, ScriptToken};

/// The authenticated caller of a request.
#[derive(Clone)]
pub enum Caller {
    Peer(Arc<PeerRecord>),
    /// A script token: may only post (to its `post_to`, if any) and read its own posts'
    /// status.
    Script(Arc<ScriptToken>),
    User,
}

/// What marks a script token (`peers token create`): `peers_script_` and 48 hex digits.
pub const SCRIPT_TOKEN_PREFIX: &str = "peers_script_";

pub fn new_script_token() -> String {
    format!("{SCRIPT_TOKEN_PREFIX}{}", peers_core::paths::random_hex(24))
}

/// A script's post sender, as mail shows it.
pub fn script_label(t: &ScriptToken) -> String {
    format!("{} (script)", t.name)
}

/// What a script token may do, in the words of its 403s.
pub fn script_may(t: &ScriptToken) -> String {
    let to = if t.post_to.is_empty() {
        "to any recipient".to_string()
    } else {
        format!("to {}", t.post_to.join(", "))
    };
    format!(
        "script token {:?} may only post (POST /v1/messages {to}) and read the status of its \
         own posts (GET /v1/messages/{{id}})",
        t.name
    )
}

/// Whether a script token may post to `to` (already parsed): listed as it is, or a peer
/// listed by name without a host and `to` is that name at some host.
pub fn script_may_post(t: &ScriptToken, to: &Recipient) -> bool {
    t.post_to.is_empty()
        || t.post_to.iter().any(|e| match (Recipient::parse(e), to) {
            (Ok(Recipient::Topic(a)), Recipient::Topic(b)) => a == *b,
            (Ok(Recipient::Broadcast), Recipient::Broadcast) => true,
            (Ok(Recipient::Peer(a)), Recipient::Peer(b)) => {
                a.eq_ignore_ascii_case(b)
                    || (!a.contains('@')
                        && b.split_once('@')
                            .is_some_and(|(n, _)| n.eq_ignore_ascii_case(&a)))
            }
            _ => false,
        })
}

/// A peer token is `<peer_id>.<random>`; the broker keeps only its SHA-256.
pub fn new_token(peer_id: &str) -> String {
    format!("{peer_id}.{}", peers_core::paths::random_hex(24))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Caller {
    pub fn peer(&self) -> Option<&Arc<PeerRecord>> {
        match self {
            Caller::Peer(p) => Some(p),
            Caller::User | Caller::Script(_) => None,
        }
    }

    /// Requires a peer token.
    pub fn require_peer(&self) -> Result<&Arc<PeerRecord>, ApiError> {
        self.peer().ok_or_else(|| {
            ApiError::forbidden("this call needs a peer token (the one registration returned)")
        })
    }

    /// Requires the per-user secret or hub token.
    pub fn require_user(&self) -> Result<(), ApiError> {
        match self {
            Caller::User => Ok(()),
            Caller::Peer(_) => Err(ApiError::forbidden(
                "this call needs the user secret (or the hub token), not a peer token",
            )),
            Caller::Script(t) => Err(ApiError::forbidden(script_may(t))),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        if parts.headers.get(AUTHORIZATION).is_none()
            && let Some(caller) = state.session_caller(parts)
        {
            return caller;
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing `Authorization: Bearer …`; use the secret in the state dir, \
                     the hub token, or a peer token",
                )
            })?
            .to_str()
            .map_err(|_| {
                ApiError::unauthorized(
                    "the Authorization header holds bytes that are not ASCII text; send \
                     `Authorization: Bearer <token>`",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
        let caller = state.authenticate(token, from_loopback(parts)).await?;
        if let Caller::Script(t) = &caller {
            // The two routes a script may use: `POST /v1/messages`, `GET /v1/messages/{id}`.
            let path = parts.uri.path();
            let allowed = match parts.method {
                Method::POST => path == "/v1/messages",
                Method::GET => path
                    .strip_prefix("/v1/messages/")
                    .is_some_and(|id| !id.is_empty() && !id.contains('/')),
                _ => false,
            };
            if !allowed {
                return Err(ApiError::forbidden(script_may(t)));
            }
        }
        Ok(caller)
    }
}

/// Whether the request came over loopback. A request without connection info (never the case
/// in the served broker) counts as remote: the stricter side.
pub fn from_loopback(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| a.ip().to_canonical().is_loopback())
}

impl AppState {
    /// Resolves a bearer token to a caller, in constant time with respect to the secret.
    ///
    /// `loopback` says whether the request came from this machine. The per-user secret is
    /// accepted only then: it proves "an OS user of this machine", which means nothing to a
    /// request from another host. Remote callers use the hub token (registration, human calls)
    /// or a peer token (a peer's own calls).
    pub async fn authenticate(&self, token: &str, loopback: bool) -> Result<Caller, ApiError> {
        if token.starts_with(SCRIPT_TOKEN_PREFIX) {
            return self.authenticate_script(token).await;
        }
        if let Some((peer_id, _)) = token.split_once('.') {
            let hash = token_hash(token);
            let cached = self
                .peer_cache
                .read()
                .expect("cache lock")
                .get(peer_id)
                .cloned();
            let row = match cached {
                Some(row) => Some(row),
                None => {
                    let row = self.store.peer(peer_id).await?;
                    row.filter(|r| r.replaced_by.is_none()).map(|r| {
                        let r = Arc::new(r);
                        self.peer_cache
                            .write()
                            .expect("cache lock")
                            .insert(peer_id.to_string(), r.clone());
                        r
                    })
                }
            };
            if let Some(row) = row.filter(|r| ct_eq(&r.token_hash, &hash)) {
                return Ok(Caller::Peer(row));
            }
        }
        // Both comparisons always run, so timing tells nothing about which one matched.
        let is_secret = ct_eq(token, &self.secret);
        let is_hub = self.hub_token.as_deref().is_some_and(|t| ct_eq(token, t));
        if is_hub || (is_secret && loopback) {
            Ok(Caller::User)
        } else if is_secret {
            Err(ApiError::unauthorized(
                "the per-user secret is accepted only from this machine (loopback); from \
                 another host use the hub token (`token` in config.toml or PEERS_TOKEN)",
            ))
        } else {
            Err(ApiError::unauthorized(
                "unknown token: a peer token that was replaced or unregistered (register \
                 again), or not the secret (local clients read <state_dir>/secret, hub clients \
                 `token` in config.toml)",
            ))
        }
    }

    /// A script token, read from the store on every request (no cache): a revoke or expiry
    /// by any broker on the database counts at the next request.
    async fn authenticate_script(&self, token: &str) -> Result<Caller, ApiError> {
        let hash = token_hash(token);
        let now = peers_core::now_ms();
        let row = self.store.script_token(&hash).await?.ok_or_else(|| {
            ApiError::unauthorized(
                "unknown script token: check it was copied whole (`peers token list` shows \
                 the names; `peers token create` makes a new one)",
            )
        })?;
        if row.revoked_ms.is_some() {
            return Err(ApiError::unauthorized(format!(
                "script token {:?} was revoked; create a new one with `peers token create`",
                row.name
            )));
        }
        if row.expires_ms.is_some_and(|e| e <= now) {
            return Err(ApiError::unauthorized(format!(
                "script token {:?} has expired; create a new one with `peers token create`",
                row.name
            )));
        }
        self.store.touch_script_token(&hash, now).await?;
        Ok(Caller::Script(Arc::new(row)))
    }

    /// Puts a fresh row in the auth cache (after it was committed).
    pub fn cache_peer(&self, row: PeerRecord) {
        self.peer_cache
            .write()
            .expect("cache lock")
            .insert(row.id.clone(), Arc::new(row));
    }

    pub fn uncache_peer(&self, peer_id: &str) {
        self.peer_cache.write().expect("cache lock").remove(peer_id);
    }

    /// Peer rows changed where this broker did not see it (another broker on the database):
    /// no cached row or lookup may be used again.
    pub fn peers_changed(&self) {
        self.directory.changed();
        self.peer_cache.write().expect("cache lock").clear();
    }
}
