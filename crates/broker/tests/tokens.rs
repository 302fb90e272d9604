//! Script tokens (issue #17): what a token limited to `#deploys` may and may not do, revoke
//! and expiry at the next request, the human's secret untouched, and the curl line of
//! docs/PROTOCOL.md run as written.

use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::wire::*;
use peers_testkit::TestEnv;
use peers_testkit::peer::Peer;

use super::util::{broker_with, register, send_req};

async fn create(env: &TestEnv, name: &str, post_to: &[&str], expires_in_ms: Option<i64>) -> String {
    env.user_client()
        .create_token(&TokenCreateRequest {
            name: name.into(),
            post_to: post_to.iter().map(|s| s.to_string()).collect(),
            expires_in_ms,
        })
        .await
        .expect("create token")
        .token
}

async fn subscribe(p: &Peer, topic: &str) {
    p.client
        .subscribe(&SubscribeRequest {
            topic: topic.into(),
            wake: None,
            mute: None,
        })
        .await
        .expect("subscribe");
}

/// The status code and message of a refused request.
fn refused<T: std::fmt::Debug>(r: Result<T, peers_core::ClientError>) -> (u16, String) {
    let e = r.expect_err("should be refused");
    (e.status().unwrap_or(0), e.to_string())
}

async fn claim_bodies(p: &Peer) -> Vec<(String, SenderKind, String)> {
    let got = p
        .client
        .claim(&ClaimRequest::default())
        .await
        .expect("claim");
    got.messages
        .into_iter()
        .map(|m| (m.from, m.from_kind, m.body))
        .collect()
}

/// `p` claims exactly one message: `body` from the script token `ci`.
async fn assert_one_script_post(p: &Peer, body: &str) {
    assert_eq!(
        claim_bodies(p).await,
        vec![(
            "ci (script)".to_string(),
            SenderKind::Script,
            body.to_string()
        )]
    );
}

#[tokio::test]
async fn a_token_for_deploys_posts_there_and_nothing_else() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/work/api").await;
    let b = register(&env, "/work/web").await;
    subscribe(&a, "deploys").await;
    let token = create(&env, "ci", &["#deploys"], None).await;
    assert!(token.starts_with("peers_script_"), "{token}");
    let script = BrokerClient::new(&env.url(), Some(token.clone()));

    // It posts to #deploys; the reader sees `ci (script)`, kind script.
    let sent = script
        .send(&send_req("#deploys", "build green"))
        .await
        .unwrap();
    assert_one_script_post(&a, "build green").await;
    // It reads its own post's status.
    let st = script.message_status(sent.message_id).await.unwrap();
    assert_eq!(st.from_kind, SenderKind::Script);

    // Not elsewhere: another topic, a peer, a broadcast.
    for to in ["#other", "web", "*"] {
        let (code, msg) = refused(script.send(&send_req(to, "x")).await);
        assert_eq!(code, 403, "{to}: {msg}");
        assert!(
            msg.contains("may only post") && msg.contains("#deploys"),
            "{msg}"
        );
    }
    // Cannot claim, list peers, read the log, subscribe, create tokens.
    let (code, msg) = refused(script.claim(&ClaimRequest::default()).await);
    assert_eq!(code, 403, "{msg}");
    let (code, _) = refused(script.list_peers(&ListPeersQuery::default()).await);
    assert_eq!(code, 403);
    let (code, _) = refused(script.messages(&HistoryQuery::default()).await);
    assert_eq!(code, 403);
    let (code, _) = refused(script.tokens().await);
    assert_eq!(code, 403);
    // Cannot read others' statuses (a peer's direct mail): as if it did not exist.
    let other = b.client.send(&send_req("api", "private")).await.unwrap();
    let (code, _) = refused(script.message_status(other.message_id).await);
    assert_eq!(code, 404);

    // The human's secret still does everything; the list never shows the token.
    let user = env.user_client();
    assert!(user.list_peers(&ListPeersQuery::default()).await.is_ok());
    user.send(&send_req("web", "hi")).await.unwrap();
    let list = user.tokens().await.unwrap();
    assert_eq!(list.tokens.len(), 1);
    assert_eq!(list.tokens[0].post_to, vec!["#deploys".to_string()]);
    assert!(list.tokens[0].last_used_ms.is_some());
    let raw = serde_json::to_string(&list).unwrap();
    assert!(!raw.contains(&token[13..]), "{raw}");

    // Revoke: refused on the very next request.
    user.revoke_token("ci").await.unwrap();
    let (code, msg) = refused(script.send(&send_req("#deploys", "again")).await);
    assert_eq!(code, 401, "{msg}");
    assert!(msg.contains("revoked"), "{msg}");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/work/api").await;
    subscribe(&a, "deploys").await;
    let token = create(&env, "short", &[], Some(1500)).await;
    let script = BrokerClient::new(&env.url(), Some(token));
    script.send(&send_req("#deploys", "in time")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (code, msg) = refused(script.send(&send_req("#deploys", "late")).await);
    assert_eq!(code, 401, "{msg}");
    assert!(msg.contains("expired"), "{msg}");
}

#[tokio::test]
async fn the_curl_line_in_the_protocol_doc_posts_as_written() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let after = doc
        .split("<!-- script-token-curl -->")
        .nth(1)
        .expect("the marked curl example in docs/PROTOCOL.md");
    let line = after
        .lines()
        .find(|l| l.starts_with("curl "))
        .expect("a curl line after the marker");
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/work/api").await;
    subscribe(&a, "deploys").await;
    let token = create(&env, "ci", &["#deploys"], None).await;
    let line = line.replace("http://127.0.0.1:7900", &env.url());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("PEERS_SCRIPT_TOKEN", &token)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{line}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_one_script_post(&a, "build green").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_revoke_through_one_broker_counts_at_the_next_request_on_the_other() {
    let Some(pg) = peers_testkit::postgres::PgCluster::start() else {
        return;
    };
    let url = pg.create_database("script_tokens");
    let a_env = super::postgres::env_on(&url, None);
    let _a = peers_testkit::BrokerProcess::start(&a_env).await;
    let b_env = super::postgres::env_on(&url, Some(&a_env));
    let _b = peers_testkit::BrokerProcess::start(&b_env).await;
    let api = register(&a_env, "/work/api").await;
    subscribe(&api, "deploys").await;

    let token = create(&a_env, "ci", &["#deploys"], None).await;
    let on_b = BrokerClient::new(&b_env.url(), Some(token));
    on_b.send(&send_req("#deploys", "build green"))
        .await
        .unwrap();
    let (code, _) = refused(on_b.send(&send_req("#other", "x")).await);
    assert_eq!(code, 403);
    assert_one_script_post(&api, "build green").await;

    a_env.user_client().revoke_token("ci").await.unwrap();
    let (code, msg) = refused(on_b.send(&send_req("#deploys", "again")).await);
    assert_eq!(code, 401, "{msg}");
}
