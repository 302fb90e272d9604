//! The optional TLS: a broker with `tls_cert`/`tls_key` serves HTTPS; a client trusts exactly
//! the configured `tls_ca`. Certificates are made here with rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::client::Timeouts;
use peers_testkit::{BrokerProcess, TestEnv, wait_healthy};

/// A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem).
fn self_signed(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generate a certificate");
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn client(url: &str, auth: Option<String>, ca: Option<&Path>) -> BrokerClient {
    BrokerClient::with_tls_ca(
        url,
        auth,
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        },
        ca,
    )
}

#[tokio::test]
async fn https_with_a_pinned_certificate() {
    let mut env = TestEnv::new();
    let (cert, key) = self_signed(env.dir.path(), "hub");
    let (other, _) = self_signed(env.dir.path(), "other");
    env.set("PEERS_TLS_CERT", cert.display().to_string());
    env.set("PEERS_TLS_KEY", key.display().to_string());
    let mut cmd = std::process::Command::new(peers_testkit::bin("peers-broker"));
    env.apply(&mut cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let _broker = peers_testkit::ChildGuard::new(cmd.spawn().unwrap());
    let https = format!("https://127.0.0.1:{}", env.port);

    // Trusting the hub's own certificate: everything works, with the same auth rules.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let anon = client(&https, None, Some(&cert));
    while anon.health().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no HTTPS health");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let user = client(&https, env.secret(), Some(&cert));
    assert!(user.notices().await.is_ok());
    assert_eq!(anon.notices().await.unwrap_err().status(), Some(401));

    // Trusting another certificate, or the system roots: refused by the client.
    let err = client(&https, None, Some(&other))
        .health()
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let err = client(&https, None, None).health().await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");

    // Plain HTTP to the TLS port gets no API answer.
    let plain = client(&env.url(), None, None);
    assert!(plain.health().await.is_err());

    // An unreadable tls_ca is a clear TLS error, not a panic.
    let err = client(&https, None, Some(&env.dir.path().join("missing.pem")))
        .health()
        .await
        .unwrap_err();
    assert!(
        matches!(err, peers_core::ClientError::Tls { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn half_a_tls_config_is_refused() {
    let mut env = TestEnv::new();
    let (cert, _) = self_signed(env.dir.path(), "hub");
    env.set("PEERS_TLS_CERT", cert.display().to_string());
    let out = std::process::Command::new(peers_testkit::bin("peers-broker"))
        .envs(env.vars())
        .env_remove("PEERS_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_key"), "{err}");
}

#[tokio::test]
async fn plain_http_is_unchanged() {
    let env = TestEnv::new();
    let b = BrokerProcess::start(&env).await;
    wait_healthy(&b.url, Duration::from_secs(5)).await;
    assert!(env.user_client().notices().await.is_ok());
}
