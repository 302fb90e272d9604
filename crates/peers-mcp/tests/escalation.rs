//! Escalation on a real D-Bus session bus: a private `dbus-daemon` started by the test, with a
//! stand-in desktop notification server (`org.freedesktop.Notifications`, written with zbus)
//! that records every `Notify` call; the real `peers-mcp` and `peers-broker` around it.
//!
//! Without `dbus-daemon` (Debian package `dbus`) the bus test prints SKIPPED and passes.

#![cfg(all(unix, not(target_os = "macos")))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;
use peers_core::wire::{AckRequest, ClaimRequest, Notice};
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv, eventually};
use serde_json::json;

/// A `dbus-daemon` of this test only, on a socket in a temp dir, killed when dropped.
struct PrivateBus {
    address: String,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    /// `None` when dbus-daemon is missing or does not start.
    fn start() -> Option<PrivateBus> {
        let dir = tempfile::Builder::new()
            .prefix("peers-dbus-")
            .tempdir()
            .ok()?;
        let socket = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        // No <servicedir>: nothing is activated, so a missing server is an immediate error.
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .ok()?;
        let mut child = ChildGuard::new(
            Command::new("dbus-daemon")
                .arg("--nofork")
                .arg(format!("--config-file={}", conf.display()))
                .arg("--print-address=1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| eprintln!("cannot run dbus-daemon: {e}"))
                .ok()?,
        );
        let stdout = child.child().stdout.take()?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).ok()?;
        let address = line.trim().to_string();
        if address.is_empty() {
            eprintln!("dbus-daemon printed no address");
            return None;
        }
        Some(PrivateBus {
            address,
            _child: child,
            _dir: dir,
        })
    }
}

/// One `Notify` call as the notification server received it.
#[derive(Debug, Clone)]
struct Shown {
    app: String,
    summary: String,
    body: String,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Shown>>>);

impl Recorder {
    fn all(&self) -> Vec<Shown> {
        self.0.lock().unwrap().clone()
    }

    fn about(&self, address: &str) -> Vec<Shown> {
        self.all()
            .into_iter()
            .filter(|s| s.summary.contains(address))
            .collect()
    }
}

