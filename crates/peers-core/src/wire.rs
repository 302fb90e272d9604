//! Request and response bodies of the broker's HTTP API (`/v1/…`), documented with an example
//! of each call in `docs/PROTOCOL.md`.
//!
//! Conventions: times are epoch milliseconds (`*_ms`), ids are strings for peers and integers
//! for messages, every error is an [`ErrorBody`]. Optional fields are omitted when empty so the
//! JSON stays small on the hook's path.

use serde::{Deserialize, Serialize};

/// Default and maximum size of one message body, in bytes. The broker answers 413 above it.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// `{"error": {"code": "...", "message": "..."}}`, sent with a fitting HTTP status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// A stable machine-readable code: match on it, not on the message.
    pub code: ErrorCode,
    /// A sentence for a person or a model: what went wrong and what to do next.
    pub message: String,
}

/// The stable error codes, on the wire as `snake_case` strings. New codes may be added; a
/// client reads a code it does not know as [`ErrorCode::Internal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    UnknownPeer,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    Conflict,
    /// 421: the `Host` header names neither loopback, the bind address nor an allowed host.
    BadHost,
    /// 503: the database file is no longer the one the broker opened (deleted or replaced).
    StorageLost,
    /// 507: the disk holding the database is full or failing; nothing was stored.
    StorageFull,
    /// 503: the database server cannot be reached (PostgreSQL down or refusing connections).
    StorageUnavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UnknownPeer,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Conflict,
        ErrorCode::BadHost,
        ErrorCode::StorageLost,
        ErrorCode::StorageFull,
        ErrorCode::StorageUnavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Conflict => "conflict",
            ErrorCode::BadHost => "bad_host",
            ErrorCode::StorageLost => "storage_lost",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code for a wire string; one this version does not know is `Internal`.
    pub fn parse(s: &str) -> ErrorCode {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(ErrorCode::Internal)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

/// `GET /v1/health` (no auth).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub ok: bool,
    pub version: String,
    pub uptime_ms: u64,
    /// The broker process id, so `peers broker status` can name it.
    pub pid: u32,
    /// The broker's own machine id: peers registered with it are "local" and judged alive by
    /// their Claude Code pid; others by their heartbeats.
    pub machine_id: String,
    pub host: String,
    pub peers_alive: u64,
    pub queued: u64,
}

/// `POST /v1/peers/register` (auth: the per-user secret, or the hub token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RegisterRequest {
    pub claude_pid: u32,
    /// The start time of the Claude Code process (`peers_core::process::start_time`), so a
    /// later process given the same pid is told apart. `None` from older clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_start_time: Option<u64>,
    pub mcp_pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub machine_id: String,
    pub host: String,
    pub cwd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The name this session had before (from its session file), so a re-registration after
    /// a broker restart asks for it back. Granted when no other live peer holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_name: Option<String>,
    /// Which agent CLI the session runs in. Older clients do not send it: Claude Code.
    #[serde(default)]
    pub agent: Agent,
}

/// The agent CLI a session runs in; it decides the hook's output form, the tool names shown
/// to the model and whether an idle session can be woken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agent {
    /// Claude Code (`claude`).
    #[default]
    Claude,
    /// OpenAI's Codex CLI (`codex`).
    Codex,
    /// Google's Gemini CLI (`gemini`, a `node` process).
    Gemini,
}

impl Agent {
    pub const ALL: [Agent; 3] = [Agent::Claude, Agent::Codex, Agent::Gemini];

    /// The lowercase name, as on the wire, in the stores and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
        }
    }

    pub fn parse(s: &str) -> Option<Agent> {
        Agent::ALL.into_iter().find(|a| a.as_str() == s.trim())
    }

    /// The product's name, for people.
    pub fn product(self) -> &'static str {
        match self {
            Agent::Claude => "Claude Code",
            Agent::Codex => "Codex CLI",
            Agent::Gemini => "Gemini CLI",
        }
    }
}

impl std::fmt::Display for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterResponse {
    pub peer_id: String,
    /// The friendly name, unique among live peers, case-insensitive.
    pub name: String,
    /// `name@host`, how peers on other machines address this one.
    pub address: String,
    /// The per-peer bearer token for this peer's own calls.
    pub token: String,
    /// Queued messages taken over from an earlier registration (same claude pid, or the same
    /// name on the same machine and directory).
    pub inherited_messages: u64,
}

