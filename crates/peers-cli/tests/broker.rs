//! `peers broker start | stop | status | logs` on the real binaries.

use std::time::Duration;

use crate::util::{assert_contains, peers, project};
use peers_core::BrokerClient;
use peers_testkit::TestEnv;

/// Kills a broker `peers broker start` left running if the test fails before stopping it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 1 && peers_core::process::pid_alive(self.0) {
            // SAFETY: kill(2) of the broker this test started.
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
}

#[tokio::test]
async fn start_status_logs_stop() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");

    let st = peers(&env, &cwd, &["broker", "status"]);
    assert_eq!(st.code, 1);
    assert!(st.stderr.contains("peers broker start"), "{}", st.stderr);

    let out = peers(&env, &cwd, &["broker", "start"]).ok();
    assert_contains(&out.stdout, "started peers-broker");
    let h = BrokerClient::new(&env.url(), None)
        .health()
        .await
        .expect("healthy after start");
    let _guard = KillOnDrop(h.pid);
    assert_ne!(h.pid, std::process::id());

    let again = peers(&env, &cwd, &["broker", "start"]).ok();
    assert!(again.stdout.contains("already running"), "{}", again.stdout);

    let st = peers(&env, &cwd, &["broker", "status", "--json"])
        .ok()
        .json();
    assert_eq!(st["running"], true);
    assert_eq!(st["health"]["pid"], h.pid);
    assert_eq!(st["health"]["version"], peers_core::VERSION);

    let logs = peers(&env, &cwd, &["broker", "logs"]).ok();
    assert!(logs.stdout.contains("listening"), "{}", logs.stdout);
    let last = peers(&env, &cwd, &["broker", "logs", "-n", "1"]).ok();
    assert_eq!(last.stdout.lines().count(), 1, "{}", last.stdout);

    let stop = peers(&env, &cwd, &["broker", "stop"]).ok();
    assert!(stop.stdout.contains("stopped"), "{}", stop.stdout);
    assert!(BrokerClient::new(&env.url(), None).health().await.is_err());
    // The process is gone, too (it exits on its own after the shutdown call).
    crate::util::wait_until(Duration::from_secs(10), "the broker process exits", || {
        !peers_core::process::running(h.pid)
    });

    let st = peers(&env, &cwd, &["broker", "status", "--json"]);
    assert_eq!(st.code, 1);
    assert_eq!(st.json()["running"], false);
    let stop = peers(&env, &cwd, &["broker", "stop"]).ok();
    assert_contains(&stop.stdout, "no peers broker is running");
}

#[test]
fn a_remote_hub_is_not_started_or_stopped_from_here() {
    let mut env = TestEnv::new();
    env.set("PEERS_BROKER_URL", "http://127.0.0.1:9");
    let cwd = project(&env, "p");
    let mut cmd = crate::util::peers_cmd(&env, &cwd, &["broker", "start"]);
    cmd.env("PEERS_BROKER_URL", "http://127.0.0.1:9");
    let out: crate::util::Run = cmd.output().unwrap().into();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("remote hub"), "{}", out.stderr);
    let out = peers(&env, &cwd, &["broker", "stop"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("remote hub"), "{}", out.stderr);
    let out = peers(&env, &cwd, &["send", "web", "hi"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("hub"), "{}", out.stderr);
}
