//! Latency of one hook invocation as a whole process (spawn to exit, PostToolUse input,
//! session present). Ignored by default; `cargo xtask bench hook` builds the release broker
//! and hooks, links the front as `cargo xtask install` does (statically, on Linux) and runs
//! it. By hand, against whatever is built:
//!
//! ```text
//! cargo build --release -p deliver-hook -p peers-broker
//! cargo test -p deliver-hook --test deliver-hook bench:: -- --ignored --nocapture
//! ```
//!
//! `PEERS_DELIVER_BENCH_BIN` picks another hook binary (default: `target/release/peers-deliver`
//! when built, else the test build), `PEERS_BROKER_BENCH_BIN` another broker (default: the
//! release build when there is one), `PEERS_BENCH_N` the number of runs per case.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

fn hook_under_test() -> PathBuf {
    if let Some(p) = std::env::var_os("PEERS_DELIVER_BENCH_BIN") {
        return p.into();
    }
    let release =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/peers-deliver");
    if release.is_file() {
        release
    } else {
        hook_bin()
    }
}

/// `PEERS_BROKER_BENCH_BIN`, else `target/release/peers-broker` when built, else the debug one.
fn broker_under_test() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PEERS_BROKER_BENCH_BIN") {
        return Some(p.into());
    }
    let release =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/peers-broker");
    release.is_file().then_some(release)
}

/// The `p` quantile of `v` (0.5: the median).
fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn p50(v: &[Duration]) -> Duration {
    pct(v, 0.5)
}

fn stats(v: Vec<Duration>) -> String {
    format!(
        "p50 {:>8.3} ms  p95 {:>8.3} ms  min {:>8.3} ms  (n={})",
        pct(&v, 0.5).as_secs_f64() * 1e3,
        pct(&v, 0.95).as_secs_f64() * 1e3,
        pct(&v, 0.0).as_secs_f64() * 1e3,
        v.len()
    )
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn hook_latency() {
    let n: usize = std::env::var("PEERS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let bin = hook_under_test();
    println!("hook binary: {}", bin.display());
    let broker = broker_under_test();
    println!(
        "broker binary: {}",
        broker
            .as_deref()
            .map_or("target/debug/peers-broker".into(), |p| p
                .display()
                .to_string())
    );
    let mut h = Harness::start_with_broker(&[], broker.as_deref()).await;
    let cmd_of = |prog: &std::path::Path, h: &Harness, extra: &[(&str, &str)]| {
        let mut c = h.hook_at(prog, &[]);
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    };
    let cmd = |h: &Harness, extra: &[(&str, &str)]| cmd_of(&bin, h, extra);
    let time = |h: &Harness, extra: &[(&str, &str)], input: &str| {
        (0..n)
            .map(|_| {
                let r = run_with(cmd(h, extra), input);
                assert_eq!(r.code, Some(0));
                r.elapsed
            })
            .collect::<Vec<_>>()
    };

    let t = time(&h, &[("CLAUDE_PID", "1")], POST_TOOL_USE);
    println!("{:<44} {}", "no session file (walk to pid 1)", stats(t));

    // The common case, no mail marker for the session (no request), run alternately with a
    // bare process spawn so all see the same load: the front (what the hooks run), and the
    // full hook run directly (what every event cost before the front).
    let marker = peers_core::mailmark::marker(&h.env.state_dir, &h.me.peer_id).unwrap();
    assert!(!marker.exists());
    let full = bin.with_file_name(deliver_hook::front::FULL_BIN);
    let (mut spawn, mut hook, mut direct) = (vec![], vec![], vec![]);
    for _ in 0..n {
        spawn.push(run_with(Command::new("true"), "").elapsed);
        let r = run_with(cmd(&h, &[]), POST_TOOL_USE);
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
        hook.push(r.elapsed);
        let r = run_with(cmd_of(&full, &h, &[]), POST_TOOL_USE);
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
        direct.push(r.elapsed);
    }
    let ratio = |v: &[Duration]| p50(v).as_secs_f64() / p50(&spawn).as_secs_f64();
    let (front_ratio, full_ratio) = (ratio(&hook), ratio(&direct));
    println!("{:<44} {}", "baseline: spawn /bin/true", stats(spawn));
    println!(
        "{:<44} {}",
        "session, broker up, no mail (no marker)",
        stats(hook)
    );
    println!(
        "{:<44} {front_ratio:.2}x /bin/true (target <= 1.5x)",
        "  ratio of the p50s (runs alternated)"
    );
    println!(
        "{:<44} {}",
        "  the same, full hook run directly",
        stats(direct)
    );
    println!("{:<44} {full_ratio:.2}x /bin/true", "  its ratio");

    // What every no-mail event cost before the markers, and still costs a hub client.
    let url = h.env.url();
    let t = time(&h, &[("PEERS_BROKER_URL", url.as_str())], POST_TOOL_USE);
    println!(
        "{:<44} {}",
        "session, no mail, hub client (claims)",
        stats(t)
    );

    // The broker's share: the same claim from this process, on a fresh connection each time.
    let mut t = Vec::new();
    for _ in 0..n {
        let c = peers_core::BrokerClient::new(&h.env.url(), Some(h.me.token.clone()));
        let started = std::time::Instant::now();
        let r = c
            .claim(&peers_core::wire::ClaimRequest {
                max: Some(20),
                ..Default::default()
            })
            .await
            .unwrap();
        t.push(started.elapsed());
        assert!(r.messages.is_empty());
    }
    println!(
        "{:<44} {}",
        "  in-process claim, new connection, no mail",
        stats(t)
    );

    let mut t = Vec::new();
    for i in 0..n {
        h.send(&format!("bench message {i}")).await;
        let r = run_with(cmd(&h, &[]), POST_TOOL_USE);
        assert_eq!(stdout_ids(&r.stdout).len(), 1);
        t.push(r.elapsed);
    }
    println!(
        "{:<44} {}",
        "session, broker up, one message (claim+ack)",
        stats(t)
    );

    h.broker.kill9();
    let t = time(&h, &[("PEERS_HOOK_BACKOFF_MS", "0")], POST_TOOL_USE);
    println!(
        "{:<44} {}",
        "broker down, no backoff (connect refused)",
        stats(t)
    );
    let _ = run_with(cmd(&h, &[]), POST_TOOL_USE);
    assert!(h.env.state_dir.join("hook-backoff").exists());
    let t = time(&h, &[("PEERS_HOOK_BACKOFF_MS", "600000")], POST_TOOL_USE);
    println!("{:<44} {}", "broker down, backoff marker present", stats(t));
}
