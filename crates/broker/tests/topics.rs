//! Topics and broadcasts: one message, one copy per reader, each claimed, leased and acked
//! exactly as direct mail; who a post or a broadcast reaches; bad input.

use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::wire::*;
use peers_testkit::peer::{Peer, deliver_all, remote};
use peers_testkit::{BrokerProcess, TestEnv};

use super::util::{ack_all, broker_with, register, register_as, register_with, send_req};

fn post(to: &str, body: &str) -> SendRequest {
    send_req(to, body)
}

async fn subscribe(p: &Peer, topic: &str, wake: Option<bool>, mute: Option<bool>) {
    p.client
        .subscribe(&SubscribeRequest {
            topic: topic.into(),
            wake,
            mute,
        })
        .await
        .expect("subscribe");
}

fn names(readers: &[ReaderStatus]) -> Vec<String> {
    let mut n: Vec<String> = readers.iter().map(|r| r.to.clone()).collect();
    n.sort();
    n
}

/// The status code and error code of a refused request.
fn refused(e: peers_core::ClientError) -> (u16, ErrorCode, String) {
    (
        e.status().unwrap_or(0),
        e.code().unwrap_or(ErrorCode::Internal),
        e.to_string(),
    )
}

async fn message_count(env: &TestEnv) -> usize {
    let q = HistoryQuery {
        tag: None,
        project: None,
        until_ms: None,
        status: None,
        limit: Some(1000),
        ..Default::default()
    };
    env.user_client().messages(&q).await.unwrap().messages.len()
}

#[tokio::test]
async fn a_post_reaches_each_subscriber_exactly_once_under_concurrent_claimers() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    let b = register(&env, "/w/beta").await;
    let c = register(&env, "/w/gamma").await;
    let d = register(&env, "/w/delta").await;
    subscribe(&b, "t", None, None).await;
    subscribe(&c, "#T", Some(true), None).await;
    // The sender's own subscription does not bring its post back to it.
    subscribe(&a, "t", None, None).await;

    let sent = a.client.send(&post("#t", "main is red")).await.unwrap();
    assert_eq!(sent.channel.as_deref(), Some("#t"));
    assert_eq!(sent.to, "#t");
    assert_eq!(names(&sent.readers), ["beta@box", "gamma@box"]);
    let wake: Vec<bool> = sent.readers.iter().map(|r| r.wake).collect();
    assert_eq!(
        wake.iter().filter(|w| **w).count(),
        1,
        "only gamma asked to be woken"
    );

    // Four claimers per reader at once: each reader's copy is handed out once.
    let mut tasks = vec![];
    for p in [&b, &c] {
        for _ in 0..4 {
            let client = p.client.clone();
            tasks.push(tokio::spawn(async move {
                let got = client.claim(&ClaimRequest::default()).await.unwrap();
                let n = got.messages.len();
                if let Some(lease) = got.lease_id {
                    ack_all(&client, lease, "PostToolUse").await;
                }
                n
            }));
        }
    }
    let mut got = vec![];
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(
        got[..4].iter().sum::<usize>(),
        1,
        "beta got its copy once: {got:?}"
    );
    assert_eq!(
        got[4..].iter().sum::<usize>(),
        1,
        "gamma got its copy once: {got:?}"
    );
    assert_eq!(
        deliver_all(&d.client, "PostToolUse").await,
        0,
        "delta is not subscribed"
    );
    assert_eq!(
        deliver_all(&a.client, "PostToolUse").await,
        0,
        "the sender never gets its post"
    );

    let st = a.client.message_status(sent.message_id).await.unwrap();
    assert_eq!(st.delivered_of(), (2, 2), "{st:?}");
    assert_eq!(st.status, MessageState::Delivered);
    assert!(
        st.readers
            .iter()
            .all(|r| r.delivered_via.as_deref() == Some("PostToolUse")),
        "{st:?}"
    );
    // A reader sees the claimed copy carry the topic.
    let history = b.client.history(&HistoryQuery::default()).await.unwrap();
    assert_eq!(history.messages[0].channel.as_deref(), Some("#t"));
}

