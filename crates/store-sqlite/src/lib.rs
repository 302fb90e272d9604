//! The SQLite backend of the peers store ([`SqliteStore`]): every SQL statement it runs lives
//! in this crate.
//!
//! Reads go through a small pool of read-only connections (WAL lets them run beside the
//! writer). Every write goes through one writer, on a thread of its own, that commits in
//! groups: it takes whatever jobs are waiting, runs each inside a savepoint of one
//! transaction, commits once (one fsync with `synchronous=FULL`), and only then answers each
//! caller. So a `200` for a send means the message is on disk, and 64 concurrent senders
//! share one fsync instead of queueing for 64. Sends have a queue of their own: the writer
//! stores all the sends of a group — their messages, then every reader's copy (`deliveries`)
//! — with a few multi-row `INSERT`s ([`messages::send_statements`]), so a post to 500 readers
//! is one transaction and one fsync like any send. The writer holds two connections: a
//! direct one (`rusqlite`) on which the sends and the hot jobs (claims, acks, notices:
//! [`Db::write_direct`]) run their statements and commit without a hand-off to another
//! thread (through sqlx every statement's result wakes the caller, which cost a lone send
//! more than its fsync), and sqlx's for the other jobs ([`Db::write`]). The
//! trait's operations are jobs composed of the statements in [`peers`], [`messages`] and
//! [`topics`] (a claim and its loop-budget notice in one job, the sweep's three statements in
//! one job, …).
//!
//! Search indexing is not part of a send's commit: the writer indexes new mail in batches
//! (`search::index_batch`), shortly after sends (a background task, [`INDEX_DELAY`]) and
//! before any text search ([`Db::index_for_search`]), without fsync (the index is derived:
//! lost in a crash, it is rebuilt from the messages).
//!
//! Storage faults are answered, not hidden ([`StoreHealth`]): before and after each group the
//! writer checks that the database path is still the file it opened (device and inode), and
//! a disk-full or I/O error fails the group's callers with [`StoreError::Full`] until a later
//! group writes again.

mod backend;
mod handover;
mod messages;
mod peers;
mod preload;
mod retention;
mod search;
mod tokens;
mod topics;

pub use backend::SqliteStore;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{Notify, mpsc, oneshot};

use peers_store::{NewMessage, StoreError};

/// What the statements of this crate fail with; [`Error::public`] turns it into the trait's
/// [`StoreError`] at the seam.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Direct(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The database path no longer is the file the broker opened: it was deleted or replaced.
    /// Whatever is written now would land in a file nobody can open again.
    #[error("the database file {} is gone or was replaced under the running broker", .0.display())]
    Lost(PathBuf),
    /// SQLite reported a full disk (`SQLITE_FULL`) or an I/O error (`SQLITE_IOERR`).
    #[error("cannot write the database {}: disk full or I/O error: {detail}", .db.display())]
    Full { db: PathBuf, detail: String },
    /// A group's commit failed for another reason.
    #[error("the write failed: {0}")]
    Write(String),
    /// The caller's search query cannot be parsed; the text is for the caller.
    #[error("{0}")]
    BadQuery(String),
}

impl Error {
    /// The trait's error: disk faults, a lost file and a stopped writer keep their meaning;
    /// the driver's other errors become [`Error::Internal`] (text for the log).
    fn public(self) -> StoreError {
        match self {
            Error::Lost(db) => StoreError::Lost {
                location: db.display().to_string(),
            },
            Error::Full { db, detail } => StoreError::Full {
                location: db.display().to_string(),
                detail,
            },
            Error::WriterGone => StoreError::Closed,
            Error::Migrate(e) => StoreError::Schema(e.to_string()),
            Error::Db(e) => StoreError::Internal(e.to_string()),
            Error::Direct(e) => StoreError::Internal(e.to_string()),
            Error::Write(e) => StoreError::Internal(e),
            Error::BadQuery(why) => StoreError::BadQuery(why),
        }
    }
}

/// Why a group (or one job of it) failed; cheap to hand to every caller of the group.
#[derive(Debug, Clone)]
enum Failure {
    Lost,
    Full(String),
    Other(String),
}

impl Failure {
    fn of(e: &sqlx::Error) -> Failure {
        if is_disk_fault(e) {
            Failure::Full(e.to_string())
        } else {
            Failure::Other(e.to_string())
        }
    }

    /// [`Failure::of`], for the writer's direct connection.
    fn of_direct(e: &rusqlite::Error) -> Failure {
        match e {
            rusqlite::Error::SqliteFailure(f, _) if is_disk_fault_code(f.extended_code) => {
                Failure::Full(e.to_string())
            }
            _ => Failure::Other(e.to_string()),
        }
    }

    fn error(&self, db: &Path) -> Error {
        match self {
            Failure::Lost => Error::Lost(db.to_path_buf()),
            Failure::Full(detail) => Error::Full {
                db: db.to_path_buf(),
                detail: detail.clone(),
            },
            Failure::Other(e) => Error::Write(e.clone()),
        }
    }
}

/// `SQLITE_FULL` (13) or `SQLITE_IOERR` (10, with its extended codes), or an I/O error.
fn is_disk_fault(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(is_disk_fault_code),
        _ => false,
    }
}

/// Whether SQLite's (extended) result code is `SQLITE_FULL` or `SQLITE_IOERR`.
fn is_disk_fault_code(code: i32) -> bool {
    matches!(code & 0xff, 10 | 13)
}

