//! The shared story (`peers_store::story`) against PostgreSQL: every chapter, each on a fresh
//! database of one throw-away cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use peers_store::{Store, story};
use peers_store_postgres::PgStore;
use peers_testkit::postgres::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_chapter_of_the_story_holds_on_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    let n = AtomicU32::new(0);
    story::run_all(|| {
        let url = pg.create_database(&format!("story_{}", n.fetch_add(1, Ordering::SeqCst)));
        async move {
            let store: Arc<dyn Store> =
                Arc::new(PgStore::open(&url).await.expect("open a fresh database"));
            store
        }
    })
    .await;
}