/// `POST /v1/peers/heartbeat` (auth: peer token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub peer_id: String,
    pub name: String,
    /// Mail waiting for this peer (queued, not leased).
    pub queued: u64,
    /// The oldest waiting message's send time, for escalation to the human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_ms: Option<i64>,
}

/// `POST /v1/peers/summary` (auth: peer token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SummaryRequest {
    pub summary: String,
}

/// Which peers `GET /v1/peers` lists, relative to the caller.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Peers on the caller's machine.
    Machine,
    /// Peers whose working directory is the caller's.
    #[serde(alias = "dir")]
    Directory,
    /// Peers in the caller's git repository.
    Repo,
    /// Every peer the broker knows.
    #[default]
    All,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "machine" => Ok(Scope::Machine),
            "directory" | "dir" => Ok(Scope::Directory),
            "repo" => Ok(Scope::Repo),
            "all" => Ok(Scope::All),
            other => Err(format!(
                "unknown scope {other:?}: use machine, directory, repo or all"
            )),
        }
    }
}

/// Query of `GET /v1/peers`. With a peer token, `scope` is relative to that peer and the peer
/// itself is left out; with the user secret, `machine_id`/`cwd`/`git_root` say relative to what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ListPeersQuery {
    #[serde(default)]
    pub scope: Scope,
    /// Also list peers whose session ended (they may still have mail waiting).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_gone: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_root: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerList {
    pub peers: Vec<PeerInfo>,
}

/// One peer as listed or found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: String,
    pub name: String,
    pub host: String,
    /// `name@host`.
    pub address: String,
    pub machine_id: String,
    pub claude_pid: u32,
    pub cwd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub registered_ms: i64,
    pub last_seen_ms: i64,
    /// Whether the session is still running (local: its claude pid exists; remote: its
    /// heartbeats are fresh).
    pub alive: bool,
    /// Mail waiting for this peer (queued or leased, not yet delivered).
    pub queued: u64,
    /// The session's agent CLI (absent from older brokers: Claude Code).
    #[serde(default)]
    pub agent: Agent,
}

/// `POST /v1/messages` (auth: a peer token — the sender is that peer — or the user secret —
/// the sender is the human).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SendRequest {
    /// A peer id, a name, or `name@host` (case-insensitive); a `#topic`; or `*`, a broadcast
    /// to every live peer in `scope` (see `peers_core::address::Recipient`).
    pub to: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// Who a broadcast (`to: "*"`) reaches, relative to the sender. Default: `repo` for a
    /// peer (its directory when it is not in a git repository), `all` for the human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Up to [`MAX_TAGS`] labels to find the message by later (`peers log --tag`, search):
    /// each 1–32 of `a-z 0-9 - _ . :`, stored lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The most tags one message carries.
pub const MAX_TAGS: usize = 8;
/// The longest tag, in characters.
pub const MAX_TAG_LEN: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SendResponse {
    pub message_id: i64,
    /// The recipient as `name@host`.
    pub to: String,
    pub to_peer_id: String,
    pub status: MessageState,
    /// Whether the recipient's session is running right now.
    pub recipient_alive: bool,
    pub recipient_last_seen_ms: i64,
    /// Whether an idle-session waiter (`peers-deliver --wait`) is armed for the recipient
    /// right now, so the mail can wake it when idle. `false`: it waits for the recipient's
    /// next hook event (a headless run, another agent without a wake path, or no session).
    #[serde(default)]
    pub recipient_can_wake: bool,
    /// For a topic post or a broadcast: `#topic` or `*` (then `to` is the same and
    /// `to_peer_id` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// For a topic post or a broadcast: each reader that got a copy (the sender never does;
    /// muted subscribers and ended sessions do not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<ReaderStatus>,
}

/// One reader's copy of a message: its own state, lease and delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReaderStatus {
    pub peer_id: String,
    /// The reader as `name@host`.
    pub to: String,
    /// `queued`, `leased`, `delivered` or `expired` (a reader's lease is shown, unlike the
    /// top-level status of direct mail).
    pub status: MessageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at_ms: Option<i64>,
    /// The hook event or tool that carried it into this reader's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_via: Option<String>,
    pub alive: bool,
    /// Whether this copy may wake the reader when idle (topic subscriptions choose).
    pub wake: bool,
    /// Filled by the broker: an idle-session waiter is armed for this reader now.
    #[serde(default)]
    pub can_wake: bool,
}

