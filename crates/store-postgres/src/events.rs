//! What one broker tells the others: writes that make mail claimable `NOTIFY peers_mail`
//! (payload: the peer id), writes to peer rows `NOTIFY peers_peers`, both inside their
//! transaction, so they are delivered at commit and never for a write that rolled back. Each
//! store handle LISTENs to both and forwards them as [`StoreEvent`]s.

use std::time::Duration;

use peers_store::StoreEvent;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::broadcast;

const MAIL: &str = "peers_mail";
const PEERS: &str = "peers_peers";

/// Announces (at commit) that mail became claimable for `peer_ids`.
pub(crate) async fn notify_mail(
    conn: &mut PgConnection,
    peer_ids: &[String],
) -> Result<(), sqlx::Error> {
    if peer_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, p) FROM (SELECT DISTINCT unnest($2::text[]) AS p) d")
        .bind(MAIL)
        .bind(peer_ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Announces (at commit) that peer rows changed.
pub(crate) async fn notify_peers(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(PEERS)
        .execute(conn)
        .await?;
    Ok(())
}

/// Listens until the pool closes, forwarding notifications into `tx`. A lost connection
/// loses notifications: once listening again it sends [`StoreEvent::Lagged`].
pub(crate) async fn listen(pool: PgPool, tx: broadcast::Sender<StoreEvent>) {
    let mut listener: Option<PgListener> = None;
    let mut lost = false;
    loop {
        let l = match listener.as_mut() {
            Some(l) => l,
            None => match subscribe(&pool).await {
                Ok(l) => {
                    if lost {
                        let _ = tx.send(StoreEvent::Lagged);
                        lost = false;
                    }
                    listener.insert(l)
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot listen for database events yet");
                    lost = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        match l.try_recv().await {
            Ok(Some(n)) => {
                let event = if n.channel() == MAIL {
                    StoreEvent::Mail {
                        peer_id: n.payload().to_string(),
                    }
                } else {
                    StoreEvent::PeersChanged
                };
                let _ = tx.send(event);
            }
            Ok(None) => {
                // The connection dropped and was re-established (eager reconnect).
                let _ = tx.send(StoreEvent::Lagged);
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "lost the database event stream");
                listener = None;
                lost = true;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen_all([MAIL, PEERS]).await?;
    Ok(l)
}