#[tokio::test]
async fn a_lapsed_lease_comes_back_only_to_its_reader() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    let b = register(&env, "/w/beta").await;
    let c = register(&env, "/w/gamma").await;
    subscribe(&b, "t", None, None).await;
    subscribe(&c, "t", None, None).await;
    let sent = a.client.send(&post("#t", "deploy at 5")).await.unwrap();

    let short = ClaimRequest {
        lease_ms: Some(100),
        ..Default::default()
    };
    let leased = b.client.claim(&short).await.unwrap();
    assert_eq!(leased.messages.len(), 1);
    assert_eq!(deliver_all(&c.client, "Stop").await, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let again = b.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(
        ids(&again.messages),
        [sent.message_id],
        "beta's lapsed copy is beta's again"
    );
    assert_eq!(
        deliver_all(&c.client, "Stop").await,
        0,
        "gamma's delivered copy stays delivered"
    );
    let st = a.client.message_status(sent.message_id).await.unwrap();
    assert_eq!(st.delivered_of(), (1, 2), "{st:?}");
    let beta = st.readers.iter().find(|r| r.to == "beta@box").unwrap();
    assert_eq!(beta.status, MessageState::Leased, "{st:?}");
}

fn ids(m: &[InboxMessage]) -> Vec<i64> {
    m.iter().map(|m| m.message_id).collect()
}

#[tokio::test]
async fn after_kill_9_following_a_broadcasts_200_every_reader_still_gets_it() {
    let (env, mut broker) = broker_with(&[]).await;
    let sender = register(&env, "/w/team").await;
    let mut readers = vec![];
    for _ in 0..5 {
        readers.push(register(&env, "/w/team").await);
    }
    let sent = sender
        .client
        .send(&post("*", "stop pushing"))
        .await
        .unwrap();
    assert_eq!(sent.readers.len(), 5, "{sent:?}");
    broker.kill9();
    let _broker = BrokerProcess::start(&env).await;
    for r in &readers {
        let got = r.client.claim(&ClaimRequest::default()).await.unwrap();
        assert_eq!(ids(&got.messages), [sent.message_id], "{}", r.reg.name);
        assert_eq!(got.messages[0].channel.as_deref(), Some("*"));
    }
}

#[tokio::test]
async fn muted_and_unsubscribed_sessions_get_nothing_pushed_but_can_read_the_topic() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    let muted = register(&env, "/w/muted").await;
    let left = register(&env, "/w/left").await;
    let keen = register(&env, "/w/keen").await;
    subscribe(&muted, "t", None, Some(true)).await;
    subscribe(&left, "t", None, None).await;
    subscribe(&keen, "t", None, None).await;
    let gone = left.client.unsubscribe("#t").await.unwrap();
    assert!(gone.was_subscribed);
    assert!(!left.client.unsubscribe("t").await.unwrap().was_subscribed);

    let sent = a.client.send(&post("#t", "news")).await.unwrap();
    assert_eq!(names(&sent.readers), ["keen@box"]);
    assert_eq!(deliver_all(&muted.client, "PostToolUse").await, 0);
    assert_eq!(deliver_all(&left.client, "PostToolUse").await, 0);
    assert_eq!(deliver_all(&keen.client, "PostToolUse").await, 1);

    let read = muted
        .client
        .topic_posts("t", &TopicPostsQuery::default())
        .await
        .unwrap();
    assert_eq!(read.posts.len(), 1);
    assert_eq!(read.posts[0].body.as_deref(), Some("news"));
    let list = muted.client.topics().await.unwrap();
    let t = list.topics.iter().find(|t| t.topic == "t").unwrap();
    assert_eq!((t.subscribers, t.posts), (2, 1), "{t:?}");
    assert!(t.subscription.as_ref().is_some_and(|s| s.mute), "{t:?}");
}

