//! Message rows and their readers' copies (`deliveries`): send, claim (lease), ack, status,
//! inbox, history, expiry, the loop budget. A message is one `messages` row; every
//! per-reader state — queued, leased, delivered, expired, with its lease and how it was
//! delivered — is its reader's `deliveries` row.

use std::collections::HashMap;

use peers_core::wire::{InboxMessage, MessageState, MessageStatus, ReaderStatus, SenderKind};
use peers_store::{ClaimOutcome, LogSender, LoopBudget, Narrowing, NewMessage};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::Error;

/// A `messages` row.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct MessageRow {
    id: i64,
    from_peer: Option<String>,
    from_kind: String,
    from_address: String,
    to_address: String,
    body: String,
    reply_to: Option<i64>,
    sent_ms: i64,
    expires_ms: i64,
    channel: Option<String>,
    tags: Option<String>,
    project: Option<String>,
}

/// The columns of [`MessageRow`] (of `messages m`), as a macro so queries stay literal strings.
macro_rules! message_columns {
    () => {
        "m.id, m.from_peer, m.from_kind, m.from_address, m.to_address, m.body, m.reply_to, \
         m.sent_ms, m.expires_ms, m.channel, m.tags, m.project"
    };
}
pub(crate) use message_columns;

/// A reader's copy with its message: what the reader receives.
#[derive(Debug, Clone, FromRow)]
struct CopyRow {
    id: i64,
    from_peer: Option<String>,
    from_kind: String,
    from_address: String,
    from_cwd: Option<String>,
    body: String,
    reply_to: Option<i64>,
    sent_ms: i64,
    channel: Option<String>,
    state: String,
    delivered_ms: Option<i64>,
    delivered_via: Option<String>,
}

/// The columns of [`CopyRow`] (of `deliveries d JOIN messages m`).
macro_rules! copy_columns {
    () => {
        "m.id, m.from_peer, m.from_kind, m.from_address, m.from_cwd, m.body, m.reply_to, \
         m.sent_ms, m.channel, d.state, d.delivered_ms, d.delivered_via"
    };
}

