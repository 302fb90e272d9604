//! `cargo xtask bench stores`: the same load on each store backend, side by side in one run —
//! SQLite, PostgreSQL behind one broker, PostgreSQL behind two brokers (senders split between
//! them). Sends/s at concurrency 1, 8 and 64 (each acknowledged send committed), and the
//! latency of a claim that finds one message.
//!
//! PostgreSQL is a throw-away cluster started for the run (`peers_testkit::postgres`), with
//! its defaults (`synchronous_commit = on`, `fsync = on`): the brokers pay a real fsync per
//! commit as SQLite does with `synchronous=FULL`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use peers_core::BrokerClient;
use peers_testkit::postgres::PgCluster;
use peers_testkit::requests::send_req;
use peers_testkit::{BrokerProcess, TestEnv};

use super::{SEND_BODY, claim_latencies, load, machine, ms, percentile, register, register_token};

/// One backend under test: its brokers (one or two) on one database.
struct Setup {
    brokers: Vec<(TestEnv, BrokerProcess)>,
}

impl Setup {
    async fn start(bin: &Path, db_url: Option<&str>, n: usize) -> Result<Setup> {
        let mut brokers = vec![];
        for _ in 0..n {
            let mut env = TestEnv::new();
            env.set("PEERS_LOG", "warn");
            if let Some(url) = db_url {
                env.set("PEERS_DB_URL", url);
            }
            let process = BrokerProcess::spawn(&env, bin, &[], Stdio::inherit());
            process.wait_healthy(Duration::from_secs(20)).await;
            brokers.push((env, process));
        }
        Ok(Setup { brokers })
    }

    /// The human's client of broker `i`.
    fn user(&self, i: usize) -> Result<BrokerClient> {
        let (env, process) = &self.brokers[i % self.brokers.len()];
        let secret = env.secret().context("the broker created no secret")?;
        Ok(BrokerClient::new(&process.url, Some(secret)))
    }

    /// The address of broker `i`.
    fn addr(&self, i: usize) -> Result<SocketAddr> {
        let (_, process) = &self.brokers[i % self.brokers.len()];
        process
            .url
            .trim_start_matches("http://")
            .parse()
            .context("the broker's address")
    }

    fn stop(mut self) {
        for (_, p) in &mut self.brokers {
            p.terminate();
        }
    }
}

/// Figures of one backend.
#[derive(Default, Clone)]
struct Figures {
    sends: Vec<f64>,
    claim_p50: Duration,
    claim_p99: Duration,
}

const CONCURRENCY: [usize; 3] = [1, 8, 64];

pub async fn run(bin: &Path, seconds: u64) -> Result<()> {
    let Some(pg) = PgCluster::start() else {
        bail!(
            "the stores bench needs PostgreSQL's server binaries (Debian: apt-get install postgresql)"
        );
    };
    println!("peers-broker {} on {}", peers_core::VERSION, machine());
    println!(
        "PostgreSQL: a throw-away cluster on 127.0.0.1:{}, default settings",
        pg.port()
    );
    println!();
    let mut all = vec![];
    for (label, db, n) in [
        ("SQLite", None, 1),
        (
            "PostgreSQL, 1 broker",
            Some(pg.create_database("bench_one")),
            1,
        ),
        (
            "PostgreSQL, 2 brokers",
            Some(pg.create_database("bench_two")),
            2,
        ),
    ] {
        let setup = Setup::start(bin, db.as_deref(), n).await?;
        let figures = measure(&setup, seconds).await?;
        eprintln!("{label}: done");
        setup.stop();
        all.push((label, figures));
    }
    print!("| measure |");
    for (label, _) in &all {
        print!(" {label} |");
    }
    println!();
    println!("|---|{}", "---|".repeat(all.len()));
    for (i, c) in CONCURRENCY.iter().enumerate() {
        print!("| sends/s at concurrency {c} |");
        for (_, f) in &all {
            print!(" {:.0}/s |", f.sends[i]);
        }
        println!();
    }
    print!("| claim p50 / p99 (one message waiting) |");
    for (_, f) in &all {
        print!(" {} / {} |", ms(f.claim_p50), ms(f.claim_p99));
    }
    println!();
    println!();
    let at64 = |i: usize| all[i].1.sends[2];
    let ratio = at64(1) / at64(0);
    println!(
        "PostgreSQL (1 broker) at concurrency 64 is {ratio:.2}× SQLite; target ≥ 0.50×: {}",
        if ratio >= 0.5 { "met" } else { "missed" }
    );
    let two = at64(2) / at64(1);
    println!(
        "2 brokers at concurrency 64 are {two:.2}× 1 broker; target > 1.00×: {}",
        if two > 1.0 { "met" } else { "missed" }
    );
    Ok(())
}

async fn measure(setup: &Setup, seconds: u64) -> Result<Figures> {
    let user = setup.user(0)?;
    // 64 senders (registered through broker 0; a peer's token is valid on every broker of one
    // database), sender i sending through broker i mod n, to 16 recipients.
    let n = setup.brokers.len();
    let mut sends: Vec<Vec<Arc<[u8]>>> = vec![vec![]; n];
    for i in 0..64usize {
        let token = register_token(&user, i as u32, &format!("/bench/sender{i}")).await?;
        let body = serde_json::to_vec(&send_req(format!("inbox{}", i % 16), SEND_BODY))?;
        sends[i % n].push(load::request("POST", "/v1/messages", Some(&token), Some(&body)).into());
    }
    for i in 0..16 {
        register(&user, 1000 + i, &format!("/bench/inbox{i}")).await?;
    }
    let mut figures = Figures::default();
    for conc in CONCURRENCY {
        // The lean generator, one thread per broker, each with its share of the senders.
        let mut runs = vec![];
        for (b, requests) in sends.iter().enumerate() {
            // Senders 0..conc, sender i on broker i mod n.
            let share = (conc + n - 1 - b) / n;
            if share == 0 {
                continue;
            }
            let mine: Vec<Arc<[u8]>> = requests.iter().take(share).cloned().collect();
            let addr = setup.addr(b)?;
            runs.push(tokio::task::spawn_blocking(move || {
                load::run(
                    addr,
                    &mine,
                    200,
                    1,
                    &[],
                    Duration::from_millis(300),
                    Duration::from_secs(seconds),
                )
            }));
        }
        let mut rate = 0.0;
        for r in runs {
            rate += r.await??.rate;
        }
        figures.sends.push(rate);
    }
    // Claims: the message is sent through the last broker, claimed through the first.
    let claimer = register(&user, 5000, "/bench/claimer").await?;
    let sender = setup.user(n - 1)?;
    let lat = claim_latencies(&sender, &claimer, "claimer", 1000).await?;
    figures.claim_p50 = percentile(&lat, 0.5);
    figures.claim_p99 = percentile(&lat, 0.99);
    Ok(figures)
}
