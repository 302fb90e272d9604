//! Messages and their readers' copies (`deliveries`): the batched send, claim (lease, loop
//! budget), ack, the sweep, status with every reader, inbox, history, a topic's posts;
//! notices; bulk history for benchmarks.

use std::collections::{HashMap, HashSet};

use peers_core::wire::{
    InboxMessage, MessageState, MessageStatus, Notice, ReaderStatus, SenderKind,
};
use peers_store::{
    Ack, Acked, Claim, ClaimOutcome, LogFilter, LogSender, Narrowing, NewMessage, NewNotice, Sent,
    Sweep, Swept, TopicPostsFilter,
};
use sqlx::{PgConnection, PgPool};

use crate::events::{notify_mail, notify_peers};
use crate::peers;

/// A message with one reader's copy of it: what the reader's inbox shows.
#[derive(Debug, Clone, sqlx::FromRow)]
struct InboxRow {
    id: i64,
    from_peer: Option<String>,
    from_kind: String,
    from_address: String,
    from_cwd: Option<String>,
    channel: Option<String>,
    body: String,
    reply_to: Option<i64>,
    sent_ms: i64,
    state: String,
    delivered_ms: Option<i64>,
    delivered_via: Option<String>,
}

/// A message as its sender sees it, before its readers are added.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: i64,
    from_peer: Option<String>,
    from_kind: String,
    from_address: String,
    to_address: String,
    channel: Option<String>,
    body: String,
    reply_to: Option<i64>,
    sent_ms: i64,
    expires_ms: i64,
    replies: Vec<i64>,
    tags: Option<String>,
    project: Option<String>,
}

/// One reader's copy, for a sender-side status.
#[derive(Debug, Clone, sqlx::FromRow)]
struct CopyRow {
    message_id: i64,
    to_peer: String,
    to_address: String,
    wake: bool,
    state: String,
    delivered_ms: Option<i64>,
    delivered_via: Option<String>,
    alive: bool,
}

/// The columns of [`InboxRow`] over `messages m` and `deliveries d`, as a macro so queries
/// stay literal strings.
macro_rules! inbox_columns {
    () => {
        "m.id, m.from_peer, m.from_kind, m.from_address, m.from_cwd, m.channel, m.body, \
         m.reply_to, m.sent_ms, d.state, d.delivered_ms, d.delivered_via"
    };
}

/// The columns of [`MessageRow`] over `messages m`, each message's replies included.
macro_rules! message_columns {
    () => {
        "m.id, m.from_peer, m.from_kind, m.from_address, m.to_address, m.channel, m.body, \
         m.reply_to, m.sent_ms, m.expires_ms, \
         ARRAY(SELECT r.id FROM messages r WHERE r.reply_to = m.id ORDER BY r.id) AS replies, \
         m.tags, m.project"
    };
}
pub(crate) use message_columns;

/// Copies a claim may lease: queued, or leased with the lease lapsed (`$2`: now).
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
    match s {
        "human" => SenderKind::Human,
        "script" => SenderKind::Script,
        _ => SenderKind::Peer,
    }
}

/// What a sender sees of a state: a lease is internal, leased mail is still queued.
fn to_sender(s: MessageState) -> MessageState {
    match s {
        MessageState::Leased => MessageState::Queued,
        s => s,
    }
}

impl InboxRow {
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
            channel: self.channel,
        }
    }
}

impl CopyRow {
    fn reader(&self) -> ReaderStatus {
        ReaderStatus {
            peer_id: self.to_peer.clone(),
            to: self.to_address.clone(),
            status: state(&self.state),
            delivered_at_ms: self.delivered_ms,
            delivered_via: self.delivered_via.clone(),
            alive: self.alive,
            wake: self.wake,
            can_wake: false,
        }
    }
}