/// A reader's copy as its sender sees it.
#[derive(Debug, Clone, FromRow)]
struct ReaderRow {
    message_id: i64,
    to_peer: String,
    to_address: String,
    wake: bool,
    state: String,
    delivered_ms: Option<i64>,
    delivered_via: Option<String>,
    alive: bool,
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

impl CopyRow {
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
    /// A row of [`copy_columns!`] read on the writer's direct connection.
    fn direct(r: &rusqlite::Row<'_>) -> rusqlite::Result<CopyRow> {
        Ok(CopyRow {
            id: r.get(0)?,
            from_peer: r.get(1)?,
            from_kind: r.get(2)?,
            from_address: r.get(3)?,
            from_cwd: r.get(4)?,
            body: r.get(5)?,
            reply_to: r.get(6)?,
            sent_ms: r.get(7)?,
            channel: r.get(8)?,
            state: r.get(9)?,
            delivered_ms: r.get(10)?,
            delivered_via: r.get(11)?,
        })
    }
}

impl ReaderRow {
    fn status(self) -> ReaderStatus {
        ReaderStatus {
            peer_id: self.to_peer,
            to: self.to_address,
            status: state(&self.state),
            delivered_at_ms: self.delivered_ms,
            delivered_via: self.delivered_via,
            alive: self.alive,
            wake: self.wake,
            can_wake: false,
        }
    }
}

impl MessageRow {
    /// The sender-side status of a message from its readers' copies (in the order stored).
    ///
    /// Direct mail reports its one copy, as before there were posts: its reader, its state
    /// (a lease is internal: leased mail is still `queued` to the sender), its delivery.
    /// A post (or anything without exactly one copy) is `delivered` once every copy is,
    /// `expired` once no copy waits any more (and not every one was delivered), else
    /// `queued`; its delivery time is the last copy's, and it has no one recipient.
    fn status(self, readers: Vec<ReaderStatus>, replies: Vec<i64>) -> MessageStatus {
        let bytes = self.body.len() as u64;
        let mut st = MessageStatus {
            tags: self
                .tags
                .as_deref()
                .map(|t| t.split(' ').map(str::to_string).collect())
                .unwrap_or_default(),
            project: self.project,
            message_id: self.id,
            from: self.from_address,
            from_kind: kind(&self.from_kind),
            to: self.to_address,
            to_peer_id: String::new(),
            status: MessageState::Queued,
            sent_at_ms: self.sent_ms,
            delivered_at_ms: None,
            delivered_via: None,
            expires_at_ms: self.expires_ms,
            reply_to: self.reply_to,
            replies,
            recipient_alive: readers.iter().any(|r| r.alive),
            recipient_can_wake: false,
            bytes,
            body: None,
            channel: self.channel,
            readers,
        };
        match (st.channel.is_none(), st.readers.as_slice()) {
            (true, [one]) => {
                st.to = one.to.clone();
                st.to_peer_id = one.peer_id.clone();
                st.status = match one.status {
                    MessageState::Leased => MessageState::Queued,
                    s => s,
                };
                st.delivered_at_ms = one.delivered_at_ms;
                st.delivered_via = one.delivered_via.clone();
            }
            (_, copies) => {
                let waiting = copies
                    .iter()
                    .any(|r| matches!(r.status, MessageState::Queued | MessageState::Leased));
                let all = !copies.is_empty()
                    && copies.iter().all(|r| r.status == MessageState::Delivered);
                st.status = if all {
                    MessageState::Delivered
                } else if waiting {
                    MessageState::Queued
                } else {
                    MessageState::Expired
                };
                if all {
                    st.delivered_at_ms = copies.iter().filter_map(|r| r.delivered_at_ms).max();
                }
            }
        }
        st
    }
}

/// Stores one message inside a direct job of the writer. Returns its id and the
/// registration of each copy. See [`insert_direct`].
#[cfg(test)]
pub fn insert(conn: &rusqlite::Connection, m: NewMessage) -> Result<(i64, Vec<String>), Error> {
    let msgs = std::slice::from_ref(&m);
    let mut out = copies_stored(msgs, insert_direct(conn, msgs)?)?;
    Ok(out.remove(0))
}

/// The most rows one `INSERT` of [`send_statements`] stores into `messages`.
pub const MAX_ROWS: usize = 500;

/// The most rows one `INSERT` of [`send_statements`] stores into `deliveries` (6 values
/// each, well under SQLite's 32766 bound parameters).
const MAX_COPIES: usize = 2000;

/// A value bound to one `?` of a [`Statement`].
#[derive(Debug, Clone, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Owned(String),
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(s: Option<&'a str>) -> Param<'a> {
        s.map_or(Param::Null, Param::Text)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(i: Option<i64>) -> Self {
        i.map_or(Param::Null, Param::Int)
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(*i),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Owned(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// One SQL statement (no `;`) and the values of its `?`s, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement<'a> {
    pub sql: String,
    pub params: Vec<Param<'a>>,
}

impl<'a> Statement<'a> {
    fn new(sql: &str) -> Statement<'a> {
        Statement {
            sql: sql.to_string(),
            params: vec![],
        }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends `(?, ?, …)` for `row`'s values, after a comma unless it is the first row.
    fn row(&mut self, first: bool, row: impl IntoIterator<Item = Param<'a>>) {
        self.sql.push_str(if first { "(" } else { ", (" });
        for (i, p) in row.into_iter().enumerate() {
            self.sql.push_str(if i == 0 { "?" } else { ", ?" });
            self.params.push(p);
        }
        self.sql.push(')');
    }
}

/// The statements that store messages and their readers' copies: per [`MAX_ROWS`]
/// messages, their multi-row `INSERT` and the `INSERT`s of their copies ([`MAX_COPIES`]
/// each) and tags, then one for the topics they create, and last a `SELECT` of what was
/// stored: one row per message, its id and, as JSON in the order they were stored, its
/// copies' registrations. [`insert_direct`] runs them. A lone send is four statements, a
/// 500-reader post not many more, and either is part of one commit.
///
/// A copy's `message_id` is `MAX(id) - k` right after its messages' `INSERT`: only the
/// writer writes, and rowids are handed out in `VALUES` order, each one past the largest.
/// Readers were resolved before this ran; one that has been replaced since (its session
/// re-registered in between) is followed along `replaced_by` to its replacement inside the
/// `INSERT`, so a send racing a re-registration cannot strand mail on a dead id.
pub fn send_statements(msgs: &[NewMessage]) -> Vec<Statement<'_>> {
    let mut out = vec![];
    for chunk in msgs.chunks(MAX_ROWS) {
        let mut q = Statement::new(
            "INSERT INTO messages (from_peer, from_kind, from_address, from_cwd, \
             to_address, body, reply_to, sent_ms, expires_ms, channel, tags, project) VALUES ",
        );
        for (i, m) in chunk.iter().enumerate() {
            q.row(
                i == 0,
                [
                    m.from.peer_id.as_deref().into(),
                    Param::Text(match m.from.kind {
                        SenderKind::Human => "human",
                        SenderKind::Peer => "peer",
                        SenderKind::Script => "script",
                    }),
                    Param::Text(&m.from.address),
                    m.from.cwd.as_deref().into(),
                    Param::Text(&m.to_address),
                    Param::Text(&m.body),
                    m.reply_to.into(),
                    Param::Int(m.sent_ms),
                    Param::Int(m.expires_ms),
                    m.channel.as_deref().into(),
                    match m.tags.is_empty() {
                        true => Param::Null,
                        false => Param::Owned(m.tags.join(" ")),
                    },
                    m.project.as_deref().into(),
                ],
            );
        }
        out.push(q);
        // Each copy with how far its message is from the chunk's last one.
        let copies: Vec<(i64, &NewMessage, &peers_store::Reader)> = chunk
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                let back = (chunk.len() - 1 - i) as i64;
                m.readers.iter().map(move |r| (back, m, r))
            })
            .collect();
        for part in copies.chunks(MAX_COPIES) {
            // The copies as constant rows `v` (`seq` keeps their order), each reader followed
            // along `replaced_by` when it was replaced since the sender resolved it (`chain`,
            // normally empty). The statement's program is the same size for 1 copy or 2,000:
            // a subquery per row instead (as this once was) cost SQLite ~50 µs per copy.
            let mut q = Statement::new(
                "WITH RECURSIVE v(seq, back, peer, address, wake, expires) AS (VALUES ",
            );
            for (seq, (back, m, r)) in part.iter().enumerate() {
                q.row(
                    seq == 0,
                    [
                        Param::Int(seq as i64),
                        Param::Int(*back),
                        Param::Text(&r.peer_id),
                        Param::Text(&r.address),
                        Param::Int(r.wake.into()),
                        Param::Int(m.expires_ms),
                    ],
                );
            }
            q.push(
                "), chain(seq, id, hops) AS (SELECT v.seq, p.replaced_by, 1 FROM v \
                 JOIN peers p ON p.id = v.peer WHERE p.replaced_by IS NOT NULL \
                 UNION ALL SELECT chain.seq, p.replaced_by, chain.hops + 1 FROM chain \
                 JOIN peers p ON p.id = chain.id \
                 WHERE p.replaced_by IS NOT NULL AND chain.hops < 64), \
                 last(id) AS (SELECT MAX(id) FROM messages) \
                 INSERT INTO deliveries (message_id, to_peer, to_address, wake, expires_ms, \
                 state) SELECT last.id - v.back, COALESCE((SELECT c.id FROM chain c \
                 WHERE c.seq = v.seq ORDER BY c.hops DESC LIMIT 1), v.peer), v.address, \
                 v.wake, v.expires, 'queued' FROM v, last ORDER BY v.seq",
            );
            out.push(q);
        }
        // Each tag with how far its message is from the chunk's last one, as the copies.
        let tags: Vec<(i64, &str)> = chunk
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                let back = (chunk.len() - 1 - i) as i64;
                m.tags.iter().map(move |t| (back, t.as_str()))
            })
            .collect();
        for part in tags.chunks(MAX_COPIES) {
            let mut q = Statement::new("WITH v(tag, back) AS (VALUES ");
            for (i, (back, t)) in part.iter().enumerate() {
                q.row(i == 0, [Param::Text(t), Param::Int(*back)]);
            }
            q.push(
                ") INSERT OR IGNORE INTO message_tags (tag, message_id) \
                 SELECT v.tag, (SELECT MAX(id) FROM messages) - v.back FROM v",
            );
            out.push(q);
        }
    }
    let mut topics: Vec<(&str, i64)> = msgs
        .iter()
        .filter_map(|m| m.topic().map(|t| (t, m.sent_ms)))
        .collect();
    topics.sort_unstable();
    topics.dedup_by_key(|(t, _)| *t);
    for chunk in topics.chunks(MAX_ROWS) {
        let mut q = Statement::new("INSERT OR IGNORE INTO topics (name, created_ms) VALUES ");
        for (i, (t, at)) in chunk.iter().enumerate() {
            q.row(i == 0, [Param::Text(t), Param::Int(*at)]);
        }
        out.push(q);
    }
    let mut q = Statement::new(
        "SELECT m.id AS message_id, (SELECT json_group_array(d.to_peer ORDER BY d.id) \
         FROM deliveries d WHERE d.message_id = m.id) AS readers FROM messages m \
         WHERE m.id > (SELECT MAX(id) FROM messages) - ? ORDER BY m.id",
    );
    q.params.push(Param::Int(msgs.len() as i64));
    out.push(q);
    out
}

