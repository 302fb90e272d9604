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
