//! Handovers: notes left for the next session of a name. One is a message with channel
//! [`HANDOVER_CHANNEL`] whose one copy waits with an empty `to_peer` until a session of that
//! name registers after it was left; [`take`] then makes it that session's queued copy. Mail
//! sent to a name while no session of it ran is taken the same way, on any machine.

use peers_core::wire::HANDOVER_CHANNEL;
use sqlx::PgConnection;

/// Gives `peer_id` the handovers waiting for its name (or `name@host`) left before it
/// registered, and the mail sent to its name while no session of it ran; how many.
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
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // Mail sent to this name (or name@host) while no session of it was live: waiting for an
    // ended registration of the name elsewhere (another machine or directory; the one in this
    // directory was replaced and its mail inherited already), sent after it ended.
    let mail = sqlx::query(
        "UPDATE deliveries d SET to_peer = p.id, to_address = p.name || '@' || p.host \
         FROM peers p, peers g, messages m \
         WHERE p.id = $1 AND d.state = 'queued' AND g.id = d.to_peer AND g.id <> p.id \
           AND lower(g.name) = lower(p.name) AND g.gone_ms IS NOT NULL \
           AND g.replaced_by IS NULL \
           AND m.id = d.message_id AND m.channel IS NULL \
           AND m.sent_ms >= g.gone_ms AND m.sent_ms < p.registered_ms \
           AND (lower(m.to_address) = lower(p.name) \
                OR lower(m.to_address) = lower(p.name || '@' || p.host))",
    )
    .bind(peer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n + mail)
}
