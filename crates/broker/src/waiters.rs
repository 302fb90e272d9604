//! Long-poll bookkeeping for `GET /v1/inbox/wait`: one slot per peer, woken when mail for
//! that peer is committed. Each new waiter bumps the slot's generation, which tells any older
//! waiter of the same peer that it has been superseded.
//!
//! The slots also answer "can this peer be woken?" ([`Waiters::can_wake`]) for a sender's
//! `recipient_can_wake`: a waiter is in its slot now, or one left within [`WAKE_GRACE`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long after its last long poll ended a peer still counts as wakeable. A waiter
/// (`peers-deliver --wait`) polls 30 s at a time and asks again at once; after an error it
/// retries within 5 s; after a wake the session's next Stop arms a new one. Ten seconds
/// covers those gaps without calling a session wakeable long after its waiter is gone.
pub const WAKE_GRACE: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Slot {
    pub notify: Notify,
    generation: AtomicU64,
    /// Long polls of this peer in progress.
    waiting: AtomicUsize,
}

impl Slot {
    /// Becomes the current waiter; returns this waiter's generation and wakes older ones.
    fn enter(&self) -> u64 {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.notify.notify_waiters();
        g
    }

    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) == generation
    }
}

#[derive(Default)]
pub struct Waiters {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// When each peer's last long poll ended (pruned past [`WAKE_GRACE`]).
    left: Mutex<HashMap<String, Instant>>,
}

impl Waiters {
    fn slot(&self, peer_id: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("waiters lock");
        slots.entry(peer_id.to_string()).or_default().clone()
    }

    /// Wakes the waiters of `peer_id`, if any.
    pub fn wake(&self, peer_id: &str) {
        let slot = self
            .slots
            .lock()
            .expect("waiters lock")
            .get(peer_id)
            .cloned();
        if let Some(s) = slot {
            s.notify.notify_waiters();
        }
    }

    /// Wakes every waiter (after leases lapsed back into queues).
    pub fn wake_all(&self) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .expect("waiters lock")
            .values()
            .cloned()
            .collect();
        for s in slots {
            s.notify.notify_waiters();
        }
    }

    /// Starts a long poll of `peer_id`: becomes the current waiter of its slot (older ones
    /// are told they are superseded). The poll ends when the returned guard is dropped —
    /// also when the client goes away mid-poll.
    pub fn arm(&self, peer_id: &str) -> Armed<'_> {
        let slot = self.slot(peer_id);
        let generation = slot.enter();
        Armed {
            waiters: self,
            peer_id: peer_id.to_string(),
            slot: Some(slot),
            generation,
        }
    }

    /// Whether mail for `peer_id` can wake its session: a long poll is waiting now, or one
    /// ended less than [`WAKE_GRACE`] ago (the waiter is between two polls, or re-arming).
    pub fn can_wake(&self, peer_id: &str) -> bool {
        let waiting = self
            .slots
            .lock()
            .expect("waiters lock")
            .get(peer_id)
            .is_some_and(|s| s.waiting.load(Ordering::SeqCst) > 0);
        waiting
            || self
                .left
                .lock()
                .expect("waiters lock")
                .get(peer_id)
                .is_some_and(|at| at.elapsed() < WAKE_GRACE)
    }

    /// Drops the slot of a peer nobody waits for any more.
    fn forget_idle(&self, peer_id: &str) {
        let mut slots = self.slots.lock().expect("waiters lock");
        if slots
            .get(peer_id)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(peer_id);
        }
    }
}

/// A long poll in progress (see [`Waiters::arm`]).
pub struct Armed<'a> {
    waiters: &'a Waiters,
    peer_id: String,
    slot: Option<Arc<Slot>>,
    pub generation: u64,
}

impl Armed<'_> {
    pub fn slot(&self) -> &Slot {
        self.slot.as_ref().expect("slot held until drop")
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        {
            let mut left = self.waiters.left.lock().expect("waiters lock");
            let now = Instant::now();
            left.retain(|_, at| now.duration_since(*at) < WAKE_GRACE);
            left.insert(self.peer_id.clone(), now);
        }
        self.waiters.forget_idle(&self.peer_id);
    }
}
