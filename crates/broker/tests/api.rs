//! The broker as a process: real HTTP, a real SQLite file, the peers-core client.

use std::collections::HashSet;
use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::wire::*;
use peers_testkit::{BrokerProcess, TestEnv, bin, eventually};

use crate::util::{
    ack, ack_all, broker_with, ids_of, listed, register, register_as, send_numbered, send_req,
    until_listed,
};

#[tokio::test]
async fn every_call_round_trips() {
    let (env, _broker) = broker_with(&[]).await;
    let user = env.user_client();

    let h = user.health().await.unwrap();
    assert!(h.ok);
    assert_eq!(h.version, peers_core::VERSION);

    let a = register(&env, "/work/Alpha Repo").await;
    let b = register(&env, "/work/beta").await;
    assert_eq!(a.reg.name, "alpha-repo");
    assert_eq!(a.reg.address, "alpha-repo@box");
    assert_eq!(b.reg.name, "beta");

    // Heartbeat and summary.
    let hb = a.client.heartbeat().await.unwrap();
    assert_eq!((hb.name.as_str(), hb.queued), ("alpha-repo", 0));
    a.client
        .set_summary("refactoring the parser")
        .await
        .unwrap();

    // Listing: a peer does not see itself; the human sees everyone.
    let seen_by_b = b
        .client
        .list_peers(&ListPeersQuery::default())
        .await
        .unwrap();
    assert_eq!(seen_by_b.peers.len(), 1);
    assert_eq!(seen_by_b.peers[0].name, "alpha-repo");
    assert_eq!(
        seen_by_b.peers[0].summary.as_deref(),
        Some("refactoring the parser")
    );
    assert!(seen_by_b.peers[0].alive);
    let dir_scope = b
        .client
        .list_peers(&ListPeersQuery {
            scope: Scope::Directory,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(dir_scope.peers.is_empty(), "alpha is in another directory");
    assert_eq!(listed(&user).await.len(), 2);

    // Find by id, name and name@host, case-insensitively.
    for who in [a.reg.peer_id.as_str(), "ALPHA-repo", "Alpha-Repo@BOX"] {
        assert_eq!(
            b.client.find_peer(who).await.unwrap().peer_id,
            a.reg.peer_id,
            "{who}"
        );
    }

    // Send by each form; the sender is the token's peer.
    let mut ids = vec![];
    for who in [a.reg.peer_id.as_str(), "ALPHA-REPO", "alpha-repo@Box"] {
        let sent = b
            .client
            .send(&send_req(who, format!("hi via {who}")))
            .await
            .unwrap();
        assert_eq!(sent.to, "alpha-repo@box");
        assert_eq!(sent.status, MessageState::Queued);
        assert!(sent.recipient_alive);
        ids.push(sent.message_id);
    }
    let st = b.client.message_status(ids[0]).await.unwrap();
    assert_eq!(
        (st.status, st.from.as_str()),
        (MessageState::Queued, "beta@box")
    );

    // Peek consumes nothing; claim leases in send order; ack delivers.
    assert_eq!(a.client.peek().await.unwrap().messages.len(), 3);
    let claim = a.client.claim(&ClaimRequest::default()).await.unwrap();
    let got = ids_of(&claim.messages);
    assert_eq!(got, ids);
    assert_eq!(claim.messages[0].from, "beta@box");
    assert_eq!(claim.messages[0].from_cwd.as_deref(), Some("/work/beta"));
    assert_eq!(claim.messages[0].from_kind, SenderKind::Peer);
    // Leased mail is still "queued" to the sender.
    assert_eq!(
        b.client.message_status(ids[0]).await.unwrap().status,
        MessageState::Queued
    );
    let acked = ack(
        &a.client,
        claim.lease_id.clone().unwrap(),
        "PostToolUse",
        None,
    )
    .await;
    assert_eq!((acked.delivered, acked.released), (3, 0));
    let st = b.client.message_status(ids[0]).await.unwrap();
    assert_eq!(st.status, MessageState::Delivered);
    assert_eq!(st.delivered_via.as_deref(), Some("PostToolUse"));
    assert!(st.delivered_at_ms.unwrap() >= st.sent_at_ms);
    assert!(a.client.peek().await.unwrap().messages.is_empty());
    let history = a.client.history(&Default::default()).await.unwrap();
    assert_eq!(history.messages.len(), 3);

    // A reply links back.
    let reply = a
        .client
        .send(&SendRequest {
            tags: vec![],
            to: "beta".into(),
            message: "got it".into(),
            reply_to: Some(ids[0]),
            scope: None,
        })
        .await
        .unwrap();
    let st = b.client.message_status(ids[0]).await.unwrap();
    assert_eq!(st.replies, vec![reply.message_id]);

    // The human sends as you@host and reads the log.
    let human = user
        .send(&send_req("beta", "from the human"))
        .await
        .unwrap();
    let log = user.messages(&Default::default()).await.unwrap();
    assert_eq!(log.messages.len(), 5);
    assert_eq!(log.messages[0].message_id, human.message_id);
    assert_eq!(log.messages[0].from_kind, SenderKind::Human);
    assert!(log.messages[0].from.starts_with("you@"));
    let from_a = user
        .messages(&HistoryQuery {
            tag: None,
            project: None,
            until_ms: None,
            status: None,
            from: Some("alpha-repo".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(from_a.messages.len(), 1);

    // A peer cannot read other peers' messages or human-only calls.
    let c = register(&env, "/work/gamma").await;
    let err = c.client.message_status(ids[0]).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        c.client
            .messages(&Default::default())
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );

    // Unregister: gone from the list, its waiting mail kept.
    let bye = b.client.unregister().await.unwrap();
    assert_eq!(bye.queued, 2, "the reply and the human's message wait");
    let names: Vec<String> = listed(&user).await.into_iter().map(|p| p.name).collect();
    assert!(!names.contains(&"beta".to_string()), "{names:?}");
    assert!(user.notices().await.unwrap().notices.is_empty());
    drop((a.claude, b.claude, c.claude));
}

#[tokio::test]
async fn names_are_unique_among_live_peers() {
    let (env, _broker) = broker_with(&[]).await;
    let one = register(&env, "/a/api").await;
    let two = register(&env, "/b/API").await;
    let three = register(&env, "/c/Api").await;
    assert_eq!(
        (
            one.reg.name.as_str(),
            two.reg.name.as_str(),
            three.reg.name.as_str()
        ),
        ("api", "api-2", "api-3")
    );
}

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_message() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let sender = env.user_client();
    let mut seen: HashSet<i64> = HashSet::new();
    let mut sent_total = 0;
    for round in 0..40 {
        let mut sent = HashSet::new();
        for i in 0..5 {
            let r = sender
                .send(&send_req("a", format!("r{round} m{i}")))
                .await
                .unwrap();
            sent.insert(r.message_id);
        }
        sent_total += sent.len();
        // Four claimers race for one inbox.
        let mut tasks = vec![];
        for _ in 0..4 {
            let c = a.client.clone();
            tasks.push(tokio::spawn(async move {
                c.claim(&ClaimRequest {
                    max: Some(2),
                    ..Default::default()
                })
                .await
                .unwrap()
            }));
        }
        let mut got = vec![];
        for t in tasks {
            let claim = t.await.unwrap();
            got.extend(ids_of(&claim.messages));
            if let Some(lease) = claim.lease_id {
                ack_all(&a.client, lease, "test").await;
            }
        }
        // Whatever was left (4 claimers x 2 may cover only part), claim it now.
        let rest = a.client.claim(&ClaimRequest::default()).await.unwrap();
        got.extend(ids_of(&rest.messages));
        if let Some(lease) = rest.lease_id {
            ack_all(&a.client, lease, "test").await;
        }
        for id in &got {
            assert!(seen.insert(*id), "message {id} was handed out twice");
        }
        assert_eq!(
            got.iter().copied().collect::<HashSet<_>>(),
            sent,
            "round {round}"
        );
    }
    assert_eq!(seen.len(), sent_total);
}

#[tokio::test]
async fn an_unacked_lease_comes_back_and_a_partial_ack_releases_the_rest() {
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "100")]).await;
    let a = register(&env, "/w/a").await;
    let user = env.user_client();
    let m1 = user.send(&send_req("a", "one")).await.unwrap().message_id;
    let m2 = user.send(&send_req("a", "two")).await.unwrap().message_id;

    let short_lease = ClaimRequest {
        lease_ms: Some(300),
        ..Default::default()
    };
    let first = a.client.claim(&short_lease).await.unwrap();
    assert_eq!(first.messages.len(), 2);
    // While leased, nobody else gets it.
    let meanwhile = a.client.claim(&ClaimRequest::default()).await.unwrap();
    assert!(meanwhile.messages.is_empty());
    // The claimer "died": after the lease lapses the mail is claimable again.
    let again = eventually(Duration::from_secs(5), "lease to lapse", || {
        let c = a.client.clone();
        async move {
            let r = c.claim(&ClaimRequest::default()).await.unwrap();
            (!r.messages.is_empty()).then_some(r)
        }
    })
    .await;
    assert_eq!(again.messages.len(), 2);

    // Only the first was shown: the second goes straight back to the queue.
    let partial = ack(
        &a.client,
        again.lease_id.unwrap(),
        "PostToolUse",
        Some(vec![m1]),
    )
    .await;
    assert_eq!((partial.delivered, partial.released), (1, 1));
    let left = a.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(ids_of(&left.messages), vec![m2]);
    // The stale first lease acks nothing twice.
    let stale = ack(&a.client, first.lease_id.unwrap(), "late", None).await;
    assert_eq!(stale.delivered, 0);
    assert_eq!(
        user.message_status(m1)
            .await
            .unwrap()
            .delivered_via
            .as_deref(),
        Some("PostToolUse")
    );
}

