//! The end-to-end scenarios (s1–s6 of the harness issue, s7–s10 of issue 10, s11 of issue 13,
//! s12 of issue 14): real Claude Code sessions, the real `peers-mcp`, `peers-deliver` and `peers-broker`, scripted models. Each
//! asserts on what the models were shown (the recorded API requests) and prints its measured
//! latency as an `E2E-LATENCY` line for `cargo xtask e2e`.
//!
//! Run one at a time (they take a lock); each is bounded by generous deadlines.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{RUN, StandIn, WAIT, World};
use peers_core::claude_settings;
use peers_core::wire::SendResponse;
use peers_testkit::claude::shown::{self, last_number_after, reply_hints};
use peers_testkit::claude::{
    FakeApi, Gate, Headless, Interactive, Recorded, Reply, Step, report_latency, serial,
};
use serde_json::json;

const SEND: &str = "mcp__peers__send_message";
const LIST: &str = "mcp__peers__list_peers";
const STATUS: &str = "mcp__peers__message_status";
const SUBSCRIBE: &str = "mcp__peers__subscribe";

fn has_peer_mail(text: &str) -> bool {
    text.contains("<peer-message")
}

/// The message id the last `send_message` result named.
fn sent_id(text: &str) -> Option<i64> {
    last_number_after(text, &["message #", "message_id", "message id"])
}

/// Checks a finished headless run and prints its output on failure.
fn assert_ran(label: &str, out: &peers_testkit::claude::RunOutput, api: &FakeApi) {
    api.dump_if_asked();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "[{label}] claude -p did not exit cleanly: {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr,
        api.transcript()
    );
}

/// The first main-loop request whose latest text contains `needle`.
fn first_with(api: &FakeApi, needle: &str) -> Option<Recorded> {
    api.main_requests()
        .into_iter()
        .find(|r| r.latest_text().contains(needle))
}

/// 1. Two headless sessions: A lists peers and sees B, sends to B; B's next PostToolUse shows
///    the mail with A's name and how to reply; A's message_status says delivered via
///    PostToolUse.
#[test]
fn s1_list_send_and_mid_turn_delivery() {
    let _serial = serial();
    let Some(w) = World::new("s1_list_send_and_mid_turn_delivery", &[]) else {
        return;
    };
    let body = "s1: please look at the parser, it rejects empty input";
    let a_sent = Gate::new();
    let b_seen = Gate::new();

    let b_api = FakeApi::start(
        "beta",
        vec![
            Step::after(&a_sent, WAIT, Reply::bash("echo beta-working")),
            {
                let b_seen = b_seen.clone();
                Step::dynamic(move |ctx| {
                    if has_peer_mail(&ctx.latest_text()) {
                        b_seen.open();
                    }
                    Reply::text("beta saw its mail")
                })
            },
        ],
    );
    let a_api = FakeApi::start(
        "alpha",
        vec![
            Step::tool(LIST, json!({})),
            Step::tool(SEND, json!({"to": "beta", "message": body})),
            {
                let (a_sent, b_seen) = (a_sent.clone(), b_seen.clone());
                Step::dynamic(move |ctx| {
                    a_sent.open();
                    b_seen.wait(WAIT);
                    match sent_id(&ctx.latest_text()) {
                        Some(id) => Reply::tool(STATUS, json!({"message_id": id})),
                        None => Reply::text("the send result named no message id"),
                    }
                })
            },
            Step::text("alpha done"),
        ],
    );

    let mut b = Headless::start(&w.spec("beta", "beta", &b_api), "work on the parser").unwrap();
    w.wait_peer("beta", true, WAIT);
    let mut a = Headless::start(&w.spec("alpha", "alpha", &a_api), "coordinate with beta").unwrap();
    let a_out = a.wait(RUN).unwrap();
    let b_out = b.wait(RUN).unwrap();
    assert_ran("alpha", &a_out, &a_api);
    assert_ran("beta", &b_out, &b_api);

    // A's model saw B by name in list_peers.
    let list = &a_api.main_requests()[1];
    assert!(
        list.latest_text().contains("beta@"),
        "list_peers result does not name beta:\n{}",
        list.latest_text()
    );
    // The send result names the message id.
    let sent = first_with(&a_api, "sent to beta")
        .unwrap_or_else(|| panic!("no send result\n{}", a_api.transcript()));
    let id = sent_id(&sent.latest_text()).expect("message id in the send result");

    // B's model got it right after its Bash call, with A's name and how to reply.
    let got = first_with(&b_api, body)
        .unwrap_or_else(|| panic!("beta never saw the mail\n{}", b_api.transcript()));
    let t = got.latest_text();
    assert!(
        t.contains("beta-working"),
        "not beside the tool result:\n{t}"
    );
    assert!(
        t.contains("PostToolUse:Bash hook additional context"),
        "not PostToolUse context:\n{t}"
    );
    assert!(t.contains("alpha@"), "sender name missing:\n{t}");
    let hints = reply_hints(&t);
    assert!(
        hints
            .iter()
            .any(|h| h.reply_to == id && h.to.starts_with("alpha")),
        "no reply instruction naming {SEND} with to=alpha and reply_to={id}:\n{t}"
    );
    assert!(t.contains(SEND), "{t}");

    // A's message_status: delivered, via PostToolUse.
    let status = a_api.main_requests().last().cloned().unwrap().latest_text();
    assert!(
        status.contains("delivered") && status.contains("PostToolUse"),
        "message_status does not say delivered via PostToolUse:\n{status}"
    );
    let st = w.status(id);
    assert_eq!(st.delivered_via.as_deref(), Some("PostToolUse"), "{st:?}");
    // SessionStart tells each model its own peer name.
    for (api, name) in [(&a_api, "alpha"), (&b_api, "beta")] {
        let first = api.main_requests()[0].all_text();
        let intro = format!("Your peer name is \"{name}\"");
        assert!(
            first.contains(&intro),
            "{name}'s SessionStart context does not give its peer name:\n{first}"
        );
    }
    w.assert_no_hook_errors(&a_api);
    w.assert_no_hook_errors(&b_api);
    report_latency(
        "s1",
        "send_to_context_posttooluse",
        got.at.saturating_duration_since(sent.at),
    );
}

