//! What is PostgreSQL-specific: batched sends, claims and events across handles, the sweep
//! turn, a server that goes away and comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use peers_store::story::{self, register};
use peers_store::{Claim, NewMessage, NewRegistration, PeerRecord, Store, StoreError, StoreEvent};
use peers_store_postgres::PgStore;
use peers_testkit::eventually;
use peers_testkit::postgres::PgCluster;
use sqlx::Connection;

/// A cluster and the URL of a fresh database in it; `None` when PostgreSQL is missing. The
/// cluster is shared with the tests running at the same time, except for one that stops it.
fn cluster() -> Option<(Arc<PgCluster>, String)> {
    let c = PgCluster::shared()?;
    let url = c.fresh_database();
    Some((c, url))
}

/// A store on `url`, as the broker holds it.
async fn open(url: &str) -> Arc<dyn Store> {
    Arc::new(PgStore::open(url).await.expect("open the database"))
}

/// A message from the human to `to`.
fn msg(to: &PeerRecord, body: &str) -> NewMessage {
    story::from_human(to, body, 1)
}

fn claim(peer: &PeerRecord, lease: &str, max: u32) -> Claim {
    Claim {
        peer_id: peer.id.clone(),
        lease_id: lease.into(),
        max,
        now: 10,
        lease_expires_ms: i64::MAX,
        automatic: None,
    }
}

