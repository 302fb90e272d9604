//! What one broker tells the others: writes that make mail claimable `NOTIFY peers_mail`
//! (payload: the peer ids, separated by spaces, as many as fit one notification), writes to peer rows `NOTIFY peers_peers`, both inside their
//! transaction, so they are delivered at commit and never for a write that rolled back. Each
//! store handle LISTENs to both and forwards them as [`StoreEvent`]s.

use std::time::Duration;

use peers_store::StoreEvent;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::broadcast;

const MAIL: &str = "peers_mail";
const PEERS: &str = "peers_peers";

/// The most bytes of peer ids in one `peers_mail` payload (the server's limit is 8000).
const MAIL_PAYLOAD: usize = 7000;

/// Announces (at commit) that mail became claimable for `peer_ids`: one notification per
/// [`MAIL_PAYLOAD`] bytes of distinct ids, so a fan-out to 500 readers costs a few.
pub(crate) async fn notify_mail(
    conn: &mut PgConnection,
    peer_ids: &[String],
) -> Result<(), sqlx::Error> {
    let payloads = mail_payloads(peer_ids);
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(MAIL)
        .bind(payloads)
        .execute(conn)
        .await?;
    Ok(())
}

/// The distinct ids, joined by spaces into payloads of at most [`MAIL_PAYLOAD`] bytes (an
/// id longer than that alone in its own).
fn mail_payloads(peer_ids: &[String]) -> Vec<String> {
    let distinct: std::collections::BTreeSet<&str> = peer_ids.iter().map(String::as_str).collect();
    let mut out: Vec<String> = Vec::new();
    for id in distinct {
        match out.last_mut() {
            Some(p) if p.len() + 1 + id.len() <= MAIL_PAYLOAD => {
                p.push(' ');
                p.push_str(id);
            }
            _ => out.push(id.to_string()),
        }
    }
    out
}

/// The events of one notification.
fn events_of(channel: &str, payload: &str) -> Vec<StoreEvent> {
    if channel == MAIL {
        payload
            .split_whitespace()
            .map(|id| StoreEvent::Mail {
                peer_id: id.to_string(),
            })
            .collect()
    } else {
        vec![StoreEvent::PeersChanged]
    }
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
/// loses notifications: once listening again it sends [`StoreEvent::Lagged`]. `ready` is
/// told once the first `LISTEN` is in place, so the store's opener can wait for it.
pub(crate) async fn listen(
    pool: PgPool,
    tx: broadcast::Sender<StoreEvent>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
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
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
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
                for event in events_of(n.channel(), n.payload()) {
                    let _ = tx.send(event);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_payloads_carry_every_distinct_id_once_within_the_limit() {
        let ids: Vec<String> = (0..2000).map(|i| format!("peer-{i:05}")).collect();
        let mut doubled = ids.clone();
        doubled.extend(ids.iter().cloned());
        let payloads = mail_payloads(&doubled);
        assert!(payloads.len() > 1, "2000 ids do not fit one notification");
        assert!(payloads.iter().all(|p| p.len() <= MAIL_PAYLOAD));
        let back: Vec<String> = payloads
            .iter()
            .flat_map(|p| events_of(MAIL, p))
            .map(|e| match e {
                StoreEvent::Mail { peer_id } => peer_id,
                e => panic!("not mail: {e:?}"),
            })
            .collect();
        assert_eq!(back, ids, "each id once, none lost");
        assert!(mail_payloads(&[]).is_empty());
    }
}