/// What the broker knows about its database file: shared by the writer (which keeps it
/// current), the sweep and the API (which answer from it).
struct StoreHealth {
    db: PathBuf,
    /// Device and inode of the file opened.
    file: Option<(u64, u64)>,
    lost_ms: AtomicI64,
    lost: AtomicBool,
    /// Since when writes fail for lack of space or I/O errors (epoch ms); 0: they do not.
    full_since_ms: AtomicI64,
    /// Disk faults seen so far (the writer compares before and after a group).
    faults: AtomicU64,
    /// Spells of a full disk that ended, `(from_ms, to_ms)`, for the sweep to record.
    recovered: Mutex<Vec<(i64, i64)>>,
}

impl StoreHealth {
    fn new(db: &Path) -> StoreHealth {
        StoreHealth {
            db: db.to_path_buf(),
            file: std::fs::metadata(db).ok().map(|m| (m.dev(), m.ino())),
            lost_ms: AtomicI64::new(0),
            lost: AtomicBool::new(false),
            full_since_ms: AtomicI64::new(0),
            faults: AtomicU64::new(0),
            recovered: Mutex::new(Vec::new()),
        }
    }

    /// The database path.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// Stats the database path (one `stat`): `true` once it no longer is the file the broker
    /// opened. Lost stays lost: only a restart opens a database again.
    pub fn check_file(&self) -> bool {
        if self.is_lost() {
            return true;
        }
        let Some(opened) = self.file else {
            return false;
        };
        let now = match std::fs::metadata(&self.db) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // Cannot tell (e.g. an I/O error): not evidence that the file is gone.
            Err(_) => return false,
        };
        if now == Some(opened) {
            return false;
        }
        if !self.lost.swap(true, Ordering::SeqCst) {
            self.lost_ms.store(peers_core::now_ms(), Ordering::SeqCst);
            tracing::error!(
                db = %self.db.display(),
                "storage_lost: the database file was deleted or replaced under the running \
                 broker; refusing every write with 503 until the broker is restarted"
            );
        }
        true
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// When the database file was found gone.
    pub fn lost_since(&self) -> Option<i64> {
        self.is_lost().then(|| self.lost_ms.load(Ordering::SeqCst))
    }

    /// Since when writes fail with a full disk or I/O errors, if they do now.
    pub fn full_since(&self) -> Option<i64> {
        match self.full_since_ms.load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }

    fn mark_full(&self, detail: &str) {
        self.faults.fetch_add(1, Ordering::SeqCst);
        let now = peers_core::now_ms();
        if self
            .full_since_ms
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            tracing::error!(
                db = %self.db.display(),
                detail,
                "storage_full: cannot write the database (disk full or I/O error); \
                 answering 507 until a write succeeds again"
            );
        }
    }

    /// A group wrote and committed: whatever filled the disk is over.
    fn mark_written(&self) {
        let since = self.full_since_ms.swap(0, Ordering::SeqCst);
        if since != 0 {
            let now = peers_core::now_ms();
            tracing::info!(
                db = %self.db.display(),
                "storage recovered: the database takes writes again"
            );
            self.recovered
                .lock()
                .expect("health lock")
                .push((since, now));
        }
    }

    /// Full-disk spells that ended since the last call.
    pub fn take_recovered(&self) -> Vec<(i64, i64)> {
        std::mem::take(&mut *self.recovered.lock().expect("health lock"))
    }

    /// Puts back spells whose notice could not be written yet.
    pub fn put_back_recovered(&self, spells: Vec<(i64, i64)>) {
        self.recovered.lock().expect("health lock").extend(spells);
    }

    /// The error for a failed statement: disk faults become [`Error::Full`] (and are
    /// remembered), others stay as they are.
    fn classify(&self, e: Error) -> Error {
        let detail = match &e {
            Error::Db(d) if is_disk_fault(d) => d.to_string(),
            Error::Direct(d) if matches!(Failure::of_direct(d), Failure::Full(_)) => d.to_string(),
            _ => return e,
        };
        self.mark_full(&detail);
        Error::Full {
            db: self.db.clone(),
            detail,
        }
    }
}

/// The largest number of jobs committed together.
const MAX_GROUP: usize = 1024;

/// What [`Db::write`] and its kin take: a job run on the write connection.
trait WriteJob<T>:
    for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, Error>> + Send + 'static
{
}

impl<T, F> WriteJob<T> for F where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, Error>> + Send + 'static
{
}

/// What [`Db::write_direct`] and its kin take: a job run on the writer's direct connection,
/// on the writer's own thread.
trait DirectJob<T>: FnOnce(&rusqlite::Connection) -> Result<T, Error> + Send + 'static {}

impl<T, F> DirectJob<T> for F where
    F: FnOnce(&rusqlite::Connection) -> Result<T, Error> + Send + 'static
{
}

/// Called once the group's commit is known, with its outcome.
type Reply = Box<dyn FnOnce(Result<(), Failure>) + Send>;
/// A job on sqlx's connection, ready to run.
type SqlxRun =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Reply)> + Send>;
/// A job on the direct connection, ready to run.
type DirectRun = Box<dyn FnOnce(&rusqlite::Connection) -> (bool, Reply) + Send>;

/// A write job: runs on one of the writer's connections and says whether it succeeded (a
/// failed job's changes are rolled back to its savepoint) and how to answer its caller after
/// the commit.
enum Run {
    /// On sqlx's connection.
    Sqlx(SqlxRun),
    /// On the direct connection, in the same transaction as the group's sends.
    Direct(DirectRun),
}

/// Turns a job's result into whether it succeeded and how to answer its caller.
type Finish<T> = Box<dyn FnOnce(Result<T, Error>) -> (bool, Reply) + Send>;

struct Job {
    run: Run,
    /// Answers the caller without running the job (the group could not start).
    abort: Box<dyn FnOnce(Error) + Send>,
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
    reply: oneshot::Sender<Result<(i64, Vec<String>), Error>>,
}

