//! Message rows: the batched send, claim (lease, loop budget), ack, the sweep, status, inbox,
//! history; notices; bulk history for benchmarks.

use std::collections::HashMap;

use peers_core::wire::{InboxMessage, MessageState, MessageStatus, Notice, SenderKind};
use peers_store::{
    Ack, Acked, Claim, ClaimOutcome, LogFilter, LogSender, NewMessage, NewNotice, Sent, Sweep,
    Swept,
};
use sqlx::{PgConnection, PgPool};

use crate::events::{notify_mail, notify_peers};
use crate::peers;

#[derive(Debug, Clone, sqlx::FromRow)]
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

/// A row with what its sender-side status needs besides.
#[derive(Debug, Clone, sqlx::FromRow)]
struct StatusRow {
    #[sqlx(flatten)]
    row: MessageRow,
    replies: Vec<i64>,
    recipient_alive: bool,
}

/// The column list, as a macro so queries stay literal strings.
macro_rules! message_columns {
    () => {
        "id, from_peer, from_kind, from_address, from_cwd, to_peer, to_address, \
         body, reply_to, state, sent_ms, expires_ms, delivered_ms, delivered_via"
    };
}

/// [`message_columns`] of `messages m`, plus each message's replies and whether its
/// recipient is alive.
macro_rules! status_columns {
    () => {
        "m.id, m.from_peer, m.from_kind, m.from_address, m.from_cwd, m.to_peer, m.to_address, \
         m.body, m.reply_to, m.state, m.sent_ms, m.expires_ms, m.delivered_ms, m.delivered_via, \
         ARRAY(SELECT r.id FROM messages r WHERE r.reply_to = m.id ORDER BY r.id) AS replies, \
         COALESCE((SELECT p.gone_ms IS NULL FROM peers p WHERE p.id = m.to_peer), false) \
           AS recipient_alive"
    };
}

