//! The async client of the broker API, used by every other crate.
//!
//! One method per call in `docs/PROTOCOL.md`. The client carries one bearer credential: a
//! peer token (a session's own calls) or the user secret / hub token (registration, the human).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached at all (refused, timed out, reset).
    #[error("cannot reach the peers broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The broker answered with an error body.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The broker answered, but not with what the API promises.
    #[error("the peers broker at {url} answered unexpectedly: {detail}")]
    Protocol { url: String, detail: String },
}

impl ClientError {
    /// The error code of an API error (`unknown_peer`, `unauthorized`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

#[derive(Debug, Clone)]
pub struct BrokerClient {
    base: String,
    auth: Option<String>,
    http: reqwest::Client,
}

/// Timeouts of a client. The hook uses tight ones; interactive tools generous ones.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Whole-request timeout, for calls that are not long polls.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(15),
        }
    }
}

impl BrokerClient {
    /// A client for the broker at `base_url` (`http://127.0.0.1:7900`) sending `auth` as the
    /// bearer credential.
    pub fn new(base_url: &str, auth: Option<String>) -> BrokerClient {
        Self::with_timeouts(base_url, auth, Timeouts::default())
    }

    pub fn with_timeouts(base_url: &str, auth: Option<String>, t: Timeouts) -> BrokerClient {
        let http = reqwest::Client::builder()
            .connect_timeout(t.connect)
            .timeout(t.request)
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("building an HTTP client without TLS cannot fail");
        BrokerClient {
            base: base_url.trim_end_matches('/').to_string(),
            auth,
            http,
        }
    }

    /// The same client with another credential (shares the connection pool).
    pub fn with_auth(&self, auth: Option<String>) -> BrokerClient {
        BrokerClient {
            base: self.base.clone(),
            auth,
            http: self.http.clone(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize, Q: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<R, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(a) = &self.auth {
            req = req.bearer_auth(a);
        }
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
                url: self.base.clone(),
                detail: format!("{e} in {}", String::from_utf8_lossy(&bytes)),
            });
        }
        Err(api_error(status, &bytes, &self.base))
    }

    async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        self.call::<(), (), R>(Method::GET, path, None, None, None)
            .await
    }

    async fn get_q<Q: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        q: &Q,
    ) -> Result<R, ClientError> {
        self.call::<(), Q, R>(Method::GET, path, Some(q), None, None)
            .await
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        self.call::<B, (), R>(Method::POST, path, None, Some(body), None)
            .await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/v1/health").await
    }

    /// `POST /v1/peers/register` (user secret or hub token).
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        self.post("/v1/peers/register", req).await
    }

    /// `POST /v1/peers/heartbeat` (peer token).
    pub async fn heartbeat(&self) -> Result<HeartbeatResponse, ClientError> {
        self.post("/v1/peers/heartbeat", &serde_json::json!({}))
            .await
    }

    /// `POST /v1/peers/summary` (peer token).
    pub async fn set_summary(&self, summary: &str) -> Result<Ok, ClientError> {
        self.post(
            "/v1/peers/summary",
            &SummaryRequest {
                summary: summary.to_string(),
            },
        )
        .await
    }

    /// `POST /v1/peers/unregister` (peer token).
    pub async fn unregister(&self) -> Result<UnregisterResponse, ClientError> {
        self.post("/v1/peers/unregister", &serde_json::json!({}))
            .await
    }

    /// `GET /v1/peers`.
    pub async fn list_peers(&self, q: &ListPeersQuery) -> Result<PeerList, ClientError> {
        self.get_q("/v1/peers", q).await
    }

    /// `GET /v1/peers/{name_or_id}`: a peer id, name or `name@host`.
    pub async fn find_peer(&self, name_or_id: &str) -> Result<PeerInfo, ClientError> {
        self.get(&format!("/v1/peers/{}", path_segment(name_or_id)))
            .await
    }

    /// `POST /v1/messages`.
    pub async fn send(&self, req: &SendRequest) -> Result<SendResponse, ClientError> {
        self.post("/v1/messages", req).await
    }

    /// `GET /v1/messages/{id}`.
    pub async fn message_status(&self, id: i64) -> Result<MessageStatus, ClientError> {
        self.get(&format!("/v1/messages/{id}")).await
    }

    /// `GET /v1/messages` (user secret): the message log, newest first.
    pub async fn messages(&self, q: &HistoryQuery) -> Result<MessageLog, ClientError> {
        self.get_q("/v1/messages", q).await
    }

    /// `POST /v1/inbox/claim` (peer token).
    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, ClientError> {
        self.post("/v1/inbox/claim", req).await
    }

    /// `POST /v1/inbox/ack` (peer token).
    pub async fn ack(&self, req: &AckRequest) -> Result<AckResponse, ClientError> {
        self.post("/v1/inbox/ack", req).await
    }

    /// `GET /v1/inbox` (peer token): queued and leased mail, nothing consumed.
    pub async fn peek(&self) -> Result<InboxList, ClientError> {
        self.get("/v1/inbox").await
    }

    /// `GET /v1/inbox/history` (peer token): mail already delivered to the caller.
    pub async fn history(&self, q: &HistoryQuery) -> Result<InboxList, ClientError> {
        self.get_q("/v1/inbox/history", q).await
    }

    /// `GET /v1/inbox/wait` (peer token): a long poll; the request timeout is stretched to
    /// cover the wait.
    pub async fn wait(&self, q: &WaitQuery) -> Result<WaitResponse, ClientError> {
        let hold = Duration::from_millis(q.timeout_ms.unwrap_or(25_000)) + Duration::from_secs(5);
        self.call::<(), WaitQuery, WaitResponse>(
            Method::GET,
            "/v1/inbox/wait",
            Some(q),
            None,
            Some(hold),
        )
        .await
    }

    /// `GET /v1/notices` (user secret).
    pub async fn notices(&self) -> Result<NoticeList, ClientError> {
        self.get("/v1/notices").await
    }

    /// `POST /v1/notices` (peer token or user secret): records a notice for the human.
    pub async fn add_notice(&self, req: &NoticeRequest) -> Result<Ok, ClientError> {
        self.post("/v1/notices", req).await
    }

    /// `POST /v1/shutdown` (user secret).
    pub async fn shutdown(&self) -> Result<ShutdownResponse, ClientError> {
        self.post("/v1/shutdown", &serde_json::json!({})).await
    }
}

fn api_error(status: StatusCode, bytes: &[u8], base: &str) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => ClientError::Protocol {
            url: base.to_string(),
            detail: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        },
    }
}

/// Percent-encodes a name for use as one path segment (`@` and unreserved characters stay).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("api@box"), "api@box");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    #[tokio::test]
    async fn a_dead_broker_is_unreachable_not_a_panic() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = BrokerClient::new(&format!("http://127.0.0.1:{port}"), None);
        let err = c.health().await.unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }
}
