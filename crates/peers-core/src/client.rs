//! The async client of the broker API, used by every other crate.
//!
//! One method per call in `docs/PROTOCOL.md`. The client carries one bearer credential: a
//! peer token (a session's own calls) or the user secret / hub token (registration, the human).
//!
//! TLS: an `https` broker URL is verified against `tls_ca` (a CA or the hub's self-signed
//! certificate, PEM) when one is configured, else against the system's roots; rustls with the
//! ring provider. A plain `http` URL never loads a certificate, so the hook pays nothing for
//! TLS it does not use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
        code: ErrorCode,
        message: String,
    },
    /// The broker answered, but not with what the API promises.
    #[error("the peers broker at {url} answered unexpectedly: {detail}")]
    Protocol { url: String, detail: String },
    /// TLS for an `https` broker URL could not be set up (e.g. `tls_ca` unreadable).
    #[error("cannot set up TLS for the peers broker at {url}: {reason}")]
    Tls { url: String, reason: String },
}

impl ClientError {
    /// The error code of an API error ([`ErrorCode::UnknownPeer`], …): match on this, not
    /// on the message.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
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
    /// Why TLS could not be set up; every call fails with it.
    tls_error: Option<Arc<str>>,
}

/// The `tls_ca` of this process ([`crate::Config::load`] sets it), used by clients built
/// without an explicit one.
static DEFAULT_TLS_CA: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the trust anchor for `https` broker URLs of clients built after this call.
pub fn set_default_tls_ca(path: PathBuf) {
    *DEFAULT_TLS_CA.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
}

fn default_tls_ca() -> Option<PathBuf> {
    DEFAULT_TLS_CA
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The ring provider: one per process, shared by every TLS config.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> = std::sync::OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The client TLS config for a broker URL: trusting exactly `ca` when given, else the system's
/// roots (through reqwest's platform verifier, so `None` is returned for that case).
fn tls_config(base: &str, ca: Option<&Path>) -> Result<Option<rustls::ClientConfig>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if !base.starts_with("https://") {
        // Never used for http; an empty trust store costs nothing to build.
        let roots = rustls::RootCertStore::empty();
        return Ok(Some(
            builder.with_root_certificates(roots).with_no_client_auth(),
        ));
    }
    let Some(ca) = ca else {
        // System roots: reqwest's platform verifier needs a process-wide provider.
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read tls_ca {}: {e}", ca.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_ca {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ca.display()
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("tls_ca {}: {e}", ca.display()))?;
    }
    Ok(Some(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
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

    /// A client with the process's default `tls_ca` (see [`set_default_tls_ca`]).
    pub fn with_timeouts(base_url: &str, auth: Option<String>, t: Timeouts) -> BrokerClient {
        Self::with_tls_ca(base_url, auth, t, default_tls_ca().as_deref())
    }

    /// A client that trusts exactly `tls_ca` (PEM) for an `https` URL; `None`: system roots.
    pub fn with_tls_ca(
        base_url: &str,
        auth: Option<String>,
        t: Timeouts,
        tls_ca: Option<&Path>,
    ) -> BrokerClient {
        let base = base_url.trim_end_matches('/').to_string();
        let builder = reqwest::Client::builder()
            .connect_timeout(t.connect)
            .timeout(t.request)
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy();
        let (builder, tls_error) = match tls_config(&base, tls_ca) {
            Ok(Some(cfg)) => (builder.tls_backend_preconfigured(cfg), None),
            Ok(None) => (builder, None),
            Err(e) => (builder, Some(Arc::<str>::from(e))),
        };
        let (http, tls_error) = match builder.build() {
            Ok(h) => (h, tls_error),
            Err(e) => (
                // Never used: every call fails with the error first.
                reqwest::Client::builder()
                    .tls_backend_preconfigured(
                        tls_config("http://", None)
                            .ok()
                            .flatten()
                            .expect("a plain-http TLS config always builds"),
                    )
                    .build()
                    .expect("a client with a preconfigured TLS config builds"),
                Some(Arc::<str>::from(error_chain(&e))),
            ),
        };
        BrokerClient {
            base,
            auth,
            http,
            tls_error,
        }
    }

    /// The same client with another credential (shares the connection pool).
    pub fn with_auth(&self, auth: Option<String>) -> BrokerClient {
        BrokerClient {
            base: self.base.clone(),
            auth,
            http: self.http.clone(),
            tls_error: self.tls_error.clone(),
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
        if let Some(e) = &self.tls_error {
            return Err(ClientError::Tls {
                url: self.base.clone(),
                reason: e.to_string(),
            });
        }
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
    pub async fn set_summary(&self, summary: &str) -> Result<Done, ClientError> {
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

    /// `GET /v1/messages/{id}?body=true`: the status with the body.
    pub async fn message_with_body(&self, id: i64) -> Result<MessageStatus, ClientError> {
        self.get_q(
            &format!("/v1/messages/{id}"),
            &MessageStatusQuery { body: true },
        )
        .await
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
    pub async fn add_notice(&self, req: &NoticeRequest) -> Result<Done, ClientError> {
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