#[tokio::test]
async fn broadcast_scopes_and_the_human() {
    let (env, _broker) = broker_with(&[]).await;
    let in_repo = |cwd: &str| RegisterRequest {
        cwd: cwd.into(),
        git_root: Some("/r".into()),
        ..Default::default()
    };
    let a = register_with(&env, in_repo("/r/x")).await;
    let b = register_with(&env, in_repo("/r/x")).await;
    let c = register_with(&env, in_repo("/r/y")).await;
    let d = register(&env, "/elsewhere").await;
    let e = register_with(&env, remote("machine-far", 4242, "/far")).await;
    let to_all = |scope: Option<Scope>| SendRequest {
        tags: vec![],
        scope,
        ..post("*", "hello")
    };
    let reached = |r: &SendResponse| names(&r.readers);

    let repo = a.client.send(&to_all(None)).await.unwrap();
    assert_eq!(
        reached(&repo),
        [b.reg.address.clone(), c.reg.address.clone()]
    );
    let dir = a
        .client
        .send(&to_all(Some(Scope::Directory)))
        .await
        .unwrap();
    assert_eq!(reached(&dir), std::slice::from_ref(&b.reg.address));
    let machine = a.client.send(&to_all(Some(Scope::Machine))).await.unwrap();
    assert_eq!(
        machine.readers.len(),
        3,
        "b, c and d, not the remote e: {machine:?}"
    );
    let all = a.client.send(&to_all(Some(Scope::All))).await.unwrap();
    assert_eq!(all.readers.len(), 4, "{all:?}");
    assert!(reached(&all).contains(&e.reg.address));

    let human = env.user_client();
    let everyone = human.send(&to_all(None)).await.unwrap();
    assert_eq!(
        everyone.readers.len(),
        5,
        "the human reaches every live peer by default"
    );
    let (status, _, text) = refused(human.send(&to_all(Some(Scope::Repo))).await.unwrap_err());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("machine or all"), "{text}");

    // Nobody in scope: a clear 4xx, and nothing stored.
    let before = message_count(&env).await;
    let lonely = register(&env, "/lonely").await;
    let (status, code, text) = refused(
        lonely
            .client
            .send(&to_all(Some(Scope::Directory)))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code), (404, ErrorCode::UnknownPeer), "{text}");
    assert!(
        text.contains("widen") && text.contains("nothing was sent"),
        "{text}"
    );
    assert_eq!(message_count(&env).await, before, "no message stored");
    drop(d);
}

#[tokio::test]
async fn bad_topic_input_gets_clear_errors_and_stores_nothing() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    let b = register(&env, "/w/beta").await;
    for bad in ["#Has Space", "#", "#-dash", "*everyone"] {
        let (status, _, text) = refused(a.client.send(&post(bad, "x")).await.unwrap_err());
        assert_eq!(status, 400, "{bad}: {text}");
    }
    let (status, _, text) = refused(a.client.send(&post("#t", "  ")).await.unwrap_err());
    assert_eq!(status, 400, "{text}");
    let sub = |topic: &str| SubscribeRequest {
        topic: topic.into(),
        wake: None,
        mute: None,
    };
    let (status, _, text) = refused(b.client.subscribe(&sub("*")).await.unwrap_err());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("broadcast"), "{text}");
    let (status, _, text) = refused(b.client.subscribe(&sub("a/b")).await.unwrap_err());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not a topic name"), "{text}");
    let scoped = SendRequest {
        tags: vec![],
        scope: Some(Scope::All),
        ..post("beta", "x")
    };
    let (status, _, text) = refused(a.client.send(&scoped).await.unwrap_err());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("broadcast"), "{text}");
    // The human cannot subscribe: subscriptions belong to sessions.
    let (status, _, _) = refused(env.user_client().subscribe(&sub("t")).await.unwrap_err());
    assert_eq!(status, 403);
    assert_eq!(message_count(&env).await, 0);

    subscribe(&b, "known", None, None).await;
    let q = TopicPostsQuery::default();
    let (status, code, text) = refused(a.client.topic_posts("nope", &q).await.unwrap_err());
    assert_eq!((status, code), (404, ErrorCode::NotFound), "{text}");
    assert!(
        text.contains("#known"),
        "names the topics there are: {text}"
    );
}

