//! The domain types that cross the store seam. Plain data: no database types, no derives of
//! any driver's traits. Types that also cross the wire (`InboxMessage`, `MessageStatus`,
//! `Notice`, `RegisterRequest`) are `peers_core::wire`'s.

use peers_core::process;
use peers_core::wire::{Agent, MessageState, PeerInfo, RegisterRequest, SenderKind};

/// One registration of a session (a row of `peers`). `Deserialize` with the field names as
/// keys: a backend may read many rows as one JSON value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PeerRecord {
    pub id: String,
    pub name: String,
    pub host: String,
    pub machine_id: String,
    pub claude_pid: i64,
    /// With `claude_pid`, the identity of the Claude Code process (see
    /// `peers_core::process::start_time`); `None` when the client did not send it.
    pub claude_start_time: Option<i64>,
    pub mcp_pid: i64,
    pub session_id: Option<String>,
    pub cwd: String,
    pub git_root: Option<String>,
    pub git_branch: Option<String>,
    pub tty: Option<String>,
    pub summary: Option<String>,
    pub token_hash: String,
    pub registered_ms: i64,
    pub last_seen_ms: i64,
    pub gone_ms: Option<i64>,
    pub replaced_by: Option<String>,
    /// The session's agent CLI (column `agent`, `claude` for rows from before it existed).
    pub agent: Agent,
}

/// The token hash of an unregistered peer: no token hashes to it.
pub const REVOKED: &str = "revoked";

impl PeerRecord {
    pub fn address(&self) -> String {
        format!("{}@{}", self.name, self.host)
    }

    pub fn alive(&self) -> bool {
        self.gone_ms.is_none()
    }

    /// Whether its token may still authenticate: neither replaced nor unregistered.
    pub fn token_valid(&self) -> bool {
        self.replaced_by.is_none() && self.token_hash != REVOKED
    }

    /// For a peer on this machine: whether its Claude Code process still runs — a process
    /// with its pid exists and (when recorded) has its start time, so a reused pid is not it.
    pub fn process_alive(&self) -> bool {
        process::is_same(
            self.claude_pid as u32,
            self.claude_start_time.map(|t| t as u64),
        )
    }

    /// Whether this registration was made by the same Claude Code process as one with start
    /// time `start` (the pid being the same). An unknown start time on either side (an older
    /// client) cannot tell processes apart and counts as the same.
    pub fn same_process_as(&self, start: Option<u64>) -> bool {
        match (self.claude_start_time, start) {
            (Some(a), Some(b)) => a == b as i64,
            _ => true,
        }
    }

    pub fn info(&self, queued: u64) -> PeerInfo {
        PeerInfo {
            peer_id: self.id.clone(),
            name: self.name.clone(),
            host: self.host.clone(),
            address: self.address(),
            machine_id: self.machine_id.clone(),
            claude_pid: self.claude_pid as u32,
            cwd: self.cwd.clone(),
            git_root: self.git_root.clone(),
            git_branch: self.git_branch.clone(),
            tty: self.tty.clone(),
            summary: self.summary.clone(),
            registered_ms: self.registered_ms,
            last_seen_ms: self.last_seen_ms,
            alive: self.alive(),
            queued,
            agent: self.agent,
        }
    }
}

/// A registration to make. The caller has cleaned the request and chosen the id and token.
///
/// The same Claude Code process is the same `(machine_id, claude_pid)` with the same start
/// time; a registration with that pid but another start time comes from a new process that
/// was given the pid of an ended one: the old registration is marked gone, and the new one
/// is a new session (it inherits mail only by the hand-over rule below).
///
/// Name rules, in order: the same Claude Code process registering again keeps its name and
/// its waiting mail; else the name asked for (`previous_name`) if no live peer holds it; else
/// the name of an ended session on the same machine and directory whose base name matches
/// (preferring one with mail waiting, so its mail finds the new session); else the base
/// name, or `base-2`, `base-3`, … . Reserved names
/// ([`peers_core::identity::is_reserved_name`]) are never given.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    pub request: RegisterRequest,
    pub peer_id: String,
    pub token_hash: String,
    pub now: i64,
}

