//! `cargo xtask bench broker`: the broker's figures on this machine, each printed beside its
//! target. The load generator ([`load`]) runs on the same machine as the broker (on a core of
//! its own when there are two or more), and each throughput figure is printed beside what the
//! generator does against a trivial server in the same run, so a figure near that ceiling
//! says "generator-bound". Record them in `docs/BENCHMARKS.md`.

mod load;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
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
        /// Load generator threads (each a current-thread runtime).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Do not pin the generator to the last core and the broker to the others.
        #[arg(long)]
        no_pin: bool,
        /// Only the send-throughput runs (skip start-up, RSS and claim latency).
        #[arg(long)]
        sends_only: bool,
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
    /// Topic fan-out: a post to 10, 100 and 500 subscribers; send and first-claim p50/p99
    /// beside one fsync.
    Topics {
        /// Posts per topic size.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// Search (issue 14): `GET /v1/search` p50/p95 over 10,000 / 100,000 / 1,000,000 seeded
    /// messages, and sends/s at concurrency 64 with the full-text index on versus off.
    Search {
        /// Smoke run: 1,000 and 10,000 messages, 50 searches per query, 1 s send runs.
        #[arg(long)]
        quick: bool,
        /// Searches per query.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Seconds per send-throughput run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// The hook as a whole process on the common no-mail event (and the others), beside a
    /// bare process spawn in the same run; the front as `cargo xtask install` installs it.
    Hook {
        /// Runs per case.
        #[arg(long, default_value_t = 300)]
        runs: usize,
    },
    /// Context per message: the characters of wrapping the renderer adds around peer mail
    /// (batches of 1 and 5, per further message), the SessionStart intro.
    Context,
}

pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Context => {
            context();
            return Ok(());
        }
        Which::Hook { runs } => return hook(runs),
        _ => {}
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
        Which::Broker {
            seconds,
            history,
            threads,
            no_pin,
            sends_only,
        } => {
            let (bin, rt) = release_broker()?;
            let plan = Plan {
                seconds,
                history,
                threads,
                cores: Cores::split(!no_pin),
                sends_only,
            };
            rt.block_on(broker(&bin, &plan))
        }
        Which::Stores { seconds } => {
            let (bin, rt) = release_broker()?;
            rt.block_on(stores::run(&bin, seconds))
        }
        Which::Topics { rounds } => {
            let (bin, rt) = release_broker()?;
            rt.block_on(topics::run(&bin, rounds))
        }
        Which::Search {
            quick,
            rounds,
            seconds,
        } => {
            let (bin, rt) = release_broker()?;
            let run = if quick {
                search::Run {
                    sizes: vec![1_000, 10_000],
                    rounds: 50,
                    seconds: 1,
                }
            } else {
                search::Run {
                    sizes: vec![10_000, 100_000, 1_000_000],
                    rounds,
                    seconds,
                }
            };
            rt.block_on(search::run(&bin, &run))
        }
        Which::Context | Which::Hook { .. } => unreachable!("handled above"),
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

/// `cargo xtask bench hook`: release broker and hooks, the front linked as installed, then
/// the hook's bench test (`crates/deliver-hook/tests/bench.rs`), which spawns them; the test
/// itself can be a debug build, it only times processes.
fn hook(runs: usize) -> Result<()> {
    crate::run_cmd(crate::cargo_cmd().args([
        "build",
        "--release",
        "-p",
        "peers-broker",
        "-p",
        "deliver-hook",
        "--bins",
    ]))?;
    let release = crate::target_dir().join("release");
    let front =
        crate::static_front::build("release")?.unwrap_or_else(|| release.join("peers-deliver"));
    println!("machine: {}", machine());
    crate::run_cmd(
        crate::cargo_cmd()
            .args([
                "test",
                "-p",
                "deliver-hook",
                "--test",
                "deliver-hook",
                "bench::",
            ])
            .args(["--", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("PEERS_DELIVER_BENCH_BIN", &front)
            .env("PEERS_BROKER_BENCH_BIN", release.join("peers-broker"))
            .env("PEERS_BENCH_N", runs.to_string()),
    )
}

/// Builds the release broker; its path and a multi-threaded runtime for the bench.
fn release_broker() -> Result<(std::path::PathBuf, tokio::runtime::Runtime)> {
    crate::run_cmd(crate::cargo_cmd().args(["build", "--release", "-p", "peers-broker"]))?;
    let bin = crate::target_dir().join("release/peers-broker");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok((bin, rt))
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

mod search;
mod stores;
mod topics;

/// A broker (the build `bin`) in a throw-away test environment, killed on drop.
struct Broker {
    env: TestEnv,
    process: BrokerProcess,
}

impl Broker {
    fn spawn(bin: &Path) -> Broker {
        Self::spawn_with(bin, &[])
    }

    /// Like [`Broker::spawn`], with `vars` set in the broker's environment.
    fn spawn_with(bin: &Path, vars: &[(&str, &str)]) -> Broker {
        let mut env = TestEnv::new();
        env.set("PEERS_LOG", "warn");
        for (k, v) in vars {
            env.set(k, *v);
        }
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

/// Registers a simulated peer; returns its token.
async fn register_token(user: &BrokerClient, i: u32, cwd: &str) -> Result<String> {
    // Peers from a "remote" machine id: alive by heartbeat, no process needed.
    Ok(user.register(&bench_peer(100_000 + i, cwd)).await?.token)
}

async fn register(user: &BrokerClient, i: u32, cwd: &str) -> Result<BrokerClient> {
    Ok(user.with_auth(Some(register_token(user, i, cwd).await?)))
}

/// A simulated peer of the bench's one "remote" machine.
fn bench_peer(claude_pid: u32, cwd: &str) -> RegisterRequest {
    RegisterRequest {
        host: "bench".into(),
        ..peer::remote("bench-machine", claude_pid, cwd)
    }
}

/// How the broker bench runs.
struct Plan {
    seconds: u64,
    history: u64,
    threads: usize,
    cores: Cores,
    sends_only: bool,
}

impl Plan {
    /// Runs the load generator (off the async runtime) with one connection per request.
    async fn generate(
        &self,
        addr: SocketAddr,
        requests: Vec<Arc<[u8]>>,
        expect: u16,
    ) -> Result<load::Outcome> {
        let (threads, cpus, dur) = (
            self.threads,
            self.cores.generator.clone(),
            Duration::from_secs(self.seconds),
        );
        tokio::task::spawn_blocking(move || {
            load::run(
                addr,
                &requests,
                expect,
                threads,
                &cpus,
                Duration::from_millis(300),
                dur,
            )
        })
        .await?
    }
}

/// Which cores the broker and the load generator get; both empty: not pinned.
struct Cores {
    broker: Vec<usize>,
    generator: Vec<usize>,
}

impl Cores {
    /// With `pin` and two or more cores: the generator on the last, the broker on the rest.
    fn split(pin: bool) -> Cores {
        let cpus = load::allowed_cpus();
        match cpus.split_last() {
            Some((last, rest)) if pin && !rest.is_empty() => Cores {
                broker: rest.to_vec(),
                generator: vec![*last],
            },
            _ => Cores {
                broker: vec![],
                generator: vec![],
            },
        }
    }

    fn describe(&self) -> String {
        if self.generator.is_empty() {
            "not pinned (generator and broker share every core)".into()
        } else {
            format!(
                "broker pinned to CPU {:?}, generator (and wrk) to CPU {:?}",
                self.broker, self.generator
            )
        }
    }
}

/// The send load of the benches: 64 registered senders and 16 inboxes (`inbox0`…`inbox15`).
struct Senders {
    /// The broker's address.
    addr: SocketAddr,
    tokens: Vec<String>,
    /// One `POST /v1/messages` per sender, sender `i` to inbox `i % 16`.
    sends: Vec<Arc<[u8]>>,
}

/// Registers the senders and inboxes of [`Senders`] on `b`; sender `i` sends `body(i)`.
async fn senders(b: &Broker, body: impl Fn(usize) -> String) -> Result<Senders> {
    let user = b.user()?;
    let mut tokens = vec![];
    for i in 0..64 {
        tokens.push(register_token(&user, i, &format!("/bench/sender{i}")).await?);
    }
    for i in 0..16 {
        register(&user, 1000 + i, &format!("/bench/inbox{i}")).await?;
    }
    let addr: SocketAddr = b
        .process
        .url
        .trim_start_matches("http://")
        .parse()
        .context("the broker's address")?;
    let mut sends: Vec<Arc<[u8]>> = vec![];
    for (i, t) in tokens.iter().enumerate() {
        let req = serde_json::to_vec(&send_req(format!("inbox{}", i % 16), body(i)))?;
        sends.push(load::request("POST", "/v1/messages", Some(t), Some(&req)).into());
    }
    Ok(Senders {
        addr,
        tokens,
        sends,
    })
}

/// The load average (1, 5, 15 min) from `/proc/loadavg`, printed beside the figures.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The body every simulated sender sends.
const SEND_BODY: &str = "benchmark message of a typical short length, about a line";

async fn broker(bin: &Path, plan: &Plan) -> Result<()> {
    println!("peers-broker {} on {}", peers_core::VERSION, machine());
    println!("{}", plan.cores.describe());
    println!(
        "load generator: {} thread(s), one keep-alive connection per sender, requests \
         serialised once; its ceiling is the same generator against a trivial HTTP server \
         (fixed 200, own thread, on the broker's cores) in the same run",
        plan.threads
    );
    println!();
    println!("| measure | figure | target | |");
    println!("|---|---|---|---|");

    if !plan.sends_only {
        // Start-up: spawn to first healthy answer, median of 10 cold starts on fresh state
        // dirs.
        let mut starts = vec![];
        for _ in 0..10 {
            let b = Broker::spawn(bin);
            starts.push(b.wait_healthy().await?);
            b.stop();
        }
        starts.sort();
        let start_p50 = percentile(&starts, 0.5);
        row_within("start to first healthy response (p50 of 10)", start_p50, 20);
    }

    let b = Broker::spawn(bin);
    b.wait_healthy().await?;
    if !plan.cores.broker.is_empty() {
        load::pin_process(b.pid(), &plan.cores.broker)?;
    }
    if !plan.sends_only {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = b.rss_kib()?;
        row(
            "idle RSS",
            format!("{:.1} MiB", idle as f64 / 1024.0),
            "< 15 MiB",
            idle < 15 * 1024,
        );
    }

    // Sends/s: 64 senders, 16 recipients; each 200 is a committed (fsynced) message.
    let Senders {
        addr,
        tokens,
        sends,
    } = senders(&b, |_| SEND_BODY.to_string()).await?;
    let user = b.user()?;
    let send_body = |i: usize| serde_json::to_vec(&send_req(format!("inbox{}", i % 16), SEND_BODY));
    // The broker's HTTP floor: a 404 from the router's fallback (no auth, no database).
    let floor_req: Arc<[u8]> = load::request("GET", "/v1/none", None, None).into();
    let trivial = load::Trivial::start(&plan.cores.broker)?;
    let wrk = Wrk::find(&plan.cores.generator);

    let fsync = fsync_cost(b.state_dir())?;
    let floor = 1.0 / fsync.as_secs_f64();
    row(
        "write + fdatasync of 8 bytes in the state dir (mean of 1 s)",
        format!("{} → 1 / fsync = {floor:.0}/s", ms(fsync)),
        "—",
        true,
    );
    for conc in [1usize, 8, 64] {
        let ceiling = plan
            .generate(trivial.addr, vec![floor_req.clone(); conc], 200)
            .await?;
        let cpu_before = cpu_time(b.pid())?;
        let threads_before = ThreadCpu::read(b.pid())?;
        let sent = plan.generate(addr, sends[..conc].to_vec(), 200).await?;
        let cpu = cpu_time(b.pid())? - cpu_before;
        let threads = ThreadCpu::read(b.pid())?.since(&threads_before);
        let http = plan
            .generate(addr, vec![floor_req.clone(); conc], 404)
            .await?;
        let target = if conc == 64 { "10,000/s" } else { "—" };
        row(
            &format!("sends/s at concurrency {conc} (durable)"),
            format!(
                "{:.0}/s (p50 {}, p99 {})",
                sent.rate,
                ms(sent.percentile(0.5)),
                ms(sent.percentile(0.99))
            ),
            target,
            conc != 64 || sent.rate >= 10_000.0,
        );
        row(
            &format!("— generator ceiling at {conc} (trivial server)"),
            format!(
                "{:.0}/s (p50 {}); the sends are {:.0} % of it",
                ceiling.rate,
                ms(ceiling.percentile(0.5)),
                sent.rate / ceiling.rate * 100.0
            ),
            "—",
            true,
        );
        row(
            &format!("— broker's HTTP floor at {conc} (`GET /v1/none`: 404, no database)"),
            format!("{:.0}/s (p50 {})", http.rate, ms(http.percentile(0.5))),
            "—",
            true,
        );
        if let Some(w) = &wrk {
            let url = format!("http://{addr}/v1/messages");
            match w.run(&url, &tokens[0], &send_body(0)?, conc, plan.seconds) {
                Ok((rate, p99)) => row(
                    &format!("— wrk, same sends at {conc}"),
                    format!(
                        "{rate:.0}/s (p99 {p99}); the generator did {:.2}× wrk",
                        sent.rate / rate
                    ),
                    "—",
                    true,
                ),
                Err(e) => println!("wrk at {conc} failed: {e:#}"),
            }
        }
        if conc == 1 {
            row(
                "sends/s at concurrency 1 ÷ (1 / fsync)",
                format!("{:.2}", sent.rate / floor),
                "≥ 1",
                sent.rate >= floor,
            );
            // A lone sender waits for its request's round trip and for the fsync behind it,
            // one after the other: no server does better than the two together. With the
            // trivial server's round trip, that is the bound for any HTTP server here; with
            // the broker's own 404, for this broker's HTTP stack.
            for (what, round_trip) in [
                (
                    "any HTTP server: 1 / (trivial server's round trip + fsync)",
                    ceiling.rate,
                ),
                ("this broker's HTTP: 1 / (HTTP floor + fsync)", http.rate),
            ] {
                let bound = 1.0 / (1.0 / round_trip + fsync.as_secs_f64());
                row(
                    &format!("— the most one request and one fsync allow, {what}"),
                    format!(
                        "{bound:.0}/s (÷ 1 / fsync = {:.2}); the sends are {:.0} % of it",
                        bound / floor,
                        sent.rate / bound * 100.0
                    ),
                    "—",
                    true,
                );
            }
        }
        row(
            &format!("broker CPU per send at concurrency {conc}"),
            format!(
                "{:.0} µs ({})",
                cpu.as_secs_f64() * 1e6 / sent.total as f64,
                threads.per(sent.total)
            ),
            "—",
            true,
        );
    }
    if wrk.is_none() {
        println!("(wrk is not on PATH: no wrk figures)");
    }
    drop(trivial);
    if plan.sends_only {
        b.stop();
        return Ok(());
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

    // Claim latency with 1,000 peers and a big delivered history. The preloaded history is
    // dated 1970 (the retention tests prune it): a broker that kept its default retention
    // would spend the run deleting it, 20,000 rows per writer job, and this row would time
    // claims queued behind that prune instead of a claim beside a big history.
    let b = Broker::spawn_with(bin, &[("PEERS_RETAIN_DAYS", "0")]);
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
    preload_history(bin, &db, &peer_ids, plan.history).await?;
    eprintln!(
        "preloaded {} delivered messages in {:?}",
        plan.history,
        t.elapsed()
    );
    let claimer = register(&user, 9999, "/bench/p0").await?; // a 1001st peer, p0's dir
    let name = claimer.heartbeat().await?.name;
    let lat = claim_latencies(&user, &claimer, &name, 1000).await?;
    let p50 = percentile(&lat, 0.5);
    row_within(
        &format!(
            "claim p50, 1,000 peers, {} delivered in history",
            plan.history
        ),
        p50,
        1,
    );
    row(
        &format!(
            "claim p99, 1,000 peers, {} delivered in history",
            plan.history
        ),
        ms(percentile(&lat, 0.99)),
        "—",
        true,
    );
    b.stop();
    Ok(())
}

/// `n` times: `sender` sends one message to `to`, then `claimer` claims it (timed) and acks
/// it. The claims' durations, sorted.
async fn claim_latencies(
    sender: &BrokerClient,
    claimer: &BrokerClient,
    to: &str,
    n: usize,
) -> Result<Vec<Duration>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        sender.send(&send_req(to, format!("m{i}"))).await?;
        let t = Instant::now();
        let c = claimer.claim(&ClaimRequest::default()).await?;
        lat.push(t.elapsed());
        claimer
            .ack(&ack_req(c.lease_id.context("nothing claimed")?, "bench"))
            .await?;
    }
    lat.sort();
    Ok(lat)
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = peers_core::process::stat(pid).context("no /proc stat")?;
    let hz = peers_core::process::clock_ticks_per_sec();
    Ok(Duration::from_nanos(
        (stat.utime + stat.stime) * 1_000_000_000 / hz,
    ))
}

/// CPU time by thread name (user, system), from `/proc/<pid>/task/*/stat`: where a send's
/// CPU goes, the async runtime's threads (HTTP, handlers, the writer task) or SQLite's.
struct ThreadCpu(std::collections::BTreeMap<String, (u64, u64)>);

impl ThreadCpu {
    fn read(pid: u32) -> Result<ThreadCpu> {
        let mut by_name = std::collections::BTreeMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
                continue; // the thread ended
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close].to_string();
            // After the name: state is field 3, utime 14 and stime 15.
            let f: Vec<&str> = stat[close + 2..].split(' ').collect();
            let (user, sys) = (f[11].parse::<u64>()?, f[12].parse::<u64>()?);
            let e = by_name.entry(name).or_insert((0, 0));
            e.0 += user;
            e.1 += sys;
        }
        Ok(ThreadCpu(by_name))
    }

    fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        let mut d = self.0.clone();
        for (name, (u, s)) in d.iter_mut() {
            if let Some((u0, s0)) = before.0.get(name) {
                *u = u.saturating_sub(*u0);
                *s = s.saturating_sub(*s0);
            }
        }
        ThreadCpu(d)
    }

    /// "peers-writer 90+60 µs, tokio-rt-worker 80+120 µs": user+system per send, by name.
    fn per(&self, sends: u64) -> String {
        let hz = peers_core::process::clock_ticks_per_sec() as f64;
        let us = |ticks: u64| ticks as f64 / hz * 1e6 / sends.max(1) as f64;
        self.0
            .iter()
            .filter(|(_, (u, s))| u + s > 0)
            .map(|(name, (u, s))| format!("{name} {:.0}+{:.0} µs", us(*u), us(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The mean cost of one durable write on the state dir's filesystem: 8 bytes written and
/// `fdatasync`ed (what SQLite's WAL commit with `synchronous=FULL` waits for), looped for 1 s.
fn fsync_cost(dir: &Path) -> Result<Duration> {
    use std::io::Write;
    let path = dir.join("bench-fsync.probe");
    let mut f = std::fs::File::create(&path)?;
    let (t, mut n) = (Instant::now(), 0u32);
    while t.elapsed() < Duration::from_secs(1) {
        f.write_all(b"fsync!\n\0")?;
        f.sync_data()?;
        n += 1;
    }
    let mean = t.elapsed() / n;
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(mean)
}

/// `wrk` on PATH, for a second opinion on the send figures (run pinned to the generator's
/// cores with `taskset` when both are there).
struct Wrk {
    cpus: Vec<usize>,
}

impl Wrk {
    fn find(cpus: &[usize]) -> Option<Wrk> {
        let on_path = |tool: &str| {
            std::process::Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        on_path("wrk").then(|| Wrk {
            cpus: if on_path("taskset") {
                cpus.to_vec()
            } else {
                vec![]
            },
        })
    }

    /// POSTs `body` to `url` with `token` on `conc` connections for `seconds` (one wrk
    /// thread); returns requests/s and wrk's p99 as it prints it.
    fn run(
        &self,
        url: &str,
        token: &str,
        body: &[u8],
        conc: usize,
        seconds: u64,
    ) -> Result<(f64, String)> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("send.lua");
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = [[{}]]\n\
                 wrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n",
                std::str::from_utf8(body)?
            ),
        )?;
        let mut cmd = if self.cpus.is_empty() {
            std::process::Command::new("wrk")
        } else {
            let list: Vec<String> = self.cpus.iter().map(|c| c.to_string()).collect();
            let mut c = std::process::Command::new("taskset");
            c.args(["-c", &list.join(","), "wrk"]);
            c
        };
        let out = cmd
            .args([
                "-t1",
                &format!("-c{conc}"),
                &format!("-d{seconds}s"),
                "--latency",
                "-s",
            ])
            .arg(&script)
            .arg(url)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("wrk: {}{}", text, String::from_utf8_lossy(&out.stderr));
        }
        if let Some(l) = text.lines().find(|l| l.contains("Non-2xx")) {
            bail!("wrk saw errors: {}", l.trim());
        }
        let rate = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no Requests/sec in wrk's output")?;
        let p99 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("99%"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        Ok((rate, p99))
    }
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
