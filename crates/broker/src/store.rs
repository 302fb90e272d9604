//! Opening the store the configuration names: the broker is written against
//! [`peers_store::Store`]; this is the one place that picks a backend.

use std::sync::Arc;

use peers_core::config::DbUrl;
use peers_store::{Store, StoreError};
use peers_store_postgres::PgStore;
use peers_store_sqlite::SqliteStore;

/// Opens (creating if needed) the database `url` names and runs its migrations.
pub async fn open(url: &DbUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DbUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        DbUrl::Postgres(url) => Ok(Arc::new(PgStore::open(url).await?)),
    }
}
