//! `cargo xtask bench broker`: the broker's figures on this machine, each printed beside its
//! target. The load generator runs on the same machine (and cores) as the broker, so the
//! figures are a floor, not a ceiling. Record them in `docs/BENCHMARKS.md`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use peers_core::BrokerClient;
use peers_core::wire::*;
use peers_testkit::requests::{ack_req, send_req};
use peers_testkit::{BrokerProcess, TestEnv, peer};

#[derive(clap::Subcommand)]
pub enum Which {
    /// The broker: sends/s, claim+ack latency, idle RSS, start-up time, claim with a big history.
    Broker {
        /// Seconds per send-throughput run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Delivered messages preloaded into history for the claim-latency run.
        #[arg(long, default_value_t = 1_000_000)]
        history: u64,
    },
    /// Hub mode: simulated peers in network namespaces heartbeating and mailing each other
    /// through one hub; lost, duplicates, delivery latency, hub CPU and RSS. Needs root.
    Hub {
        /// Simulated peers in all.
        #[arg(long, default_value_t = 200)]
        peers: u32,
        /// Client namespaces ("machines") the peers are spread over.
        #[arg(long, default_value_t = 4)]
        machines: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Mean seconds between two sends of one peer.
        #[arg(long, default_value_t = 2.0)]
        send_every: f64,
    },
    /// Store backends side by side: SQLite, PostgreSQL behind one broker, PostgreSQL behind
    /// two; sends/s at concurrency 1/8/64 and claim latency. Starts its own PostgreSQL.
    Stores {
        /// Seconds per send-throughput run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Context per message: the characters of wrapping the renderer adds around peer mail
    /// (batches of 1 and 5, per further message), the SessionStart intro.
    Context,
}

pub fn run(which: Which) -> Result<()> {
    if let Which::Context = which {
        context();
        return Ok(());
    }
    // The load generator shares the machine with the broker: a debug build of it would eat
    // the CPU the broker needs and measure the client instead. Re-run in release.
    if cfg!(debug_assertions) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return crate::run_cmd(
            crate::cargo_cmd()
                .args(["run", "--quiet", "--release", "-p", "xtask", "--"])
                .args(args),
        );
    }
    match which {
        Which::Broker { seconds, history } => {
            crate::run_cmd(crate::cargo_cmd().args(["build", "--release", "-p", "peers-broker"]))?;
            let bin = crate::target_dir().join("release/peers-broker");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(broker(&bin, seconds, history))
        }
        Which::Stores { seconds } => {
            crate::run_cmd(crate::cargo_cmd().args(["build", "--release", "-p", "peers-broker"]))?;
            let bin = crate::target_dir().join("release/peers-broker");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(stores::run(&bin, seconds))
        }
        Which::Context => unreachable!("handled above"),
        Which::Hub {
            peers,
            machines,
            seconds,
            send_every,
        } => {
            if let Some(why) = peers_testkit::netns::Net::unavailable() {
                bail!(
                    "the hub bench runs peers in network namespaces and {why}; run it as root \
                     on Linux with iproute2 (e.g. `sudo -E cargo xtask bench hub`)"
                );
            }
            crate::run_cmd(crate::cargo_cmd().args(["build", "--release", "-p", "peers-broker"]))?;
            let bin = crate::target_dir().join("release/peers-broker");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(hub::run(
                &bin,
                peers,
                machines,
                Duration::from_secs(seconds),
                send_every,
            ))
        }
    }
}

/// The characters of wrapping per message (`peers_core::render::wrapping`: 74-byte bodies,
/// default tool names), beside the renderer before issue 16 (batch of 1 mid-turn: 766, each
/// further message: 240).
fn context() {
    use peers_core::render::{self, Occasion};
    println!("| occasion | batch of 1 | batch of 5 | per further message |");
    println!("|---|---|---|---|");
    for o in Occasion::ALL {
        let (one, five) = (
            render::wrapping(o, 1, 74, false),
            render::wrapping(o, 5, 74, false),
        );
        println!("| {o:?} | {one} | {five} | {} |", (five - one) / 4);
    }
    let tools = render::ToolNames::default();
    let intro = render::intro(render::Me {
        name: "api",
        address: "api@laptop",
        tools: &tools,
    });
    println!("\nSessionStart intro: {} characters", render::width(&intro));
}