/// Stores messages and their readers' copies ([`send_statements`]) in a savepoint of the
/// group's transaction on the writer's direct connection, so that their failure undoes only
/// them. The statements run on the writer's own thread one after the other: through sqlx
/// each result was a hand-off from sqlx's thread that woke the caller, and a lone send paid
/// more for those wake-ups than for its fsync. Returns the `SELECT`'s rows, for
/// [`copies_stored`]; on failure nothing of it is left.
pub fn insert_direct(
    conn: &rusqlite::Connection,
    msgs: &[NewMessage],
) -> Result<Vec<(i64, String)>, rusqlite::Error> {
    conn.execute_batch("SAVEPOINT sends")?;
    let r = (|| {
        let statements = send_statements(msgs);
        let (select, inserts) = statements.split_last().expect("a SELECT last");
        for s in inserts {
            conn.prepare_cached(&s.sql)?
                .execute(rusqlite::params_from_iter(&s.params))?;
        }
        conn.prepare_cached(&select.sql)?
            .query_map(rusqlite::params_from_iter(&select.params), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<Vec<(i64, String)>, _>>()
    })();
    let end = if r.is_ok() {
        "RELEASE sends"
    } else {
        "ROLLBACK TO sends; RELEASE sends"
    };
    conn.execute_batch(end)?;
    r
}

/// Checks what [`send_statements`]' `SELECT` returned against what was sent: one row per
/// message, each with its copies' registrations as JSON.
pub fn copies_stored(
    msgs: &[NewMessage],
    stored: Vec<(i64, String)>,
) -> Result<Vec<(i64, Vec<String>)>, Error> {
    if stored.len() != msgs.len() {
        return Err(Error::Write(format!(
            "stored {} of {} messages",
            stored.len(),
            msgs.len()
        )));
    }
    stored
        .into_iter()
        .map(|(id, readers)| {
            let readers: Vec<String> = serde_json::from_str(&readers)
                .map_err(|e| Error::Write(format!("message {id}'s copies: {e}")))?;
            Ok((id, readers))
        })
        .collect()
}

/// The copies a claim takes: `to_peer`'s (first `?`) queued ones and those whose lease lapsed
/// before the second `?`, in send order, at most the third `?`. `state IN (…)` spelled out
/// lets SQLite use the partial index `deliveries_waiting`, whose order is the send order: a
/// million delivered copies do not slow a claim (a unit test reads the plan).
macro_rules! claimable_copies {
    () => {
        "SELECT id FROM deliveries WHERE to_peer = ? AND state IN ('queued','leased') \
         AND (state = 'queued' OR lease_expires_ms < ?) ORDER BY message_id LIMIT ?"
    };
}
#[cfg(test)]
pub(crate) use claimable_copies;

/// Leases up to `max` of a reader's waiting copies in send order (runs in the writer, so two
/// claims never overlap). Copies whose lease lapsed count as waiting again.
///
/// An `automatic` claim (one that would extend or start a turn by itself) first spends from
/// the loop budget of the peer's Claude Code process. Past it, nothing is leased, and the
/// first such claim in a window records the budget's notice.
pub fn claim(
    conn: &rusqlite::Connection,
    peer_id: &str,
    lease_id: &str,
    max: u32,
    now: i64,
    lease_expires: i64,
    automatic: Option<&LoopBudget>,
) -> Result<ClaimOutcome, Error> {
    let count = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<i64, Error> {
        Ok(conn.prepare_cached(sql)?.query_row(params, |r| r.get(0))?)
    };
    if let Some(budget) = automatic {
        // `state IN (…)` spelled out lets SQLite use the partial index `deliveries_waiting`.
        let waiting = count(
            "SELECT COUNT(*) FROM deliveries WHERE to_peer = ? \
             AND state IN ('queued','leased') \
             AND (state = 'queued' OR lease_expires_ms < ?)",
            &[&peer_id, &now],
        )?;
        if waiting == 0 {
            return Ok(ClaimOutcome {
                messages: vec![],
                budget_exhausted: false,
                budget_notice: false,
            });
        }
        let spent = count(
            "SELECT COUNT(*) FROM budget_spend WHERE machine_id = ? AND claude_pid = ? AND at_ms > ?",
            &[
                &budget.machine_id,
                &budget.claude_pid,
                &(now - budget.window_ms),
            ],
        )?;
        if spent >= budget.limit as i64 {
            // One notice per window, not one per hook call.
            let noticed = count(
                "SELECT COUNT(*) FROM notices WHERE kind = 'loop_budget' AND peer_id = ? AND at_ms > ?",
                &[&peer_id, &(now - budget.window_ms)],
            )?;
            if noticed == 0 {
                add_notice(
                    conn,
                    "loop_budget",
                    Some(peer_id),
                    &budget.notice,
                    peers_store::BROKER_AUTHOR,
                    now,
                )?;
            }
            return Ok(ClaimOutcome {
                messages: vec![],
                budget_exhausted: true,
                budget_notice: noticed == 0,
            });
        }
        conn.prepare_cached(
            "INSERT INTO budget_spend (machine_id, claude_pid, at_ms) VALUES (?,?,?)",
        )?
        .execute((&budget.machine_id, budget.claude_pid, now))?;
    }
    let leased: Vec<i64> = conn
        .prepare_cached(concat!(
            "UPDATE deliveries SET state = 'leased', lease_id = ?, lease_expires_ms = ? \
             WHERE id IN (",
            claimable_copies!(),
            ") RETURNING id"
        ))?
        .query_map((lease_id, lease_expires, peer_id, now, max as i64), |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    let mut messages: Vec<InboxMessage> = if leased.is_empty() {
        vec![]
    } else {
        let ids = serde_json::to_string(&leased).expect("ids as JSON");
        conn.prepare_cached(concat!(
            "SELECT ",
            copy_columns!(),
            " FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.id IN (SELECT value FROM json_each(?))"
        ))?
        .query_map([ids], CopyRow::direct)?
        .map(|r| r.map(CopyRow::inbox))
        .collect::<Result<_, _>>()?
    };
    messages.sort_by_key(|m| m.message_id);
    Ok(ClaimOutcome {
        messages,
        budget_exhausted: false,
        budget_notice: false,
    })
}

/// Marks a lease's copies delivered (runs in the writer): a lease is the reader's own, so
/// it touches only `peer_id`'s copies. With `ids`, only those are delivered and the rest of
/// the lease goes straight back to the queue. A copy whose lease lapsed but was not claimed
/// again is still accepted: it was shown. Returns (delivered, released).
pub fn ack(
    conn: &rusqlite::Connection,
    peer_id: &str,
    lease_id: &str,
    via: &str,
    ids: Option<&[i64]>,
    now: i64,
) -> Result<(u64, u64), Error> {
    const DELIVER: &str = "UPDATE deliveries SET state = 'delivered', lease_id = NULL, \
        lease_expires_ms = NULL, delivered_ms = ?, delivered_via = ? \
        WHERE lease_id = ? AND to_peer = ? AND state IN ('leased','queued')";
    let delivered = match ids {
        None => conn
            .prepare_cached(DELIVER)?
            .execute((now, via, lease_id, peer_id))?,
        // An empty list delivers nothing (and releases the whole lease below).
        Some(ids) => conn
            .prepare_cached(&format!(
                "{DELIVER} AND message_id IN (SELECT value FROM json_each(?))"
            ))?
            .execute((
                now,
                via,
                lease_id,
                peer_id,
                serde_json::to_string(ids).expect("ids as JSON"),
            ))?,
    };
    let released = conn
        .prepare_cached(
            "UPDATE deliveries SET state = 'queued', lease_id = NULL, lease_expires_ms = NULL \
             WHERE lease_id = ? AND to_peer = ? AND state = 'leased'",
        )?
        .execute((lease_id, peer_id))?;
    Ok((delivered as u64, released as u64))
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

/// Returns lapsed leases to their readers' queues and expires copies past their TTL (runs in
/// the writer), copy by copy. A lapsed lease keeps its id, so a late ack of a copy that was
/// in fact shown still counts.
pub async fn sweep(conn: &mut SqliteConnection, now: i64) -> Result<(u64, u64), Error> {
    let requeued = sqlx::query(
        "UPDATE deliveries SET state = 'queued' \
         WHERE state IN ('queued','leased') AND state = 'leased' AND lease_expires_ms < ?",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let expired = sqlx::query(
        "UPDATE deliveries SET state = 'expired', lease_id = NULL, lease_expires_ms = NULL \
         WHERE state IN ('queued','leased') AND expires_ms < ?",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((requeued, expired))
}

/// One message's status with its readers and replies, its body when `with_body`, and its
/// sender's peer id (reads).
pub async fn status(
    pool: &SqlitePool,
    id: i64,
    with_body: bool,
) -> Result<Option<(MessageStatus, Option<String>)>, Error> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let from_peer = row.from_peer.clone();
    let status = statuses(pool, vec![row], with_body).await?.remove(0);
    Ok(Some((status, from_peer)))
}

/// The thread of message `id`: the root of its `reply_to` chain and every reply below it,
/// in send order, with bodies and readers, each with its sender's peer id (reads; one
/// recursive query up to the root and down again). A reply always names an older message,
/// so the chain has no cycles.
pub async fn thread(
    pool: &SqlitePool,
    id: i64,
) -> Result<Vec<(MessageStatus, Option<String>)>, Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "WITH RECURSIVE up(id, reply_to, depth) AS ( \
           SELECT id, reply_to, 0 FROM messages WHERE id = ? \
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
    let statuses = statuses(pool, rows, true).await?;
    Ok(statuses.into_iter().zip(senders).collect())
}

/// Messages' sender-side statuses, in the order given: every reader's copy (whether its
/// reader's session runs), their replies, their bodies when `with_body` (reads; two queries
/// per [`MAX_ROWS`] messages, however many).
pub(crate) async fn statuses(
    pool: &SqlitePool,
    rows: Vec<MessageRow>,
    with_body: bool,
) -> Result<Vec<MessageStatus>, Error> {
    let mut readers: HashMap<i64, Vec<ReaderStatus>> = HashMap::new();
    let mut replies: HashMap<i64, Vec<i64>> = HashMap::new();
    for chunk in rows.chunks(MAX_ROWS) {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT d.message_id, d.to_peer, d.to_address, d.wake, d.state, d.delivered_ms, \
             d.delivered_via, COALESCE(p.gone_ms IS NULL, 0) AS alive \
             FROM deliveries d LEFT JOIN peers p ON p.id = d.to_peer WHERE d.message_id IN (",
        );
        let mut list = q.separated(", ");
        for r in chunk {
            list.push_bind(r.id);
        }
        q.push(") ORDER BY d.id");
        let copies: Vec<ReaderRow> = q.build_query_as().fetch_all(pool).await?;
        for c in copies {
            readers.entry(c.message_id).or_default().push(c.status());
        }
        let mut q =
            sqlx::QueryBuilder::new("SELECT reply_to, id FROM messages WHERE reply_to IN (");
        let mut list = q.separated(", ");
        for r in chunk {
            list.push_bind(r.id);
        }
        q.push(") ORDER BY id");
        let found: Vec<(i64, i64)> = q.build_query_as().fetch_all(pool).await?;
        for (to, id) in found {
            replies.entry(to).or_default().push(id);
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let body = with_body.then(|| row.body.clone());
            let copies = readers.remove(&row.id).unwrap_or_default();
            let answers = replies.remove(&row.id).unwrap_or_default();
            let mut st = row.status(copies, answers);
            st.body = body;
            st
        })
        .collect())
}

/// A reader's waiting copies, nothing consumed (reads).
pub async fn waiting(pool: &SqlitePool, peer_id: &str) -> Result<Vec<InboxMessage>, Error> {
    let rows: Vec<CopyRow> = sqlx::query_as(concat!(
        "SELECT ",
        copy_columns!(),
        " FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.to_peer = ? AND d.state IN ('queued','leased') ORDER BY d.message_id"
    ))
    .bind(peer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(CopyRow::inbox).collect())
}

/// How many copies are queued for a reader, and the oldest one's send time (reads).
pub async fn waiting_count(pool: &SqlitePool, peer_id: &str) -> Result<(u64, Option<i64>), Error> {
    let (n, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(m.sent_ms) FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.to_peer = ? AND d.state IN ('queued','leased') AND d.state = 'queued'",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok((n as u64, oldest))
}

/// How many of a reader's queued copies may wake it when idle (reads).
pub async fn queued_to_wake(pool: &SqlitePool, peer_id: &str) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE to_peer = ? \
         AND state IN ('queued','leased') AND state = 'queued' AND wake",
    )
    .bind(peer_id)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// Whether a claim could lease anything now: a queued copy, or a leased one whose lease
/// lapsed (reads). Lets the common no-mail claim — one per tool call — skip the writer queue.
pub async fn claimable(pool: &SqlitePool, peer_id: &str, now: i64) -> Result<bool, Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE to_peer = ? \
         AND state IN ('queued','leased') AND (state = 'queued' OR lease_expires_ms < ?))",
    )
    .bind(peer_id)
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(n == 1)
}

