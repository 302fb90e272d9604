//! [`SqliteStore`]: the [`Store`] trait over the writer and the read pool. Each write
//! operation is one job of the group commit, composed of the statements in
//! [`crate::peers`], [`crate::messages`] and [`crate::topics`].

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use peers_core::wire::{
    ExportedMessage, InboxMessage, MessageStatus, Notice, SearchHit, Subscription, TopicInfo,
};
use peers_store::{
    Ack, Acked, Claim, ClaimOutcome, Health, LogFilter, NewMessage, NewNotice, NewRegistration,
    PeerRecord, Registration, Result, SearchFilter, Sent, Store, StoreError, StoreEvent, StoreInfo,
    Subscribe, Sweep, Swept, TopicPostsFilter, TopicReader,
};
use peers_store::{NewScriptToken, ScriptToken};
use tokio::sync::broadcast;

use crate::{Db, Error, handover, messages, peers, preload, retention, search, tokens, topics};

/// The SQLite store: one database file, opened by one broker.
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, runs the migrations and starts the
    /// writer.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        Ok(SqliteStore {
            db: Db::open(path).await.map_err(Error::public)?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.health.db()
    }

    /// Bench-only (`cargo xtask bench search`): one delivered message per body, between
    /// `peers` (`(id, address)`) round-robin, sent from `first_ms` on (`preload.rs`).
    pub async fn preload_bodies(
        &self,
        peers: &[(String, String)],
        bodies: &[String],
        first_ms: i64,
    ) -> Result<()> {
        preload::bodies_history(self.path(), peers, bodies, first_ms)
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// Bench-only: stops indexing for search (`preload.rs`, `drop_search_index`).
    pub async fn drop_search_index(&self) -> Result<()> {
        preload::drop_search_index(self.path())
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))
    }
}

/// The crate's error as the trait's, for every call that crosses the seam.
fn seam<T>(r: std::result::Result<T, Error>) -> Result<T> {
    r.map_err(Error::public)
}

#[async_trait]
impl Store for SqliteStore {
    async fn register(&self, r: NewRegistration) -> Result<Registration> {
        seam(
            self.db
                .write(move |c| {
                    Box::pin(peers::register(
                        c,
                        r.request,
                        r.peer_id,
                        r.token_hash,
                        r.now,
                    ))
                })
                .await,
        )
    }

    async fn heartbeat(
        &self,
        peer_id: &str,
        now: i64,
        may_revive: bool,
    ) -> Result<Option<PeerRecord>> {
        let id = peer_id.to_string();
        seam(
            self.db
                .write(move |c| {
                    Box::pin(async move { peers::heartbeat(c, &id, now, may_revive).await })
                })
                .await,
        )
    }

    async fn set_summary(&self, peer_id: &str, summary: &str) -> Result<()> {
        let (id, summary) = (peer_id.to_string(), summary.to_string());
        seam(
            self.db
                .write_one(move |c| {
                    Box::pin(async move { peers::set_summary(c, &id, &summary).await })
                })
                .await,
        )
    }

    async fn unregister(&self, peer_id: &str, now: i64) -> Result<()> {
        let id = peer_id.to_string();
        seam(
            self.db
                .write_one(move |c| Box::pin(async move { peers::unregister(c, &id, now).await }))
                .await,
        )
    }

    async fn peer(&self, peer_id: &str) -> Result<Option<PeerRecord>> {
        seam(peers::by_id(self.db.reader(), peer_id).await)
    }

    async fn resolve(&self, who: &str) -> Result<Option<PeerRecord>> {
        seam(peers::resolve(self.db.reader(), who).await)
    }

    async fn live_peers(&self) -> Result<Vec<PeerRecord>> {
        seam(peers::live(self.db.reader()).await)
    }

    async fn unreplaced_peers(&self) -> Result<Vec<PeerRecord>> {
        seam(peers::live_and_gone(self.db.reader()).await)
    }

    async fn lineage(&self, peer_id: &str) -> Result<Vec<String>> {
        seam(messages::lineage(self.db.reader(), peer_id).await)
    }

    async fn count_live(&self) -> Result<u64> {
        seam(peers::count_live(self.db.reader()).await)
    }

    async fn send(&self, m: NewMessage) -> Result<Sent> {
        let (id, readers) = seam(self.db.insert_message(m).await)?;
        Ok(Sent { id, readers })
    }