#[tokio::test]
async fn only_wake_copies_end_an_idle_sessions_long_poll() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    let quiet = register(&env, "/w/quiet").await;
    let eager = register(&env, "/w/eager").await;
    subscribe(&quiet, "t", Some(false), None).await;
    subscribe(&eager, "t", Some(true), None).await;
    let wait = |p: &Peer, ms: u64| {
        let client = p.client.clone();
        tokio::spawn(async move {
            client
                .wait(&WaitQuery {
                    timeout_ms: Some(ms),
                })
                .await
                .unwrap()
        })
    };
    let quiet_wait = wait(&quiet, 2_000);
    let eager_wait = wait(&eager, 20_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = a.client.send(&post("#t", "ping")).await.unwrap();
    let woke = eager_wait.await.unwrap();
    assert!(woke.mail, "{woke:?}");
    let slept = quiet_wait.await.unwrap();
    assert!(
        !slept.mail && !slept.superseded,
        "a post without wake must not wake: {slept:?}"
    );
    // It is still delivered at the next hook event.
    let got = quiet.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(ids(&got.messages), [sent.message_id]);
    // Direct mail still wakes the quiet one.
    let quiet_wait = wait(&quiet, 20_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.client.send(&post("quiet", "direct")).await.unwrap();
    assert!(quiet_wait.await.unwrap().mail);
}

#[tokio::test]
async fn subscriptions_follow_the_name_in_its_directory_and_replies_go_to_the_sender() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    let b = register(&env, "/w/beta").await;
    let c = register(&env, "/w/gamma").await;
    subscribe(&b, "t", Some(true), None).await;
    subscribe(&c, "t", None, None).await;
    // beta's session ends; the next session in /w/beta is beta again and keeps the topic.
    b.client.unregister().await.unwrap();
    let claude = peers_testkit::fake_claude();
    let b2 = register_as(&env, claude, "/w/beta").await;
    assert_eq!(b2.reg.name, "beta");
    let sent = a.client.send(&post("#t", "who is on call?")).await.unwrap();
    assert_eq!(names(&sent.readers), ["beta@box", "gamma@box"]);
    let copy = sent.readers.iter().find(|r| r.to == "beta@box").unwrap();
    assert_eq!(copy.peer_id, b2.reg.peer_id);
    assert!(copy.wake, "the wake choice came along");

    // A reply to the post, addressed to its sender, reaches the sender alone.
    let got = b2.client.claim(&ClaimRequest::default()).await.unwrap();
    let reply = SendRequest {
        tags: vec![],
        reply_to: Some(got.messages[0].message_id),
        ..post(&got.messages[0].from, "me")
    };
    b2.client.send(&reply).await.unwrap();
    assert_eq!(deliver_all(&a.client, "PostToolUse").await, 1);
    assert_eq!(
        deliver_all(&c.client, "PostToolUse").await,
        1,
        "only the post itself"
    );
    let st = a.client.message_status(sent.message_id).await.unwrap();
    assert_eq!(st.replies.len(), 1);
}

#[tokio::test]
async fn topics_list_and_read_with_a_cursor_including_posts_from_before_subscribing() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    let late = register(&env, "/w/late").await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(
            a.client
                .send(&post("#log", &format!("entry {i}")))
                .await
                .unwrap()
                .message_id,
        );
    }
    let sent = a.client.send(&post("#log", "entry 5")).await.unwrap();
    assert!(sent.readers.is_empty(), "nobody subscribed yet");
    ids.push(sent.message_id);
    subscribe(&late, "log", None, None).await;
    assert_eq!(
        deliver_all(&late.client, "PostToolUse").await,
        0,
        "old posts are not pushed"
    );

    let page = |since_id, limit| TopicPostsQuery { since_id, limit };
    let first = late
        .client
        .topic_posts("log", &page(None, Some(2)))
        .await
        .unwrap();
    let got: Vec<i64> = first.posts.iter().map(|p| p.message_id).collect();
    assert_eq!(got, ids[4..], "the newest two, oldest first");
    let after = late
        .client
        .topic_posts("#log", &page(Some(ids[1]), Some(50)))
        .await
        .unwrap();
    let got: Vec<i64> = after.posts.iter().map(|p| p.message_id).collect();
    assert_eq!(got, ids[2..]);
    assert_eq!(after.posts[0].body.as_deref(), Some("entry 2"));

    let list = late.client.topics().await.unwrap();
    let t = &list.topics[0];
    assert_eq!(
        (t.topic.as_str(), t.subscribers, t.posts, t.last_post_id),
        ("log", 1, 6, Some(ids[5]))
    );
    assert!(t.subscription.is_some());
    let human = env.user_client().topics().await.unwrap();
    assert!(human.topics[0].subscription.is_none());
    // The human's log filters by topic.
    let q = HistoryQuery {
        tag: None,
        project: None,
        until_ms: None,
        status: None,
        topic: Some("#log".into()),
        ..Default::default()
    };
    let log = env.user_client().messages(&q).await.unwrap();
    assert_eq!(log.messages.len(), 6);
    let _: &BrokerClient = &late.client;
}
