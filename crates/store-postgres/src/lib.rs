//! The PostgreSQL backend of the peers store ([`PgStore`]): several brokers on one database.
//!
//! Every guarantee of [`peers_store::Store`] holds across brokers, because each is kept by the
//! database rather than by one process:
//!
//! * a send returns once committed with `synchronous_commit = on` (set on every connection,
//!   whatever the server's default); concurrent sends through one handle share a transaction:
//!   a writer task takes every send waiting, stores them with one `INSERT` of the messages and
//!   one of every reader's copy (`deliveries`), commits once, then answers each;
//! * a claim leases a reader's copies with `FOR UPDATE SKIP LOCKED`, so two claimers never
//!   lease one copy;
//!   the loop budget's count-then-spend holds an advisory lock of the Claude Code process;
//!   name allocation holds an advisory lock of its own;
//! * writes that make mail claimable `NOTIFY peers_mail`, writes to peer rows `NOTIFY
//!   peers_peers`, inside their transaction; each handle LISTENs and forwards them as
//!   [`StoreEvent`]s ([`Store::events`]);
//! * the sweep runs on one broker at a time: the one whose dedicated connection holds the
//!   session advisory lock [`SWEEP_LOCK`] ([`Store::sweep_turn`]).
//!
//! Errors: an unreachable server (or one out of connections, 53300) is
//! [`StoreError::Unavailable`], the rest of SQLSTATE class 53 and 58030 [`StoreError::Full`];
//! both are tracked for [`Store::health`].

mod events;
mod handover;
mod health;
mod messages;
mod peers;
mod retention;
mod search;
mod tokens;
mod topics;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use peers_core::config::DbUrl;
use peers_core::wire::{
    ExportedMessage, InboxMessage, MessageStatus, Notice, SearchHit, Subscription, TopicInfo,
};
use peers_store::{
    Ack, Acked, Claim, ClaimOutcome, Health, LogFilter, NewMessage, NewNotice, NewRegistration,
    PeerRecord, Registration, Result, SearchFilter, Sent, Store, StoreError, StoreEvent, StoreInfo,
    Subscribe, Sweep, Swept, TopicPostsFilter, TopicReader,
};
use peers_store::{NewScriptToken, ScriptToken};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{broadcast, mpsc, oneshot};

use health::PgHealth;

/// The session advisory lock (one-key space) whose holder runs the sweep.
pub const SWEEP_LOCK: i64 = 0x7065_6572_735f_7377; // "peers_sw"

/// The most sends committed together.
const MAX_BATCH: usize = 1024;

/// Connections per handle (the event listener and the sweep's connection come on top).
const POOL_SIZE: u32 = 16;

/// A handle to a PostgreSQL database holding the peers schema. One per broker; several
/// brokers (handles) may share a database.
pub struct PgStore {
    pool: PgPool,
    opts: PgConnectOptions,
    health: Arc<PgHealth>,
    jobs: mpsc::Sender<Job>,
    events: broadcast::Sender<StoreEvent>,
    commits: Arc<AtomicU64>,
    sweep: tokio::sync::Mutex<SweepTurn>,
    listener: tokio::task::JoinHandle<()>,
}

/// What the writer task takes.
enum Job {
    Send(Box<NewMessage>, oneshot::Sender<Result<Sent>>),
    /// Answered once every job before it is done.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then the writer stops.
    Close(oneshot::Sender<()>),
}

/// The sweep's dedicated connection, and whether it holds [`SWEEP_LOCK`].
#[derive(Default)]
struct SweepTurn {
    conn: Option<PgConnection>,
    held: bool,
}