/// Handle to the database: the read pool and the writer's queues; cheap to clone.
#[derive(Clone)]
struct Db {
    read: SqlitePool,
    writer: mpsc::Sender<Job>,
    sends: mpsc::Sender<SendJob>,
    /// Asks the writer to finish, checkpoint the WAL and close.
    closing: mpsc::Sender<oneshot::Sender<()>>,
    health: Arc<StoreHealth>,
    /// Groups committed so far.
    commits: Arc<AtomicU64>,
    /// How far the full-text index trails the sends.
    lag: Arc<SearchLag>,
}

/// How far the full-text index trails the sends: counts, not message ids, because SQLite
/// can hand out a deleted newest message's id again (`search.rs`, migration 0009).
struct SearchLag {
    /// Messages committed since the store opened, plus one: the file may hold unindexed
    /// mail from before (a crash, a bulk preload).
    sent: AtomicU64,
    /// What `sent` was before the last catch-up that found nothing left to index.
    indexed: AtomicU64,
    /// Wakes the background indexer after a group with sends commits.
    wanted: Notify,
}

/// How long the background indexer lets sends gather before indexing them: one batch of a
/// few hundred rows costs FTS5 far less than as many single rows.
const INDEX_DELAY: Duration = Duration::from_millis(200);

impl Db {
    /// Opens (creating if needed) the database at `path`, runs migrations, starts the writer.
    pub async fn open(path: &Path) -> Result<Db, Error> {
        Db::open_with(path, Some(INDEX_DELAY)).await
    }

    /// [`Db::open`], with the background indexer waiting `index_delay` after sends, or not
    /// running at all (`None`: tests that look at the index between a send and a search).
    async fn open_with(path: &Path, index_delay: Option<Duration>) -> Result<Db, Error> {
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
        // Migrations commit without waiting for fsync: nine of them on a fresh file cost ~26
        // fsyncs, most of a first start. WAL stays consistent under `NORMAL`; a migration lost
        // to a power cut runs again at the next start, and the first durable commit after
        // this (`FULL` again, below) syncs the WAL frames before it too.
        sqlx::raw_sql("PRAGMA synchronous = NORMAL")
            .execute(&mut write_conn)
            .await?;
        sqlx::migrate!("./migrations").run(&mut write_conn).await?;
        sqlx::raw_sql("PRAGMA synchronous = FULL")
            .execute(&mut write_conn)
            .await?;
        let direct = open_direct(path)?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_with(opts.read_only(true))
            .await?;
        let health = Arc::new(StoreHealth::new(path));
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let (sends_tx, sends_rx) = mpsc::channel::<SendJob>(4096);
        let (closing, closing_rx) = mpsc::channel(1);
        let commits = Arc::new(AtomicU64::new(0));
        let lag = Arc::new(SearchLag {
            sent: AtomicU64::new(1),
            indexed: AtomicU64::new(0),
            wanted: Notify::new(),
        });
        if let Some(delay) = index_delay {
            tokio::spawn(indexer(tx.downgrade(), health.clone(), lag.clone(), delay));
        }
        // The writer has a thread of its own: a group of sends alone runs its statements on
        // it directly, and its fsync blocks no task of the runtime.
        let writer = writer_loop(
            Conns {
                jobs: write_conn,
                sends: direct,
            },
            Queues {
                jobs: rx,
                sends: sends_rx,
                closing: closing_rx,
            },
            health.clone(),
            commits.clone(),
            lag.clone(),
        );
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("peers-writer".into())
            .spawn(move || runtime.block_on(writer))
            .map_err(|e| Error::Write(format!("cannot start the writer's thread: {e}")))?;
        Ok(Db {
            read,
            writer: tx,
            sends: sends_tx,
            closing,
            health,
            commits,
            lag,
        })
    }

    /// Runs `f` on the write connection inside the next group commit and returns its result
    /// once the group is durable. If the job fails, only its own changes are rolled back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: WriteJob<T>,
    {
        self.submit(f, true, true).await
    }

    /// [`Db::write`] for a job whose loss in a crash is harmless (a claim's lease): it
    /// still commits in order with everything else, but a group of only such jobs does not
    /// wait for fsync.
    pub async fn write_volatile<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: WriteJob<T>,
    {
        self.submit(f, true, false).await
    }

    /// [`Db::write`] for a job that runs exactly one writing statement (which SQLite undoes
    /// by itself if it fails), saving the savepoint around it.
    pub async fn write_one<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: WriteJob<T>,
    {
        self.submit(f, false, true).await
    }

    async fn submit<T, F>(&self, f: F, savepoint: bool, durable: bool) -> Result<T, Error>
    where
        T: Send + 'static,
        F: WriteJob<T>,
    {
        submit(&self.writer, &self.health, f, savepoint, durable).await
    }

    /// [`Db::write`] for a job on the writer's direct connection: it runs in the same
    /// transaction as the group's sends, on the writer's thread, with no hand-off to another
    /// thread per statement (the hot writes: claims, acks).
    pub async fn write_direct<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: DirectJob<T>,
    {
        submit_direct(&self.writer, &self.health, f, true).await
    }

    /// [`Db::write_direct`] for a job whose loss in a crash is harmless ([`Db::write_volatile`]).
    pub async fn write_direct_volatile<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: DirectJob<T>,
    {
        submit_direct(&self.writer, &self.health, f, false).await
    }

    /// Indexes for search every message committed before this call that the full-text index
    /// does not hold yet (writer jobs of [`search::INDEX_BATCH`] each, without fsync: the
    /// index is rebuilt from the messages if a crash loses it). A text search calls this
    /// first, so it sees every acknowledged send; with nothing to index it costs two atomic
    /// loads.
    pub async fn index_for_search(&self) -> Result<(), Error> {
        catch_up(&self.writer, &self.health, &self.lag).await
    }

