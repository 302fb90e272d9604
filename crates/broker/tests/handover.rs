//! Handovers (issue #14): a note for the next session of a name, taken by the first
//! registration of that name after it was left, shown once (claim and ack like mail).

use peers_core::wire::*;
use peers_testkit::fake_claude;
use peers_testkit::peer::deliver_all;

use super::util::{broker_with, register, register_as};

fn note(text: &str, to: Option<&str>) -> HandoverRequest {
    HandoverRequest {
        note: text.into(),
        to: to.map(Into::into),
    }
}

#[tokio::test]
async fn a_handover_waits_for_the_next_session_of_its_name_and_is_delivered_once() {
    let (env, _broker) = broker_with(&[]).await;
    let alpha = register(&env, "/w/alpha").await;
    let beta = register(&env, "/w/beta").await;
    assert_eq!(alpha.reg.name, "alpha");

    let own = alpha
        .client
        .handover(&note("tests green; next: docs", None))
        .await
        .unwrap();
    assert_eq!(own.to, "alpha");
    let second = alpha
        .client
        .handover(&note("also: bump the version", None))
        .await
        .unwrap();
    // For the next session named beta: the live beta registered before it does not get it.
    let for_beta = alpha
        .client
        .handover(&note("for beta's successor", Some("beta")))
        .await
        .unwrap();
    // Only on another host: alpha@box's next session does not get it.
    alpha
        .client
        .handover(&note("for alpha on elsewhere", Some("alpha@elsewhere")))
        .await
        .unwrap();
    assert_eq!(
        deliver_all(&beta.client, "PostToolUse").await,
        0,
        "beta is older than the note"
    );
    assert_eq!(
        deliver_all(&alpha.client, "PostToolUse").await,
        0,
        "alpha left them"
    );

    let st = alpha.client.message_status(own.message_id).await.unwrap();
    assert_eq!(st.channel.as_deref(), Some(HANDOVER_CHANNEL));
    assert_eq!(st.readers.len(), 1);
    assert_eq!(st.readers[0].peer_id, "", "waits for no registration yet");
    assert_eq!(st.readers[0].to, "alpha");
    assert_eq!(st.readers[0].status, MessageState::Queued);

    // The next session in alpha's directory: a new Claude Code process, after alpha ended.
    alpha.client.unregister().await.unwrap();
    let next = register_as(&env, fake_claude(), "/w/alpha").await;
    assert_eq!(next.reg.name, "alpha");
    let got = next.client.claim(&ClaimRequest::default()).await.unwrap();
    let bodies: Vec<&str> = got.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["tests green; next: docs", "also: bump the version"]
    );
    assert!(
        got.messages
            .iter()
            .all(|m| m.channel.as_deref() == Some(HANDOVER_CHANNEL))
    );
    assert_eq!(got.messages[0].from, "alpha@box");
    next.client
        .ack(&AckRequest {
            lease_id: got.lease_id.unwrap(),
            via: "SessionStart".into(),
            message_ids: None,
        })
        .await
        .unwrap();
    assert_eq!(
        deliver_all(&next.client, "PostToolUse").await,
        0,
        "delivered once"
    );
    let st = next.client.message_status(second.message_id).await.unwrap();
    assert_eq!(st.readers[0].peer_id, next.reg.peer_id);
    assert_eq!(st.readers[0].status, MessageState::Delivered);
    assert_eq!(st.readers[0].delivered_via.as_deref(), Some("SessionStart"));

    // Beta's handover is still waiting: beta has not had a next session.
    let st = next
        .client
        .message_status(for_beta.message_id)
        .await
        .unwrap();
    assert_eq!(st.readers[0].peer_id, "");
}

#[tokio::test]
async fn a_bad_handover_is_refused_and_stores_nothing() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/alpha").await;
    for bad in [
        note("  ", None),
        note("x", Some("#topic")),
        note("x", Some("*")),
    ] {
        let e = a.client.handover(&bad).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "{bad:?}: {e}");
    }
    let log = env
        .user_client()
        .messages(&HistoryQuery::default())
        .await
        .unwrap();
    assert!(log.messages.is_empty());
}
