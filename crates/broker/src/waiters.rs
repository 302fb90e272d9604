//! Long-poll bookkeeping for `GET /v1/inbox/wait`: one slot per peer, woken when mail for
//! that peer is committed. Each new waiter bumps the slot's generation, which tells any older
//! waiter of the same peer that it has been superseded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Slot {
    pub notify: Notify,
    generation: AtomicU64,
}

impl Slot {
    /// Becomes the current waiter; returns this waiter's generation and wakes older ones.
    pub fn enter(&self) -> u64 {
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
}

impl Waiters {
    pub fn slot(&self, peer_id: &str) -> Arc<Slot> {
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

    /// Drops the slot of a peer nobody waits for any more.
    pub fn forget_idle(&self, peer_id: &str) {
        let mut slots = self.slots.lock().expect("waiters lock");
        if slots
            .get(peer_id)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(peer_id);
        }
    }
}
