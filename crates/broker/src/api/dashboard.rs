//! The web dashboard: its pages at `/` (assets embedded in the binary) and its login calls
//! under `/v1/dashboard/…`. Off with `dashboard = false` (everything here answers 404).
//!
//! Login: `peers dashboard` asks for a one-time code (user secret or hub token), the login
//! page exchanges it once for an `HttpOnly; SameSite=Strict` session cookie (`Secure` under
//! TLS); every state change made with the cookie needs the session's CSRF token
//! (`X-Peers-CSRF`). Without a session, `/` sends the browser to the login page.

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{self, AUTHORIZATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

use super::extract::{ApiJson, ApiPath};
use crate::SharedState;
use crate::auth::{Caller, from_loopback};
use crate::error::{ApiError, ApiResult};
use crate::logins::{COOKIE, CodeRefused, cookie_value};
use peers_core::now_ms;
use peers_core::wire::*;

/// Pages: scripts and styles only from the broker itself, no inline script, nothing framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/login.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/style.css"),
    ),
];
const INDEX: &str = include_str!("../../assets/index.html");
const LOGIN: &str = include_str!("../../assets/login.html");

fn off() -> ApiError {
    ApiError::not_found("the dashboard is turned off (`dashboard = false` in config.toml)")
}

fn require_on(state: &SharedState) -> Result<(), ApiError> {
    if state.settings.dashboard {
        Ok(())
    } else {
        Err(off())
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard for a browser with a session, else a redirect to the login page.
pub async fn index(State(state): State<SharedState>, req: Request) -> Response {
    if !state.settings.dashboard {
        return off().into_response();
    }
    let (mut parts, _) = req.into_parts();
    let signed_in = cookie_value(&parts).is_some()
        && matches!(
            Caller::from_request_parts(&mut parts, &state).await,
            Ok(Caller::User)
        );
    if signed_in {
        page("text/html; charset=utf-8", INDEX)
    } else {
        Redirect::to("/login").into_response()
    }
}

/// `GET /login`: the page that exchanges the code in its address.
pub async fn login_page(State(state): State<SharedState>) -> Response {
    if !state.settings.dashboard {
        return off().into_response();
    }
    page("text/html; charset=utf-8", LOGIN)
}

/// `GET /assets/{name}`: the scripts and styles (the same for everyone; no data in them).
pub async fn asset(State(state): State<SharedState>, ApiPath(name): ApiPath<String>) -> Response {
    if !state.settings.dashboard {
        return off().into_response();
    }
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => page(ty, body),
        None => ApiError::not_found(format!("no asset {name:?}")).into_response(),
    }
}

/// `POST /v1/dashboard/code`: a one-time login code (bearer only: a session cannot mint
/// more sessions). A code for another machine needs the hub token.
pub async fn code(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<DashboardCodeRequest>,
) -> ApiResult<DashboardCode> {
    require_on(&state)?;
    caller.require_user()?;
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(bearer) = bearer else {
        return Err(ApiError::forbidden(
            "login codes are given to the user secret or the hub token (`peers dashboard`), \
             not to a dashboard session",
        ));
    };
    if req.remote && !state.is_hub_token(bearer) {
        return Err(ApiError::forbidden(
            "a login code for another machine needs the hub token (`token` in config.toml or \
             PEERS_TOKEN); on the broker's own machine run `peers dashboard` without --hub",
        ));
    }
    let (code, expires_ms) = state.logins.new_code(req.remote, now_ms());
    Ok(Json(DashboardCode {
        path: format!("/login#code={code}"),
        code,
        expires_ms,
    }))
}

/// `POST /v1/dashboard/login`: exchanges a code, once, for the session cookie.
pub async fn login(
    State(state): State<SharedState>,
    parts: Parts,
    ApiJson(req): ApiJson<DashboardLogin>,
) -> Result<Response, ApiError> {
    require_on(&state)?;
    let hours = state.settings.dashboard_session_hours as i64;
    let session_ms = hours.saturating_mul(3_600_000);
    let (cookie, session) = state
        .logins
        .use_code(&req.code, from_loopback(&parts), now_ms(), session_ms)
        .map_err(refused)?;
    let set = cookie_header(&cookie, hours.saturating_mul(3600), state.settings.tls);
    let body = DashboardSession {
        csrf: session.csrf,
        expires_ms: session.expires_ms,
    };
    Ok(([(header::SET_COOKIE, set)], Json(body)).into_response())
}

/// `GET /v1/dashboard/session`: the CSRF token of the caller's session.
pub async fn session(
    State(state): State<SharedState>,
    parts: Parts,
) -> ApiResult<DashboardSession> {
    require_on(&state)?;
    let session = cookie_value(&parts)
        .and_then(|c| state.logins.session(c, now_ms()))
        .ok_or_else(|| {
            ApiError::unauthorized("not logged in to the dashboard; run `peers dashboard`")
        })?;
    Ok(Json(DashboardSession {
        csrf: session.csrf,
        expires_ms: session.expires_ms,
    }))
}

/// `POST /v1/dashboard/logout-all`: ends every dashboard session and voids unused codes.
pub async fn logout_all(State(state): State<SharedState>, caller: Caller) -> ApiResult<LoggedOut> {
    require_on(&state)?;
    caller.require_user()?;
    Ok(Json(LoggedOut {
        sessions: state.logins.end_all(),
    }))
}

fn cookie_header(value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("hex and ascii")
}

fn refused(why: CodeRefused) -> ApiError {
    match why {
        CodeRefused::Spent => ApiError::unauthorized(
            "this login link was used already or has expired (links last 2 minutes and work \
             once); run `peers dashboard` for a new one",
        ),
        CodeRefused::NotHere => ApiError::forbidden(
            "this login link works only in a browser on the broker's machine; from another \
             machine run `peers dashboard --hub` (it needs the hub token)",
        ),
    }
}
