//! The shared story (`peers_store::story`) against the SQLite backend: one test per chapter,
//! each on a fresh database file in a temp dir.

use std::sync::Arc;

use peers_store::Store;
use peers_store::story;
use peers_store_sqlite::SqliteStore;

async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("peers.db"))
        .await
        .expect("open a fresh database");
    (dir, Arc::new(store))
}

macro_rules! chapter_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, store) = fresh().await;
                story::$name(&store).await;
                store.close().await;
            }
        )*
    };
}

peers_store::story_chapters!(chapter_tests);

/// What a fresh SQLite store says about itself.
#[tokio::test]
async fn describes_itself_as_sqlite_at_its_file() {
    let (dir, store) = fresh().await;
    let info = store.describe();
    assert_eq!(info.backend, "sqlite");
    assert_eq!(
        info.location,
        dir.path().join("peers.db").display().to_string()
    );
    assert_eq!(store.health(), peers_store::Health::default());
    assert!(
        store.sweep_turn().await.unwrap(),
        "one broker per file: always its turn"
    );
    assert!(store.events().is_none());
    store.close().await;
}

/// The benchmark's bulk history: `n` delivered messages round-robin over the peers, each with
/// its reader's delivered copy, beside mail already waiting (which stays claimable) and
/// before later sends (which get later ids).
#[tokio::test]
async fn preload_fills_delivered_history_round_robin() {
    let (_dir, s) = fresh().await;
    let a = story::register(&s, 10, "/x/a").await;
    let b = story::register(&s, 11, "/x/b").await;
    let waiting = s
        .send(story::from_human(&a, "waiting", story::T0))
        .await
        .unwrap()
        .id;
    s.preload_delivered(&[a.id.clone(), b.id.clone()], 1001)
        .await
        .expect("preload");
    let of = |p: &peers_store::PeerRecord| {
        let (s, id) = (s.clone(), p.id.clone());
        async move { s.delivered_to(&[id], 0, 2000).await.unwrap() }
    };
    let (to_a, to_b) = (of(&a).await, of(&b).await);
    assert_eq!((to_a.len(), to_b.len()), (500, 501));
    assert!(to_a.iter().all(|m| m.message_id > waiting));
    let (st, _) = s.status(to_b[0].message_id, false).await.unwrap().unwrap();
    assert_eq!(st.status, peers_core::wire::MessageState::Delivered);
    assert_eq!(st.readers.len(), 1);
    assert_eq!(s.count_pending().await.unwrap(), 1, "only the waiting one");
    let later = s
        .send(story::from_human(&b, "later", story::T0))
        .await
        .unwrap()
        .id;
    assert!(later > to_b[0].message_id, "later sends get later ids");
    let out = s
        .claim(peers_store::Claim {
            peer_id: a.id.clone(),
            lease_id: "L".into(),
            max: 10,
            now: story::T0 + 1,
            lease_expires_ms: story::T0 + 1000,
            automatic: None,
        })
        .await
        .unwrap();
    let got: Vec<i64> = out.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(got, [waiting], "history is not claimed");
    s.close().await;
}
