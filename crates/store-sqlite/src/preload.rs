//! Bulk history for benchmarks: `peers-broker preload-history` (hidden) fills a database with
//! delivered mail so `cargo xtask bench broker` can measure claims against a large table
//! without sending a million messages through the API. It opens its own connection while the
//! broker runs; WAL lets the broker keep serving.

use std::path::Path;

use sqlx::Connection;

/// Inserts `n` delivered messages from the human, spread round-robin over `peers` (peer ids).
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
    sqlx::query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
         INSERT INTO messages (from_peer, from_kind, from_address, to_peer, to_address, body, \
           state, sent_ms, expires_ms, delivered_ms, delivered_via) \
         SELECT NULL, 'human', 'you@bench', ids.id, 'p@bench', 'old message ' || x, \
           'delivered', x, x + 1000, x + 1, 'PostToolUse' \
         FROM c JOIN ids ON ids.i = x % ?",
    )
    .bind(n as i64)
    .bind(peers.len() as i64)
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}
