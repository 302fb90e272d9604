//! What the broker lets in, against the real process over real HTTP: the `Host` rule
//! (DNS rebinding), JSON answers for what the HTTP framework rejects, control characters in
//! one-line fields, reserved names, broker-only notice kinds and notice authors, and the
//! honest wake flag.

use std::time::Duration;

use peers_core::wire::*;
use peers_testkit::{TestEnv, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{broker_with, listed, register, register_with, send_req};

/// One raw HTTP/1.1 exchange over TCP: `head` is everything before the blank line (request
/// line and headers, `\r\n`-separated, no `Connection` header). Returns (status, headers,
/// body).
async fn raw(env: &TestEnv, head: &[u8], body: &[u8]) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    let mut req = head.to_vec();
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    req.extend_from_slice(body);
    s.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the broker answers")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers.to_ascii_lowercase(), body.to_string())
}

/// A hand-made request for [`raw`]: its head and its body.
type RawRequest = (String, Vec<u8>);

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not a JSON error: {body:?}>"))
}

#[tokio::test]
async fn a_host_header_that_is_not_this_broker_is_refused() {
    let (env, _broker) =
        broker_with(&[("PEERS_ALLOWED_HOSTS", "hub.tailnet.example, Other.Example")]).await;
    let port = env.port;

    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("127.3.4.5:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        format!("[::1]:{port}"),
        format!("hub.tailnet.example:{port}"),
        "other.example".to_string(),
    ] {
        let head = format!("GET /v1/health HTTP/1.1\r\nHost: {host}");
        let (status, _, body) = raw(&env, head.as_bytes(), b"").await;
        assert_eq!(status, 200, "Host: {host}: {body}");
    }
    // DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("10.1.2.3:{port}"),
        String::new(),
    ] {
        let head = format!("GET /v1/health HTTP/1.1\r\nHost: {host}");
        let (status, headers, body) = raw(&env, head.as_bytes(), b"").await;
        assert_eq!(status, 421, "Host: {host:?}: {body}");
        assert!(headers.contains("application/json"), "{headers}");
        assert_eq!(error_code(&body), "bad_host", "Host: {host:?}");
        assert!(!body.contains("machine_id"), "{body}");
    }
    // No Host header at all.
    let (status, _, body) = raw(&env, b"GET /v1/health HTTP/1.1", b"").await;
    assert_eq!((status, error_code(&body).as_str()), (421, "bad_host"));
    // The refusal comes before everything else, also for real calls with the secret.
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 28",
        env.secret().unwrap()
    );
    let (status, _, _) = raw(&env, head.as_bytes(), br#"{"to":"x","message":"hello"}"#).await;
    assert_eq!(status, 421);
}

