//! Hub mode with several hosts on one machine: a hub namespace running the real
//! `peers-broker` bound to 10.231.0.1 with a hub token, client "machines" in other namespaces,
//! each with its own state dir, HOME, machine id and host label, running the real `peers-mcp`
//! (driven over stdio), `peers-deliver` (hook JSON on stdin) and API clients.
//!
//! Needs root and `ip` (CI runs as root); otherwise each test prints SKIPPED and passes.
//! Needs the workspace binaries (`cargo build --workspace --bins`; `cargo xtask test` does).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use peers_core::client::Timeouts;
use peers_core::wire::*;
use peers_core::{BrokerClient, ClientError};
use peers_testkit::netns::{HUB_ADDR, Net, Ns};
use peers_testkit::requests::{LoginLink, ack_req, claim_req, send_req};
use peers_testkit::standin::{self, McpSession, message_id, text};
use peers_testkit::{ChildGuard, TestEnv, bin, eventually, peer};
use serde_json::json;

/// How long the link to a client stays cut in the outage test (the issue says a minute).
const CUT: Duration = Duration::from_secs(60);
/// Per-invocation bound for the hook while the hub is unreachable (the 20 ms of the issue is
/// a benchmark figure on an idle machine; this is a debug build on a shared CI machine).
const HOOK_BOUND: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(30);
const HOOK_INPUT: &str = r#"{"session_id":"s","cwd":"/w","hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"true"},"tool_response":{"stdout":""},"tool_use_id":"t1"}"#;
const SESSION_START: &str = r#"{"session_id":"s2","transcript_path":"/t/s2.jsonl","cwd":"/w","hook_event_name":"SessionStart","source":"startup"}"#;

/// Prints past libtest's capture, so SKIPPED and the figures show in CI logs.
fn say(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}

/// The namespaces, or a SKIPPED notice and `None`.
fn net(clients: usize, test: &str) -> Option<Net> {
    if let Some(why) = Net::unavailable() {
        say(&format!("SKIPPED {test}: {why}"));
        return None;
    }
    Some(Net::new(clients).expect("make the namespaces"))
}

/// The hub: `peers-broker` in the hub namespace, bound to 10.231.0.1, with a hub token.
struct Hub {
    env: TestEnv,
    ns: Ns,
    token: String,
    url: String,
    child: Option<ChildGuard>,
}

