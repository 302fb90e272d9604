//! The async client of the broker API, used by every other crate.
//!
//! One method per call in `docs/PROTOCOL.md`. The client carries one bearer credential: a
//! peer token (a session's own calls) or the user secret / hub token (registration, the human).
//!
//! Failover: a client may hold several broker URLs (`broker_urls`: brokers on one shared
//! database). A call goes to the URL that answered last (sticky, shared by clones), and moves
//! on to the next URL when that one cannot be reached, so a dead broker costs one failed
//! connect, not one per call. What counts as "cannot be reached": no connection (refused,
//! connect timeout), or a 503 answer (the broker's database is down or lost: nothing was
//! stored). A request that may have reached a broker (the connection broke or timed out after
//! it was sent) is tried again elsewhere only when replaying it is harmless (reads, heartbeats,
//! long polls); a send, claim, ack or registration is not, so it fails instead of risking a
//! duplicate. Any other HTTP answer (4xx, 500) is the answer: no failover. The request timeout
//! bounds the whole call across all URLs.
//!
//! TLS: an `https` broker URL is verified against `tls_ca` (a CA or the hub's self-signed
//! certificate, PEM) when one is configured, else against the system's roots; rustls with the
//! ring provider. A plain `http` URL never loads a certificate, so the hook pays nothing for
//! TLS it does not use.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached at all (refused, timed out, reset). With several
    /// URLs, `url` lists those tried (", "-separated; [`ClientError::unreachable_urls`]) and
    /// `reason` says what happened at each.
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

    /// The broker URLs an [`ClientError::Unreachable`] call tried; empty for other errors.
    pub fn unreachable_urls(&self) -> Vec<&str> {
        match self {
            ClientError::Unreachable { url, .. } => url.split(URL_SEPARATOR).collect(),
            _ => Vec::new(),
        }
    }
}

/// Joins the URLs of an [`ClientError::Unreachable`].
const URL_SEPARATOR: &str = ", ";

