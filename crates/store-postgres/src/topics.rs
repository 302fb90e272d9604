//! Topics and subscriptions. A subscription is keyed by the subscribing session's machine,
//! directory and name (the hand-over rule), so the next session with that name there has it.

use peers_core::wire::{Subscription, TopicInfo};
use peers_store::{PeerRecord, Subscribe, TopicReader};
use sqlx::{PgConnection, PgPool};

use crate::peers::PeerRow;

/// The columns of [`Subscription`] over `subscriptions s`.
macro_rules! subscription_columns {
    () => {
        "s.topic, s.wake, s.mute, s.since_ms"
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
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

#[derive(Debug, Clone, sqlx::FromRow)]
struct ReaderRow {
    #[sqlx(flatten)]
    peer: PeerRow,
    wake: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct TopicRow {
    name: String,
    created_ms: i64,
    subscribers: i64,
    posts: i64,
    last_post_id: Option<i64>,
    last_post_ms: Option<i64>,
    /// The viewer's subscription (all NULL without one).
    v_wake: Option<bool>,
    v_mute: Option<bool>,
    v_since_ms: Option<i64>,
}

/// Subscribes (or changes the subscription of) the name and directory of `s.peer_id`,
/// inside the caller's transaction; creates the topic. `None` for an unknown peer.
pub(crate) async fn subscribe(
    conn: &mut PgConnection,
    s: &Subscribe,
) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query("INSERT INTO topics (name, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(&s.topic)
        .bind(s.now)
        .execute(&mut *conn)
        .await?;
    let row: Option<SubscriptionRow> = sqlx::query_as(concat!(
        "INSERT INTO subscriptions AS s (topic, machine_id, cwd, name, wake, mute, since_ms) \
         SELECT $2, p.machine_id, p.cwd, p.name, COALESCE($3, false), COALESCE($4, false), $5 \
         FROM peers p WHERE p.id = $1 \
         ON CONFLICT (topic, machine_id, cwd, name) DO UPDATE \
         SET wake = COALESCE($3, s.wake), mute = COALESCE($4, s.mute) RETURNING ",
        subscription_columns!()
    ))
    .bind(&s.peer_id)
    .bind(&s.topic)
    .bind(s.wake)
    .bind(s.mute)
    .bind(s.now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Subscription::from))
}

/// Ends the subscription of `peer_id`'s name and directory; whether there was one.
pub(crate) async fn unsubscribe(
    conn: &mut PgConnection,
    peer_id: &str,
    topic: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "DELETE FROM subscriptions s USING peers p WHERE p.id = $1 AND s.topic = $2 \
         AND s.machine_id = p.machine_id AND s.cwd = p.cwd AND s.name = p.name",
    )
    .bind(peer_id)
    .bind(topic)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn subscriptions(
    pool: &PgPool,
    peer_id: &str,
) -> Result<Vec<Subscription>, sqlx::Error> {
    let rows: Vec<SubscriptionRow> = sqlx::query_as(concat!(
        "SELECT ",
        subscription_columns!(),
        " FROM subscriptions s JOIN peers p ON s.machine_id = p.machine_id \
         AND s.cwd = p.cwd AND s.name = p.name WHERE p.id = $1 ORDER BY s.topic"
    ))
    .bind(peer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Subscription::from).collect())
}

/// Live registrations (not gone, not replaced) whose name and directory are subscribed to
/// `topic` and not muted, by name.
pub(crate) async fn topic_readers(
    pool: &PgPool,
    topic: &str,
) -> Result<Vec<TopicReader>, sqlx::Error> {
    let rows: Vec<ReaderRow> = sqlx::query_as(
        "SELECT p.*, s.wake FROM subscriptions s JOIN peers p ON s.machine_id = p.machine_id \
         AND s.cwd = p.cwd AND s.name = p.name \
         WHERE s.topic = $1 AND NOT s.mute AND p.gone_ms IS NULL AND p.replaced_by IS NULL \
         ORDER BY p.name, p.id",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TopicReader {
            peer: PeerRecord::from(r.peer),
            wake: r.wake,
        })
        .collect())
}

/// Every topic by name with its counts, and `viewer`'s subscription to it.
pub(crate) async fn topics(
    pool: &PgPool,
    viewer: Option<&str>,
) -> Result<Vec<TopicInfo>, sqlx::Error> {
    let rows: Vec<TopicRow> = sqlx::query_as(
        "SELECT t.name, t.created_ms, \
           (SELECT COUNT(*) FROM subscriptions s WHERE s.topic = t.name) AS subscribers, \
           (SELECT COUNT(*) FROM messages m WHERE m.channel = '#' || t.name) AS posts, \
           last.id AS last_post_id, last.sent_ms AS last_post_ms, \
           v.wake AS v_wake, v.mute AS v_mute, v.since_ms AS v_since_ms \
         FROM topics t \
         LEFT JOIN LATERAL (SELECT m.id, m.sent_ms FROM messages m \
           WHERE m.channel = '#' || t.name ORDER BY m.id DESC LIMIT 1) last ON true \
         LEFT JOIN LATERAL (SELECT s.wake, s.mute, s.since_ms FROM subscriptions s \
           JOIN peers p ON s.machine_id = p.machine_id AND s.cwd = p.cwd AND s.name = p.name \
           WHERE p.id = $1 AND s.topic = t.name) v ON true \
         ORDER BY t.name",
    )
    .bind(viewer)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let subscription = match (r.v_wake, r.v_mute, r.v_since_ms) {
                (Some(wake), Some(mute), Some(since_ms)) => Some(Subscription {
                    topic: r.name.clone(),
                    wake,
                    mute,
                    since_ms,
                }),
                _ => None,
            };
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

pub(crate) async fn topic_exists(pool: &PgPool, topic: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM topics WHERE name = $1)")
        .bind(topic)
        .fetch_one(pool)
        .await
}
