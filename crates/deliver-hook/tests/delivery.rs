//! How the hook finds its session and keeps delivery exactly-once (or at least once after a
//! crash), and that it fails quietly and fast.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;
use expect_test::expect;
use peers_core::wire::MessageState;
use peers_testkit::ChildGuard;

#[tokio::test]
async fn the_walk_finds_the_session_through_a_sh_parent_without_claude_pid() {
    let h = Harness::start(&[]).await;
    let input = h.env.dir.path().join("input.json");
    std::fs::write(&input, POST_TOOL_USE).unwrap();
    // A stand-in for Claude Code: waits for a go, then runs the hook the way Claude Code does,
    // `sh -c "<command>"` (the trailing `; :` keeps that sh from exec'ing the hook, so the
    // chain is fake-claude -> sh -> peers-deliver).
    let mut cmd = Command::new("sh");
    h.env.apply(&mut cmd);
    cmd.arg("-c")
        .arg(r#"read go; sh -c '"$HOOK" < "$INPUT"; :'; :"#)
        .env("HOOK", hook_bin())
        .env("INPUT", &input)
        .env_remove("CLAUDE_PID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut fake_claude = ChildGuard::new(cmd.spawn().unwrap());
    let pid = fake_claude.pid();
    // The session is keyed by the fake Claude's pid; the recipient's own file is removed so
    // only the walk can find it.
    std::fs::remove_file(peers_core::session::SessionFile::path(
        &h.env.state_dir,
        h.me.claude_pid,
    ))
    .unwrap();
    write_session(&h.env, &h.me, pid);
    let id = h.send("found you").await;

    let child = fake_claude.0.take().unwrap();
    child.stdin.as_ref().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout_ids(&stdout), vec![id], "{stdout}");
    assert_eq!(h.status(id).await.status, MessageState::Delivered);
}

#[tokio::test]
async fn session_start_waits_briefly_for_the_session_file() {
    let h = Harness::start(&[]).await;
    let path = peers_core::session::SessionFile::path(&h.env.state_dir, h.me.claude_pid);
    // As on a fresh state dir: not even the sessions dir exists yet.
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    let mut child = h
        .hook(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SESSION_START.as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    write_session(&h.env, &h.me, h.me.claude_pid);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The JSON's key order depends on serde_json's `preserve_order`, which the workspace
    // build unifies on: compare its parts, not its bytes.
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("hook JSON");
    assert_eq!(json["hookSpecificOutput"]["hookEventName"], "SessionStart");
    assert_eq!(json.as_object().map(|o| o.len()), Some(1), "{stdout}");
    expect![[r#"[peers] Your peer name is "api" (api@testbox from other machines) in peers, mail between Claude Code sessions. Mail for you arrives in your context by itself. mcp__peers__list_peers lists the other sessions; mcp__peers__send_message with "to" and "message" writes to one; mcp__peers__check_messages reads waiting mail now."#]]
    .assert_eq(json["hookSpecificOutput"]["additionalContext"].as_str().unwrap());

    // Other events do not wait.
    std::fs::remove_file(&path).unwrap();
    let r = h.run(POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    assert!(r.elapsed < Duration::from_millis(1_000), "{:?}", r.elapsed);
}

#[tokio::test]
async fn two_hooks_at_once_deliver_each_message_exactly_once() {
    let h = Harness::start(&[]).await;
    let mut sent = Vec::new();
    let mut seen = Vec::new();
    let mut both_got_some = 0;
    let mut leftovers = 0;
    for round in 0..40 {
        for k in 0..(1 + round % 4) {
            // Some big ones, so a hook shows only part of its claim and releases the rest,
            // which the other hook may then pick up.
            let pad = if (round + k) % 3 == 0 { 4_500 } else { 10 };
            sent.push(
                h.send(&format!("round {round} message {k} {}", "p".repeat(pad)))
                    .await,
            );
        }
        let spawn = |input: &str| {
            let mut c = h
                .hook(&[])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            c
        };
        let a = spawn(POST_TOOL_USE);
        let b = spawn(USER_PROMPT_SUBMIT);
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let ia = stdout_ids(&String::from_utf8_lossy(&a.stdout));
        let ib = stdout_ids(&String::from_utf8_lossy(&b.stdout));
        if !ia.is_empty() && !ib.is_empty() {
            both_got_some += 1;
        }
        seen.extend(ia);
        seen.extend(ib);
        // What neither showed this round (it did not fit) comes with the next hook run.
        loop {
            let r = h.run(POST_TOOL_USE);
            let ids = stdout_ids(&r.stdout);
            if ids.is_empty() {
                break;
            }
            leftovers += ids.len();
            seen.extend(ids);
        }
    }
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a message was shown twice");
    assert_eq!(unique, sent.iter().copied().collect::<BTreeSet<_>>());
    println!(
        "{} messages over 40 rounds, each shown once; both hooks got mail in {both_got_some} rounds; {leftovers} came with a later run",
        sent.len()
    );
    for id in sent {
        assert_eq!(h.status(id).await.status, MessageState::Delivered);
    }
}

#[tokio::test]
async fn a_hook_killed_between_claim_and_ack_leaves_the_mail_for_the_next_one() {
    // The hook claims with lease_ms from config: a short lease makes the test quick.
    let h = Harness::start(&[("PEERS_LEASE_MS", "1500")]).await;
    let id = h.send("survive a crash").await;
    let mut cmd = h.hook(&[]);
    cmd.env(deliver_hook::PAUSE_AFTER_CLAIM_ENV, "60000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut hook = ChildGuard::new(cmd.spawn().unwrap());
    hook.child()
        .stdin
        .take()
        .unwrap()
        .write_all(POST_TOOL_USE.as_bytes())
        .unwrap();
    // Wait until the hook holds the lease, then kill it before it prints or acks.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inbox = h.me.client.peek().await.unwrap();
        if inbox
            .messages
            .iter()
            .any(|m| m.status == MessageState::Leased)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the hook never claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = Instant::now();
    hook.child().kill().unwrap();
    let out = hook.0.take().unwrap().wait_with_output().unwrap();
    assert!(out.stdout.is_empty());
    assert_eq!(
        h.status(id).await.status,
        MessageState::Queued,
        "senders see queued"
    );

    // While the lease holds, another hook gets nothing; after it lapses, the mail comes back.
    let r = h.run(POST_TOOL_USE);
    assert_eq!(r.stdout, "");
    let mut got = None;
    while killed_at.elapsed() < Duration::from_secs(10) {
        let r = h.run(POST_TOOL_USE);
        if !r.stdout.is_empty() {
            got = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = got.expect("the mail came back after the lease lapsed");
    println!("redelivered {:?} after the kill", killed_at.elapsed());
    assert_eq!(stdout_ids(&r.stdout), vec![id]);
    assert_eq!(h.status(id).await.status, MessageState::Delivered);
}

#[tokio::test]
async fn the_hook_reads_one_json_value_and_does_not_wait_for_stdin_to_close() {
    let h = Harness::start(&[]).await;
    let id = h.send("no EOF needed").await;
    let mut hook = ChildGuard::new(
        h.hook(&[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = hook.child().stdin.take().unwrap();
    stdin.write_all(POST_TOOL_USE.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let status = hook.wait_timeout(Duration::from_secs(10));
    drop(stdin);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "finished with stdin still open"
    );
    assert_eq!(h.status(id).await.status, MessageState::Delivered);
}

#[tokio::test]
async fn garbage_stdin_or_no_session_exit_zero_quietly() {
    let h = Harness::start(&[]).await;
    let id = h.send("still here").await;
    for input in [
        "",
        "garbage",
        "{",
        "[]",
        r#"{"hook_event_name": 42}"#,
        r#"{"hook_event_name": "PreToolUse"}"#,
        "\u{0}\u{1}\u{2}",
    ] {
        let r = h.run(input);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (Some(0), "", ""),
            "{input:?}"
        );
    }
    // An unknown argument, too.
    let r = run_with(h.hook(&["--frobnicate"]), POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    // No session file anywhere up the tree.
    let mut cmd = h.hook(&[]);
    cmd.env("CLAUDE_PID", "1");
    std::fs::remove_file(peers_core::session::SessionFile::path(
        &h.env.state_dir,
        h.me.claude_pid,
    ))
    .unwrap();
    let r = run_with(cmd, POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    assert_eq!(h.status(id).await.status, MessageState::Queued);
}

#[tokio::test]
async fn broker_down_exits_zero_quietly_and_fast_then_backs_off() {
    let mut h = Harness::start(&[("PEERS_HOOK_BACKOFF_MS", "2000")]).await;
    h.send("queued before the crash").await;
    h.broker.kill9();
    let marker = h.env.state_dir.join("hook-backoff");
    assert!(!marker.exists());

    let first = h.run(POST_TOOL_USE);
    assert_eq!(
        (first.code, first.stdout.as_str(), first.stderr.as_str()),
        (Some(0), "", "")
    );
    assert!(marker.exists(), "an unreachable broker is remembered");
    let mut later = Vec::new();
    for input in [
        SESSION_START,
        USER_PROMPT_SUBMIT,
        POST_TOOL_USE,
        STOP,
        POST_TOOL_USE,
    ] {
        let r = h.run(input);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (Some(0), "", "")
        );
        later.push(r.elapsed);
    }
    println!(
        "broker down: first hook {:?} (connect refused), next ones {later:?} (backoff marker)",
        first.elapsed
    );
    assert!(
        first.elapsed < Duration::from_secs(2),
        "{:?}",
        first.elapsed
    );

    // A broker that does not answer at all (a black hole): the connect/request timeouts bound it.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hole.local_addr().unwrap();
    std::fs::remove_file(&marker).unwrap();
    let mut s = peers_core::session::SessionFile::read(&h.env.state_dir, h.me.claude_pid)
        .unwrap()
        .unwrap();
    s.broker_url = format!("http://{addr}");
    s.write(&h.env.state_dir).unwrap();
    let r = h.run(POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    println!("broker accepts but never answers: {:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
    drop(hole);

    // Back up: once the backoff lapses the hook delivers again and clears the marker.
    let mut s2 = s.clone();
    s2.broker_url = h.env.url();
    s2.write(&h.env.state_dir).unwrap();
    let broker = peers_testkit::BrokerProcess::start(&h.env).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let r = h.run(POST_TOOL_USE);
    assert_eq!(stdout_ids(&r.stdout).len(), 1, "{:?}", r.stdout);
    assert!(!marker.exists());
    drop(broker);
}