    async fn message_exists(&self, id: i64) -> Result<bool> {
        seam(messages::exists(self.db.reader(), id).await)
    }

    async fn claimable(&self, peer_id: &str, now: i64) -> Result<bool> {
        seam(messages::claimable(self.db.reader(), peer_id, now).await)
    }

    async fn claim(&self, c: Claim) -> Result<ClaimOutcome> {
        // A lease lost in a crash returns its mail to the queue: volatile. The budget's
        // spending and notice ride in the same job, so they commit with the lease.
        seam(
            self.db
                .write_direct_volatile(move |conn| {
                    messages::claim(
                        conn,
                        &c.peer_id,
                        &c.lease_id,
                        c.max,
                        c.now,
                        c.lease_expires_ms,
                        c.automatic.as_ref(),
                    )
                })
                .await,
        )
    }

    async fn ack(&self, a: Ack) -> Result<Acked> {
        let (delivered, released) = seam(
            self.db
                .write_direct(move |c| {
                    messages::ack(c, &a.peer_id, &a.lease_id, &a.via, a.ids.as_deref(), a.now)
                })
                .await,
        )?;
        Ok(Acked {
            delivered,
            released,
        })
    }

    async fn waiting(&self, peer_id: &str) -> Result<Vec<InboxMessage>> {
        seam(messages::waiting(self.db.reader(), peer_id).await)
    }

    async fn queued_count(&self, peer_id: &str) -> Result<(u64, Option<i64>)> {
        seam(messages::waiting_count(self.db.reader(), peer_id).await)
    }

    async fn queued_to_wake(&self, peer_id: &str) -> Result<u64> {
        seam(messages::queued_to_wake(self.db.reader(), peer_id).await)
    }

    async fn pending_count(&self, peer_id: &str) -> Result<u64> {
        seam(messages::pending_count(self.db.reader(), peer_id).await)
    }

    async fn pending_counts(&self) -> Result<HashMap<String, u64>> {
        seam(peers::waiting_counts(self.db.reader()).await)
    }

    async fn count_pending(&self) -> Result<u64> {
        seam(messages::count_waiting(self.db.reader()).await)
    }

    async fn status(
        &self,
        id: i64,
        with_body: bool,
    ) -> Result<Option<(MessageStatus, Option<String>)>> {
        seam(messages::status(self.db.reader(), id, with_body).await)
    }

    async fn thread(&self, id: i64) -> Result<Vec<(MessageStatus, Option<String>)>> {
        seam(messages::thread(self.db.reader(), id).await)
    }

    async fn search(&self, f: SearchFilter) -> Result<Vec<SearchHit>> {
        if !f.query.trim().is_empty() {
            seam(self.db.index_for_search().await)?;
        }
        seam(search::search(self.db.reader(), f).await)
    }