impl MessageRow {
    /// The sender-side status with its readers' copies. Direct mail takes its top-level
    /// fields from its one copy; a post is `delivered` once every copy is, `expired` once
    /// none is waiting any more, else `queued`.
    fn status(self, copies: &[CopyRow], with_body: bool) -> MessageStatus {
        let readers: Vec<ReaderStatus> = copies.iter().map(CopyRow::reader).collect();
        let direct = self.channel.is_none();
        let (to_peer_id, to, status, delivered_at_ms, delivered_via) = match (direct, copies) {
            (true, [one, ..]) => (
                one.to_peer.clone(),
                one.to_address.clone(),
                to_sender(state(&one.state)),
                one.delivered_ms,
                one.delivered_via.clone(),
            ),
            _ => {
                let all = |s: MessageState| readers.iter().all(|r| r.status == s);
                let waiting = readers
                    .iter()
                    .any(|r| matches!(r.status, MessageState::Queued | MessageState::Leased));
                let status = if !readers.is_empty() && all(MessageState::Delivered) {
                    MessageState::Delivered
                } else if !readers.is_empty() && !waiting {
                    MessageState::Expired
                } else {
                    MessageState::Queued
                };
                let at = (status == MessageState::Delivered)
                    .then(|| readers.iter().filter_map(|r| r.delivered_at_ms).max())
                    .flatten();
                (String::new(), self.to_address.clone(), status, at, None)
            }
        };
        MessageStatus {
            tags: self
                .tags
                .as_deref()
                .map(|t| t.split(' ').map(str::to_string).collect())
                .unwrap_or_default(),
            project: self.project,
            message_id: self.id,
            from: self.from_address,
            from_kind: kind(&self.from_kind),
            to,
            to_peer_id,
            status,
            sent_at_ms: self.sent_ms,
            delivered_at_ms,
            delivered_via,
            expires_at_ms: self.expires_ms,
            reply_to: self.reply_to,
            replies: self.replies,
            recipient_alive: readers.iter().any(|r| r.alive),
            recipient_can_wake: false,
            bytes: self.body.len() as u64,
            body: with_body.then_some(self.body),
            channel: self.channel,
            readers,
        }
    }
}

/// Sender-side statuses of `rows`, in their order, each with every reader's copy.
pub(crate) async fn with_readers(
    pool: &PgPool,
    rows: Vec<MessageRow>,
    with_body: bool,
) -> Result<Vec<MessageStatus>, sqlx::Error> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let copies: Vec<CopyRow> = sqlx::query_as(
        "SELECT d.message_id, d.to_peer, d.to_address, d.wake, d.state, d.delivered_ms, \
           d.delivered_via, COALESCE(p.gone_ms IS NULL, false) AS alive \
         FROM deliveries d LEFT JOIN peers p ON p.id = d.to_peer \
         WHERE d.message_id = ANY($1) ORDER BY d.message_id, d.pos",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_message: HashMap<i64, Vec<CopyRow>> = HashMap::new();
    for c in copies {
        by_message.entry(c.message_id).or_default().push(c);
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let copies = by_message.remove(&r.id).unwrap_or_default();
            r.status(&copies, with_body)
        })
        .collect())
}

