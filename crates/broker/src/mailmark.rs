//! The broker's upkeep of mail markers (`<state_dir>/mail/<peer_id>`, layout in
//! [`peers_core::mailmark`]): a local session's hook that finds no marker makes no request.
//!
//! # The invariant
//!
//! **While `mail/.broker` names this broker, a peer on this machine with mail pending (queued
//! or leased) that a send, registration, ack or sweep has answered for has a marker.** In
//! particular a 200 for a send implies the recipient's marker exists.
//!
//! * **Set after commit, before the answer.** Every path by which mail becomes claimable
//!   creates the marker after the store committed it and before the broker answers: a send
//!   (the recipient), a registration that inherited mail (the new peer), an ack that released
//!   messages, a sweep that returned lapsed leases to the queue (every peer with mail
//!   pending), and the start (every peer with mail pending, before `.broker` is written).
//! * **Cleared only by delete-then-check.** A claim that found nothing deletes the marker,
//!   *then* asks the store whether anything is pending for the peer (queued or leased: a lease
//!   may lapse), and creates the marker again if so.
//!
//! Why delete-then-check loses nothing: take a send whose commit `C` is followed by its marker
//! write `W`, and a claim's delete `D` followed by its check `K`. If `W` came before `D`, then
//! `C < W < D < K`, so `K` (a read that starts after `D`) sees the committed message as
//! pending and the marker is put back. If `W` came after `D`, the marker exists from `W` on.
//! Either way the marker exists once the send has answered. Check-then-delete has a hole:
//! `K` sees nothing, then `C` and `W` happen, then `D` deletes the new marker, and the mail
//! waits unseen until some other event makes the hook ask. Two claims racing each other only
//! ever leave a marker too many (a stale marker costs one claim, which clears it).
//!
//! # Failing safe
//!
//! A marker that cannot be written never fails the request: the broker logs it, removes
//! `mail/.broker` (so every hook goes back to asking the broker) and keeps no markers for the
//! rest of its run. Markers are kept only with a store this broker alone writes (SQLite):
//! brokers sharing a PostgreSQL database commit mail the others do not see, so there the
//! broker writes no `.broker` and every hook asks.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use peers_core::mailmark::{self, BrokerMark};

use peers_store::{Store, StoreError};

/// The markers of one broker run.
pub struct MailMarks {
    state_dir: PathBuf,
    /// This broker's machine: only its peers' hooks read markers.
    machine_id: String,
    /// False when markers are not kept (never started, shared store, or a write failed).
    on: AtomicBool,
    /// Test-only ([`PAUSE_ENV`]): a pause between an empty claim's delete and its check,
    /// widening the window a wrong order would lose mail in.
    pause: Option<Duration>,
}

/// Test-only: milliseconds to pause between an empty claim's marker delete and its check.
pub const PAUSE_ENV: &str = "PEERS_BROKER_TEST_MARK_PAUSE_MS";