/// Claims `peer`'s mail `max` at a time (leases `{lease}-0`, `{lease}-1`, …) until nothing is
/// claimable; the ids leased.
async fn claim_until_empty(
    s: &Arc<dyn Store>,
    peer: &PeerRecord,
    lease: &str,
    max: u32,
) -> Vec<i64> {
    let mut got = vec![];
    for round in 0.. {
        let out = s
            .claim(claim(peer, &format!("{lease}-{round}"), max))
            .await
            .unwrap();
        if out.messages.is_empty() && !s.claimable(&peer.id, 10).await.unwrap() {
            break;
        }
        got.extend(out.messages.into_iter().map(|m| m.message_id));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_claiming_at_once_never_lease_one_message_twice() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    let p = register(&one, 10, "/x/a").await;
    for i in 0..400 {
        one.send(msg(&p, &format!("m{i}"))).await.unwrap();
    }
    let mut tasks = vec![];
    for n in 0..8 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            claim_until_empty(&store, &p, &format!("lease-{n}"), 3).await
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a message was leased twice");
    assert_eq!(all.len(), 400, "every message was leased once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_through_one_handle_is_an_event_on_the_other() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    let mut events = one.events().expect("postgres has events");
    let p = register(&two, 10, "/x/a").await;
    next_event(&mut events, |e| *e == StoreEvent::PeersChanged).await;
    two.send(msg(&p, "hello")).await.unwrap();
    let want = StoreEvent::Mail {
        peer_id: p.id.clone(),
    };
    next_event(&mut events, |e| *e == want).await;
}

/// Waits (generously) for an event matching `want`, skipping others.
async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<StoreEvent>,
    want: impl Fn(&StoreEvent) -> bool,
) -> StoreEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("the event arrived")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_handle_at_a_time_has_the_sweep_turn() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    assert!(one.sweep_turn().await.unwrap());
    assert!(!two.sweep_turn().await.unwrap());
    assert!(one.sweep_turn().await.unwrap(), "the holder keeps its turn");
    assert!(!two.sweep_turn().await.unwrap());
    one.close().await;
    drop(one);
    eventually(
        Duration::from_secs(20),
        "the other handle takes the turn",
        || {
            let two = &two;
            async move { two.sweep_turn().await.unwrap().then_some(()) }
        },
    )
    .await;
    // A dropped (not closed) holder gives the turn up too.
    let three = open(&url).await;
    assert!(!three.sweep_turn().await.unwrap());
    drop(two);
    eventually(
        Duration::from_secs(20),
        "the third handle takes the turn",
        || {
            let three = &three;
            async move { three.sweep_turn().await.unwrap().then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_is_unavailable_and_the_store_recovers_when_it_returns() {
    // It stops the server: a cluster of its own.
    let Some(mut pg) = PgCluster::start() else {
        return;
    };
    let url = pg.fresh_database();
    let s = open(&url).await;
    let mut events = s.events().unwrap();
    let p = register(&s, 10, "/x/a").await;
    s.send(msg(&p, "before")).await.unwrap();
    assert!(s.sweep_turn().await.unwrap());
    pg.stop();

    let err = s.send(msg(&p, "while down")).await.unwrap_err();
    match &err {
        StoreError::Unavailable { location, .. } => {
            assert_eq!(location, &peers_core::config::DbUrl::redact(&url));
        }
        e => panic!("a stopped server should be Unavailable, got {e:?}"),
    }
    assert!(matches!(
        s.peer(&p.id).await,
        Err(StoreError::Unavailable { .. })
    ));
    assert!(s.health().unavailable_since.is_some());
    assert!(s.sweep_turn().await.is_err(), "no turn without a server");

    pg.start_again();
    let back = eventually(Duration::from_secs(30), "the store works again", || {
        let (s, p) = (&s, &p);
        async move { s.send(msg(p, "after")).await.ok() }
    })
    .await;
    assert_eq!(back.readers, std::slice::from_ref(&p.id));
    assert_eq!(s.health().unavailable_since, None);
    let bodies: Vec<String> = s
        .waiting(&p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["before", "after"], "nothing was stored while down");
    assert!(s.sweep_turn().await.unwrap(), "the turn is taken again");
    // The listener lost its connection: the broker hears that events were lost.
    next_event(&mut events, |e| *e == StoreEvent::Lagged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_claims_through_two_handles_never_overspend_the_loop_budget() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    let p = register(&one, 10, "/x/a").await;
    for i in 0..100 {
        one.send(msg(&p, &format!("m{i}"))).await.unwrap();
    }
    let limit = 5;
    let mut tasks = vec![];
    for n in 0..16 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = claim(&p, &format!("auto-{n}"), 1);
            c.automatic = Some(peers_store::LoopBudget {
                machine_id: p.machine_id.clone(),
                claude_pid: p.claude_pid,
                limit,
                window_ms: 1_000_000,
                notice: "loop budget used up".into(),
            });
            store.claim(c).await.unwrap()
        }));
    }
    let (mut leased, mut notices) = (0, 0);
    for t in tasks {
        let out = t.await.unwrap();
        leased += out.messages.len();
        notices += usize::from(out.budget_notice);
    }
    assert_eq!(
        leased, limit as usize,
        "the budget allows exactly {limit} turns"
    );
    assert_eq!(
        notices, 1,
        "one claim ran into the budget and recorded its notice"
    );
    let stored = one.notices(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "loop_budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registrations_through_two_handles_at_once_get_distinct_names() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    let mut tasks = vec![];
    for pid in 100..120u32 {
        let store = if pid % 2 == 0 {
            one.clone()
        } else {
            two.clone()
        };
        tasks.push(tokio::spawn(async move {
            register(&store, pid, &format!("/dir{pid}/api")).await.name
        }));
    }
    let mut names = vec![];
    for t in tasks {
        names.push(t.await.unwrap());
    }
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "a name was given twice: {names:?}"
    );
    assert!(names.iter().any(|n| n == "api"));
    assert_eq!(one.count_live().await.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_the_server_refuses_fails_alone_not_with_its_batch() {
    let Some((_pg, url)) = cluster() else { return };
    let s = open(&url).await;
    let p = register(&s, 10, "/x/a").await;
    let mut tasks = vec![];
    for i in 0..64 {
        let (s, p) = (s.clone(), p.clone());
        // PostgreSQL text cannot hold a NUL character: this one send is refused.
        let body = if i == 32 {
            "nul \0 inside".to_string()
        } else {
            format!("m{i}")
        };
        tasks.push(tokio::spawn(
            async move { (i, s.send(msg(&p, &body)).await) },
        ));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i == 32 {
            assert!(matches!(r, Err(StoreError::Internal(_))), "{r:?}");
        } else {
            r.unwrap_or_else(|e| panic!("send {i} failed with the refused one: {e}"));
        }
    }
    assert_eq!(s.pending_count(&p.id).await.unwrap(), 63);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preloaded_history_is_delivered_mail_round_robin_and_claims_nothing() {
    let Some((_pg, url)) = cluster() else { return };
    let s = open(&url).await;
    let a = register(&s, 10, "/x/a").await;
    let b = register(&s, 11, "/x/b").await;
    s.preload_delivered(&[a.id.clone(), b.id.clone()], 1001)
        .await
        .unwrap();
    let to_a = s
        .delivered_to(std::slice::from_ref(&a.id), 0, 10_000)
        .await
        .unwrap();
    let to_b = s
        .delivered_to(std::slice::from_ref(&b.id), 0, 10_000)
        .await
        .unwrap();
    assert_eq!(to_a.len() + to_b.len(), 1001);
    assert!(to_a.len().abs_diff(to_b.len()) <= 1, "round-robin");
    assert_eq!(s.count_pending().await.unwrap(), 0);
    assert!(!s.claimable(&a.id, 10).await.unwrap());
    // Preloaded ids come from the same sequence: a send after them still gets a fresh id.
    let sent = s.send(msg(&a, "new")).await.unwrap();
    assert!(to_a.iter().chain(&to_b).all(|m| m.message_id < sent.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_verify_full_connects_over_tls_to_a_server_with_a_trusted_certificate() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a certificate");
    let Some(pg) = PgCluster::start_tls(&ck.cert.pem(), &ck.signing_key.serialize_pem()) else {
        return;
    };
    let plain = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, ck.cert.pem()).unwrap();
    let tls = |mode: &str| {
        format!(
            "{}?sslmode={mode}&sslrootcert={}",
            plain.replace("127.0.0.1", "localhost"),
            root.display()
        )
    };
    let s = open(&tls("verify-full")).await;
    let p = register(&s, 10, "/x/a").await;
    s.send(msg(&p, "over TLS")).await.unwrap();
    assert_eq!(s.pending_count(&p.id).await.unwrap(), 1);

    // A certificate the client does not trust is refused, not used.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&root, other.cert.pem()).unwrap();
    let refused = PgStore::open(&tls("verify-full")).await;
    assert!(
        refused.is_err(),
        "an untrusted server certificate was accepted"
    );
}

/// A post to 500 readers, each with a 40-character id as the broker makes them: the message
/// and its 500 copies are written by one server transaction (one `xmin`), and the other
/// handle hears a Mail event for every reader, though their ids fill several notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_500_reader_post_is_one_server_transaction_and_mail_for_every_reader_elsewhere() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    let from = register(&one, 10, "/x/lead").await;
    let mut readers = vec![];
    for i in 0..500u32 {
        let peer_id = format!("{i:0>40}");
        let reg = one
            .register(NewRegistration {
                request: story::request(1_000 + 2 * i, &format!("/r/w{i}")),
                token_hash: format!("hash-{peer_id}"),
                peer_id,
                now: story::T0,
            })
            .await
            .expect("register");
        readers.push(reg.peer);
    }
    let mut events = two.events().expect("postgres has events");
    let wake: Vec<(&PeerRecord, bool)> = readers.iter().map(|p| (p, true)).collect();
    let sent = one
        .send(story::post(
            &from,
            "big",
            &wake,
            "main is red",
            story::T0 + 1,
        ))
        .await
        .unwrap();
    assert_eq!(sent.readers.len(), 500);

    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let (copies, writers): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT x) FROM (SELECT xmin::text AS x FROM messages \
         WHERE id = $1 UNION ALL SELECT xmin::text FROM deliveries WHERE message_id = $1) t",
    )
    .bind(sent.id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(copies, 501, "the message and its 500 copies");
    assert_eq!(writers, 1, "written by one transaction");

    let mut unheard: HashSet<String> = readers.iter().map(|p| p.id.clone()).collect();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !unheard.is_empty() {
            match events.recv().await {
                Ok(StoreEvent::Mail { peer_id }) => {
                    unheard.remove(&peer_id);
                }
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no Mail event for {} readers", unheard.len()));
}

/// Brokers race to create topics: first posts and first subscriptions to the same new topics
/// through two handles at once all succeed, and each topic exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_posts_and_subscriptions_through_two_handles_create_each_topic_once() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    let from = register(&one, 10, "/x/lead").await;
    let reader = register(&one, 12, "/x/worker").await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32u32 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        let (from, reader) = (from.clone(), reader.clone());
        let topic = format!("t{}", n % 4);
        tasks.spawn(async move {
            if n % 3 == 0 {
                store
                    .subscribe(peers_store::Subscribe {
                        peer_id: reader.id.clone(),
                        topic,
                        wake: Some(n % 2 == 0),
                        mute: None,
                        now: story::T0 + n as i64,
                    })
                    .await
                    .map(|_| ())
            } else {
                let post = story::post(&from, &topic, &[(&reader, true)], "x", story::T0);
                store.send(post).await.map(|_| ())
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("a racing first post or subscription");
    }
    let topics: Vec<String> = one
        .topics(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.topic)
        .collect();
    assert_eq!(topics, ["t0", "t1", "t2", "t3"]);
    let subs = two.subscriptions(&reader.id).await.unwrap();
    assert!(!subs.is_empty() && subs.len() <= 4, "{subs:?}");
}

/// A post's readers claim through two handles at once, several claimers each: every reader
/// gets its own copy exactly once, and only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_claiming_a_post_through_two_handles_get_their_copy_once() {
    let Some((_pg, url)) = cluster() else { return };
    let one = open(&url).await;
    let two = open(&url).await;
    let from = register(&one, 10, "/x/lead").await;
    let mut readers = vec![];
    for i in 0..20u32 {
        readers.push(register(&one, 100 + 2 * i, &format!("/r/w{i}")).await);
    }
    let wake: Vec<(&PeerRecord, bool)> = readers.iter().map(|p| (p, false)).collect();
    let mut posts = vec![];
    for i in 0..5 {
        let sent = one
            .send(story::post(&from, "t", &wake, &format!("p{i}"), story::T0))
            .await
            .unwrap();
        posts.push(sent.id);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (r, reader) in readers.iter().enumerate() {
        for n in 0..4 {
            let store = if n % 2 == 0 { one.clone() } else { two.clone() };
            let reader = reader.clone();
            tasks.spawn(async move {
                (
                    r,
                    claim_until_empty(&store, &reader, &format!("l-{r}-{n}"), 2).await,
                )
            });
        }
    }
    let mut per_reader = vec![vec![]; readers.len()];
    while let Some(done) = tasks.join_next().await {
        let (r, got) = done.unwrap();
        per_reader[r].extend(got);
    }
    for (r, mut got) in per_reader.into_iter().enumerate() {
        got.sort_unstable();
        assert_eq!(got, posts, "reader {r} got each post's copy exactly once");
    }
    for id in posts {
        let (st, _) = one.status(id, false).await.unwrap().unwrap();
        assert!(
            st.readers
                .iter()
                .all(|r| r.status == peers_core::wire::MessageState::Leased),
            "every copy leased by its own reader: {:?}",
            st.readers
        );
    }
}

/// Two readers of one post that turn out to be one registration (the first was replaced by
/// the second after the broker chose them) share one copy: the reader gets the post once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_that_are_one_registration_get_one_copy() {
    let Some((_pg, url)) = cluster() else { return };
    let s = open(&url).await;
    let from = register(&s, 10, "/x/lead").await;
    let old = register(&s, 12, "/x/worker").await;
    let new = register(&s, 12, "/x/worker").await;
    assert_ne!(old.id, new.id, "the same process registered again");
    let sent = s
        .send(story::post(
            &from,
            "t",
            &[(&old, true), (&new, true)],
            "once",
            story::T0,
        ))
        .await
        .unwrap();
    assert_eq!(sent.readers, [new.id.clone(), new.id.clone()]);
    assert_eq!(s.pending_count(&new.id).await.unwrap(), 1, "one copy");
    let (st, _) = s.status(sent.id, false).await.unwrap().unwrap();
    assert_eq!(st.delivered_of(), (0, 1));
}