#[derive(Debug, Clone)]
pub struct BrokerClient {
    /// The broker URLs, in configured order; never empty.
    bases: Arc<[String]>,
    /// Index into `bases` of the URL tried first: the one that answered last. Shared by clones
    /// (and [`BrokerClient::with_auth`]), so one process learns once which broker is alive.
    first: Arc<AtomicUsize>,
    /// The bound of a whole call (all attempts), unless the call sets its own.
    request_timeout: Duration,
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
    /// Whole-call timeout, for calls that are not long polls: it bounds every attempt at
    /// every broker URL together. `connect` bounds each connect on its own.
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
        Self::build(&[base_url.to_string()], auth, t, tls_ca)
    }

    /// A client that fails over between `urls` (see the module doc), with the process's default
    /// `tls_ca`. An empty list is the local default broker.
    pub fn with_failover(urls: &[String], auth: Option<String>, t: Timeouts) -> BrokerClient {
        Self::build(urls, auth, t, default_tls_ca().as_deref())
    }

    fn build(
        urls: &[String],
        auth: Option<String>,
        t: Timeouts,
        tls_ca: Option<&Path>,
    ) -> BrokerClient {
        let mut bases: Vec<String> = urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        if bases.is_empty() {
            bases.push("http://127.0.0.1:7900".to_string());
        }
        // One TLS setup serves every URL; it matters only when one of them is https.
        let tls_base = bases
            .iter()
            .find(|b| b.starts_with("https://"))
            .unwrap_or(&bases[0])
            .clone();
        let builder = reqwest::Client::builder()
            .connect_timeout(t.connect)
            .timeout(t.request)
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy();
        let (builder, tls_error) = match tls_config(&tls_base, tls_ca) {
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
            bases: bases.into(),
            first: Arc::new(AtomicUsize::new(0)),
            request_timeout: t.request,
            auth,
            http,
            tls_error,
        }
    }

    /// The same client with another credential (shares the connection pool and what it
    /// learnt about which broker answers).
    pub fn with_auth(&self, auth: Option<String>) -> BrokerClient {
        BrokerClient {
            auth,
            ..self.clone()
        }
    }

    /// The broker URL the next call goes to first: the one that answered last.
    pub fn base_url(&self) -> &str {
        &self.bases[self.first.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Every broker URL of this client, in configured order.
    pub fn base_urls(&self) -> &[String] {
        &self.bases
    }

    /// One API call, failing over between the URLs (see the module doc). `replayable`: the
    /// call may be sent again to another broker after it may have reached one.
    #[allow(clippy::too_many_arguments)]
    async fn call<B: Serialize, Q: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
        timeout: Option<Duration>,
        replayable: bool,
    ) -> Result<R, ClientError> {
        self.tls_ready()?;
        let deadline = Instant::now() + timeout.unwrap_or(self.request_timeout);
        let n = self.bases.len();
        let start = self.first.load(Ordering::Relaxed) % n;
        let mut unreachable: Vec<(&str, String)> = Vec::new();
        let mut refused: Option<ClientError> = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let base = self.bases[idx].as_str();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let url = format!("{base}{path}");
            let mut req = self.http.request(method.clone(), &url).timeout(left);
            if let Some(a) = &self.auth {
                req = req.bearer_auth(a);
            }
            if let Some(q) = query {
                req = req.query(q);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let answer = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.bytes().await.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            let (status, bytes) = match answer {
                Ok(a) => a,
                Err(e) => {
                    // Only a failed connect proves the request never reached this broker.
                    let go_on = e.is_connect() || replayable;
                    unreachable.push((base, error_chain(&e)));
                    if go_on {
                        continue;
                    }
                    break;
                }
            };
            if status == StatusCode::SERVICE_UNAVAILABLE {
                // The broker is up but its database is not: nothing was stored; try the next.
                refused = Some(api_error(status, &bytes, base));
                continue;
            }
            self.first.store(idx, Ordering::Relaxed);
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
                    url: base.to_string(),
                    detail: format!("{e} in {}", String::from_utf8_lossy(&bytes)),
                });
            }
            return Err(api_error(status, &bytes, base));
        }
        Err(self.no_answer(refused, unreachable))
    }

    /// Fails every call with the TLS setup's error, when there is one.
    fn tls_ready(&self) -> Result<(), ClientError> {
        match &self.tls_error {
            Some(e) => Err(ClientError::Tls {
                url: self.base_url().to_string(),
                reason: e.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The error once every URL was tried: a 503 when one answered so, else what happened
    /// at each URL.
    fn no_answer<'a>(
        &'a self,
        refused: Option<ClientError>,
        mut unreachable: Vec<(&'a str, String)>,
    ) -> ClientError {
        if let Some(e) = refused {
            return e;
        }
        if unreachable.is_empty() {
            // The deadline passed before any attempt (a zero timeout).
            unreachable.push((self.base_url(), "no time left to try".into()));
        }
        let reason = if unreachable.len() == 1 {
            unreachable[0].1.clone()
        } else {
            unreachable
                .iter()
                .map(|(u, r)| format!("{u}: {r}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        ClientError::Unreachable {
            url: unreachable
                .iter()
                .map(|(u, _)| *u)
                .collect::<Vec<_>>()
                .join(URL_SEPARATOR),
            reason,
        }
    }

    async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        self.call::<(), (), R>(Method::GET, path, None, None, None, true)
            .await
    }

    async fn get_q<Q: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        q: &Q,
    ) -> Result<R, ClientError> {
        self.call::<(), Q, R>(Method::GET, path, Some(q), None, None, true)
            .await
    }

    /// A POST that may change state: sent to a second broker only when it surely never
    /// reached the first.
    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        self.call::<B, (), R>(Method::POST, path, None, Some(body), None, false)
            .await
    }

    /// A POST whose repetition changes nothing more (a heartbeat, a summary).
    async fn post_idempotent<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        self.call::<B, (), R>(Method::POST, path, None, Some(body), None, true)
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
        self.post_idempotent("/v1/peers/heartbeat", &serde_json::json!({}))
            .await
    }

    /// `POST /v1/peers/summary` (peer token).
    pub async fn set_summary(&self, summary: &str) -> Result<Done, ClientError> {
        self.post_idempotent(
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

    /// `GET /v1/messages/{id}/thread`: the conversation the message belongs to, root first.
    pub async fn thread(&self, id: i64) -> Result<MessageThread, ClientError> {
        self.get(&format!("/v1/messages/{id}/thread")).await
    }

    /// `GET /v1/search`: full-text search, the best matches first.
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchResults, ClientError> {
        self.get_q("/v1/search", q).await
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
            true,
        )
        .await
    }

    /// `POST /v1/handovers` (peer token): a note for the next session named `to`.
    pub async fn handover(&self, req: &HandoverRequest) -> Result<HandoverResponse, ClientError> {
        self.post("/v1/handovers", req).await
    }

    /// `POST /v1/topics/subscribe` (peer token); subscribing again changes `wake`/`mute`.
    pub async fn subscribe(&self, req: &SubscribeRequest) -> Result<Subscription, ClientError> {
        self.post_idempotent("/v1/topics/subscribe", req).await
    }

    /// `POST /v1/topics/unsubscribe` (peer token).
    pub async fn unsubscribe(&self, topic: &str) -> Result<Unsubscribed, ClientError> {
        let req = UnsubscribeRequest {
            topic: topic.to_string(),
        };
        self.post_idempotent("/v1/topics/unsubscribe", &req).await
    }

    /// `POST /v1/tokens` (user secret): a script token, shown only in this answer.
    pub async fn create_token(
        &self,
        req: &TokenCreateRequest,
    ) -> Result<TokenCreated, ClientError> {
        self.post("/v1/tokens", req).await
    }

    /// `GET /v1/tokens` (user secret): every script token, never the token itself.
    pub async fn tokens(&self) -> Result<TokenList, ClientError> {
        self.get("/v1/tokens").await
    }

    /// `POST /v1/tokens/{name}/revoke` (user secret).
    pub async fn revoke_token(&self, name: &str) -> Result<TokenList, ClientError> {
        let path = format!("/v1/tokens/{}/revoke", path_segment(name));
        self.post_idempotent(&path, &serde_json::json!({})).await
    }

    /// `GET /v1/topics`.
    pub async fn topics(&self) -> Result<TopicList, ClientError> {
        self.get("/v1/topics").await
    }

    /// `GET /v1/topics/{name}/messages`: posts with bodies and readers, oldest first.
    pub async fn topic_posts(
        &self,
        topic: &str,
        q: &TopicPostsQuery,
    ) -> Result<TopicPosts, ClientError> {
        let name = topic.trim().trim_start_matches('#');
        self.get_q(&format!("/v1/topics/{}/messages", path_segment(name)), q)
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

    /// `POST /v1/dashboard/code` (user secret or hub token): a one-time dashboard login code.
    pub async fn dashboard_code(&self, remote: bool) -> Result<DashboardCode, ClientError> {
        self.post("/v1/dashboard/code", &DashboardCodeRequest { remote })
            .await
    }

    /// `POST /v1/dashboard/logout-all` (user secret or hub token): ends every dashboard login.
    pub async fn dashboard_logout_all(&self) -> Result<LoggedOut, ClientError> {
        self.post_idempotent("/v1/dashboard/logout-all", &serde_json::json!({}))
            .await
    }

    /// `POST /v1/shutdown` (user secret).
    pub async fn shutdown(&self) -> Result<ShutdownResponse, ClientError> {
        self.post("/v1/shutdown", &serde_json::json!({})).await
    }
}

/// How long an open event stream may stay silent (no event, no keep-alive comment) before
/// it is taken for dead and opened again.
pub const EVENTS_IDLE: Duration = Duration::from_secs(45);

/// The first and the longest pause between attempts to reopen `/v1/events` while the broker
/// does not answer (doubling in between).
pub const EVENTS_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(5));

type SseItems = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<String>,
                >,
            > + Send,
    >,
>;

/// An open `GET /v1/events` ([`BrokerClient::events`]): the broker's events as they happen.
pub struct EventStream {
    items: SseItems,
    url: String,
}

/// One event off the stream, with the id to resume after it (`Last-Event-ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedEvent {
    pub id: Option<String>,
    pub event: Event,
}

impl EventStream {
    /// The next event; `None` once the stream ended (the broker closed it, went silent for
    /// [`EVENTS_IDLE`], or the connection broke: the error says which). Events of a type this
    /// version does not know are skipped.
    pub async fn next(&mut self) -> Option<Result<StreamedEvent, ClientError>> {
        use futures_util::StreamExt;
        loop {
            let item = match self.items.next().await? {
                Ok(item) => item,
                Err(e) => {
                    return Some(Err(ClientError::Unreachable {
                        url: self.url.clone(),
                        reason: format!("the event stream broke: {e}"),
                    }));
                }
            };
            if item.data.is_empty() {
                continue;
            }
            let id = Some(item.id).filter(|i| !i.is_empty());
            match serde_json::from_str::<Event>(&item.data) {
                Ok(event) => return Some(Ok(StreamedEvent { id, event })),
                // A newer broker's event type: nothing this client can show.
                Err(_) if serde_json::from_str::<serde_json::Value>(&item.data).is_ok() => {}
                Err(e) => {
                    return Some(Err(ClientError::Protocol {
                        url: self.url.clone(),
                        detail: format!("{e} in event {}", item.data),
                    }));
                }
            }
        }
    }
}

/// `bytes`, failing once nothing arrives for `idle`, ending after the first error.
fn idle_bounded<S, B, E>(
    bytes: S,
    idle: Duration,
) -> impl futures_util::Stream<Item = Result<B, String>>
where
    S: futures_util::Stream<Item = Result<B, E>> + Send + 'static,
    E: std::error::Error + 'static,
{
    use futures_util::StreamExt;
    futures_util::stream::unfold(Some(Box::pin(bytes)), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), Some(s))),
            Ok(Some(Err(e))) => Some((Err(error_chain(&e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(format!("nothing arrived for {} s", idle.as_secs())),
                None,
            )),
        }
    })
}

