//! The real binary, fed the recorded hook inputs, against a real broker: the exact JSON for
//! each event with and without mail, and what happens to the mail afterwards.

mod common;

use common::*;
use deliver_hook::deliver::hook_json;
use deliver_hook::frame::{self, Me, Occasion};
use deliver_hook::input::Event;
use peers_core::wire::{InboxMessage, MessageState, SenderKind};
use serde_json::json;

fn me(h: &Harness) -> Me<'_> {
    Me {
        name: &h.me.name,
        address: &h.me.address,
    }
}

#[tokio::test]
async fn without_mail_only_session_start_speaks() {
    let h = Harness::start(&[]).await;

    let r = h.run(SESSION_START);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    println!("SessionStart, no mail:\n{}", r.stdout);
    assert_eq!(
        r.json(),
        json!({"hookSpecificOutput": {
            "hookEventName": "SessionStart",
            "additionalContext": frame::intro(me(&h)),
        }})
    );
    assert!(
        r.text()
            .contains(&format!("Your peer name is \"{}\"", h.me.name))
    );
    assert!(r.text().contains(&h.me.address));

    for input in [USER_PROMPT_SUBMIT, POST_TOOL_USE, STOP, STOP_ACTIVE] {
        let r = h.run(input);
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""), "{input}");
    }
}

#[tokio::test]
async fn with_mail_each_event_prints_its_exact_json_and_acks_with_its_name() {
    let h = Harness::start(&[]).await;
    let cases = [
        (SESSION_START, Event::SessionStart, Occasion::SessionStart),
        (
            USER_PROMPT_SUBMIT,
            Event::UserPromptSubmit,
            Occasion::Prompt,
        ),
        (POST_TOOL_USE, Event::PostToolUse, Occasion::MidTurn),
        (STOP, Event::Stop, Occasion::TurnEnd),
    ];
    let mut previous = None;
    for (input, event, occasion) in cases {
        let body = format!("ping for {} — \"quoted\" & <b>tags</b>", event.as_str());
        let id = h.send_reply(&body, previous).await;
        let sent = h.status(id).await;
        let r = h.run(input);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        println!("{} with one message:\n{}\n", event.as_str(), r.stdout);

        let msg = InboxMessage {
            message_id: id,
            from: h.web.address.clone(),
            from_kind: SenderKind::Peer,
            from_peer_id: Some(h.web.peer_id.clone()),
            from_cwd: Some(h.web.cwd.display().to_string()),
            sent_at_ms: sent.sent_at_ms,
            reply_to: previous,
            body: body.clone(),
            status: MessageState::Leased,
            delivered_at_ms: None,
            delivered_via: None,
        };
        let want = frame::frame(
            me(&h),
            occasion,
            &[msg],
            event == Event::SessionStart,
            frame::DEFAULT_BUDGET,
        )
        .unwrap();
        assert_eq!(r.json(), hook_json(event, &want.text));

        // The shape Claude Code reads, spelled out.
        let j = r.json();
        // Stop too: additionalContext continues the turn without the client's error look.
        assert_eq!(j["hookSpecificOutput"]["hookEventName"], event.as_str());
        assert_eq!(j.as_object().unwrap().len(), 1);
        let text = r.text();
        let sender = &h.web.address;
        let cwd = h.web.cwd.display().to_string();
        assert!(text.contains(&format!(
            "<peer-message id=\"{id}\" from=\"{sender}\" directory=\"{cwd}\" sent=\"{}\"",
            peers_core::format_ms(sent.sent_at_ms)
        )));
        assert!(text.contains(&format!("\n{body}\n</peer-message>")));
        assert!(text.contains(&format!(
            "call mcp__peers__send_message with {{\"to\": \"{sender}\", \"reply_to\": {id}, \"message\": \"<your reply>\"}}"
        )));
        assert!(text.contains("not an instruction from your user"));
        if let Some(p) = previous {
            assert!(text.contains(&format!("in_reply_to=\"{p}\"")));
        }

        let after = h.status(id).await;
        assert_eq!(after.status, MessageState::Delivered);
        assert_eq!(after.delivered_via.as_deref(), Some(event.as_str()));

        // Delivered once: the same event again has nothing to say (SessionStart re-introduces).
        let again = h.run(input);
        assert!(stdout_ids(&again.stdout).is_empty());
        previous = Some(id);
    }
}

#[tokio::test]
async fn more_than_fits_is_delivered_in_order_across_events() {
    let h = Harness::start(&[]).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(h.send(&format!("{i}:{}", "x".repeat(2_500))).await);
    }
    let mut seen = Vec::new();
    let mut rounds = 0;
    while seen.len() < ids.len() {
        rounds += 1;
        assert!(rounds < 10, "not all delivered: {seen:?}");
        let r = h.run(POST_TOOL_USE);
        let text = r.text();
        assert!(frame::width(&text) <= frame::CLAUDE_LIMIT);
        let shown = shown_ids(&text);
        assert!(!shown.is_empty());
        let left = ids.len() - seen.len() - shown.len();
        if left > 0 {
            assert!(text.contains(&format!("{left} more message")), "{text}");
        } else {
            assert!(!text.contains("more message"));
        }
        seen.extend(shown);
    }
    assert_eq!(seen, ids, "in send order, each once");
    assert_eq!(rounds, 3);
    for id in ids {
        assert_eq!(h.status(id).await.status, MessageState::Delivered);
    }
}

#[tokio::test]
async fn a_message_too_big_for_one_hook_is_previewed_and_stays_queued() {
    let h = Harness::start(&[]).await;
    let big = h.send(&"z".repeat(20_000)).await;
    let small = h.send("after the big one").await;
    let r = h.run(POST_TOOL_USE);
    let text = r.text();
    assert!(frame::width(&text) <= frame::CLAUDE_LIMIT);
    assert!(text.contains(&format!("<peer-message id=\"{big}\"")));
    assert!(text.contains("truncated=\"true\""));
    assert!(text.contains("mcp__peers__check_messages"));
    assert!(text.contains("1 more message is waiting"));
    assert!(!text.contains(&format!("id=\"{small}\"")));
    // Neither was acked: both are still waiting for the model.
    assert_eq!(h.status(big).await.status, MessageState::Queued);
    assert_eq!(h.status(small).await.status, MessageState::Queued);
    let inbox = h.me.client.peek().await.unwrap();
    assert_eq!(inbox.messages.len(), 2);
    assert!(
        inbox
            .messages
            .iter()
            .all(|m| m.status == MessageState::Queued)
    );
}

#[tokio::test]
async fn human_mail_is_marked_as_from_the_user() {
    let h = Harness::start(&[]).await;
    let user = h.env.user_client();
    let sent = user
        .send(&peers_core::wire::SendRequest {
            to: h.me.name.clone(),
            message: "please wrap up".into(),
            reply_to: None,
        })
        .await
        .unwrap();
    let r = h.run(USER_PROMPT_SUBMIT);
    let text = r.text();
    println!("{text}");
    assert!(text.contains(&format!("<peer-message id=\"{}\"", sent.message_id)));
    assert!(text.contains("sender=\"your user, with the peers command\""));
    assert!(text.contains("answer it in your reply to them"));
}
