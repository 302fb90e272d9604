//! The store seam of the peers broker.
//!
//! The broker is written against [`Store`], a trait of domain operations — register a
//! session, send, claim with the loop-budget rule, ack, sweep, resolve a name, read history —
//! over plain domain types ([`PeerRecord`], [`NewMessage`], …) and one error type
//! ([`StoreError`]) that says nothing about SQL. Two crates implement it:
//!
//! * `peers-store-sqlite` — one embedded file, one writer (its own thread) with group commit
//!   (the default; what a user's own broker or hub runs on);
//! * `peers-store-postgres` — a PostgreSQL server shared by several brokers.
//!
//! Every guarantee the broker gives is a guarantee of every backend, and [`story`] (feature
//! `story`) is the one test story each backend's tests run to show it: a send that returns is
//! committed; concurrent sends share a commit; a claim never hands one message to two
//! claimers; the loop budget holds; names and mail follow sessions; faults are reported, not
//! hidden.
//!
//! What several brokers on one database need from it is here too: [`Store::events`] tells a
//! broker what the others committed (mail to wake a long poll for, peer rows whose caches are
//! stale), and [`Store::sweep_turn`] lets one broker at a time run the liveness sweep.

mod error;
mod types;

#[cfg(feature = "story")]
pub mod story;

use std::collections::HashMap;

use async_trait::async_trait;
use peers_core::wire::{
    ExportedMessage, InboxMessage, MessageStatus, Notice, SearchHit, Subscription, TopicInfo,
};
use tokio::sync::broadcast;

pub use error::StoreError;
pub use types::*;

