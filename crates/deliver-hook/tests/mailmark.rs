//! The hook and the mail markers: on a local broker with no marker for the session the hook
//! makes no request; with one it claims as always; hub clients always ask.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use peers_core::mailmark::{self, BrokerMark};

use crate::util::*;

fn marker(h: &Harness) -> std::path::PathBuf {
    mailmark::marker(&h.env.state_dir, &h.me.peer_id).unwrap()
}

/// Counts the connections made to `listener` (each is closed at once).
fn count_connections(listener: TcpListener) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    n
}

#[tokio::test]
async fn without_a_marker_the_hook_makes_no_request() {
    // No backoff: every hook that tries the network really connects.
    let mut h = Harness::start(&[("PEERS_HOOK_BACKOFF_MS", "0")]).await;
    assert!(!marker(&h).exists());
    // Swap the broker for a listener that counts connections, and let mail/.broker name a
    // live process (a stand-in) at the session's URL, as if the broker were still up.
    h.broker.kill9();
    let standin = h.web.claude_pid;
    BrokerMark {
        pid: standin,
        start_time: peers_core::process::start_time(standin).unwrap(),
        url: h.env.url(),
    }
    .write(&h.env.state_dir)
    .unwrap();
    let listener = TcpListener::bind(("127.0.0.1", h.env.port)).unwrap();
    let connections = count_connections(listener);

    for input in [POST_TOOL_USE, USER_PROMPT_SUBMIT, STOP] {
        let r = h.run(input);
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no marker, no request"
    );

    // SessionStart prints the introduction even without mail: it always asks.
    h.run(SESSION_START);
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    std::fs::write(marker(&h), "").unwrap();
    let r = h.run(POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "a marker: the hook asks"
    );

    // A broker file naming a process that is gone: the hook asks.
    std::fs::remove_file(marker(&h)).unwrap();
    BrokerMark {
        pid: i32::MAX as u32,
        start_time: 1,
        url: h.env.url(),
    }
    .write(&h.env.state_dir)
    .unwrap();
    h.run(POST_TOOL_USE);
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_marker_brings_the_mail_and_a_stale_one_costs_one_claim() {
    let h = Harness::start(&[]).await;
    let m = marker(&h);
    let id = h.send("hello").await;
    assert!(m.exists());
    assert_eq!(stdout_ids(&h.run(POST_TOOL_USE).stdout), vec![id]);
    // Delivered, but the marker is left for the next claim to clear.
    assert!(m.exists());
    assert_eq!(h.run(POST_TOOL_USE).stdout, "");
    assert!(!m.exists(), "the empty claim cleared the marker");

    let debug = h.env.dir.path().join("hook-debug.log");
    let mut cmd = h.hook(&[]);
    cmd.env(deliver_hook::DEBUG_ENV, &debug);
    assert_eq!(run_with(cmd, POST_TOOL_USE).stdout, "");
    let log = std::fs::read_to_string(&debug).unwrap();
    assert!(log.contains("no mail marker"), "{log}");

    let id = h.send("again").await;
    assert_eq!(stdout_ids(&h.run(STOP).stdout), vec![id]);

    // A stale marker (nothing waits): one claim, then it is gone.
    std::fs::write(&m, "").unwrap();
    assert_eq!(h.run(POST_TOOL_USE).stdout, "");
    assert!(!m.exists());
}

#[tokio::test]
async fn hub_clients_ask_whatever_the_markers_say() {
    let h = Harness::start(&[]).await;
    let id = h.send("for a hub client").await;
    // Taken away by hand: a local session would now skip (shown first), a hub client asks.
    std::fs::remove_file(marker(&h)).unwrap();
    assert_eq!(h.run(POST_TOOL_USE).stdout, "");
    let mut cmd = h.hook(&[]);
    cmd.env("PEERS_BROKER_URL", h.env.url());
    assert_eq!(stdout_ids(&run_with(cmd, POST_TOOL_USE).stdout), vec![id]);
}
