//! The SQLite store: every SQL statement of the broker lives under this module.
//!
//! Reads go through a small pool of read-only connections (WAL lets them run beside the
//! writer). Every write goes through one writer task that owns the only write connection and
//! commits in groups: it takes whatever jobs are waiting, runs each inside a savepoint of one
//! transaction, commits once (one fsync with `synchronous=FULL`), and only then answers each
//! caller. So a `200` for a send means the message is on disk, and 64 concurrent senders
//! share one fsync instead of queueing for 64. Sends have a queue of their own: the writer
//! stores all the sends of a group with one multi-row `INSERT`.

pub mod messages;
pub mod peers;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_core::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

pub use messages::{ClaimOutcome, NewMessage, Sender};
pub use peers::{PeerRow, Registration};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store's writer has stopped")]
    WriterGone,
}

/// The largest number of jobs committed together.
const MAX_GROUP: usize = 1024;

/// Called once the group's commit is known, with its outcome.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write job: runs on the write connection and says whether it succeeded (a failed job's
/// changes are rolled back to its savepoint) and how to answer its caller after the commit.
type JobFn =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Reply)> + Send>;

struct Job {
    run: JobFn,
    /// Must be on disk before its caller hears back. Leases are not: a lease lost in a crash
    /// returns its mail to the queue (shown again at worst, never lost), so a group holding
    /// only leases commits without waiting for fsync.
    durable: bool,
    /// Wrap the job in a savepoint. Jobs of exactly one writing statement need none: SQLite
    /// undoes a failed statement by itself, and skipping two statements per job is most of
    /// the writer's cost for sends.
    savepoint: bool,
}

/// A send waiting for the next group commit.
struct SendJob {
    msg: NewMessage,
    reply: oneshot::Sender<Result<(i64, String), StoreError>>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    read: SqlitePool,
    writer: mpsc::Sender<Job>,
    sends: mpsc::Sender<SendJob>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, runs migrations, starts the writer.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(false);
        let mut write_conn = SqliteConnection::connect_with(&opts).await?;
        sqlx::migrate!("./migrations").run(&mut write_conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_with(opts.read_only(true))
            .await?;
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let (sends_tx, sends_rx) = mpsc::channel::<SendJob>(4096);
        tokio::spawn(writer_loop(write_conn, rx, sends_rx));
        Ok(Store {
            read,
            writer: tx,
            sends: sends_tx,
        })
    }

