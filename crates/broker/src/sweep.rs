//! The periodic pass: marks ended sessions gone, returns lapsed leases to their queues, expires
//! mail past its TTL, and prunes the loop-budget ledger.
//!
//! A peer on this broker's machine is alive while its Claude Code process exists (`kill(pid,
//! 0)`; `EPERM` counts as alive) with the start time it registered with (a reused pid is
//! another process) — not its MCP server, which can outlive the session. A peer on another
//! machine is alive while its heartbeats are fresh.

use std::sync::Arc;

use peers_core::now_ms;

use crate::AppState;
use crate::store::{StoreError, messages, peers};

pub async fn run(state: Arc<AppState>) {
    let mut stop = state.shutdown.subscribe();
    let mut tick = tokio::time::interval(state.settings.sweep);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        if let Err(e) = once(&state).await {
            tracing::warn!(error = %e, "sweep failed");
        }
    }
}

/// One sweep. Public so tests and the benchmark can drive it directly.
pub async fn once(state: &AppState) -> Result<(), StoreError> {
    let now = now_ms();
    let live = peers::live(state.store.reader()).await?;
    let gone: Vec<String> = live
        .iter()
        .filter(|p| {
            if p.machine_id == state.settings.machine_id {
                !p.process_alive()
            } else {
                p.last_seen_ms < now - state.settings.remote_alive_ms
            }
        })
        .map(|p| p.id.clone())
        .collect();
    let window = state.settings.loop_window_ms;
    let ids = gone.clone();
    let (marked, (requeued, expired)) = state
        .store
        .write(move |c| {
            Box::pin(async move {
                let marked = peers::mark_gone(c, &ids, now).await?;
                let swept = messages::sweep(c, now).await?;
                sqlx::query("DELETE FROM budget_spend WHERE at_ms < ?")
                    .bind(now - window)
                    .execute(&mut *c)
                    .await?;
                Ok((marked, swept))
            })
        })
        .await?;
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
        state.waiters.wake_all();
        tracing::info!(count = requeued, "lapsed leases returned to the queue");
    }
    if expired > 0 {
        tracing::info!(count = expired, "messages expired");
    }
    Ok(())
}
