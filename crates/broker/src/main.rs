//! `peers-broker`: the daemon. Thin over the library: parse flags, load config, set up logs,
//! run.

use peers_store::Store as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peers_broker::Started;
use peers_core::config::DbUrl;

/// The peers broker: keeps the mail queue of Claude Code sessions in its database (an SQLite
/// file by default, or PostgreSQL) and serves the /v1 HTTP API. Clients start it on demand;
/// you rarely run it by hand.
///
/// Settings come from config.toml (PEERS_CONFIG) and PEERS_* variables; flags override both.
/// Logs go to <state_dir>/logs/broker.log.
#[derive(Parser)]
#[command(name = "peers-broker", version)]
struct Args {
    /// Address to listen on (default 127.0.0.1; anything else needs a hub token).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Port to listen on (default 7900).
    #[arg(long)]
    port: Option<u16>,
    /// SQLite database file (default <state_dir>/peers.db).
    #[arg(long, conflicts_with = "db_url")]
    db: Option<PathBuf>,
    /// The database as a URL: sqlite:///path/peers.db or postgres://user:password@host/db
    /// (default: db_url in config.toml, PEERS_DB_URL, else the SQLite file).
    #[arg(long, value_parser = DbUrl::parse)]
    db_url: Option<DbUrl>,
    #[command(subcommand)]
    tool: Option<Tool>,
}

/// Tools for the project's own benchmarks; not for users. Each works on an SQLite file
/// through the store crate (the broker may be serving it meanwhile: WAL).
#[derive(clap::Subcommand)]
enum Tool {
    /// Fill the database with COUNT delivered messages spread over PEER_IDS, sent at the
    /// start of 1970 (`cargo xtask bench broker`; the retention tests' old mail).
    #[command(hide = true)]
    PreloadHistory {
        /// An SQLite file.
        #[arg(long, conflicts_with = "db_url", required_unless_present = "db_url")]
        db: Option<PathBuf>,
        /// Or any database, as a URL (`--db-url postgres://…`).
        #[arg(long, value_parser = DbUrl::parse)]
        db_url: Option<DbUrl>,
        #[arg(long)]
        count: u64,
        peer_ids: Vec<String>,
    },
    /// Fill DB with one delivered message per line of stdin, between PEERS (`id=address`)
    /// round-robin (`cargo xtask bench search`).
    #[command(hide = true)]
    PreloadBodies {
        #[arg(long)]
        db: PathBuf,
        peers: Vec<String>,
    },
    /// Stop keeping DB's full-text index (`cargo xtask bench search`, "FTS off"). Bench-only.
    #[command(hide = true)]
    DropSearchIndex {
        #[arg(long)]
        db: PathBuf,
    },
}

/// Runs a bench tool on its own runtime.
fn run_tool(tool: Tool) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let work = async {
        match tool {
            // Any backend: the retention tests preload PostgreSQL too.
            Tool::PreloadHistory {
                db,
                db_url,
                count,
                peer_ids,
            } => {
                let url = db_url.unwrap_or_else(|| DbUrl::Sqlite(db.unwrap_or_default()));
                let store = peers_broker::store::open(&url).await?;
                let done = store.preload_delivered(&peer_ids, count).await;
                store.close().await;
                done
            }
            Tool::PreloadBodies { db, peers } => {
                let store = peers_store_sqlite::SqliteStore::open(&db).await?;
                let done = preload_bodies(&store, &peers).await;
                store.close().await;
                done
            }
            Tool::DropSearchIndex { db } => {
                let store = peers_store_sqlite::SqliteStore::open(&db).await?;
                let done = store.drop_search_index().await;
                store.close().await;
                done
            }
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers-broker: bench tool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Stdin's lines as message bodies, 50,000 to a transaction, sent from an hour ago on, a
/// millisecond apart.
async fn preload_bodies(
    store: &peers_store_sqlite::SqliteStore,
    peers: &[String],
) -> peers_store::Result<()> {
    use std::io::BufRead;
    let peers: Vec<(String, String)> = peers
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(id, address)| (id.to_string(), address.to_string()))
        .collect();
    let mut lines = std::io::stdin().lock().lines();
    let mut sent_ms = peers_core::now_ms() - 3_600_000;
    loop {
        let batch: Vec<String> = lines.by_ref().take(50_000).map_while(Result::ok).collect();
        if batch.is_empty() {
            return Ok(());
        }
        store.preload_bodies(&peers, &batch, sent_ms).await?;
        sent_ms += batch.len() as i64;
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(tool) = args.tool {
        return run_tool(tool);
    }
    let mut config = match peers_core::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peers-broker: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(b) = args.bind {
        config.bind = b;
    }
    if let Some(p) = args.port {
        config.port = p;
    }
    if let Some(d) = args.db {
        config.db_url = DbUrl::Sqlite(d.clone());
        config.db = d;
    }
    if let Some(u) = args.db_url {
        if let DbUrl::Sqlite(d) = &u {
            config.db = d.clone();
        }
        config.db_url = u;
    }
    let _log_guard = init_logging(&config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    match rt.block_on(peers_broker::run(config)) {
        Ok(Started::Served) => ExitCode::SUCCESS,
        Ok(Started::AlreadyRunning { pid, url }) => {
            eprintln!("peers-broker: already running for this state dir (pid {pid}) at {url}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("peers-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to `<state_dir>/logs/broker.log`; the filter comes from `PEERS_LOG` (default `info`).
fn init_logging(
    config: &peers_core::Config,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    let dir = config.logs_dir();
    peers_core::paths::ensure_private_dir(&dir).ok()?;
    let appender = tracing_appender::rolling::never(&dir, "broker.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("PEERS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .init();
    Some(guard)
}