impl BrokerClient {
    /// `GET /v1/events` (user secret or hub token): opens the live event stream, resuming
    /// after `last_event_id` when given. Fails over between the URLs like any read; the
    /// stream itself has no overall timeout, only [`EVENTS_IDLE`].
    pub async fn events(&self, last_event_id: Option<&str>) -> Result<EventStream, ClientError> {
        use eventsource_stream::Eventsource;
        let (resp, url) = self
            .open_stream("/v1/events", None::<&()>, |req| {
                let req = req.header(reqwest::header::ACCEPT, "text/event-stream");
                match last_event_id {
                    Some(id) => req.header("Last-Event-ID", id),
                    None => req,
                }
            })
            .await?;
        let items = idle_bounded(resp.bytes_stream(), EVENTS_IDLE).eventsource();
        Ok(EventStream {
            items: Box::pin(items),
            url,
        })
    }

    /// `GET /v1/export` (user secret or hub token): every message on the broker, one JSON
    /// line ([`ExportedMessage`]) at a time, as the broker streams them.
    pub async fn export(&self, q: &ExportQuery) -> Result<ExportStream, ClientError> {
        use futures_util::StreamExt;
        let (resp, url) = self.open_stream("/v1/export", Some(q), |req| req).await?;
        let chunks = resp.bytes_stream().map(|r| r.map(|b| b.to_vec()));
        Ok(ExportStream {
            bytes: Box::pin(idle_bounded(chunks, EXPORT_IDLE)),
            buf: Vec::new(),
            url,
        })
    }

