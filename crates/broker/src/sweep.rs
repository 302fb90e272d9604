//! The periodic pass: marks ended sessions gone, returns lapsed leases to their queues, expires
//! mail past its TTL, prunes the loop-budget ledger, and deletes delivered mail older than
//! `retain_days` (see [`prune`]).
//!
//! A peer on this broker's machine is alive while its Claude Code process exists (`kill(pid,
//! 0)`; `EPERM` counts as alive) with the start time it registered with (a reused pid is
//! another process) — not its MCP server, which can outlive the session. A peer on another
//! machine is alive while its heartbeats are fresh.

use std::sync::Arc;

use peers_core::now_ms;

use peers_store::{NewNotice, StoreError, Sweep};

use crate::AppState;

pub async fn run(state: Arc<AppState>) {
    let mut stop = state.shutdown.subscribe();
    let mut tick = tokio::time::interval(state.settings.sweep);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        match once(&state).await {
            // Logged once where they are found; the API answers them.
            Ok(())
            | Err(
                StoreError::Lost { .. } | StoreError::Full { .. } | StoreError::Unavailable { .. },
            ) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
    }
}

/// One sweep. Brokers sharing a database take turns: the one with the turn does the whole
/// pass; every other one still marks the ended sessions of its own machine gone, since only a
/// broker on that machine sees their processes (a session's MCP server can outlive it and go
/// on heartbeating). Public so tests and the benchmark can drive it directly.
pub async fn once(state: &AppState) -> Result<(), StoreError> {
    let whole = state.store.sweep_turn().await?;
    let now = now_ms();
    let live = state.store.live_peers().await?;
    let gone: Vec<String> = live
        .iter()
        .filter(|p| {
            if p.machine_id == state.settings.machine_id {
                !p.process_alive()
            } else {
                whole && p.last_seen_ms < now - state.settings.remote_alive_ms
            }
        })
        .map(|p| p.id.clone())
        .collect();
    if !whole && gone.is_empty() {
        return Ok(());
    }
    let swept = state
        .store
        .sweep(Sweep {
            gone: gone.clone(),
            now,
            budget_window_ms: state.settings.loop_window_ms,
            whole,
        })
        .await?;
    let (marked, requeued, expired) = (swept.marked_gone, swept.requeued, swept.expired);
    state.publish_swept(gone.clone(), swept);
    if marked > 0 {
        state.directory.changed();
        for id in &gone {
            // Take the row out first: the read guard must be gone before cache_peer writes.
            let cached = state
                .peer_cache
                .read()
                .expect("cache lock")
                .get(id)
                .map(|r| (**r).clone());
            if let Some(mut row) = cached {
                row.gone_ms = Some(now);
                state.cache_peer(row);
            }
        }
        tracing::info!(count = marked, peers = ?gone, "sessions ended");
    }
    if requeued > 0 {
        state.mailmarks.mail_requeued(state.store.as_ref()).await;
        state.waiters.wake_all();
        tracing::info!(count = requeued, "lapsed leases returned to the queue");
    }
    if expired > 0 {
        tracing::info!(count = expired, "messages expired");
    }
    if whole {
        record_recovered_storage(state).await;
        prune(state, now).await?;
    }
    Ok(())
}

/// Messages one retention transaction deletes at most.
pub const PRUNE_BATCH: u32 = 500;

/// Batches one sweep runs at most; what is left waits for the next sweep, so a first prune
/// of a large history does not hold up the liveness checks.
const PRUNE_BATCHES_PER_SWEEP: u32 = 40;

/// Retention: deletes delivered mail (every copy delivered or expired) sent more than
/// `retain_days` ago, [`PRUNE_BATCH`] messages per transaction. Each batch is one write like
/// any other (on SQLite one job of the writer), and the sweep yields between batches, so
/// sends commit between them instead of waiting for the whole prune. Returns how many.
pub async fn prune(state: &AppState, now: i64) -> Result<u64, StoreError> {
    let Some(retain_ms) = state.settings.retain_ms else {
        return Ok(0);
    };
    let before = now.saturating_sub(retain_ms);
    let mut pruned = 0;
    for _ in 0..PRUNE_BATCHES_PER_SWEEP {
        let n = state.store.prune_delivered(before, PRUNE_BATCH).await?;
        pruned += n;
        if n < u64::from(PRUNE_BATCH) {
            break;
        }
        tokio::task::yield_now().await;
    }
    if pruned > 0 {
        tracing::info!(count = pruned, "delivered mail past retain_days pruned");
    }
    Ok(pruned)
}

/// A full disk is shown from memory while it lasts; once writes succeed again, the spell is
/// recorded as a notice for the human (kept for later if even that cannot be written yet).
async fn record_recovered_storage(state: &AppState) {
    let spells = state.store.take_recovered();
    if spells.is_empty() {
        return;
    }
    let db = state.store.describe().location;
    let now = now_ms();
    for (n, (from, to)) in spells.iter().enumerate() {
        let text = format!(
            "The disk holding {db} was full or failing for {} s (from {}): writes in that \
             time were refused with 507 and stored nothing. Writes succeed again.",
            (to - from).max(0) / 1000,
            peers_core::format_ms(*from)
        );
        let notice = NewNotice {
            kind: "storage_recovered".into(),
            peer_id: None,
            text,
            author: crate::input::BROKER_AUTHOR.into(),
            now,
        };
        if state.store.add_notice(notice.clone()).await.is_err() {
            // Kept for the next sweep: the spells not recorded yet.
            state.store.put_back_recovered(spells[n..].to_vec());
            return;
        }
        // Pushed like every other notice, so a live dashboard sees the fault end.
        state.publish_notice(&notice);
    }
}