/// Mail a claim may lease: queued, or leased with the lease lapsed (`$2`: now).
macro_rules! claimable {
    () => {
        "(state = 'queued' OR (state = 'leased' AND lease_expires_ms < $2))"
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
}

impl StatusRow {
    fn status(self, with_body: bool) -> MessageStatus {
        let r = self.row;
        // A lease is internal: to the sender, leased mail is still queued.
        let status = match state(&r.state) {
            MessageState::Leased => MessageState::Queued,
            s => s,
        };
        MessageStatus {
            message_id: r.id,
            from: r.from_address,
            from_kind: kind(&r.from_kind),
            to: r.to_address,
            to_peer_id: r.to_peer,
            status,
            sent_at_ms: r.sent_ms,
            delivered_at_ms: r.delivered_ms,
            delivered_via: r.delivered_via,
            expires_at_ms: r.expires_ms,
            reply_to: r.reply_to,
            replies: self.replies,
            recipient_alive: self.recipient_alive,
            recipient_can_wake: false,
            bytes: r.body.len() as u64,
            body: with_body.then_some(r.body),
        }
    }
}

/// Stores a batch of sends with one `INSERT` inside the caller's transaction and announces
/// the mail. Returns, in input order, each message's id and the registration it was queued
/// for (a recipient replaced since it was resolved is followed to its replacement).
///
/// Ids are taken from the sequence first and given out in batch order, so a batch's messages
/// are claimed in the order they were sent, whatever order the server returns rows in.
pub(crate) async fn insert_batch(
    conn: &mut PgConnection,
    msgs: &[NewMessage],
) -> Result<Vec<Sent>, sqlx::Error> {
    let wanted: Vec<String> = msgs.iter().map(|m| m.to_peer.clone()).collect();
    let current = peers::current_registrations(conn, &wanted).await?;
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $1)",
    )
    .bind(msgs.len() as i64)
    .fetch_all(&mut *conn)
    .await?;
    ids.sort_unstable();
    let to: Vec<String> = msgs
        .iter()
        .map(|m| current.get(&m.to_peer).unwrap_or(&m.to_peer).clone())
        .collect();
    let col = |f: fn(&NewMessage) -> Option<String>| msgs.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO messages (id, from_peer, from_kind, from_address, from_cwd, to_peer, \
           to_address, body, reply_to, state, sent_ms, expires_ms) \
         SELECT id, fp, fk, fa, fc, tp, ta, b, rt, 'queued', s, e \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], \
                     $11::bigint[]) AS t(id, fp, fk, fa, fc, tp, ta, b, rt, s, e)",
    )
    .bind(&ids)
    .bind(col(|m| m.from.peer_id.clone()))
    .bind(
        msgs.iter()
            .map(|m| match m.from.kind {
                SenderKind::Human => "human",
                SenderKind::Peer => "peer",
            })
            .collect::<Vec<_>>(),
    )
    .bind(
        msgs.iter()
            .map(|m| m.from.address.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(col(|m| m.from.cwd.clone()))
    .bind(&to)
    .bind(
        msgs.iter()
            .map(|m| m.to_address.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
    .bind(msgs.iter().map(|m| m.reply_to).collect::<Vec<_>>())
    .bind(msgs.iter().map(|m| m.sent_ms).collect::<Vec<_>>())
    .bind(msgs.iter().map(|m| m.expires_ms).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    notify_mail(conn, &to).await?;
    Ok(ids
        .into_iter()
        .zip(to)
        .map(|(id, to_peer)| Sent { id, to_peer })
        .collect())
}

/// Leases up to `max` of a peer's waiting mail in send order, inside the caller's
/// transaction. Rows another claim holds are skipped (`SKIP LOCKED`), so two claims — through
/// any brokers — never lease one message. An automatic claim first takes the advisory lock of
/// its Claude Code process, so the budget's count-then-spend of two claims cannot interleave.
pub(crate) async fn claim(conn: &mut PgConnection, c: &Claim) -> Result<ClaimOutcome, sqlx::Error> {
    if let Some(budget) = &c.automatic {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), $2::int4)")
            .bind(&budget.machine_id)
            .bind(budget.claude_pid as i32)
            .execute(&mut *conn)
            .await?;
        let waiting: bool = sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE to_peer = $1 AND ",
            claimable!(),
            ")"
        ))
        .bind(&c.peer_id)
        .bind(c.now)
        .fetch_one(&mut *conn)
        .await?;
        if !waiting {
            return Ok(ClaimOutcome {
                messages: vec![],
                budget_exhausted: false,
                budget_notice: false,
            });
        }
        let since = c.now - budget.window_ms;
        let spent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM budget_spend WHERE machine_id = $1 AND claude_pid = $2 \
             AND at_ms > $3",
        )
        .bind(&budget.machine_id)
        .bind(budget.claude_pid)
        .bind(since)
        .fetch_one(&mut *conn)
        .await?;
        if spent >= budget.limit as i64 {
            // One notice per window, not one per hook call.
            let noticed: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM notices WHERE kind = 'loop_budget' \
                 AND peer_id = $1 AND at_ms > $2)",
            )
            .bind(&c.peer_id)
            .bind(since)
            .fetch_one(&mut *conn)
            .await?;
            if !noticed {
                add_notice(
                    conn,
                    &NewNotice {
                        kind: "loop_budget".into(),
                        peer_id: Some(c.peer_id.clone()),
                        text: budget.notice.clone(),
                        author: peers_store::BROKER_AUTHOR.into(),
                        now: c.now,
                    },
                )
                .await?;
            }
            return Ok(ClaimOutcome {
                messages: vec![],
                budget_exhausted: true,
                budget_notice: !noticed,
            });
        }
        sqlx::query("INSERT INTO budget_spend (machine_id, claude_pid, at_ms) VALUES ($1,$2,$3)")
            .bind(&budget.machine_id)
            .bind(budget.claude_pid)
            .bind(c.now)
            .execute(&mut *conn)
            .await?;
    }
    let mut rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "UPDATE messages m SET state = 'leased', lease_id = $3, lease_expires_ms = $4 \
         FROM (SELECT id FROM messages WHERE to_peer = $1 AND ",
        claimable!(),
        " ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED) c \
         WHERE m.id = c.id RETURNING m.id, m.from_peer, m.from_kind, m.from_address, \
           m.from_cwd, m.to_peer, m.to_address, m.body, m.reply_to, m.state, m.sent_ms, \
           m.expires_ms, m.delivered_ms, m.delivered_via"
    ))
    .bind(&c.peer_id)
    .bind(c.now)
    .bind(&c.lease_id)
    .bind(c.lease_expires_ms)
    .bind(c.max as i64)
    .fetch_all(&mut *conn)
    .await?;
    rows.sort_by_key(|r| r.id);
    Ok(ClaimOutcome {
        messages: rows.into_iter().map(MessageRow::inbox).collect(),
        budget_exhausted: false,
        budget_notice: false,
    })
}