/// 2. B ends its turn with mail queued: the Stop hook blocks and shows it; B replies with
///    reply_to; A sees the reply.
#[test]
fn s2_stop_hook_shows_mail_and_reply_comes_back() {
    let _serial = serial();
    let Some(w) = World::new("s2_stop_hook_shows_mail_and_reply_comes_back", &[]) else {
        return;
    };
    let body = "s2: which port does the staging server use?";
    let reply = "s2-reply: staging listens on 8443";
    let a_sent = Gate::new();

    let b_api = FakeApi::start(
        "beta",
        vec![
            Step::after(&a_sent, WAIT, Reply::text("beta finished its task")),
            Step::dynamic(move |ctx| {
                let t = ctx.latest_text();
                match reply_hints(&t).first() {
                    Some(h) => Reply::tool(
                        SEND,
                        json!({"to": h.to, "reply_to": h.reply_to, "message": reply}),
                    ),
                    None => Reply::text("no reply instruction was shown"),
                }
            }),
            Step::text("beta replied"),
        ],
    );
    let a_api = FakeApi::start(
        "alpha",
        vec![Step::tool(SEND, json!({"to": "beta", "message": body}))],
    );
    // After the send, A keeps working (one short Bash call after another) until the reply
    // shows up; bounded.
    let polls = Arc::new(AtomicUsize::new(0));
    {
        let (a_sent, polls) = (a_sent.clone(), polls.clone());
        a_api.set_fallback(Step::dynamic(move |ctx| {
            a_sent.open();
            if ctx.latest_text().contains(reply) {
                Reply::text("alpha got the reply")
            } else if polls.fetch_add(1, Ordering::SeqCst) > 120 {
                Reply::text("alpha gave up waiting")
            } else {
                Reply::bash("sleep 0.5; echo alpha-working")
            }
        }));
    }

    let mut b = Headless::start(&w.spec("beta", "beta", &b_api), "finish the task").unwrap();
    w.wait_peer("beta", true, WAIT);
    let mut a = Headless::start(&w.spec("alpha", "alpha", &a_api), "ask beta").unwrap();
    let b_out = b.wait(RUN).unwrap();
    let a_out = a.wait(RUN).unwrap();
    assert_ran("beta", &b_out, &b_api);
    assert_ran("alpha", &a_out, &a_api);

    let sent = first_with(&a_api, "sent to beta")
        .unwrap_or_else(|| panic!("no send result\n{}", a_api.transcript()));
    let id = sent_id(&sent.latest_text()).expect("message id in the send result");

    // B was held at its Stop and shown the mail.
    let stop = first_with(&b_api, body)
        .unwrap_or_else(|| panic!("beta never saw the mail\n{}", b_api.transcript()));
    let t = stop.latest_text();
    assert!(
        t.contains("Stop hook additional context"),
        "not Stop additional context:\n{t}"
    );
    // Once, not twice: no "blocking error" copy (the form of `{"decision":"block"}`).
    assert!(!t.contains("Stop hook blocking error"), "{t}");
    assert_eq!(t.matches(body).count(), 1, "{t}");
    assert_eq!(w.status(id).delivered_via.as_deref(), Some("Stop"));

    // B's reply carries reply_to; A was shown it with the link back.
    let back = first_with(&a_api, reply)
        .unwrap_or_else(|| panic!("alpha never saw the reply\n{}", a_api.transcript()));
    let t = back.latest_text();
    assert!(
        t.contains(&format!("re=\"{id}\""))
            || t.contains(&format!("in_reply_to=\"{id}\""))
            || t.contains(&format!("reply_to\": {id}")),
        "the reply does not point back at message {id}:\n{t}"
    );
    assert!(t.contains("beta@"), "reply sender missing:\n{t}");
    let st = w.status(id);
    assert_eq!(st.replies.len(), 1, "{st:?}");
    w.assert_no_hook_errors(&a_api);
    w.assert_no_hook_errors(&b_api);
    report_latency(
        "s2",
        "send_to_context_stop",
        stop.at.saturating_duration_since(sent.at),
    );
    report_latency(
        "s2",
        "reply_roundtrip",
        back.at.saturating_duration_since(sent.at),
    );
}

/// 3. Mail sent before B starts shows at B's SessionStart; mail sent while B waits for its
///    user shows with the next UserPromptSubmit. (Loop budget 0, so the idle waiter may not
///    wake B and the mail really waits for the user.)
#[test]
fn s3_session_start_and_user_prompt_delivery() {
    let _serial = serial();
    let Some(w) = World::new(
        "s3_session_start_and_user_prompt_delivery",
        &[("PEERS_LOOP_BUDGET", "0")],
    ) else {
        return;
    };
    let early = "s3-early: the build is red, start with the failing test";
    let later = "s3-later: the fix is merged, please rebase";

    // A first session of B, so that B's name exists; it ends.
    let first_api = FakeApi::start("beta-1", vec![Step::text("first run done")]);
    let mut first = Headless::start(&w.spec("beta-1", "beta", &first_api), "hello").unwrap();
    assert_ran("beta-1", &first.wait(RUN).unwrap(), &first_api);
    w.wait_peer("beta", false, WAIT);
    let (_, t_early) = w.send_as_user("beta", early);

    // B comes back interactively: SessionStart shows the early mail.
    let b_api = FakeApi::start(
        "beta",
        vec![
            Step::text("read the early mail"),
            Step::text("read the later mail"),
        ],
    );
    let mut b = Interactive::start(&w.spec("beta", "beta", &b_api)).unwrap();
    b.submit("what is new?").unwrap();
    let r1 = b_api
        .wait_for(WAIT, |r| r.main_loop)
        .unwrap_or_else(|| panic!("no request from beta:\n{}", b.screen()));
    let t = r1.all_text();
    assert!(
        t.contains(early),
        "early mail not in the first request:\n{}",
        b_api.transcript()
    );
    assert!(
        t.contains("SessionStart hook additional context"),
        "early mail not shown as SessionStart context:\n{}",
        shown::truncate(&shown::messages_text(&r1.body), 6000)
    );
    b_api
        .wait_for(WAIT, |r| {
            r.reply == Some(Reply::text("read the early mail"))
        })
        .unwrap();
    // Its turn is over; it waits for the user. Mail arrives meanwhile.
    assert!(b_api.wait_quiet(Duration::from_secs(2), WAIT));
    let (sent, t_later) = w.send_as_user("beta", later);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        first_with(&b_api, later).is_none(),
        "the later mail reached beta before its user spoke (budget 0 should stop wakes)"
    );
    assert_eq!(w.status(sent.message_id).status.as_str(), "queued");
    let t_prompt = Instant::now();
    b.submit("and now?").unwrap();
    let r2 = b_api.wait_for_text(WAIT, later).unwrap_or_else(|| {
        panic!(
            "later mail never shown:\n{}\n{}",
            b_api.transcript(),
            b.screen()
        )
    });
    let t = r2.latest_text();
    assert!(t.contains("and now?"), "not beside the prompt:\n{t}");
    assert!(
        t.contains("UserPromptSubmit hook additional context"),
        "not UserPromptSubmit context:\n{t}"
    );
    assert_eq!(
        w.status(sent.message_id).delivered_via.as_deref(),
        Some("UserPromptSubmit")
    );
    b_api.dump_if_asked();
    w.assert_no_hook_errors(&b_api);
    b.stop();
    report_latency(
        "s3",
        "waited_for_session_start",
        r1.at.saturating_duration_since(t_early),
    );
    report_latency(
        "s3",
        "waited_for_user_prompt",
        r2.at.saturating_duration_since(t_later),
    );
    report_latency(
        "s3",
        "prompt_to_context",
        r2.at.saturating_duration_since(t_prompt),
    );
}