    /// Opens a GET whose answer streams, failing over between the URLs like any read: the
    /// response (status 2xx) and the URL that gave it. Only the wait for the status line is
    /// bounded by the request timeout; the body has no overall timeout.
    async fn open_stream<Q: Serialize>(
        &self,
        path: &str,
        query: Option<&Q>,
        prepare: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, String), ClientError> {
        self.tls_ready()?;
        let n = self.bases.len();
        let start = self.first.load(Ordering::Relaxed) % n;
        let mut unreachable: Vec<(&str, String)> = Vec::new();
        let mut refused: Option<ClientError> = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let base = self.bases[idx].as_str();
            // No whole-request bound: the answer streams for as long as it takes.
            let mut req = prepare(
                self.http
                    .get(format!("{base}{path}"))
                    .timeout(Duration::from_secs(366 * 86_400)),
            );
            if let Some(a) = &self.auth {
                req = req.bearer_auth(a);
            }
            if let Some(q) = query {
                req = req.query(q);
            }
            let resp = match tokio::time::timeout(self.request_timeout, req.send()).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    unreachable.push((base, error_chain(&e)));
                    continue;
                }
                Err(_) => {
                    unreachable.push((base, "no answer in time".into()));
                    continue;
                }
            };
            let status = resp.status();
            if !status.is_success() {
                let bytes = tokio::time::timeout(self.request_timeout, resp.bytes())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let e = api_error(status, &bytes, base);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    refused = Some(e);
                    continue;
                }
                self.first.store(idx, Ordering::Relaxed);
                return Err(e);
            }
            self.first.store(idx, Ordering::Relaxed);
            return Ok((resp, base.to_string()));
        }
        Err(self.no_answer(refused, unreachable))
    }
}

