//! Topics and subscriptions. A subscription belongs to a session's name in its directory on
//! its machine (`subscriptions` is keyed by `(topic, machine_id, cwd, name)`), so the next
//! session with that name there has it — the hand-over rule that mail follows too.

use peers_core::wire::{MessageStatus, Subscription, TopicInfo};
use peers_store::{PeerRecord, TopicPostsFilter, TopicReader};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::Error;
use crate::messages::{self, MessageRow, message_columns};
use crate::peers;

#[derive(Debug, FromRow)]
struct SubscriptionRow {
    topic: String,
    wake: bool,
    mute: bool,
    since_ms: i64,
}

impl From<SubscriptionRow> for Subscription {
    fn from(r: SubscriptionRow) -> Subscription {
        Subscription {
            topic: r.topic,
            wake: r.wake,
            mute: r.mute,
            since_ms: r.since_ms,
        }
    }
}

/// Creates a topic if it does not exist yet (runs in the writer).
async fn create(conn: &mut SqliteConnection, topic: &str, now: i64) -> Result<(), Error> {
    sqlx::query("INSERT OR IGNORE INTO topics (name, created_ms) VALUES (?, ?)")
        .bind(topic)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Subscribes the name and directory of `peer_id` to `topic`, or changes its `wake`/`mute`
/// (`None` keeps the current value, false for a new subscription; `since_ms` stays the
/// first subscription's). Creates the topic. `None` for an unknown peer (runs in the writer).
pub async fn subscribe(
    conn: &mut SqliteConnection,
    peer_id: &str,
    topic: &str,
    wake: Option<bool>,
    mute: Option<bool>,
    now: i64,
) -> Result<Option<Subscription>, Error> {
    let Some(p) = peers::by_id(&mut *conn, peer_id).await? else {
        return Ok(None);
    };
    create(conn, topic, now).await?;
    let row: SubscriptionRow = sqlx::query_as(
        "INSERT INTO subscriptions (topic, machine_id, cwd, name, wake, mute, since_ms) \
         VALUES (?, ?, ?, ?, COALESCE(?, 0), COALESCE(?, 0), ?) \
         ON CONFLICT (topic, machine_id, cwd, name) DO UPDATE SET \
           wake = COALESCE(?, wake), mute = COALESCE(?, mute) \
         RETURNING topic, wake, mute, since_ms",
    )
    .bind(topic)
    .bind(&p.machine_id)
    .bind(&p.cwd)
    .bind(&p.name)
    .bind(wake)
    .bind(mute)
    .bind(now)
    .bind(wake)
    .bind(mute)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(row.into()))
}

/// Ends the subscription of `peer_id`'s name and directory; whether there was one (runs in
/// the writer).
pub async fn unsubscribe(
    conn: &mut SqliteConnection,
    peer_id: &str,
    topic: &str,
) -> Result<bool, Error> {
    let n = sqlx::query(
        "DELETE FROM subscriptions WHERE topic = ? AND (machine_id, cwd, name) = \
         (SELECT machine_id, cwd, name FROM peers WHERE id = ?)",
    )
    .bind(topic)
    .bind(peer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// The subscriptions of `peer_id`'s name and directory, by topic (reads).
pub async fn subscriptions(pool: &SqlitePool, peer_id: &str) -> Result<Vec<Subscription>, Error> {
    let rows: Vec<SubscriptionRow> = sqlx::query_as(
        "SELECT s.topic, s.wake, s.mute, s.since_ms FROM subscriptions s \
         JOIN peers p ON p.machine_id = s.machine_id AND p.cwd = s.cwd AND p.name = s.name \
         WHERE p.id = ? ORDER BY s.topic",
    )
    .bind(peer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Subscription::from).collect())
}

/// Who a post to `topic` reaches: live registrations (not gone, not replaced) whose name and
/// directory are subscribed and not muted, by name (reads). One row of JSON, not a row per
/// reader (see [`peers::peer_json!`]).
pub async fn readers(pool: &SqlitePool, topic: &str) -> Result<Vec<TopicReader>, Error> {
    #[derive(serde::Deserialize)]
    struct Row {
        wake: i64,
        peer: PeerRecord,
    }
    let json: String = sqlx::query_scalar(concat!(
        "SELECT COALESCE(json_group_array(json_object('wake', s.wake, 'peer', ",
        peers::peer_json!("p."),
        ") ORDER BY p.name), '[]') FROM subscriptions s \
         JOIN peers p ON p.machine_id = s.machine_id AND p.cwd = s.cwd AND p.name = s.name \
         WHERE s.topic = ? AND NOT s.mute AND p.gone_ms IS NULL AND p.replaced_by IS NULL"
    ))
    .bind(topic)
    .fetch_one(pool)
    .await?;
    let rows: Vec<Row> =
        serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(rows
        .into_iter()
        .map(|r| TopicReader {
            wake: r.wake != 0,
            peer: r.peer,
        })
        .collect())
}

#[derive(Debug, FromRow)]
struct TopicRow {
    name: String,
    created_ms: i64,
    subscribers: i64,
    posts: i64,
    last_post_id: Option<i64>,
    last_post_ms: Option<i64>,
}

/// Every topic by name with its subscriber and post counts and its last post; the viewer's
/// subscription (by its name and directory) when `viewer` is given (reads).
pub async fn list(pool: &SqlitePool, viewer: Option<&str>) -> Result<Vec<TopicInfo>, Error> {
    let rows: Vec<TopicRow> = sqlx::query_as(
        "SELECT t.name, t.created_ms, \
           (SELECT COUNT(*) FROM subscriptions s WHERE s.topic = t.name) AS subscribers, \
           (SELECT COUNT(*) FROM messages m WHERE m.channel = '#' || t.name) AS posts, \
           (SELECT MAX(m.id) FROM messages m WHERE m.channel = '#' || t.name) AS last_post_id, \
           (SELECT m.sent_ms FROM messages m WHERE m.channel = '#' || t.name \
            ORDER BY m.id DESC LIMIT 1) AS last_post_ms \
         FROM topics t ORDER BY t.name",
    )
    .fetch_all(pool)
    .await?;
    let mut mine = match viewer {
        Some(v) => subscriptions(pool, v).await?,
        None => vec![],
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            let subscription = mine
                .iter()
                .position(|s| s.topic == r.name)
                .map(|i| mine.swap_remove(i));
            TopicInfo {
                topic: r.name,
                created_ms: r.created_ms,
                subscribers: r.subscribers as u64,
                posts: r.posts as u64,
                last_post_ms: r.last_post_ms,
                last_post_id: r.last_post_id,
                subscription,
            }
        })
        .collect())
}

/// Whether a topic exists (reads).
pub async fn exists(pool: &SqlitePool, topic: &str) -> Result<bool, Error> {
    let n: i64 = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM topics WHERE name = ?)")
        .bind(topic)
        .fetch_one(pool)
        .await?;
    Ok(n == 1)
}

/// A topic's newest `limit` posts after `since_id`, oldest first, with bodies and readers
/// (reads).
pub async fn posts(pool: &SqlitePool, f: TopicPostsFilter) -> Result<Vec<MessageStatus>, Error> {
    let mut rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.channel = '#' || ? AND m.id > ? ORDER BY m.id DESC LIMIT ?"
    ))
    .bind(&f.topic)
    .bind(f.since_id.unwrap_or(0))
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    messages::statuses(pool, rows, true).await
}
