//! Retention and export: pruning old delivered mail in batches (a job of the writer, so sends
//! interleave with the batches), and reading the whole history page by page for
//! `GET /v1/export`.

use peers_core::wire::ExportedMessage;
use sqlx::{SqliteConnection, SqlitePool};

use crate::messages::{self, MessageRow, message_columns};
use crate::{Error, search};

/// Deletes up to `limit` messages sent before `before_ms` whose every copy is delivered or
/// expired, oldest first, with their copies and tags; the FTS5 rows go with them (the
/// `messages_fts_delete` trigger). Runs in the writer: one job, one transaction.
pub async fn prune_delivered(
    conn: &mut SqliteConnection,
    before_ms: i64,
    limit: u32,
) -> Result<u64, Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT m.id FROM messages m WHERE m.sent_ms < ? AND NOT EXISTS ( \
           SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
           AND d.state NOT IN ('delivered', 'expired')) \
         ORDER BY m.sent_ms, m.id LIMIT ?",
    )
    .bind(before_ms)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    for statement in [
        "DELETE FROM deliveries WHERE message_id IN (",
        "DELETE FROM message_tags WHERE message_id IN (",
        "DELETE FROM messages WHERE id IN (",
    ] {
        let mut q = sqlx::QueryBuilder::new(statement);
        let mut list = q.separated(", ");
        for id in &ids {
            list.push_bind(*id);
        }
        q.push(")");
        q.build().execute(&mut *conn).await?;
    }
    Ok(ids.len() as u64)
}

/// One page of the export: messages after `after_id` sent at or after `since_ms`, in id
/// order, with bodies, readers and thread roots (reads).
pub async fn export_page(
    pool: &SqlitePool,
    after_id: i64,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<ExportedMessage>, Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.id > ? AND m.sent_ms >= ? ORDER BY m.id LIMIT ?"
    ))
    .bind(after_id)
    .bind(since_ms)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let statuses = messages::statuses(pool, rows, true).await?;
    let ids = statuses.iter().map(|m| m.message_id).collect();
    let roots = search::thread_roots(pool, ids).await?;
    Ok(statuses
        .into_iter()
        .map(|m| ExportedMessage {
            thread_id: roots.get(&m.message_id).copied().unwrap_or(m.message_id),
            message: m,
        })
        .collect())
}