/// Where a message is in its life. Senders see `queued` for leased mail: a lease is an
/// internal step between a hook claiming mail and printing it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    Queued,
    Leased,
    Delivered,
    Expired,
}

impl MessageState {
    /// A history filter's state as a person or model writes it: `queued`, `delivered` or
    /// `expired` (`leased` is internal); the error says what to write.
    pub fn from_filter(s: &str) -> Result<MessageState, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "queued" => Ok(MessageState::Queued),
            "delivered" => Ok(MessageState::Delivered),
            "expired" => Ok(MessageState::Expired),
            _ => Err(format!(
                "{s:?} is not a message state: write queued (some copy waits), delivered \
                 (every copy was) or expired"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Leased => "leased",
            MessageState::Delivered => "delivered",
            MessageState::Expired => "expired",
        }
    }
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SenderKind {
    /// Another Claude Code session.
    Peer,
    /// The human, through the `peers` CLI (shown as `you@host`).
    Human,
    /// A script or CI job with a script token (shown as `NAME (script)`): an automated post.
    Script,
}

/// `GET /v1/messages/{id}` (auth: the sender's or recipient's token, or the user secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageStatus {
    pub message_id: i64,
    /// The sender as `name@host` (`you@host` for the human).
    pub from: String,
    pub from_kind: SenderKind,
    /// The recipient as `name@host`.
    pub to: String,
    pub to_peer_id: String,
    pub status: MessageState,
    pub sent_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at_ms: Option<i64>,
    /// The hook event that carried it into the model's context (`PostToolUse`, `Stop`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_via: Option<String>,
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// Ids of messages sent in reply to this one.
    pub replies: Vec<i64>,
    pub recipient_alive: bool,
    /// See [`SendResponse::recipient_can_wake`].
    #[serde(default)]
    pub recipient_can_wake: bool,
    pub bytes: u64,
    /// The body, for callers allowed to read it (the human, the sender, the recipient) when
    /// asked for with `?body=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// For a topic post or a broadcast: `#topic` or `*`; then `to` is the same, `to_peer_id`
    /// is empty, `status` is `delivered` once every reader has it (`expired` once none can
    /// get it any more), and `readers` says who has what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Every reader's copy (one for direct mail, one per recipient for a post).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<ReaderStatus>,
    /// The tags it was sent with, lowercase, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The sender's project: its git repository's directory name, else its directory's
    /// name; none for the human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl MessageStatus {
    /// How many readers have it in their context, of how many got a copy.
    pub fn delivered_of(&self) -> (usize, usize) {
        let done = self
            .readers
            .iter()
            .filter(|r| r.status == MessageState::Delivered)
            .count();
        (done, self.readers.len())
    }
}

/// `POST /v1/inbox/claim` (auth: peer token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ClaimRequest {
    /// At most this many messages (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// How long the lease holds before unacked mail returns to the queue (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// This claim would extend or start a turn by itself (a Stop block or an idle wake), so it
    /// counts against the session's loop budget. Past the budget nothing is leased and the
    /// response says `budget_exhausted`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automatic: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClaimResponse {
    /// Present when messages were leased; pass it to `ack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    pub lease_expires_ms: i64,
    pub messages: Vec<InboxMessage>,
    /// Set when an `automatic` claim was refused by the loop budget.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub budget_exhausted: bool,
}

/// One message as its recipient receives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InboxMessage {
    pub message_id: i64,
    /// The sender as `name@host`.
    pub from: String,
    pub from_kind: SenderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_peer_id: Option<String>,
    /// The sender's working directory, when a peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_cwd: Option<String>,
    pub sent_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    pub body: String,
    pub status: MessageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_via: Option<String>,
    /// `#topic` for a topic post, `*` for a broadcast; absent for direct mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The [`InboxMessage::channel`] (and [`MessageStatus::channel`]) of a handover: a note left
/// for the next session of a name (`POST /v1/handovers`).
pub const HANDOVER_CHANNEL: &str = "handover";

/// `POST /v1/handovers` (auth: peer token): leave a note for the next session named `to`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HandoverRequest {
    pub note: String,
    /// `name` (the next session of that name on any machine) or `name@host` (on that
    /// machine only). Default: the caller's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What `POST /v1/handovers` stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HandoverResponse {
    pub message_id: i64,
    /// The name (or `name@host`) whose next session gets it.
    pub to: String,
    pub expires_at_ms: i64,
}