    async fn delivered_to(
        &self,
        peer_ids: &[String],
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<InboxMessage>> {
        seam(messages::delivered_to(self.db.reader(), peer_ids, since_ms, limit).await)
    }

    async fn log(&self, f: LogFilter) -> Result<Vec<MessageStatus>> {
        seam(messages::log(self.db.reader(), f).await)
    }

    async fn subscribe(&self, s: Subscribe) -> Result<Option<Subscription>> {
        seam(
            self.db
                .write(move |c| {
                    Box::pin(async move {
                        topics::subscribe(c, &s.peer_id, &s.topic, s.wake, s.mute, s.now).await
                    })
                })
                .await,
        )
    }

    async fn unsubscribe(&self, peer_id: &str, topic: &str) -> Result<bool> {
        let (id, topic) = (peer_id.to_string(), topic.to_string());
        seam(
            self.db
                .write_one(move |c| {
                    Box::pin(async move { topics::unsubscribe(c, &id, &topic).await })
                })
                .await,
        )
    }

    async fn subscriptions(&self, peer_id: &str) -> Result<Vec<Subscription>> {
        seam(topics::subscriptions(self.db.reader(), peer_id).await)
    }

    async fn topic_readers(&self, topic: &str) -> Result<Vec<TopicReader>> {
        seam(topics::readers(self.db.reader(), topic).await)
    }

    async fn topics(&self, viewer: Option<&str>) -> Result<Vec<TopicInfo>> {
        seam(topics::list(self.db.reader(), viewer).await)
    }

    async fn topic_exists(&self, topic: &str) -> Result<bool> {
        seam(topics::exists(self.db.reader(), topic).await)
    }

    async fn topic_posts(&self, f: TopicPostsFilter) -> Result<Vec<MessageStatus>> {
        seam(topics::posts(self.db.reader(), f).await)
    }

    async fn add_notice(&self, n: NewNotice) -> Result<()> {
        seam(
            self.db
                .write_direct(move |c| {
                    messages::add_notice(
                        c,
                        &n.kind,
                        n.peer_id.as_deref(),
                        &n.text,
                        &n.author,
                        n.now,
                    )
                })
                .await,
        )
    }

    async fn notices(&self, limit: u32) -> Result<Vec<Notice>> {
        seam(messages::notices(self.db.reader(), limit).await)
    }

    async fn sweep(&self, s: Sweep) -> Result<Swept> {
        seam(
            self.db
                .write(move |c| {
                    Box::pin(async move {
                        let marked_gone = peers::mark_gone(c, &s.gone, s.now).await?;
                        if !s.whole {
                            return Ok(Swept {
                                marked_gone,
                                ..Swept::default()
                            });
                        }
                        let (requeued, expired) = messages::sweep(c, s.now).await?;
                        messages::forget_budget_spend_before(c, s.now - s.budget_window_ms).await?;
                        Ok(Swept {
                            marked_gone,
                            requeued,
                            expired,
                        })
                    })
                })
                .await,
        )
    }

    async fn sweep_turn(&self) -> Result<bool> {
        // One broker per file: its sweep always runs.
        Ok(true)
    }

    async fn prune_delivered(&self, before_ms: i64, limit: u32) -> Result<u64> {
        // One job of the writer per batch: sends queued meanwhile commit in the next group.
        seam(
            self.db
                .write(move |c| {
                    Box::pin(async move { retention::prune_delivered(c, before_ms, limit).await })
                })
                .await,
        )
    }

    async fn export_page(
        &self,
        after_id: i64,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<ExportedMessage>> {
        seam(retention::export_page(self.db.reader(), after_id, since_ms, limit).await)
    }

    fn events(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        None
    }

    fn describe(&self) -> StoreInfo {
        StoreInfo {
            backend: "sqlite",
            location: self.path().display().to_string(),
        }
    }

    fn health(&self) -> Health {
        let h = &self.db.health;
        Health {
            lost_since: h.lost_since(),
            full_since: h.full_since(),
            unavailable_since: None,
        }
    }

    fn take_recovered(&self) -> Vec<(i64, i64)> {
        self.db.health.take_recovered()
    }

    fn put_back_recovered(&self, spells: Vec<(i64, i64)>) {
        self.db.health.put_back_recovered(spells)
    }

    fn commits(&self) -> u64 {
        self.db.commits.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn flush(&self) -> Result<()> {
        seam(self.db.flush().await)
    }

    async fn close(&self) {
        self.db.close().await
    }

    async fn preload_delivered(&self, peer_ids: &[String], n: u64) -> Result<()> {
        preload::delivered_history(self.path(), peer_ids, n)
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    async fn create_script_token(&self, t: NewScriptToken) -> Result<bool> {
        seam(
            self.db
                .write_one(move |c| Box::pin(async move { tokens::create(c, t).await }))
                .await,
        )
    }

    async fn script_tokens(&self) -> Result<Vec<ScriptToken>> {
        seam(tokens::list(self.db.reader()).await)
    }

    async fn script_token(&self, token_hash: &str) -> Result<Option<ScriptToken>> {
        seam(tokens::by_hash(self.db.reader(), token_hash).await)
    }

    async fn revoke_script_token(&self, name: &str, now: i64) -> Result<bool> {
        let name = name.to_string();
        seam(
            self.db
                .write_one(move |c| Box::pin(async move { tokens::revoke(c, &name, now).await }))
                .await,
        )
    }

    async fn touch_script_token(&self, token_hash: &str, now: i64) -> Result<()> {
        let hash = token_hash.to_string();
        seam(
            self.db
                .write_volatile(move |c| {
                    Box::pin(async move { tokens::touch(c, &hash, now).await })
                })
                .await,
        )
    }

    async fn take_handovers(&self, peer_id: &str) -> Result<u64> {
        let id = peer_id.to_string();
        seam(
            self.db
                .write(move |c| Box::pin(async move { handover::take(c, &id).await }))
                .await,
        )
    }
}
