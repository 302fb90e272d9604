//! Handovers: notes left for the next session of a name. One is a message with channel
//! [`HANDOVER_CHANNEL`] whose one copy waits with an empty `to_peer` until a session of that
//! name registers after it was left; [`take`] then makes it that session's queued copy.

use peers_core::wire::HANDOVER_CHANNEL;
use sqlx::PgConnection;

/// Gives `peer_id` the handovers waiting for its name (or `name@host`) left before it
/// registered; how many.
pub(crate) async fn take(conn: &mut PgConnection, peer_id: &str) -> Result<u64, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE deliveries d SET to_peer = p.id, to_address = p.name || '@' || p.host \
         FROM peers p, messages m \
         WHERE p.id = $1 AND d.to_peer = '' AND d.state = 'queued' AND m.id = d.message_id \
           AND m.channel = $2 AND m.sent_ms < p.registered_ms \
           AND (lower(m.to_address) = lower(p.name) \
                OR lower(m.to_address) = lower(p.name || '@' || p.host))",
    )
    .bind(peer_id)
    .bind(HANDOVER_CHANNEL)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n)
}
