//! `search_messages` as a history tool (issue #14): every filter of `peers log` — from, to,
//! topic, tag, project, since, until, status — through the real `peers-mcp` against the real
//! broker, with and without a query, never showing a session mail it may not see.

use std::time::Duration;

use crate::util::*;
use serde_json::{Value, json};

/// The message ids a `search_messages` answer shows, in its order.
fn ids(text: &str) -> Vec<i64> {
    text.match_indices("<peer-message id=\"")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// What alpha's `search_messages` with `args` shows: the ids, newest (or best) first.
async fn found(s: &peers_testkit::standin::McpSession, args: Value) -> Vec<i64> {
    ids(&s.ok("search_messages", args).await)
}

#[tokio::test]
async fn every_history_filter_narrows_and_other_peers_private_mail_never_comes_back() {
    let (env, _reaper, _broker) = with_broker().await;
    let (a, b) = alpha_and_bravo(&env).await;
    let c = shell_session(&env, "charlie").await;
    c.session_file().await;
    a.ok("subscribe", json!({"topic": "ci"})).await;
    c.ok("subscribe", json!({"topic": "ops"})).await;

    let deploy = message_id(
        &a.ok(
            "send_message",
            json!({"to": "bravo", "message": "deploy staging now", "tags": ["deploy"]}),
        )
        .await,
    );
    let green = sent(&b, "alpha", "staging is green").await;
    let lunch = sent(&a, "charlie", "lunch at noon").await;
    let build = sent(&a, "#ci", "build 7 passed").await;
    // Mail alpha may not see: charlie to bravo, and a post to a topic alpha is not on.
    let private = sent(&c, "bravo", "the staging secret is hunter2").await;
    let ops = sent(&c, "#ops", "staging secret rotated").await;
    // bravo reads its mail: alpha's `deploy` is delivered, `lunch` still waits for charlie.
    b.ok("check_messages", json!({})).await;

    let all = found(&a, json!({})).await;
    assert_eq!(
        all,
        [build, lunch, green, deploy],
        "newest first, alpha's only"
    );
    for forbidden in [
        json!({}),
        json!({"query": "staging"}),
        json!({"query": "secret"}),
        json!({"from": "charlie"}),
        json!({"to": "bravo"}),
        json!({"topic": "ops"}),
        json!({"project": "charlie"}),
        json!({"status": "queued"}),
    ] {
        let got = found(&a, forbidden.clone()).await;
        assert!(
            !got.contains(&private) && !got.contains(&ops),
            "{forbidden}: {got:?} holds another peer's mail"
        );
    }

    assert_eq!(found(&a, json!({"from": "bravo"})).await, [green]);
    assert_eq!(
        found(&a, json!({"from": "alpha"})).await,
        [build, lunch, deploy]
    );
    assert_eq!(found(&a, json!({"to": "charlie"})).await, [lunch]);
    assert_eq!(found(&a, json!({"to": "bravo"})).await, [deploy]);
    assert_eq!(found(&a, json!({"topic": "#ci"})).await, [build]);
    assert_eq!(found(&a, json!({"tag": "deploy"})).await, [deploy]);
    assert_eq!(found(&a, json!({"project": "bravo"})).await, [green]);
    assert_eq!(found(&a, json!({"status": "delivered"})).await, [deploy]);
    assert_eq!(
        found(&a, json!({"status": "Queued"})).await,
        [lunch, green],
        "waiting for charlie and for alpha itself"
    );
    assert_eq!(
        found(&a, json!({"query": "staging", "from": "bravo"})).await,
        [green],
        "words and filters together"
    );
    assert_eq!(found(&a, json!({"limit": 2})).await, [build, lunch]);
    // bravo sees its own: what it got from alpha and charlie, what it sent.
    assert_eq!(
        found(&b, json!({"query": "staging"})).await.len(),
        3,
        "deploy, green and charlie's mail to bravo"
    );

    // Time: since and until split at a pause (both far wider than one tool call).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = sent(&a, "bravo", "one more thing").await;
    assert_eq!(found(&a, json!({"since": "2s"})).await, [late]);
    assert_eq!(
        found(&a, json!({"until": "2s"})).await,
        [build, lunch, green, deploy]
    );
    assert_eq!(
        found(&a, json!({"since": "1h", "until": "2s", "to": "bravo"})).await,
        [deploy]
    );

    let t = a
        .ok("search_messages", json!({"tag": "nothing-has-it"}))
        .await;
    assert!(t.contains("passes these filters"), "{t}");
}

#[tokio::test]
async fn bad_history_filters_are_tool_errors_that_say_what_to_write() {
    let (env, _reaper, _broker) = with_broker().await;
    let (a, _b) = alpha_and_bravo(&env).await;
    let mut shown = vec![];
    for args in [
        json!({"since": "yesterday"}),
        json!({"until": "soon"}),
        json!({"status": "read"}),
        json!({"status": "leased!"}),
        json!({"to": "nobody"}),
    ] {
        shown.push(a.err("search_messages", args).await);
    }
    expect_test::expect![[r#"
        search_messages failed: since: "yesterday" is not a duration: use e.g. 30s, 10m, 2h or 1d
        ---
        search_messages failed: until: "soon" is not a duration: use e.g. 30s, 10m, 2h or 1d
        ---
        search_messages failed: status: "read" is not a message state: write queued (some copy waits), delivered (every copy was) or expired
        ---
        search_messages failed: status: "leased!" is not a message state: write queued (some copy waits), delivered (every copy was) or expired
        ---
        search_messages failed: no peer named "nobody"; known peers: alpha@testhost, bravo@testhost"#]].assert_eq(&shown.join("\n---\n"));
    a.ok("whoami", json!({})).await;
}