/// Marks a lease's mail delivered (all, or only `ids`) and returns the rest to the queue,
/// inside the caller's transaction.
pub(crate) async fn ack(conn: &mut PgConnection, a: &Ack) -> Result<Acked, sqlx::Error> {
    let delivered = sqlx::query(
        "UPDATE messages SET state = 'delivered', lease_id = NULL, lease_expires_ms = NULL, \
         delivered_ms = $1, delivered_via = $2 \
         WHERE lease_id = $3 AND to_peer = $4 AND state IN ('leased','queued') \
         AND ($5::bigint[] IS NULL OR id = ANY($5))",
    )
    .bind(a.now)
    .bind(&a.via)
    .bind(&a.lease_id)
    .bind(&a.peer_id)
    .bind(&a.ids)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let released = sqlx::query(
        "UPDATE messages SET state = 'queued', lease_id = NULL, lease_expires_ms = NULL \
         WHERE lease_id = $1 AND to_peer = $2 AND state = 'leased'",
    )
    .bind(&a.lease_id)
    .bind(&a.peer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if released > 0 {
        notify_mail(conn, std::slice::from_ref(&a.peer_id)).await?;
    }
    Ok(Acked {
        delivered,
        released,
    })
}

/// One sweep's writes, inside the caller's transaction.
pub(crate) async fn sweep(conn: &mut PgConnection, s: &Sweep) -> Result<Swept, sqlx::Error> {
    let marked_gone = peers::mark_gone(conn, &s.gone, s.now).await?;
    if !s.whole {
        if marked_gone > 0 {
            notify_peers(conn).await?;
        }
        return Ok(Swept {
            marked_gone,
            ..Swept::default()
        });
    }
    // A lapsed lease keeps its id, so a late ack of mail that was in fact shown still counts.
    let requeued: Vec<String> = sqlx::query_scalar(
        "UPDATE messages SET state = 'queued' WHERE state = 'leased' AND lease_expires_ms < $1 \
         RETURNING to_peer",
    )
    .bind(s.now)
    .fetch_all(&mut *conn)
    .await?;
    let expired = sqlx::query(
        "UPDATE messages SET state = 'expired', lease_id = NULL, lease_expires_ms = NULL \
         WHERE state IN ('queued','leased') AND expires_ms < $1",
    )
    .bind(s.now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM budget_spend WHERE at_ms < $1")
        .bind(s.now - s.budget_window_ms)
        .execute(&mut *conn)
        .await?;
    notify_mail(conn, &requeued).await?;
    if marked_gone > 0 {
        notify_peers(conn).await?;
    }
    Ok(Swept {
        marked_gone,
        requeued: requeued.len() as u64,
        expired,
    })
}

pub(crate) async fn exists(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

pub(crate) async fn claimable(pool: &PgPool, peer_id: &str, now: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(concat!(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE to_peer = $1 AND ",
        claimable!(),
        ")"
    ))
    .bind(peer_id)
    .bind(now)
    .fetch_one(pool)
    .await
}

pub(crate) async fn waiting(
    pool: &PgPool,
    peer_id: &str,
) -> Result<Vec<InboxMessage>, sqlx::Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE to_peer = $1 AND state IN ('queued','leased') ORDER BY id"
    ))
    .bind(peer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(MessageRow::inbox).collect())
}