/// `POST /v1/inbox/ack` (auth: peer token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AckRequest {
    pub lease_id: String,
    /// The hook event (or tool) that put the mail in front of the model.
    pub via: String,
    /// Only these were shown; the rest of the lease goes straight back to the queue. Absent:
    /// the whole lease was shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ids: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AckResponse {
    pub delivered: u64,
    pub released: u64,
}

/// `GET /v1/inbox` (peek, nothing consumed) and `GET /v1/inbox/history` (delivered mail).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InboxList {
    pub messages: Vec<InboxMessage>,
}

/// Query of `GET /v1/inbox/history` and `GET /v1/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only messages sent at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Only messages from this sender (name, `name@host`, id, or `you` for the human).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only messages to this recipient (name, `name@host` or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `GET /v1/messages` only: fill each message's `body` (for `peers log --body`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body: bool,
    /// `GET /v1/messages` only: only posts to this topic (`name` or `#name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `GET /v1/messages` only: only messages with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `GET /v1/messages` only: only messages whose sender was in this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `GET /v1/messages` only: only messages sent before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// `GET /v1/messages` only: only messages in this state as their sender sees it
    /// (`queued`: some copy waits; `delivered`: every copy was delivered; `expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageState>,
}

/// Query of `GET /v1/messages/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct MessageStatusQuery {
    /// Fill `body` (allowed for the callers that may read the message: the human, the
    /// sender, the recipient).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body: bool,
}

/// `GET /v1/messages` (auth: user secret): the message log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageLog {
    pub messages: Vec<MessageStatus>,
}

/// Query of `GET /v1/inbox/wait` (auth: peer token): hold the request until mail that may wake
/// the caller is queued (direct mail, broadcasts, posts to topics it subscribed to with
/// `wake`), the timeout passes, or a newer waiter of the same peer supersedes this one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct WaitQuery {
    /// Default 25 s, at most 10 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WaitResponse {
    /// Mail is queued for the caller now.
    pub mail: bool,
    /// A newer waiter for the same peer took over; this one should exit.
    pub superseded: bool,
    pub queued: u64,
}

/// `POST /v1/topics/subscribe` (auth: peer token). Subscribing again changes `wake` and
/// `mute`; the topic is created if new.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// `name` or `#name`.
    pub topic: String,
    /// Whether a post may wake this session when idle (default false: it waits for the next
    /// hook event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<bool>,
    /// Still subscribed, but nothing is pushed (read the topic with `read_topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute: Option<bool>,
}

/// `POST /v1/topics/unsubscribe` (auth: peer token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnsubscribeRequest {
    pub topic: String,
}

/// A session's subscription. It belongs to the session's name in its directory on its
/// machine, so the next session with that name keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    /// The topic, without `#`.
    pub topic: String,
    pub wake: bool,
    pub mute: bool,
    pub since_ms: i64,
}

/// `POST /v1/topics/unsubscribe`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unsubscribed {
    pub topic: String,
    /// Whether there was a subscription to end.
    pub was_subscribed: bool,
}

/// One topic as listed (`GET /v1/topics`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicInfo {
    /// Without `#`.
    pub topic: String,
    pub created_ms: i64,
    pub subscribers: u64,
    pub posts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_post_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_post_id: Option<i64>,
    /// The caller's subscription (always `None` for the human).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Subscription>,
}

/// `GET /v1/topics` (auth: peer token or user secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicList {
    pub topics: Vec<TopicInfo>,
}

/// Query of `GET /v1/topics/{name}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct TopicPostsQuery {
    /// Only posts with a greater id (to page forward, like a `since_id` cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_id: Option<i64>,
    /// At most this many (default 50, at most 500): the newest ones, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `GET /v1/topics/{name}/messages` (auth: peer token or user secret): a topic's posts,
/// bodies included, with each reader's state. Reading does not deliver: a reader's copy is
/// still pushed by its hooks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicPosts {
    pub topic: String,
    pub posts: Vec<MessageStatus>,
}

/// `GET /v1/messages/{id}/thread` (auth: peer token or user secret): the conversation a
/// message belongs to — the root of its `reply_to` chain and every reply below it, in send
/// order, bodies and readers included. A peer sees the entries it could see the status of
/// (mail it sent or got a copy of, topic posts); the others are left out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageThread {
    /// The id of the thread's first message (its root).
    pub root_id: i64,
    pub messages: Vec<MessageStatus>,
}

