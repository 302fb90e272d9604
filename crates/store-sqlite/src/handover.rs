//! Handovers: notes left for the next session of a name. One is a message with channel
//! [`HANDOVER_CHANNEL`] whose one copy waits with an empty `to_peer` until a session of that
//! name registers after it was left; [`take`] then makes it that session's queued copy.

use peers_core::wire::HANDOVER_CHANNEL;
use sqlx::SqliteConnection;

use super::Error;
use crate::peers;

/// Gives `peer_id` the handovers waiting for its name (or `name@host`) left before it
/// registered; how many (runs in the writer).
pub async fn take(conn: &mut SqliteConnection, peer_id: &str) -> Result<u64, Error> {
    let Some(p) = peers::by_id(&mut *conn, peer_id).await? else {
        return Ok(0);
    };
    let n = sqlx::query(
        "UPDATE deliveries SET to_peer = ?1, to_address = ?2 \
         WHERE to_peer = '' AND state = 'queued' AND message_id IN ( \
           SELECT id FROM messages WHERE channel = ?3 AND sent_ms < ?4 \
             AND (lower(to_address) = lower(?5) OR lower(to_address) = lower(?2)))",
    )
    .bind(&p.id)
    .bind(p.address())
    .bind(HANDOVER_CHANNEL)
    .bind(p.registered_ms)
    .bind(&p.name)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n)
}