/// How many copies wait for a reader, leased ones included (reads).
pub async fn pending_count(pool: &SqlitePool, peer_id: &str) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE to_peer = ? AND state IN ('queued','leased')",
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

/// Copies delivered to any of `peer_ids` (the caller and the registrations it replaced),
/// newest first (reads).
pub async fn delivered_to(
    pool: &SqlitePool,
    peer_ids: &[String],
    since_ms: i64,
    limit: u32,
) -> Result<Vec<InboxMessage>, Error> {
    let mut out = Vec::new();
    for id in peer_ids {
        let rows: Vec<CopyRow> = sqlx::query_as(concat!(
            "SELECT ",
            copy_columns!(),
            " FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.to_peer = ? AND d.state = 'delivered' AND m.sent_ms >= ? \
             ORDER BY d.message_id DESC LIMIT ?"
        ))
        .bind(id)
        .bind(since_ms)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
        out.extend(rows.into_iter().map(CopyRow::inbox));
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.message_id));
    out.truncate(limit as usize);
    Ok(out)
}

/// The message log for the human, newest first, filtered by sender, by readers (any copy's registration), by topic (without `#`), tag,
/// project, state and time, with bodies when `with_body` (reads).
pub async fn log(
    pool: &SqlitePool,
    f: peers_store::LogFilter,
) -> Result<Vec<MessageStatus>, Error> {
    let mut q = sqlx::QueryBuilder::new(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE true"
    ));
    push_narrowing(&mut q, f.narrowing());
    q.push(" ORDER BY m.id DESC LIMIT ")
        .push_bind(f.limit as i64);
    let rows: Vec<MessageRow> = q.build_query_as().fetch_all(pool).await?;
    statuses(pool, rows, f.with_body).await
}

