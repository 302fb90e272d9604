//! Message rows: send, claim (lease), ack, status, inbox, history, expiry, the loop budget.

use peers_core::wire::{InboxMessage, MessageState, MessageStatus, SenderKind};
use peers_store::{ClaimOutcome, LoopBudget, NewMessage};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::Error;

#[derive(Debug, Clone, FromRow)]
struct MessageRow {
    id: i64,
    from_peer: Option<String>,
    from_kind: String,
    from_address: String,
    from_cwd: Option<String>,
    to_peer: String,
    to_address: String,
    body: String,
    reply_to: Option<i64>,
    state: String,
    sent_ms: i64,
    expires_ms: i64,
    delivered_ms: Option<i64>,
    delivered_via: Option<String>,
}

/// The column list, as a macro so queries stay literal strings.
macro_rules! message_columns {
    () => {
        "id, from_peer, from_kind, from_address, from_cwd, to_peer, to_address, \
     body, reply_to, state, sent_ms, expires_ms, delivered_ms, delivered_via"
    };
}

fn state(s: &str) -> MessageState {
    match s {
        "leased" => MessageState::Leased,
        "delivered" => MessageState::Delivered,
        "expired" => MessageState::Expired,
        _ => MessageState::Queued,
    }
}

fn kind(s: &str) -> SenderKind {
    if s == "human" {
        SenderKind::Human
    } else {
        SenderKind::Peer
    }
}

impl MessageRow {
    fn inbox(self) -> InboxMessage {
        InboxMessage {
            message_id: self.id,
            from_kind: kind(&self.from_kind),
            from: self.from_address,
            from_peer_id: self.from_peer,
            from_cwd: self.from_cwd,
            sent_at_ms: self.sent_ms,
            reply_to: self.reply_to,
            body: self.body,
            status: state(&self.state),
            delivered_at_ms: self.delivered_ms,
            delivered_via: self.delivered_via,
        }
    }

    fn status(self, replies: Vec<i64>, recipient_alive: bool) -> MessageStatus {
        // A lease is internal: to the sender, leased mail is still queued.
        let status = match state(&self.state) {
            MessageState::Leased => MessageState::Queued,
            s => s,
        };
        MessageStatus {
            message_id: self.id,
            from: self.from_address,
            from_kind: kind(&self.from_kind),
            to: self.to_address,
            to_peer_id: self.to_peer,
            status,
            sent_at_ms: self.sent_ms,
            delivered_at_ms: self.delivered_ms,
            delivered_via: self.delivered_via,
            expires_at_ms: self.expires_ms,
            reply_to: self.reply_to,
            replies,
            recipient_alive,
            recipient_can_wake: false,
            bytes: self.body.len() as u64,
            body: None,
        }
    }
}

/// Stores one message (runs in the writer). Returns its id and the registration it was
/// queued for. See [`insert_many`].
#[cfg(test)]
pub async fn insert(conn: &mut SqliteConnection, m: NewMessage) -> Result<(i64, String), Error> {
    let mut out = insert_many(conn, std::slice::from_ref(&m)).await?;
    Ok(out.remove(0))
}

/// The most rows one `INSERT` of [`insert_many`] stores.
pub const MAX_ROWS: usize = 500;

/// Stores messages with one multi-row `INSERT` per [`MAX_ROWS`] (runs in the writer): the group
/// commit's batch of sends costs one statement, not one per send. Returns, in input order,
/// each message's id and the registration it was queued for.
///
/// Recipients were resolved before this ran; one that has been replaced since (its session
/// re-registered in between) is followed to its replacement here, so a send racing a
/// re-registration cannot strand mail on a dead id.
pub async fn insert_many(
    conn: &mut SqliteConnection,
    msgs: &[NewMessage],
) -> Result<Vec<(i64, String)>, Error> {
    let targets = current_registrations(conn, msgs.iter().map(|m| m.to_peer.as_str())).await?;
    let mut out = Vec::with_capacity(msgs.len());
    for chunk in msgs.chunks(MAX_ROWS) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO messages (from_peer, from_kind, from_address, from_cwd, to_peer, \
             to_address, body, reply_to, state, sent_ms, expires_ms) ",
        );
        q.push_values(chunk, |mut row, m| {
            row.push_bind(&m.from.peer_id)
                .push_bind(match m.from.kind {
                    SenderKind::Human => "human",
                    SenderKind::Peer => "peer",
                })
                .push_bind(&m.from.address)
                .push_bind(&m.from.cwd)
                .push_bind(targets.get(&m.to_peer).unwrap_or(&m.to_peer))
                .push_bind(&m.to_address)
                .push_bind(&m.body)
                .push_bind(m.reply_to)
                .push_bind("queued")
                .push_bind(m.sent_ms)
                .push_bind(m.expires_ms);
        });
        q.push(" RETURNING id");
        // Rowids are handed out in VALUES order; RETURNING's order is unspecified, so sort.
        let mut ids: Vec<i64> = q.build_query_scalar().fetch_all(&mut *conn).await?;
        ids.sort_unstable();
        for (id, m) in ids.into_iter().zip(chunk) {
            let to = targets.get(&m.to_peer).unwrap_or(&m.to_peer).clone();
            out.push((id, to));
        }
    }
    Ok(out)
}