/// What a registration produced.
#[derive(Debug, Clone)]
pub struct Registration {
    pub peer: PeerRecord,
    /// Ids of earlier registrations this one replaced (their tokens are now invalid).
    pub replaced: Vec<String>,
    /// Ids of live registrations this one showed to have ended: an earlier process with the
    /// same pid but another start time.
    pub ended: Vec<String>,
    pub inherited_messages: u64,
}

/// Who is sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub kind: SenderKind,
    pub peer_id: Option<String>,
    pub address: String,
    pub cwd: Option<String>,
}

/// A message about to be stored: one `messages` row, and one delivery row per reader.
///
/// Direct mail has one reader (`channel` `None`, `to_address` its `name@host`). A topic
/// post (`channel` `#name`) or a broadcast (`*`) has one per recipient the broker chose at
/// send time; all of them commit together with the message (in the same group commit as
/// concurrent sends), so a 200 means every reader's copy is durable.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub from: Sender,
    /// How the sender addressed it: the one recipient's `name@host`, `#topic`, or `*`.
    pub to_address: String,
    /// `#topic` or `*` for a post; `None` for direct mail. A topic named here that does not
    /// exist yet is created.
    pub channel: Option<String>,
    /// Who gets a copy, in the order to store them. Empty only for a topic post that no
    /// one is subscribed to (it is stored all the same, for `topic_posts`).
    pub readers: Vec<Reader>,
    pub body: String,
    pub reply_to: Option<i64>,
    pub sent_ms: i64,
    pub expires_ms: i64,
    /// Checked and lowercase (at most `peers_core::wire::MAX_TAGS`, no duplicates).
    pub tags: Vec<String>,
    /// The sender's project (see [`project_of`]); `None` for the human.
    pub project: Option<String>,
}

/// A session's project: the directory name of its git repository, else of its directory.
pub fn project_of(p: &PeerRecord) -> Option<String> {
    let dir = p.git_root.as_deref().unwrap_or(&p.cwd);
    std::path::Path::new(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
}

impl NewMessage {
    /// The topic a post goes to (its `channel` without `#`).
    pub fn topic(&self) -> Option<&str> {
        self.channel.as_deref().and_then(|c| c.strip_prefix('#'))
    }
}

/// One reader's copy to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// The registration it was resolved to; if that has been replaced since, the copy
    /// follows to the replacement (see [`crate::Store::send`]).
    pub peer_id: String,
    /// The reader as `name@host`, kept as sent so history reads well.
    pub address: String,
    /// Whether this copy may wake the reader when idle: direct mail and broadcasts always;
    /// a topic post when the subscription says so.
    pub wake: bool,
}

/// A stored message: its id and, in [`NewMessage::readers`] order, the registration each
/// copy was queued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: i64,
    pub readers: Vec<String>,
}

/// A subscription to make or change. It is keyed by the subscribing session's machine,
/// directory and name, so a later session with that name in that directory has it too.
#[derive(Debug, Clone)]
pub struct Subscribe {
    pub peer_id: String,
    /// Normalised, without `#` (`peers_core::address::topic_name`).
    pub topic: String,
    /// `None` keeps the current value (false for a new subscription).
    pub wake: Option<bool>,
    /// `None` keeps the current value (false for a new subscription).
    pub mute: Option<bool>,
    pub now: i64,
}

/// A live session subscribed to a topic and not muted: who a post to it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReader {
    pub peer: PeerRecord,
    pub wake: bool,
}