/// Appends ` AND …` on `messages m` for each history filter set (the log's and the
/// search's).
pub(crate) fn push_narrowing(q: &mut sqlx::QueryBuilder<sqlx::Sqlite>, n: Narrowing<'_>) {
    q.push(" AND m.sent_ms >= ").push_bind(n.since_ms);
    match n.from {
        Some(LogSender::Human) => {
            q.push(" AND m.from_kind = 'human'");
        }
        Some(LogSender::Peers(ids)) => {
            q.push(" AND m.from_peer IN (NULL");
            for id in ids {
                q.push(", ").push_bind(id);
            }
            q.push(")");
        }
        None => {}
    }
    if let Some(ids) = n.to {
        q.push(
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.to_peer IN (NULL",
        );
        for id in ids {
            q.push(", ").push_bind(id);
        }
        q.push("))");
    }
    if let Some(t) = n.topic {
        q.push(" AND m.channel = '#' || ").push_bind(t);
    }
    if let Some(t) = n.tag {
        q.push(" AND m.id IN (SELECT message_id FROM message_tags WHERE tag = ")
            .push_bind(t)
            .push(")");
    }
    if let Some(p) = n.project {
        q.push(" AND m.project = ").push_bind(p);
    }
    if let Some(u) = n.until_ms {
        q.push(" AND m.sent_ms < ").push_bind(u);
    }
    if let Some(s) = n.status {
        q.push(match s {
            MessageState::Queued | MessageState::Leased => {
                " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
                 AND d.state IN ('queued','leased'))"
            }
            MessageState::Delivered => {
                " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id) \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
                 AND d.state <> 'delivered')"
            }
            MessageState::Expired => {
                " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
                 AND d.state = 'expired') \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
                 AND d.state IN ('queued','leased'))"
            }
        });
    }
}

/// Count of waiting copies over all readers (reads).
pub async fn count_waiting(pool: &SqlitePool) -> Result<u64, Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state IN ('queued','leased')")
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
pub fn add_notice(
    conn: &rusqlite::Connection,
    kind: &str,
    peer_id: Option<&str>,
    text: &str,
    author: &str,
    now: i64,
) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO notices (at_ms, kind, peer_id, text, author) VALUES (?,?,?,?,?)",
    )?
    .execute((now, kind, peer_id, text, author))?;
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