impl MailMarks {
    /// Markers not kept: no files are touched, and hooks always ask the broker.
    pub fn off(state_dir: &Path, machine_id: &str) -> MailMarks {
        MailMarks {
            state_dir: state_dir.to_path_buf(),
            machine_id: machine_id.to_string(),
            on: AtomicBool::new(false),
            pause: std::env::var(PAUSE_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
        }
    }

    /// The markers for a broker run with `config`: kept when this broker alone writes its
    /// store (SQLite), else off.
    pub async fn for_config(
        config: &peers_core::Config,
        machine_id: &str,
        store: &dyn Store,
    ) -> MailMarks {
        // A store that reports other brokers' commits (`events`) is shared: mail can arrive
        // without this broker seeing it before the sender's 200.
        if store.events().is_none() {
            MailMarks::start(&config.state_dir, machine_id, &config.broker_url(), store).await
        } else {
            MailMarks::off(&config.state_dir, machine_id)
        }
    }

    /// Starts keeping markers: takes down a former run's `.broker`, clears its markers, sets
    /// one for every peer with mail pending, then writes `.broker` naming this process at
    /// `url`. Any failure leaves markers off (logged).
    pub async fn start(
        state_dir: &Path,
        machine_id: &str,
        url: &str,
        store: &dyn Store,
    ) -> MailMarks {
        let marks = MailMarks::off(state_dir, machine_id);
        match marks.begin(url, store).await {
            Ok(()) => marks.on.store(true, Ordering::SeqCst),
            Err(e) => {
                tracing::warn!(error = %e, dir = %mailmark::dir(state_dir).display(),
                    "mail markers off: hooks will ask the broker on every event");
                marks.remove_broker_file();
            }
        }
        marks
    }

    async fn begin(&self, url: &str, store: &dyn Store) -> Result<(), StartError> {
        self.remove_broker_file();
        let dir = mailmark::dir(&self.state_dir);
        peers_core::paths::ensure_private_dir(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name() != ".broker" && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        for peer_id in pending_peers(store).await? {
            if let Some(path) = mailmark::marker(&self.state_dir, &peer_id) {
                create(&path)?;
            }
        }
        let me = BrokerMark::this_process(url).ok_or(StartError::NoStartTime)?;
        me.write(&self.state_dir)?;
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// Mail for `peer_id` (of `machine_id`) was committed or became claimable again: call
    /// after the commit, before answering.
    pub fn mail_committed(&self, peer_id: &str, machine_id: &str) {
        if self.is_on() && machine_id == self.machine_id {
            self.set(peer_id);
        }
    }

    /// A sweep returned lapsed leases to the queue: marks every peer with mail pending.
    pub async fn mail_requeued(&self, store: &dyn Store) {
        if !self.is_on() {
            return;
        }
        match pending_peers(store).await {
            Ok(ids) => ids.iter().for_each(|id| self.set(id)),
            // Leased mail kept its marker, so none is missing; the next sweep tries again.
            Err(e) => tracing::warn!(error = %e, "mail markers: cannot list peers with mail"),
        }
    }

    /// A claim by `peer_id` found nothing: delete its marker, then check, then put it back if
    /// anything is pending (see the module docs for why in this order).
    pub async fn claimed_nothing(&self, store: &dyn Store, peer_id: &str, machine_id: &str) {
        if !self.is_on() || machine_id != self.machine_id {
            return;
        }
        let Some(path) = mailmark::marker(&self.state_dir, peer_id) else {
            return;
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Still there: it says "may be waiting", which is always safe.
            Err(e) => {
                tracing::debug!(error = %e, peer = peer_id, "mail marker not removed");
                return;
            }
        }
        if let Some(pause) = self.pause {
            tokio::time::sleep(pause).await;
        }
        match pending(store, peer_id).await {
            Ok(0) => {}
            Ok(_) => self.set(peer_id),
            Err(e) => {
                // Unknown: put it back rather than risk hiding mail.
                tracing::debug!(error = %e, peer = peer_id, "pending check failed");
                self.set(peer_id);
            }
        }
    }

    /// Clean shutdown: hooks go back to asking (and find the broker gone).
    pub fn stop(&self) {
        if self.on.swap(false, Ordering::SeqCst) {
            self.remove_broker_file();
        }
    }

    fn set(&self, peer_id: &str) {
        let Some(path) = mailmark::marker(&self.state_dir, peer_id) else {
            // Not a file name: hooks of such a peer never skip (`nothing_waiting` refuses it).
            return;
        };
        if let Err(e) = create(&path) {
            tracing::error!(error = %e, marker = %path.display(),
                "cannot write a mail marker; markers off, hooks will ask the broker on every event");
            if self.on.swap(false, Ordering::SeqCst) {
                self.remove_broker_file();
            }
        }
    }

    fn remove_broker_file(&self) {
        let file = mailmark::broker_file(&self.state_dir);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(error = %e, file = %file.display(),
                "cannot remove the mail-marker broker file; hooks may skip mail until it is removed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read this process's start time")]
    NoStartTime,
}

/// Creates an empty marker (or leaves the one there).
fn create(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// How many messages wait for `peer_id`, leased ones included.
async fn pending(store: &dyn Store, peer_id: &str) -> Result<u64, StoreError> {
    store.pending_count(peer_id).await
}

/// Every peer with mail waiting (queued or leased).
async fn pending_peers(store: &dyn Store) -> Result<Vec<String>, StoreError> {
    let counts = store.pending_counts().await?;
    Ok(counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(id, _)| id)
        .collect())
}