impl Hub {
    fn new(net: &Net, extra: &[(&str, &str)]) -> Hub {
        let mut env = TestEnv::new();
        let token = peers_core::paths::random_hex(32);
        env.set("PEERS_BIND", HUB_ADDR.to_string())
            .set("PEERS_TOKEN", token.clone())
            .set("PEERS_HOST", "hub")
            .set("PEERS_SWEEP_MS", "200")
            .set("PEERS_LOG", "info");
        for (k, v) in extra {
            env.set(k, *v);
        }
        let url = format!("http://{HUB_ADDR}:{}", env.port);
        Hub {
            env,
            ns: net.hub.clone(),
            token,
            url,
            child: None,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = self.ns.command(bin("peers-broker"));
        self.env.apply(&mut cmd);
        cmd
    }

    /// Starts the hub and waits until `from` sees it healthy.
    async fn start(&mut self, from: &Ns) {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(ChildGuard::new(cmd.spawn().expect("spawn peers-broker")));
        let url = self.url.clone();
        from.run(move || async move {
            peers_testkit::wait_healthy(&url, Duration::from_secs(20)).await
        })
        .await;
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    fn secret(&self) -> String {
        self.env.secret().expect("the hub made its secret")
    }
}

/// A client machine: its own namespace, state dir, HOME, machine id and host label; its
/// config names the hub (`PEERS_BROKER_URL`, `PEERS_TOKEN`).
struct Machine {
    env: TestEnv,
    ns: Ns,
    host: String,
    hub_url: String,
    hub_token: String,
}

impl Machine {
    fn new(ns: &Ns, host: &str, hub: &Hub) -> Machine {
        let mut env = TestEnv::new();
        env.set("PEERS_BROKER_URL", hub.url.clone())
            .set("PEERS_TOKEN", hub.token.clone())
            .set("PEERS_HOST", host)
            .set("PEERS_HEARTBEAT_MS", "300")
            .set("PEERS_LOG", "info");
        Machine {
            env,
            ns: ns.clone(),
            host: host.to_string(),
            hub_url: hub.url.clone(),
            hub_token: hub.token.clone(),
        }
    }

    /// Runs `peers-deliver` for the session of `claude_pid` with PostToolUse input; returns
    /// its stdout and how long the whole process took.
    fn hook(&self, claude_pid: u32) -> (String, Duration) {
        self.hook_on(claude_pid, HOOK_INPUT)
    }

    /// Like [`Machine::hook`], with the hook input `input` (another event).
    fn hook_on(&self, claude_pid: u32, input: &str) -> (String, Duration) {
        let mut cmd = self.ns.command(bin("peers-deliver"));
        self.env.apply(&mut cmd);
        cmd.env("CLAUDE_PID", claude_pid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let t = Instant::now();
        let mut child = cmd.spawn().expect("spawn peers-deliver");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let took = t.elapsed();
        assert!(out.status.success(), "the hook exits 0");
        (String::from_utf8(out.stdout).unwrap(), took)
    }

    /// Registers a simulated session through the API (hub token), from this machine.
    async fn register(&self, cwd: &str, claude_pid: u32) -> RegisterResponse {
        let (url, token) = (self.hub_url.clone(), self.hub_token.clone());
        let req = RegisterRequest {
            mcp_pid: claude_pid,
            host: self.host.clone(),
            ..peer::request(&self.env, claude_pid, cwd)
        };
        self.ns
            .run(move || async move {
                BrokerClient::new(&url, Some(token))
                    .register(&req)
                    .await
                    .expect("register with the hub token")
            })
            .await
    }
}

/// One real `peers-mcp` under a stand-in Claude Code process (`sh`), in a machine's namespace,
/// working in `dir` below the machine's temp dir.
async fn session(m: &Machine, dir: &str) -> McpSession {
    let cwd = &m.env.dir.path().join(dir);
    std::fs::create_dir_all(cwd).unwrap();
    let mut cmd = standin::under_shell(m.ns.command("/bin/sh"), &bin("peers-mcp"), &[]);
    m.env.apply(&mut cmd);
    cmd.current_dir(cwd);
    McpSession::start(cmd, &m.env.state_dir).await
}

/// Calls `tool` of `session` with `args` and asserts that its answer contains `want`.
async fn says(session: &McpSession, tool: &'static str, args: serde_json::Value, want: &str) {
    let answer = session.ok(tool, args).await;
    assert!(answer.contains(want), "{tool}: {answer}");
}

/// Kills what a failing test left in its state dirs (peers-mcp servers, their shells).
struct Reaper(Vec<String>);

impl Reaper {
    fn new(dirs: &[&TestEnv]) -> Reaper {
        Reaper(
            dirs.iter()
                .map(|e| peers_testkit::state_dir_marker(e))
                .collect(),
        )
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        peers_testkit::kill_processes_with_env(&self.0);
    }
}

/// The hub with `extra` settings and the client machines alpha and beta on it, with the
/// reaper of all three; the hub is started. Bind the reaper: it cleans up at the test's end.
async fn two_machines(net: &Net, extra: &[(&str, &str)]) -> (Hub, Machine, Machine, Reaper) {
    let mut hub = Hub::new(net, extra);
    let alpha = Machine::new(&net.clients[0], "alpha", &hub);
    let beta = Machine::new(&net.clients[1], "beta", &hub);
    let reaper = Reaper::new(&[&hub.env, &alpha.env, &beta.env]);
    hub.start(&alpha.ns).await;
    (hub, alpha, beta, reaper)
}

/// The HTTP status a refused call got (`None` if it was not refused).
fn refusal<T>(r: Result<T, ClientError>) -> Option<u16> {
    r.err().and_then(|e| e.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_two_machines_list_and_mail_each_other() {
    let Some(net) = net(2, "sessions_on_two_machines_list_and_mail_each_other") else {
        return;
    };
    let (_hub, alpha, beta, _reaper) = two_machines(&net, &[]).await;

    let a = session(&alpha, "work/api").await;
    let b = session(&beta, "work/web").await;
    assert_eq!(
        (a.name().await, b.name().await),
        ("api".into(), "web".into())
    );
    let machine_a = peers_core::identity::machine_id(&alpha.env.state_dir).unwrap();
    let machine_b = peers_core::identity::machine_id(&beta.env.state_dir).unwrap();
    assert_ne!(machine_a, machine_b);

    says(&a, "list_peers", json!({}), "web@beta").await;
    says(&b, "list_peers", json!({}), "api@alpha").await;
    says(&a, "whoami", json!({}), "api@alpha").await;

    // alpha -> beta: queued until beta's hook shows it, then delivered (via PostToolUse).
    let sent = a
        .ok(
            "send_message",
            json!({"to": "web@beta", "message": "hello from alpha"}),
        )
        .await;
    let id = message_id(&sent);
    says(&a, "message_status", json!({"message_id": id}), "queued").await;
    let (out, _) = beta.hook(b.claude_pid);
    assert!(out.contains("hello from alpha"), "{out}");
    assert!(out.contains("api@alpha"), "{out}");
    says(&a, "message_status", json!({"message_id": id}), "delivered").await;
    assert!(beta.hook(b.claude_pid).0.is_empty(), "shown once only");

    // beta -> alpha, as a reply.
    let sent = b
        .ok(
            "send_message",
            json!({"to": "api@alpha", "reply_to": id, "message": "hello back from beta"}),
        )
        .await;
    let reply = message_id(&sent);
    let (out, _) = alpha.hook(a.claude_pid);
    assert!(out.contains("hello back from beta"), "{out}");
    assert!(out.contains("web@beta"), "{out}");
    says(
        &b,
        "message_status",
        json!({"message_id": reply}),
        "delivered",
    )
    .await;

    // The human on alpha, with the hub token through the real CLI.
    let mut cmd = alpha.ns.command(bin("peers"));
    alpha.env.apply(&mut cmd);
    let out = cmd
        .args(["send", "web@beta", "from the human on alpha"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (shown, _) = beta.hook(b.claude_pid);
    assert!(shown.contains("from the human on alpha"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_requests_without_the_right_token_are_refused() {
    let Some(net) = net(1, "remote_requests_without_the_right_token_are_refused") else {
        return;
    };

    // No token on a non-loopback address: the hub will not start.
    let bare = Hub::new(&net, &[]);
    let out = bare
        .command()
        .env_remove("PEERS_TOKEN")
        .env("PEERS_TOKEN", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("refusing to listen"), "{err}");

    let mut hub = Hub::new(&net, &[]);
    let alpha = Machine::new(&net.clients[0], "alpha", &hub);
    hub.start(&alpha.ns).await;
    let a = alpha.register("/w/api", 4_000_001).await;
    let b = alpha.register("/w/web", 4_000_002).await;
    let (url, token, secret) = (hub.url.clone(), hub.token.clone(), hub.secret());

    let refused = alpha
        .ns
        .run(move || async move {
            let client = |c: Option<&str>| BrokerClient::new(&url, c.map(str::to_string));
            let hub_c = client(Some(&token));
            // Something for A to protect: a human message, claimed (leased) by A.
            hub_c
                .send(&send_req("api@alpha", "for api only"))
                .await
                .unwrap();
            let lease = client(Some(&a.token))
                .claim(&claim_req(10, 600_000))
                .await
                .unwrap();
            let lease_id = lease.lease_id.clone().unwrap();
            let msg_id = lease.messages[0].message_id;
            let snapshot = || async {
                let all = ListPeersQuery {
                    include_gone: true,
                    ..Default::default()
                };
                let peers = hub_c.list_peers(&all).await.unwrap();
                let log = hub_c.messages(&HistoryQuery::default()).await.unwrap();
                let st = hub_c.message_status(msg_id).await.unwrap();
                (
                    serde_json::to_string(&peers).unwrap(),
                    serde_json::to_string(&log).unwrap(),
                    serde_json::to_string(&st).unwrap(),
                )
            };
            let before = snapshot().await;
            let reg = RegisterRequest {
                claude_pid: 4_000_099,
                mcp_pid: 1,
                machine_id: "intruder".into(),
                host: "evil".into(),
                cwd: "/w/evil".into(),
                ..Default::default()
            };
            let send = send_req("api@alpha", "injected");
            let mut codes: BTreeMap<String, Option<u16>> = BTreeMap::new();
            let a_peer = a.peer_id.clone();
            let forged = format!("{a_peer}.{}", "0".repeat(48));
            let bad: Vec<(&str, Option<&str>)> = vec![
                ("none", None),
                ("wrong", Some("not-the-token")),
                ("forged_peer_token", Some(&forged)),
                ("local_secret", Some(&secret)),
            ];
            for (label, cred) in bad {
                let c = client(cred);
                codes.insert(format!("{label}/register"), refusal(c.register(&reg).await));
                codes.insert(format!("{label}/send"), refusal(c.send(&send).await));
                codes.insert(
                    format!("{label}/log"),
                    refusal(c.messages(&HistoryQuery::default()).await),
                );
                codes.insert(
                    format!("{label}/peers"),
                    refusal(c.list_peers(&ListPeersQuery::default()).await),
                );
                codes.insert(format!("{label}/shutdown"), refusal(c.shutdown().await));
            }
            // B's own token: no user calls, and nothing of A's.
            let bc = client(Some(&b.token));
            codes.insert("peer_b/register".into(), refusal(bc.register(&reg).await));
            codes.insert(
                "peer_b/log".into(),
                refusal(bc.messages(&HistoryQuery::default()).await),
            );
            codes.insert("peer_b/shutdown".into(), refusal(bc.shutdown().await));
            codes.insert(
                "peer_b/status_of_a_mail".into(),
                refusal(bc.message_status(msg_id).await),
            );
            let acked = bc
                .ack(&ack_req(lease_id.clone(), "PostToolUse"))
                .await
                .map(|r| r.delivered)
                .unwrap_or(0);
            let claimed = bc
                .claim(&ClaimRequest::default())
                .await
                .unwrap()
                .messages
                .len();
            let peeked = bc.peek().await.unwrap().messages.len();
            let after = snapshot().await;
            assert_eq!(before, after, "a refused request changed something");
            assert_eq!((acked, claimed, peeked), (0, 0, 0));
            // The hub still runs (no shutdown got through).
            assert!(hub_c.health().await.is_ok());
            codes
        })
        .await;

    for (what, code) in &refused {
        let want = if what.starts_with("peer_b/") {
            if what.ends_with("status_of_a_mail") {
                404
            } else {
                403
            }
        } else {
            401
        };
        assert_eq!(*code, Some(want), "{what}: {refused:?}");
    }
    say(&format!(
        "hub-tests: {} refused remote requests, nothing changed",
        refused.len()
    ));
}

/// `peers dashboard --no-open --json [more]` run by `cmd` (a machine's environment in its
/// namespace): the login link, or the error it printed.
fn dashboard_link(mut cmd: Command, more: &[&str]) -> Result<String, String> {
    cmd.args(["dashboard", "--no-open", "--json"])
        .args(more)
        .stdin(Stdio::null());
    let out = cmd.output().expect("run peers dashboard");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    Ok(v["url"].as_str().expect("a url").to_string())
}

/// What a browser on `ns` gets for a login link: the login exchange the login page makes
/// (status, error message), and with the cookie it set, the dashboard page and the peers.
async fn use_link(ns: &Ns, link: String) -> (u16, String, Option<(u16, u16)>) {
    ns.run(move || async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let link = LoginLink::parse(&link);
        let base = link.base.clone();
        let page = http.get(format!("{base}/login")).send().await.unwrap();
        assert_eq!(page.status(), 200, "the login page");
        let (url, body) = link.login_call();
        let r = http.post(url).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let cookie = r
            .headers()
            .get("set-cookie")
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string());
        let body: serde_json::Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap_or("").to_string();
        let with_cookie = match cookie {
            None => None,
            Some(cookie) => {
                let get = |path: &str| {
                    http.get(format!("{base}{path}"))
                        .header("cookie", &cookie)
                        .send()
                };
                let index = get("/").await.unwrap().status().as_u16();
                let peers = get("/v1/peers").await.unwrap().status().as_u16();
                Some((index, peers))
            }
        };
        (status, message, with_cookie)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_link_for_another_machine_needs_the_hub_token() {
    let Some(net) = net(
        1,
        "a_dashboard_link_for_another_machine_needs_the_hub_token",
    ) else {
        return;
    };
    // Bound to every address: the hub's own machine reaches it on loopback as well.
    let mut hub = Hub::new(&net, &[("PEERS_BIND", "0.0.0.0")]);
    let alpha = Machine::new(&net.clients[0], "alpha", &hub);
    let _reaper = Reaper::new(&[&hub.env, &alpha.env]);
    hub.start(&alpha.ns).await;
    let on_alpha = || {
        let mut cmd = alpha.ns.command(bin("peers"));
        alpha.env.apply(&mut cmd);
        cmd
    };

    // `peers dashboard --hub` on another machine, whose config has the hub token: the link
    // logs that machine's browser in.
    let link = dashboard_link(on_alpha(), &["--hub"]).unwrap();
    assert!(
        link.starts_with(&format!("{}/login#code=", hub.url)),
        "{link}"
    );
    let (status, message, with_cookie) = use_link(&alpha.ns, link).await;
    assert_eq!((status, message.as_str()), (200, ""));
    assert_eq!(with_cookie, Some((200, 200)), "the dashboard and the API");

    // A link made without --hub works only on the hub's own machine.
    let local = dashboard_link(on_alpha(), &[]).unwrap();
    let (status, message, with_cookie) = use_link(&alpha.ns, local).await;
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("only in a browser on the broker's machine"),
        "{message}"
    );
    assert_eq!(with_cookie, None);

    // Without the hub token no link for another machine is made: a wrong token is refused,
    // and so is the hub machine's own secret (on loopback, where it is valid).
    let mut wrong = on_alpha();
    wrong.env("PEERS_TOKEN", "not-the-token");
    let err = dashboard_link(wrong, &["--hub"]).unwrap_err();
    assert!(err.contains("the hub refused the token"), "{err}");
    let mut on_hub = hub.ns.command(bin("peers"));
    hub.env.apply(&mut on_hub);
    on_hub.env("PEERS_TOKEN", "").env(
        "PEERS_BROKER_URL",
        format!("http://127.0.0.1:{}", hub.env.port),
    );
    let err = dashboard_link(on_hub, &["--hub"]).unwrap_err();
    assert!(err.contains("needs the hub token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_under_load_delivers_every_acknowledged_message_once() {
    let Some(net) = net(
        2,
        "hub_killed_under_load_delivers_every_acknowledged_message_once",
    ) else {
        return;
    };
    let (mut hub, alpha, beta, _reaper) = two_machines(&net, &[("PEERS_LEASE_MS", "1500")]).await;

    // Real sessions on both machines: their names must survive the crash.
    let sa = session(&alpha, "work/api").await;
    let sb = session(&beta, "work/web").await;
    let names = (sa.name().await, sb.name().await);

    // Load: 4 senders on alpha, one receiver (claim → ack, as the hook) on beta.
    let rx = beta.register("/w/sink", 4_100_001).await;
    let mut senders = vec![];
    for i in 0..4 {
        senders.push(alpha.register(&format!("/w/src{i}"), 4_100_010 + i).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t = Timeouts {
        connect: Duration::from_millis(300),
        request: Duration::from_secs(3),
    };
    let url = hub.url.clone();
    let mut send_tasks = vec![];
    for s in senders {
        let (url, stop) = (url.clone(), stop.clone());
        send_tasks.push(alpha.ns.run(move || async move {
            let c = BrokerClient::with_timeouts(&url, Some(s.token), t);
            let (mut acked, mut failed) = (vec![], 0u32);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let req = send_req("sink@beta", format!("{} #{n}", s.name));
                match c.send(&req).await {
                    Ok(r) => acked.push(r.message_id),
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (acked, failed)
        }));
    }
    let (url2, stop2) = (url.clone(), stop.clone());
    let receiver = beta.ns.run(move || async move {
        let c = BrokerClient::with_timeouts(&url2, Some(rx.token), t);
        let mut got: Vec<i64> = vec![];
        let mut idle_since: Option<Instant> = None;
        loop {
            let claim = c.claim(&claim_req(50, 1500)).await;
            let Ok(claim) = claim else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if claim.messages.is_empty() {
                if stop2.load(Ordering::Relaxed) {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(4) {
                        return got;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            idle_since = None;
            // "Shown": recorded. Then ack, retrying across the outage with the same lease (a
            // late ack of a lapsed lease still counts, so nothing is shown twice).
            got.extend(claim.messages.iter().map(|m| m.message_id));
            let ack = ack_req(claim.lease_id.unwrap(), "PostToolUse");
            while c.ack(&ack).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(1500)).await;
    hub.kill9();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    hub.start(&alpha.ns).await;
    say(&format!(
        "hub-tests: hub killed -9 and back after {:?}",
        killed_at.elapsed()
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked = vec![];
    let mut failed = 0;
    for t in send_tasks {
        let (a, f) = t.await;
        acked.extend(a);
        failed += f;
    }
    let got = receiver.await;
    let mut counts: BTreeMap<i64, u32> = BTreeMap::new();
    for id in &got {
        *counts.entry(*id).or_default() += 1;
    }
    let lost: Vec<i64> = acked
        .iter()
        .filter(|id| !counts.contains_key(id))
        .copied()
        .collect();
    let dups: Vec<(&i64, &u32)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    say(&format!(
        "hub-tests: kill -9 under load: {} sends acknowledged, {failed} failed during the \
         outage, {} delivered, lost {}, duplicates {}",
        acked.len(),
        got.len(),
        lost.len(),
        dups.len()
    ));
    assert!(acked.len() > 20, "some load ran: {}", acked.len());
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(dups.is_empty(), "duplicates: {dups:?}");

    // The real sessions carry on under the same names, and mail flows between them.
    says(&sa, "whoami", json!({}), &format!("{}@alpha", names.0)).await;
    let sent = sa
        .ok(
            "send_message",
            json!({"to": format!("{}@beta", names.1), "message": "after the crash"}),
        )
        .await;
    assert!(sent.contains(&format!("{}@beta", names.1)), "{sent}");
    let (out, _) = beta.hook(sb.claude_pid);
    assert!(out.contains("after the crash"), "{out}");
    assert_eq!((sa.name().await, sb.name().await), names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_keeps_the_hook_fast_and_mail_flows_when_it_returns() {
    let Some(net) = net(
        2,
        "a_cut_link_keeps_the_hook_fast_and_mail_flows_when_it_returns",
    ) else {
        return;
    };
    // remote_alive shorter than the cut: alpha's session is marked gone meanwhile and must
    // come back under its name with the mail that waited for it.
    let (hub, alpha, beta, _reaper) =
        two_machines(&net, &[("PEERS_REMOTE_ALIVE_SECS", "20")]).await;
    let a = session(&alpha, "work/api").await;
    let b = session(&beta, "work/web").await;
    let name_a = a.name().await;
    assert!(alpha.hook(a.claude_pid).0.is_empty());

    net.set_link(0, false).unwrap();
    let cut_at = Instant::now();
    let sent = b
        .ok(
            "send_message",
            json!({"to": format!("{name_a}@alpha"), "message": "sent while alpha was cut off"}),
        )
        .await;
    let id = message_id(&sent);

    // The tools say the hub is unreachable, naming it.
    let r = a.call("list_peers", json!({})).await;
    let t = text(&r);
    assert_eq!(r.is_error, Some(true), "{t}");
    assert!(t.contains(&hub.url), "names the hub: {t}");
    assert!(
        t.contains("does not answer") || t.contains("cannot reach"),
        "says unreachable: {t}"
    );

    // The hook stays fast for the whole cut.
    let mut times = vec![];
    while cut_at.elapsed() < CUT {
        let (out, took) = alpha.hook(a.claude_pid);
        assert!(out.is_empty(), "{out}");
        times.push(took);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let st = b.ok("message_status", json!({"message_id": id})).await;
    assert!(st.contains("queued"), "honest while cut off: {st}");
    net.set_link(0, true).unwrap();
    let back_at = Instant::now();

    times.sort();
    let p50 = times[times.len() / 2];
    let max = *times.last().unwrap();
    say(&format!(
        "hub-tests: hook with the hub unreachable for {CUT:?}: {} runs, p50 {p50:?}, max {max:?}",
        times.len()
    ));
    assert!(max < HOOK_BOUND, "slowest hook run {max:?}: {times:?}");

    // Mail flows again without a restart: the queued message, then a new one both ways.
    eventually(WAIT, "the waiting mail reaches alpha", || {
        let out = alpha.hook(a.claude_pid).0;
        async move { out.contains("sent while alpha was cut off").then_some(()) }
    })
    .await;
    say(&format!(
        "hub-tests: mail delivered {:?} after the link returned",
        back_at.elapsed()
    ));
    says(&b, "message_status", json!({"message_id": id}), "delivered").await;
    assert_eq!(a.name().await, name_a, "same name after the outage");
    says(&a, "whoami", json!({}), &format!("{name_a}@alpha")).await;
    let sent = a
        .ok(
            "send_message",
            json!({"to": "web@beta", "message": "alpha is back"}),
        )
        .await;
    assert!(sent.contains("web@beta"), "{sent}");
    let (out, _) = beta.hook(b.claude_pid);
    assert!(out.contains("alpha is back"), "{out}");
}

/// Issue #14 across machines: `alpha` on machine A leaves a handover for its own name and
/// ends; mail sent to `alpha` while no `alpha` runs waits too; the next `alpha`, on machine
/// B, sees the handover first at SessionStart (marked, with who left it and when), then the
/// mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_and_mail_for_an_ended_name_reach_its_next_session_on_another_machine() {
    let Some(net) = net(
        2,
        "a_handover_and_mail_for_an_ended_name_reach_its_next_session_on_another_machine",
    ) else {
        return;
    };
    let (hub, on_a, on_b, _reaper) = two_machines(&net, &[]).await;
    let mut first = session(&on_a, "work/alpha").await;
    let web = session(&on_b, "work/web").await;
    assert_eq!(first.name().await, "alpha");

    let left = first
        .ok(
            "handover",
            json!({"note": "schema migrated; next: the --since flag"}),
        )
        .await;
    assert!(
        left.contains("waiting for the next session named alpha"),
        "{left}"
    );
    let handover = message_id(&left);
    says(
        &first,
        "message_status",
        json!({"message_id": handover}),
        "waiting for the next session named alpha",
    )
    .await;

    // alpha ends; web mails `alpha` while no alpha runs anywhere.
    first.kill_claude().await;
    eventually(WAIT, "alpha leaves list_peers", || {
        let web = &web;
        async move {
            let t = web.ok("list_peers", json!({"scope": "all"})).await;
            (!t.contains("alpha@alpha")).then_some(())
        }
    })
    .await;
    let mail = message_id(
        &web.ok(
            "send_message",
            json!({"to": "alpha", "message": "did the migration add the index?"}),
        )
        .await,
    );

    // The next alpha, on machine B, through the hub.
    let next = session(&on_b, "work/alpha").await;
    let file = next.session_file().await;
    assert_eq!(file.name, "alpha");
    assert_eq!(file.address, "alpha@beta");
    let (out, _) = on_b.hook_on(next.claude_pid, SESSION_START);
    let j: serde_json::Value = serde_json::from_str(&out).expect("SessionStart JSON");
    assert_eq!(j["hookSpecificOutput"]["hookEventName"], "SessionStart");
    let text = j["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .expect("additionalContext")
        .to_string();
    let (h_at, m_at) = (
        text.find(&format!("<peer-message id=\"{handover}\"")),
        text.find(&format!("<peer-message id=\"{mail}\"")),
    );
    assert!(
        h_at.is_some() && m_at.is_some() && h_at < m_at,
        "the handover first, then the mail: {text}"
    );
    // The human, with the hub token from machine B.
    let (url, token) = (hub.url.clone(), hub.token.clone());
    let (h_st, m_st) = on_b
        .ns
        .run(move || async move {
            let human = BrokerClient::new(&url, Some(token));
            (
                human.message_status(handover).await.unwrap(),
                human.message_status(mail).await.unwrap(),
            )
        })
        .await;
    let tag = format!(
        "<peer-message id=\"{handover}\" from=\"alpha@alpha\" handover=\"true\" left=\"{}\">",
        peers_core::format_ms(h_st.sent_at_ms)
    );
    assert!(text.contains(&tag), "marked, with who and when: {text}");
    assert!(
        text.contains("schema migrated; next: the --since flag"),
        "{text}"
    );
    assert!(text.contains("did the migration add the index?"), "{text}");
    for st in [&h_st, &m_st] {
        assert_eq!(st.readers[0].peer_id, file.peer_id, "{st:?}");
        assert_eq!(st.readers[0].status, MessageState::Delivered, "{st:?}");
        assert_eq!(st.readers[0].delivered_via.as_deref(), Some("SessionStart"));
    }
    assert!(on_b.hook(next.claude_pid).0.is_empty(), "shown once only");
}