/// Query of `GET /v1/search` (auth: peer token or user secret): full-text search over bodies
/// and tags. A peer finds mail it sent, got a copy of, or that was posted to a topic it is
/// subscribed to; the human finds everything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct SearchQuery {
    /// The query: words (all must match), `"a phrase"`, `OR`, `NOT`, `prefix*`. Empty or
    /// absent: no words to match; the newest messages that pass the filters come first,
    /// each snippet the start of its body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub q: String,
    /// Only messages from this sender (name, `name@host`, id, or `you` for the human).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only messages to this recipient (name, `name@host` or id): it got a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Only posts to this topic (`name` or `#name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only messages sent at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Only messages sent before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// Only messages in this state as their sender sees it (as [`HistoryQuery::status`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageState>,
    /// At most this many (default 20, at most 200), the best matches first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One message a search found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SearchHit {
    pub message_id: i64,
    /// The root of its thread (`GET /v1/messages/{thread_id}/thread` reads it whole).
    pub thread_id: i64,
    /// The sender as `name@host` (`you@host` for the human).
    pub from: String,
    pub from_kind: SenderKind,
    /// How it was addressed: `name@host`, `#topic` or `*`.
    pub to: String,
    pub sent_at_ms: i64,
    /// The matching part of the body with each matched term between `**`.
    pub snippet: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `GET /v1/search`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
}

/// Query of `GET /v1/export` (auth: user secret or hub token): every message on the broker,
/// as JSON lines, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ExportQuery {
    /// Only messages sent at or after this time (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
}

/// One line of `GET /v1/export`: a message as `GET /v1/messages/{id}?body=true` shows it
/// (sender, recipient or `#topic`, tags, project, `reply_to`, body, times, every reader's
/// copy with its state), plus the root of its thread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportedMessage {
    #[serde(flatten)]
    pub message: MessageStatus,
    /// The root of its `reply_to` chain: the oldest message of it still stored (itself when
    /// it answers nothing).
    pub thread_id: i64,
}

/// `POST /v1/shutdown` (auth: user secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShutdownResponse {
    pub shutting_down: bool,
}

/// `POST /v1/peers/unregister` (auth: peer token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnregisterResponse {
    pub peer_id: String,
    /// Mail still waiting; it is kept for the next session with this name.
    pub queued: u64,
}

/// `{"ok": true}` for calls with nothing else to say (`POST /v1/peers/summary`,
/// `POST /v1/notices`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Done {
    pub ok: bool,
}

/// Events recorded for the human: loop budget exhausted, mail waiting too long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notice {
    pub id: i64,
    pub at_ms: i64,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    pub text: String,
    /// Who raised it: `broker` for notices the broker raises itself (`loop_budget`, storage
    /// faults), else the posting peer's `name@host`, or `you` for the human.
    #[serde(default)]
    pub author: String,
}

/// `POST /v1/notices` (auth: a peer token — the notice is about that peer — or the user
/// secret): a client records something the human should see in `peers status`, e.g. that a
/// desktop notification about waiting mail could not be shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NoticeRequest {
    /// 1-32 characters of `a-z`, `0-9`, `_` (e.g. `escalation`).
    pub kind: String,
    /// 1-2000 characters, for a person.
    pub text: String,
}

/// `GET /v1/notices` (auth: user secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NoticeList {
    pub notices: Vec<Notice>,
}

/// `POST /v1/dashboard/code` (auth: user secret or hub token): a one-time login code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DashboardCodeRequest {
    /// Whether the code may be used from another machine than the broker's (needs the hub
    /// token; `peers dashboard --hub`). Otherwise only a browser on loopback can use it.
    #[serde(default)]
    pub remote: bool,
}

/// A one-time login code: open `path` (`/login#code=…`) on the broker within `expires_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DashboardCode {
    pub code: String,
    pub path: String,
    pub expires_ms: i64,
}

/// `POST /v1/dashboard/login` (no auth: the code is the credential, used once).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DashboardLogin {
    pub code: String,
}

/// A dashboard session (its cookie is set `HttpOnly`): the CSRF token every state-changing
/// call made with the cookie sends as `X-Peers-CSRF`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DashboardSession {
    pub csrf: String,
    pub expires_ms: i64,
}