/// The stand-in desktop notification server (the part of the freedesktop spec clients call).
struct NotificationServer(Recorder);

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl NotificationServer {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut v = self.0.0.lock().unwrap();
        v.push(Shown {
            app: app_name,
            summary,
            body,
        });
        v.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "peers-test".into(),
            "peers".into(),
            "0".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

async fn serve_notifications(address: &str, rec: Recorder) -> zbus::Connection {
    zbus::connection::Builder::address(address)
        .expect("bus address")
        .name("org.freedesktop.Notifications")
        .expect("well-known name")
        .serve_at("/org/freedesktop/Notifications", NotificationServer(rec))
        .expect("serve the interface")
        .build()
        .await
        .expect("connect the notification server to the private bus")
}

/// A broker whose environment sends notifications to the bus at `address`, with `vars` set.
async fn broker_on(address: &str, vars: &[(&str, &str)]) -> (TestEnv, Reaper, BrokerProcess) {
    let mut env = env();
    for (key, value) in vars {
        env.set(key, *value);
    }
    env.set("DBUS_SESSION_BUS_ADDRESS", address);
    broker_in(env).await
}

/// A private bus with a recording notification server on it: `(bus, recorder, server)`;
/// `None`, after saying SKIPPED, where dbus-daemon is missing or does not start.
async fn notification_bus() -> Option<(PrivateBus, Recorder, zbus::Connection)> {
    let Some(bus) = PrivateBus::start() else {
        println!("SKIPPED: dbus-daemon is not installed or does not start (apt-get install dbus)");
        return None;
    };
    let rec = Recorder::default();
    let server = serve_notifications(&bus.address, rec.clone()).await;
    Some((bus, rec, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_recipient_gets_one_notification_per_batch_and_one_that_took_its_mail_none() {
    let Some((bus, rec, _server)) = notification_bus().await else {
        return;
    };

    let (env, _reaper, _broker) =
        broker_on(&bus.address, &[("PEERS_ESCALATE_AFTER_SECS", "2")]).await;
    let idle = shell_session(&env, "idle").await;
    let busy = shell_session(&env, "busy").await;
    let sender = shell_session(&env, "sender").await;
    idle.session_file().await;

    // busy takes its mail at once, as a hook would; idle never does.
    sender
        .ok("send_message", json!({"to": "busy", "message": "take me"}))
        .await;
    let hook = busy.peer_client().await;
    let c = hook.claim(&ClaimRequest::default()).await.unwrap();
    assert_eq!(c.messages.len(), 1);
    hook.ack(&AckRequest {
        lease_id: c.lease_id.unwrap(),
        via: "PostToolUse".into(),
        message_ids: None,
    })
    .await
    .unwrap();
    let sent = Instant::now();
    for m in ["first", "second"] {
        sender
            .ok("send_message", json!({"to": "idle", "message": m}))
            .await;
    }

    let first = eventually(WAIT, "a desktop notification about idle's mail", || {
        let rec = rec.clone();
        async move { rec.about("idle@testhost").into_iter().next() }
    })
    .await;
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "not before the threshold: {:?}",
        sent.elapsed()
    );
    println!("shown: {first:?}");
    assert_eq!(first.app, "peers");
    assert!(first.summary.contains("idle@testhost"), "{first:?}");
    assert!(first.body.contains("2 messages"), "{first:?}");
    assert!(first.body.contains("sender@testhost"), "{first:?}");
    assert!(first.body.contains("peers inbox"), "{first:?}");

    // Several heartbeats and another threshold later: still that one, nothing about busy.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = rec.all();
    assert_eq!(all.len(), 1, "one notification per waiting batch: {all:?}");
    assert!(rec.about("busy@testhost").is_empty());

    // idle takes the batch; the next batch notifies once more.
    let inbox = idle.ok("check_messages", json!({})).await;
    assert!(
        inbox.contains("first") && inbox.contains("second"),
        "{inbox}"
    );
    sender
        .ok("send_message", json!({"to": "idle", "message": "third"}))
        .await;
    let second = eventually(WAIT, "a notification about the next batch", || {
        let rec = rec.clone();
        async move { rec.about("idle@testhost").get(1).cloned() }
    })
    .await;
    assert!(
        second.body.starts_with("1 message from sender@testhost"),
        "{second:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = rec.all();
    assert_eq!(all.len(), 2, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_held_back_by_the_loop_budget_notifies_before_the_threshold() {
    let Some((bus, rec, _server)) = notification_bus().await else {
        return;
    };
    let (env, _reaper, _broker) = broker_on(
        &bus.address,
        &[
            ("PEERS_ESCALATE_AFTER_SECS", "600"),
            ("PEERS_LOOP_BUDGET", "1"),
        ],
    )
    .await;
    let looping = shell_session(&env, "looping").await;
    let sender = shell_session(&env, "sender").await;
    let hook = looping.peer_client().await;
    let auto = ClaimRequest {
        automatic: true,
        ..Default::default()
    };
    // One automatic turn is within the budget; the next is refused and the mail waits.
    sender
        .ok("send_message", json!({"to": "looping", "message": "one"}))
        .await;
    let c = hook.claim(&auto).await.unwrap();
    hook.ack(&AckRequest {
        lease_id: c.lease_id.unwrap(),
        via: "Stop".into(),
        message_ids: None,
    })
    .await
    .unwrap();
    sender
        .ok("send_message", json!({"to": "looping", "message": "two"}))
        .await;
    assert!(hook.claim(&auto).await.unwrap().budget_exhausted);

    let shown = eventually(WAIT, "a notification about mail held by the budget", || {
        let rec = rec.clone();
        async move { rec.about("looping@testhost").into_iter().next() }
    })
    .await;
    assert!(shown.body.contains("loop budget"), "{shown:?}");
    assert!(shown.body.contains("sender@testhost"), "{shown:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rec.all().len(), 1, "{:?}", rec.all());
}

#[tokio::test]
async fn without_a_notification_service_the_failure_is_logged_and_shown_by_peers_status() {
    let mut env = env();
    let nobus = format!("unix:path={}", env.dir.path().join("no-bus").display());
    env.set("PEERS_ESCALATE_AFTER_SECS", "1")
        .set("DBUS_SESSION_BUS_ADDRESS", nobus);
    let (env, _reaper, _broker) = broker_in(env).await;
    let idle = shell_session(&env, "idle").await;
    let sender = shell_session(&env, "sender").await;
    let idle_id = idle.session_file().await.peer_id;
    sender
        .ok("send_message", json!({"to": "idle", "message": "anyone?"}))
        .await;

    let user = env.user_client();
    let notice: Notice = eventually(WAIT, "an escalation notice at the broker", || {
        let user = user.clone();
        async move {
            let list = user.notices().await.ok()?;
            list.notices.into_iter().find(|n| n.kind == "escalation")
        }
    })
    .await;
    println!("notice: {}", notice.text);
    assert_eq!(notice.peer_id.as_deref(), Some(idle_id.as_str()));
    for want in [
        "idle@testhost",
        "sender@testhost",
        "peers inbox",
        "no desktop notification could be shown",
    ] {
        assert!(notice.text.contains(want), "{want}: {}", notice.text);
    }
    // The session carries on as if nothing happened.
    idle.ok("whoami", json!({})).await;
    let log = std::fs::read_to_string(env.state_dir.join("logs/peers-mcp.log")).unwrap();
    assert!(
        log.contains("no desktop notification could be shown"),
        "logged: {log}"
    );

    // One notice per batch, however many heartbeats pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = user
        .notices()
        .await
        .unwrap()
        .notices
        .iter()
        .filter(|n| n.kind == "escalation")
        .count();
    assert_eq!(n, 1);

    // `peers status` shows it (when the CLI is built; `cargo xtask test` builds every binary).
    if let Some(peers) = built("peers") {
        let out = env
            .apply(&mut Command::new(peers))
            .arg("status")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("mail waits for idle@testhost"), "{text}");
        println!("peers status:\n{text}");
    } else {
        println!("peers status not checked: the peers binary is not built");
    }
}

/// A workspace binary next to this test, if built.
fn built(name: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let p = dir.join(name);
    p.is_file().then_some(p)
}
