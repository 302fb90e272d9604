//! Retention (issue #14): delivered mail older than `retain_days` is pruned by the sweep in
//! batches, while sends go on; every send that got its 200 survives the prune and a kill -9.
//! Once on SQLite, once on PostgreSQL (skipped loudly without it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::wire::{AckRequest, ClaimRequest, HistoryQuery, MessageState};
use peers_testkit::postgres::PgCluster;
use peers_testkit::{BrokerProcess, TestEnv, bin, eventually};

use super::util::{register, send_req};

/// Old delivered messages seeded: sent in the first `OLD` milliseconds of 1970.
const OLD: u64 = 30_000;

/// The ids of the messages sent in `[since_ms, until_ms)`, newest first (at most `limit`).
async fn sent_between(user: &BrokerClient, since_ms: i64, until_ms: i64, limit: u32) -> Vec<i64> {
    user.messages(&HistoryQuery {
        since_ms: Some(since_ms),
        until_ms: Some(until_ms),
        limit: Some(limit),
        ..Default::default()
    })
    .await
    .expect("the log")
    .messages
    .iter()
    .map(|m| m.message_id)
    .collect()
}

/// Whether the oldest and the youngest of the seeded messages are still stored.
async fn oldest_and_youngest(user: &BrokerClient) -> (bool, bool) {
    let first = !sent_between(user, 0, 2, 1).await.is_empty();
    let last = !sent_between(user, OLD as i64, OLD as i64 + 1, 1)
        .await
        .is_empty();
    (first, last)
}

/// Writes `count` delivered messages from 1970 for `peer_id` beside the running broker of
/// `env` (the broker's hidden `preload-history` tool), into its SQLite file or its
/// `PEERS_DB_URL`.
async fn preload(env: &TestEnv, count: u64, peer_id: &str) {
    let mut preload = std::process::Command::new(bin("peers-broker"));
    env.apply(&mut preload)
        .arg("preload-history")
        .arg("--count")
        .arg(count.to_string())
        .arg(peer_id);
    match env.extra.get("PEERS_DB_URL") {
        Some(url) => preload.args(["--db-url", url]),
        None => preload.arg("--db").arg(env.state_dir.join("peers.db")),
    };
    let status = tokio::task::spawn_blocking(move || preload.status())
        .await
        .unwrap()
        .expect("run preload-history");
    assert!(status.success(), "preload-history failed: {status}");
}

async fn pruning_under_load_keeps_every_acknowledged_send(postgres: bool) {
    let mut env = TestEnv::new();
    env.set("PEERS_SWEEP_MS", "100")
        .set("PEERS_RETAIN_DAYS", "1");
    let pg = if postgres {
        let Some(pg) = PgCluster::start() else {
            return;
        };
        env.set("PEERS_DB_URL", pg.create_database("retention"));
        Some(pg)
    } else {
        None
    };
    let mut broker = BrokerProcess::start(&env).await;
    let reader = register(&env, "/w/reader").await;
    let writer = register(&env, "/w/writer").await;
    let user = env.user_client();

    // Senders, and the reader delivering what they send, from before the old mail arrives
    // until after the broker is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut senders = vec![];
    for t in 0..8 {
        let (client, stop, sent) = (writer.client.clone(), stop.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            let mut acked = vec![];
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match client
                    .send(&send_req("reader", format!("load {t} {i}")))
                    .await
                {
                    Ok(s) => {
                        acked.push(s.message_id);
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                    // The broker was killed.
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    let delivering = {
        let (client, stop) = (reader.client.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Ok(c) = client.claim(&ClaimRequest::default()).await else {
                    break;
                };
                let Some(lease_id) = c.lease_id else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let ack = AckRequest {
                    lease_id,
                    via: "PostToolUse".into(),
                    message_ids: None,
                };
                if client.ack(&ack).await.is_err() {
                    break;
                }
            }
        })
    };

    // OLD delivered messages from 1970, written beside the running broker.
    preload(&env, OLD, &reader.reg.peer_id).await;

    // The sweep prunes them oldest first, one batch per transaction: a moment comes when
    // the oldest is gone and the youngest is not, and sends are acknowledged between that
    // moment and the end of the prune.
    let during = eventually(Duration::from_secs(60), "the prune under way", || async {
        let (first, last) = oldest_and_youngest(&user).await;
        (!first && last).then(|| sent.load(Ordering::SeqCst))
    })
    .await;
    eventually(Duration::from_secs(60), "the prune done", || async {
        (oldest_and_youngest(&user).await == (false, false)).then_some(())
    })
    .await;
    let after = sent.load(Ordering::SeqCst);
    assert!(
        after > during,
        "sends went on while the prune ran ({during} before, {after} after)"
    );
    // A few more sends after the prune, then a crash with sends in flight.
    eventually(Duration::from_secs(30), "sends after the prune", || async {
        (sent.load(Ordering::SeqCst) > after + 50).then_some(())
    })
    .await;
    broker.kill9();
    stop.store(true, Ordering::SeqCst);
    let mut acked = vec![];
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    delivering.await.unwrap();

    let _broker = BrokerProcess::start(&env).await;
    for id in &acked {
        let st = user.message_status(*id).await;
        assert!(st.is_ok(), "acknowledged send {id} lost: {st:?}");
    }
    assert!(
        sent_between(&user, 0, OLD as i64 + 1, 10).await.is_empty(),
        "every old delivered message was pruned"
    );
    let stored = sent_between(&user, OLD as i64 + 1, i64::MAX, 10_000).await;
    assert!(
        stored.len() >= acked.len(),
        "{} young messages stored, {} acknowledged",
        stored.len(),
        acked.len()
    );
    eprintln!(
        "{} sends acknowledged, {} of them while {OLD} old messages were pruned",
        acked.len(),
        after - during
    );
    drop(pg);
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pruning_under_load_keeps_every_acknowledged_send() {
        super::pruning_under_load_keeps_every_acknowledged_send(false).await
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pruning_under_load_keeps_every_acknowledged_send() {
        super::pruning_under_load_keeps_every_acknowledged_send(true).await
    }
}

/// `retain_days = 0` keeps delivered mail forever: sweeps run (each expires a message sent
/// with a one-second TTL) and the 1970 mail stays.
#[tokio::test]
async fn retain_days_0_keeps_delivered_mail_forever() {
    let mut env = TestEnv::new();
    env.set("PEERS_SWEEP_MS", "100")
        .set("PEERS_MESSAGE_TTL_SECS", "1")
        .set("PEERS_RETAIN_DAYS", "0");
    let _broker = BrokerProcess::start(&env).await;
    let reader = register(&env, "/w/reader").await;
    let user = env.user_client();
    preload(&env, 5, &reader.reg.peer_id).await;
    // Two sweeps that surely ran whole after the preload: the second expiry comes from a
    // pass that started after the first expiry was seen.
    for label in ["first", "second"] {
        let id = user
            .send(&send_req("reader", label))
            .await
            .unwrap()
            .message_id;
        eventually(Duration::from_secs(10), "a sweep expiring it", || async {
            let s = user.message_status(id).await.unwrap();
            (s.status == MessageState::Expired).then_some(())
        })
        .await;
    }
    assert_eq!(
        sent_between(&user, 0, 6, 10).await.len(),
        5,
        "retain_days = 0 prunes nothing"
    );
}