    /// Runs `f` on the write connection inside the next group commit and returns its result
    /// once the group is durable. If the job fails, only its own changes are rolled back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, true, true).await
    }

    /// [`Store::write`] for a job whose loss in a crash is harmless (a claim's lease): it
    /// still commits in order with everything else, but a group of only such jobs does not
    /// wait for fsync.
    pub async fn write_volatile<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, true, false).await
    }

    /// [`Store::write`] for a job that runs exactly one writing statement (which SQLite undoes
    /// by itself if it fails), saving the savepoint around it.
    pub async fn write_one<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, false, true).await
    }

    async fn submit<T, F>(&self, f: F, savepoint: bool, durable: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let run: JobFn = Box::new(move |conn| {
            Box::pin(async move {
                let result = f(conn).await;
                let ok = result.is_ok();
                let reply: Reply = Box::new(move |committed| {
                    let _ = tx.send(match committed {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Db(sqlx::Error::Protocol(format!(
                            "commit failed: {e}"
                        )))),
                    });
                });
                (ok, reply)
            })
        });
        self.writer
            .send(Job {
                run,
                savepoint,
                durable,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Stores a message in the next group commit (batched with the other sends waiting) and
    /// returns its id and the registration it was queued for, once durable.
    pub async fn insert_message(&self, msg: NewMessage) -> Result<(i64, String), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sends
            .send(SendJob { msg, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The read-only pool.
    pub fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// Waits until every write sent so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Box::pin(async { Ok(()) })).await
    }

    /// Closes the read pool. The writer stops when the last `Store` handle is dropped.
    pub async fn close(&self) {
        self.read.close().await;
    }
}

async fn writer_loop(
    mut conn: SqliteConnection,
    mut jobs_rx: mpsc::Receiver<Job>,
    mut sends_rx: mpsc::Receiver<SendJob>,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    let mut sends: Vec<SendJob> = Vec::with_capacity(MAX_GROUP);
    let (mut jobs_open, mut sends_open) = (true, true);
    while jobs_open || sends_open {
        // Wait for the first piece of work, then take whatever else is already waiting.
        tokio::select! {
            n = jobs_rx.recv_many(&mut jobs, MAX_GROUP), if jobs_open => jobs_open = n > 0,
            n = sends_rx.recv_many(&mut sends, MAX_GROUP), if sends_open => sends_open = n > 0,
        }
        while jobs.len() < MAX_GROUP {
            match jobs_rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        while sends.len() < MAX_GROUP {
            match sends_rx.try_recv() {
                Ok(j) => sends.push(j),
                Err(_) => break,
            }
        }
        if jobs.is_empty() && sends.is_empty() {
            continue;
        }
        group_commit(&mut conn, &mut jobs, &mut sends).await;
    }
    let _ = sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

/// Runs one group: the sends (one statement), then each job in its savepoint, one commit,
/// then the answers.
async fn group_commit(conn: &mut SqliteConnection, jobs: &mut Vec<Job>, sends: &mut Vec<SendJob>) {
    // A group of only volatile jobs (leases) commits without fsync. SQLite takes the setting
    // only outside a transaction; the next durable commit's fsync covers these WAL frames too.
    let durable = !sends.is_empty() || jobs.iter().any(|j| j.durable);
    let begin = if durable {
        "BEGIN IMMEDIATE"
    } else {
        "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE"
    };
    if let Err(e) = sqlx::raw_sql(begin).execute(&mut *conn).await {
        // Dropping the work drops its reply channels: each caller gets WriterGone.
        tracing::error!(error = %e, "cannot begin a write transaction");
        let _ = sqlx::raw_sql("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await;
        jobs.clear();
        sends.clear();
        return;
    }
    let inserted = if sends.is_empty() {
        Ok(vec![])
    } else {
        let msgs: Vec<NewMessage> = sends.iter().map(|s| s.msg.clone()).collect();
        let _ = sqlx::raw_sql("SAVEPOINT sends").execute(&mut *conn).await;
        let r = messages::insert_many(conn, &msgs).await;
        if r.is_err() {
            let _ = sqlx::raw_sql("ROLLBACK TO sends").execute(&mut *conn).await;
        }
        let _ = sqlx::raw_sql("RELEASE sends").execute(&mut *conn).await;
        r.map_err(|e| e.to_string())
    };
    let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        if job.savepoint {
            let _ = sqlx::raw_sql("SAVEPOINT job").execute(&mut *conn).await;
        }
        let (ok, reply) = (job.run)(&mut *conn).await;
        if job.savepoint {
            if !ok {
                let _ = sqlx::raw_sql("ROLLBACK TO job").execute(&mut *conn).await;
            }
            let _ = sqlx::raw_sql("RELEASE job").execute(&mut *conn).await;
        }
        replies.push(reply);
    }
    let committed = sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if let Err(e) = &committed {
        tracing::error!(error = %e, "group commit failed");
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
    if !durable {
        let _ = sqlx::raw_sql("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await;
    }
    let failed = |e: &str| StoreError::Db(sqlx::Error::Protocol(format!("write failed: {e}")));
    match (&committed, &inserted) {
        (Ok(()), Ok(ids)) => {
            for (send, id) in sends.drain(..).zip(ids.iter().cloned()) {
                let _ = send.reply.send(Ok(id));
            }
        }
        (Err(e), _) | (Ok(()), Err(e)) => {
            for send in sends.drain(..) {
                let _ = send.reply.send(Err(failed(e)));
            }
        }
    }
    for reply in replies {
        reply(committed.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peers_core::wire::{RegisterRequest, SenderKind};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, s)
    }

    async fn reg(s: &Store, pid: u32, cwd: &str) -> PeerRow {
        let req = RegisterRequest {
            claude_pid: pid,
            mcp_pid: 1,
            machine_id: "m".into(),
            host: "h".into(),
            cwd: cwd.into(),
            ..Default::default()
        };
        let id = format!("p{pid}-{}", peers_core::paths::random_hex(2));
        s.write(move |c| Box::pin(peers::register(c, req, id, "hash".into(), 1)))
            .await
            .unwrap()
            .peer
    }

    fn msg(to: &PeerRow, body: &str) -> NewMessage {
        NewMessage {
            from: Sender {
                kind: SenderKind::Human,
                peer_id: None,
                address: "you@h".into(),
                cwd: None,
            },
            to_peer: to.id.clone(),
            to_address: to.address(),
            body: body.into(),
            reply_to: None,
            sent_ms: 1,
            expires_ms: i64::MAX,
        }
    }

    #[tokio::test]
    async fn concurrent_writes_all_commit_in_groups() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        let mut tasks = vec![];
        for i in 0..200 {
            let (s, m) = (s.clone(), msg(&p, &format!("m{i}")));
            tasks.push(tokio::spawn(async move {
                s.write(move |c| Box::pin(messages::insert(c, m)))
                    .await
                    .unwrap()
            }));
        }
        let mut ids = vec![];
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        let mut ids: Vec<i64> = ids.into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        assert_eq!(
            messages::waiting(s.reader(), &p.id).await.unwrap().len(),
            200
        );
    }

    #[tokio::test]
    async fn batched_sends_keep_their_order_and_their_own_ids() {
        let (_d, s) = store().await;
        let a = reg(&s, 10, "/x/a").await;
        let b = reg(&s, 11, "/x/b").await;
        let mut tasks = vec![];
        for i in 0..300 {
            let s = s.clone();
            let to = if i % 2 == 0 { a.clone() } else { b.clone() };
            let m = msg(&to, &format!("m{i}"));
            tasks.push(tokio::spawn(async move {
                (i, to.id, s.insert_message(m).await.unwrap())
            }));
        }
        // Ordinary jobs share the same groups.
        let id = a.id.clone();
        s.write(move |c| Box::pin(async move { peers::set_summary(c, &id, "busy").await }))
            .await
            .unwrap();
        for t in tasks {
            let (i, to, (msg_id, queued_for)) = t.await.unwrap();
            assert_eq!(queued_for, to);
            let st = messages::status(s.reader(), msg_id, false)
                .await
                .unwrap()
                .unwrap()
                .0;
            assert_eq!(
                st.bytes as usize,
                format!("m{i}").len(),
                "id {msg_id} is message {i}"
            );
            assert_eq!(st.to_peer_id, to);
        }
        assert_eq!(
            messages::waiting(s.reader(), &a.id).await.unwrap().len(),
            150
        );
        assert_eq!(
            messages::waiting(s.reader(), &b.id).await.unwrap().len(),
            150
        );
    }

    #[tokio::test]
    async fn volatile_groups_never_leave_sends_without_fsync() {
        let (_d, s) = store().await;
        let sync = |s: &Store| {
            let s = s.clone();
            async move {
                s.write(|c| {
                    Box::pin(async move {
                        let v: i64 = sqlx::query_scalar("PRAGMA synchronous")
                            .fetch_one(c)
                            .await?;
                        Ok(v)
                    })
                })
                .await
                .unwrap()
            }
        };
        assert_eq!(sync(&s).await, 2, "FULL from the start");
        let seen_inside: i64 = s
            .write_volatile(|c| {
                Box::pin(async move {
                    Ok(sqlx::query_scalar("PRAGMA synchronous")
                        .fetch_one(c)
                        .await?)
                })
            })
            .await
            .unwrap();
        assert_eq!(seen_inside, 1, "a group of only leases runs with NORMAL");
        assert_eq!(sync(&s).await, 2, "and FULL is back for the next group");
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        let m = msg(&p, "kept");
        let good = s.write(move |c| Box::pin(messages::insert(c, m)));
        let m = msg(&p, "rolled back");
        let bad = s.write(move |c| {
            Box::pin(async move {
                messages::insert(c, m).await?;
                sqlx::query("INSERT INTO no_such_table VALUES (1)")
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        });
        let (good, bad) = tokio::join!(good, bad);
        assert!(good.is_ok());
        assert!(bad.is_err());
        let left = messages::waiting(s.reader(), &p.id).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].body, "kept");
    }

    #[tokio::test]
    async fn claim_leases_in_order_and_partial_ack_releases_the_rest() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        for b in ["one", "two", "three"] {
            let m = msg(&p, b);
            s.write(move |c| Box::pin(messages::insert(c, m)))
                .await
                .unwrap();
        }
        let id = p.id.clone();
        let out = s
            .write(move |c| {
                Box::pin(async move { messages::claim(c, &id, "L", 2, 10, 1000, None).await })
            })
            .await
            .unwrap();
        let bodies: Vec<&str> = out.messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["one", "two"]);
        let first = out.messages[0].message_id;
        let id = p.id.clone();
        let (delivered, released) = s
            .write(move |c| {
                Box::pin(
                    async move { messages::ack(c, &id, "L", "Stop", Some(&[first]), 20).await },
                )
            })
            .await
            .unwrap();
        assert_eq!((delivered, released), (1, 1));
        let waiting = messages::waiting(s.reader(), &p.id).await.unwrap();
        let bodies: Vec<&str> = waiting.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["two", "three"]);
    }

    #[tokio::test]
    async fn a_send_racing_a_reregistration_follows_the_replacement() {
        let (_d, s) = store().await;
        let old = reg(&s, 10, "/x/api").await;
        // The send resolved `old`; before its insert runs, the session registers again.
        let new = reg(&s, 10, "/x/api").await;
        let m = msg(&old, "resolved before the re-registration");
        let (_, to) = s
            .write_one(move |c| Box::pin(messages::insert(c, m)))
            .await
            .unwrap();
        assert_eq!(to, new.id);
        assert_eq!(
            messages::waiting(s.reader(), &new.id).await.unwrap().len(),
            1
        );
        assert!(
            messages::waiting(s.reader(), &old.id)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn names_follow_the_process_and_the_directory() {
        let (_d, s) = store().await;
        let a = reg(&s, 10, "/x/api").await;
        let b = reg(&s, 11, "/y/api").await;
        assert_eq!((a.name.as_str(), b.name.as_str()), ("api", "api-2"));
        // Same process again: same name, the old row is replaced.
        let a2 = reg(&s, 10, "/x/api").await;
        assert_eq!(a2.name, "api");
        let old = peers::by_id(s.reader(), &a.id).await.unwrap().unwrap();
        assert_eq!(old.replaced_by.as_deref(), Some(a2.id.as_str()));
        // b ends with mail waiting; the next session in b's directory takes b's name and mail.
        let m = msg(&b, "for api-2");
        s.write(move |c| Box::pin(messages::insert(c, m)))
            .await
            .unwrap();
        let bid = b.id.clone();
        s.write(move |c| Box::pin(async move { peers::mark_gone(c, &[bid], 5).await }))
            .await
            .unwrap();
        let c = reg(&s, 12, "/y/api").await;
        assert_eq!(c.name, "api-2");
        assert_eq!(messages::waiting(s.reader(), &c.id).await.unwrap().len(), 1);
        // resolve: by name, name@host, case-insensitively, and a replaced id follows along.
        for who in ["API-2", "api-2@H", b.id.as_str()] {
            let r = peers::resolve(s.reader(), who).await.unwrap().unwrap();
            assert_eq!(r.id, c.id, "{who}");
        }
        assert!(
            peers::resolve(s.reader(), "nobody")
                .await
                .unwrap()
                .is_none()
        );
    }
}
