//! `cargo xtask bench topics`: a post to a topic with 10, 100 and 500 subscribers — the
//! send's latency (the 200 comes once the message and every reader's copy are committed)
//! and each subscriber's first claim of its copy, p50/p99, beside one fsync on the same disk.
//!
//! The subscribers are simulated peers of one "remote" machine (alive by heartbeat, no
//! processes), so the figures are the broker's and the store's: fan-out, not the generator.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use peers_core::BrokerClient;
use peers_core::wire::{ClaimRequest, SubscribeRequest};
use peers_testkit::requests::{ack_req, send_req};

use super::{Broker, SEND_BODY, fsync_cost, load_average, machine, ms, percentile, register};

/// The p99 a 500-reader post is held to (issue 13), in ms.
const TARGET_500_P99_MS: f64 = 20.0;

pub async fn run(bin: &Path, rounds: usize) -> Result<()> {
    // The simulated subscribers send no heartbeats: keep them alive for the whole run.
    let broker = Broker::spawn_with(bin, &[("PEERS_REMOTE_ALIVE_SECS", "86400")]);
    broker.wait_healthy().await?;
    let fsync = fsync_cost(broker.state_dir())?;
    println!("peers-broker {} on {}", peers_core::VERSION, machine());
    println!(
        "SQLite store, release build, {rounds} posts per size; one fsync on this disk: {}; \
         load average at start: {}",
        ms(fsync),
        load_average()
    );
    println!();
    println!(
        "| subscribers | send p50 | send p99 | send p50 / fsync | first claim p50 | first claim p99 | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    let user = broker.user()?;
    let sender = register(&user, 0, "/bench/sender").await?;
    let mut next = 1;
    for readers in [10u32, 100, 500] {
        let topic = format!("bench-{readers}");
        let mut subs = Vec::with_capacity(readers as usize);
        for _ in 0..readers {
            let c = register(&user, next, &format!("/bench/reader-{next}")).await?;
            next += 1;
            c.subscribe(&SubscribeRequest {
                topic: topic.clone(),
                wake: None,
                mute: None,
            })
            .await?;
            subs.push(c);
        }
        let (mut sends, mut claims) = (vec![], vec![]);
        for i in 0..rounds {
            let t = Instant::now();
            let sent = sender
                .send(&send_req(format!("#{topic}"), format!("{SEND_BODY} {i}")))
                .await?;
            sends.push(t.elapsed());
            anyhow::ensure!(
                sent.readers.len() == readers as usize,
                "the post reached {} of {readers} subscribers",
                sent.readers.len()
            );
            claims.extend(first_claims(&subs).await?);
        }
        sends.sort();
        claims.sort();
        let (p50, p99) = (percentile(&sends, 0.50), percentile(&sends, 0.99));
        let target = if readers == 500 {
            let ok = p99.as_secs_f64() * 1e3 < TARGET_500_P99_MS;
            format!(
                "send p99 < {TARGET_500_P99_MS} ms: {}",
                if ok { "met" } else { "missed" }
            )
        } else {
            "—".into()
        };
        println!(
            "| {readers} | {} | {} | {:.2}× | {} | {} | {target} |",
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / fsync.as_secs_f64(),
            ms(percentile(&claims, 0.50)),
            ms(percentile(&claims, 0.99)),
        );
    }
    broker.stop();
    Ok(())
}

/// Every subscriber claims its copy (16 at a time) and acks it; each claim's duration.
async fn first_claims(subs: &[BrokerClient]) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(subs.len());
    for chunk in subs.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for c in chunk {
            let c = c.clone();
            set.spawn(async move {
                let t = Instant::now();
                let got = c.claim(&ClaimRequest::default()).await?;
                let took = t.elapsed();
                let lease = got
                    .lease_id
                    .context("a subscriber found no copy to claim")?;
                c.ack(&ack_req(lease, "bench")).await?;
                anyhow::Ok(took)
            });
        }
        while let Some(r) = set.join_next().await {
            out.push(r??);
        }
    }
    Ok(out)
}
