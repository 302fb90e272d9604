//! Bulk history for benchmarks: `peers-broker preload-history` (hidden) fills a database with
//! delivered mail so `cargo xtask bench broker` can measure claims against a large table
//! without sending a million messages through the API. It opens its own connection while the
//! broker runs; WAL lets the broker keep serving.

use std::path::Path;

use sqlx::Connection;

/// Inserts `n` delivered messages from the human, spread round-robin over `peers` (peer ids),
/// each with its one reader's delivered copy.
pub async fn delivered_history(db: &Path, peers: &[String], n: u64) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    sqlx::raw_sql("CREATE TEMP TABLE ids (i INTEGER PRIMARY KEY, id TEXT)")
        .execute(&mut conn)
        .await?;
    for (i, p) in peers.iter().enumerate() {
        sqlx::query("INSERT INTO ids VALUES (?, ?)")
            .bind(i as i64)
            .bind(p)
            .execute(&mut conn)
            .await?;
    }
    // The write lock first: the ids counted from MAX(id) must still be free when inserted.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM messages")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
         INSERT INTO messages (id, from_peer, from_kind, from_address, to_address, body, \
           sent_ms, expires_ms) \
         SELECT ? + x - 1, NULL, 'human', 'you@bench', 'p@bench', 'old message ' || x, x, \
           x + 1000 \
         FROM c",
    )
    .bind(n as i64)
    .bind(first)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (message_id, to_peer, to_address, wake, state, expires_ms, \
           delivered_ms, delivered_via) \
         SELECT m.id, ids.id, 'p@bench', 1, 'delivered', m.expires_ms, m.sent_ms + 1, \
           'PostToolUse' \
         FROM messages m JOIN ids ON ids.i = m.sent_ms % ? WHERE m.id >= ? ORDER BY m.id",
    )
    .bind(peers.len() as i64)
    .bind(first)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}