/// 4. An idle interactive session is woken by mail and shows it to its model.
#[test]
fn s4_idle_session_is_woken_by_mail() {
    let _serial = serial();
    let Some(w) = World::new("s4_idle_session_is_woken_by_mail", &[]) else {
        return;
    };
    let body = "s4: wake up, the deploy needs your sign-off";
    let api = FakeApi::start(
        "gamma",
        vec![
            Step::text("nothing to do right now"),
            Step::text("read the wake-up mail"),
        ],
    );
    let mut s = Interactive::start(&w.spec("gamma", "gamma", &api)).unwrap();
    s.submit("hello").unwrap();
    api.wait_for(WAIT, |r| {
        r.reply == Some(Reply::text("nothing to do right now"))
    })
    .unwrap_or_else(|| panic!("first turn never ran:\n{}", s.screen()));
    // Idle: the turn ended, the Stop hooks ran, the waiter is armed.
    assert!(api.wait_quiet(Duration::from_secs(3), WAIT));
    let before = api.main_requests().len();
    let (sent, t0) = w.send_as_user("gamma", body);
    let woke = api
        .wait_for_text(Duration::from_secs(60), body)
        .unwrap_or_else(|| panic!("never woken:\n{}\n{}", api.transcript(), s.screen()));
    let latency = woke.at.saturating_duration_since(t0);
    assert!(api.main_requests().len() > before);
    let t = woke.latest_text();
    assert!(t.contains("Stop hook feedback"), "not a wake:\n{t}");
    assert!(has_peer_mail(&t), "{t}");
    let st = w.status(sent.message_id);
    assert_eq!(st.status.as_str(), "delivered", "{st:?}");
    api.dump_if_asked();
    w.assert_no_hook_errors(&api);
    s.stop();
    report_latency("s4", "send_to_context_wake", latency);
    if latency > Duration::from_secs(1) {
        eprintln!("[s4] NOTE: the wake took {latency:?}, more than the 1 s target");
    }
}

/// 5. Two sessions whose models answer every message: the exchange stops within the loop
///    budget and the human gets a notice.
#[test]
fn s5_loop_budget_stops_endless_replies() {
    let _serial = serial();
    const BUDGET: usize = 3;
    let Some(w) = World::new(
        "s5_loop_budget_stops_endless_replies",
        &[("PEERS_LOOP_BUDGET", "3")],
    ) else {
        return;
    };
    let answer_everything = |who: &'static str| {
        let n = Arc::new(AtomicUsize::new(0));
        Step::dynamic(move |ctx| {
            let hints = reply_hints(&ctx.latest_text());
            if hints.is_empty() {
                return Reply::text(format!("{who}: nothing to answer"));
            }
            let k = n.fetch_add(1, Ordering::SeqCst);
            Reply {
                text: Some(format!("{who} answers")),
                tools: hints
                    .iter()
                    .map(|h| peers_testkit::claude::ToolCall {
                        name: SEND.into(),
                        input: json!({"to": h.to, "reply_to": h.reply_to,
                                      "message": format!("{who} reply {k}")}),
                    })
                    .collect(),
            }
        })
    };
    let a_api = FakeApi::start(
        "alpha",
        vec![Step::tool(SEND, json!({"to": "beta", "message": "ping"}))],
    );
    a_api.set_fallback(answer_everything("alpha"));
    let b_api = FakeApi::start("beta", vec![]);
    b_api.set_fallback(answer_everything("beta"));

    let mut b = Interactive::start(&w.spec("beta", "beta", &b_api)).unwrap();
    b.submit("stand by").unwrap();
    b_api.wait_for(WAIT, |r| r.main_loop).unwrap();
    assert!(b_api.wait_quiet(Duration::from_secs(2), WAIT));
    let mut a = Interactive::start(&w.spec("alpha", "alpha", &a_api)).unwrap();
    let t0 = Instant::now();
    a.submit("say ping to beta").unwrap();

    // Let it run until both sides are quiet for a while (bounded).
    let quiet = Duration::from_secs(12);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let last = a_api
            .records()
            .into_iter()
            .chain(b_api.records())
            .map(|r| r.at)
            .max()
            .unwrap();
        if last.elapsed() >= quiet {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exchange did not stop within 240 s"
        );
    }
    let sends = |api: &FakeApi| {
        api.main_requests()
            .iter()
            .filter_map(|r| r.reply.clone())
            .flat_map(|r| r.tools)
            .filter(|t| t.name == SEND)
            .count()
    };
    let (sa, sb) = (sends(&a_api), sends(&b_api));
    a_api.dump_if_asked();
    b_api.dump_if_asked();
    eprintln!("[s5] alpha sent {sa}, beta sent {sb} in {:?}", t0.elapsed());
    // Each automatic turn (a wake or a Stop block) answers at most one message; the first
    // ping is alpha's own prompt. So neither side sends more than budget + 1.
    assert!(
        sa <= BUDGET + 1 && sb <= BUDGET + 1,
        "alpha sent {sa}, beta sent {sb}: more than the budget of {BUDGET} allows"
    );
    assert!(
        sa + sb > BUDGET,
        "only {} messages: the exchange stopped before the budget mattered",
        sa + sb
    );
    let notices = w.notices().notices;
    let budget_notices: Vec<_> = notices.iter().filter(|n| n.kind == "loop_budget").collect();
    assert!(
        !budget_notices.is_empty(),
        "no loop_budget notice for the human: {notices:#?}"
    );
    eprintln!("[s5] notice: {}", budget_notices[0].text);
    w.assert_no_hook_errors(&a_api);
    w.assert_no_hook_errors(&b_api);
    a.stop();
    b.stop();
    report_latency(
        "s5",
        "exchange_until_quiet",
        t0.elapsed().saturating_sub(quiet),
    );
}