/// For each of `ids` that has been replaced, the registration at the end of its
/// `replaced_by` chain. One query in the common case (nothing replaced).
async fn current_registrations<'a>(
    conn: &mut SqliteConnection,
    ids: impl Iterator<Item = &'a str>,
) -> Result<std::collections::HashMap<String, String>, Error> {
    let distinct: std::collections::BTreeSet<&str> = ids.collect();
    let mut q = sqlx::QueryBuilder::new(
        "SELECT id, replaced_by FROM peers WHERE replaced_by IS NOT NULL AND id IN (",
    );
    let mut list = q.separated(", ");
    for id in &distinct {
        list.push_bind(*id);
    }
    q.push(")");
    let replaced: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
    let mut out = std::collections::HashMap::new();
    for (id, mut next) in replaced {
        for _ in 0..64 {
            let further: Option<Option<String>> =
                sqlx::query_scalar("SELECT replaced_by FROM peers WHERE id = ?")
                    .bind(&next)
                    .fetch_optional(&mut *conn)
                    .await?;
            match further.flatten() {
                Some(n) => next = n,
                None => break,
            }
        }
        out.insert(id, next);
    }
    Ok(out)
}

/// Leases up to `max` of a peer's waiting mail in send order (runs in the writer, so two
/// claims never overlap). Mail whose lease lapsed counts as waiting again.
///
/// An `automatic` claim (one that would extend or start a turn by itself) first spends from
/// the loop budget of the peer's Claude Code process. Past it, nothing is leased, and the
/// first such claim in a window records the budget's notice.
pub async fn claim(
    conn: &mut SqliteConnection,
    peer_id: &str,
    lease_id: &str,
    max: u32,
    now: i64,
    lease_expires: i64,
    automatic: Option<&LoopBudget>,
) -> Result<ClaimOutcome, Error> {
    if let Some(budget) = automatic {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE to_peer = ? AND (state = 'queued' \
             OR (state = 'leased' AND lease_expires_ms < ?))",
        )
        .bind(peer_id)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        if waiting == 0 {
            return Ok(ClaimOutcome {
                messages: vec![],
                budget_exhausted: false,
                budget_notice: false,
            });
        }
        let spent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM budget_spend WHERE machine_id = ? AND claude_pid = ? AND at_ms > ?",
        )
        .bind(&budget.machine_id)
        .bind(budget.claude_pid)
        .bind(now - budget.window_ms)
        .fetch_one(&mut *conn)
        .await?;
        if spent >= budget.limit as i64 {
            // One notice per window, not one per hook call.
            let noticed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM notices WHERE kind = 'loop_budget' AND peer_id = ? AND at_ms > ?",
            )
            .bind(peer_id)
            .bind(now - budget.window_ms)
            .fetch_one(&mut *conn)
            .await?;
            if noticed == 0 {
                add_notice(
                    conn,
                    "loop_budget",
                    Some(peer_id),
                    &budget.notice,
                    peers_store::BROKER_AUTHOR,
                    now,
                )
                .await?;
            }
            return Ok(ClaimOutcome {
                messages: vec![],
                budget_exhausted: true,
                budget_notice: noticed == 0,
            });
        }
        sqlx::query("INSERT INTO budget_spend (machine_id, claude_pid, at_ms) VALUES (?,?,?)")
            .bind(&budget.machine_id)
            .bind(budget.claude_pid)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    let mut rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "UPDATE messages SET state = 'leased', lease_id = ?, lease_expires_ms = ? \
         WHERE id IN (SELECT id FROM messages WHERE to_peer = ? AND (state = 'queued' \
                      OR (state = 'leased' AND lease_expires_ms < ?)) ORDER BY id LIMIT ?) \
         RETURNING ",
        message_columns!(),
        ""
    ))
    .bind(lease_id)
    .bind(lease_expires)
    .bind(peer_id)
    .bind(now)
    .bind(max as i64)
    .fetch_all(&mut *conn)
    .await?;
    rows.sort_by_key(|r| r.id);
    Ok(ClaimOutcome {
        messages: rows.into_iter().map(MessageRow::inbox).collect(),
        budget_exhausted: false,
        budget_notice: false,
    })
}

