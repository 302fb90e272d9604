//! Mail markers (`<state_dir>/mail/<peer_id>`): set after a commit and before the answer,
//! cleared only by an empty claim's delete-then-check, never hiding mail.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_broker::mailmark::PAUSE_ENV;
use peers_core::mailmark::{self, BrokerMark};
use peers_core::wire::ClaimRequest;
use peers_testkit::{BrokerProcess, TestEnv, eventually, peer};

use crate::util::*;

fn marker(env: &TestEnv, peer_id: &str) -> PathBuf {
    mailmark::marker(&env.state_dir, peer_id).expect("a plain peer id")
}

fn claim(max: u32) -> ClaimRequest {
    ClaimRequest {
        max: Some(max),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_send_leaves_a_marker_that_only_an_empty_claim_clears() {
    let (env, mut broker) = broker_with(&[]).await;
    let named = BrokerMark::read(&env.state_dir).expect("the broker wrote mail/.broker");
    assert_eq!(named.pid, broker.pid());
    assert_eq!(named.url, env.url());
    assert!(named.is_live());

    let a = register(&env, "/w/api").await;
    let b = register(&env, "/w/web").await;
    let m = marker(&env, &a.reg.peer_id);
    assert!(!m.exists(), "no mail, no marker");
    b.client.send(&send_req("api", "one")).await.unwrap();
    assert!(m.exists(), "the 200 came after the marker");

    let got = a.client.claim(&claim(10)).await.unwrap();
    assert_eq!(got.messages.len(), 1);
    assert!(
        m.exists(),
        "leased mail keeps its marker (the lease may lapse)"
    );
    ack_all(&a.client, got.lease_id.unwrap(), "PostToolUse").await;
    assert!(m.exists(), "stale until a claim finds nothing");
    let empty = a.client.claim(&claim(10)).await.unwrap();
    assert!(empty.messages.is_empty());
    assert!(!m.exists(), "the empty claim cleared it");
    a.client.claim(&claim(10)).await.unwrap();
    assert!(!m.exists());

    // An ack that releases mail marks it again (the marker is taken away by hand first, so
    // only the ack can have put it back).
    b.client.send(&send_req("api", "two")).await.unwrap();
    let sent3 = b.client.send(&send_req("api", "three")).await.unwrap();
    let got = a.client.claim(&claim(10)).await.unwrap();
    assert_eq!(got.messages.len(), 2);
    std::fs::remove_file(&m).unwrap();
    let part = ack(
        &a.client,
        got.lease_id.unwrap(),
        "PostToolUse",
        Some(vec![got.messages[0].message_id]),
    )
    .await;
    assert_eq!(part.released, 1);
    assert!(m.exists(), "released mail is marked");
    let rest = a.client.claim(&claim(10)).await.unwrap();
    assert_eq!(ids_of(&rest.messages), vec![sent3.message_id]);

    // An empty claim while mail is leased keeps the marker.
    ack_all(&a.client, rest.lease_id.unwrap(), "PostToolUse").await;
    b.client.send(&send_req("api", "four")).await.unwrap();
    let leased = a.client.claim(&claim(10)).await.unwrap();
    assert_eq!(leased.messages.len(), 1);
    let empty = a.client.claim(&claim(10)).await.unwrap();
    assert!(empty.messages.is_empty());
    assert!(
        m.exists(),
        "an empty claim keeps the marker while mail is leased"
    );

    // Sessions of other machines never read markers: none is written for them.
    let remote = register_with(&env, peer::remote("other-machine", 4242, "/w/far")).await;
    b.client.send(&send_req("far", "hello")).await.unwrap();
    assert!(!marker(&env, &remote.reg.peer_id).exists());

    assert!(broker.terminate(), "clean shutdown");
    assert!(
        !mailmark::broker_file(&env.state_dir).exists(),
        "a clean shutdown takes mail/.broker away"
    );
}

#[tokio::test]
async fn start_marks_every_peer_with_waiting_mail_and_drops_stale_markers() {
    let (env, mut broker) = broker_with(&[]).await;
    let a = register(&env, "/w/api").await;
    let b = register(&env, "/w/web").await;
    b.client.send(&send_req("api", "waits")).await.unwrap();
    broker.kill9();
    // Whatever happened to the files meanwhile, the start puts them right.
    std::fs::remove_file(marker(&env, &a.reg.peer_id)).unwrap();
    std::fs::write(marker(&env, &b.reg.peer_id), "").unwrap();
    let broker = BrokerProcess::start(&env).await;
    assert!(marker(&env, &a.reg.peer_id).exists(), "waiting mail marked");
    assert!(
        !marker(&env, &b.reg.peer_id).exists(),
        "stale marker dropped"
    );
    assert_eq!(
        BrokerMark::read(&env.state_dir).map(|m| m.pid),
        Some(broker.pid())
    );
}

#[tokio::test]
async fn a_registration_that_inherits_mail_is_marked() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/api").await;
    let b = register(&env, "/w/web").await;
    b.client
        .send(&send_req("api", "for the next session"))
        .await
        .unwrap();
    let again = register_as(&env, a.claude, "/w/api").await;
    assert_eq!(again.reg.inherited_messages, 1);
    assert_ne!(again.reg.peer_id, a.reg.peer_id);
    assert!(marker(&env, &again.reg.peer_id).exists());
}

#[tokio::test]
async fn leases_that_lapse_are_marked() {
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "100")]).await;
    let a = register(&env, "/w/api").await;
    let b = register(&env, "/w/web").await;
    b.client.send(&send_req("api", "lapses")).await.unwrap();
    let got = a
        .client
        .claim(&ClaimRequest {
            lease_ms: Some(300),
            ..claim(10)
        })
        .await
        .unwrap();
    assert_eq!(got.messages.len(), 1);
    // Taken away by hand: only the sweep's requeue can put it back.
    let m = marker(&env, &a.reg.peer_id);
    std::fs::remove_file(&m).unwrap();
    eventually(
        Duration::from_secs(10),
        "the requeue to mark the mail",
        || {
            let m = m.clone();
            async move { m.exists().then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn a_marker_that_cannot_be_written_turns_markers_off_and_fails_no_send() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/api").await;
    let b = register(&env, "/w/web").await;
    // A non-empty directory where the marker goes: neither root nor anyone can create the
    // file there.
    let m = marker(&env, &a.reg.peer_id);
    std::fs::create_dir_all(m.join("blocked")).unwrap();
    let sent = b.client.send(&send_req("api", "still sent")).await.unwrap();
    assert!(
        !mailmark::broker_file(&env.state_dir).exists(),
        "markers off: every hook asks the broker"
    );
    let got = a.client.claim(&claim(10)).await.unwrap();
    assert_eq!(ids_of(&got.messages), vec![sent.message_id]);
    // Off for the rest of the run: later sends write nothing.
    std::fs::remove_dir_all(&m).unwrap();
    b.client.send(&send_req("api", "later")).await.unwrap();
    assert!(!m.exists());
    assert!(!mailmark::broker_file(&env.state_dir).exists());
}

/// 4 senders × N sends while one claimer loops claim/ack. Every time the claimer finds the
/// marker absent, every message whose send had returned before it looked must already be
/// delivered (by this claimer, the only one). At the end all is delivered and the marker is
/// absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_and_claims_never_hide_mail() {
    const SENDERS: usize = 4;
    let per_sender: usize = std::env::var("PEERS_TEST_MARKER_SENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    // Each empty claim pauses between its two steps: in the wrong order (check, then delete)
    // sends would land in that pause and lose their markers.
    let (env, _broker) = broker_with(&[(PAUSE_ENV, "3")]).await;
    let me = register(&env, "/w/api").await;
    let m = marker(&env, &me.reg.peer_id);
    let returned: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut senders = Vec::new();
    let mut peers = Vec::new();
    for i in 0..SENDERS {
        let p = register(&env, &format!("/w/sender{i}")).await;
        let (client, returned) = (p.client.clone(), returned.clone());
        peers.push(p);
        senders.push(tokio::spawn(async move {
            for n in 0..per_sender {
                let sent = client
                    .send(&send_req("api", format!("s{i} {n}")))
                    .await
                    .unwrap();
                returned.lock().unwrap().insert(sent.message_id);
                // Now and then a pause, so the claimer catches up and empties the queue.
                if n % 10 == 9 {
                    let ms = 10 + 7 * i as u64;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        }));
    }

    let total = SENDERS * per_sender;
    let mut delivered: HashSet<i64> = HashSet::new();
    let (mut absent_checks, mut rounds) = (0u64, 0u64);
    while delivered.len() < total {
        rounds += 1;
        // First what had returned, then the marker: a 200 before the look implies a marker.
        let before: HashSet<i64> = returned.lock().unwrap().clone();
        if !m.exists() {
            absent_checks += 1;
            let hidden: Vec<_> = before.difference(&delivered).collect();
            assert!(
                hidden.is_empty(),
                "marker absent while sent mail was undelivered: {hidden:?}"
            );
        }
        let got = me.client.claim(&claim(50)).await.unwrap();
        if let Some(lease) = got.lease_id {
            ack_all(&me.client, lease, "PostToolUse").await;
            for msg in &got.messages {
                assert!(delivered.insert(msg.message_id), "delivered twice");
            }
        }
        assert!(rounds < 1_000_000, "no progress");
    }
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(delivered, *returned.lock().unwrap());
    let last = me.client.claim(&claim(7)).await.unwrap();
    assert!(last.messages.is_empty());
    assert!(
        !m.exists(),
        "all delivered: the empty claim cleared the marker"
    );
    assert!(me.client.peek().await.unwrap().messages.is_empty());
    eprintln!("{total} sends, {rounds} claim rounds, marker seen absent {absent_checks} times");
}