/// Stores a batch of sends inside the caller's transaction: one `INSERT` of the messages,
/// one of every reader's copy, the topics posted to that are new; then announces the mail.
/// Returns, in input order, each message's id and the registration each copy was queued for
/// (a reader replaced since it was resolved is followed to its replacement; two readers that
/// end at one registration share its one copy).
///
/// Ids are taken from the sequence first and given out in batch order, so a batch's messages
/// are claimed in the order they were sent, whatever order the server returns rows in.
pub(crate) async fn insert_batch(
    conn: &mut PgConnection,
    msgs: &[NewMessage],
) -> Result<Vec<Sent>, sqlx::Error> {
    let wanted: Vec<String> = msgs
        .iter()
        .flat_map(|m| m.readers.iter().map(|r| r.peer_id.clone()))
        .collect();
    let current = peers::current_registrations(conn, &wanted).await?;
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $1)",
    )
    .bind(msgs.len() as i64)
    .fetch_all(&mut *conn)
    .await?;
    ids.sort_unstable();
    let col = |f: fn(&NewMessage) -> Option<String>| msgs.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO messages (id, from_peer, from_kind, from_address, from_cwd, to_address, \
           channel, body, reply_to, sent_ms, expires_ms, tags, project) \
         SELECT id, fp, fk, fa, fc, ta, ch, b, rt, s, e, tg, pj \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], \
                     $11::bigint[], $12::text[], $13::text[]) \
              AS t(id, fp, fk, fa, fc, ta, ch, b, rt, s, e, tg, pj)",
    )
    .bind(&ids)
    .bind(col(|m| m.from.peer_id.clone()))
    .bind(
        msgs.iter()
            .map(|m| match m.from.kind {
                SenderKind::Human => "human",
                SenderKind::Peer => "peer",
                SenderKind::Script => "script",
            })
            .collect::<Vec<_>>(),
    )
    .bind(
        msgs.iter()
            .map(|m| m.from.address.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(col(|m| m.from.cwd.clone()))
    .bind(
        msgs.iter()
            .map(|m| m.to_address.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(col(|m| m.channel.clone()))
    .bind(msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
    .bind(msgs.iter().map(|m| m.reply_to).collect::<Vec<_>>())
    .bind(msgs.iter().map(|m| m.sent_ms).collect::<Vec<_>>())
    .bind(msgs.iter().map(|m| m.expires_ms).collect::<Vec<_>>())
    .bind(col(|m| (!m.tags.is_empty()).then(|| m.tags.join(" "))))
    .bind(col(|m| m.project.clone()))
    .execute(&mut *conn)
    .await?;
    create_topics(conn, msgs).await?;
    let (tag_ids, tags): (Vec<i64>, Vec<&str>) = msgs
        .iter()
        .zip(&ids)
        .flat_map(|(m, &id)| m.tags.iter().map(move |t| (id, t.as_str())))
        .unzip();
    if !tags.is_empty() {
        sqlx::query(
            "INSERT INTO message_tags (message_id, tag) \
             SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(&tag_ids)
        .bind(&tags)
        .execute(&mut *conn)
        .await?;
    }

    let mut copies = Copies::default();
    let mut sent = Vec::with_capacity(msgs.len());
    for (m, &id) in msgs.iter().zip(&ids) {
        let mut readers: Vec<String> = Vec::with_capacity(m.readers.len());
        // One copy per registration, chosen here: `ON CONFLICT` would cost a speculative
        // insertion per row.
        let mut stored = HashSet::with_capacity(m.readers.len());
        for (pos, r) in m.readers.iter().enumerate() {
            let to = current.get(&r.peer_id).unwrap_or(&r.peer_id).clone();
            readers.push(to.clone());
            if !stored.insert(to.clone()) {
                continue;
            }
            copies.message_id.push(id);
            copies.to_peer.push(to.clone());
            copies.pos.push(pos as i32);
            copies.to_address.push(r.address.as_str());
            copies.wake.push(r.wake);
            copies.expires_ms.push(m.expires_ms);
        }
        sent.push(Sent { id, readers });
    }
    sqlx::query(
        "INSERT INTO deliveries (message_id, to_peer, pos, to_address, wake, state, expires_ms) \
         SELECT mid, tp, pos, ta, w, 'queued', e \
         FROM unnest($1::bigint[], $2::text[], $3::int4[], $4::text[], $5::bool[], \
                     $6::bigint[]) AS t(mid, tp, pos, ta, w, e)",
    )
    .bind(&copies.message_id)
    .bind(&copies.to_peer)
    .bind(&copies.pos)
    .bind(&copies.to_address)
    .bind(&copies.wake)
    .bind(&copies.expires_ms)
    .execute(&mut *conn)
    .await?;
    notify_mail(conn, &copies.to_peer).await?;
    Ok(sent)
}

/// A batch's delivery rows, column by column (for `unnest`).
#[derive(Default)]
struct Copies<'a> {
    message_id: Vec<i64>,
    to_peer: Vec<String>,
    pos: Vec<i32>,
    to_address: Vec<&'a str>,
    wake: Vec<bool>,
    expires_ms: Vec<i64>,
}

/// Creates the topics a batch posts to that do not exist yet, in name order (so two
/// batches creating the same topics never wait on each other in a circle).
async fn create_topics(conn: &mut PgConnection, msgs: &[NewMessage]) -> Result<(), sqlx::Error> {
    let mut first: Vec<(&str, i64)> = Vec::new();
    for m in msgs {
        if let Some(t) = m.topic() {
            match first.iter_mut().find(|(name, _)| *name == t) {
                Some((_, at)) => *at = (*at).min(m.sent_ms),
                None => first.push((t, m.sent_ms)),
            }
        }
    }
    if first.is_empty() {
        return Ok(());
    }
    first.sort_unstable();
    let (names, at): (Vec<&str>, Vec<i64>) = first.into_iter().unzip();
    sqlx::query(
        "INSERT INTO topics (name, created_ms) \
         SELECT n, c FROM unnest($1::text[], $2::bigint[]) AS t(n, c) ORDER BY n \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(names)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
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
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE to_peer = $1 AND ",
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
    let rows: Vec<InboxRow> = sqlx::query_as(concat!(
        "WITH d AS (UPDATE deliveries d SET state = 'leased', lease_id = $3, \
           lease_expires_ms = $4 \
         FROM (SELECT message_id FROM deliveries WHERE to_peer = $1 AND ",
        claimable!(),
        " ORDER BY message_id LIMIT $5 FOR UPDATE SKIP LOCKED) c \
         WHERE d.to_peer = $1 AND d.message_id = c.message_id \
         RETURNING d.message_id, d.state, d.delivered_ms, d.delivered_via) \
         SELECT ",
        inbox_columns!(),
        " FROM d JOIN messages m ON m.id = d.message_id ORDER BY m.id"
    ))
    .bind(&c.peer_id)
    .bind(c.now)
    .bind(&c.lease_id)
    .bind(c.lease_expires_ms)
    .bind(c.max as i64)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ClaimOutcome {
        messages: rows.into_iter().map(InboxRow::inbox).collect(),
        budget_exhausted: false,
        budget_notice: false,
    })
}

/// Marks a lease's mail delivered (all, or only `ids`) and returns the rest to the queue,
/// inside the caller's transaction.
pub(crate) async fn ack(conn: &mut PgConnection, a: &Ack) -> Result<Acked, sqlx::Error> {
    let delivered = sqlx::query(
        "UPDATE deliveries SET state = 'delivered', lease_id = NULL, lease_expires_ms = NULL, \
         delivered_ms = $1, delivered_via = $2 \
         WHERE lease_id = $3 AND to_peer = $4 AND state IN ('leased','queued') \
         AND ($5::bigint[] IS NULL OR message_id = ANY($5))",
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
        "UPDATE deliveries SET state = 'queued', lease_id = NULL, lease_expires_ms = NULL \
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
        "UPDATE deliveries SET state = 'queued' \
         WHERE state = 'leased' AND lease_expires_ms < $1 RETURNING to_peer",
    )
    .bind(s.now)
    .fetch_all(&mut *conn)
    .await?;
    let expired = sqlx::query(
        "UPDATE deliveries SET state = 'expired', lease_id = NULL, lease_expires_ms = NULL \
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
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE to_peer = $1 AND ",
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
    let rows: Vec<InboxRow> = sqlx::query_as(concat!(
        "SELECT ",
        inbox_columns!(),
        " FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.to_peer = $1 AND d.state IN ('queued','leased') ORDER BY d.message_id"
    ))
    .bind(peer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(InboxRow::inbox).collect())
}

pub(crate) async fn queued_count(
    pool: &PgPool,
    peer_id: &str,
) -> Result<(u64, Option<i64>), sqlx::Error> {
    let (n, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(m.sent_ms) FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.to_peer = $1 AND d.state = 'queued'",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok((n as u64, oldest))
}

pub(crate) async fn queued_to_wake(pool: &PgPool, peer_id: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE to_peer = $1 AND state = 'queued' AND wake",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

pub(crate) async fn pending_count(pool: &PgPool, peer_id: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE to_peer = $1 AND state IN ('queued','leased')",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

pub(crate) async fn pending_counts(pool: &PgPool) -> Result<HashMap<String, u64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT to_peer, COUNT(*) FROM deliveries WHERE state IN ('queued','leased') \
         GROUP BY to_peer",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(p, n)| (p, n as u64)).collect())
}

pub(crate) async fn count_pending(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state IN ('queued','leased')")
            .fetch_one(pool)
            .await?;
    Ok(n as u64)
}

pub(crate) async fn status(
    pool: &PgPool,
    id: i64,
    with_body: bool,
) -> Result<Option<(MessageStatus, Option<String>)>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let from = row.from_peer.clone();
    let status = with_readers(pool, vec![row], with_body).await?.pop();
    Ok(status.map(|s| (s, from)))
}

/// The thread of message `id`: the root of its `reply_to` chain and every reply below it,
/// in send order, with bodies and readers, each with its sender's peer id (one recursive
/// query up to the root and down again). A reply always names an older message, so the
/// chain has no cycles.
pub(crate) async fn thread(
    pool: &PgPool,
    id: i64,
) -> Result<Vec<(MessageStatus, Option<String>)>, sqlx::Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "WITH RECURSIVE up(id, reply_to, depth) AS ( \
           SELECT id, reply_to, 0 FROM messages WHERE id = $1 \
           UNION ALL \
           SELECT m.id, m.reply_to, up.depth + 1 FROM messages m JOIN up ON m.id = up.reply_to), \
         root(id) AS (SELECT id FROM up ORDER BY depth DESC LIMIT 1), \
         down(id) AS ( \
           SELECT id FROM root \
           UNION \
           SELECT m.id FROM messages m JOIN down ON m.reply_to = down.id) \
         SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.id IN (SELECT id FROM down) ORDER BY m.id"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let senders: Vec<Option<String>> = rows.iter().map(|r| r.from_peer.clone()).collect();
    let statuses = with_readers(pool, rows, true).await?;
    Ok(statuses.into_iter().zip(senders).collect())
}

pub(crate) async fn delivered_to(
    pool: &PgPool,
    peer_ids: &[String],
    since_ms: i64,
    limit: u32,
) -> Result<Vec<InboxMessage>, sqlx::Error> {
    let rows: Vec<InboxRow> = sqlx::query_as(concat!(
        "SELECT ",
        inbox_columns!(),
        " FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.to_peer = ANY($1) AND d.state = 'delivered' \
         AND m.sent_ms >= $2 ORDER BY d.message_id DESC LIMIT $3"
    ))
    .bind(peer_ids)
    .bind(since_ms)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(InboxRow::inbox).collect())
}

pub(crate) async fn log(pool: &PgPool, f: &LogFilter) -> Result<Vec<MessageStatus>, sqlx::Error> {
    // Built from constants only.
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM messages m WHERE {NARROWING} ORDER BY m.id DESC LIMIT $10",
        message_columns!()
    ));
    let rows: Vec<MessageRow> = bind_narrowing(sqlx::query_as(sql), f.narrowing())
        .bind(f.limit as i64)
        .fetch_all(pool)
        .await?;
    with_readers(pool, rows, f.with_body).await
}

/// The history filters the log and the search share, as conditions on `messages m` over
/// `$1`–`$9`, which [`bind_narrowing`] binds (a query's own parameters start at `$10`).
pub(crate) const NARROWING: &str = "m.sent_ms >= $1 \
     AND (NOT $2 OR m.from_kind = 'human') \
     AND ($3::text[] IS NULL OR m.from_peer = ANY($3)) \
     AND ($4::text[] IS NULL OR EXISTS (SELECT 1 FROM deliveries d \
          WHERE d.message_id = m.id AND d.to_peer = ANY($4))) \
     AND ($5::text IS NULL OR m.channel = '#' || $5) \
     AND ($6::text IS NULL OR m.id IN (SELECT message_id FROM message_tags WHERE tag = $6)) \
     AND ($7::text IS NULL OR m.project = $7) \
     AND ($8::bigint IS NULL OR m.sent_ms < $8) \
     AND CASE $9::text \
       WHEN 'queued' THEN EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
         AND d.state IN ('queued','leased')) \
       WHEN 'delivered' THEN EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id) \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
         AND d.state <> 'delivered') \
       WHEN 'expired' THEN EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
         AND d.state = 'expired') \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
         AND d.state IN ('queued','leased')) \
       ELSE true END";

