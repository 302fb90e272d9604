//! `peers-broker`: the daemon. Thin over the library: parse flags, load config, set up logs,
//! run.

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

/// Tools for the project's own benchmarks; not for users.
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Tool::PreloadHistory {
        db,
        db_url,
        count,
        peer_ids,
    }) = args.tool
    {
        let url = db_url.unwrap_or_else(|| DbUrl::Sqlite(db.unwrap_or_default()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("start the tokio runtime");
        let preload = async {
            let store = peers_broker::store::open(&url).await?;
            let done = store.preload_delivered(&peer_ids, count).await;
            store.close().await;
            done
        };
        return match rt.block_on(preload) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("peers-broker: preload-history: {e}");
                ExitCode::FAILURE
            }
        };
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
