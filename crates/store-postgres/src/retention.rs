//! Retention and export: pruning old delivered mail in batches (one transaction each), and
//! reading the whole history page by page for `GET /v1/export`.

use peers_core::wire::ExportedMessage;
use sqlx::{PgConnection, PgPool};

use crate::messages::{self, MessageRow, message_columns};
use crate::search;

/// Deletes up to `limit` messages sent before `before_ms` whose every copy is delivered or
/// expired, oldest first, with their copies and tags (the `tsvector` column goes with the
/// row), inside the caller's transaction. Rows another broker's prune holds are skipped.
pub(crate) async fn prune_delivered(
    conn: &mut PgConnection,
    before_ms: i64,
    limit: u32,
) -> Result<u64, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT m.id FROM messages m WHERE m.sent_ms < $1 AND NOT EXISTS ( \
           SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
           AND d.state NOT IN ('delivered', 'expired')) \
         ORDER BY m.sent_ms, m.id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(before_ms)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    for statement in [
        "DELETE FROM deliveries WHERE message_id = ANY($1)",
        "DELETE FROM message_tags WHERE message_id = ANY($1)",
        "DELETE FROM messages WHERE id = ANY($1)",
    ] {
        sqlx::query(statement)
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
    }
    Ok(ids.len() as u64)
}

/// One page of the export: messages after `after_id` sent at or after `since_ms`, in id
/// order, with bodies, readers and thread roots.
pub(crate) async fn export_page(
    pool: &PgPool,
    after_id: i64,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<ExportedMessage>, sqlx::Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.id > $1 AND m.sent_ms >= $2 ORDER BY m.id LIMIT $3"
    ))
    .bind(after_id)
    .bind(since_ms)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let statuses = messages::with_readers(pool, rows, true).await?;
    let ids: Vec<i64> = statuses.iter().map(|m| m.message_id).collect();
    let roots = search::thread_roots(pool, &ids).await?;
    Ok(statuses
        .into_iter()
        .map(|m| ExportedMessage {
            thread_id: roots.get(&m.message_id).copied().unwrap_or(m.message_id),
            message: m,
        })
        .collect())
}
