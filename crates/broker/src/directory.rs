//! A cache of recipient lookups (`to` → peer row), so a send does not read the store twice to
//! find its recipient. Every change to any peer row (register, heartbeat, unregister, the
//! sweep) bumps a generation number; an entry from an older generation is never used. A
//! lookup that raced a change is stored under the generation read *before* the lookup, so it
//! is discarded too.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use peers_store::PeerRecord;

/// Entries kept at most; past it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct Directory {
    generation: AtomicU64,
    entries: RwLock<HashMap<String, (u64, PeerRecord)>>,
}

impl Directory {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Called after any peer row changed (after its commit).
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self, who: &str) -> Option<PeerRecord> {
        let now = self.generation();
        let entries = self.entries.read().expect("directory lock");
        entries
            .get(&who.trim().to_lowercase())
            .filter(|(g, _)| *g == now)
            .map(|(_, row)| row.clone())
    }

    /// Stores a lookup made while the generation was `generation`.
    pub fn put(&self, who: &str, generation: u64, row: PeerRecord) {
        let mut entries = self.entries.write().expect("directory lock");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(who.trim().to_lowercase(), (generation, row));
    }
}
