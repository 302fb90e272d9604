//! Full-text search over message bodies and tags: the FTS5 table `messages_fts`, written
//! here in batches by the writer ([`index_batch`]) and read here.
//!
//! A send's commit does not index its message (migration 0009): that cost three pages and a
//! new FTS5 segment per fsync'd commit. The store indexes what is missing shortly after
//! sends, and before every text search ([`crate::Db::index_for_search`]), so a search sees
//! every send acknowledged before it began. `search_indexed.upto` says how far the index
//! goes; it commits with the index rows, so a crash loses both or neither.

use std::collections::HashMap;

use peers_core::wire::{SearchHit, SenderKind};
use peers_store::{SEARCH_START_CHARS as START, SearchFilter};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::Error;
use crate::messages::push_narrowing;

#[derive(Debug, FromRow)]
struct HitRow {
    id: i64,
    from_kind: String,
    from_address: String,
    to_address: String,
    sent_ms: i64,
    tags: Option<String>,
    project: Option<String>,
    snippet: String,
}

/// The most messages one [`index_batch`] indexes: a writer job of a few milliseconds, so
/// sends queued behind it wait little.
pub const INDEX_BATCH: i64 = 500;

/// Indexes up to `limit` of the oldest messages the full-text index does not hold yet
/// (runs in the writer). Returns whether none was left to index.
pub async fn index_batch(conn: &mut SqliteConnection, limit: i64) -> Result<bool, Error> {
    let upto: i64 = sqlx::query_scalar("SELECT upto FROM search_indexed")
        .fetch_one(&mut *conn)
        .await?;
    let (last, n): (Option<i64>, i64) = sqlx::query_as(
        "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?)",
    )
    .bind(upto)
    .bind(limit)
    .fetch_one(&mut *conn)
    .await?;
    let Some(last) = last else {
        return Ok(true);
    };
    sqlx::query(
        "INSERT INTO messages_fts (rowid, body, tags) \
         SELECT id, body, tags FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    )
    .bind(upto)
    .bind(last)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE search_indexed SET upto = ?")
        .bind(last)
        .execute(&mut *conn)
        .await?;
    Ok(n < limit)
}

/// The best matches of `f.query` that `f.viewer` may see, or with no query the newest
/// messages that pass the filters, each snippet the start of its body (reads).
pub async fn search(pool: &SqlitePool, f: SearchFilter) -> Result<Vec<SearchHit>, Error> {
    let text = !f.query.trim().is_empty();
    let mut q = sqlx::QueryBuilder::new(
        "SELECT m.id, m.from_kind, m.from_address, m.to_address, m.sent_ms, m.tags, m.project, ",
    );
    if text {
        // CROSS JOIN keeps the full-text index the outer loop (SQLite never reorders a CROSS
        // JOIN): ranking needs every match anyway, and a filter's index (`messages_project`)
        // as the outer loop runs the MATCH once per row of the project.
        q.push(
            "snippet(messages_fts, 0, '**', '**', '…', 16) AS snippet \
             FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid \
             WHERE messages_fts MATCH ",
        )
        .push_bind(&f.query);
    } else {
        q.push(format!(
            "CASE WHEN length(m.body) > {START} THEN substr(m.body, 1, {START}) || '…' \
             ELSE m.body END AS snippet FROM messages m WHERE true"
        ));
    }
    if let Some(v) = &f.viewer {
        q.push(" AND (m.from_peer IN (NULL");
        for id in &v.peer_ids {
            q.push(", ").push_bind(id);
        }
        q.push(
            ") OR EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.to_peer IN (NULL",
        );
        for id in &v.peer_ids {
            q.push(", ").push_bind(id);
        }
        q.push(
            ")) OR m.channel IN (SELECT '#' || s.topic FROM subscriptions s \
             WHERE s.machine_id = ",
        )
        .push_bind(&v.machine_id)
        .push(" AND s.cwd = ")
        .push_bind(&v.cwd)
        .push(" AND s.name = ")
        .push_bind(&v.name)
        .push("))");
    }
    push_narrowing(&mut q, f.narrowing());
    q.push(if text {
        " ORDER BY rank LIMIT "
    } else {
        " ORDER BY m.id DESC LIMIT "
    })
    .push_bind(f.limit as i64);
    let rows: Vec<HitRow> = q
        .build_query_as()
        .fetch_all(pool)
        .await
        .map_err(|e| bad_query(&f.query, e))?;
    let roots = thread_roots(pool, rows.iter().map(|r| r.id).collect()).await?;
    Ok(rows
        .into_iter()
        .map(|r| SearchHit {
            message_id: r.id,
            thread_id: roots.get(&r.id).copied().unwrap_or(r.id),
            from: r.from_address,
            from_kind: if r.from_kind == "human" {
                SenderKind::Human
            } else {
                SenderKind::Peer
            },
            to: r.to_address,
            sent_at_ms: r.sent_ms,
            snippet: r.snippet,
            tags: r
                .tags
                .map(|t| t.split(' ').map(str::to_string).collect())
                .unwrap_or_default(),
            project: r.project,
        })
        .collect())
}

/// FTS5 refuses a query it cannot parse (`fts5: syntax error near …`, an unknown column
/// before `:`, an open quote) with a plain SQLite error: that is the caller's to fix.
fn bad_query(query: &str, e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e {
        let m = d.message();
        if m.contains("fts5") || m.contains("no such column") || m.contains("unterminated") {
            return Error::BadQuery(format!(
                "the search {query:?} is not a valid query ({m}): use words, \"quoted \
                 phrases\", OR, NOT and prefix*; put a word holding : or other punctuation \
                 in double quotes"
            ));
        }
    }
    Error::Db(e)
}

/// For each of `ids`, the root of its `reply_to` chain (one recursive query).
pub(crate) async fn thread_roots(
    pool: &SqlitePool,
    ids: Vec<i64>,
) -> Result<HashMap<i64, i64>, Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = sqlx::QueryBuilder::new(
        "WITH RECURSIVE up(hit, id, reply_to) AS ( \
           SELECT id, id, reply_to FROM messages WHERE id IN (",
    );
    let mut list = q.separated(", ");
    for id in &ids {
        list.push_bind(*id);
    }
    q.push(
        ") UNION ALL \
           SELECT up.hit, p.id, p.reply_to FROM messages p JOIN up ON p.id = up.reply_to) \
         SELECT hit, id FROM up WHERE reply_to IS NULL \
           OR reply_to NOT IN (SELECT id FROM messages)",
    );
    let pairs: Vec<(i64, i64)> = q.build_query_as().fetch_all(pool).await?;
    Ok(pairs.into_iter().collect())
}