/// 6. The broker dies between two tool calls: the session's tools keep working, no hook
///    error reaches the model, and mail sent once the broker is back arrives.
#[test]
fn s6_broker_outage_is_invisible_and_mail_resumes() {
    let _serial = serial();
    // peers-mcp heartbeats every second here, so it notices the outage and restarts the
    // broker itself; the test restarts it only if that does not happen in time.
    let Some(mut w) = World::new(
        "s6_broker_outage_is_invisible_and_mail_resumes",
        &[("PEERS_HEARTBEAT_MS", "1000")],
    ) else {
        return;
    };
    let body = "s6: the broker is back, did you get this?";
    let at_second = Gate::new();
    let broker_down = Gate::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let api = FakeApi::start(
        "delta",
        vec![
            Step::bash("echo one-before-outage"),
            {
                let (at_second, broker_down) = (at_second.clone(), broker_down.clone());
                Step::dynamic(move |_| {
                    at_second.open();
                    broker_down.wait(WAIT);
                    Reply::bash("echo two-while-broker-down")
                })
            },
            Step::bash("echo three-while-broker-down"),
        ],
    );
    {
        let polls = polls.clone();
        api.set_fallback(Step::dynamic(move |ctx| {
            if ctx.latest_text().contains(body) {
                Reply::text("delta got the mail")
            } else if polls.fetch_add(1, Ordering::SeqCst) > 120 {
                Reply::text("delta gave up waiting")
            } else {
                Reply::bash("sleep 0.5; echo delta-working")
            }
        }));
    }
    let mut s = Headless::start(&w.spec("delta", "delta", &api), "keep working").unwrap();
    let before = w.wait_peer("delta", true, WAIT);
    assert!(
        at_second.wait(WAIT),
        "the session never reached its second step"
    );
    w.kill_broker();
    broker_down.open();
    // Two tool calls run with the broker gone.
    api.wait_for(WAIT, |r| {
        r.main_loop && r.latest_text().contains("three-while-broker-down")
    })
    .unwrap_or_else(|| panic!("tool calls stalled without a broker\n{}", api.transcript()));
    let t_down = Instant::now();
    while !w.healthy() && t_down.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let started_here = w.restart_broker();
    eprintln!(
        "[s6] broker back after {:?} ({})",
        t_down.elapsed(),
        if started_here {
            "restarted by the test"
        } else {
            "restarted by peers-mcp"
        }
    );
    // Wait until the session's peer is settled: when peers-mcp restarted the broker it
    // registers again (a new peer id replacing the old one), and the session file names the
    // live peer. Sending in the middle of that re-registration is a separate race (see the
    // report); this scenario is about mail sent once the broker is back.
    let settle = Instant::now() + WAIT;
    loop {
        let file = peers_core::session::SessionFile::read(&w.env.state_dir, s.pid())
            .ok()
            .flatten();
        let live: Vec<_> = w
            .peers()
            .into_iter()
            .filter(|p| p.alive && p.name == "delta")
            .collect();
        let settled = matches!((&file, live.as_slice()), (Some(f), [p])
            if f.peer_id == p.peer_id && (started_here || p.peer_id != before.peer_id));
        if settled {
            break;
        }
        assert!(
            Instant::now() < settle,
            "the session never settled after the outage: file {file:?}, live {live:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, t0) = w.send_as_user("delta", body);
    let out = s.wait(RUN).unwrap();
    assert_ran("delta", &out, &api);
    let got = first_with(&api, body).unwrap_or_else(|| {
        panic!(
            "mail after the outage never arrived\n{}\nstatus: {:#?}\npeers: {:#?}",
            api.transcript(),
            w.status(sent.message_id),
            w.peers()
        )
    });
    for step in [
        "one-before-outage",
        "two-while-broker-down",
        "three-while-broker-down",
    ] {
        assert!(
            first_with(&api, step).is_some(),
            "tool output {step} missing\n{}",
            api.transcript()
        );
    }
    w.assert_no_hook_errors(&api);
    assert!(
        !out.stderr.to_lowercase().contains("hook"),
        "claude printed hook trouble: {}",
        out.stderr
    );
    assert_eq!(w.status(sent.message_id).status.as_str(), "delivered");
    report_latency(
        "s6",
        "send_to_context_after_outage",
        got.at.saturating_duration_since(t0),
    );
}

/// The wake wrapper Claude Code puts around an asyncRewake hook's stderr.
const WAKE_WRAPPER: &str = "[SYSTEM NOTIFICATION - NOT USER INPUT]";

/// Wall-clock milliseconds of a recorded request.
fn wall_ms(at: Instant) -> i64 {
    peers_core::now_ms() - Instant::now().saturating_duration_since(at).as_millis() as i64
}

/// Texts on a pane that mean the session waits for a human to answer a dialog.
const PROMPT_MARKERS: &[&str] = &[
    "Do you want to",
    "Enter to continue",
    "Esc to cancel",
    "Yes, and don't ask again",
    "Allow this",
    "❯ 1.",
];

fn prompt_on(screen: &str) -> Option<&'static str> {
    PROMPT_MARKERS.iter().copied().find(|m| screen.contains(m))
}

/// 7. A just-started interactive session that never got a prompt (so never ran a Stop hook)
///    is woken by mail within 2 s: the waiter is armed at SessionStart. The sender is a real
///    session whose `send_message` result promises the wake.
#[test]
fn s7_a_fresh_session_is_woken_by_mail() {
    let _serial = serial();
    let Some(w) = World::new("s7_a_fresh_session_is_woken_by_mail", &[]) else {
        return;
    };
    let body = "s7: hello web, are you there? (sent before you ever had a prompt)";
    let web_api = FakeApi::start("web", vec![Step::text("web read the mail")]);
    let mut web = Interactive::start(&w.spec("web", "web", &web_api)).unwrap();
    w.wait_peer("web", true, WAIT);
    w.wait_session_file(web.pid(), WAIT);
    // Nobody types anything into web.
    let api_api = FakeApi::start(
        "api",
        vec![
            Step::tool(SEND, json!({"to": "web", "message": body})),
            Step::text("api sent it"),
        ],
    );
    let mut api = Headless::start(&w.spec("api", "api", &api_api), "tell web hello").unwrap();
    let api_out = api.wait(RUN).unwrap();
    assert_ran("api", &api_out, &api_api);
    let sent = first_with(&api_api, "sent to web")
        .unwrap_or_else(|| panic!("no send result\n{}", api_api.transcript()));
    let result = sent.latest_text();
    let id = sent_id(&result).expect("message id in the send result");
    eprintln!("[s7] api's model was shown:\n{result}");

    let woke = web_api.wait_for_text(Duration::from_secs(20), body);
    let st = w.status(id);
    let woke = woke.unwrap_or_else(|| {
        panic!(
            "the fresh session was never woken (no waiter at SessionStart?)\nstatus: {st:#?}\n{}\n{}",
            web_api.transcript(),
            web.screen()
        )
    });
    let latency_ms = wall_ms(woke.at) - st.sent_at_ms;
    let t = woke.latest_text();
    assert!(t.contains(WAKE_WRAPPER), "not a wake:\n{t}");
    assert!(has_peer_mail(&t), "{t}");
    assert_eq!(st.status.as_str(), "delivered", "{st:?}");
    assert_eq!(st.delivered_via.as_deref(), Some("wake"), "{st:?}");
    // What the sender was told matches what happened: the result speaks of waking the
    // recipient and does not say it cannot be woken.
    let lower = result.to_lowercase();
    assert!(lower.contains("wak"), "{result}");
    for never in [
        "cannot be woken",
        "can't be woken",
        "cannot wake",
        "not be woken",
    ] {
        assert!(
            !lower.contains(never),
            "the send result says {never:?}:\n{result}"
        );
    }
    web_api
        .wait_for(WAIT, |r| r.reply == Some(Reply::text("web read the mail")))
        .unwrap();
    web_api.dump_if_asked();
    w.assert_no_hook_errors(&web_api);
    w.assert_no_hook_errors(&api_api);
    web.stop();
    report_latency(
        "s7",
        "send_to_context_fresh_wake",
        Duration::from_millis(latency_ms.max(0) as u64),
    );
    assert!(
        latency_ms <= 2_000,
        "woken {latency_ms} ms after the send (the issue asks for 2 s)"
    );
}

/// Runs the unattended-wake setup: an interactive session `web` whose settings hold
/// `settings_extra`, one finished turn, then mail from a stand-in peer `api` wakes it and its
/// scripted model answers with the reply the hint asks for. Returns the world, the session,
/// its fake API, the stand-in and the id of the mail sent to web.
fn woken_session_replies(
    name: &str,
    settings_extra: serde_json::Value,
) -> Option<(World, Interactive, FakeApi, common::StandIn, i64)> {
    let w = World::new(name, &[])?;
    let web_api = FakeApi::start(
        "web",
        vec![
            Step::text("nothing to do yet"),
            Step::dynamic(|ctx| {
                let t = ctx.latest_text();
                match reply_hints(&t).first() {
                    Some(h) => Reply::tool(
                        h.tool.clone().unwrap_or_else(|| SEND.to_string()),
                        json!({"to": h.to, "reply_to": h.reply_to,
                               "message": "s8-reply: yes, on it"}),
                    ),
                    None => Reply::text("no reply instruction was shown"),
                }
            }),
            Step::text("web replied"),
        ],
    );
    let mut spec = w.unattended_spec("web", "web", &web_api);
    if let (Some(s), Some(extra)) = (spec.settings.as_mut(), settings_extra.as_object()) {
        for (k, v) in extra {
            s[k] = v.clone();
        }
    }
    let web = Interactive::start(&spec).unwrap();
    let api = w.stand_in("api");
    web.submit("hello").unwrap();
    web_api
        .wait_for(WAIT, |r| r.reply == Some(Reply::text("nothing to do yet")))
        .unwrap_or_else(|| panic!("first turn never ran:\n{}", web.screen()));
    assert!(web_api.wait_quiet(Duration::from_secs(3), WAIT));
    // Nobody watches the pane from here on.
    let (sent, _) = w.send_from(&api, "web", "s8: can you take the release notes?");
    web_api
        .wait_for_text(WAIT, "s8: can you take the release notes?")
        .unwrap_or_else(|| panic!("never woken:\n{}\n{}", web_api.transcript(), web.screen()));
    Some((w, web, web_api, api, sent.message_id))
}

/// 8. A woken, unattended session's `send_message` runs with no permission prompt: the
///    session settings allow the peers tools (as `peers install` writes them), and the
///    reply reaches the broker.
#[test]
fn s8_a_woken_session_sends_without_a_prompt() {
    let _serial = serial();
    let allow = json!({"permissions": {"allow": common::peers_tools()}});
    let Some((w, mut web, web_api, api, id)) =
        woken_session_replies("s8_a_woken_session_sends_without_a_prompt", allow)
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = vec![];
    while got.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        got = w.take_mail(&api);
    }
    let screen = web.scrollback(300);
    assert!(
        got.iter().any(|m| m.reply_to == Some(id)),
        "the woken session's reply never reached the broker: {got:#?}\n{}\n{screen}",
        web_api.transcript()
    );
    assert_eq!(
        prompt_on(&screen),
        None,
        "a dialog appeared on the pane:\n{screen}"
    );
    let after = web_api
        .wait_for(WAIT, |r| r.reply == Some(Reply::text("web replied")))
        .unwrap_or_else(|| panic!("no turn after the send:\n{}", web_api.transcript()));
    assert!(
        !after.latest_text().contains("(error)"),
        "the send failed:\n{}",
        after.latest_text()
    );
    web_api.dump_if_asked();
    w.assert_no_hook_errors(&web_api);
    web.stop();
}