/// Which posts [`crate::Store::topic_posts`] returns.
#[derive(Debug, Clone)]
pub struct TopicPostsFilter {
    pub topic: String,
    /// Only posts with a greater id.
    pub since_id: Option<i64>,
    /// The newest `limit` matching posts, returned oldest first.
    pub limit: u32,
}

/// A claim to make.
#[derive(Debug, Clone)]
pub struct Claim {
    pub peer_id: String,
    pub lease_id: String,
    pub max: u32,
    pub now: i64,
    pub lease_expires_ms: i64,
    /// Set for an automatic claim (one that would extend or start a turn by itself).
    pub automatic: Option<LoopBudget>,
}

/// What an automatic claim spends from: `limit` automatic turns per `window_ms` for one
/// Claude Code process (`machine_id`, `claude_pid`), whichever registration it has now.
///
/// A claim that finds mail waiting spends one turn. Past the limit nothing is leased, and
/// the first such claim in a window records `notice` (kind `loop_budget`, for the claiming
/// peer) in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopBudget {
    pub machine_id: String,
    pub claude_pid: i64,
    pub limit: u32,
    pub window_ms: i64,
    /// The text of the notice recorded when this claim runs into the budget.
    pub notice: String,
}

/// The result of a claim.
#[derive(Debug, Clone)]
pub struct ClaimOutcome {
    pub messages: Vec<peers_core::wire::InboxMessage>,
    pub budget_exhausted: bool,
    /// Set when this claim was the one that ran into the budget (its notice was recorded).
    pub budget_notice: bool,
}

/// An ack to record.
#[derive(Debug, Clone)]
pub struct Ack {
    pub peer_id: String,
    pub lease_id: String,
    /// The hook event or tool that showed the mail.
    pub via: String,
    /// Only these; `None`: the whole lease. An empty list delivers nothing and releases all.
    pub ids: Option<Vec<i64>>,
    pub now: i64,
}

/// What an ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Acked {
    pub delivered: u64,
    /// Leased mail that went back to the queue.
    pub released: u64,
}

/// Which messages [`crate::Store::log`] returns.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// The human, or the sender's registrations.
    pub from: Option<LogSender>,
    /// The recipient's registrations.
    pub to: Option<Vec<String>>,
    /// Only posts to this topic (normalised, without `#`).
    pub topic: Option<String>,
    /// Only messages with this tag (lowercase).
    pub tag: Option<String>,
    /// Only messages whose sender was in this project.
    pub project: Option<String>,
    /// Only messages sent before this time.
    pub until_ms: Option<i64>,
    /// Only messages in this sender-side state (`Leased` counts as `Queued`).
    pub status: Option<MessageState>,
    pub since_ms: i64,
    pub limit: u32,
    pub with_body: bool,
}

/// What [`crate::Store::search`] looks for, and for whom.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// The full-text query as the caller wrote it (FTS5 syntax on SQLite; PostgreSQL reads
    /// it with `websearch_to_tsquery`). Empty: no text to match, the newest messages that
    /// pass the other filters first, each snippet the start of its body.
    pub query: String,
    /// `None`: the human, who finds everything.
    pub viewer: Option<SearchViewer>,
    pub from: Option<LogSender>,
    /// Only messages one of these registrations got a copy of.
    pub to: Option<Vec<String>>,
    /// Normalised, without `#`.
    pub topic: Option<String>,
    pub tag: Option<String>,
    pub project: Option<String>,
    pub since_ms: i64,
    /// Only messages sent before this time.
    pub until_ms: Option<i64>,
    /// Only messages in this sender-side state (as [`LogFilter::status`]).
    pub status: Option<MessageState>,
    pub limit: u32,
}

/// The history filters [`LogFilter`] and [`SearchFilter`] share, borrowed, for a backend
/// to turn into one set of conditions for both.
#[derive(Debug, Clone, Copy)]
pub struct Narrowing<'a> {
    pub from: Option<&'a LogSender>,
    /// The recipient's registrations: some copy is theirs.
    pub to: Option<&'a [String]>,
    pub topic: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub project: Option<&'a str>,
    pub since_ms: i64,
    pub until_ms: Option<i64>,
    /// The sender-side state (`Leased` counts as `Queued`).
    pub status: Option<MessageState>,
}