mod stores;

/// A broker (the build `bin`) in a throw-away test environment, killed on drop.
struct Broker {
    env: TestEnv,
    process: BrokerProcess,
}

impl Broker {
    fn spawn(bin: &Path) -> Broker {
        let mut env = TestEnv::new();
        env.set("PEERS_LOG", "warn");
        let process = BrokerProcess::spawn(&env, bin, &[], Stdio::null());
        Broker { env, process }
    }

    fn state_dir(&self) -> &Path {
        &self.env.state_dir
    }

    fn user(&self) -> Result<BrokerClient> {
        let secret = self.env.secret().context("the broker created no secret")?;
        Ok(BrokerClient::new(&self.process.url, Some(secret)))
    }

    /// Spawn to first healthy answer, polled every 0.5 ms (the start-up figure).
    async fn wait_healthy(&self) -> Result<Duration> {
        let probe = BrokerClient::new(&self.process.url, None);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if probe.health().await.is_ok() {
                return Ok(t.elapsed());
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        bail!("broker not healthy after 10 s")
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }

    fn stop(mut self) {
        self.process.terminate();
    }
}

/// Resident set size of a process, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Result<u64> {
    peers_core::process::status_kib(pid, "VmRSS").context("no VmRSS")
}

/// One line about the machine, printed with the figures.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024 / 1024)
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem_gib} GiB, Linux {}",
        kernel.trim()
    )
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// A row for the duration `d` whose target is under `limit_ms`.
fn row_within(what: &str, d: Duration, limit_ms: u64) {
    let limit = Duration::from_millis(limit_ms);
    row(what, ms(d), &format!("< {limit_ms} ms"), d < limit);
}

fn row(what: &str, figure: String, target: &str, ok: bool) {
    println!(
        "| {what} | {figure} | {target} | {} |",
        if ok { "met" } else { "missed" }
    );
}

async fn register(user: &BrokerClient, i: u32, cwd: &str) -> Result<BrokerClient> {
    // Peers from a "remote" machine id: alive by heartbeat, no process needed.
    let reg = user.register(&bench_peer(100_000 + i, cwd)).await?;
    Ok(user.with_auth(Some(reg.token)))
}

/// A simulated peer of the bench's one "remote" machine.
fn bench_peer(claude_pid: u32, cwd: &str) -> RegisterRequest {
    RegisterRequest {
        host: "bench".into(),
        ..peer::remote("bench-machine", claude_pid, cwd)
    }
}

