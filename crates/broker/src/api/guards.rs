//! The layers every request passes before its handler: the `Host` check, no HEAD, no calls
//! while the database file is lost, JSON-only POSTs.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use peers_core::wire::ErrorCode;

use crate::SharedState;
use crate::error::ApiError;
use peers_store::StoreError;

/// Refuses a `Host` header that names neither loopback, the bind address nor a configured
/// `allowed_hosts` name: a page whose DNS name was rebound to 127.0.0.1 sends its own name.
pub async fn require_own_host(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if host_allowed(h, state.settings.bind, &state.settings.allowed_hosts) => {
            next.run(req).await
        }
        _ => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::BadHost,
            "this broker answers only to loopback (127.0.0.1, localhost, [::1]), its bind \
             address and the names in `allowed_hosts` (config.toml or PEERS_ALLOWED_HOSTS); \
             the Host header of this request names none of them",
        )
        .into_response(),
    }
}

/// Whether a `Host` header value (`name[:port]`, `[v6][:port]`) names this broker: loopback,
/// `localhost`, the bind address (any address when bound to all of them: an IP literal is
/// never the result of DNS rebinding), or one of `allowed`.
pub fn host_allowed(host: &str, bind: std::net::IpAddr, allowed: &[String]) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || tail.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || (name.contains(':') && !host.starts_with('[')) {
        return false;
    }
    if name == "localhost" {
        return true;
    }
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return ip.to_canonical().is_loopback() || ip == bind || bind.is_unspecified();
    }
    allowed.iter().any(|a| a.trim_end_matches('.') == name)
}

/// HEAD is no method of this API (axum would answer it for every GET route, body-less).
pub async fn refuse_head(req: Request, next: Next) -> Response {
    if req.method() == Method::HEAD {
        return ApiError::method_not_allowed().into_response();
    }
    next.run(req).await
}

/// Once the database file is gone, every call but health, notices and shutdown is refused
/// with 503 `storage_lost`: nothing may claim success into a file nobody can open again.
pub async fn refuse_while_storage_lost(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Response {
    let exempt = match req.uri().path() {
        "/v1/health" | "/v1/shutdown" => true,
        "/v1/notices" => req.method() == Method::GET,
        _ => false,
    };
    if !exempt && state.store.health().lost_since.is_some() {
        let location = state.store.describe().location;
        return ApiError::from(StoreError::Lost { location }).into_response();
    }
    next.run(req).await
}

/// Refuses POSTs that are not `application/json`: a web page can send a `text/plain` or form
/// POST to loopback without a preflight, but not a JSON one.
pub async fn require_json_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !json {
            return ApiError::not_json().into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_that_name_this_broker() {
        let local = "127.0.0.1".parse().unwrap();
        let hub = "10.0.0.2".parse().unwrap();
        let any = "0.0.0.0".parse().unwrap();
        let names = vec!["hub.example".to_string()];
        for h in [
            "127.0.0.1:7900",
            "127.9.9.9",
            "localhost:1",
            "LocalHost.",
            "[::1]:7900",
        ] {
            assert!(host_allowed(h, local, &[]), "{h}");
            assert!(host_allowed(h, hub, &[]), "{h}");
        }
        assert!(host_allowed("10.0.0.2:7900", hub, &[]));
        assert!(!host_allowed("10.0.0.2:7900", local, &[]));
        assert!(host_allowed("192.168.1.5:7900", any, &[]));
        assert!(host_allowed("HUB.example:7900", hub, &names));
        for h in [
            "",
            "evil.example",
            "hub.example.evil",
            "localhost.evil.example",
            "::1",
            "[::1]x",
            "127.0.0.1:http",
        ] {
            assert!(!host_allowed(h, any, &names), "{h}");
        }
    }
}
