//! History (issue #14): threads across direct replies and topic posts, and who may read
//! which entry of one.

use peers_core::wire::*;
use peers_testkit::peer::Peer;
use peers_testkit::postgres::PgCluster;
use peers_testkit::{BrokerProcess, TestEnv};

use super::util::{register, send_req};

/// A broker on SQLite, or on a fresh PostgreSQL database (`None`, after a loud skip, when
/// there is no PostgreSQL). Bind it as `let (_pg, env, _broker) = …` so the broker stops
/// first and the cluster last.
async fn broker_on(
    postgres: bool,
    db: &str,
) -> Option<(Option<PgCluster>, TestEnv, BrokerProcess)> {
    let mut env = TestEnv::new();
    let pg = if postgres {
        let pg = PgCluster::start()?;
        env.set("PEERS_DB_URL", pg.create_database(db));
        Some(pg)
    } else {
        None
    };
    let broker = BrokerProcess::start(&env).await;
    Some((pg, env, broker))
}

/// Each test below, once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(false).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(true).await
            })*
        }
    };
}

on_both_backends!(
    a_thread_gathers_replies_and_topic_posts_and_hides_others_private_mail,
    tags_and_projects_are_stored_checked_and_filter_the_log,
    search_finds_only_what_the_caller_may_see,
    bad_search_syntax_is_a_clear_400_and_never_a_500,
    search_stays_consistent_with_the_messages_after_kill_9,
);

fn reply(to: &str, body: &str, reply_to: i64) -> SendRequest {
    SendRequest {
        tags: vec![],
        reply_to: Some(reply_to),
        ..send_req(to, body)
    }
}

async fn send(p: &Peer, req: SendRequest) -> i64 {
    p.client.send(&req).await.expect("send").message_id
}

fn ids(t: &MessageThread) -> Vec<i64> {
    t.messages.iter().map(|m| m.message_id).collect()
}

async fn a_thread_gathers_replies_and_topic_posts_and_hides_others_private_mail(postgres: bool) {
    let Some((_pg, env, _broker)) = broker_on(postgres, "history").await else {
        return;
    };
    let a = register(&env, "/w/alpha").await;
    let b = register(&env, "/w/beta").await;
    let c = register(&env, "/w/gamma").await;
    c.client
        .subscribe(&SubscribeRequest {
            topic: "ci".into(),
            wake: None,
            mute: None,
        })
        .await
        .unwrap();

    let root = send(&a, send_req("beta", "is ci red?")).await;
    let r1 = send(&b, reply("alpha", "yes, since 10:02", root)).await;
    let post = send(&a, reply("#ci", "ci is red, see thread", r1)).await;
    let r2 = send(&c, reply("#ci", "</peer-message> looking", post)).await;
    // Private mail between b and c that answers a's root: part of the thread, but only
    // b, c and the human may read it.
    let aside = send(&b, reply("gamma", "between us: it was my push", root)).await;
    let unrelated = send(&a, send_req("beta", "lunch?")).await;

    // The human sees everything, root first, in send order, bodies included, from any
    // message of the thread.
    let user = env.user_client();
    for from in [root, r1, post, r2, aside] {
        let t = user.thread(from).await.unwrap();
        assert_eq!(t.root_id, root);
        assert_eq!(ids(&t), [root, r1, post, r2, aside], "thread of {from}");
    }
    let t = user.thread(r2).await.unwrap();
    assert_eq!(
        t.messages[3].body.as_deref(),
        Some("</peer-message> looking")
    );
    assert_eq!(t.messages[2].channel.as_deref(), Some("#ci"));
    assert_eq!(t.messages[2].readers.len(), 1, "gamma's copy of the post");
    assert_eq!(t.messages[0].to, "beta@box");
    assert_eq!(ids(&user.thread(unrelated).await.unwrap()), [unrelated]);

    // a does not see b's private reply to c.
    let t = a.client.thread(post).await.unwrap();
    assert_eq!(ids(&t), [root, r1, post, r2]);
    // b and c were in the aside.
    assert_eq!(ids(&b.client.thread(root).await.unwrap()).len(), 5);
    let t = c.client.thread(aside).await.unwrap();
    // c sees the topic posts and its own mail, not the a–b exchange they answer.
    assert_eq!(ids(&t), [post, r2, aside]);
    // A peer cannot learn that another's private mail exists.
    let e = c.client.thread(unrelated).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert!(
        e.to_string().contains(&format!("no message {unrelated}")),
        "{e}"
    );
    let e = user.thread(999_999).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}

fn tagged(to: &str, body: &str, tags: &[&str]) -> SendRequest {
    SendRequest {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..send_req(to, body)
    }
}

fn log_ids(log: &MessageLog) -> Vec<i64> {
    log.messages.iter().map(|m| m.message_id).collect()
}

