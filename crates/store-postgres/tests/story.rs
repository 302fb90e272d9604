//! The shared story (`peers_store::story`) against PostgreSQL: one test per chapter, each on
//! a fresh database of the throw-away cluster the tests running share.

use std::sync::Arc;

use peers_store::{Store, story};
use peers_store_postgres::PgStore;
use peers_testkit::postgres::PgCluster;

macro_rules! chapter_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(pg) = PgCluster::shared() else { return };
                let url = pg.fresh_database();
                let store: Arc<dyn Store> =
                    Arc::new(PgStore::open(&url).await.expect("open a fresh database"));
                story::$name(&store).await;
                store.close().await;
            }
        )*
    };
}

peers_store::story_chapters!(chapter_tests);