    /// Stores a message and its readers' copies in the next group commit (batched with the
    /// other sends waiting) and returns its id and the registration each copy was queued for,
    /// once durable.
    pub async fn insert_message(&self, msg: NewMessage) -> Result<(i64, Vec<String>), Error> {
        let (reply, rx) = oneshot::channel();
        self.sends
            .send(SendJob { msg, reply })
            .await
            .map_err(|_| Error::WriterGone)?;
        rx.await.map_err(|_| Error::WriterGone)?
    }

    /// The read-only pool.
    pub fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// Waits until every write sent so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), Error> {
        self.write(|_| Box::pin(async { Ok(()) })).await
    }

    /// Closes the store for a clean shutdown: the read pool, then the writer, which commits
    /// what is still queued, checkpoints the WAL into the main file
    /// (`wal_checkpoint(TRUNCATE)`, so a copy of `peers.db` alone is complete) and closes.
    pub async fn close(&self) {
        self.read.close().await;
        let (done, closed) = oneshot::channel();
        if self.closing.send(done).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// Sends job `f` to the writer behind `writer` and waits for its answer after its group's
/// commit ([`Db::write`] and its kin).
async fn submit<T, F>(
    writer: &mpsc::Sender<Job>,
    health: &Arc<StoreHealth>,
    f: F,
    savepoint: bool,
    durable: bool,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: WriteJob<T>,
{
    let h = health.clone();
    let run = move |finish: Finish<T>| {
        Run::Sqlx(Box::new(move |conn| {
            Box::pin(async move { finish(f(conn).await.map_err(|e| h.classify(e))) })
        }))
    };
    enqueue(writer, health, run, savepoint, durable).await
}

/// [`submit`] for a job on the direct connection ([`Db::write_direct`]).
async fn submit_direct<T, F>(
    writer: &mpsc::Sender<Job>,
    health: &Arc<StoreHealth>,
    f: F,
    durable: bool,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: DirectJob<T>,
{
    let h = health.clone();
    let run = move |finish: Finish<T>| {
        Run::Direct(Box::new(move |conn| {
            finish(f(conn).map_err(|e| h.classify(e)))
        }))
    };
    enqueue(writer, health, run, true, durable).await
}

/// Queues the job `run` makes (given how to finish it) and waits for its answer.
async fn enqueue<T: Send + 'static>(
    writer: &mpsc::Sender<Job>,
    health: &Arc<StoreHealth>,
    run: impl FnOnce(Finish<T>) -> Run,
    savepoint: bool,
    durable: bool,
) -> Result<T, Error> {
    let (tx, rx) = oneshot::channel::<Result<T, Error>>();
    // Either the job runs and answers after the commit, or it is aborted unrun.
    let tx = Arc::new(Mutex::new(Some(tx)));
    let abort_tx = tx.clone();
    let abort = Box::new(move |e: Error| {
        if let Some(tx) = abort_tx.lock().expect("reply lock").take() {
            let _ = tx.send(Err(e));
        }
    });
    let health = health.clone();
    let finish: Finish<T> = Box::new(move |result| {
        let ok = result.is_ok();
        let reply: Reply = Box::new(move |committed| {
            if let Some(tx) = tx.lock().expect("reply lock").take() {
                let _ = tx.send(match committed {
                    Ok(()) => result,
                    Err(f) => Err(f.error(health.db())),
                });
            }
        });
        (ok, reply)
    });
    writer
        .send(Job {
            run: run(finish),
            abort,
            savepoint,
            durable,
        })
        .await
        .map_err(|_| Error::WriterGone)?;
    rx.await.map_err(|_| Error::WriterGone)?
}

/// [`Db::index_for_search`], for the store and its background indexer.
async fn catch_up(
    writer: &mpsc::Sender<Job>,
    health: &Arc<StoreHealth>,
    lag: &SearchLag,
) -> Result<(), Error> {
    let target = lag.sent.load(Ordering::SeqCst);
    if lag.indexed.load(Ordering::SeqCst) >= target {
        return Ok(());
    }
    while !submit(
        writer,
        health,
        |c| Box::pin(search::index_batch(c, search::INDEX_BATCH)),
        true,
        false,
    )
    .await?
    {}
    lag.indexed.fetch_max(target, Ordering::SeqCst);
    Ok(())
}

/// Indexes sends for search in the background, `delay` after a group with sends commits, so
/// a later search has little left to do. Holds the writer's queue only weakly: a store
/// dropped without [`Db::close`] still lets its writer finish.
async fn indexer(
    writer: mpsc::WeakSender<Job>,
    health: Arc<StoreHealth>,
    lag: Arc<SearchLag>,
    delay: Duration,
) {
    loop {
        lag.wanted.notified().await;
        tokio::time::sleep(delay).await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        match catch_up(&writer, &health, &lag).await {
            Ok(()) => {}
            Err(Error::WriterGone) => return,
            // A text search tries again, and so does the next send.
            Err(e) => tracing::warn!(error = %e, "cannot index new mail for search yet"),
        }
    }
}

/// What the writer receives.
struct Queues {
    jobs: mpsc::Receiver<Job>,
    sends: mpsc::Receiver<SendJob>,
    closing: mpsc::Receiver<oneshot::Sender<()>>,
}

/// The writer's two connections to the one database file. Only the writer writes, one
/// transaction at a time, so the two never wait for each other's lock.
struct Conns {
    /// Through sqlx: the jobs of [`Db::write`] and its kin.
    jobs: SqliteConnection,
    /// Direct, on the writer's thread: the sends and the jobs of [`Db::write_direct`].
    sends: rusqlite::Connection,
}

/// Opens the writer's direct connection, once the migrations ran: the same settings as the
/// sqlx connection (`synchronous=FULL`, so a send's commit waits for its fsync).
fn open_direct(path: &Path) -> Result<rusqlite::Connection, Error> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF")?;
    // Groups of 1 to MAX_GROUP sends prepare different statements; keep the common ones.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The writer: waits for work, runs it as one group, answers, until the queues close or the
/// store closes. Runs on its own thread (`Handle::block_on`), so the direct connection's
/// statements and fsync may block it.
async fn writer_loop(
    mut conns: Conns,
    mut q: Queues,
    health: Arc<StoreHealth>,
    commits: Arc<AtomicU64>,
    lag: Arc<SearchLag>,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    let mut sends: Vec<SendJob> = Vec::with_capacity(MAX_GROUP);
    let (mut jobs_open, mut sends_open) = (true, true);
    let mut closing: Option<oneshot::Sender<()>> = None;
    while jobs_open || sends_open {
        // Wait for the first piece of work, then take whatever else is already waiting.
        tokio::select! {
            n = q.jobs.recv_many(&mut jobs, MAX_GROUP), if jobs_open => jobs_open = n > 0,
            n = q.sends.recv_many(&mut sends, MAX_GROUP), if sends_open => sends_open = n > 0,
            Some(done) = q.closing.recv(), if closing.is_none() => closing = Some(done),
        }
        while jobs.len() < MAX_GROUP {
            match q.jobs.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        while sends.len() < MAX_GROUP {
            match q.sends.try_recv() {
                Ok(j) => sends.push(j),
                Err(_) => break,
            }
        }
        if !jobs.is_empty() || !sends.is_empty() {
            group_commit(&mut conns, &mut jobs, &mut sends, &health, &commits, &lag).await;
        }
        if closing.is_some() {
            break;
        }
    }
    let Conns {
        jobs: mut conn,
        sends: direct,
    } = conns;
    if let Err((_, e)) = direct.close() {
        tracing::warn!(error = %e, "cannot close the writer's direct connection");
    }
    if !health.check_file() {
        match sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
        {
            Ok(_) => tracing::info!("checkpointed the WAL into the database file"),
            Err(e) => tracing::warn!(error = %e, "cannot checkpoint the WAL at shutdown"),
        }
    }
    let _ = conn.close().await;
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Rows changed on this connection so far.
async fn total_changes(conn: &mut SqliteConnection) -> Option<i64> {
    sqlx::query_scalar::<_, i64>("SELECT total_changes()")
        .fetch_one(conn)
        .await
        .ok()
}

/// Answers every caller of a group that cannot run with `failure`.
fn abort_group(jobs: &mut Vec<Job>, sends: &mut Vec<SendJob>, failure: &Failure, db: &Path) {
    for job in jobs.drain(..) {
        (job.abort)(failure.error(db));
    }
    for send in sends.drain(..) {
        let _ = send.reply.send(Err(failure.error(db)));
    }
}

/// Runs what the writer took as one group: the sends and the direct jobs in one transaction
/// on the direct connection ([`direct_group`]), then the jobs on sqlx's connection in one
/// transaction there ([`sqlx_group`]). Either is one commit; both only when both kinds were
/// waiting. None of these callers waited for another's answer, so their order does not
/// matter.
async fn group_commit(
    conns: &mut Conns,
    jobs: &mut Vec<Job>,
    sends: &mut Vec<SendJob>,
    health: &StoreHealth,
    commits: &AtomicU64,
    lag: &SearchLag,
) {
    let (mut direct, mut other): (Vec<Job>, Vec<Job>) = jobs
        .drain(..)
        .partition(|j| matches!(j.run, Run::Direct(_)));
    if !sends.is_empty() || !direct.is_empty() {
        direct_group(&conns.sends, &mut direct, sends, health, commits, lag);
    }
    if !other.is_empty() {
        sqlx_group(&mut conns.jobs, &mut other, health, commits).await;
    }
}

/// What every group does before it runs: the database path must still be the file opened,
/// else every caller hears [`Error::Lost`] and the group does not run (`false`).
fn may_run(jobs: &mut Vec<Job>, sends: &mut Vec<SendJob>, health: &StoreHealth) -> bool {
    if health.check_file() {
        abort_group(jobs, sends, &Failure::Lost, health.db());
        return false;
    }
    true
}

/// What every group does once its commit is known: a commit into a file that is no longer
/// reachable stored nothing for anyone ([`Error::Lost`]); a group that committed counts in
/// `commits` before any caller hears back (so a caller that reads the count after its answer
/// sees its own commit), and one that wrote during a full-disk spell, with no new fault,
/// ends it.
fn committed(
    outcome: Result<(), Failure>,
    wrote: bool,
    faults_before: u64,
    health: &StoreHealth,
    commits: &AtomicU64,
) -> Result<(), Failure> {
    match outcome {
        Ok(()) if health.check_file() => Err(Failure::Lost),
        Ok(()) => {
            if wrote && health.faults.load(Ordering::SeqCst) == faults_before {
                health.mark_written();
            }
            commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        Err(f) => {
            tracing::error!(error = ?f, "group commit failed");
            if let Failure::Full(detail) = &f {
                health.mark_full(detail);
            }
            Err(f)
        }
    }
}

/// The direct connection's group: `BEGIN IMMEDIATE`, the sends (messages and copies) in a
/// savepoint ([`messages::insert_direct`]), each job in its own savepoint, one commit, then
/// the answers — all on the writer's thread, no statement handed to another thread. A group
/// of only volatile jobs (leases) commits without fsync.
fn direct_group(
    conn: &rusqlite::Connection,
    jobs: &mut Vec<Job>,
    sends: &mut Vec<SendJob>,
    health: &StoreHealth,
    commits: &AtomicU64,
    lag: &SearchLag,
) {
    if !may_run(jobs, sends, health) {
        return;
    }
    let db = health.db().to_path_buf();
    let faults_before = health.faults.load(Ordering::SeqCst);
    let changes_before = conn.total_changes();
    let durable = !sends.is_empty() || jobs.iter().any(|j| j.durable);
    // SQLite takes the setting only outside a transaction; the next durable commit's fsync
    // covers a volatile group's WAL frames too.
    let begin = if durable {
        "BEGIN IMMEDIATE"
    } else {
        "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE"
    };
    if let Err(e) = conn.execute_batch(begin) {
        let failure = Failure::of_direct(&e);
        tracing::error!(error = %e, "cannot begin a write transaction");
        if let Failure::Full(detail) = &failure {
            health.mark_full(detail);
        }
        let _ = conn.execute_batch("PRAGMA synchronous = FULL");
        abort_group(jobs, sends, &failure, &db);
        return;
    }
    let inserted = if sends.is_empty() {
        Ok(vec![])
    } else {
        let msgs: Vec<NewMessage> = sends.iter().map(|s| s.msg.clone()).collect();
        messages::insert_direct(conn, &msgs)
            .map_err(|e| Failure::of_direct(&e))
            .and_then(|stored| {
                messages::copies_stored(&msgs, stored).map_err(|e| Failure::Other(e.to_string()))
            })
    };
    if let Err(Failure::Full(detail)) = &inserted {
        health.mark_full(detail);
    }
    let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        let Run::Direct(run) = job.run else {
            unreachable!("group_commit hands only direct jobs to the direct group")
        };
        if job.savepoint {
            let _ = conn.execute_batch("SAVEPOINT job");
        }
        let (ok, reply) = run(conn);
        if job.savepoint {
            if !ok {
                let _ = conn.execute_batch("ROLLBACK TO job");
            }
            let _ = conn.execute_batch("RELEASE job");
        }
        replies.push(reply);
    }
    let outcome = conn
        .execute_batch("COMMIT")
        .map_err(|e| Failure::of_direct(&e));
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if !durable {
        let _ = conn.execute_batch("PRAGMA synchronous = FULL");
    }
    let wrote = conn.total_changes() > changes_before;
    let outcome = committed(outcome, wrote, faults_before, health, commits);
    answer_sends(sends, outcome.clone().and(inserted), &db, lag);
    for reply in replies {
        reply(outcome.clone());
    }
}

/// sqlx's connection's group: each job in its savepoint of one `BEGIN IMMEDIATE`
/// transaction, one commit, then the answers. A group of only volatile jobs commits without
/// fsync.
async fn sqlx_group(
    conn: &mut SqliteConnection,
    jobs: &mut Vec<Job>,
    health: &StoreHealth,
    commits: &AtomicU64,
) {
    if !may_run(jobs, &mut vec![], health) {
        return;
    }
    let db = health.db().to_path_buf();
    let faults_before = health.faults.load(Ordering::SeqCst);
    // While the disk is full, only a group that really wrote shows that it is over.
    let changes_before = match health.full_since() {
        Some(_) => total_changes(conn).await,
        None => None,
    };
    let durable = jobs.iter().any(|j| j.durable);
    let begin = if durable {
        "BEGIN IMMEDIATE"
    } else {
        "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE"
    };
    if let Err(e) = sqlx::raw_sql(begin).execute(&mut *conn).await {
        tracing::error!(error = %e, "cannot begin a write transaction");
        let failure = Failure::of(&e);
        if let Failure::Full(detail) = &failure {
            health.mark_full(detail);
        }
        let _ = sqlx::raw_sql("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await;
        abort_group(jobs, &mut vec![], &failure, &db);
        return;
    }
    let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        let Run::Sqlx(run) = job.run else {
            unreachable!("group_commit hands only sqlx jobs to the sqlx group")
        };
        if job.savepoint {
            let _ = sqlx::raw_sql("SAVEPOINT job").execute(&mut *conn).await;
        }
        let (ok, reply) = run(&mut *conn).await;
        if job.savepoint {
            if !ok {
                let _ = sqlx::raw_sql("ROLLBACK TO job").execute(&mut *conn).await;
            }
            let _ = sqlx::raw_sql("RELEASE job").execute(&mut *conn).await;
        }
        replies.push(reply);
    }
    let outcome = sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| Failure::of(&e));
    if outcome.is_err() {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
    if !durable {
        let _ = sqlx::raw_sql("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await;
    }
    let wrote = match changes_before {
        Some(before) => total_changes(conn)
            .await
            .is_some_and(|after| after > before),
        None => false,
    };
    let outcome = committed(outcome, wrote, faults_before, health, commits);
    for reply in replies {
        reply(outcome.clone());
    }
}

/// Answers each send of a group with its id and copies, or with why the group failed. A
/// group's messages count as sent before anyone hears back: a search after its send's answer
/// indexes it.
fn answer_sends(
    sends: &mut Vec<SendJob>,
    outcome: Result<Vec<(i64, Vec<String>)>, Failure>,
    db: &Path,
    lag: &SearchLag,
) {
    match outcome {
        Ok(ids) => {
            if !ids.is_empty() {
                lag.sent.fetch_add(ids.len() as u64, Ordering::SeqCst);
                lag.wanted.notify_one();
            }
            for (send, id) in sends.drain(..).zip(ids) {
                let _ = send.reply.send(Ok(id));
            }
        }
        Err(f) => {
            for send in sends.drain(..) {
                let _ = send.reply.send(Err(f.error(db)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! What only this backend has: the writer's groups, savepoints and volatile commits. The
    //! guarantees of every backend are `peers_store::story`'s (tests/story.rs).

    use super::*;
    use peers_core::wire::{RegisterRequest, SenderKind};
    use peers_store::{PeerRecord, Sender};

    async fn store() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let s = Db::open(&dir.path().join("t.db")).await.unwrap();
        (dir, s)
    }

    async fn reg(s: &Db, pid: u32, cwd: &str) -> PeerRecord {
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

    fn msg(to: &PeerRecord, body: &str) -> NewMessage {
        NewMessage {
            tags: vec![],
            project: None,
            from: Sender {
                kind: SenderKind::Human,
                peer_id: None,
                address: "you@h".into(),
                cwd: None,
            },
            to_address: to.address(),
            channel: None,
            readers: vec![peers_store::Reader {
                peer_id: to.id.clone(),
                address: to.address(),
                wake: true,
            }],
            body: body.into(),
            reply_to: None,
            sent_ms: 1,
            expires_ms: i64::MAX,
        }
    }

    /// Messages in the full-text index (one `docsize` row per indexed message).
    async fn indexed(s: &Db) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM messages_fts_docsize")
            .fetch_one(s.reader())
            .await
            .unwrap()
    }

    /// Issue #16: a send's fsync'd commit writes no search index pages; the index catches up
    /// before a search reads it, and then costs nothing more.
    #[tokio::test]
    async fn a_send_commits_unindexed_and_a_search_indexes_it_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Db::open_with(&dir.path().join("t.db"), None).await.unwrap();
        let p = reg(&s, 10, "/x/a").await;
        let (id, _) = s.insert_message(msg(&p, "zebra quartz")).await.unwrap();
        assert_eq!(indexed(&s).await, 0, "the send's own commit indexed it");
        let commits = s.commits.load(Ordering::SeqCst);
        s.index_for_search().await.unwrap();
        assert_eq!(indexed(&s).await, 1);
        let hits = search::search(
            s.reader(),
            peers_store::SearchFilter {
                query: "quartz".into(),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(hits.iter().map(|h| h.message_id).collect::<Vec<_>>(), [id]);
        // Nothing new: no writer job at all.
        let after = s.commits.load(Ordering::SeqCst);
        s.index_for_search().await.unwrap();
        assert_eq!(s.commits.load(Ordering::SeqCst), after);
        assert_eq!(after, commits + 1, "one batch indexed the one send");
    }

    /// The migrations run without fsync, but the connection every write goes through is
    /// back at `synchronous = FULL` (2) before the store answers anything.
    #[tokio::test]
    async fn writes_after_the_migrations_are_durable_again() {
        let (_d, s) = store().await;
        let level: i64 = s
            .write(|c| {
                Box::pin(async move {
                    Ok(sqlx::query_scalar("PRAGMA synchronous")
                        .fetch_one(c)
                        .await?)
                })
            })
            .await
            .unwrap();
        assert_eq!(level, 2, "synchronous = FULL");
    }

    /// The connection a group of sends alone commits on waits for fsync as the other one
    /// does, and for a lock as long.
    #[tokio::test]
    async fn the_direct_connection_commits_durably() {
        let (d, _s) = store().await;
        let direct = open_direct(&d.path().join("t.db")).unwrap();
        let pragma = |name: &str| -> i64 {
            direct
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(pragma("synchronous"), 2, "synchronous = FULL");
        assert_eq!(pragma("busy_timeout"), 5000);
        assert_eq!(pragma("foreign_keys"), 0);
    }

    /// Without any search, the background indexer catches up shortly after sends.
    #[tokio::test]
    async fn the_background_indexer_catches_up_after_sends() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        for i in 0..3 {
            s.insert_message(msg(&p, &format!("m{i}"))).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while indexed(&s).await < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the indexer never indexed the sends"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(indexed(&s).await, 3);
    }

    #[tokio::test]
    async fn concurrent_jobs_all_commit_in_groups() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        let before = s.commits.load(Ordering::SeqCst);
        let mut tasks = vec![];
        for i in 0..200 {
            let (s, m) = (s.clone(), msg(&p, &format!("m{i}")));
            tasks.push(tokio::spawn(async move {
                s.write_direct(move |c| messages::insert(c, m))
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
        let groups = s.commits.load(Ordering::SeqCst) - before;
        assert!(groups < 200, "200 concurrent jobs took {groups} commits");
    }

    #[tokio::test]
    async fn sends_alone_and_groups_larger_than_one_statement_all_land() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        // A lone send is committed when it returns.
        let (id, _) = s.insert_message(msg(&p, "alone")).await.unwrap();
        assert_eq!(
            messages::waiting(s.reader(), &p.id).await.unwrap()[0].message_id,
            id
        );
        // More sends than one statement takes still all land, each with its own id.
        let mut tasks = vec![];
        for i in 0..(messages::MAX_ROWS * 2 + 10) {
            let (s, m) = (s.clone(), msg(&p, &format!("m{i}")));
            tasks.push(tokio::spawn(
                async move { s.insert_message(m).await.unwrap().0 },
            ));
        }
        let mut ids = vec![id];
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), messages::MAX_ROWS * 2 + 11);
        assert_eq!(
            messages::waiting(s.reader(), &p.id).await.unwrap().len(),
            ids.len()
        );
        // And the writer left no transaction open: an ordinary job after them commits too.
        let id = p.id.clone();
        s.write(move |c| Box::pin(async move { peers::set_summary(c, &id, "busy").await }))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn volatile_groups_never_leave_sends_without_fsync() {
        let (_d, s) = store().await;
        let sync = |s: &Db| {
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
        // The same on the direct connection, where claims run.
        let direct = |s: &Db, durable: bool| {
            let s = s.clone();
            async move {
                let read = |c: &rusqlite::Connection| -> Result<i64, Error> {
                    Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?)
                };
                match durable {
                    true => s.write_direct(read).await.unwrap(),
                    false => s.write_direct_volatile(read).await.unwrap(),
                }
            }
        };
        assert_eq!(direct(&s, true).await, 2, "FULL from the start");
        assert_eq!(direct(&s, false).await, 1, "a group of only leases: NORMAL");
        assert_eq!(
            direct(&s, true).await,
            2,
            "and FULL is back for the next group"
        );
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        // On the direct connection…
        let m = msg(&p, "kept");
        let good = s.write_direct(move |c| messages::insert(c, m));
        let m = msg(&p, "rolled back");
        let bad = s.write_direct(move |c| {
            messages::insert(c, m)?;
            c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(())
        });
        let (good, bad) = tokio::join!(good, bad);
        assert!(good.is_ok());
        assert!(bad.is_err());
        let left = messages::waiting(s.reader(), &p.id).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].body, "kept");
        // …and on sqlx's.
        let id = p.id.clone();
        let good =
            s.write(move |c| Box::pin(async move { peers::set_summary(c, &id, "kept").await }));
        let id = p.id.clone();
        let bad = s.write(move |c| {
            Box::pin(async move {
                peers::set_summary(c, &id, "rolled back").await?;
                sqlx::query("INSERT INTO no_such_table VALUES (1)")
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        });
        let (good, bad) = tokio::join!(good, bad);
        assert!(good.is_ok());
        assert!(bad.is_err());
        let summary: String = sqlx::query_scalar("SELECT summary FROM peers WHERE id = ?")
            .bind(&p.id)
            .fetch_one(s.reader())
            .await
            .unwrap();
        assert_eq!(summary, "kept");
    }

    /// A send whose copies cannot be stored leaves no message behind — alone (its own
    /// transaction) or beside another job (its savepoint) — and the writer goes on.
    #[tokio::test]
    async fn a_send_that_fails_midway_stores_nothing_of_itself() {
        let (_d, s) = store().await;
        let p = reg(&s, 10, "/x/a").await;
        s.write(|c| {
            Box::pin(async move {
                sqlx::raw_sql(
                    // Not `TEMP`: a group of sends alone runs on the writer's other connection.
                    "CREATE TRIGGER refuse_copies BEFORE INSERT ON deliveries \
                     WHEN NEW.to_address = 'refused' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                )
                .execute(c)
                .await?;
                Ok(())
            })
        })
        .await
        .unwrap();
        let mut refused = msg(&p, "never half-stored");
        refused.readers[0].address = "refused".into();
        let messages = |s: &Db| {
            let s = s.clone();
            async move {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
                    .fetch_one(s.reader())
                    .await
                    .unwrap();
                n
            }
        };
        assert!(s.insert_message(refused.clone()).await.is_err(), "alone");
        assert_eq!(messages(&s).await, 0, "its message was rolled back with it");
        // Beside a job in the same transaction: only the send's savepoint is undone.
        let id = p.id.clone();
        let job = s.write_direct(move |c| {
            c.execute("UPDATE peers SET summary = 'beside it' WHERE id = ?", [&id])?;
            Ok(())
        });
        let (failed, job) = tokio::join!(s.insert_message(refused), job);
        assert!(failed.is_err() && job.is_ok(), "beside a job");
        assert_eq!(messages(&s).await, 0, "only the send was undone");
        let (id, readers) = s.insert_message(msg(&p, "fine")).await.unwrap();
        assert_eq!(readers, std::slice::from_ref(&p.id), "the writer goes on");
        assert_eq!(
            messages::waiting(s.reader(), &p.id).await.unwrap()[0].message_id,
            id
        );
    }

    /// The claim's lease statement finds a reader's waiting copies through the partial index
    /// of waiting copies, already in send order: no scan of delivered history, no sort.
    #[tokio::test]
    async fn the_claim_reads_the_partial_index_of_waiting_copies() {
        let (_d, s) = store().await;
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(concat!(
            "EXPLAIN QUERY PLAN ",
            messages::claimable_copies!()
        ))
        .bind("p")
        .bind(0)
        .bind(50)
        .fetch_all(s.reader())
        .await
        .unwrap();
        let plan: Vec<&str> = plan.iter().map(|(_, _, _, d)| d.as_str()).collect();
        assert!(
            plan.iter()
                .any(|d| d.contains("USING INDEX deliveries_waiting")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
    }

    #[test]
    fn driver_errors_map_onto_the_seam_without_losing_their_kind() {
        let db = PathBuf::from("/s/peers.db");
        assert!(matches!(
            Error::Lost(db.clone()).public(),
            StoreError::Lost { location } if location == "/s/peers.db"
        ));
        assert!(matches!(
            Error::Full { db, detail: "disk I/O error".into() }.public(),
            StoreError::Full { location, .. } if location == "/s/peers.db"
        ));
        assert!(matches!(Error::WriterGone.public(), StoreError::Closed));
        assert!(matches!(
            Error::Db(sqlx::Error::Protocol("x".into())).public(),
            StoreError::Internal(_)
        ));
        // The direct connection's errors: a full disk and an I/O error (extended codes too)
        // are disk faults, a constraint is not.
        let direct = |code: i32| {
            Failure::of_direct(&rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(matches!(direct(13), Failure::Full(_)), "SQLITE_FULL");
        assert!(
            matches!(direct(10 | (4 << 8)), Failure::Full(_)),
            "SQLITE_IOERR_WRITE"
        );
        assert!(matches!(direct(19), Failure::Other(_)), "SQLITE_CONSTRAINT");
    }
}