pub(crate) async fn queued_count(
    pool: &PgPool,
    peer_id: &str,
) -> Result<(u64, Option<i64>), sqlx::Error> {
    let (n, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(sent_ms) FROM messages WHERE to_peer = $1 AND state = 'queued'",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok((n as u64, oldest))
}

pub(crate) async fn pending_count(pool: &PgPool, peer_id: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE to_peer = $1 AND state IN ('queued','leased')",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

pub(crate) async fn pending_counts(pool: &PgPool) -> Result<HashMap<String, u64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT to_peer, COUNT(*) FROM messages WHERE state IN ('queued','leased') \
         GROUP BY to_peer",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(p, n)| (p, n as u64)).collect())
}

pub(crate) async fn count_pending(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE state IN ('queued','leased')")
            .fetch_one(pool)
            .await?;
    Ok(n as u64)
}

pub(crate) async fn status(
    pool: &PgPool,
    id: i64,
    with_body: bool,
) -> Result<Option<(MessageStatus, Option<String>)>, sqlx::Error> {
    let row: Option<StatusRow> = sqlx::query_as(concat!(
        "SELECT ",
        status_columns!(),
        " FROM messages m WHERE m.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        let from = r.row.from_peer.clone();
        (r.status(with_body), from)
    }))
}

pub(crate) async fn delivered_to(
    pool: &PgPool,
    peer_ids: &[String],
    since_ms: i64,
    limit: u32,
) -> Result<Vec<InboxMessage>, sqlx::Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE to_peer = ANY($1) AND state = 'delivered' \
         AND sent_ms >= $2 ORDER BY id DESC LIMIT $3"
    ))
    .bind(peer_ids)
    .bind(since_ms)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(MessageRow::inbox).collect())
}

pub(crate) async fn log(pool: &PgPool, f: &LogFilter) -> Result<Vec<MessageStatus>, sqlx::Error> {
    let (human, from): (bool, Option<&[String]>) = match &f.from {
        None => (false, None),
        Some(LogSender::Human) => (true, None),
        Some(LogSender::Peers(ids)) => (false, Some(ids)),
    };
    let rows: Vec<StatusRow> = sqlx::query_as(concat!(
        "SELECT ",
        status_columns!(),
        " FROM messages m WHERE m.sent_ms >= $1 \
         AND (NOT $2 OR m.from_kind = 'human') \
         AND ($3::text[] IS NULL OR m.from_peer = ANY($3)) \
         AND ($4::text[] IS NULL OR m.to_peer = ANY($4)) \
         ORDER BY m.id DESC LIMIT $5"
    ))
    .bind(f.since_ms)
    .bind(human)
    .bind(from)
    .bind(f.to.as_deref())
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.status(f.with_body)).collect())
}

pub(crate) async fn add_notice(conn: &mut PgConnection, n: &NewNotice) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO notices (at_ms, kind, peer_id, text, author) VALUES ($1,$2,$3,$4,$5)")
        .bind(n.now)
        .bind(&n.kind)
        .bind(&n.peer_id)
        .bind(&n.text)
        .bind(&n.author)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn notices(pool: &PgPool, limit: u32) -> Result<Vec<Notice>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT id, at_ms, kind, peer_id, text, author FROM notices ORDER BY id DESC LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at_ms, kind, peer_id, text, author)| Notice {
            id,
            at_ms,
            kind,
            peer_id,
            text,
            author,
        })
        .collect())
}

/// `n` delivered messages from the human, round-robin over `peer_ids`, in one statement.
pub(crate) async fn preload_delivered(
    pool: &PgPool,
    peer_ids: &[String],
    n: u64,
) -> Result<(), sqlx::Error> {
    if peer_ids.is_empty() || n == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO messages (from_peer, from_kind, from_address, to_peer, to_address, body, \
           state, sent_ms, expires_ms, delivered_ms, delivered_via) \
         SELECT NULL, 'human', 'you@bench', ($1::text[])[1 + x % cardinality($1::text[])], \
           'p@bench', 'old message ' || x, 'delivered', x, x + 1000, x + 1, 'PostToolUse' \
         FROM generate_series(1::bigint, $2) AS x",
    )
    .bind(peer_ids)
    .bind(n as i64)
    .execute(pool)
    .await?;
    Ok(())
}