/// What every store call returns.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The broker's storage: every read and write of peers, messages and notices.
///
/// Writes return once they are durable (committed with fsync) unless said otherwise; a
/// failed write changed nothing. Times are epoch milliseconds chosen by the caller, so tests
/// and the story can drive time.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- peers -------------------------------------------------------------------------

    /// Registers a session: allocates its name, replaces the registrations it supersedes and
    /// moves their waiting mail to it (see [`NewRegistration`] for the rules).
    async fn register(&self, r: NewRegistration) -> Result<Registration>;

    /// Records a heartbeat. A peer marked gone comes back (under its name if free, else a
    /// fresh one) only when `may_revive`. `None` when the registration was replaced,
    /// unregistered, or is gone and may not revive.
    async fn heartbeat(
        &self,
        peer_id: &str,
        now: i64,
        may_revive: bool,
    ) -> Result<Option<PeerRecord>>;

    async fn set_summary(&self, peer_id: &str, summary: &str) -> Result<()>;

    /// Ends a registration: gone, and its token no longer valid. Its mail stays queued for
    /// the next session with its name.
    async fn unregister(&self, peer_id: &str, now: i64) -> Result<()>;

    /// One registration by id, whatever its state.
    async fn peer(&self, peer_id: &str) -> Result<Option<PeerRecord>>;

    /// The peer a name, `name@host` (case-insensitive) or id refers to: a live peer if one
    /// matches, else the newest ended session of that name not yet replaced. An id of a
    /// replaced registration resolves to the registration that replaced it.
    async fn resolve(&self, who: &str) -> Result<Option<PeerRecord>>;

    /// Live peers, by name.
    async fn live_peers(&self) -> Result<Vec<PeerRecord>>;

    /// Live peers plus ended sessions not yet replaced (which may still have mail waiting),
    /// by name, newest registration first.
    async fn unreplaced_peers(&self) -> Result<Vec<PeerRecord>>;

    /// `peer_id` and the registrations it replaced, transitively.
    async fn lineage(&self, peer_id: &str) -> Result<Vec<String>>;

    /// How many live peers there are.
    async fn count_live(&self) -> Result<u64>;

    // ---- messages ----------------------------------------------------------------------

    /// Stores a message and one delivery row per reader (batched with concurrent sends into
    /// one commit: a fan-out to 500 readers costs one fsync). Readers were resolved before;
    /// one that has been replaced since is followed to its replacement. Every per-reader
    /// operation below (claim, lease, ack, expiry, counts) works on a reader's own copy.
    async fn send(&self, m: NewMessage) -> Result<Sent>;

    async fn message_exists(&self, id: i64) -> Result<bool>;

    /// Whether a claim could lease anything now (queued mail, or a lapsed lease). A read: lets
    /// the common empty claim skip the writer.
    async fn claimable(&self, peer_id: &str, now: i64) -> Result<bool>;

    /// Leases up to `max` of a peer's waiting mail in send order; two claims never lease one
    /// message. An automatic claim spends from the loop budget first and records the budget
    /// notice inside the same transaction (see [`LoopBudget`]). Leases need not be durable:
    /// one lost in a crash returns its mail to the queue.
    async fn claim(&self, c: Claim) -> Result<ClaimOutcome>;

    /// Marks a lease's mail delivered (all of it, or only `ids`; the rest goes back to the
    /// queue). Mail whose lease lapsed but was not claimed again still counts: it was shown.
    async fn ack(&self, a: Ack) -> Result<Acked>;

    /// A peer's waiting mail (queued or leased), nothing consumed, in send order.
    async fn waiting(&self, peer_id: &str) -> Result<Vec<InboxMessage>>;

    /// How many messages are queued (not leased) for a peer, and the oldest one's send time.
    async fn queued_count(&self, peer_id: &str) -> Result<(u64, Option<i64>)>;

    /// How many of a peer's queued copies may wake it when idle ([`Reader::wake`]): what an
    /// idle session's long poll waits for. Copies that may not wake wait for its next hook
    /// event, when a claim takes them with the rest.
    async fn queued_to_wake(&self, peer_id: &str) -> Result<u64>;

    /// How many messages wait for a peer, leased ones included.
    async fn pending_count(&self, peer_id: &str) -> Result<u64>;

    /// Per peer id, how many messages wait (queued or leased).
    async fn pending_counts(&self) -> Result<HashMap<String, u64>>;

    /// How many messages wait over all peers.
    async fn count_pending(&self) -> Result<u64>;

    /// One message's sender-side status (with its replies, every reader's copy in
    /// [`MessageStatus::readers`], its body when `with_body`) and its sender's peer id.
    async fn status(
        &self,
        id: i64,
        with_body: bool,
    ) -> Result<Option<(MessageStatus, Option<String>)>>;

    /// The thread message `id` belongs to: the root of its `reply_to` chain and every reply
    /// below it, transitively (topic posts included), in send order, each with its body, its
    /// readers and its sender's peer id. Empty when there is no message `id`.
    async fn thread(&self, id: i64) -> Result<Vec<(MessageStatus, Option<String>)>>;

    /// Full-text search over bodies and tags (see [`SearchFilter`]): the best matches first,
    /// each with a snippet and its thread's root. Bad query syntax is
    /// [`StoreError::BadQuery`].
    async fn search(&self, f: SearchFilter) -> Result<Vec<SearchHit>>;

    /// Mail delivered to any of `peer_ids`, newest first.
    async fn delivered_to(
        &self,
        peer_ids: &[String],
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<InboxMessage>>;

    /// The human's message log, newest first.
    async fn log(&self, filter: LogFilter) -> Result<Vec<MessageStatus>>;

    // ---- topics ------------------------------------------------------------------------

    /// Subscribes the session's name in its directory to a topic (creating the topic), or
    /// changes `wake`/`mute` of its subscription. `None` when `peer_id` is unknown.
    async fn subscribe(&self, s: Subscribe) -> Result<Option<Subscription>>;

    /// Ends the subscription of the session's name in its directory; whether there was one.
    async fn unsubscribe(&self, peer_id: &str, topic: &str) -> Result<bool>;

    /// The subscriptions of the session's name in its directory, by topic.
    async fn subscriptions(&self, peer_id: &str) -> Result<Vec<Subscription>>;

    /// Who a post to `topic` reaches now: the live sessions whose name and directory are
    /// subscribed and not muted, by name. Empty for an unknown topic.
    async fn topic_readers(&self, topic: &str) -> Result<Vec<TopicReader>>;

    /// Every topic, by name, with counts; `subscription` filled for `viewer`'s name and
    /// directory when given.
    async fn topics(&self, viewer: Option<&str>) -> Result<Vec<TopicInfo>>;

    /// Whether a topic exists (created by a post or a subscription).
    async fn topic_exists(&self, topic: &str) -> Result<bool>;

    /// A topic's posts with bodies and readers (see [`TopicPostsFilter`]), oldest first.
    async fn topic_posts(&self, f: TopicPostsFilter) -> Result<Vec<MessageStatus>>;

    // ---- notices -----------------------------------------------------------------------

    async fn add_notice(&self, n: NewNotice) -> Result<()>;

    /// Stored notices, newest first.
    async fn notices(&self, limit: u32) -> Result<Vec<Notice>>;

    // ---- the sweep ---------------------------------------------------------------------

    /// One sweep's writes, in one transaction: marks `gone` peers gone, returns lapsed
    /// leases to the queue, expires mail past its TTL, forgets loop-budget spending older than
    /// the window.
    async fn sweep(&self, s: Sweep) -> Result<Swept>;

    /// Whether this broker should run the sweep now. With one broker per database (SQLite)
    /// always; brokers sharing a database take turns (one at a time holds the turn until it
    /// stops).
    async fn sweep_turn(&self) -> Result<bool>;

    // ---- retention and export ------------------------------------------------------------

    /// Deletes up to `limit` messages sent before `before_ms` whose every copy is final —
    /// delivered or expired (a message without copies, e.g. a post nobody was subscribed to,
    /// counts too) — oldest first, with everything that refers to them (copies, tags, the
    /// search index), in one transaction. Returns how many; fewer than `limit` means nothing
    /// older is left to prune. Mail still waiting for a reader (a handover for the next
    /// session included) is never pruned: it keeps its TTL. Replies to a pruned message keep
    /// their `reply_to`; their thread starts at the oldest message still stored.
    async fn prune_delivered(&self, before_ms: i64, limit: u32) -> Result<u64>;

    /// Up to `limit` messages with an id above `after_id`, sent at or after `since_ms`, in id
    /// order, each with its body, every reader's copy and its thread's root: one page of
    /// `GET /v1/export`.
    async fn export_page(
        &self,
        after_id: i64,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<ExportedMessage>>;

    // ---- several brokers -----------------------------------------------------------------

    /// Changes committed through this store, by any broker on the same database, as they
    /// commit. `None` for a store only one broker can use (SQLite), where the broker's own
    /// bookkeeping already knows every change.
    fn events(&self) -> Option<broadcast::Receiver<StoreEvent>>;

    // ---- health and lifecycle ------------------------------------------------------------

    /// Which backend this is and where its data lives (no password), for logs and texts.
    fn describe(&self) -> StoreInfo;

    /// The storage faults in effect now.
    fn health(&self) -> Health;

    /// Spells of failing writes that ended since the last call, `(from_ms, to_ms)`, for the
    /// sweep to record as notices.
    fn take_recovered(&self) -> Vec<(i64, i64)>;

    /// Puts back spells whose notice could not be written yet.
    fn put_back_recovered(&self, spells: Vec<(i64, i64)>);

    /// Write transactions this handle has committed so far: lets tests show that concurrent
    /// sends share commits instead of paying one each.
    fn commits(&self) -> u64;

    /// Returns once every write submitted before is committed.
    async fn flush(&self) -> Result<()>;

    /// Commits what is queued and closes (the SQLite backend checkpoints its WAL, so a copy
    /// of the file alone is complete).
    async fn close(&self);

    // ---- benchmarks ----------------------------------------------------------------------

    /// Fills history with `n` delivered messages from the human, round-robin over `peer_ids`
    /// (for `cargo xtask bench broker`'s claims against a large table).
    async fn preload_delivered(&self, peer_ids: &[String], n: u64) -> Result<()>;

    // ---- script tokens -------------------------------------------------------------------

    /// Stores a script token. `false` (nothing changed) when a token of that name exists and
    /// is not revoked; a revoked one's name is taken over.
    async fn create_script_token(&self, t: NewScriptToken) -> Result<bool>;

    /// Every script token (revoked ones too), by name.
    async fn script_tokens(&self) -> Result<Vec<ScriptToken>>;

    /// The script token with this hash, whatever its state: read from the database on every
    /// call, so a revoke by any broker on it counts at the next request.
    async fn script_token(&self, token_hash: &str) -> Result<Option<ScriptToken>>;

    /// Revokes the named token; whether one that was not revoked yet was found.
    async fn revoke_script_token(&self, name: &str, now: i64) -> Result<bool>;

    /// Records that the token with this hash was used at `now` (not durable: a crash may lose
    /// it).
    async fn touch_script_token(&self, token_hash: &str, now: i64) -> Result<()>;

    // ---- handovers -----------------------------------------------------------------------

    /// Gives a new registration the handovers left for it: every waiting handover (a message
    /// with channel [`peers_core::wire::HANDOVER_CHANNEL`], stored by [`Store::send`] with one
    /// reader of empty `peer_id` and `address` the name or `name@host` it waits for) left
    /// before `peer_id` registered, to its name (and host, when the handover names one),
    /// becomes `peer_id`'s queued copy. So does mail sent to its name while no session of
    /// that name ran: a waiting copy of a direct message for an ended, unreplaced
    /// registration of the name (on any machine or directory), sent after that one ended and
    /// before `peer_id` registered, addressed to the bare name (any host; the broker stores
    /// such mail's `to_address` as the name) or to `peer_id`'s `name@host`. Returns how many.
    /// A session registered before a handover was left never gets it: it is for the next one.
    async fn take_handovers(&self, peer_id: &str) -> Result<u64>;
}