/// How long an export's answer may stay silent before it is taken for dead.
pub const EXPORT_IDLE: Duration = Duration::from_secs(60);

/// An open `GET /v1/export` ([`BrokerClient::export`]).
pub struct ExportStream {
    bytes: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, String>> + Send>>,
    buf: Vec<u8>,
    url: String,
}

impl ExportStream {
    /// The next line (one [`ExportedMessage`] as JSON, without its newline); `None` at the
    /// end. A stream that breaks, or ends in the middle of a line, is an error: the export is
    /// incomplete.
    pub async fn next_line(&mut self) -> Option<Result<String, ClientError>> {
        use futures_util::StreamExt;
        loop {
            if let Some(n) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=n).take(n).collect();
                return Some(String::from_utf8(line).map_err(|e| ClientError::Protocol {
                    url: self.url.clone(),
                    detail: format!("an export line is not UTF-8: {e}"),
                }));
            }
            match self.bytes.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Some(Err(ClientError::Unreachable {
                        url: self.url.clone(),
                        reason: format!("the export broke off: {e}"),
                    }));
                }
                None if self.buf.is_empty() => return None,
                None => {
                    self.buf.clear();
                    return Some(Err(ClientError::Protocol {
                        url: self.url.clone(),
                        detail: "the export ended in the middle of a line".into(),
                    }));
                }
            }
        }
    }
}

/// What an [`EventFollower`] saw.
// One value per event, moved once: boxing the event would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The stream is open (again): what was shown before may be stale, fetch it. Events
    /// missed while it was closed follow when the broker still holds them, else an
    /// [`Event::Resync`].
    Connected,
    Event(Event),
    /// The broker does not answer (or refused the stream); the next call tries again after
    /// `retry_in`. A state to show, not an error to exit on.
    Down {
        reason: String,
        retry_in: Duration,
        /// The error was an answer (e.g. 401), not silence: trying again will not help until
        /// something changes, but it is tried all the same.
        refused: bool,
    },
}

/// `GET /v1/events`, followed for good: reconnects by itself with `Last-Event-ID`, backing
/// off ([`EVENTS_BACKOFF`]) while the broker does not answer.
pub struct EventFollower {
    client: BrokerClient,
    stream: Option<EventStream>,
    last_id: Option<String>,
    backoff: Duration,
    /// Wait this long before the next attempt.
    pause: Option<Duration>,
    /// The stream just ended: one quiet reconnect before reporting the broker down.
    quiet_retry: bool,
}

impl EventFollower {
    pub fn new(client: BrokerClient) -> EventFollower {
        EventFollower {
            client,
            stream: None,
            last_id: None,
            backoff: EVENTS_BACKOFF.0,
            pause: None,
            quiet_retry: false,
        }
    }

