//! Migration 0004 (`deliveries`) on a database made by the schema before it: a file with
//! mail in every state, written with migrations 0001–0003 and that schema's own columns,
//! opened by the current store. Every message must read back as it was — its state, lease,
//! delivery, recipient, reply links — now as its one reader's copy, and the per-delivery
//! columns must be gone from `messages` (one source of truth).

use std::path::Path;

use peers_core::wire::MessageState;
use peers_store::{Ack, Claim, Store, story};
use peers_store_sqlite::SqliteStore;
use sqlx::Connection;

const T: i64 = 1_700_000_000_000;

/// Writes a database with the schema of migrations 0001–0003 and mail in every state.
async fn previous_schema_with_mail(db: &Path) {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate!("./migrations")
        .run_to(3, &mut conn)
        .await
        .expect("the previous migrations");
    for (id, name, cwd, pid, gone) in [
        ("peer-a", "api", "/x/api", 10, None),
        ("peer-b", "web", "/x/web", 11, Some(T + 5)),
    ] {
        sqlx::query(
            "INSERT INTO peers (id, name, host, machine_id, claude_pid, mcp_pid, cwd, token_hash, \
             registered_ms, last_seen_ms, gone_ms, claude_start_time) \
             VALUES (?, ?, 'host-a', 'machine-a', ?, 1, ?, 'h', ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(name)
        .bind(pid)
        .bind(cwd)
        .bind(T)
        .bind(T)
        .bind(gone)
        .bind(pid * 10)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // id, to, state, lease, lease expiry, delivered at, via, reply_to
    type Old = (
        i64,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<i64>,
        Option<i64>,
        Option<&'static str>,
        Option<i64>,
    );
    let rows: [Old; 6] = [
        (1, "peer-a", "queued", None, None, None, None, None),
        (
            2,
            "peer-a",
            "leased",
            Some("L-live"),
            Some(T + 1_000_000),
            None,
            None,
            None,
        ),
        (
            3,
            "peer-a",
            "leased",
            Some("L-lapsed"),
            Some(T + 10),
            None,
            None,
            None,
        ),
        (
            4,
            "peer-a",
            "delivered",
            None,
            None,
            Some(T + 4),
            Some("Stop"),
            None,
        ),
        (5, "peer-a", "expired", None, None, None, None, None),
        (6, "peer-b", "queued", None, None, None, None, Some(4)),
    ];
    for (id, to, state, lease, lease_exp, dms, via, reply_to) in rows {
        let to_address = if to == "peer-a" {
            "api@host-a"
        } else {
            "web@host-a"
        };
        sqlx::query(
            "INSERT INTO messages (id, from_peer, from_kind, from_address, from_cwd, to_peer, \
             to_address, body, reply_to, state, sent_ms, expires_ms, lease_id, \
             lease_expires_ms, delivered_ms, delivered_via) \
             VALUES (?, NULL, 'human', 'you@host-a', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(to)
        .bind(to_address)
        .bind(format!("body {id}"))
        .bind(reply_to)
        .bind(state)
        .bind(T + id)
        .bind(T + 86_400_000 + id)
        .bind(lease)
        .bind(lease_exp)
        .bind(dms)
        .bind(via)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn mail_in_every_state_reads_back_the_same_after_0004() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.db");
    previous_schema_with_mail(&db).await;
    let store = SqliteStore::open(&db).await.expect("migrate to 0004");
    let s: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);

    let want = [
        (
            1,
            "peer-a",
            MessageState::Queued,
            MessageState::Queued,
            None,
        ),
        (
            2,
            "peer-a",
            MessageState::Queued,
            MessageState::Leased,
            None,
        ),
        (
            3,
            "peer-a",
            MessageState::Queued,
            MessageState::Leased,
            None,
        ),
        (
            4,
            "peer-a",
            MessageState::Delivered,
            MessageState::Delivered,
            Some("Stop"),
        ),
        (
            5,
            "peer-a",
            MessageState::Expired,
            MessageState::Expired,
            None,
        ),
        (
            6,
            "peer-b",
            MessageState::Queued,
            MessageState::Queued,
            None,
        ),
    ];
    for (id, to, top, copy, via) in want {
        let (st, from) = s
            .status(id, true)
            .await
            .unwrap()
            .expect("the message is kept");
        assert!(from.is_none(), "{id}: from the human");
        assert_eq!(
            st.body.as_deref(),
            Some(format!("body {id}").as_str()),
            "{id}"
        );
        assert_eq!(st.to_peer_id, to, "{id}: its recipient");
        assert_eq!(st.status, top, "{id}: the sender's status");
        assert_eq!(st.delivered_via.as_deref(), via, "{id}");
        assert_eq!(
            (st.sent_at_ms, st.expires_at_ms),
            (T + id, T + 86_400_000 + id)
        );
        assert_eq!(st.channel, None, "{id}: direct mail");
        assert_eq!(st.readers.len(), 1, "{id}: one copy");
        assert_eq!(st.readers[0].status, copy, "{id}: the copy's state");
        assert!(st.readers[0].wake, "{id}: direct mail may wake");
        assert_eq!(st.recipient_alive, to == "peer-a", "{id}");
    }
    let (delivered, _) = s.status(4, false).await.unwrap().unwrap();
    assert_eq!(delivered.delivered_at_ms, Some(T + 4));
    assert_eq!(delivered.replies, [6], "reply links survive");
    assert_eq!(
        s.status(6, false).await.unwrap().unwrap().0.reply_to,
        Some(4)
    );

    let waiting: Vec<(i64, MessageState)> = s
        .waiting("peer-a")
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
            (3, MessageState::Leased)
        ]
    );
    assert_eq!(s.queued_count("peer-a").await.unwrap(), (1, Some(T + 1)));
    assert_eq!(s.count_pending().await.unwrap(), 4);
    let history = s
        .delivered_to(&["peer-a".to_string()], 0, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].message_id, history[0].delivered_at_ms),
        (4, Some(T + 4))
    );

    // The leases work on: the live one acks, the lapsed one comes back to a claim.
    let acked = s
        .ack(Ack {
            peer_id: "peer-a".into(),
            lease_id: "L-live".into(),
            via: "PostToolUse".into(),
            ids: None,
            now: T + 100,
        })
        .await
        .unwrap();
    assert_eq!((acked.delivered, acked.released), (1, 0));
    let out = s
        .claim(Claim {
            peer_id: "peer-a".into(),
            lease_id: "L-new".into(),
            max: 10,
            now: T + 100,
            lease_expires_ms: T + 200,
            automatic: None,
        })
        .await
        .unwrap();
    let got: Vec<i64> = out.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(got, [1, 3], "the queued one and the lapsed lease");

    // Mail waiting for the ended session goes to the next one in its directory.
    let next = story::register_as(&s, story::request(12, "/x/web"), T + 300).await;
    assert_eq!(next.peer.name, "web");
    assert_eq!(next.inherited_messages, 1);
    s.close().await;

    // One source of truth: the per-delivery columns left `messages`.
    let url = format!("sqlite://{}", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('messages')")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for gone in [
        "to_peer",
        "state",
        "lease_id",
        "lease_expires_ms",
        "delivered_ms",
        "delivered_via",
    ] {
        assert!(
            !columns.iter().any(|c| c == gone),
            "messages.{gone} is dropped"
        );
    }
    assert!(columns.iter().any(|c| c == "channel"));
    conn.close().await.unwrap();
}
