//! Two brokers on one PostgreSQL database (`PEERS_DB_URL`), over real HTTP: what one stores
//! the other serves; a long poll on one is woken by a send through the other (within the
//! issue's 100 ms); a local session that ends is marked gone whichever broker has the sweep
//! turn; and when one broker is killed under load, clients fail over to the other with every
//! acknowledged send delivered exactly once. Skipped loudly without PostgreSQL.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peers_core::BrokerClient;
use peers_core::client::Timeouts;
use peers_core::wire::{ClaimRequest, WaitQuery};
use peers_testkit::peer;
use peers_testkit::postgres::PgCluster;
use peers_testkit::{BrokerProcess, TestEnv, fake_claude};

use crate::util::{ack_all, register, send_req, until_listed};

/// A broker environment on database `url`; `like` gives it the secret and machine id of
/// another, as brokers of one user on one machine share them.
pub fn env_on(url: &str, like: Option<&TestEnv>) -> TestEnv {
    let mut env = TestEnv::new();
    env.set("PEERS_DB_URL", url);
    if let Some(other) = like {
        std::fs::create_dir_all(&env.state_dir).unwrap();
        for file in [
            peers_core::paths::secret_file(&other.state_dir),
            peers_core::paths::machine_id_file(&other.state_dir),
        ] {
            let to = env.state_dir.join(file.file_name().unwrap());
            std::fs::copy(&file, &to).unwrap();
        }
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_database_serve_one_mailbox_and_wake_each_other() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database("two_brokers");
    let a_env = env_on(&url, None);
    let _a = BrokerProcess::start(&a_env).await;
    let b_env = env_on(&url, Some(&a_env));
    let _b = BrokerProcess::start(&b_env).await;

    // Registered through A; a client of B with the same token is the same peer.
    let api = register(&a_env, "/work/api").await;
    let web = register(&a_env, "/work/web").await;
    let api_on_b = BrokerClient::new(&b_env.url(), Some(api.reg.token.clone()));
    let listed = b_env
        .user_client()
        .find_peer("api")
        .await
        .expect("B knows api");
    assert_eq!(listed.peer_id, api.reg.peer_id);

    // A long poll on B, woken by a send through A.
    let waiter = {
        let api_on_b = api_on_b.clone();
        tokio::spawn(async move {
            api_on_b
                .wait(&WaitQuery {
                    timeout_ms: Some(300_000),
                })
                .await
        })
    };
    let sent = web
        .client
        .send(&send_req("api", "through broker A"))
        .await
        .expect("send through A");
    let woke = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the wait on B ended long before its 5-minute timeout")
        .unwrap()
        .expect("wait");
    assert!(woke.mail, "B's long poll saw the mail A stored");

    // Claimed and acked through B, delivered as far as A can tell.
    let claim = api_on_b.claim(&ClaimRequest::default()).await.unwrap();
    let bodies: Vec<&str> = claim.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["through broker A"]);
    let lease = claim.lease_id.clone().expect("a lease");
    assert_eq!(ack_all(&api_on_b, lease, "Stop").await, 1);
    let status = a_env
        .user_client()
        .message_status(sent.message_id)
        .await
        .unwrap();
    assert_eq!(
        status.status,
        peers_core::wire::MessageState::Delivered,
        "A sees the ack made through B"
    );
    drop(pg);
}

/// The wake through another broker, timed: the best of three rounds is held to the issue's
/// 100 ms, so one scheduling pause on a loaded machine does not decide. Without
/// LISTEN/NOTIFY the long poll runs to its 10 s timeout without mail and the test fails on
/// that, not on the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_woken_within_100_ms_of_a_send_through_the_other_broker() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.fresh_database();
    let a_env = env_on(&url, None);
    let _a = BrokerProcess::start(&a_env).await;
    let b_env = env_on(&url, Some(&a_env));
    let _b = BrokerProcess::start(&b_env).await;
    let web = register(&a_env, "/work/web").await;
    let web_on_b = BrokerClient::new(&b_env.url(), Some(web.reg.token.clone()));
    let mut best = Duration::MAX;
    for round in 0..3 {
        let waiter = tokio::spawn({
            let web_on_b = web_on_b.clone();
            async move {
                let r = web_on_b
                    .wait(&WaitQuery {
                        timeout_ms: Some(10_000),
                    })
                    .await
                    .expect("wait");
                (r, Instant::now())
            }
        });
        // Let the long poll arm on B.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        a_env
            .user_client()
            .send(&send_req("web", format!("wake {round}")))
            .await
            .expect("send through A");
        let (r, woken) = waiter.await.unwrap();
        assert!(
            r.mail,
            "round {round}: B's long poll ended without mail: {r:?}"
        );
        best = best.min(woken - t0);
        let c = web.client.claim(&ClaimRequest::default()).await.unwrap();
        ack_all(&web.client, c.lease_id.unwrap(), "test").await;
    }
    assert!(
        best < Duration::from_millis(100),
        "a send through A woke B's long poll after {best:?} at best"
    );
}