/// 8, the other way round: without the allow entries the same woken session stalls on a
/// dialog nobody sees, and its reply never reaches the broker (what `permissions.allow`
/// prevents).
#[test]
fn s8_without_allow_entries_a_woken_send_waits_on_a_dialog() {
    let _serial = serial();
    let Some((w, mut web, web_api, api, id)) = woken_session_replies(
        "s8_without_allow_entries_a_woken_send_waits_on_a_dialog",
        json!({}),
    ) else {
        return;
    };
    // Generous: an allowed send reaches the broker well within a second (s8 above).
    let screen = web
        .wait_screen(Duration::from_secs(30), |s| prompt_on(s).is_some())
        .unwrap_or_else(|e| panic!("no dialog appeared: {e}\n{}", web_api.transcript()));
    std::thread::sleep(Duration::from_secs(5));
    let got = w.take_mail(&api);
    assert!(
        !got.iter().any(|m| m.reply_to == Some(id)),
        "the reply went out without an allow entry: {got:#?}"
    );
    assert_eq!(w.status(id).status.as_str(), "delivered");
    eprintln!(
        "[s8-negative] the pane waits on: {:?}\n{screen}",
        prompt_on(&screen)
    );
    web_api.dump_if_asked();
    web.stop();
}

/// A scripted turn that replies to the mail it was shown through the tool its reply hint
/// names (read from the hint, not hard-coded), noting that tool's name in `used_tool`.
fn reply_with_the_hinted_tool(
    used_tool: &Arc<std::sync::Mutex<Option<String>>>,
    message: &'static str,
) -> Step {
    let used_tool = used_tool.clone();
    Step::dynamic(move |ctx| {
        let t = ctx.latest_text();
        match reply_hints(&t).into_iter().next() {
            Some(h) => {
                let tool = h.tool.clone().unwrap_or_else(|| "no-tool-named".into());
                *used_tool.lock().unwrap() = Some(tool.clone());
                Reply::tool(
                    tool,
                    json!({"to": h.to, "reply_to": h.reply_to, "message": message}),
                )
            }
            None => Reply::text("no reply instruction was shown"),
        }
    })
}

