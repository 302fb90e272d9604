//! The hook with several brokers (`broker_urls` in the session file): it fails over from a
//! dead one to a live one, remembers the dead one across runs (the backoff file), and with
//! every broker dead still exits 0, silent, within the bound of one broker.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use peers_core::session::SessionFile;
use peers_core::wire::MessageState;

use crate::util::{Harness, POST_TOOL_USE, stdout_ids};

/// A port nobody listens on (connections are refused).
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", peers_testkit::free_port())
}

/// A listener that accepts connections and closes them at once, counting them: a broker that
/// is there but breaks every request.
pub fn dropper() -> (String, Arc<AtomicU32>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let n = Arc::new(AtomicU32::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    (url, n)
}

pub fn set_brokers(h: &Harness, urls: &[&str]) {
    let mut s = SessionFile::read(&h.env.state_dir, h.me.claude_pid)
        .unwrap()
        .unwrap();
    s.broker_url = urls[0].to_string();
    s.broker_urls = urls.iter().map(|u| u.to_string()).collect();
    s.write(&h.env.state_dir).unwrap();
}

fn marker(h: &Harness) -> String {
    std::fs::read_to_string(h.env.state_dir.join("hook-backoff")).unwrap_or_default()
}

#[tokio::test]
async fn a_dead_broker_in_front_is_passed_over_and_remembered() {
    let h = Harness::start(&[("PEERS_HOOK_BACKOFF_MS", "600000")]).await;
    let live = h.env.url();
    let dead = dead_url();
    set_brokers(&h, &[&dead, &live]);
    let id = h.send("through the second broker").await;
    let r = h.run(POST_TOOL_USE);
    assert_eq!(stdout_ids(&r.stdout), [id], "{:?}", r.stdout);
    assert_eq!(h.status(id).await.status, MessageState::Delivered);
    let m = marker(&h);
    assert!(m.contains(&dead) && !m.contains(&live), "{m}");

    // A broker that takes the connection and breaks it: the claim may have reached it, so the
    // hook does not send it again elsewhere this time; but it marks that broker, and the
    // next runs go straight to the live one without touching it.
    let (broken, attempts) = dropper();
    set_brokers(&h, &[&broken, &live]);
    let first = h.send("after the broken one").await;
    let r = h.run(POST_TOOL_USE);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (Some(0), "", "")
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    let r = h.run(POST_TOOL_USE);
    assert_eq!(stdout_ids(&r.stdout), [first], "{:?}", r.stdout);
    let second = h.send("and another").await;
    let r = h.run(POST_TOOL_USE);
    assert_eq!(stdout_ids(&r.stdout), [second], "{:?}", r.stdout);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the marked broker was skipped"
    );
}

#[tokio::test]
async fn every_broker_dead_exits_zero_silent_within_the_bound() {
    let h = Harness::start(&[("PEERS_HOOK_BACKOFF_MS", "600000")]).await;
    let id = h.send("waits for a broker").await;
    // Two refusing brokers and one that accepts but never answers (a black hole): the
    // hook's request timeout bounds all the attempts together.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    let (d1, d2) = (dead_url(), dead_url());
    set_brokers(&h, &[&d1, &d2, &hole_url]);
    let r = h.run(POST_TOOL_USE);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (Some(0), "", "")
    );
    println!("three dead brokers: {:?}", r.elapsed);
    // The bound of the one-broker black hole in `delivery.rs`.
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
    let m = marker(&h);
    for u in [&d1, &d2, &hole_url] {
        assert!(m.contains(u.as_str()), "{u} not marked in {m}");
    }
    // All marked: the next run skips the network.
    let r = h.run(POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    drop(hole);
    assert_eq!(h.status(id).await.status, MessageState::Queued);
}
