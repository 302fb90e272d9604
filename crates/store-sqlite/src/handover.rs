//! Handovers: notes left for the next session of a name. One is a message with channel
//! [`HANDOVER_CHANNEL`] whose one copy waits with an empty `to_peer` until a session of that
//! name registers after it was left; [`take`] then makes it that session's queued copy. Mail
//! sent to a name while no session of it ran is taken the same way, on any machine.

use peers_core::wire::HANDOVER_CHANNEL;
use sqlx::SqliteConnection;

use super::Error;
use crate::peers;

/// Gives `peer_id` the handovers waiting for its name (or `name@host`) left before it
/// registered, and the mail sent to its name while no session of it ran; how many (runs in
/// the writer).
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
    // Mail sent to this name (or name@host) while no session of it was live: waiting for an
    // ended registration of the name elsewhere (another machine or directory; the one in this
    // directory was replaced and its mail inherited already), sent after it ended.
    let mail = sqlx::query(
        "UPDATE deliveries SET to_peer = ?1, to_address = ?2 \
         WHERE state = 'queued' AND to_peer IN ( \
           SELECT g.id FROM peers g WHERE lower(g.name) = lower(?3) AND g.id <> ?1 \
             AND g.gone_ms IS NOT NULL AND g.replaced_by IS NULL) \
         AND message_id IN ( \
           SELECT m.id FROM messages m WHERE m.channel IS NULL AND m.sent_ms < ?4 \
             AND m.sent_ms >= (SELECT g.gone_ms FROM peers g WHERE g.id = deliveries.to_peer) \
             AND (lower(m.to_address) = lower(?3) OR lower(m.to_address) = lower(?2)))",
    )
    .bind(&p.id)
    .bind(p.address())
    .bind(&p.name)
    .bind(p.registered_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n + mail)
}