/// The [`Narrowing`] of a filter with the history fields (`LogFilter`, `SearchFilter`).
macro_rules! narrowing_of {
    ($($filter:ty),*) => {$(
        impl $filter {
            pub fn narrowing(&self) -> Narrowing<'_> {
                Narrowing {
                    from: self.from.as_ref(),
                    to: self.to.as_deref(),
                    topic: self.topic.as_deref(),
                    tag: self.tag.as_deref(),
                    project: self.project.as_deref(),
                    since_ms: self.since_ms,
                    until_ms: self.until_ms,
                    status: self.status,
                }
            }
        }
    )*};
}

narrowing_of!(LogFilter, SearchFilter);

/// With no query, each hit's snippet is the first this many characters of its body (and `…`
/// when there is more).
pub const SEARCH_START_CHARS: usize = 160;

/// A peer searching: it finds mail one of `peer_ids` sent or got a copy of, and posts to
/// the topics its name in its directory (`machine_id`, `cwd`, `name`) is subscribed to.
#[derive(Debug, Clone)]
pub struct SearchViewer {
    pub peer_ids: Vec<String>,
    pub machine_id: String,
    pub cwd: String,
    pub name: String,
}

/// A log's sender filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSender {
    Human,
    Peers(Vec<String>),
}

/// The `author` of notices the broker raises itself (the loop budget's among them).
pub const BROKER_AUTHOR: &str = "broker";

/// A notice for the human.
#[derive(Debug, Clone)]
pub struct NewNotice {
    pub kind: String,
    pub peer_id: Option<String>,
    pub text: String,
    /// `broker`, the posting peer's `name@host`, or `you`.
    pub author: String,
    pub now: i64,
}

/// One sweep's writes.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Peers found to have ended (the broker decides: local processes, remote heartbeats).
    pub gone: Vec<String>,
    pub now: i64,
    /// Loop-budget spending older than `now - budget_window_ms` no longer counts.
    pub budget_window_ms: i64,
    /// The whole pass. `false`: only mark `gone` — what a broker without the sweep turn
    /// does for the sessions of its own machine, whose processes only it can see; lapsed
    /// leases, expiry and the budget ledger are the turn holder's.
    pub whole: bool,
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub marked_gone: u64,
    pub requeued: u64,
    pub expired: u64,
}

/// A change committed by some broker on the same database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Mail became claimable for this peer (a send, a released or lapsed lease, a
    /// registration that inherited mail). Whether any of it may wake the peer when idle is
    /// [`crate::Store::queued_to_wake`]'s to say.
    Mail { peer_id: String },
    /// Peer rows changed (registered, replaced, unregistered, gone, revived): lookups and
    /// authenticated rows cached from before are stale.
    PeersChanged,
    /// The event stream lost events (a reconnect): treat everything as changed.
    Lagged,
}

/// Which backend a store is and where its data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The SQLite file's path, or the PostgreSQL URL without its password.
    pub location: String,
}

/// The storage faults in effect now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    /// When the data was found gone ([`crate::StoreError::Lost`]).
    pub lost_since: Option<i64>,
    /// Since when writes fail with a full disk or I/O errors.
    pub full_since: Option<i64>,
    /// Since when the database cannot be reached.
    pub unavailable_since: Option<i64>,
}

/// A script token to store ([`crate::Store::create_script_token`]): only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScriptToken {
    pub name: String,
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// The recipients it may post to (peer names, `name@host`, `#topic`, `*`); empty: any.
    pub post_to: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
}

/// A stored script token: a name, what it may post to, and its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptToken {
    pub name: String,
    pub token_hash: String,
    pub post_to: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}
