//! Full-text search over message bodies and tags: the generated `tsvector` column
//! `messages.search` and its GIN index (migration 0004), written by the send's own INSERT.
//! The query is read with `websearch_to_tsquery` (words, "phrases", OR, -not), which takes
//! any text, so no query is refused.

use std::collections::HashMap;

use peers_core::wire::{SearchHit, SenderKind};
use peers_store::{LogSender, SearchFilter};
use sqlx::PgPool;

#[derive(Debug, sqlx::FromRow)]
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

/// The best matches of `f.query` that `f.viewer` may see.
pub(crate) async fn search(pool: &PgPool, f: SearchFilter) -> Result<Vec<SearchHit>, sqlx::Error> {
    let viewer = f.viewer.as_ref();
    let (human, from): (bool, Option<&[String]>) = match &f.from {
        None => (false, None),
        Some(LogSender::Human) => (true, None),
        Some(LogSender::Peers(ids)) => (false, Some(ids)),
    };
    let rows: Vec<HitRow> = sqlx::query_as(
        "WITH q AS (SELECT websearch_to_tsquery('simple', $1) AS q) \
         SELECT m.id, m.from_kind, m.from_address, m.to_address, m.sent_ms, m.tags, m.project, \
           ts_headline('simple', m.body, q.q, \
             'StartSel=**, StopSel=**, MaxWords=24, MinWords=8, FragmentDelimiter=…') \
             AS snippet \
         FROM messages m, q WHERE m.search @@ q.q AND m.sent_ms >= $2 \
         AND ($3::text[] IS NULL \
              OR m.from_peer = ANY($3) \
              OR EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
                         AND d.to_peer = ANY($3)) \
              OR m.channel IN (SELECT '#' || s.topic FROM subscriptions s \
                               WHERE s.machine_id = $4 AND s.cwd = $5 AND s.name = $6)) \
         AND (NOT $7 OR m.from_kind = 'human') \
         AND ($8::text[] IS NULL OR m.from_peer = ANY($8)) \
         AND ($9::text IS NULL OR m.channel = '#' || $9) \
         AND ($10::text IS NULL OR m.id IN (SELECT message_id FROM message_tags WHERE tag = $10)) \
         AND ($11::text IS NULL OR m.project = $11) \
         ORDER BY ts_rank(m.search, q.q) DESC, m.id DESC LIMIT $12",
    )
    .bind(&f.query)
    .bind(f.since_ms)
    .bind(viewer.map(|v| v.peer_ids.clone()))
    .bind(viewer.map(|v| v.machine_id.as_str()))
    .bind(viewer.map(|v| v.cwd.as_str()))
    .bind(viewer.map(|v| v.name.as_str()))
    .bind(human)
    .bind(from)
    .bind(f.topic.as_deref())
    .bind(f.tag.as_deref())
    .bind(f.project.as_deref())
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let roots = thread_roots(pool, &ids).await?;
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

/// For each of `ids`, the root of its `reply_to` chain: the oldest message of it still stored
/// (one recursive query).
pub(crate) async fn thread_roots(
    pool: &PgPool,
    ids: &[i64],
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    Ok(sqlx::query_as::<_, (i64, i64)>(
        "WITH RECURSIVE up(hit, id, reply_to) AS ( \
           SELECT id, id, reply_to FROM messages WHERE id = ANY($1) \
           UNION ALL \
           SELECT up.hit, p.id, p.reply_to FROM messages p JOIN up ON p.id = up.reply_to) \
         SELECT hit, id FROM up WHERE reply_to IS NULL \
           OR NOT EXISTS (SELECT 1 FROM messages x WHERE x.id = up.reply_to)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect())
}
