//! What the broker's tests share: a started broker, registered sessions, a send request,
//! acks, listings and waiting for the sweep.

use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::wire::{AckRequest, AckResponse, InboxMessage, PeerInfo, RegisterRequest};
use peers_testkit::peer::Peer;
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv, eventually, fake_claude};

/// A fresh environment with `vars` set, and the broker started in it. Bind it as
/// `let (env, _broker) = …` so the broker stops before its state dir goes.
pub async fn broker_with(vars: &[(&str, &str)]) -> (TestEnv, BrokerProcess) {
    let mut env = TestEnv::new();
    for (key, value) in vars {
        env.set(key, *value);
    }
    let broker = BrokerProcess::start(&env).await;
    (env, broker)
}

/// A new stand-in session registered in `cwd` (host `box`).
pub async fn register(env: &TestEnv, cwd: &str) -> Peer {
    Peer::register(env, cwd).await
}

/// Registers the stand-in `claude` in `cwd`, e.g. again after its first registration.
pub async fn register_as(env: &TestEnv, claude: ChildGuard, cwd: &str) -> Peer {
    Peer::register_as(env, claude, cwd).await
}

/// A new stand-in session registered with the fields of `req`.
pub async fn register_with(env: &TestEnv, req: RegisterRequest) -> Peer {
    Peer::register_with(env, fake_claude(), req).await
}

pub use peers_testkit::requests::send_req;

/// Sends `n` messages `"{label} 0"`, `"{label} 1"`, … from `client` to `to`; their ids in order.
pub async fn send_numbered(client: &BrokerClient, to: &str, label: &str, n: usize) -> Vec<i64> {
    let mut ids = vec![];
    for i in 0..n {
        let sent = client.send(&send_req(to, format!("{label} {i}"))).await;
        ids.push(sent.unwrap().message_id);
    }
    ids
}

/// Acks the lease `lease_id` as shown `via`: all of it (`message_ids` `None`) or only those.
pub async fn ack(
    client: &BrokerClient,
    lease_id: String,
    via: &str,
    message_ids: Option<Vec<i64>>,
) -> AckResponse {
    client
        .ack(&AckRequest {
            lease_id,
            via: via.into(),
            message_ids,
        })
        .await
        .unwrap()
}

/// Acks a whole lease, returning how many messages it delivered.
pub async fn ack_all(client: &BrokerClient, lease_id: String, via: &str) -> u64 {
    ack(client, lease_id, via, None).await.delivered
}

/// The ids of `messages`, in their order.
pub fn ids_of(messages: &[InboxMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.message_id).collect()
}

/// The live peers `client` sees, in the default scope.
pub async fn listed(client: &BrokerClient) -> Vec<PeerInfo> {
    client.list_peers(&Default::default()).await.unwrap().peers
}

/// Waits (5 s at most) until the live peers `client` sees satisfy `done`, e.g. after the
/// sweep has marked an ended session gone.
pub async fn until_listed(client: &BrokerClient, what: &str, done: impl Fn(&[PeerInfo]) -> bool) {
    eventually(Duration::from_secs(5), what, || async {
        done(&listed(client).await).then_some(())
    })
    .await
}

/// NUL (U+0000) in a body, a recipient or an ack is a 400 naming the field, and nothing is
/// stored — on every backend (PostgreSQL text cannot hold NUL at all).
pub async fn nul_is_refused_and_nothing_stored(env: &TestEnv) {
    let a = register(env, "/w/nul").await;
    let user = env.user_client();
    let refused = |e: peers_core::client::ClientError, field: &str| {
        assert_eq!(e.status(), Some(400), "{e}");
        let text = e.to_string();
        assert!(text.contains("NUL") && text.contains(field), "{text}");
    };
    refused(
        user.send(&send_req("nul", "before\0after"))
            .await
            .unwrap_err(),
        "message",
    );
    refused(
        user.send(&send_req("nul\0", "hi")).await.unwrap_err(),
        "`to`",
    );
    assert!(a.client.peek().await.unwrap().messages.is_empty());
    user.send(&send_req("nul", "fine")).await.unwrap();
    let c = a
        .client
        .claim(&peers_core::wire::ClaimRequest::default())
        .await
        .unwrap();
    let lease = c.lease_id.unwrap();
    refused(
        a.client
            .ack(&AckRequest {
                lease_id: lease.clone(),
                via: "Stop\0".into(),
                message_ids: None,
            })
            .await
            .unwrap_err(),
        "via",
    );
    assert_eq!(ack_all(&a.client, lease, "Stop").await, 1);
}