    /// The id of the last event seen (what a reconnect resumes after).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The next thing to report. Never fails: a broker that does not answer is
    /// [`Followed::Down`], and the call after it tries again.
    pub async fn next(&mut self) -> Followed {
        loop {
            if let Some(s) = self.stream.as_mut() {
                match s.next().await {
                    Some(Ok(e)) => {
                        if e.id.is_some() {
                            self.last_id = e.id;
                        }
                        return Followed::Event(e.event);
                    }
                    Some(Err(_)) | None => {
                        self.stream = None;
                        self.quiet_retry = true;
                    }
                }
            }
            if let Some(p) = self.pause.take() {
                tokio::time::sleep(p).await;
            }
            match self.client.events(self.last_id.as_deref()).await {
                Ok(s) => {
                    self.stream = Some(s);
                    self.backoff = EVENTS_BACKOFF.0;
                    self.quiet_retry = false;
                    return Followed::Connected;
                }
                Err(e) => {
                    let retry_in = self.backoff;
                    self.backoff = (self.backoff * 2).min(EVENTS_BACKOFF.1);
                    self.pause = Some(retry_in);
                    if std::mem::take(&mut self.quiet_retry) {
                        continue;
                    }
                    return Followed::Down {
                        refused: !e.is_unreachable() && e.status() != Some(503),
                        reason: e.to_string(),
                        retry_in,
                    };
                }
            }
        }
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

    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicU32;

    /// Reads a request up to the end of its head (and what came with it).
    fn read_head(conn: &mut std::net::TcpStream) -> Vec<u8> {
        let mut buf = [0u8; 8192];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        head
    }

    /// A loopback server counting the connections it accepts; each is answered by `reply`
    /// (`None`: closed at once, before any response).
    struct Fake {
        url: String,
        accepted: Arc<AtomicU32>,
    }

    fn fake(reply: Option<(u16, &'static str)>) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let accepted = Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let Some((status, body)) = reply else {
                    drop(conn);
                    continue;
                };
                // Read the head (and a small body); then answer and close.
                read_head(&mut conn);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: \
                     {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Fake { url, accepted }
    }

    const HEALTH: &str = r#"{"ok":true,"version":"t","uptime_ms":1,"pid":1,"machine_id":"m","host":"h","peers_alive":0,"queued":0}"#;

    fn dead_url() -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    }

    fn client(urls: &[&str]) -> BrokerClient {
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        BrokerClient::with_failover(&urls, None, Timeouts::default())
    }

    #[tokio::test]
    async fn the_broker_that_answered_is_tried_first_next_time() {
        let dropper = fake(None);
        let live = fake(Some((200, HEALTH)));
        let c = client(&[&dropper.url, &live.url]);
        for _ in 0..3 {
            c.health().await.unwrap();
        }
        assert_eq!(c.base_url(), live.url);
        // One failed attempt at the broken broker, not one per call; clones share it.
        assert_eq!(dropper.accepted.load(Ordering::SeqCst), 1);
        c.with_auth(Some("t".into())).health().await.unwrap();
        assert_eq!(dropper.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(live.accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_refused_connect_fails_over_even_for_a_send() {
        let live = fake(Some((
            400,
            r#"{"error":{"code":"unknown_peer","message":"no"}}"#,
        )));
        let dead = dead_url();
        let c = client(&[&dead, &live.url]);
        let req = SendRequest {
            tags: vec![],
            to: "x".into(),
            message: "m".into(),
            reply_to: None,
            scope: None,
        };
        let e = c.send(&req).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UnknownPeer), "{e:?}");
        assert_eq!(live.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_send_that_may_have_arrived_is_not_sent_again() {
        let dropper = fake(None);
        let live = fake(Some((200, HEALTH)));
        let c = client(&[&dropper.url, &live.url]);
        let req = SendRequest {
            tags: vec![],
            to: "x".into(),
            message: "m".into(),
            reply_to: None,
            scope: None,
        };
        let e = c.send(&req).await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert_eq!(e.unreachable_urls(), [dropper.url.as_str()]);
        assert_eq!(live.accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_http_error_is_the_answer_but_503_fails_over() {
        let refusing = fake(Some((
            401,
            r#"{"error":{"code":"unauthorized","message":"no"}}"#,
        )));
        let live = fake(Some((200, HEALTH)));
        let c = client(&[&refusing.url, &live.url]);
        let e = c.health().await.unwrap_err();
        assert_eq!(e.status(), Some(401), "{e:?}");
        assert_eq!(live.accepted.load(Ordering::SeqCst), 0);

        let no_db = fake(Some((
            503,
            r#"{"error":{"code":"storage_unavailable","message":"db down"}}"#,
        )));
        let c = client(&[&no_db.url, &live.url]);
        c.health().await.unwrap();
        assert_eq!(c.base_url(), live.url);
        // Every broker's database down: the 503 is the answer.
        let c = client(&[&no_db.url, &dead_url()]);
        let e = c.health().await.unwrap_err();
        assert_eq!(e.status(), Some(503), "{e:?}");
    }

    #[tokio::test]
    async fn every_broker_dead_names_each() {
        let (a, b) = (dead_url(), dead_url());
        let e = client(&[&a, &b]).health().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert_eq!(e.unreachable_urls(), [a.as_str(), b.as_str()]);
        let text = e.to_string();
        assert!(
            text.contains(&format!("{a}: ")) && text.contains(&format!("{b}: ")),
            "{text}"
        );
    }

    /// A loopback SSE server: connection `i` gets `streams[i]` (raw SSE text) and is then
    /// closed; the request heads it read are kept.
    fn sse_server(streams: Vec<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for body in streams {
                let Ok((mut conn, _)) = l.accept() else {
                    return;
                };
                let head = read_head(&mut conn);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).to_lowercase());
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: \
                     close\r\n\r\n{body}"
                );
            }
        });
        (url, heads)
    }

    const PEERS_EVENT: &str = r#"{"type":"peers","change":"registered","peer_ids":["p1"]}"#;

    #[tokio::test]
    async fn the_follower_resumes_after_the_last_event_id() {
        let first: &'static str = Box::leak(
            format!(
                ": keep-alive\n\nid: b-1\ndata: {PEERS_EVENT}\n\n\
                 data: {{\"type\":\"from_the_future\"}}\n\n\
                 id: b-2\ndata: {{\"type\":\"resync\",\"why\":\"missed\"}}\n\n"
            )
            .into_boxed_str(),
        );
        let second: &'static str =
            Box::leak(format!("id: b-3\ndata: {PEERS_EVENT}\n\n").into_boxed_str());
        let (url, heads) = sse_server(vec![first, second]);
        let mut f = EventFollower::new(BrokerClient::new(&url, Some("s3cret".into())));
        assert_eq!(f.next().await, Followed::Connected);
        let peers = Followed::Event(Event::Peers {
            change: PeerChange::Registered,
            peer_ids: vec!["p1".into()],
        });
        assert_eq!(f.next().await, peers);
        // The unknown type is skipped.
        assert_eq!(
            f.next().await,
            Followed::Event(Event::Resync {
                why: ResyncReason::Missed,
                peer_id: None
            })
        );
        assert_eq!(f.last_event_id(), Some("b-2"));
        // The server closed the stream: a quiet reconnect, resuming after b-2.
        assert_eq!(f.next().await, Followed::Connected);
        assert_eq!(f.next().await, peers);
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert!(
            heads[0].contains("authorization: bearer s3cret"),
            "{}",
            heads[0]
        );
        assert!(
            heads[0].contains("accept: text/event-stream"),
            "{}",
            heads[0]
        );
        assert!(!heads[0].contains("last-event-id"), "{}", heads[0]);
        assert!(heads[1].contains("last-event-id: b-2"), "{}", heads[1]);
    }

    #[tokio::test]
    async fn a_dead_broker_is_a_state_with_a_growing_pause() {
        let mut f = EventFollower::new(client(&[&dead_url()]));
        let mut pauses = Vec::new();
        for _ in 0..3 {
            match f.next().await {
                Followed::Down {
                    retry_in, refused, ..
                } => {
                    assert!(!refused);
                    pauses.push(retry_in);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            pauses,
            [250, 500, 1000].map(Duration::from_millis),
            "backs off"
        );
    }

    #[tokio::test]
    async fn a_refused_stream_says_why() {
        let no = fake(Some((
            401,
            r#"{"error":{"code":"unauthorized","message":"bad secret"}}"#,
        )));
        match EventFollower::new(client(&[&no.url])).next().await {
            Followed::Down {
                reason, refused, ..
            } => {
                assert!(refused);
                assert_eq!(reason, "bad secret");
            }
            other => panic!("{other:?}"),
        }
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