/// The hinted `tool` ran (its `result` is no error), the reply reached `sender` as a reply to
/// `sent`, and no hook reported a problem.
fn assert_the_hinted_tool_ran(
    w: &World,
    api: &FakeApi,
    result: &str,
    tool: &Option<String>,
    sender: &StandIn,
    sent: &SendResponse,
) {
    assert!(
        !result.contains("No such tool") && !result.contains("(error)"),
        "the tool the reply hint named ({tool:?}) did not run:\n{result}"
    );
    let got = w.take_mail(sender);
    assert!(
        got.iter().any(|m| m.reply_to == Some(sent.message_id)),
        "the reply never reached the broker: {got:#?}"
    );
    w.assert_no_hook_errors(api);
}

/// 9. The plugin route (`claude --plugin-dir` with the repository's plugin files): the tools
///    are the plugin's (`mcp__plugin_<plugin>_<server>__…`). Mail arrives mid-turn; the
///    scripted model calls exactly the tool the reply hint names, and it runs.
///    Needs the render branch (tool names per client in every text): on main the hint names
///    `mcp__peers__send_message`, which this session does not have.
#[test]
fn s9_plugin_route_reply_hint_names_a_tool_that_exists() {
    let _serial = serial();
    let Some(w) = World::new("s9_plugin_route_reply_hint_names_a_tool_that_exists", &[]) else {
        return;
    };
    let sender = w.stand_in("api");
    let mail_sent = Gate::new();
    let used_tool = Arc::new(std::sync::Mutex::new(None::<String>));
    let api = FakeApi::start(
        "web",
        vec![
            Step::after(&mail_sent, WAIT, Reply::bash("echo web-working")),
            reply_with_the_hinted_tool(&used_tool, "s9-reply via the plugin"),
            Step::text("web done"),
        ],
    );
    // Both spellings allowed, so that permissions decide nothing here: only whether the
    // named tool exists.
    let mut allowed = vec!["Bash".to_string()];
    allowed.extend(common::peers_tools());
    allowed.extend(claude_settings::allowed_tools(
        claude_settings::PLUGIN_TOOL_PREFIX,
    ));
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let mut s =
        Headless::start(&w.plugin_spec("web", "web", &api, &allowed), "work on it").unwrap();
    w.wait_peer("web", true, WAIT);
    api.wait_for(WAIT, |r| r.main_loop).expect("first request");
    // The tool names the client lists for this session.
    let listed = api.main_requests()[0].all_text();
    let (sent, _) = w.send_from(&sender, "web", "s9: please reply through the plugin tools");
    mail_sent.open();
    let out = s.wait(RUN).unwrap();
    assert_ran("web", &out, &api);
    let shown = first_with(&api, "s9: please reply")
        .unwrap_or_else(|| panic!("the mail never reached the model:\n{}", api.transcript()));
    let tool = used_tool.lock().unwrap().clone();
    eprintln!(
        "[s9] the hint named {tool:?}; the client lists plugin tools: {}",
        listed.contains("mcp__plugin_peers_peers__send_message")
    );
    let after = api
        .main_requests()
        .into_iter()
        .find(|r| r.seq > shown.seq && r.latest_text().contains("[tool_result"))
        .unwrap_or_else(|| panic!("no tool result after the reply:\n{}", api.transcript()));
    assert_the_hinted_tool_ran(&w, &api, &after.latest_text(), &tool, &sender, &sent);
}

/// 9b. The plugin route in an interactive session under tmux: the plugin's SessionStart
///     waiter wakes the idle session, the scripted model calls the tool the reply hint names
///     (read from the hint, not hard-coded), and it exists and runs.
#[test]
fn s9b_plugin_route_in_an_interactive_session() {
    let _serial = serial();
    let Some(w) = World::new("s9b_plugin_route_in_an_interactive_session", &[]) else {
        return;
    };
    let used_tool = Arc::new(std::sync::Mutex::new(None::<String>));
    let api = FakeApi::start(
        "web",
        vec![
            Step::text("nothing to do yet"),
            reply_with_the_hinted_tool(&used_tool, "s9b-reply via the plugin"),
            Step::text("web replied"),
        ],
    );
    let allowed = claude_settings::allowed_tools(claude_settings::PLUGIN_TOOL_PREFIX);
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let web = Interactive::start(&w.plugin_spec("web", "web", &api, &allowed)).unwrap();
    w.wait_peer("web", true, WAIT);
    let sender = w.stand_in("api");
    web.submit("hello").unwrap();
    api.wait_for(WAIT, |r| r.reply == Some(Reply::text("nothing to do yet")))
        .unwrap_or_else(|| panic!("first turn never ran:\n{}", web.screen()));
    assert!(api.wait_quiet(Duration::from_secs(3), WAIT));
    let (sent, _) = w.send_from(&sender, "web", "s9b: please reply through the plugin tools");
    let shown = api
        .wait_for_text(WAIT, "s9b: please reply through the plugin tools")
        .unwrap_or_else(|| panic!("never woken:\n{}\n{}", api.transcript(), web.screen()));
    let after = api
        .wait_for(WAIT, |r| {
            r.seq > shown.seq && r.latest_text().contains("[tool_result")
        })
        .unwrap_or_else(|| panic!("no tool result after the reply:\n{}", api.transcript()));
    let tool = used_tool.lock().unwrap().clone();
    assert_eq!(
        tool.as_deref(),
        Some("mcp__plugin_peers_peers__send_message"),
        "the hint names the plugin's tool"
    );
    assert_the_hinted_tool_ran(&w, &api, &after.latest_text(), &tool, &sender, &sent);
}

