//! History (issue #14): threads across direct replies and topic posts, and who may read
//! which entry of one.

use peers_core::wire::*;
use peers_testkit::peer::Peer;

use super::util::{broker_with, register, send_req};

fn reply(to: &str, body: &str, reply_to: i64) -> SendRequest {
    SendRequest {
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

#[tokio::test]
async fn a_thread_gathers_replies_and_topic_posts_and_hides_others_private_mail() {
    let (env, _broker) = broker_with(&[]).await;
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
    assert!(e.to_string().contains(&format!("no message {unrelated}")), "{e}");
    let e = user.thread(999_999).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}