/// Binds `$1`–`$9` of [`NARROWING`].
pub(crate) fn bind_narrowing<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    n: Narrowing<'q>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let (human, from): (bool, Option<&[String]>) = match n.from {
        None => (false, None),
        Some(LogSender::Human) => (true, None),
        Some(LogSender::Peers(ids)) => (false, Some(ids)),
    };
    q.bind(n.since_ms)
        .bind(human)
        .bind(from)
        .bind(n.to)
        .bind(n.topic)
        .bind(n.tag)
        .bind(n.project)
        .bind(n.until_ms)
        .bind(n.status.map(|s| match s {
            MessageState::Leased => "queued",
            s => s.as_str(),
        }))
}

/// A topic's posts with bodies and readers: the newest `limit` after `since_id`, oldest
/// first.
pub(crate) async fn topic_posts(
    pool: &PgPool,
    f: &TopicPostsFilter,
) -> Result<Vec<MessageStatus>, sqlx::Error> {
    let mut rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.channel = '#' || $1 \
         AND ($2::bigint IS NULL OR m.id > $2) ORDER BY m.id DESC LIMIT $3"
    ))
    .bind(&f.topic)
    .bind(f.since_id)
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    with_readers(pool, rows, true).await
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
        "WITH m AS (INSERT INTO messages (from_peer, from_kind, from_address, to_address, body, \
           sent_ms, expires_ms) \
         SELECT NULL, 'human', 'you@bench', 'p@bench', 'old message ' || x, x, x + 1000 \
         FROM generate_series(1::bigint, $2) AS x RETURNING id, sent_ms, expires_ms) \
         INSERT INTO deliveries (message_id, to_peer, pos, to_address, wake, state, expires_ms, \
           delivered_ms, delivered_via) \
         SELECT id, ($1::text[])[1 + sent_ms % cardinality($1::text[])], 0, 'p@bench', true, \
           'delivered', expires_ms, sent_ms + 1, 'PostToolUse' FROM m",
    )
    .bind(peer_ids)
    .bind(n as i64)
    .execute(pool)
    .await?;
    Ok(())
}