async fn broker(bin: &Path, seconds: u64, history: u64) -> Result<()> {
    println!("peers-broker {} on {}", peers_core::VERSION, machine());
    println!();
    println!("| measure | figure | target | |");
    println!("|---|---|---|---|");

    // Start-up: spawn to first healthy answer, median of 10 cold starts on fresh state dirs.
    let mut starts = vec![];
    for _ in 0..10 {
        let b = Broker::spawn(bin);
        starts.push(b.wait_healthy().await?);
        b.stop();
    }
    starts.sort();
    let start_p50 = percentile(&starts, 0.5);
    row_within("start to first healthy response (p50 of 10)", start_p50, 20);

    let b = Broker::spawn(bin);
    b.wait_healthy().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = b.rss_kib()?;
    row(
        "idle RSS",
        format!("{:.1} MiB", idle as f64 / 1024.0),
        "< 15 MiB",
        idle < 15 * 1024,
    );

    // Sends/s: 64 senders, 16 recipients; each 200 is a committed (fsynced) message.
    let user = b.user()?;
    let mut senders = vec![];
    for i in 0..64 {
        senders.push(register(&user, i, &format!("/bench/sender{i}")).await?);
    }
    for i in 0..16 {
        register(&user, 1000 + i, &format!("/bench/inbox{i}")).await?;
    }
    for conc in [1usize, 8, 64] {
        let cpu_before = cpu_time(b.pid())?;
        let (rate, sent) = send_rate(&senders[..conc], Duration::from_secs(seconds)).await?;
        let cpu = cpu_time(b.pid())? - cpu_before;
        let target = if conc == 64 { "10,000/s" } else { "—" };
        row(
            &format!("sends/s at concurrency {conc} (durable)"),
            format!("{rate:.0}/s"),
            target,
            conc != 64 || rate >= 10_000.0,
        );
        row(
            &format!("broker CPU per send at concurrency {conc}"),
            format!("{:.0} µs", cpu.as_secs_f64() * 1e6 / sent as f64),
            "—",
            true,
        );
    }

    // Claim+ack round trip on a peer with one waiting message.
    let inbox = register(&user, 5000, "/bench/claimer").await?;
    let mut rtt = vec![];
    for i in 0..2000 {
        user.send(&send_req("claimer", format!("m{i}"))).await?;
        let t = Instant::now();
        let c = inbox.claim(&ClaimRequest::default()).await?;
        inbox
            .ack(&ack_req(c.lease_id.context("nothing claimed")?, "bench"))
            .await?;
        rtt.push(t.elapsed());
    }
    rtt.sort();
    row(
        "claim+ack round trip p50",
        ms(percentile(&rtt, 0.5)),
        "—",
        true,
    );
    let p99 = percentile(&rtt, 0.99);
    row_within("claim+ack round trip p99", p99, 5);
    let rss_loaded = b.rss_kib()?;
    row(
        "RSS after the runs above",
        format!("{:.1} MiB", rss_loaded as f64 / 1024.0),
        "—",
        true,
    );
    b.stop();

    // Claim latency with 1,000 peers and a big delivered history.
    let b = Broker::spawn(bin);
    b.wait_healthy().await?;
    let user = b.user()?;
    let mut peer_ids = vec![];
    for i in 0..1000 {
        let reg = user
            .register(&bench_peer(200_000 + i, &format!("/bench/p{i}")))
            .await?;
        peer_ids.push(reg.peer_id);
    }
    let db = b.state_dir().join("peers.db");
    let t = Instant::now();
    preload_history(bin, &db, &peer_ids, history).await?;
    eprintln!(
        "preloaded {history} delivered messages in {:?}",
        t.elapsed()
    );
    let claimer = register(&user, 9999, "/bench/p0").await?; // a 1001st peer, p0's dir
    let name = claimer.heartbeat().await?.name;
    let mut lat = vec![];
    for i in 0..1000 {
        user.send(&send_req(&name, format!("m{i}"))).await?;
        let t = Instant::now();
        let c = claimer.claim(&ClaimRequest::default()).await?;
        lat.push(t.elapsed());
        claimer
            .ack(&ack_req(c.lease_id.context("nothing claimed")?, "bench"))
            .await?;
    }
    lat.sort();
    let p50 = percentile(&lat, 0.5);
    row_within(
        &format!("claim p50, 1,000 peers, {history} delivered in history"),
        p50,
        1,
    );
    row(
        &format!("claim p99, 1,000 peers, {history} delivered in history"),
        ms(percentile(&lat, 0.99)),
        "—",
        true,
    );
    b.stop();
    Ok(())
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = peers_core::process::stat(pid).context("no /proc stat")?;
    let hz = peers_core::process::clock_ticks_per_sec();
    Ok(Duration::from_nanos(
        (stat.utime + stat.stime) * 1_000_000_000 / hz,
    ))
}