/// Runs `$body` (which uses `$conn: &mut PgConnection`) in a transaction and commits; counts
/// the commit and keeps health current.
macro_rules! in_tx {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let store: &PgStore = $store;
        let r: std::result::Result<_, sqlx::Error> = async {
            let mut tx = store.pool.begin().await?;
            let out = {
                let $conn: &mut PgConnection = &mut tx;
                $body
            };
            tx.commit().await?;
            Ok(out)
        }
        .await;
        store.wrote(r)
    }};
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`), runs the migrations and starts the
    /// send writer and the event listener.
    pub async fn open(url: &str) -> Result<PgStore> {
        let health = Arc::new(PgHealth::new(DbUrl::redact(url)));
        let opts = PgConnectOptions::from_str(url)
            .map_err(|_| {
                StoreError::Internal(format!(
                    "cannot read the PostgreSQL URL {}",
                    health.location()
                ))
            })?
            .options([("synchronous_commit", "on")])
            .application_name("peers-broker");
        // One connection first: an unreachable server fails the open at once, with the
        // driver's reason (a pool would retry until its timeout).
        let mut conn = PgConnection::connect_with(&opts)
            .await
            .map_err(|e| health.classify(e))?;
        sqlx::migrate!("./migrations")
            .run(&mut conn)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => health.classify(e),
                e => StoreError::Schema(e.to_string()),
            })?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(opts.clone());
        let commits = Arc::new(AtomicU64::new(0));
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(pool.clone(), rx, health.clone(), commits.clone()));
        let (events, _) = broadcast::channel(1024);
        let (ready, listening) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(events::listen(pool.clone(), events.clone(), ready));
        // Wait (a bounded while) for the LISTEN: a notification sent before it would be lost
        // to this store's waiters. A server that is slow to take it does not stop the open;
        // the listener keeps trying and reports `Lagged` once it listens.
        let _ = tokio::time::timeout(Duration::from_secs(5), listening).await;
        Ok(PgStore {
            pool,
            opts,
            health,
            jobs,
            events,
            commits,
            sweep: tokio::sync::Mutex::new(SweepTurn::default()),
            listener,
        })
    }

    /// A write transaction's outcome: counted and healthy, or classified.
    fn wrote<T>(&self, r: std::result::Result<T, sqlx::Error>) -> Result<T> {
        match r {
            Ok(v) => {
                self.commits.fetch_add(1, Ordering::SeqCst);
                self.health.written();
                Ok(v)
            }
            Err(e) => Err(self.health.classify(e)),
        }
    }

    /// A read's outcome.
    fn read<T>(&self, r: std::result::Result<T, sqlx::Error>) -> Result<T> {
        match r {
            Ok(v) => {
                self.health.reachable();
                Ok(v)
            }
            Err(e) => Err(self.health.classify(e)),
        }
    }

    async fn job(&self, job: Job) -> Result<()> {
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The send writer: takes every send waiting, stores them in one transaction, then answers.
async fn writer(
    pool: PgPool,
    mut rx: mpsc::Receiver<Job>,
    health: Arc<PgHealth>,
    commits: Arc<AtomicU64>,
) {
    let mut batch: Vec<Job> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(job) = rx.try_recv()
        {
            batch.push(job);
        }
        let (mut msgs, mut replies) = (Vec::new(), Vec::new());
        let mut after = Vec::new();
        let mut closing = false;
        for job in batch.drain(..) {
            match job {
                Job::Send(m, reply) => {
                    msgs.push(*m);
                    replies.push(reply);
                }
                Job::Flush(done) => after.push(done),
                Job::Close(done) => {
                    after.push(done);
                    closing = true;
                }
            }
        }
        if !msgs.is_empty() {
            store_batch(&pool, &health, &commits, &msgs, replies).await;
        }
        for done in after {
            let _ = done.send(());
        }
        if closing {
            break;
        }
    }
}

/// One transaction for a batch of sends, then the answers. A batch that fails for a reason
/// of its own data (not the server: unreachable, full) is tried again one send at a time, so
/// a message the server refuses fails alone instead of taking its batch with it.
async fn store_batch(
    pool: &PgPool,
    health: &PgHealth,
    commits: &AtomicU64,
    msgs: &[NewMessage],
    replies: Vec<oneshot::Sender<Result<Sent>>>,
) {
    let r: std::result::Result<Vec<Sent>, sqlx::Error> = async {
        let mut tx = pool.begin().await?;
        let sent = messages::insert_batch(&mut tx, msgs).await?;
        tx.commit().await?;
        Ok(sent)
    }
    .await;
    match r {
        Ok(sent) => {
            commits.fetch_add(1, Ordering::SeqCst);
            health.written();
            for (reply, s) in replies.into_iter().zip(sent) {
                let _ = reply.send(Ok(s));
            }
        }
        Err(e) => {
            let e = health.classify(e);
            if msgs.len() > 1 && matches!(e, StoreError::Internal(_)) {
                tracing::warn!(error = %e, sends = msgs.len(), "a batch of sends failed; storing them one by one");
                for (m, reply) in msgs.iter().zip(replies) {
                    Box::pin(store_batch(
                        pool,
                        health,
                        commits,
                        std::slice::from_ref(m),
                        vec![reply],
                    ))
                    .await;
                }
                return;
            }
            tracing::error!(error = %e, sends = msgs.len(), "a batch of sends failed");
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn register(&self, r: NewRegistration) -> Result<Registration> {
        in_tx!(self, |conn| peers::register(conn, r).await?)
    }

    async fn heartbeat(
        &self,
        peer_id: &str,
        now: i64,
        may_revive: bool,
    ) -> Result<Option<PeerRecord>> {
        let live = self.wrote(peers::heartbeat_live(&self.pool, peer_id, now).await)?;
        if live.is_some() {
            return Ok(live);
        }
        in_tx!(self, |conn| peers::heartbeat_revive(
            conn, peer_id, now, may_revive
        )
        .await?)
    }

    async fn set_summary(&self, peer_id: &str, summary: &str) -> Result<()> {
        in_tx!(self, |conn| peers::set_summary(conn, peer_id, summary)
            .await?)
    }

    async fn unregister(&self, peer_id: &str, now: i64) -> Result<()> {
        in_tx!(self, |conn| peers::unregister(conn, peer_id, now).await?)
    }

    async fn peer(&self, peer_id: &str) -> Result<Option<PeerRecord>> {
        self.read(peers::by_id(&self.pool, peer_id).await)
    }

    async fn resolve(&self, who: &str) -> Result<Option<PeerRecord>> {
        self.read(peers::resolve(&self.pool, who).await)
    }

    async fn live_peers(&self) -> Result<Vec<PeerRecord>> {
        self.read(peers::live(&self.pool).await)
    }

    async fn unreplaced_peers(&self) -> Result<Vec<PeerRecord>> {
        self.read(peers::unreplaced(&self.pool).await)
    }

    async fn lineage(&self, peer_id: &str) -> Result<Vec<String>> {
        self.read(peers::lineage(&self.pool, peer_id).await)
    }

    async fn count_live(&self) -> Result<u64> {
        self.read(peers::count_live(&self.pool).await)
    }

    async fn send(&self, m: NewMessage) -> Result<Sent> {
        let (tx, rx) = oneshot::channel();
        self.job(Job::Send(Box::new(m), tx)).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn message_exists(&self, id: i64) -> Result<bool> {
        self.read(messages::exists(&self.pool, id).await)
    }

    async fn claimable(&self, peer_id: &str, now: i64) -> Result<bool> {
        self.read(messages::claimable(&self.pool, peer_id, now).await)
    }

    async fn claim(&self, c: Claim) -> Result<ClaimOutcome> {
        in_tx!(self, |conn| messages::claim(conn, &c).await?)
    }

    async fn ack(&self, a: Ack) -> Result<Acked> {
        in_tx!(self, |conn| messages::ack(conn, &a).await?)
    }

    async fn waiting(&self, peer_id: &str) -> Result<Vec<InboxMessage>> {
        self.read(messages::waiting(&self.pool, peer_id).await)
    }

    async fn queued_count(&self, peer_id: &str) -> Result<(u64, Option<i64>)> {
        self.read(messages::queued_count(&self.pool, peer_id).await)
    }

    async fn queued_to_wake(&self, peer_id: &str) -> Result<u64> {
        self.read(messages::queued_to_wake(&self.pool, peer_id).await)
    }

    async fn pending_count(&self, peer_id: &str) -> Result<u64> {
        self.read(messages::pending_count(&self.pool, peer_id).await)
    }

    async fn pending_counts(&self) -> Result<HashMap<String, u64>> {
        self.read(messages::pending_counts(&self.pool).await)
    }

    async fn count_pending(&self) -> Result<u64> {
        self.read(messages::count_pending(&self.pool).await)
    }

    async fn status(
        &self,
        id: i64,
        with_body: bool,
    ) -> Result<Option<(MessageStatus, Option<String>)>> {
        self.read(messages::status(&self.pool, id, with_body).await)
    }

    async fn thread(&self, id: i64) -> Result<Vec<(MessageStatus, Option<String>)>> {
        self.read(messages::thread(&self.pool, id).await)
    }

    async fn search(&self, f: SearchFilter) -> Result<Vec<SearchHit>> {
        self.read(search::search(&self.pool, f).await)
    }

    async fn delivered_to(
        &self,
        peer_ids: &[String],
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<InboxMessage>> {
        self.read(messages::delivered_to(&self.pool, peer_ids, since_ms, limit).await)
    }

    async fn log(&self, filter: LogFilter) -> Result<Vec<MessageStatus>> {
        self.read(messages::log(&self.pool, &filter).await)
    }

    async fn subscribe(&self, s: Subscribe) -> Result<Option<Subscription>> {
        in_tx!(self, |conn| topics::subscribe(conn, &s).await?)
    }

    async fn unsubscribe(&self, peer_id: &str, topic: &str) -> Result<bool> {
        in_tx!(self, |conn| topics::unsubscribe(conn, peer_id, topic)
            .await?)
    }

    async fn subscriptions(&self, peer_id: &str) -> Result<Vec<Subscription>> {
        self.read(topics::subscriptions(&self.pool, peer_id).await)
    }

    async fn topic_readers(&self, topic: &str) -> Result<Vec<TopicReader>> {
        self.read(topics::topic_readers(&self.pool, topic).await)
    }

    async fn topics(&self, viewer: Option<&str>) -> Result<Vec<TopicInfo>> {
        self.read(topics::topics(&self.pool, viewer).await)
    }

    async fn topic_exists(&self, topic: &str) -> Result<bool> {
        self.read(topics::topic_exists(&self.pool, topic).await)
    }

    async fn topic_posts(&self, f: TopicPostsFilter) -> Result<Vec<MessageStatus>> {
        self.read(messages::topic_posts(&self.pool, &f).await)
    }

    async fn add_notice(&self, n: NewNotice) -> Result<()> {
        in_tx!(self, |conn| messages::add_notice(conn, &n).await?)
    }

    async fn notices(&self, limit: u32) -> Result<Vec<Notice>> {
        self.read(messages::notices(&self.pool, limit).await)
    }

    async fn sweep(&self, s: Sweep) -> Result<Swept> {
        in_tx!(self, |conn| messages::sweep(conn, &s).await?)
    }

    /// True while this handle's sweep connection holds [`SWEEP_LOCK`]. A connection that died
    /// lost the lock with it: the next call connects again and tries to take it.
    async fn sweep_turn(&self) -> Result<bool> {
        let mut turn = self.sweep.lock().await;
        if let Some(conn) = turn.conn.as_mut()
            && conn.ping().await.is_err()
        {
            *turn = SweepTurn::default();
        }
        if turn.held {
            return Ok(true);
        }
        if turn.conn.is_none() {
            let conn = PgConnection::connect_with(&self.opts)
                .await
                .map_err(|e| self.health.classify(e))?;
            turn.conn = Some(conn);
        }
        let conn = turn.conn.as_mut().expect("connected above");
        let got: std::result::Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(SWEEP_LOCK)
                .fetch_one(conn)
                .await;
        match got {
            Ok(held) => {
                self.health.reachable();
                turn.held = held;
                Ok(held)
            }
            Err(e) => {
                *turn = SweepTurn::default();
                Err(self.health.classify(e))
            }
        }
    }

    fn events(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        Some(self.events.subscribe())
    }

    fn describe(&self) -> StoreInfo {
        StoreInfo {
            backend: "postgres",
            location: self.health.location().to_string(),
        }
    }

    fn health(&self) -> Health {
        self.health.now()
    }

    /// Spells of refused writes (class 53 / 58030) that ended. An unreachable server is not
    /// one: nothing could be written, and the broker says so while it lasts.
    fn take_recovered(&self) -> Vec<(i64, i64)> {
        self.health.take_recovered()
    }

    fn put_back_recovered(&self, spells: Vec<(i64, i64)>) {
        self.health.put_back_recovered(spells);
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.job(Job::Flush(tx)).await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Commits the sends queued, releases the sweep turn and closes every connection.
    async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.job(Job::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let conn = std::mem::take(&mut *self.sweep.lock().await).conn;
        if let Some(conn) = conn {
            let _ = conn.close().await;
        }
        self.pool.close().await;
        self.listener.abort();
    }

    async fn prune_delivered(&self, before_ms: i64, limit: u32) -> Result<u64> {
        in_tx!(self, |conn| retention::prune_delivered(
            conn, before_ms, limit
        )
        .await?)
    }

    async fn export_page(
        &self,
        after_id: i64,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<ExportedMessage>> {
        self.read(retention::export_page(&self.pool, after_id, since_ms, limit).await)
    }

    async fn preload_delivered(&self, peer_ids: &[String], n: u64) -> Result<()> {
        self.wrote(messages::preload_delivered(&self.pool, peer_ids, n).await)
    }

    async fn create_script_token(&self, t: NewScriptToken) -> Result<bool> {
        in_tx!(self, |conn| tokens::create(conn, t).await?)
    }

    async fn script_tokens(&self) -> Result<Vec<ScriptToken>> {
        self.read(tokens::list(&self.pool).await)
    }

    async fn script_token(&self, token_hash: &str) -> Result<Option<ScriptToken>> {
        self.read(tokens::by_hash(&self.pool, token_hash).await)
    }

    async fn revoke_script_token(&self, name: &str, now: i64) -> Result<bool> {
        in_tx!(self, |conn| tokens::revoke(conn, name, now).await?)
    }

    async fn touch_script_token(&self, token_hash: &str, now: i64) -> Result<()> {
        in_tx!(self, |conn| tokens::touch(conn, token_hash, now).await?)
    }

    async fn take_handovers(&self, peer_id: &str) -> Result<u64> {
        in_tx!(self, |conn| handover::take(conn, peer_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peers_testkit::postgres::PgCluster;

    async fn show_synchronous_commit(conn: &mut PgConnection) -> String {
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_connection_commits_synchronously_whatever_the_server_default() {
        let Some(pg) = PgCluster::start() else { return };
        let url = pg.create_database("sync");
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::query("ALTER DATABASE sync SET synchronous_commit = off")
            .execute(&mut admin)
            .await
            .unwrap();
        let mut plain = PgConnection::connect(&url).await.unwrap();
        assert_eq!(show_synchronous_commit(&mut plain).await, "off");

        let store = PgStore::open(&url).await.unwrap();
        let mut pooled = store.pool.acquire().await.unwrap();
        assert_eq!(show_synchronous_commit(&mut pooled).await, "on");
        let mut turn = PgConnection::connect_with(&store.opts).await.unwrap();
        assert_eq!(show_synchronous_commit(&mut turn).await, "on");
    }

    /// The server's own errors, raised with their SQLSTATE, classified.
    #[tokio::test]
    async fn server_errors_become_full_unavailable_or_internal() {
        let Some(pg) = PgCluster::start() else { return };
        let url = pg.create_database("faults");
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let health = PgHealth::new(DbUrl::redact(&url));
        let mut raise = async |code: &str| {
            let sql =
                format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$");
            let e = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap_err();
            health.classify(e)
        };
        for code in ["53100", "53200", "58030"] {
            assert!(
                matches!(raise(code).await, StoreError::Full { .. }),
                "{code}"
            );
        }
        for code in ["53300", "57P01", "08006"] {
            assert!(
                matches!(raise(code).await, StoreError::Unavailable { .. }),
                "{code}"
            );
        }
        assert!(matches!(raise("23505").await, StoreError::Internal(_)));
        let faults = health.now();
        assert!(faults.full_since.is_some());
        health.written();
        assert_eq!(health.now(), Health::default());
        assert_eq!(health.take_recovered().len(), 1, "the full spell ended");
    }
}
