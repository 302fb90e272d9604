//! `peers broker start | stop | status | logs`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use peers_core::Config;
use peers_core::local_broker::{self, StartError, Up};
use peers_core::wire::Health;
use serde_json::json;

use clap::Subcommand;

use crate::context::{self, Ctx, Exit, JsonArg};

/// How long `start` waits for a new broker to answer, and `stop` for it to go.
const WAIT: Duration = Duration::from_secs(15);

#[derive(Subcommand)]
pub enum BrokerCommand {
    /// Start the local broker in the background and wait until it answers.
    Start,
    /// Ask the local broker to shut down (through its API) and wait until it is gone.
    Stop,
    /// Whether the broker answers, its version, pid and uptime.
    Status(JsonArg),
    /// Print the broker's log file.
    Logs {
        /// Keep printing what is appended, until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
    },
}

pub fn run(cmd: BrokerCommand) -> Result<()> {
    let ctx = Ctx::load()?;
    match cmd {
        BrokerCommand::Start => {
            let (h, started) = start(&ctx)?;
            if started {
                println!(
                    "started peers-broker {} (pid {}) at {}; logs: {}",
                    h.version,
                    h.pid,
                    ctx.url(),
                    log_file(&ctx.cfg).display()
                );
            } else {
                println!(
                    "peers-broker {} is already running (pid {}) at {}",
                    h.version,
                    h.pid,
                    ctx.url()
                );
            }
            Ok(())
        }
        BrokerCommand::Stop => stop(&ctx),
        BrokerCommand::Status(a) => status(&ctx, a.json),
        BrokerCommand::Logs { follow, lines } => logs(&ctx, follow, lines),
    }
}

fn refuse_remote(cfg: &Config, what: &str) -> Result<()> {
    if cfg.is_remote() {
        bail!(
            "the broker is a remote hub ({}, set as `broker_url(s)` in {} or PEERS_BROKER_URL(S)): \
             `peers broker {what}` only manages a local broker; {what} the hub on its own machine",
            cfg.broker_urls().join(", "),
            cfg.config_file.display()
        );
    }
    Ok(())
}

pub fn log_file(cfg: &Config) -> PathBuf {
    cfg.logs_dir().join("broker.log")
}

/// Starts the local broker unless one answers; returns its health and whether it was started
/// now.
pub fn start(ctx: &Ctx) -> Result<(Health, bool)> {
    refuse_remote(&ctx.cfg, "start")?;
    let up = ctx
        .rt
        .block_on(local_broker::ensure_running(&ctx.cfg, &ctx.anon(), WAIT));
    match up {
        Ok(Up::Already(h)) => Ok((h, false)),
        Ok(Up::Started { health, .. }) => Ok((health, true)),
        Err(e @ StartError::NoBinary { .. }) => {
            bail!("{e}: install peers with `cargo xtask install`")
        }
        Err(e) => Err(e.into()),
    }
}

fn stop(ctx: &Ctx) -> Result<()> {
    refuse_remote(&ctx.cfg, "stop")?;
    let anon = ctx.anon();
    let Ok(h) = ctx.rt.block_on(anon.health()) else {
        println!("no peers broker is running at {}", ctx.url());
        return Ok(());
    };
    let user = ctx.user()?;
    ctx.rt
        .block_on(user.shutdown())
        .map_err(|e| ctx.explain(e))?;
    let deadline = Instant::now() + WAIT;
    while ctx.rt.block_on(anon.health()).is_ok() {
        if Instant::now() >= deadline {
            bail!(
                "asked peers-broker (pid {}) to shut down, but it still answers after {} s; \
                 see {}",
                h.pid,
                WAIT.as_secs(),
                log_file(&ctx.cfg).display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("stopped peers-broker (pid {}) at {}", h.pid, ctx.url());
    Ok(())
}

fn status(ctx: &Ctx, as_json: bool) -> Result<()> {
    match ctx.rt.block_on(ctx.anon().health()) {
        Ok(h) => {
            if as_json {
                context::print_json(&json!({
                    "running": true,
                    "url": ctx.url(),
                    "remote": ctx.cfg.is_remote(),
                    "health": h,
                }))?;
            } else {
                println!(
                    "peers-broker {} is running at {}{}\n  pid {} on {}, up {}\n  {} live \
                     session(s), {} message(s) not delivered yet",
                    h.version,
                    ctx.url(),
                    if ctx.cfg.is_remote() { " (hub)" } else { "" },
                    h.pid,
                    h.host,
                    context::duration(h.uptime_ms as i64),
                    h.peers_alive,
                    h.queued
                );
            }
            Ok(())
        }
        Err(_) => {
            if as_json {
                context::print_json(&json!({
                    "running": false,
                    "url": ctx.url(),
                    "remote": ctx.cfg.is_remote(),
                }))?;
            } else {
                eprintln!("{}", context::not_running(&ctx.cfg));
            }
            Err(Exit(1).into())
        }
    }
}

fn logs(ctx: &Ctx, follow: bool, lines: Option<usize>) -> Result<()> {
    if ctx.cfg.is_remote() {
        bail!(
            "the broker is a remote hub ({}): its log is on the hub machine",
            ctx.cfg.broker_urls().join(", ")
        );
    }
    let path = log_file(&ctx.cfg);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no broker log at {} yet: the broker has not run with this state dir (start it \
             with `peers broker start`)",
            path.display()
        ),
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
    };
    let mut text = Vec::new();
    f.read_to_end(&mut text)?;
    let mut offset = text.len() as u64;
    let shown: &[u8] = match lines {
        Some(n) => tail_lines(&text, n),
        None => &text,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(shown)?;
    out.flush()?;
    drop(out);
    if !follow {
        return Ok(());
    }
    ctx.rt.block_on(async {
        loop {
            tokio::select! {
                _ = context::interrupted() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len < offset {
                // Truncated or replaced: start over.
                offset = 0;
                f = std::fs::File::open(&path)?;
            }
            if len > offset {
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                offset += buf.len() as u64;
                let mut out = std::io::stdout().lock();
                out.write_all(&buf)?;
                out.flush()?;
            }
        }
    })
}

fn tail_lines(text: &[u8], n: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut count = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            count += 1;
            if count == n {
                return &text[i + 1..];
            }
        }
    }
    if n == 0 { &text[text.len()..] } else { text }
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_lines() {
        let t = b"a\nb\nc\n";
        assert_eq!(super::tail_lines(t, 2), b"b\nc\n");
        assert_eq!(super::tail_lines(t, 5), t);
        assert_eq!(super::tail_lines(t, 0), b"");
    }
}
