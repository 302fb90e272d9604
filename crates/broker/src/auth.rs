//! Who is calling: a peer (its own token) or the human (the per-user secret, the hub token,
//! or a dashboard session cookie: see [`crate::logins`]). The broker takes a sender's identity from here, never from a request body.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use peers_store::PeerRecord;

/// The authenticated caller of a request.
#[derive(Clone)]
pub enum Caller {
    Peer(Arc<PeerRecord>),
    User,
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
            Caller::User => None,
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
        state.authenticate(token, from_loopback(parts)).await
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