/// The session is local to broker A's machine; broker B (another machine id) holds the sweep
/// turn and can only judge it by heartbeats, which a leftover MCP server may keep sending.
/// A must still see the process end and mark it gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_session_that_ends_is_gone_whoever_has_the_sweep_turn() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.fresh_database();
    let mut b_env = env_on(&url, None);
    b_env.set("PEERS_SWEEP_MS", "100");
    let _b = BrokerProcess::start(&b_env).await;
    // B takes the turn at its first sweep, before A starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut a_env = env_on(&url, None);
    a_env.set("PEERS_SWEEP_MS", "100");
    let _a = BrokerProcess::start(&a_env).await;
    let mut claude = fake_claude();
    // A session of A's machine, registered through B.
    let req = peer::request(&a_env, claude.pid(), "/work/api");
    let reg = b_env.user_client().register(&req).await.expect("register");
    let user = a_env.user_client();
    until_listed(&user, "the session listed", |p| {
        p.iter().any(|p| p.peer_id == reg.peer_id)
    })
    .await;
    claude.kill();
    until_listed(&user, "the ended session marked gone", |p| {
        !p.iter().any(|p| p.peer_id == reg.peer_id)
    })
    .await;
}

/// Four senders, two on each broker, each with a client of both URLs; broker A is killed
/// with kill -9 in the middle. Sends in flight then fail (never resent: a resend could
/// duplicate); every acknowledged one is delivered exactly once, through B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_under_load_loses_and_repeats_nothing() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let url = pg.fresh_database();
    let mut a_env = env_on(&url, None);
    a_env.set("PEERS_LEASE_MS", "1000");
    let mut a = BrokerProcess::start(&a_env).await;
    let mut b_env = env_on(&url, Some(&a_env));
    b_env.set("PEERS_LEASE_MS", "1000");
    let _b = BrokerProcess::start(&b_env).await;
    let urls = [a_env.url(), b_env.url()];
    let failover = |token: &str, first: usize| {
        let order = [urls[first].clone(), urls[1 - first].clone()];
        BrokerClient::with_failover(&order, Some(token.to_string()), Timeouts::default())
    };
    let inbox = register(&a_env, "/work/inbox").await;

    let acked: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = vec![];
    for s in 0..4 {
        let sender = register(&a_env, &format!("/work/sender{s}")).await;
        let client = failover(&sender.reg.token, s % 2);
        let (acked, stop) = (acked.clone(), stop.clone());
        senders.push((
            sender,
            tokio::spawn(async move {
                let (mut n, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("s{s} m{n}");
                    match client.send(&send_req("inbox", body.as_str())).await {
                        Ok(sent) => {
                            acked.lock().unwrap().insert(body, sent.message_id);
                        }
                        // In flight when A died: not acknowledged, stored or not.
                        Err(_) => failed += 1,
                    }
                    n += 1;
                }
                failed
            }),
        ));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_kill = acked.lock().unwrap().len();
    a.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for (_, task) in senders {
        failed += task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(before_kill > 0, "no send acknowledged before the kill");
    assert!(
        acked.len() > before_kill + 10,
        "only {} sends acknowledged after A was killed ({before_kill} before, {failed} failed): \
         the clients did not fail over",
        acked.len() - before_kill
    );

    // The recipient reads everything through a client whose first URL is the dead broker.
    let reader = failover(&inbox.reg.token, 0);
    let mut shown: BTreeMap<String, u32> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = reader
            .claim(&ClaimRequest {
                max: Some(1000),
                ..Default::default()
            })
            .await
            .expect("claim through the failover client");
        if c.messages.is_empty() {
            // A lease taken through A just before it died lapses after 1 s.
            if acked.keys().all(|b| shown.contains_key(b)) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for m in &c.messages {
            *shown.entry(m.body.clone()).or_default() += 1;
        }
        ack_all(&reader, c.lease_id.unwrap(), "test").await;
    }
    let missing: Vec<&String> = acked.keys().filter(|b| !shown.contains_key(*b)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged sends never delivered, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<(&String, &u32)> = shown.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_refused_naming_the_field_on_postgres_too() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let env = env_on(&pg.fresh_database(), None);
    let _broker = BrokerProcess::start(&env).await;
    crate::util::nul_is_refused_and_nothing_stored(&env).await;
}
