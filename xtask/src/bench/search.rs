//! `cargo xtask bench search` (issue 14): `GET /v1/search` (what `search_messages` and
//! `peers search` call) p50/p95 over 10,000 / 100,000 / 1,000,000 messages, and sends/s at
//! concurrency 64 with the full-text index kept versus not.
//!
//! The history is seeded in bulk through the store crate (`peers-broker preload-bodies`,
//! hidden: one transaction per 50,000 messages, indexed for search in that transaction), not
//! sent through the API: sending a million messages would take longer than the
//! rest of the bench. The bodies are 8–30 words drawn from a 50,000-word Zipf vocabulary (a
//! few dozen everyday words at the top, made-up words below), deterministic per size, so the
//! bench knows how many messages each query matches. The queries: a rare word (nearest 5
//! messages), a common word (nearest 2,000), a two-word phrase that starts with it, the
//! common word with a `project` filter, and the common word as a peer sees it (the
//! visibility rules of `search_messages`: its own mail and its topics).
//!
//! "FTS off" is the same broker on a database whose indexing is turned off (`peers-broker
//! drop-search-index`, hidden, bench-only: every message counts as indexed), so its writer
//! never indexes. "FTS on" pays for indexing as it now happens: not in a send's commit, in
//! the writer's batches shortly after (issue 16).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use peers_core::BrokerClient;
use peers_core::wire::SearchQuery;

use super::{
    Broker, Cores, Plan, Senders, bench_peer, load, load_average, machine, ms, percentile, senders,
};

/// The p95 a search over 1,000,000 messages is held to, in ms.
const TARGET_P95_MS: f64 = 5.0;
/// What the full-text index may cost sends at concurrency 64.
const TARGET_FTS_COST: f64 = 0.20;
/// Authors of the seeded history (sender `i % 16` to `(i + 1) % 16`).
const AUTHORS: usize = 16;
/// The seed of the bodies (the same history for a size in every run).
const SEED: u64 = 0x5eed;

pub struct Run {
    pub sizes: Vec<u64>,
    pub rounds: usize,
    pub seconds: u64,
}