/// 10. Mail that arrives as an interactive session ends its turn: the Stop hook continues the
///     turn with it (`additionalContext`), the model is shown it once, and the human's screen
///     shows it as hook text — not "Stop hook reported a problem".
#[test]
fn s10_stop_delivery_does_not_look_like_an_error() {
    let _serial = serial();
    let Some(w) = World::new("s10_stop_delivery_does_not_look_like_an_error", &[]) else {
        return;
    };
    let body = "s10: the staging deploy is done";
    let at_end = Gate::new();
    let sent = Gate::new();
    let api = FakeApi::start(
        "web",
        vec![
            {
                let (at_end, sent) = (at_end.clone(), sent.clone());
                Step::dynamic(move |_| {
                    at_end.open();
                    sent.wait(WAIT);
                    Reply::text("web is finishing its turn")
                })
            },
            Step::text("web read the Stop mail"),
        ],
    );
    let mut s = Interactive::start(&w.spec("web", "web", &api)).unwrap();
    s.submit("do the work").unwrap();
    assert!(at_end.wait(WAIT), "the turn never ran:\n{}", s.screen());
    let (msg, _) = w.send_as_user("web", body);
    sent.open();
    let got = api
        .wait_for_text(WAIT, body)
        .unwrap_or_else(|| panic!("the mail never reached the model:\n{}", api.transcript()));
    let t = got.latest_text();
    assert!(t.contains("Stop hook additional context"), "{t}");
    assert!(!t.contains("blocking error"), "{t}");
    assert_eq!(t.matches(body).count(), 1, "{t}");
    assert_eq!(
        w.status(msg.message_id).delivered_via.as_deref(),
        Some("Stop")
    );
    api.wait_for(WAIT, |r| {
        r.reply == Some(Reply::text("web read the Stop mail"))
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let screen = s.scrollback(300);
    eprintln!("[s10] the human's screen:\n{screen}");
    assert!(screen.contains("Stop hook says"), "{screen}");
    assert!(
        screen.contains(body),
        "the human cannot read the mail:\n{screen}"
    );
    for bad in ["reported a problem", "stop hook problem", "Stop hook error"] {
        assert!(!screen.contains(bad), "the screen says {bad:?}:\n{screen}");
    }
    w.assert_no_hook_errors(&api);
    s.stop();
}

/// 7b. The sender is told honestly whether the recipient can be woken: a fresh interactive
///     session has its SessionStart waiter armed (`recipient_can_wake: true`, and the wake
///     follows); a headless run arms none (`false`: the mail waits for its next hook event).
///     Needs the broker branch, which fills `recipient_can_wake` from its waiters (on main
///     the field is always `false`).
#[test]
fn s7_the_sender_is_told_whether_the_recipient_can_be_woken() {
    let _serial = serial();
    let Some(w) = World::new(
        "s7_the_sender_is_told_whether_the_recipient_can_be_woken",
        &[],
    ) else {
        return;
    };
    let fresh_body = "s7b: for the fresh session";
    let web_api = FakeApi::start("web", vec![Step::text("web read it")]);
    let mut web = Interactive::start(&w.spec("web", "web", &web_api)).unwrap();
    w.wait_session_file(web.pid(), WAIT);
    // The waiter finds the file within 50 ms and starts its long poll.
    std::thread::sleep(Duration::from_secs(1));
    let (fresh, _) = w.send_as_user("web", fresh_body);
    web_api
        .wait_for_text(Duration::from_secs(20), fresh_body)
        .unwrap_or_else(|| panic!("never woken:\n{}", web.screen()));
    web.stop();

    let cli_body = "s7b: for the headless run";
    let gate = Gate::new();
    let cli_api = FakeApi::start(
        "cli",
        vec![
            Step::after(&gate, WAIT, Reply::bash("echo cli-working")),
            Step::text("cli done"),
        ],
    );
    let mut cli = Headless::start(&w.spec("cli", "cli", &cli_api), "work").unwrap();
    w.wait_peer("cli", true, WAIT);
    cli_api
        .wait_for(WAIT, |r| r.main_loop)
        .expect("first request");
    let (headless, _) = w.send_as_user("cli", cli_body);
    gate.open();
    assert_ran("cli", &cli.wait(RUN).unwrap(), &cli_api);
    assert_eq!(
        w.status(headless.message_id).delivered_via.as_deref(),
        Some("PostToolUse")
    );
    assert!(
        fresh.recipient_can_wake,
        "a fresh interactive session has a waiter, but the send said it cannot be woken: {fresh:?}"
    );
    assert!(
        !headless.recipient_can_wake,
        "a headless run has no waiter, but the send said it can be woken: {headless:?}"
    );
}

/// 11 (issue 13). Four sessions: beta (headless) and gamma (interactive, `wake: true`)
///     subscribe to `#t`, delta does not; alpha posts to `#t`. Beta gets it mid-turn, idle
///     gamma is woken by it, delta never sees it, and alpha's `message_status` says delivered
///     to 2 of 2 readers, with how.
#[test]
fn s11_a_topic_post_reaches_each_subscriber_once() {
    let _serial = serial();
    let Some(w) = World::new("s11_a_topic_post_reaches_each_subscriber_once", &[]) else {
        return;
    };
    let body = "s11: main is red, do not merge";
    let (b_subscribed, c_subscribed) = (Gate::new(), Gate::new());
    let (a_sent, b_seen, c_seen) = (Gate::new(), Gate::new(), Gate::new());

    let b_api = FakeApi::start(
        "beta",
        vec![
            Step::tool(SUBSCRIBE, json!({"topic": "t"})),
            {
                let (b_subscribed, a_sent) = (b_subscribed.clone(), a_sent.clone());
                Step::dynamic(move |_| {
                    b_subscribed.open();
                    a_sent.wait(WAIT);
                    Reply::bash("echo beta-working")
                })
            },
            {
                let b_seen = b_seen.clone();
                Step::dynamic(move |ctx| {
                    if has_peer_mail(&ctx.latest_text()) {
                        b_seen.open();
                    }
                    Reply::text("beta saw the post")
                })
            },
        ],
    );
    let c_api = FakeApi::start(
        "gamma",
        vec![
            Step::tool(SUBSCRIBE, json!({"topic": "t", "wake": true})),
            Step::text("gamma subscribed, idle now"),
            {
                let c_seen = c_seen.clone();
                Step::dynamic(move |ctx| {
                    if has_peer_mail(&ctx.latest_text()) {
                        c_seen.open();
                    }
                    Reply::text("gamma read the post")
                })
            },
        ],
    );
    let d_api = FakeApi::start(
        "delta",
        vec![
            Step::after(&b_seen, WAIT, Reply::bash("echo delta-working")),
            Step::text("delta done"),
        ],
    );
    let a_api = FakeApi::start(
        "alpha",
        vec![
            {
                let (b, c) = (b_subscribed.clone(), c_subscribed.clone());
                Step::dynamic(move |_| {
                    b.wait(WAIT);
                    c.wait(WAIT);
                    Reply::tool(SEND, json!({"to": "#t", "message": body}))
                })
            },
            {
                let (a_sent, b_seen, c_seen) = (a_sent.clone(), b_seen.clone(), c_seen.clone());
                Step::dynamic(move |ctx| {
                    a_sent.open();
                    b_seen.wait(WAIT);
                    c_seen.wait(WAIT);
                    match sent_id(&ctx.latest_text()) {
                        Some(id) => Reply::tool(STATUS, json!({"message_id": id})),
                        None => Reply::text("the send result named no message id"),
                    }
                })
            },
            Step::text("alpha done"),
        ],
    );

    let mut b = Headless::start(&w.spec("beta", "beta", &b_api), "join #t, then work").unwrap();
    let mut c = Interactive::start(&w.spec("gamma", "gamma", &c_api)).unwrap();
    c.submit("join #t and wait").unwrap();
    c_api
        .wait_for(WAIT, |r| {
            r.reply == Some(Reply::text("gamma subscribed, idle now"))
        })
        .unwrap_or_else(|| panic!("gamma's first turn never ran:\n{}", c.screen()));
    assert!(
        c_api.wait_quiet(Duration::from_secs(3), WAIT),
        "gamma never went idle"
    );
    c_subscribed.open();
    let mut d = Headless::start(&w.spec("delta", "delta", &d_api), "work alone").unwrap();
    w.wait_peer("delta", true, WAIT);
    let mut a = Headless::start(&w.spec("alpha", "alpha", &a_api), "tell #t").unwrap();
    let a_out = a.wait(RUN).unwrap();
    assert_ran("alpha", &a_out, &a_api);
    assert_ran("beta", &b.wait(RUN).unwrap(), &b_api);
    assert_ran("delta", &d.wait(RUN).unwrap(), &d_api);

    let sent = first_with(&a_api, "posted to #t")
        .unwrap_or_else(|| panic!("no post result\n{}", a_api.transcript()));
    let id = sent_id(&sent.latest_text()).expect("message id in the post result");
    assert!(
        sent.latest_text().contains("2 reader(s)"),
        "{}",
        sent.latest_text()
    );
    // Beta: mid-turn, beside its tool result, naming the topic and the sender.
    let got = first_with(&b_api, body)
        .unwrap_or_else(|| panic!("beta never saw the post\n{}", b_api.transcript()));
    let t = got.latest_text();
    assert!(
        t.contains("beta-working") && t.contains("PostToolUse"),
        "{t}"
    );
    assert!(t.contains("to=\"#t\"") && t.contains("alpha@"), "{t}");
    // Gamma: woken while idle.
    let woke = c_api.wait_for_text(WAIT, body).unwrap_or_else(|| {
        panic!(
            "gamma was never woken\n{}\n{}",
            c_api.transcript(),
            c.screen()
        )
    });
    assert!(
        woke.latest_text().contains(WAKE_WRAPPER),
        "{}",
        woke.latest_text()
    );
    // Delta never sees it.
    assert!(
        !d_api.transcript().contains(body),
        "delta saw a post to a topic it is not in:\n{}",
        d_api.transcript()
    );
    // Alpha's status: 2 of 2, with how.
    let status = a_api.main_requests().last().cloned().unwrap().latest_text();
    assert!(status.contains("delivered to 2 of 2"), "{status}");
    assert!(
        status.contains("PostToolUse") && status.contains("wake"),
        "{status}"
    );
    let st = w.status(id);
    assert_eq!(st.delivered_of(), (2, 2), "{st:?}");
    let mut via: Vec<String> = st
        .readers
        .iter()
        .filter_map(|r| r.delivered_via.clone())
        .collect();
    via.sort();
    assert_eq!(via, ["PostToolUse", "wake"], "{st:?}");
    for api in [&a_api, &b_api, &c_api, &d_api] {
        w.assert_no_hook_errors(api);
    }
    c.stop();
    report_latency(
        "s11",
        "topic_post_to_context_posttooluse",
        got.at.saturating_duration_since(sent.at),
    );
}

/// 12. Issue #14's handover in the real client: the ended session `alpha` left a note for
///     the next session of its name; mail for alpha waited too (sent before the note). The
///     next real Claude Code session in alpha's directory is shown the handover in its
///     SessionStart context, in its very first request, marked as a handover with who left it
///     and when, above the other mail.
#[test]
fn s12_the_next_session_starts_with_the_handover_above_its_mail() {
    let _serial = serial();
    let Some(w) = World::new(
        "s12_the_next_session_starts_with_the_handover_above_its_mail",
        &[("PEERS_LOOP_BUDGET", "0")],
    ) else {
        return;
    };
    let note = "s12-handover: migrations done; next: wire the --since flag";
    let mail = "s12-mail: the parser test is flaky on main";

    // The earlier alpha (a stand-in session in alpha's directory) gets mail, leaves the
    // note, and ends.
    let first = w.stand_in("alpha");
    assert_eq!(first.name, "alpha");
    let (sent, t0) = w.send_as_user("alpha", mail);
    let left =
        w.rt.block_on(first.client.handover(&peers_core::wire::HandoverRequest {
            note: note.into(),
            to: None,
        }))
        .unwrap();
    w.rt.block_on(first.client.unregister()).unwrap();
    drop(first);

    let api = FakeApi::start("alpha", vec![Step::text("read the handover first")]);
    let mut a = Headless::start(&w.spec("alpha", "alpha", &api), "what is next?").unwrap();
    assert_ran("alpha", &a.wait(RUN).unwrap(), &api);
    let r1 = api
        .main_requests()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("alpha made no request\n{}", api.transcript()));
    let t = r1.all_text();
    assert!(
        t.contains("SessionStart hook additional context"),
        "not SessionStart context:\n{}",
        shown::truncate(&shown::messages_text(&r1.body), 6000)
    );
    let (at_note, at_mail) = (t.find(note), t.find(mail));
    assert!(
        at_note.is_some() && at_mail.is_some() && at_note < at_mail,
        "the handover is not above the mail in the first request:\n{}",
        shown::truncate(&shown::messages_text(&r1.body), 6000)
    );
    let left_at = w.status(left.message_id).sent_at_ms;
    let tag = format!(
        "<peer-message id=\"{}\" from=\"alpha@e2e\" handover=\"true\" left=\"{}\">",
        left.message_id,
        peers_core::format_ms(left_at)
    );
    assert!(t.contains(&tag), "not marked {tag}:\n{t}");
    for id in [left.message_id, sent.message_id] {
        let st = w.status(id);
        assert_eq!(
            st.readers[0].delivered_via.as_deref(),
            Some("SessionStart"),
            "message {id}: {st:?}"
        );
    }
    w.assert_no_hook_errors(&api);
    report_latency(
        "s12",
        "handover_waited_for_session_start",
        r1.at.saturating_duration_since(t0),
    );
}