/// Runs `senders.len()` concurrent senders for `dur`; returns acknowledged sends per second
/// and the number of sends in all (warm-up included, to match CPU time measured around it).
async fn send_rate(senders: &[BrokerClient], dur: Duration) -> Result<(f64, u64)> {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![];
    for (i, s) in senders.iter().enumerate() {
        let (s, count, stop) = (s.clone(), count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let to = format!("inbox{}", (i as u64 + n) % 16);
                s.send(&send_req(
                    to,
                    "benchmark message of a typical short length, about a line",
                ))
                .await?;
                n += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // warm-up
    let before = count.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(dur).await;
    let sent = count.load(Ordering::Relaxed) - before;
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok((
        sent as f64 / elapsed.as_secs_f64(),
        count.load(Ordering::Relaxed),
    ))
}

/// Inserts `n` delivered messages spread over `peers` with the broker's hidden
/// `preload-history` tool (the SQL stays in the store; the broker keeps serving meanwhile).
async fn preload_history(broker_bin: &Path, db: &Path, peers: &[String], n: u64) -> Result<()> {
    let status = tokio::process::Command::new(broker_bin)
        .arg("preload-history")
        .arg("--db")
        .arg(db)
        .arg("--count")
        .arg(n.to_string())
        .args(peers)
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "peers-broker preload-history failed: {status}"
    );
    Ok(())
}

/// `cargo xtask bench hub`: one release hub in a network namespace, simulated peers in client
/// namespaces (one thread and runtime per namespace, so every socket is in its namespace).
/// Each peer registers with the hub token, heartbeats every 10 s, long-polls
/// `/v1/inbox/wait` and claims + acks what arrives (as `peers-deliver --wait` does), and sends
/// to a random other peer every `send_every` seconds on average.
mod hub {
    use std::collections::BTreeMap;
    use std::process::Stdio;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail};
    use peers_core::BrokerClient;
    use peers_core::client::Timeouts;
    use peers_core::wire::*;
    use peers_testkit::netns::{HUB_ADDR, Net};
    use peers_testkit::peer;
    use peers_testkit::requests::{ack_req, claim_req, send_req};

    use super::{cpu_time, machine, ms, percentile, rss_kib};

    /// What one namespace's peers saw.
    #[derive(Default)]
    struct Tally {
        /// Acknowledged sends: message id -> send start (ms since the epoch).
        sent: BTreeMap<i64, i64>,
        failed_sends: u64,
        /// Received message ids with the latency from send start to claim.
        got: Vec<(i64, Duration)>,
        heartbeats: u64,
        errors: Vec<String>,
    }

    fn peer_name(i: u32) -> String {
        format!("p{i:03}")
    }

    pub async fn run(
        bin: &std::path::Path,
        peers: u32,
        machines: u32,
        dur: Duration,
        send_every: f64,
    ) -> Result<()> {
        let net = Net::new(machines as usize).map_err(anyhow::Error::msg)?;
        let dir = tempfile::Builder::new()
            .prefix("peers-hub-bench-")
            .tempdir()?;
        let token = peers_core::paths::random_hex(32);
        let port = 7900;
        let url = format!("http://{HUB_ADDR}:{port}");
        let mut cmd = net.hub.command(bin);
        let mut hub = cmd
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("PEERS_STATE_DIR", dir.path().join("state"))
            .env("PEERS_CONFIG", dir.path().join("config.toml"))
            .env("PEERS_BIND", HUB_ADDR.to_string())
            .env("PEERS_PORT", port.to_string())
            .env("PEERS_TOKEN", &token)
            .env("PEERS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn the hub")?;
        let result = drive(&net, &hub, &url, &token, peers, machines, dur, send_every).await;
        let _ = hub.kill();
        let _ = hub.wait();
        drop(net);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive(
        net: &Net,
        hub: &std::process::Child,
        url: &str,
        token: &str,
        peers: u32,
        machines: u32,
        dur: Duration,
        send_every: f64,
    ) -> Result<()> {
        let pid = hub.id();
        // Healthy, seen from the first client namespace.
        let u = url.to_string();
        let healthy = net.clients[0]
            .run(move || async move {
                let c = BrokerClient::new(&u, None);
                for _ in 0..500 {
                    if c.health().await.is_ok() {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            })
            .await;
        if !healthy {
            bail!("the hub did not answer at {url}");
        }

        let per = peers / machines;
        let stop = Arc::new(AtomicBool::new(false));
        let registered = Arc::new(tokio::sync::Barrier::new(machines as usize + 1));
        let mut runs = vec![];
        for m in 0..machines {
            let (u, t, stop, registered) = (
                url.to_string(),
                token.to_string(),
                stop.clone(),
                registered.clone(),
            );
            let first = m * per;
            runs.push(net.clients[m as usize].run(move || async move {
                machine_load(u, t, m, first, per, peers, send_every, stop, registered).await
            }));
        }
        registered.wait().await;
        let cpu0 = cpu_time(pid)?;
        let t0 = Instant::now();
        tokio::time::sleep(dur).await;
        let cpu = cpu_time(pid)? - cpu0;
        let wall = t0.elapsed();
        let rss = rss_kib(pid)?;
        let hwm = peers_core::process::status_kib(pid, "VmHWM").unwrap_or(0);
        stop.store(true, Ordering::Relaxed);

        let mut all = Tally::default();
        for r in runs {
            let t = r.await;
            all.sent.extend(t.sent);
            all.failed_sends += t.failed_sends;
            all.got.extend(t.got);
            all.heartbeats += t.heartbeats;
            all.errors.extend(t.errors);
        }
        let mut counts: BTreeMap<i64, u32> = BTreeMap::new();
        for (id, _) in &all.got {
            *counts.entry(*id).or_default() += 1;
        }
        let lost = all
            .sent
            .keys()
            .filter(|id| !counts.contains_key(id))
            .count();
        let dups = counts.values().filter(|n| **n > 1).count();
        let mut lat: Vec<Duration> = all.got.iter().map(|(_, d)| *d).collect();
        lat.sort();

        println!("\nmachine: {}", machine());
        println!(
            "hub: release peers-broker in its own namespace at {url}; {peers} peers over \
             {machines} client namespaces; {:.0} s of load\n",
            wall.as_secs_f64()
        );
        println!("| measure | figure |");
        println!("|---|---|");
        println!(
            "| messages sent and acknowledged | {} ({:.0}/s) |",
            all.sent.len(),
            all.sent.len() as f64 / wall.as_secs_f64()
        );
        println!("| sends refused or failed | {} |", all.failed_sends);
        println!("| heartbeats | {} |", all.heartbeats);
        println!("| **messages lost** | **{lost}** (must be 0) |");
        println!("| **duplicates** | **{dups}** (must be 0) |");
        println!("| delivery latency p50 | {} |", ms(percentile(&lat, 0.5)));
        println!("| delivery latency p99 | {} |", ms(percentile(&lat, 0.99)));
        println!("| delivery latency max | {} |", ms(percentile(&lat, 1.0)));
        println!(
            "| hub CPU | {:.1} % of one core ({:.1} s in {:.0} s) |",
            cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
            cpu.as_secs_f64(),
            wall.as_secs_f64()
        );
        println!(
            "| hub RSS at the end / peak | {:.1} MiB / {:.1} MiB |",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        for e in all.errors.iter().take(5) {
            println!("error: {e}");
        }
        if lost > 0 || dups > 0 {
            bail!("{lost} messages lost, {dups} duplicated");
        }
        Ok(())
    }

    /// One namespace's peers, on its own current-thread runtime.
    #[allow(clippy::too_many_arguments)]
    async fn machine_load(
        url: String,
        token: String,
        m: u32,
        first: u32,
        per: u32,
        total: u32,
        send_every: f64,
        stop: Arc<AtomicBool>,
        registered: Arc<tokio::sync::Barrier>,
    ) -> Tally {
        let t = Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(10),
        };
        let user = BrokerClient::with_timeouts(&url, Some(token), t);
        let mut clients = vec![];
        let mut tally = Tally::default();
        for i in first..first + per {
            let r = user
                .register(&RegisterRequest {
                    host: format!("m{m}"),
                    ..peer::remote(
                        &format!("bench-machine-{m}"),
                        200_000 + i,
                        format!("/bench/{}", peer_name(i)),
                    )
                })
                .await;
            match r {
                Ok(r) => clients.push((i, user.with_auth(Some(r.token)))),
                Err(e) => tally.errors.push(format!("register: {e}")),
            }
        }
        registered.wait().await;
        let tally = Arc::new(std::sync::Mutex::new(tally));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, c) in clients {
            // Receiver: long-poll, then claim + ack (retrying the ack with the same lease).
            let (rc, tl, st) = (c.clone(), tally.clone(), stop.clone());
            tasks.spawn(async move {
                let mut idle_after_stop = 0;
                loop {
                    let w = rc
                        .wait(&WaitQuery {
                            timeout_ms: Some(2_000),
                        })
                        .await;
                    let claim = rc.claim(&claim_req(50, 30_000)).await;
                    let now = peers_core::now_ms();
                    match claim {
                        Ok(cl) if !cl.messages.is_empty() => {
                            idle_after_stop = 0;
                            {
                                let mut t = tl.lock().unwrap();
                                for msg in &cl.messages {
                                    let sent: i64 = msg
                                        .body
                                        .split_once("t=")
                                        .and_then(|(_, v)| v.parse().ok())
                                        .unwrap_or(now);
                                    let lat = Duration::from_millis((now - sent).max(0) as u64);
                                    t.got.push((msg.message_id, lat));
                                }
                            }
                            let ack = ack_req(cl.lease_id.unwrap_or_default(), "bench");
                            for _ in 0..50 {
                                if rc.ack(&ack).await.is_ok() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                        Ok(_) => {
                            if st.load(Ordering::Relaxed) {
                                idle_after_stop += 1;
                                if idle_after_stop > 3 {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            tl.lock().unwrap().errors.push(format!("claim: {e}"));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    if let Err(e) = w {
                        tl.lock().unwrap().errors.push(format!("wait: {e}"));
                    }
                }
            });
            // Sender + heartbeat.
            let (sc, tl, st) = (c, tally.clone(), stop.clone());
            tasks.spawn(async move {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (u64::from(i) << 17);
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut last_beat = Instant::now()
                    .checked_sub(Duration::from_millis(next() % 10_000))
                    .unwrap_or_else(Instant::now);
                // Spread the first sends over one period.
                let mean_ms = (send_every * 1000.0) as u64;
                tokio::time::sleep(Duration::from_millis(next() % mean_ms.max(1))).await;
                while !st.load(Ordering::Relaxed) {
                    if last_beat.elapsed() >= Duration::from_secs(10) {
                        last_beat = Instant::now();
                        match sc.heartbeat().await {
                            Ok(_) => tl.lock().unwrap().heartbeats += 1,
                            Err(e) => tl.lock().unwrap().errors.push(format!("heartbeat: {e}")),
                        }
                    }
                    let mut to = (next() % u64::from(total)) as u32;
                    if to == i {
                        to = (to + 1) % total;
                    }
                    let start = peers_core::now_ms();
                    let r = sc
                        .send(&send_req(
                            peer_name(to),
                            format!("from {} t={start}", peer_name(i)),
                        ))
                        .await;
                    match r {
                        Ok(r) => {
                            tl.lock().unwrap().sent.insert(r.message_id, start);
                        }
                        Err(e) => {
                            let mut t = tl.lock().unwrap();
                            t.failed_sends += 1;
                            t.errors.push(format!("send: {e}"));
                        }
                    }
                    // Exponential-ish gaps around the mean: uniform in [0, 2 * mean].
                    let gap = next() % (2 * mean_ms).max(1);
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Arc::try_unwrap(tally)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_default()
    }
}
