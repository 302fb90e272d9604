//! Bulk history for benchmarks: `peers-broker preload-history` (hidden) fills a database with
//! delivered mail so `cargo xtask bench broker` can measure claims against a large table
//! without sending a million messages through the API. It opens its own connection while the
//! broker runs; WAL lets the broker keep serving.

use std::path::Path;

use sqlx::Connection;

use crate::{Error, search};

/// Rows per batch when a preload indexes what it wrote, inside its own transaction.
const INDEX_BATCH: i64 = 50_000;

/// Inserts `n` delivered messages from the human, spread round-robin over `peers` (peer ids),
/// each with its one reader's delivered copy.
pub async fn delivered_history(db: &Path, peers: &[String], n: u64) -> Result<(), Error> {
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
    // Indexed for search in the same commit: the broker's own indexer only looks after its
    // own sends.
    while !search::index_batch(&mut tx, INDEX_BATCH).await? {}
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// Inserts one delivered message per entry of `bodies`, from `peers[i % n]` to the next peer
/// in `peers`, the sender's project `proj<i % 8>`, sent at `first_ms + i` (for `cargo xtask
/// bench search`: a large searchable history without sending it through the API). The rows
/// are indexed for search in the same transaction, one for the whole call.
pub async fn bodies_history(
    db: &Path,
    peers: &[(String, String)],
    bodies: &[String],
    first_ms: i64,
) -> Result<(), Error> {
    if peers.is_empty() || bodies.is_empty() {
        return Ok(());
    }
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM messages")
        .fetch_one(&mut *tx)
        .await?;
    let n = peers.len();
    // 500 rows of 8 values per statement: well under SQLite's limit on bound values.
    for (c, chunk) in bodies.chunks(500).enumerate() {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO messages (id, from_peer, from_kind, from_address, to_address, body, \
             sent_ms, expires_ms, project) ",
        );
        q.push_values(chunk.iter().enumerate(), |mut row, (j, body)| {
            let i = c * 500 + j;
            let (from_id, from_addr) = &peers[i % n];
            let to_addr = &peers[(i + 1) % n].1;
            let at = first_ms + i as i64;
            row.push_bind(first + i as i64)
                .push_bind(from_id)
                .push_bind("peer")
                .push_bind(from_addr)
                .push_bind(to_addr)
                .push_bind(body)
                .push_bind(at)
                .push_bind(at + 1000);
            row.push(format!("'proj{}'", i % 8));
        });
        q.build().execute(&mut *tx).await?;
    }
    sqlx::raw_sql(
        "CREATE TEMP TABLE IF NOT EXISTS bench_ids (i INTEGER PRIMARY KEY, id TEXT, address TEXT)",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM bench_ids")
        .execute(&mut *tx)
        .await?;
    for (i, (id, address)) in peers.iter().enumerate() {
        sqlx::query("INSERT INTO bench_ids VALUES (?, ?, ?)")
            .bind(i as i64)
            .bind(id)
            .bind(address)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO deliveries (message_id, to_peer, to_address, wake, state, expires_ms, \
           delivered_ms, delivered_via) \
         SELECT m.id, b.id, b.address, 1, 'delivered', m.expires_ms, m.sent_ms + 1, \
           'PostToolUse' \
         FROM messages m JOIN bench_ids b ON b.i = (m.id - ? + 1) % ? WHERE m.id >= ? \
         ORDER BY m.id",
    )
    .bind(first)
    .bind(n as i64)
    .bind(first)
    .execute(&mut *tx)
    .await?;
    while !search::index_batch(&mut tx, INDEX_BATCH).await? {}
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// Stops indexing for search (`cargo xtask bench search`'s "FTS off" run): marks every
/// message, present and future, as indexed, so the broker's indexer finds nothing to do and
/// search no longer finds new mail. Bench-only; a database treated so is not for use.
pub async fn drop_search_index(db: &Path) -> Result<(), Error> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    sqlx::query("UPDATE search_indexed SET upto = ?")
        .bind(i64::MAX)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