#[tokio::test]
async fn reregistering_keeps_the_name_and_the_mail() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/api").await;
    let _other = register(&env, "/w2/api").await; // holds api-2
    let user = env.user_client();
    let m = user
        .send(&send_req("api", "waiting for you"))
        .await
        .unwrap()
        .message_id;

    // The same Claude Code process registers again (its MCP server restarted).
    let again = register_as(&env, a.claude, "/w/api").await;
    assert_eq!(again.reg.name, "api");
    assert_ne!(again.reg.peer_id, a.reg.peer_id);
    assert_eq!(again.reg.inherited_messages, 1);
    let claim = again.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(claim.messages[0].message_id, m);
    // The old token is dead.
    assert_eq!(a.client.heartbeat().await.unwrap_err().status(), Some(401));
    // Sending to the old id reaches the new registration.
    let sent = user
        .send(&send_req(&a.reg.peer_id, "by old id"))
        .await
        .unwrap();
    assert_eq!(sent.to_peer_id, again.reg.peer_id);
}

#[tokio::test]
async fn an_ended_session_keeps_its_mail_for_the_next_one_in_that_directory() {
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "100")]).await;
    let mut a = register(&env, "/w/api").await;
    let user = env.user_client();
    a.claude.kill();
    until_listed(&user, "peer marked gone", |peers| peers.is_empty()).await;
    // Mail to the ended session is accepted and waits.
    let sent = user
        .send(&send_req("api", "for whoever works here next"))
        .await
        .unwrap();
    assert!(!sent.recipient_alive);
    let gone = user
        .list_peers(&ListPeersQuery {
            include_gone: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(gone.peers[0].queued, 1);
    assert!(!gone.peers[0].alive);

    let next = register(&env, "/w/api").await;
    assert_eq!(next.reg.name, "api");
    assert_eq!(next.reg.inherited_messages, 1);
    let claim = next.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(claim.messages[0].message_id, sent.message_id);
}

#[tokio::test]
async fn mail_expires_after_the_ttl_and_the_sender_sees_it() {
    let (env, _broker) =
        broker_with(&[("PEERS_SWEEP_MS", "100"), ("PEERS_MESSAGE_TTL_SECS", "1")]).await;
    let _a = register(&env, "/w/a").await;
    let b = register(&env, "/w/b").await;
    let id = b
        .client
        .send(&send_req("a", "soon stale"))
        .await
        .unwrap()
        .message_id;
    let st = eventually(Duration::from_secs(10), "message to expire", || {
        let c = b.client.clone();
        async move {
            let s = c.message_status(id).await.unwrap();
            (s.status == MessageState::Expired).then_some(s)
        }
    })
    .await;
    assert!(st.expires_at_ms <= peers_core::now_ms());
}

#[tokio::test]
async fn bad_credentials_change_nothing() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let b = register(&env, "/w/b").await;
    let before = env
        .user_client()
        .messages(&Default::default())
        .await
        .unwrap();

    for auth in [
        None,
        Some("wrong"),
        Some("deadbeef.0000"),
        Some(&*format!("{}.x", a.reg.peer_id)),
    ] {
        let c = BrokerClient::new(&env.url(), auth.map(str::to_string));
        let e = c.send(&send_req("a", "intruder")).await.unwrap_err();
        assert_eq!(e.status(), Some(401), "{auth:?}");
        assert_eq!(e.code(), Some(ErrorCode::Unauthorized));
        let e = c.claim(&ClaimRequest::default()).await.unwrap_err();
        assert_eq!(e.status(), Some(401));
        let e = c
            .register(&RegisterRequest {
                claude_pid: 1,
                mcp_pid: 1,
                machine_id: "m".into(),
                host: "h".into(),
                cwd: "/x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(401));
    }
    // A peer token cannot register or shut the broker down.
    assert_eq!(b.client.shutdown().await.unwrap_err().status(), Some(403));
    let after = env
        .user_client()
        .messages(&Default::default())
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(listed(&env.user_client()).await.len(), 2);
    assert!(env.user_client().health().await.unwrap().ok);
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let http = raw_http();
    let url = format!("{}/v1/messages", env.url());

    // A POST of `body` typed `content_type`, with a's token.
    let post = |content_type: &str, body: &'static str| {
        http.post(&url)
            .bearer_auth(&a.reg.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    // A web page's simple POST (text/plain) is refused before anything is read.
    let r = post("text/plain", r#"{"to":"a","message":"x"}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.error.code, ErrorCode::UnsupportedMediaType);

    // Malformed JSON: 400 with a message.
    let r = post("application/json", "{\"to\": ").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.error.code, ErrorCode::BadRequest);
    assert!(
        body.error.message.contains("JSON"),
        "{}",
        body.error.message
    );

    // Wrong shape: 400 naming the field.
    let r = http
        .post(&url)
        .bearer_auth(&a.reg.token)
        .json(&serde_json::json!({"to": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: ErrorBody = r.json().await.unwrap();
    assert!(
        body.error.message.contains("message"),
        "{}",
        body.error.message
    );

    // Exactly at the limit is fine. (Checked before the oversize sends: the broker answers
    // those 413 without reading the rest and closes the connection, and a pooled client can
    // race that close on its next request.)
    a.client
        .send(&send_req("a", "y".repeat(DEFAULT_MAX_MESSAGE_BYTES)))
        .await
        .unwrap();
    // Oversize: 413, both just over the message limit and far over the body limit.
    for size in [DEFAULT_MAX_MESSAGE_BYTES + 1, DEFAULT_MAX_MESSAGE_BYTES * 4] {
        let e = a
            .client
            .send(&send_req("a", "x".repeat(size)))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(413), "size {size}");
        assert_eq!(e.code(), Some(ErrorCode::PayloadTooLarge));
    }

    // Unknown recipient: 404 naming the peers that exist.
    let e = a
        .client
        .send(&send_req("nobody", "hello?"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(404), Some(ErrorCode::UnknownPeer))
    );
    assert!(e.to_string().contains("a@box"), "{e}");

    // Unknown route: JSON 404.
    let r = http
        .get(format!("{}/v1/nope", env.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let _: ErrorBody = r.json().await.unwrap();
}

#[tokio::test]
async fn an_acknowledged_send_survives_kill_9() {
    let (env, mut broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let user = env.user_client();
    let ids = send_numbered(&user, "a", "durable", 20).await;
    broker.kill9();
    let _broker = BrokerProcess::start(&env).await;
    let claim = a.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(ids_of(&claim.messages), ids);
}

#[tokio::test]
async fn the_waiter_wakes_on_mail_and_is_superseded_by_a_newer_one() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let user = env.user_client();

    // A waiter for `a`'s mail, answering after `timeout_ms` at the latest.
    let wait = |timeout_ms: u64| {
        let c = a.client.clone();
        tokio::spawn(async move {
            c.wait(&WaitQuery {
                timeout_ms: Some(timeout_ms),
            })
            .await
            .unwrap()
        })
    };
    let waiting = wait(20_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    user.send(&send_req("a", "wake up")).await.unwrap();
    let woke = waiting.await.unwrap();
    println!("wait returned {:?} after the send", started.elapsed());
    assert!(woke.mail && !woke.superseded && woke.queued == 1);

    // Drain, then two waiters: the older is superseded.
    let claim = a.client.claim(&ClaimRequest::default()).await.unwrap();
    ack_all(&a.client, claim.lease_id.unwrap(), "test").await;
    let older = wait(20_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let newer = wait(1_000);
    let older = older.await.unwrap();
    assert!(older.superseded && !older.mail);
    let newer = newer.await.unwrap();
    assert!(
        !newer.superseded && !newer.mail,
        "times out quietly: {newer:?}"
    );
}

#[tokio::test]
async fn automatic_claims_stop_at_the_loop_budget_and_tell_the_human() {
    let (env, _broker) = broker_with(&[("PEERS_LOOP_BUDGET", "3")]).await;
    let a = register(&env, "/w/a").await;
    let user = env.user_client();
    let auto = ClaimRequest {
        automatic: true,
        ..Default::default()
    };
    // No mail: an automatic claim spends nothing.
    for _ in 0..5 {
        assert!(!a.client.claim(&auto).await.unwrap().budget_exhausted);
    }
    for i in 0..3 {
        user.send(&send_req("a", format!("ping {i}")))
            .await
            .unwrap();
        let c = a.client.claim(&auto).await.unwrap();
        assert_eq!(c.messages.len(), 1, "within budget");
        ack_all(&a.client, c.lease_id.unwrap(), "Stop").await;
    }
    user.send(&send_req("a", "one too many")).await.unwrap();
    let c = a.client.claim(&auto).await.unwrap();
    assert!(c.budget_exhausted && c.messages.is_empty());
    let _ = a.client.claim(&auto).await.unwrap();
    let notices = user.notices().await.unwrap().notices;
    assert_eq!(notices.len(), 1, "one notice per window: {notices:?}");
    assert_eq!(notices[0].kind, "loop_budget");
    assert!(notices[0].text.contains("a@box"), "{}", notices[0].text);
    // A non-automatic claim (the user's next prompt) still gets the mail.
    let c = a.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(c.messages.len(), 1);
}

#[tokio::test]
async fn one_broker_per_state_dir_and_clear_start_errors() {
    let (env, mut broker) = broker_with(&[]).await;

    // A second start on the same state dir says so and exits 0.
    let mut cmd = std::process::Command::new(bin("peers-broker"));
    let out = env.apply(&mut cmd).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));

    // Another state dir on the same port: the port is taken.
    let mut other = TestEnv::new();
    other.port = env.port;
    let mut cmd = std::process::Command::new(bin("peers-broker"));
    let out = other.apply(&mut cmd).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--port"), "{err}");

    // A port held by some other program.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut third = TestEnv::new();
    third.port = squatter.local_addr().unwrap().port();
    let mut cmd = std::process::Command::new(bin("peers-broker"));
    let out = third.apply(&mut cmd).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken by another program"));

    // Beyond loopback without a hub token: refused.
    let mut cmd = std::process::Command::new(bin("peers-broker"));
    let out = third
        .apply(&mut cmd)
        .args(["--bind", "0.0.0.0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hub token"));

    // SIGTERM: a clean exit.
    assert!(broker.terminate(), "broker exits on SIGTERM");
}

#[tokio::test]
async fn shutdown_through_the_api() {
    let (env, mut broker) = broker_with(&[]).await;
    assert!(env.user_client().shutdown().await.unwrap().shutting_down);
    let status = broker.child.wait_timeout(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test]
async fn a_dead_session_is_swept_by_its_claude_pid() {
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "100")]).await;
    let mut a = register(&env, "/w/a").await;
    let b = register(&env, "/w/b").await;
    assert_eq!(listed(&b.client).await.len(), 1);
    a.claude.kill();
    until_listed(&b.client, "a to disappear", |peers| peers.is_empty()).await;
    // b's own process lives, so b stays.
    assert!(b.client.heartbeat().await.is_ok());
    assert_eq!(env.user_client().health().await.unwrap().peers_alive, 1);
}

#[tokio::test]
async fn tokens_die_with_their_session_and_leases_belong_to_their_peer() {
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "100")]).await;
    let a = register(&env, "/w/a").await;
    let b = register(&env, "/w/b").await;
    let user = env.user_client();

    // b cannot ack a's lease, even knowing its id.
    user.send(&send_req("a", "for a only")).await.unwrap();
    let claim = a.client.claim(&ClaimRequest::default()).await.unwrap();
    let lease = claim.lease_id.unwrap();
    let stolen = ack(&b.client, lease.clone(), "theft", None).await;
    assert_eq!(stolen.delivered, 0);
    let st = user
        .message_status(claim.messages[0].message_id)
        .await
        .unwrap();
    assert_eq!(st.status, MessageState::Queued);

    // Unregistering revokes the token: no heartbeat brings the peer back.
    b.client.unregister().await.unwrap();
    assert_eq!(b.client.heartbeat().await.unwrap_err().status(), Some(401));
    assert_eq!(
        b.client
            .send(&send_req("a", "x"))
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );

    // A local peer whose Claude Code process ended is not revived by its MCP server's
    // heartbeat (the ghost case).
    let mut c = register(&env, "/w/c").await;
    c.claude.kill();
    until_listed(&user, "c marked gone", |peers| {
        !peers.iter().any(|p| p.name == "c")
    })
    .await;
    assert_eq!(c.client.heartbeat().await.unwrap_err().status(), Some(401));
    let peers = listed(&user).await;
    assert!(!peers.iter().any(|p| p.name == "c"), "{peers:?}");
}

#[tokio::test]
async fn query_path_method_and_reply_errors_are_json() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let http = raw_http();
    for (method, path, status) in [
        ("GET", "/v1/peers?scope=galaxy", 400),
        ("GET", "/v1/messages/abc", 400),
        ("DELETE", "/v1/messages", 405),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", env.url()))
            .bearer_auth(&a.reg.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let body: ErrorBody = r.json().await.unwrap();
        assert!(!body.error.message.is_empty());
    }
    let dir = a
        .client
        .list_peers(&ListPeersQuery {
            scope: "dir".parse().unwrap(),
            ..Default::default()
        })
        .await;
    assert!(dir.is_ok());
    let e = a
        .client
        .send(&SendRequest {
            tags: vec![],
            to: "a".into(),
            message: "re: nothing".into(),
            reply_to: Some(999_999),
            scope: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("999999"), "{e}");
}

#[tokio::test]
async fn clients_record_notices_for_the_human() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let user = env.user_client();
    let req = |kind: &str, text: &str| NoticeRequest {
        kind: kind.into(),
        text: text.into(),
    };
    a.client
        .add_notice(&req("escalation", "no desktop notification service"))
        .await
        .unwrap();
    user.add_notice(&req("note", "from the human"))
        .await
        .unwrap();
    let notices = user.notices().await.unwrap().notices;
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert_eq!(
        (notices[1].kind.as_str(), notices[1].peer_id.as_deref()),
        ("escalation", Some(a.reg.peer_id.as_str()))
    );
    assert_eq!(notices[1].text, "no desktop notification service");
    assert_eq!(notices[0].peer_id, None);

    for (kind, text) in [
        ("", "x"),
        ("Bad Kind", "x"),
        (&*"k".repeat(33), "x"),
        ("ok", ""),
        ("ok", &*"x".repeat(2001)),
    ] {
        let e = a.client.add_notice(&req(kind, text)).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{kind:?}: {e}");
    }
    let anon = BrokerClient::new(&env.url(), None);
    let e = anon.add_notice(&req("x", "y")).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert_eq!(user.notices().await.unwrap().notices.len(), 2);
}

/// A bare reqwest client for hand-made requests. reqwest is built with rustls without a
/// default crypto provider (peers-core hands it a ring config per client), so install one.
fn raw_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