/// Marks a lease's mail delivered (runs in the writer). With `ids`, only those are delivered
/// and the rest of the lease goes straight back to the queue. Mail whose lease lapsed but was
/// not claimed again is still accepted: it was shown. Returns (delivered, released).
pub async fn ack(
    conn: &mut SqliteConnection,
    peer_id: &str,
    lease_id: &str,
    via: &str,
    ids: Option<&[i64]>,
    now: i64,
) -> Result<(u64, u64), Error> {
    let mut q = sqlx::QueryBuilder::new(
        "UPDATE messages SET state = 'delivered', lease_id = NULL, lease_expires_ms = NULL, \
         delivered_ms = ",
    );
    q.push_bind(now)
        .push(", delivered_via = ")
        .push_bind(via)
        .push(" WHERE lease_id = ")
        .push_bind(lease_id)
        .push(" AND to_peer = ")
        .push_bind(peer_id)
        .push(" AND state IN ('leased','queued')");
    if let Some(ids) = ids {
        // An empty list delivers nothing (and releases the whole lease below).
        q.push(" AND id IN (NULL");
        for id in ids {
            q.push(", ").push_bind(*id);
        }
        q.push(")");
    }
    let delivered = q.build().execute(&mut *conn).await?.rows_affected();
    let released = sqlx::query(
        "UPDATE messages SET state = 'queued', lease_id = NULL, lease_expires_ms = NULL \
         WHERE lease_id = ? AND to_peer = ? AND state = 'leased'",
    )
    .bind(lease_id)
    .bind(peer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((delivered, released))
}

/// Drops loop-budget spending older than `before` (the sweep: it no longer counts).
pub async fn forget_budget_spend_before(
    conn: &mut SqliteConnection,
    before: i64,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM budget_spend WHERE at_ms < ?")
        .bind(before)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Returns lapsed leases to the queue and expires mail past its TTL (runs in the writer).
/// A lapsed lease keeps its id, so a late ack of mail that was in fact shown still counts.
pub async fn sweep(conn: &mut SqliteConnection, now: i64) -> Result<(u64, u64), Error> {
    let requeued = sqlx::query(
        "UPDATE messages SET state = 'queued' WHERE state = 'leased' AND lease_expires_ms < ?",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let expired = sqlx::query(
        "UPDATE messages SET state = 'expired', lease_id = NULL, lease_expires_ms = NULL \
         WHERE state IN ('queued','leased') AND expires_ms < ?",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((requeued, expired))
}

/// One message with its replies, and its body when `with_body` (reads).
pub async fn status(
    pool: &SqlitePool,
    id: i64,
    with_body: bool,
) -> Result<Option<(MessageStatus, Option<String>)>, Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let from_peer = row.from_peer.clone();
    let body = with_body.then(|| row.body.clone());
    let mut status = with_replies(pool, row).await?;
    status.body = body;
    Ok(Some((status, from_peer)))
}

/// A row's sender-side status: its replies and whether its recipient is alive (reads).
async fn with_replies(pool: &SqlitePool, row: MessageRow) -> Result<MessageStatus, Error> {
    let replies: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM messages WHERE reply_to = ? ORDER BY id")
            .bind(row.id)
            .fetch_all(pool)
            .await?;
    let alive: Option<i64> = sqlx::query_scalar("SELECT gone_ms IS NULL FROM peers WHERE id = ?")
        .bind(&row.to_peer)
        .fetch_optional(pool)
        .await?;
    Ok(row.status(replies, alive == Some(1)))
}

/// A peer's waiting mail, nothing consumed (reads).
pub async fn waiting(pool: &SqlitePool, peer_id: &str) -> Result<Vec<InboxMessage>, Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE to_peer = ? AND state IN ('queued','leased') ORDER BY id"
    ))
    .bind(peer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(MessageRow::inbox).collect())
}

/// How many messages wait for a peer, and since when (reads).
pub async fn waiting_count(pool: &SqlitePool, peer_id: &str) -> Result<(u64, Option<i64>), Error> {
    let (n, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(sent_ms) FROM messages WHERE to_peer = ? AND state = 'queued'",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok((n as u64, oldest))
}

/// Whether a claim could lease anything now: queued mail, or leased mail whose lease lapsed
/// (reads). Lets the common no-mail claim — one per tool call — skip the writer queue.
pub async fn claimable(pool: &SqlitePool, peer_id: &str, now: i64) -> Result<bool, Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE to_peer = ? AND (state = 'queued' \
         OR (state = 'leased' AND lease_expires_ms < ?)))",
    )
    .bind(peer_id)
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(n == 1)
}