#[tokio::test]
async fn what_the_http_framework_rejects_is_answered_as_json() {
    let (env, _broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let host = format!("Host: 127.0.0.1:{}", env.port);
    let token = &a.reg.token;
    // One request line with the `Host` header and no body.
    let bare = |line: &str| (format!("{line} HTTP/1.1\r\n{host}"), Vec::new());
    // One request line with the `Host` header and the session's token.
    let authed = |line: &str| format!("{line} HTTP/1.1\r\n{host}\r\nAuthorization: Bearer {token}");
    // A message POST of `body` typed `content_type`.
    let post = |content_type: &str, body: &[u8]| {
        let head = authed("POST /v1/messages");
        let len = body.len();
        let head = format!("{head}\r\nContent-Type: {content_type}\r\nContent-Length: {len}");
        (head, body.to_vec())
    };
    let cases: Vec<(RawRequest, u16, &str)> = vec![
        // HEAD is no method of this API.
        (bare("HEAD /v1/health"), 405, ""),
        (bare("PUT /v1/health"), 405, "method_not_allowed"),
        (bare("GET /v1/nope"), 404, "not_found"),
        // Header bytes that are not text.
        (
            (
                format!(
                    "GET /v1/peers HTTP/1.1\r\n{host}\r\nAuthorization: Bearer \u{00ff}\u{00fe}"
                ),
                Vec::new(),
            ),
            401,
            "unauthorized",
        ),
        // Bodies axum refuses.
        (post("text/plain", b"{}"), 415, "unsupported_media_type"),
        (post("application/json", b"{\"to\": "), 400, "bad_request"),
        (post("application/json", b"\xff\xfe{}"), 400, "bad_request"),
        (
            (authed("GET /v1/messages/%ff"), Vec::new()),
            400,
            "bad_request",
        ),
    ];
    for ((head, body), want, want_code) in cases {
        // Latin-1 in the test text stands for raw bytes.
        let head: Vec<u8> = head.chars().map(|c| c as u32 as u8).collect();
        let (status, headers, text) = raw(&env, &head, &body).await;
        let first = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(status, want, "{first}: {text}");
        assert!(
            headers.contains("content-type: application/json"),
            "{first}: {headers}"
        );
        if !want_code.is_empty() {
            assert_eq!(error_code(&text), want_code, "{first}");
        }
    }
}

/// Characters that must never reach a terminal from a peer-controlled one-line field.
fn has_control(s: &str) -> bool {
    s.chars().any(|c| {
        c.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    })
}

#[tokio::test]
async fn one_line_fields_lose_control_characters_at_the_broker() {
    let (env, _broker) = broker_with(&[]).await;
    let evil = "\u{1b}[31mred\u{1b}[0m\nfake line\r\t\u{7}\u{7f}\u{9b}2J\u{202e}desrever\u{2066}x";
    let a = register_with(
        &env,
        RegisterRequest {
            host: format!("box{evil}"),
            cwd: format!("/w/a{evil}"),
            git_branch: Some(format!("main{evil}")),
            tty: Some(format!("/dev/pts/1{evil}")),
            summary: Some(format!("first{evil}")),
            ..Default::default()
        },
    )
    .await;
    let b = register(&env, "/w/b").await;
    let user = env.user_client();
    let seen_by_user = listed(&user).await;
    let pa = seen_by_user
        .iter()
        .find(|p| p.peer_id == a.reg.peer_id)
        .unwrap();
    for field in [
        &pa.host,
        &pa.address,
        &pa.cwd,
        pa.git_branch.as_ref().unwrap(),
        pa.tty.as_ref().unwrap(),
        pa.summary.as_ref().unwrap(),
    ] {
        assert!(!has_control(field), "{field:?}");
    }
    // Text stays readable: a newline becomes a space, the words around it stay.
    assert!(pa.cwd.contains("fake line"), "{:?}", pa.cwd);
    assert!(pa.cwd.starts_with("/w/a"), "{:?}", pa.cwd);

    a.client.set_summary(&format!("now{evil}")).await.unwrap();
    b.client
        .add_notice(&NoticeRequest {
            kind: "escalation".into(),
            text: format!("notice{evil}"),
        })
        .await
        .unwrap();
    let seen = listed(&b.client).await;
    let summary = seen[0].summary.clone().unwrap();
    assert!(
        !has_control(&summary) && summary.starts_with("now"),
        "{summary:?}"
    );
    let notices = user.notices().await.unwrap().notices;
    assert!(!has_control(&notices[0].text), "{:?}", notices[0].text);
    // The address the message log shows for this peer is clean too.
    b.client.send(&send_req(&a.reg.name, "hi")).await.unwrap();
    a.client.send(&send_req("b", "hi back")).await.unwrap();
    for m in user.messages(&Default::default()).await.unwrap().messages {
        assert!(!has_control(&m.from) && !has_control(&m.to), "{m:?}");
    }
}

#[tokio::test]
async fn reserved_names_are_never_a_session_name() {
    let (env, _broker) = broker_with(&[]).await;
    let mut sessions = vec![];
    for dir in ["you", "Human", "user", "all", "peers"] {
        let s = register(&env, &format!("/w/{dir}")).await;
        let base = dir.to_lowercase();
        assert_ne!(s.reg.name, base, "a directory named {dir:?}");
        assert_eq!(s.reg.name, format!("{base}-2"), "{dir:?}");
        sessions.push(s);
    }
    // Asking for a reserved name back does not get it either.
    let s = register_with(
        &env,
        RegisterRequest {
            host: "box".into(),
            cwd: "/w/other".into(),
            previous_name: Some("you".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(s.reg.name, "other");
    // Mail to `you` is not mail to a session.
    let e = sessions[1]
        .client
        .send(&send_req("you", "for the human?"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}

#[tokio::test]
async fn broker_notice_kinds_are_the_brokers_and_every_notice_has_an_author() {
    let (env, _broker) = broker_with(&[("PEERS_LOOP_BUDGET", "1")]).await;
    let a = register(&env, "/w/a").await;
    let user = env.user_client();
    let req = |kind: &str| NoticeRequest {
        kind: kind.into(),
        text: "the disk is fine, really".into(),
    };
    for kind in ["loop_budget", "storage_lost", "storage_full"] {
        let e = a.client.add_notice(&req(kind)).await.unwrap_err();
        assert_eq!(e.status(), Some(403), "{kind}: {e}");
        let e = user.add_notice(&req(kind)).await.unwrap_err();
        assert_eq!(e.status(), Some(403), "{kind}: {e}");
    }
    assert!(user.notices().await.unwrap().notices.is_empty());

    a.client.add_notice(&req("escalation")).await.unwrap();
    user.add_notice(&req("note")).await.unwrap();
    // The broker's own: the loop budget runs out.
    let auto = ClaimRequest {
        automatic: true,
        ..Default::default()
    };
    for i in 0..2 {
        user.send(&send_req("a", format!("ping {i}")))
            .await
            .unwrap();
        if let Some(lease) = a.client.claim(&auto).await.unwrap().lease_id {
            a.client
                .ack(&AckRequest {
                    lease_id: lease,
                    via: "Stop".into(),
                    message_ids: None,
                })
                .await
                .unwrap();
        }
    }
    let notices = user.notices().await.unwrap().notices;
    let by_kind = |k: &str| {
        notices
            .iter()
            .find(|n| n.kind == k)
            .unwrap_or_else(|| panic!("no {k} notice: {notices:?}"))
            .author
            .clone()
    };
    assert_eq!(by_kind("escalation"), "a@box");
    assert_eq!(by_kind("note"), "you");
    assert_eq!(by_kind("loop_budget"), "broker");
}

#[tokio::test]
async fn recipient_can_wake_says_whether_a_waiter_is_armed() {
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "100")]).await;
    let a = register(&env, "/w/a").await;
    let mut b = register(&env, "/w/b").await;

    // No waiter: the mail waits for b's next hook event.
    let sent = a.client.send(&send_req("b", "no waiter")).await.unwrap();
    assert!(sent.recipient_alive && !sent.recipient_can_wake, "{sent:?}");
    let st = a.client.message_status(sent.message_id).await.unwrap();
    assert!(!st.recipient_can_wake, "{st:?}");
    let claim = b.client.claim(&ClaimRequest::default()).await.unwrap();
    b.client
        .ack(&AckRequest {
            lease_id: claim.lease_id.unwrap(),
            via: "test".into(),
            message_ids: None,
        })
        .await
        .unwrap();

    // A waiter is armed (what `peers-deliver --wait` does when b goes idle).
    let waiter = b.client.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .wait(&WaitQuery {
                timeout_ms: Some(20_000),
            })
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = a.client.send(&send_req("b", "wake up")).await.unwrap();
    assert!(sent.recipient_can_wake, "{sent:?}");
    assert!(waiting.await.unwrap().mail);
    // Just after the waiter took the mail, b still counts as wakeable (it re-arms).
    let st = a.client.message_status(sent.message_id).await.unwrap();
    assert!(st.recipient_can_wake, "{st:?}");

    // A session that ended cannot be woken, waiter or not.
    b.claude.kill();
    let user = env.user_client();
    eventually(Duration::from_secs(5), "b marked gone", || {
        let u = user.clone();
        async move {
            let peers = u.list_peers(&Default::default()).await.unwrap().peers;
            (!peers.iter().any(|p| p.name == "b")).then_some(())
        }
    })
    .await;
    let sent = a.client.send(&send_req("b", "too late")).await.unwrap();
    assert!(
        !sent.recipient_alive && !sent.recipient_can_wake,
        "{sent:?}"
    );
}

#[tokio::test]
async fn nul_characters_are_refused_naming_the_field() {
    let (env, _broker) = broker_with(&[]).await;
    crate::util::nul_is_refused_and_nothing_stored(&env).await;
}
