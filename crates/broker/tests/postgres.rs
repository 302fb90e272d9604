//! Two brokers on one PostgreSQL database (`PEERS_DB_URL`), over real HTTP: what one stores
//! the other serves, and a long poll on one is woken by a send through the other. Skipped
//! loudly without PostgreSQL.

use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::wire::{ClaimRequest, WaitQuery};
use peers_testkit::postgres::PgCluster;
use peers_testkit::{BrokerProcess, TestEnv};

use crate::util::{ack_all, register, send_req};

/// A broker environment on database `url`; `like` gives it the secret and machine id of
/// another, as brokers of one user on one machine share them.
fn env_on(url: &str, like: Option<&TestEnv>) -> TestEnv {
    let mut env = TestEnv::new();
    env.set("PEERS_DB_URL", url);
    if let Some(other) = like {
        std::fs::create_dir_all(&env.state_dir).unwrap();
        for file in [
            peers_core::paths::secret_file(&other.state_dir),
            peers_core::paths::machine_id_file(&other.state_dir),
        ] {
            let to = env.state_dir.join(file.file_name().unwrap());
            std::fs::copy(&file, &to).unwrap();
        }
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_database_serve_one_mailbox_and_wake_each_other() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_database("two_brokers");
    let a_env = env_on(&url, None);
    let _a = BrokerProcess::start(&a_env).await;
    let b_env = env_on(&url, Some(&a_env));
    let _b = BrokerProcess::start(&b_env).await;

    // Registered through A; a client of B with the same token is the same peer.
    let api = register(&a_env, "/work/api").await;
    let web = register(&a_env, "/work/web").await;
    let api_on_b = BrokerClient::new(&b_env.url(), Some(api.reg.token.clone()));
    let listed = b_env
        .user_client()
        .find_peer("api")
        .await
        .expect("B knows api");
    assert_eq!(listed.peer_id, api.reg.peer_id);

    // A long poll on B, woken by a send through A.
    let waiter = {
        let api_on_b = api_on_b.clone();
        tokio::spawn(async move {
            api_on_b
                .wait(&WaitQuery {
                    timeout_ms: Some(300_000),
                })
                .await
        })
    };
    let sent = web
        .client
        .send(&send_req("api", "through broker A"))
        .await
        .expect("send through A");
    let woke = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the wait on B ended long before its 5-minute timeout")
        .unwrap()
        .expect("wait");
    assert!(woke.mail, "B's long poll saw the mail A stored");

    // Claimed and acked through B, delivered as far as A can tell.
    let claim = api_on_b.claim(&ClaimRequest::default()).await.unwrap();
    let bodies: Vec<&str> = claim.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["through broker A"]);
    let lease = claim.lease_id.clone().expect("a lease");
    assert_eq!(ack_all(&api_on_b, lease, "Stop").await, 1);
    let status = a_env
        .user_client()
        .message_status(sent.message_id)
        .await
        .unwrap();
    assert_eq!(
        status.status,
        peers_core::wire::MessageState::Delivered,
        "A sees the ack made through B"
    );
    drop(pg);
}