/// `POST /v1/dashboard/logout-all` (auth: user secret or hub token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoggedOut {
    /// Sessions ended (and unused codes voided).
    pub sessions: u64,
}

/// One item of `GET /v1/events`, the live feed (Server-Sent Events; auth: the user secret,
/// the hub token or a dashboard session). Each is sent as `id: <boot>-<seq>` and
/// `data: <this, as JSON>`; a client that reconnects with `Last-Event-ID` gets what it missed
/// while the broker still holds it, else a [`Event::Resync`] first. Tagged by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message was sent: its status as `GET /v1/messages/{id}` gives it, without the body
    /// (ask `GET /v1/messages/{id}?body=true`).
    Message { message: MessageStatus },
    /// Readers' copies changed state: `delivered` (acked, `via` the hook event or tool),
    /// `queued` (a lease released or lapsed), `expired` (past their TTL). `message_ids` is
    /// `None` when the broker does not know which (a whole lease, a sweep): fetch the
    /// statuses shown again.
    Delivered {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_ids: Option<Vec<i64>>,
        state: MessageState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
        /// How many copies changed.
        count: u64,
        at_ms: i64,
    },
    /// Peers changed: list them again (`GET /v1/peers`).
    Peers {
        change: PeerChange,
        /// The peers concerned (empty when not known).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        peer_ids: Vec<String>,
    },
    /// A notice for the human was recorded (`id` is 0: `GET /v1/notices` lists it stored).
    Notice { notice: Notice },
    /// A peer subscribed to a topic or unsubscribed.
    Topic {
        topic: String,
        peer_id: String,
        subscribed: bool,
    },
    /// Something changed that this stream cannot describe: fetch what is shown again.
    Resync {
        why: ResyncReason,
        /// The peer whose mail changed, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_id: Option<String>,
    },
}

/// What [`Event::Peers`] reports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PeerChange {
    Registered,
    /// A gone session heartbeats again, or its name changed.
    Revived,
    Summary,
    Unregistered,
    /// Sessions ended (found by the sweep).
    Gone,
    /// Changed through another broker on the same database.
    Changed,
}

/// Why an [`Event::Resync`] was sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// The stream fell behind, or `Last-Event-ID` names events the broker no longer holds
    /// (or a broker started since).
    Missed,
    /// Another broker on the same database committed mail.
    Elsewhere,
}

/// `POST /v1/tokens` (auth: the user secret): creates a script token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenCreateRequest {
    /// What the token is called (`peers token revoke NAME`), and its posts' sender
    /// (`NAME (script)`).
    pub name: String,
    /// The recipients it may post to: peer names, `name@host`, `#topic`, `*`. Empty: any.
    #[serde(default)]
    pub post_to: Vec<String>,
    /// How long it is valid, in milliseconds from now; absent: until revoked.
    #[serde(default)]
    pub expires_in_ms: Option<i64>,
}

/// The answer to `POST /v1/tokens`: the only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// A script token as `GET /v1/tokens` lists it (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    /// The recipients it may post to; empty: any.
    pub post_to: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// `GET /v1/tokens` (auth: the user secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_omitted_and_defaults_apply() {
        let req: ClaimRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req, ClaimRequest::default());
        assert_eq!(serde_json::to_string(&req).unwrap(), "{}");
        let send = SendRequest {
            tags: vec![],
            to: "api".into(),
            message: "hi".into(),
            reply_to: None,
            scope: None,
        };
        assert_eq!(
            serde_json::to_string(&send).unwrap(),
            r#"{"to":"api","message":"hi"}"#
        );
    }

    #[test]
    fn error_codes_round_trip_and_unknown_ones_read_as_internal() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"storage_full","message":"m"}}"#).unwrap();
        assert_eq!(body.error.code, ErrorCode::StorageFull);
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"from_the_future","message":"m"}}"#).unwrap();
        assert_eq!(body.error.code, ErrorCode::Internal);
    }

    #[test]
    fn states_and_scopes_are_lowercase_words() {
        assert_eq!(
            serde_json::to_string(&MessageState::Delivered).unwrap(),
            "\"delivered\""
        );
        assert_eq!("Repo".parse::<Scope>().unwrap(), Scope::Repo);
        assert!("galaxy".parse::<Scope>().unwrap_err().contains("machine"));
    }
}
