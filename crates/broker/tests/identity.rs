//! A session is `(machine_id, claude_pid)` plus the Claude Code process's start time: the
//! broker keys registrations and judges local liveness on all three (real broker, real HTTP).

use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::process;
use peers_core::wire::*;
use peers_testkit::{TestEnv, eventually, fake_claude, peer};

use crate::util::broker_with;

async fn register(
    env: &TestEnv,
    pid: u32,
    start: Option<u64>,
    cwd: &str,
) -> (RegisterResponse, BrokerClient) {
    let req = RegisterRequest {
        claude_start_time: start,
        ..peer::request(env, pid, cwd)
    };
    let reg = peer::register(env, &req).await;
    let client = BrokerClient::new(&env.url(), Some(reg.token.clone()));
    (reg, client)
}

async fn peer(env: &TestEnv, peer_id: &str) -> PeerInfo {
    env.user_client()
        .list_peers(&ListPeersQuery {
            include_gone: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .peers
        .into_iter()
        .find(|p| p.peer_id == peer_id)
        .unwrap_or_else(|| panic!("{peer_id} is listed"))
}

async fn send(env: &TestEnv, to: &str, body: &str) -> i64 {
    env.user_client()
        .send(&SendRequest {
            tags: vec![],
            to: to.into(),
            message: body.into(),
            reply_to: None,
            scope: None,
        })
        .await
        .unwrap()
        .message_id
}

#[tokio::test]
async fn the_same_pid_with_another_start_time_is_a_new_session() {
    // No sweep during the test: the registrations below use made-up start times.
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "3600000")]).await;
    let claude = fake_claude();
    let pid = claude.pid();

    let (a, _) = register(&env, pid, Some(1000), "/work/alpha").await;
    assert_eq!(a.name, "alpha");
    let id = send(&env, "alpha", "for the first process").await;

    // Same process again (a reconnect): same name, its mail moves along.
    let (a2, _) = register(&env, pid, Some(1000), "/work/alpha").await;
    assert_eq!((a2.name.as_str(), a2.inherited_messages), ("alpha", 1));

    // Another process with that pid, in another directory: a new session; the old one ended
    // and keeps its mail.
    let (b, _) = register(&env, pid, Some(2000), "/work/beta").await;
    assert_eq!((b.name.as_str(), b.inherited_messages), ("beta", 0));
    let old = peer(&env, &a2.peer_id).await;
    assert!(!old.alive, "{old:?}");
    assert_eq!(old.queued, 1);
    let st = env.user_client().message_status(id).await.unwrap();
    assert_eq!(
        (st.status, st.to.as_str()),
        (MessageState::Queued, "alpha@box")
    );

    // A later process with that pid in alpha's directory inherits alpha's mail by the
    // hand-over rule (same name, same directory) — and only so.
    let (c, client) = register(&env, pid, Some(3000), "/work/alpha").await;
    assert_eq!((c.name.as_str(), c.inherited_messages), ("alpha", 1));
    assert!(!peer(&env, &b.peer_id).await.alive);
    let claim = client
        .claim(&ClaimRequest {
            max: None,
            lease_ms: None,
            automatic: false,
        })
        .await
        .unwrap();
    assert_eq!(claim.messages.len(), 1);

    // A client that sends no start time is keyed on the pid alone, as before.
    let (d, _) = register(&env, pid, None, "/work/gamma").await;
    assert_eq!(d.name, "alpha", "no start time: the same process");
    drop(claude);
}

#[tokio::test]
async fn a_local_peer_whose_pid_now_belongs_to_another_process_is_gone() {
    let (env, _broker) = broker_with(&[("PEERS_SWEEP_MS", "100")]).await;

    // A registration whose pid is alive, but not with the start time it recorded: the
    // process it names has ended and another one was given its pid.
    let other = fake_claude();
    let start = process::start_time(other.pid()).expect("start time of a live child");
    let (ghost, ghost_client) = register(&env, other.pid(), Some(start + 1), "/work/ghost").await;
    // A registration of a running process, for contrast.
    let claude = fake_claude();
    let start = process::start_time(claude.pid()).expect("start time of a live child");
    let (live, live_client) = register(&env, claude.pid(), Some(start), "/work/live").await;

    eventually(
        Duration::from_secs(10),
        "the sweep ends the ghost",
        || async { (!peer(&env, &ghost.peer_id).await.alive).then_some(()) },
    )
    .await;
    // Its MCP server cannot bring it back with a heartbeat; the real one stays.
    assert!(ghost_client.heartbeat().await.is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    live_client.heartbeat().await.unwrap();
    assert!(peer(&env, &live.peer_id).await.alive);
    drop((other, claude));
}
