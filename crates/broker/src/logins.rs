//! Dashboard logins: one-time codes (`peers dashboard`) exchanged once for a session cookie,
//! each session with its CSRF token. Both live in memory only: a broker restart logs every
//! browser out (run `peers dashboard` again). Only hashes of codes and cookies are kept.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::request::Parts;
use axum::http::{Method, header};

use crate::auth::{Caller, ct_eq, token_hash};
use crate::error::ApiError;
use crate::{AppState, auth};

/// How long a login code may be used.
pub const CODE_TTL_MS: i64 = 120_000;
/// The session cookie's name.
pub const COOKIE: &str = "peers_session";
/// The header that carries the CSRF token of a cookie-authenticated state change.
pub const CSRF_HEADER: &str = "x-peers-csrf";

struct Code {
    expires_ms: i64,
    remote: bool,
}

#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    pub expires_ms: i64,
}

/// The codes not used yet and the sessions not expired, by hash.
#[derive(Default)]
pub struct Logins {
    codes: Mutex<HashMap<String, Code>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Why a code could not be used.
pub enum CodeRefused {
    /// Unknown, used already, or expired.
    Spent,
    /// A code for loopback, used from another machine.
    NotHere,
}

impl Logins {
    /// A new code, valid for [`CODE_TTL_MS`].
    pub fn new_code(&self, remote: bool, now: i64) -> (String, i64) {
        let code = peers_core::paths::random_hex(16);
        let expires_ms = now + CODE_TTL_MS;
        let mut codes = self.codes.lock().expect("codes lock");
        codes.retain(|_, c| c.expires_ms > now);
        codes.insert(token_hash(&code), Code { expires_ms, remote });
        (code, expires_ms)
    }

    /// Uses a code (once, whatever the outcome) and opens a session: its cookie value and
    /// the session.
    pub fn use_code(
        &self,
        code: &str,
        loopback: bool,
        now: i64,
        session_ms: i64,
    ) -> Result<(String, Session), CodeRefused> {
        let found = self
            .codes
            .lock()
            .expect("codes lock")
            .remove(&token_hash(code.trim()));
        let code = found
            .filter(|c| c.expires_ms > now)
            .ok_or(CodeRefused::Spent)?;
        if !loopback && !code.remote {
            return Err(CodeRefused::NotHere);
        }
        let cookie = peers_core::paths::random_hex(32);
        let session = Session {
            csrf: peers_core::paths::random_hex(16),
            expires_ms: now + session_ms,
        };
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, s| s.expires_ms > now);
        sessions.insert(token_hash(&cookie), session.clone());
        Ok((cookie, session))
    }

    /// The session a cookie value names, if it has not expired.
    pub fn session(&self, cookie: &str, now: i64) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let hash = token_hash(cookie);
        match sessions.get(&hash) {
            Some(s) if s.expires_ms > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(&hash);
                None
            }
            None => None,
        }
    }

    /// Ends every session and voids every code; how many sessions there were.
    pub fn end_all(&self) -> u64 {
        self.codes.lock().expect("codes lock").clear();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let n = sessions.len() as u64;
        sessions.clear();
        n
    }
}

/// The value of the session cookie in a request, if any.
pub fn cookie_value(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

impl AppState {
    /// The caller a dashboard session cookie makes of a request without `Authorization`:
    /// the human, once the session is valid and, for anything but a GET, the request carries
    /// the session's CSRF token. `None` without a cookie (or with the dashboard off).
    pub fn session_caller(&self, parts: &Parts) -> Option<Result<Caller, ApiError>> {
        if !self.settings.dashboard {
            return None;
        }
        let cookie = cookie_value(parts)?;
        let Some(session) = self.logins.session(cookie, peers_core::now_ms()) else {
            return Some(Err(ApiError::unauthorized(
                "the dashboard session expired or was ended; run `peers dashboard` to log in again",
            )));
        };
        if parts.method != Method::GET {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct_eq(sent, &session.csrf) {
                return Some(Err(ApiError::forbidden(
                    "a change made with the dashboard's cookie needs its CSRF token in \
                     `X-Peers-CSRF` (reload the dashboard)",
                )));
            }
        }
        Some(Ok(Caller::User))
    }

    /// Whether a bearer token is the hub token (not the per-user secret).
    pub fn is_hub_token(&self, token: &str) -> bool {
        self.hub_token
            .as_deref()
            .is_some_and(|t| auth::ct_eq(t, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once_before_it_expires_and_only_where_it_may() {
        let logins = Logins::default();
        let (code, expires) = logins.new_code(false, 1_000);
        assert_eq!(expires, 1_000 + CODE_TTL_MS);
        let (cookie, s) = logins.use_code(&code, true, 2_000, 60_000).ok().unwrap();
        assert!(
            logins
                .session(&cookie, 3_000)
                .is_some_and(|x| x.csrf == s.csrf)
        );
        assert!(matches!(
            logins.use_code(&code, true, 2_000, 60_000),
            Err(CodeRefused::Spent)
        ));
        assert!(logins.session(&cookie, 62_001).is_none(), "session expired");

        let (late, _) = logins.new_code(false, 1_000);
        assert!(matches!(
            logins.use_code(&late, true, 1_000 + CODE_TTL_MS, 60_000),
            Err(CodeRefused::Spent)
        ));
        let (local, _) = logins.new_code(false, 1_000);
        assert!(matches!(
            logins.use_code(&local, false, 2_000, 60_000),
            Err(CodeRefused::NotHere)
        ));
        let (remote, _) = logins.new_code(true, 1_000);
        assert!(logins.use_code(&remote, false, 2_000, 60_000).is_ok());
        assert_eq!(logins.end_all(), 1);
    }
}