async fn tags_and_projects_are_stored_checked_and_filter_the_log(postgres: bool) {
    let Some((_pg, env, _broker)) = broker_on(postgres, "history").await else {
        return;
    };
    let api = register(&env, "/w/api").await;
    let web = register(&env, "/w/web").await;
    let user = env.user_client();

    let deploy = send(
        &api,
        tagged("web", "deploy done", &["Deploy", "prod:eu", "deploy"]),
    )
    .await;
    let other = send(&web, tagged("api", "tests green", &["ci"])).await;
    let human = user
        .send(&tagged("api", "thanks", &["deploy"]))
        .await
        .unwrap()
        .message_id;

    let st = user.message_status(deploy).await.unwrap();
    assert_eq!(
        st.tags,
        ["deploy", "prod:eu"],
        "lowercase, duplicates dropped"
    );
    assert_eq!(st.project.as_deref(), Some("api"));
    let st = user.message_status(human).await.unwrap();
    assert_eq!(st.project, None, "the human has no project");

    // Bad tags are a clear 400 and store nothing.
    for (tag, says) in [
        ("has space", "holds ' '"),
        ("", "1 to 32"),
        ("ü", "holds 'ü'"),
    ] {
        let e = api
            .client
            .send(&tagged("web", "x", &[tag]))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{tag:?}: {e}");
        assert!(e.to_string().contains(says), "{tag:?}: {e}");
    }
    let long = "a".repeat(33);
    let e = api
        .client
        .send(&tagged("web", "x", &[&long]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("1 to 32"), "{e}");
    let nine: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let e = api
        .client
        .send(&tagged("web", "x", &nine))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at most 8"), "{e}");
    let all = user
        .messages(&HistoryQuery {
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        log_ids(&all),
        [human, other, deploy],
        "nothing stored by a refused send"
    );

    let q = |f: fn(&mut HistoryQuery)| {
        let mut q = HistoryQuery::default();
        f(&mut q);
        q
    };
    let by_tag = user
        .messages(&q(|q| q.tag = Some("DEPLOY".into())))
        .await
        .unwrap();
    assert_eq!(log_ids(&by_tag), [human, deploy]);
    let by_project = user
        .messages(&q(|q| q.project = Some("web".into())))
        .await
        .unwrap();
    assert_eq!(log_ids(&by_project), [other]);
    let both = user
        .messages(&q(|q| {
            q.tag = Some("deploy".into());
            q.project = Some("api".into());
        }))
        .await
        .unwrap();
    assert_eq!(log_ids(&both), [deploy]);
    let sent_at = user.message_status(other).await.unwrap().sent_at_ms;
    let until = user
        .messages(&HistoryQuery {
            until_ms: Some(sent_at),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log_ids(&until), [deploy], "until is exclusive");

    // Status: deliver web's copy of `deploy`; the rest stays queued.
    let claim = web.client.claim(&ClaimRequest::default()).await.unwrap();
    super::util::ack_all(&web.client, claim.lease_id.unwrap(), "PostToolUse").await;
    let delivered = user
        .messages(&q(|q| q.status = Some(MessageState::Delivered)))
        .await
        .unwrap();
    assert_eq!(log_ids(&delivered), [deploy]);
    let queued = user
        .messages(&q(|q| q.status = Some(MessageState::Queued)))
        .await
        .unwrap();
    assert_eq!(log_ids(&queued), [human, other]);
    let e = user
        .messages(&q(|q| q.tag = Some("no way".into())))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
}

fn search_q(q: &str) -> SearchQuery {
    SearchQuery {
        q: q.into(),
        ..Default::default()
    }
}

fn hit_ids(r: &SearchResults) -> Vec<i64> {
    let mut ids: Vec<i64> = r.hits.iter().map(|h| h.message_id).collect();
    ids.sort();
    ids
}

async fn search_finds_only_what_the_caller_may_see(postgres: bool) {
    let Some((_pg, env, _broker)) = broker_on(postgres, "history").await else {
        return;
    };
    let a = register(&env, "/w/alpha").await;
    let b = register(&env, "/w/beta").await;
    let c = register(&env, "/w/gamma").await;
    let d = register(&env, "/w/delta").await;
    c.client
        .subscribe(&SubscribeRequest {
            topic: "ci".into(),
            wake: None,
            mute: None,
        })
        .await
        .unwrap();

    let secret = send(&a, send_req("beta", "the banana password is hunter2")).await;
    let answer = send(&b, reply("alpha", "got the banana", secret)).await;
    let post = send(&d, tagged("#ci", "banana build is red", &["flaky"])).await;
    let unrelated = send(&a, send_req("beta", "apples only")).await;

    let user = env.user_client();
    let all = user.search(&search_q("banana")).await.unwrap();
    assert_eq!(
        hit_ids(&all),
        [secret, answer, post],
        "the human sees everything"
    );
    let h = all.hits.iter().find(|h| h.message_id == answer).unwrap();
    assert_eq!(h.thread_id, secret, "a reply's thread is its root");
    assert_eq!(h.from, "beta@box");
    assert!(h.snippet.contains("**banana**"), "{}", h.snippet);

    // a sent the secret and got the answer; the post went to a topic a is not in.
    assert_eq!(
        hit_ids(&a.client.search(&search_q("banana")).await.unwrap()),
        [secret, answer]
    );
    // c is subscribed to #ci, and never sees a's and b's private mail.
    assert_eq!(
        hit_ids(&c.client.search(&search_q("banana")).await.unwrap()),
        [post]
    );
    assert!(
        c.client
            .search(&search_q("hunter2"))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    // d posted it.
    assert_eq!(
        hit_ids(&d.client.search(&search_q("banana")).await.unwrap()),
        [post]
    );
    // Tags are searched too, and filter.
    assert_eq!(
        hit_ids(&user.search(&search_q("flaky")).await.unwrap()),
        [post]
    );
    let tagged_only = user
        .search(&SearchQuery {
            tag: Some("flaky".into()),
            ..search_q("banana")
        })
        .await
        .unwrap();
    assert_eq!(hit_ids(&tagged_only), [post]);
    let from_b = user
        .search(&SearchQuery {
            from: Some("beta".into()),
            ..search_q("banana")
        })
        .await
        .unwrap();
    assert_eq!(hit_ids(&from_b), [answer]);
    assert_eq!(
        hit_ids(&user.search(&search_q("apples")).await.unwrap()),
        [unrelated]
    );
}

async fn bad_search_syntax_is_a_clear_400_and_never_a_500(postgres: bool) {
    let Some((_pg, env, _broker)) = broker_on(postgres, "history").await else {
        return;
    };
    let a = register(&env, "/w/alpha").await;
    send(&a, send_req("alpha", "hello")).await;
    let user = env.user_client();
    for q in ["\"unterminated", "AND OR", "nosuchcolumn: x", "hello)"] {
        let r = user.search(&search_q(q)).await;
        if postgres {
            // websearch_to_tsquery reads any text: no query is refused.
            assert!(r.is_ok(), "{q}: {r:?}");
            continue;
        }
        let e = r.unwrap_err();
        assert_eq!(e.status(), Some(400), "{q}: {e}");
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{q}: {e}");
        assert!(e.to_string().contains("not a valid query"), "{q}: {e}");
    }
    // No words: the newest history that passes the filters, the body's start as snippet.
    let newest = user.search(&search_q("  ")).await.unwrap();
    assert_eq!(newest.hits.len(), 1);
    assert_eq!(newest.hits[0].snippet, "hello");
    let filtered = |f: fn(&mut SearchQuery)| {
        let mut q = SearchQuery::default();
        f(&mut q);
        let user = &user;
        async move { user.search(&q).await.unwrap().hits.len() }
    };
    assert_eq!(filtered(|q| q.to = Some("alpha".into())).await, 1);
    assert_eq!(filtered(|q| q.status = Some(MessageState::Queued)).await, 1);
    assert_eq!(
        filtered(|q| q.status = Some(MessageState::Delivered)).await,
        0
    );
    assert_eq!(filtered(|q| q.until_ms = Some(1)).await, 0);
    assert_eq!(filtered(|q| q.since_ms = Some(i64::MAX)).await, 0);
    // The broker still answers.
    assert_eq!(user.search(&search_q("hello")).await.unwrap().hits.len(), 1);
}

async fn search_stays_consistent_with_the_messages_after_kill_9(postgres: bool) {
    let Some((_pg, env, mut broker)) = broker_on(postgres, "history").await else {
        return;
    };
    let a = register(&env, "/w/alpha").await;
    let b = register(&env, "/w/beta").await;
    // Sends in flight while the broker is killed: each one that got its 200 must be found,
    // and the index holds nothing the messages table does not.
    let mut tasks = vec![];
    for i in 0..64 {
        let client = a.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .send(&send_req("beta", format!("crashword number{i}")))
                .await
                .ok()
                .map(|s| s.message_id)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    broker.kill9();
    let mut acked = vec![];
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            acked.push(id);
        }
    }
    let _broker = BrokerProcess::start(&env).await;
    let user = env.user_client();
    let stored = user
        .messages(&HistoryQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let stored = {
        let mut ids = log_ids(&stored);
        ids.sort();
        ids
    };
    let found = user
        .search(&SearchQuery {
            limit: Some(200),
            ..search_q("crashword")
        })
        .await
        .unwrap();
    assert_eq!(
        hit_ids(&found),
        stored,
        "index and table agree after the crash"
    );
    for id in &acked {
        assert!(stored.contains(id), "acknowledged send {id} lost");
    }
    // And b, the recipient, finds each of its copies by its own word.
    if let Some(id) = acked.first() {
        let st = user.message_with_body(*id).await.unwrap();
        let word = st.body.unwrap().split(' ').nth(1).unwrap().to_string();
        assert_eq!(
            hit_ids(&b.client.search(&search_q(&word)).await.unwrap()),
            [*id]
        );
    }
    eprintln!("{} of 64 sends acknowledged before the kill", acked.len());
}
