//! `peers export` against a real broker: a thread, a topic post and tags round-trip with
//! each reader's delivery state, `--out` writes the same lines to a file, `--since` filters
//! (old mail seeded from 1970 with the broker's preload tool), and the export is the human's
//! alone (a peer token or a script token gets 403).

use std::collections::HashMap;

use peers_core::BrokerClient;
use peers_core::wire::{
    ExportQuery, ExportedMessage, MessageState, MessageStatus, SendRequest, SubscribeRequest,
    TokenCreateRequest,
};
use peers_testkit::{bin, fake_claude, peer};

use crate::util::{assert_contains, peer_client, peers, project, register, with_web};

fn send(to: &str, message: &str, reply_to: Option<i64>, tags: &[&str]) -> SendRequest {
    SendRequest {
        to: to.into(),
        message: message.into(),
        reply_to,
        scope: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// Each reader of `m` and the state of its copy.
fn states(m: &MessageStatus) -> Vec<(String, MessageState)> {
    m.readers.iter().map(|r| (r.to.clone(), r.status)).collect()
}

/// The lines of an export, parsed, by message id.
fn parsed(jsonl: &str) -> HashMap<i64, ExportedMessage> {
    jsonl
        .lines()
        .map(|l| {
            let m: ExportedMessage =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e} in line {l}"));
            (m.message.message_id, m)
        })
        .collect()
}

#[tokio::test]
async fn export_round_trips_threads_posts_tags_and_states() {
    let (env, cwd, _broker, _claude, web, web_client) = with_web().await;
    let api_claude = fake_claude();
    let api = register(&env, &api_claude, &project(&env, "api")).await;
    let api_client = peer_client(&env, &api);
    web_client
        .subscribe(&SubscribeRequest {
            topic: "ops".into(),
            wake: None,
            mute: None,
        })
        .await
        .unwrap();
    let q = api_client
        .send(&send(
            "web",
            "what shape does /v1/x return?",
            None,
            &["api", "shape"],
        ))
        .await
        .unwrap()
        .message_id;
    peer::deliver_all(&web_client, "PostToolUse").await;
    let a = web_client
        .send(&send("api", "an array of objects", Some(q), &[]))
        .await
        .unwrap()
        .message_id;
    let post = api_client
        .send(&send("#ops", "deploying api now", None, &["deploy"]))
        .await
        .unwrap()
        .message_id;

    let out = peers(&env, &cwd, &["export"]).ok();
    let lines = parsed(&out.stdout);
    let ids: Vec<i64> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<ExportedMessage>(l)
                .unwrap()
                .message
                .message_id
        })
        .collect();
    assert_eq!(ids, [q, a, post], "every message, in id order");
    let question = &lines[&q].message;
    assert_eq!(
        question.body.as_deref(),
        Some("what shape does /v1/x return?")
    );
    assert_eq!(question.tags, ["api", "shape"]);
    assert_eq!(question.project.as_deref(), Some("api"));
    assert_eq!(question.from, api.address);
    assert_eq!(question.to, web.address);
    assert_eq!(
        states(question),
        [(web.address.clone(), MessageState::Delivered)]
    );
    assert_eq!(
        question.readers[0].delivered_via.as_deref(),
        Some("PostToolUse")
    );
    let answer = &lines[&a];
    assert_eq!((answer.thread_id, answer.message.reply_to), (q, Some(q)));
    assert_eq!(answer.message.readers[0].status, MessageState::Queued);
    let posted = &lines[&post].message;
    assert_eq!(posted.channel.as_deref(), Some("#ops"));
    assert_eq!(posted.to, "#ops");
    assert_eq!(posted.tags, ["deploy"]);
    assert_eq!(
        states(posted),
        [(web.address.clone(), MessageState::Queued)],
        "the post's one subscriber, not delivered yet"
    );

    // --out: the same lines, in a file.
    let file = env.dir.path().join("backup.jsonl");
    let wrote = peers(&env, &cwd, &["export", "--out", file.to_str().unwrap()]).ok();
    assert_contains(&wrote.stderr, "exported 3 messages");
    assert!(wrote.stdout.is_empty(), "{}", wrote.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), out.stdout);

    // --since: old mail (sent in 1970) is in the whole export, not in the last day's.
    let mut preload = std::process::Command::new(bin("peers-broker"));
    env.apply(&mut preload)
        .args(["preload-history", "--count", "3", "--db"])
        .arg(env.state_dir.join("peers.db"))
        .arg(&web.peer_id);
    assert!(preload.status().unwrap().success());
    assert_eq!(parsed(&peers(&env, &cwd, &["export"]).ok().stdout).len(), 6);
    let recent = parsed(&peers(&env, &cwd, &["export", "--since", "1d"]).ok().stdout);
    let mut recent: Vec<i64> = recent.into_keys().collect();
    recent.sort();
    assert_eq!(recent, [q, a, post], "--since 1d leaves the 1970 mail out");
    let by_date = peers(&env, &cwd, &["export", "--since", "1970-01-02"]).ok();
    assert_eq!(parsed(&by_date.stdout).len(), 3);
    let bad = peers(&env, &cwd, &["export", "--since", "yesterday"]);
    assert_ne!(bad.code, 0);
    assert_contains(&bad.stderr, "neither a duration");

    // The human's alone.
    let e = web_client
        .export(&ExportQuery::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), Some(403), "{e}");
    let made = env
        .user_client()
        .create_token(&TokenCreateRequest {
            name: "ci".into(),
            post_to: vec![],
            expires_in_ms: None,
        })
        .await
        .unwrap();
    let script = BrokerClient::new(&env.url(), Some(made.token));
    let e = script.export(&ExportQuery::default()).await.err().unwrap();
    assert_eq!(e.status(), Some(403), "{e}");
}
