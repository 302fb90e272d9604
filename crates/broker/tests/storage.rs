//! Storage faults against the real broker process and a real SQLite file: the database file
//! deleted under a running broker, a full disk (a small tmpfs the test mounts; needs root),
//! and a clean shutdown that leaves `peers.db` complete on its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use peers_core::wire::*;
use peers_testkit::{BrokerProcess, TestEnv, eventually};

use crate::util::{broker_with, register, send_numbered};

/// `POST /v1/messages` by hand: the status and the JSON body, whatever they are.
async fn raw_send(env: &TestEnv, to: &str, message: &str) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/messages", env.url()))
        .bearer_auth(env.secret().unwrap())
        .json(&serde_json::json!({"to": to, "message": message}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn broker_log(env: &TestEnv) -> String {
    std::fs::read_to_string(env.state_dir.join("logs/broker.log")).unwrap_or_default()
}

#[tokio::test]
async fn a_database_deleted_under_the_broker_is_storage_lost_not_200() {
    let (env, mut broker) = broker_with(&[]).await;
    let a = register(&env, "/w/a").await;
    let (status, _) = raw_send(&env, "a", "before").await;
    assert_eq!(status, 200);

    std::fs::remove_file(env.state_dir.join("peers.db")).unwrap();

    // The next send is refused: nothing is stored in a file nobody can open again.
    let (status, body) = raw_send(&env, "a", "after the delete").await;
    assert_eq!((status, code(&body)), (503, "storage_lost"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("peers.db"), "{message}");
    // Neither does anything else claim success.
    let e = a.client.claim(&ClaimRequest::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    let e = a.client.heartbeat().await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    for _ in 0..3 {
        let (status, body) = raw_send(&env, "a", "still refused").await;
        assert_eq!((status, code(&body)), (503, "storage_lost"), "{body}");
    }
    // The human is told, by the broker, and the log says so.
    let notices = env.user_client().notices().await.unwrap().notices;
    let lost = notices
        .iter()
        .find(|n| n.kind == "storage_lost")
        .unwrap_or_else(|| panic!("no storage_lost notice: {notices:?}"));
    assert_eq!(lost.author, "broker");
    eventually(Duration::from_secs(5), "a log line about it", || async {
        broker_log(&env).contains("storage_lost").then_some(())
    })
    .await;
    assert!(!env.user_client().health().await.unwrap().ok);

    // A restart starts with an empty database, and says so.
    assert!(broker.terminate(), "broker exits on SIGTERM");
    let _broker = BrokerProcess::start(&env).await;
    assert_broker_noticed(&env, "storage_new").await;
}

#[tokio::test]
async fn a_clean_shutdown_leaves_a_complete_peers_db_without_its_wal() {
    let (env, mut broker) = broker_with(&[]).await;
    let _a = register(&env, "/w/a").await;
    let user = env.user_client();
    let ids = send_numbered(&user, "a", "kept", 30).await;
    assert!(broker.terminate(), "broker exits on SIGTERM");

    // Only the main file is copied: no -wal, no -shm.
    let copy = TestEnv::new();
    std::fs::create_dir_all(&copy.state_dir).unwrap();
    std::fs::copy(
        env.state_dir.join("peers.db"),
        copy.state_dir.join("peers.db"),
    )
    .unwrap();
    let _second = BrokerProcess::start(&copy).await;
    let log = copy
        .user_client()
        .messages(&HistoryQuery::default())
        .await
        .unwrap();
    let mut found: Vec<i64> = log.messages.iter().map(|m| m.message_id).collect();
    found.sort();
    assert_eq!(found, ids, "every message is in peers.db alone");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `"2m"`) on `dir`, or says why not.
    fn mount(dir: &Path, size: &str) -> Result<SmallDisk, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

#[tokio::test]
async fn a_full_disk_is_storage_full_and_the_broker_recovers_by_itself() {
    let env = TestEnv::new();
    // The whole state dir (database, WAL, logs) lives on a 2 MiB tmpfs.
    let disk = match SmallDisk::mount(&env.state_dir, "2m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: the disk-full test needs root to mount a tmpfs ({why})");
            return;
        }
    };
    let mut broker = BrokerProcess::start(&env).await;
    let a = register(&env, "/w/a").await;
    let mut stored: Vec<i64> = vec![];
    let (status, body) = raw_send(&env, "a", "room enough").await;
    assert_eq!(status, 200, "{body}");
    stored.push(body["message_id"].as_i64().unwrap());

    let filler = disk.fill();
    // Sends that still fit in space SQLite already holds may succeed; soon they are refused.
    let body = "x".repeat(8 * 1024);
    let mut refused = None;
    for i in 0..400 {
        let (status, reply) = raw_send(&env, "a", &format!("{i} {body}")).await;
        match status {
            200 => stored.push(reply["message_id"].as_i64().unwrap()),
            _ => {
                refused = Some((status, reply));
                break;
            }
        }
    }
    let (status, reply) = refused.expect("a full disk refuses a send");
    assert_eq!((status, code(&reply)), (507, "storage_full"), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&env.state_dir.display().to_string()),
        "names the state dir: {message}"
    );
    assert!(!message.contains("SQLITE"), "no SQLite text: {message}");
    // It stays refused while the disk is full, and the human is told.
    let (status, reply) = raw_send(&env, "a", &"still full ".repeat(4000)).await;
    assert_eq!((status, code(&reply)), (507, "storage_full"), "{reply}");
    assert_broker_noticed(&env, "storage_full").await;

    // Space comes back: sends succeed again, no restart, and the end of the spell is pushed
    // on the event stream (a live dashboard shows it without a reload).
    let mut events = env.user_client().events(None).await.unwrap();
    std::fs::remove_file(filler).unwrap();
    let id = eventually(
        Duration::from_secs(20),
        "a send to succeed again",
        || async {
            let (status, reply) = raw_send(&env, "a", "after the cleanup").await;
            (status == 200).then(|| reply["message_id"].as_i64().unwrap())
        },
    )
    .await;
    stored.push(id);
    let (status, reply) = raw_send(&env, "a", "and the next").await;
    assert_eq!(status, 200, "{reply}");
    stored.push(reply["message_id"].as_i64().unwrap());
    let recovered = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = events.next().await {
            if let Event::Notice { notice } = e.unwrap().event
                && notice.kind == "storage_recovered"
            {
                return notice;
            }
        }
        panic!("the event stream ended before storage_recovered");
    })
    .await
    .expect("storage_recovered is pushed as an event");
    assert_eq!(recovered.author, "broker", "{recovered:?}");

    // Every 200'd message is there, and nothing refused was half-stored.
    let log = env
        .user_client()
        .messages(&HistoryQuery {
            tag: None,
            project: None,
            until_ms: None,
            status: None,
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut found: Vec<i64> = log.messages.iter().map(|m| m.message_id).collect();
    found.sort();
    stored.sort();
    assert_eq!(found, stored);
    let claim = a
        .client
        .claim(&ClaimRequest {
            max: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(claim.messages.len(), stored.len());

    broker.kill9();
    drop(disk);
}

/// Asserts that the broker has told the human a notice of `kind`.
async fn assert_broker_noticed(env: &TestEnv, kind: &str) {
    let notices = env.user_client().notices().await.unwrap().notices;
    assert!(
        notices
            .iter()
            .any(|n| n.kind == kind && n.author == "broker"),
        "{notices:?}"
    );
}

#[tokio::test]
async fn the_database_comes_from_db_url_and_an_unreachable_postgres_url_is_refused_without_its_password()
 {
    // --db-url sqlite://… puts the database there, not in the state dir.
    let env = TestEnv::new();
    let elsewhere = env.dir.path().join("elsewhere/mail.db");
    let url = format!("sqlite://{}", elsewhere.display());
    let broker = BrokerProcess::start_with(&env, &["--db-url", &url]).await;
    let a = register(&env, "/w/a").await;
    let (status, _) = raw_send(&env, &a.reg.name, "kept in mail.db").await;
    assert_eq!(status, 200);
    assert!(elsewhere.exists(), "the database is where db_url says");
    assert!(
        !env.state_dir.join("peers.db").exists(),
        "not in the state dir"
    );
    drop(broker);

    // A PostgreSQL server that cannot be reached: the start fails saying so, password hidden.
    let env = TestEnv::new();
    let mut cmd = Command::new(peers_testkit::bin("peers-broker"));
    let out = env
        .apply(&mut cmd)
        .args(["--db-url", "postgres://peers:hunter2@127.0.0.1:1/peers"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the database"), "{err}");
    assert!(
        err.contains("postgres://peers:***@127.0.0.1:1/peers"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