pub async fn run(bin: &Path, r: &Run) -> Result<()> {
    println!("peers-broker {} on {}", peers_core::VERSION, machine());
    println!(
        "SQLite store, release build; {} searches per query through `GET /v1/search` \
         (keep-alive, one at a time, limit 20); history seeded in bulk through the store \
         crate (`peers-broker preload-bodies`), indexed for search in its transaction",
        r.rounds
    );
    let corpus = Corpus::new();
    println!();
    println!("| messages | query | matching | p50 | p95 | p95 / 5 ms | load |");
    println!("|---|---|---|---|---|---|---|");
    for &size in &r.sizes {
        search_size(bin, &corpus, size, r.rounds).await?;
    }

    println!();
    println!(
        "Sends at concurrency 64 (lean generator, 64 senders to 16 inboxes, {} s per run, \
         runs alternated), FTS on versus off:",
        r.seconds
    );
    println!();
    println!("| run | FTS | sends/s | p50 | p99 | load |");
    println!("|---|---|---|---|---|---|");
    let (mut on, mut off) = (vec![], vec![]);
    for run in 1..=2 {
        for fts in [true, false] {
            let rate = send_rate(bin, &corpus, fts, r.seconds, run).await?;
            (if fts { &mut on } else { &mut off }).push(rate);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let cost = 1.0 - mean(&on) / mean(&off);
    println!();
    println!(
        "FTS costs {:.1} % of the sends/s at concurrency 64 (mean of the runs: {:.0}/s on, \
         {:.0}/s off); target under {:.0} %: {} (ratio to the target {:.2})",
        cost * 100.0,
        mean(&on),
        mean(&off),
        TARGET_FTS_COST * 100.0,
        if cost < TARGET_FTS_COST {
            "met"
        } else {
            "missed"
        },
        cost / TARGET_FTS_COST
    );
    Ok(())
}

/// Seeds `size` messages on a fresh broker and times each query.
async fn search_size(bin: &Path, corpus: &Corpus, size: u64, rounds: usize) -> Result<()> {
    // The authors send no heartbeats: keep them alive for the whole run.
    let b = Broker::spawn_with(bin, &[("PEERS_REMOTE_ALIVE_SECS", "86400")]);
    b.wait_healthy().await?;
    let user = b.user()?;
    let mut authors = vec![];
    for i in 0..AUTHORS as u32 {
        authors.push(
            user.register(&bench_peer(200_000 + i, &format!("/bench/author{i}")))
                .await?,
        );
    }

    // Pass 1: which word is rare, which common. Pass 2 (while seeding): the phrase and the
    // filtered counts.
    let mut df = vec![0u64; corpus.words.len()];
    corpus.each(size, |_, words| {
        let mut seen = words.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for w in seen {
            df[w] += 1;
        }
    });
    let nearest = |target: u64| {
        (0..df.len())
            .filter(|&w| df[w] > 0)
            .min_by_key(|&w| df[w].abs_diff(target))
            .unwrap_or(0)
    };
    let rare = nearest(5);
    let common = nearest(2_000.min(size / 5));

    let peers: Vec<String> = authors
        .iter()
        .map(|a| format!("{}={}", a.peer_id, a.address))
        .collect();
    let db = b.state_dir().join("peers.db");
    let mut child = std::process::Command::new(bin)
        .arg("preload-bodies")
        .arg("--db")
        .arg(&db)
        .args(&peers)
        .stdin(Stdio::piped())
        .spawn()
        .context("start peers-broker preload-bodies")?;
    let mut stdin = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
    let (mut followers, mut in_project, mut for_author0) = (HashMap::new(), 0u64, 0u64);
    let t = Instant::now();
    let mut line = String::new();
    let mut failed = None;
    corpus.each(size, |i, words| {
        if words.contains(&common) {
            if i % 8 == 3 {
                in_project += 1;
            }
            if i % AUTHORS == 0 || (i + 1) % AUTHORS == 0 {
                for_author0 += 1;
            }
        }
        for pair in words.windows(2) {
            if pair[0] == common {
                *followers.entry(pair[1]).or_insert(0u64) += 1;
            }
        }
        line.clear();
        for (k, &w) in words.iter().enumerate() {
            if k > 0 {
                line.push(' ');
            }
            line.push_str(&corpus.words[w]);
        }
        line.push('\n');
        if failed.is_none()
            && let Err(e) = stdin.write_all(line.as_bytes())
        {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e).context("feeding peers-broker preload-bodies");
    }
    let pipe = stdin
        .into_inner()
        .map_err(|e| e.into_error())
        .context("feeding peers-broker preload-bodies")?;
    drop(pipe);
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "peers-broker preload-bodies: {status}");
    let seeded = t.elapsed();
    let (next, phrase_n) = followers
        .into_iter()
        .max_by_key(|&(w, n)| (n, std::cmp::Reverse(w)))
        .unwrap_or((rare, 0));
    println!(
        "| {size} | (seeded in {:.1} s: {:.0} messages/s) | | | | | {} |",
        seeded.as_secs_f64(),
        size as f64 / seeded.as_secs_f64(),
        load_average()
    );

    let word = |w: usize| corpus.words[w].clone();
    let phrase = format!("\"{} {}\"", word(common), word(next));
    let q = |text: String| SearchQuery {
        q: text,
        ..Default::default()
    };
    let peer = user.with_auth(Some(authors[0].token.clone()));
    let cases = [
        (
            format!("rare word `{}`", word(rare)),
            &user,
            q(word(rare)),
            df[rare],
        ),
        (
            format!("common word `{}`", word(common)),
            &user,
            q(word(common)),
            df[common],
        ),
        (
            format!("phrase `{phrase}`"),
            &user,
            q(phrase.clone()),
            phrase_n,
        ),
        (
            "common word, `project = proj3`".to_string(),
            &user,
            SearchQuery {
                project: Some("proj3".into()),
                ..q(word(common))
            },
            in_project,
        ),
        (
            "common word as a peer (its own mail)".to_string(),
            &peer,
            q(word(common)),
            for_author0,
        ),
    ];
    for (what, client, query, matching) in cases {
        let lat = time_search(client, &query, rounds).await?;
        let p95 = percentile(&lat, 0.95);
        println!(
            "| {size} | {what} | {matching} | {} | {} | {:.2} | {} |",
            ms(percentile(&lat, 0.5)),
            ms(p95),
            p95.as_secs_f64() * 1e3 / TARGET_P95_MS,
            load_average()
        );
    }
    b.stop();
    Ok(())
}

/// `rounds` searches for `query` (after 5 to warm up), sorted.
async fn time_search(
    client: &BrokerClient,
    query: &SearchQuery,
    rounds: usize,
) -> Result<Vec<Duration>> {
    for _ in 0..5 {
        client.search(query).await?;
    }
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let found = client.search(query).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(!found.hits.is_empty(), "{:?} found nothing", query.q);
    }
    lat.sort();
    Ok(lat)
}

/// Sends/s at concurrency 64 on a fresh broker, with or without the FTS index.
async fn send_rate(bin: &Path, corpus: &Corpus, fts: bool, seconds: u64, run: u32) -> Result<f64> {
    let b = Broker::spawn(bin);
    b.wait_healthy().await?;
    if !fts {
        let status = tokio::process::Command::new(bin)
            .arg("drop-search-index")
            .arg("--db")
            .arg(b.state_dir().join("peers.db"))
            .status()
            .await?;
        anyhow::ensure!(status.success(), "peers-broker drop-search-index: {status}");
    }
    let mut bodies = vec![];
    corpus.each(64, |_, words| {
        bodies.push(
            words
                .iter()
                .map(|&w| corpus.words[w].as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    let Senders { addr, sends, .. } = senders(&b, |i| bodies[i].clone()).await?;
    let plan = Plan {
        seconds,
        history: 0,
        threads: 1,
        cores: Cores::split(true),
        sends_only: true,
    };
    if !plan.cores.broker.is_empty() {
        load::pin_process(b.pid(), &plan.cores.broker)?;
    }
    let sent = plan.generate(addr, sends, 200).await?;
    println!(
        "| {run} | {} | {:.0}/s | {} | {} | {} |",
        if fts { "on" } else { "off" },
        sent.rate,
        ms(sent.percentile(0.5)),
        ms(sent.percentile(0.99)),
        load_average()
    );
    b.stop();
    Ok(sent.rate)
}

/// The bench's vocabulary: word `r` has Zipf weight `1 / (r + 1)`.
struct Corpus {
    words: Vec<String>,
    /// Cumulative weights, normalised to end at 1.
    cumulative: Vec<f64>,
}

/// The top of the vocabulary: everyday words of agents' mail.
const EVERYDAY: [&str; 40] = [
    "the", "to", "and", "a", "of", "in", "is", "it", "for", "that", "on", "i", "this", "with",
    "you", "be", "we", "can", "now", "done", "test", "tests", "build", "fix", "api", "error",
    "please", "check", "branch", "merge", "review", "deploy", "file", "change", "run", "main",
    "ready", "failed", "pass", "next",
];
/// Made-up words below the top: syllables of a base-16 number.
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "ha", "je", "bo",
];
const VOCABULARY: usize = 50_000;

impl Corpus {
    fn new() -> Corpus {
        let mut words: Vec<String> = EVERYDAY.iter().map(|w| w.to_string()).collect();
        for r in words.len()..VOCABULARY {
            // At least two syllables, so no made-up word is one of the everyday ones.
            let mut n = r + 16;
            let mut w = String::new();
            while n > 0 {
                w.insert_str(0, SYLLABLES[n % 16]);
                n /= 16;
            }
            words.push(w);
        }
        let mut total = 0.0;
        let mut cumulative: Vec<f64> = (0..VOCABULARY)
            .map(|r| {
                total += 1.0 / (r as f64 + 1.0);
                total
            })
            .collect();
        for c in &mut cumulative {
            *c /= total;
        }
        Corpus { words, cumulative }
    }

    /// Calls `f(i, words)` for messages `0..n` (the same words for the same `i` every run).
    fn each(&self, n: u64, mut f: impl FnMut(usize, &[usize])) {
        let mut rng = SplitMix(SEED);
        let mut words = Vec::with_capacity(30);
        for i in 0..n as usize {
            words.clear();
            let len = 8 + rng.next() % 23;
            for _ in 0..len {
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                words.push(
                    self.cumulative
                        .partition_point(|&c| c < u)
                        .min(VOCABULARY - 1),
                );
            }
            f(i, &words);
        }
    }
}

/// splitmix64: a small deterministic generator (the bench needs no better randomness).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
