//! Migration 0002 (deliveries) on a database the previous schema made, with mail in every
//! state: each message's state moves into its one copy and reads back the same.

use std::sync::Arc;

use peers_core::wire::MessageState;
use peers_store::{Ack, Claim, Store};
use peers_store_postgres::PgStore;
use peers_testkit::postgres::PgCluster;
use sqlx::Connection;

/// Two peers (`a` live, `b` gone) and five messages as schema 0001 stored them: queued and
/// leased for `a`, delivered to `b`, expired for `a`, and a queued reply to the delivered one.
const OLD_DATA: &str = "
INSERT INTO peers (id, name, host, machine_id, claude_pid, mcp_pid, cwd, token_hash,
                   registered_ms, last_seen_ms, gone_ms)
VALUES ('pa', 'api', 'h', 'm', 10, 11, '/x/api', 'ha', 1, 1, NULL),
       ('pb', 'web', 'h', 'm', 20, 21, '/x/web', 'hb', 1, 1, 50);
INSERT INTO messages (id, from_peer, from_kind, from_address, from_cwd, to_peer, to_address,
                      body, reply_to, state, sent_ms, expires_ms, lease_id, lease_expires_ms,
                      delivered_ms, delivered_via)
VALUES (1, NULL, 'human', 'you@h', NULL, 'pa', 'api@h', 'queued one', NULL, 'queued',
        100, 900000, NULL, NULL, NULL, NULL),
       (2, 'pb', 'peer', 'web@h', '/x/web', 'pa', 'api@h', 'leased one', NULL, 'leased',
        101, 900000, 'L1', 9000000000000, NULL, NULL),
       (3, 'pa', 'peer', 'api@h', '/x/api', 'pb', 'web@h', 'delivered one', NULL, 'delivered',
        102, 900000, NULL, NULL, 110, 'Stop'),
       (4, NULL, 'human', 'you@h', NULL, 'pa', 'api@h', 'expired one', NULL, 'expired',
        103, 104, NULL, NULL, NULL, NULL),
       (5, 'pb', 'peer', 'web@h', '/x/web', 'pa', 'api@h', 'reply', 3, 'queued',
        104, 900000, NULL, NULL, NULL, NULL);
SELECT setval(pg_get_serial_sequence('messages', 'id'), 5);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_in_every_state_reads_back_the_same_after_migration_0002() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.fresh_database();
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::migrate!("./migrations")
        .run_to(1, &mut db)
        .await
        .expect("schema 0001");
    sqlx::raw_sql(OLD_DATA).execute(&mut db).await.unwrap();

    let s: Arc<dyn Store> = Arc::new(PgStore::open(&url).await.expect("migrate and open"));
    let state_of = async |id: i64| {
        let (st, from) = s.status(id, true).await.unwrap().expect("kept");
        assert_eq!(st.readers.len(), 1, "message {id} has one copy");
        assert_eq!(st.channel, None, "message {id} is direct mail");
        (st, from)
    };
    let (st, from) = state_of(1).await;
    assert_eq!(
        (st.status, st.to.as_str(), st.to_peer_id.as_str(), from),
        (MessageState::Queued, "api@h", "pa", None)
    );
    assert_eq!(st.body.as_deref(), Some("queued one"));
    assert!(st.recipient_alive && st.readers[0].wake);
    let (st, from) = state_of(2).await;
    assert_eq!(st.status, MessageState::Queued, "leased shows queued");
    assert_eq!(st.readers[0].status, MessageState::Leased);
    assert_eq!(from.as_deref(), Some("pb"));
    let (st, _) = state_of(3).await;
    assert_eq!(
        (
            st.status,
            st.delivered_at_ms,
            st.delivered_via.as_deref(),
            st.to_peer_id.as_str()
        ),
        (MessageState::Delivered, Some(110), Some("Stop"), "pb")
    );
    assert!(!st.recipient_alive, "b is gone");
    assert_eq!(st.replies, [5]);
    let (st, _) = state_of(4).await;
    assert_eq!((st.status, st.expires_at_ms), (MessageState::Expired, 104));
    assert_eq!(state_of(5).await.0.reply_to, Some(3));

    let waiting: Vec<(i64, MessageState)> = s
        .waiting("pa")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.message_id, m.status))
        .collect();
    assert_eq!(
        waiting,
        [
            (1, MessageState::Queued),
            (2, MessageState::Leased),
            (5, MessageState::Queued)
        ]
    );
    let delivered = s.delivered_to(&["pb".into()], 0, 10).await.unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].body.as_str(), delivered[0].from_cwd.as_deref()),
        ("delivered one", Some("/x/api"))
    );
    assert_eq!(s.queued_count("pa").await.unwrap(), (2, Some(100)));
    assert_eq!(s.count_pending().await.unwrap(), 3);

    // The lease survived the move: its ack delivers; the queue still claims in order.
    let acked = s
        .ack(Ack {
            peer_id: "pa".into(),
            lease_id: "L1".into(),
            via: "PostToolUse".into(),
            ids: None,
            now: 200,
        })
        .await
        .unwrap();
    assert_eq!(acked.delivered, 1);
    let out = s
        .claim(Claim {
            peer_id: "pa".into(),
            lease_id: "L2".into(),
            max: 10,
            now: 201,
            lease_expires_ms: 300,
            automatic: None,
        })
        .await
        .unwrap();
    let ids: Vec<i64> = out.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(ids, [1, 5]);
    let next = s
        .send(peers_store::story::from_human(
            &s.peer("pa").await.unwrap().unwrap(),
            "new",
            300,
        ))
        .await
        .unwrap();
    assert_eq!(next.id, 6, "the id sequence carries on");

    // One home for each fact: the per-copy columns left `messages`.
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_name = 'messages' AND column_name = ANY($1)",
    )
    .bind([
        "to_peer",
        "state",
        "lease_id",
        "lease_expires_ms",
        "delivered_ms",
        "delivered_via",
    ])
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(left.is_empty(), "still on messages: {left:?}");
}
