//! `peers status`: the broker, the sessions with mail waiting, and recent notices.

use anyhow::Result;
use clap::Args;
use peers_core::wire::{ListPeersQuery, PeerInfo, Scope};
use serde_json::json;

use crate::context::{self, Ctx, Exit, JsonArg, ago, duration};
use crate::terminal;

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub output: JsonArg,
}

/// The exit code of `peers status` when no broker answers (as `systemctl status` for a
/// stopped unit): 0 running, 3 not running, 1 any other failure.
pub const STATUS_NOT_RUNNING: u8 = 3;

pub fn run(a: StatusArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    // With several brokers, each one is asked on its own and listed.
    let probes = if ctx.cfg.broker_urls().len() > 1 {
        context::probe_brokers(&ctx.cfg, &ctx.rt)
    } else {
        Vec::new()
    };
    let brokers_json: Vec<serde_json::Value> = probes
        .iter()
        .map(|p| match &p.health {
            Ok(h) => json!({"url": p.url, "answers": true, "pid": h.pid, "version": h.version}),
            Err(e) => json!({"url": p.url, "answers": false, "error": e.to_string()}),
        })
        .collect();
    let print_brokers = || {
        if probes.is_empty() {
            return;
        }
        println!("brokers (tried in this order, failing over):");
        for p in &probes {
            match &p.health {
                Ok(h) => println!(
                    "  {}  answers (pid {}, up {})",
                    p.url,
                    h.pid,
                    duration(h.uptime_ms as i64)
                ),
                Err(e) => println!("  {}  does not answer: {e}", p.url),
            }
        }
    };
    let health = match ctx.rt.block_on(ctx.anon().health()) {
        Ok(h) => h,
        Err(_) => {
            // Not an error of this command: it says what is going on, and exits 3 (as
            // `systemctl status` does for a stopped unit) so scripts can tell.
            let how = context::how_to_start(&ctx.cfg);
            if a.output.json {
                context::print_json(&json!({
                    "running": false,
                    "url": ctx.url(),
                    "brokers": brokers_json,
                    "how_to_start": how,
                }))?;
            } else {
                println!(
                    "broker: not running at {}{}",
                    ctx.cfg.broker_urls().join(", "),
                    if ctx.cfg.is_remote() {
                        " (the hub does not answer)"
                    } else {
                        ""
                    }
                );
                println!("  {how}");
                print_brokers();
            }
            return Err(Exit(STATUS_NOT_RUNNING).into());
        }
    };
    let client = ctx.user()?;
    let (peers, notices) = ctx.rt.block_on(async {
        let q = ListPeersQuery {
            scope: Scope::All,
            include_gone: true,
            ..Default::default()
        };
        tokio::join!(client.list_peers(&q), client.notices())
    });
    let peers = peers.map_err(|e| ctx.explain(e))?.peers;
    let notices = notices.map_err(|e| ctx.explain(e))?.notices;
    let waiting: Vec<&PeerInfo> = peers.iter().filter(|p| p.queued > 0).collect();
    let live = peers.iter().filter(|p| p.alive).count();
    if a.output.json {
        return context::print_json(&json!({
            "running": true,
            "url": ctx.url(),
            "broker": health,
            "brokers": brokers_json,
            "peers_alive": live,
            "waiting": waiting,
            "notices": notices,
        }));
    }
    println!(
        "broker: peers-broker {} at {} (pid {}, up {})",
        health.version,
        ctx.url(),
        health.pid,
        duration(health.uptime_ms as i64)
    );
    print_brokers();
    println!(
        "sessions: {live} live{}",
        if live == 0 {
            " (start Claude Code with peers installed)"
        } else {
            ""
        }
    );
    if waiting.is_empty() {
        println!("mail waiting: none");
    } else {
        println!("mail waiting:");
        for p in &waiting {
            println!(
                "  {:<24} {} message(s){}",
                p.address,
                p.queued,
                if p.alive {
                    ""
                } else {
                    " (session ended; waits for its next session)"
                }
            );
        }
        println!("  (`peers inbox` lists them)");
    }
    if !notices.is_empty() {
        println!("notices:");
        for n in notices.iter().take(10) {
            let author = if n.author.trim().is_empty() {
                "broker"
            } else {
                n.author.as_str()
            };
            println!(
                "  {}  [{}] {}",
                ago(n.at_ms),
                terminal::safe_line(author),
                terminal::safe_line(&n.text)
            );
        }
    }
    Ok(())
}