/// How many messages wait for a peer, leased ones included (reads).
pub async fn pending_count(pool: &SqlitePool, peer_id: &str) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE to_peer = ? AND state IN ('queued','leased')",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// Whether a message exists (reads).
pub async fn exists(pool: &SqlitePool, id: i64) -> Result<bool, Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE id = ?")
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(n > 0)
}

/// Mail delivered to any of `peer_ids` (the caller and the registrations it replaced),
/// newest first (reads).
pub async fn delivered_to(
    pool: &SqlitePool,
    peer_ids: &[String],
    since_ms: i64,
    limit: u32,
) -> Result<Vec<InboxMessage>, Error> {
    let mut out = Vec::new();
    for id in peer_ids {
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE to_peer = ? AND state = 'delivered' \
             AND sent_ms >= ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(id)
        .bind(since_ms)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
        out.extend(rows.into_iter().map(MessageRow::inbox));
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.message_id));
    out.truncate(limit as usize);
    Ok(out)
}

/// The message log for the human, newest first, filtered by sender/recipient peer ids
/// (`Some(None)` for a human sender) and time, with bodies when `with_body` (reads).
pub async fn log(
    pool: &SqlitePool,
    from: Option<Option<Vec<String>>>,
    to: Option<Vec<String>>,
    since_ms: i64,
    limit: u32,
    with_body: bool,
) -> Result<Vec<MessageStatus>, Error> {
    let mut sql = concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE sent_ms >= ?"
    )
    .to_string();
    let mut binds: Vec<String> = Vec::new();
    match &from {
        Some(None) => sql.push_str(" AND from_kind = 'human'"),
        Some(Some(ids)) => {
            sql.push_str(&format!(" AND from_peer IN ({})", placeholders(ids.len())));
            binds.extend(ids.iter().cloned());
        }
        None => {}
    }
    if let Some(ids) = &to {
        sql.push_str(&format!(" AND to_peer IN ({})", placeholders(ids.len())));
        binds.extend(ids.iter().cloned());
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, MessageRow>(sqlx::AssertSqlSafe(sql)).bind(since_ms);
    for b in &binds {
        q = q.bind(b);
    }
    let rows = q.bind(limit as i64).fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let body = with_body.then(|| row.body.clone());
        let mut status = with_replies(pool, row).await?;
        status.body = body;
        out.push(status);
    }
    Ok(out)
}

fn placeholders(n: usize) -> String {
    if n == 0 {
        return "NULL".into();
    }
    vec!["?"; n].join(",")
}

/// Count of waiting mail over all peers (reads).
pub async fn count_waiting(pool: &SqlitePool) -> Result<u64, Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE state IN ('queued','leased')")
            .fetch_one(pool)
            .await?;
    Ok(n as u64)
}

/// Peer ids that the registration `peer_id` replaced, transitively (reads).
pub async fn lineage(pool: &SqlitePool, peer_id: &str) -> Result<Vec<String>, Error> {
    let mut ids = vec![peer_id.to_string()];
    let mut frontier = vec![peer_id.to_string()];
    while let Some(id) = frontier.pop() {
        let older: Vec<String> = sqlx::query_scalar("SELECT id FROM peers WHERE replaced_by = ?")
            .bind(&id)
            .fetch_all(pool)
            .await?;
        for o in older {
            if !ids.contains(&o) && ids.len() < 256 {
                ids.push(o.clone());
                frontier.push(o);
            }
        }
    }
    Ok(ids)
}

/// Records a notice for the human (runs in the writer). `author`: `broker`, the posting
/// peer's `name@host`, or `you`.
pub async fn add_notice(
    conn: &mut SqliteConnection,
    kind: &str,
    peer_id: Option<&str>,
    text: &str,
    author: &str,
    now: i64,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO notices (at_ms, kind, peer_id, text, author) VALUES (?,?,?,?,?)")
        .bind(now)
        .bind(kind)
        .bind(peer_id)
        .bind(text)
        .bind(author)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn notices(
    pool: &SqlitePool,
    limit: u32,
) -> Result<Vec<peers_core::wire::Notice>, Error> {
    let rows: Vec<(i64, i64, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT id, at_ms, kind, peer_id, text, author FROM notices ORDER BY id DESC LIMIT ?",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, at_ms, kind, peer_id, text, author)| peers_core::wire::Notice {
                id,
                at_ms,
                kind,
                peer_id,
                text,
                author,
            },
        )
        .collect())
}
