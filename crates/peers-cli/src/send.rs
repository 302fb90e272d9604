//! `peers send`: mail to a session, as the human; with `--wait`, until it is delivered.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use peers_core::BrokerClient;
use peers_core::address::Recipient;
use peers_core::wire::{
    ErrorCode, ListPeersQuery, MessageState, MessageStatus, PeerInfo, Scope, SendRequest,
    SendResponse,
};

use crate::context::{self, Ctx, Exit, JsonArg, POLL, ago, duration};
use crate::terminal;

#[derive(Args)]
#[command(mut_arg("json", |a| a.help("Print JSON instead of text (with --wait: the final message status)")))]
pub struct SendArgs {
    /// The recipient: a peer name, name@host, or peer id (see `peers peers`); `#topic` for
    /// every subscriber of a topic (see `peers topics`); or `*` for every running session in
    /// `--scope`. Quote `#…` and `*` in the shell.
    pub to: String,
    /// The message text; `-` reads it from stdin.
    pub message: String,
    /// The id of the message this one answers.
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<i64>,
    /// With `*`: who the broadcast reaches — `all` (the default: every running session) or
    /// `machine` (the sessions on the broker's machine).
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<Scope>,
    /// A tag to find the message by later (`peers log --tag`); repeat for more (at most 8,
    /// each of a-z 0-9 - _ . :).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Wait until the message is delivered into the recipient's context (for a post: every
    /// reader's).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (e.g. 30s, 5m). Default: wait until Ctrl-C.
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    #[command(flatten)]
    pub output: JsonArg,
}

/// What a queued message to a running session that no waiter can wake waits for.
pub const NO_WAKE: &str = "no idle waiter is armed for that session, so the mail reaches it at \
                       its next prompt, tool call or end of turn";

pub fn run(a: SendArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let message = if a.message == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        a.message.clone()
    };
    if message.trim().is_empty() {
        bail!("the message is empty: write the text to send");
    }
    let timeout = context::parse_optional_duration(a.timeout.as_deref())?;
    let client = ctx.user()?;
    let recipient = Recipient::parse(&a.to).map_err(|e| anyhow!(e))?;
    if a.scope.is_some() && recipient != Recipient::Broadcast {
        bail!("--scope is for a broadcast: send to '*' with --scope, or leave --scope out");
    }
    let req = SendRequest {
        tags: a.tags.clone(),
        to: a.to.trim().to_string(),
        message,
        reply_to: a.reply_to,
        scope: a.scope,
    };
    let sent = ctx
        .rt
        .block_on(client.send(&req))
        .map_err(|e| match e.code() {
            Some(ErrorCode::UnknownPeer) if matches!(recipient, Recipient::Peer(_)) => {
                unknown_recipient(&ctx, &client, &req.to)
            }
            _ => ctx.explain(e),
        })?;
    if !a.wait {
        if a.output.json {
            return context::print_json(&sent);
        }
        if let Some(channel) = &sent.channel {
            println!("{}", posted_line(&sent, channel));
            return Ok(());
        }
        println!(
            "sent #{} to {} ({}{})",
            sent.message_id,
            sent.to,
            sent.status.as_str(),
            if !sent.recipient_alive {
                format!(
                    "; that session is not running, the mail waits for its next session \
                     (last seen {})",
                    ago(sent.recipient_last_seen_ms)
                )
            } else if sent.status == MessageState::Queued && !sent.recipient_can_wake {
                format!("; {NO_WAKE}")
            } else {
                String::new()
            }
        );
        return Ok(());
    }
    if !a.output.json {
        println!(
            "sent #{} to {}; waiting for delivery (Ctrl-C stops waiting, the mail stays queued)…",
            sent.message_id, sent.to
        );
    }
    let id = sent.message_id;
    let started = Instant::now();
    let outcome = ctx.rt.block_on(async {
        tokio::select! {
            r = wait_delivered(&client, id, timeout, started) => Some(r),
            _ = context::interrupted() => None,
        }
    });
    match outcome {
        Some(Ok(st)) => {
            if a.output.json {
                context::print_json(&st)?;
            } else {
                print_status_line(&st);
            }
            if st.status == MessageState::Delivered {
                Ok(())
            } else if st.status == MessageState::Expired {
                Err(Exit(1).into())
            } else {
                if !a.output.json {
                    eprintln!(
                        "not delivered after {}; it stays queued (`peers show {id}` looks again)",
                        duration(started.elapsed().as_millis() as i64)
                    );
                }
                Err(Exit(1).into())
            }
        }
        Some(Err(e)) => Err(ctx.explain(e)),
        None => {
            eprintln!("stopped waiting; #{id} stays queued (`peers show {id}` looks again)");
            Err(Exit(130).into())
        }
    }
}

/// What `peers send` says about a topic post or a broadcast: who got a copy.
fn posted_line(sent: &SendResponse, channel: &str) -> String {
    let channel = terminal::safe_line(channel);
    if sent.readers.is_empty() {
        return format!(
            "posted #{} to {channel}; nobody is subscribed yet, so no session got a copy (`peers \
             topic {}` shows it)",
            sent.message_id,
            channel.trim_start_matches('#')
        );
    }
    let names: Vec<String> = sent
        .readers
        .iter()
        .map(|r| terminal::safe_line(&r.to))
        .collect();
    let waking = sent.readers.iter().filter(|r| r.can_wake).count();
    format!(
        "posted #{} to {channel}: {} reader(s) got a copy ({}); {waking} can be woken by it",
        sent.message_id,
        names.len(),
        names.join(", ")
    )
}

/// The error for a recipient no peer answers to: the closest names (edit distance) among
/// the sessions that accept mail, running or ended.
fn unknown_recipient(ctx: &Ctx, client: &BrokerClient, to: &str) -> anyhow::Error {
    let q = ListPeersQuery {
        scope: Scope::All,
        include_gone: true,
        ..Default::default()
    };
    let mut peers = match ctx.rt.block_on(client.list_peers(&q)) {
        Ok(l) => l.peers,
        Err(e) => return ctx.explain(e),
    };
    // One entry per address, the running session first.
    peers.sort_by_key(|p| !p.alive);
    let mut seen = std::collections::HashSet::new();
    peers.retain(|p| seen.insert(p.address.clone()));
    let to_show = terminal::safe_line(to);
    if peers.is_empty() {
        return anyhow!(
            "no peer named {to_show:?}; nothing was sent. No session is registered, running or \
             ended (sessions appear once Claude Code starts with peers installed: `peers \
             install`, then `peers doctor`)"
        );
    }
    let near = closest(to, &peers);
    let describe = |p: &PeerInfo| {
        format!(
            "{} ({})",
            terminal::safe_line(&p.address),
            if p.alive {
                "running"
            } else {
                "session ended; mail waits for its next session"
            }
        )
    };
    if let Some(best) = near.first() {
        let list: Vec<String> = near.iter().map(|p| describe(p)).collect();
        anyhow!(
            "no peer named {to_show:?}; nothing was sent. Did you mean {}?\nSend again with that \
             name, e.g. `peers send {} …` (`peers peers --all` lists every session)",
            list.join(" or "),
            terminal::safe_line(&best.address)
        )
    } else {
        let mut list: Vec<String> = peers.iter().take(10).map(describe).collect();
        if peers.len() > 10 {
            list.push(format!("… and {} more", peers.len() - 10));
        }
        anyhow!(
            "no peer named {to_show:?}; nothing was sent. Sessions that take mail: {}\n\
             (`peers peers --all` lists them)",
            list.join(", ")
        )
    }
}

/// Up to three peers whose name or address is within a few edits of `to`, closest first,
/// running ones before ended ones at the same distance; one entry per address.
fn closest<'a>(to: &str, peers: &'a [PeerInfo]) -> Vec<&'a PeerInfo> {
    let want = to.trim().to_lowercase();
    let want_name = want.split('@').next().unwrap_or(&want).to_string();
    let limit = (want_name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, bool, &PeerInfo)> = peers
        .iter()
        .map(|p| {
            let name = p.name.to_lowercase();
            let d = strsim::damerau_levenshtein(&want_name, &name).min(
                strsim::damerau_levenshtein(&want, &p.address.to_lowercase()),
            );
            (d, !p.alive, p)
        })
        .filter(|(d, _, _)| *d <= limit)
        .collect();
    scored.sort_by(|a, b| (a.0, a.1, &a.2.address).cmp(&(b.0, b.1, &b.2.address)));
    let mut out: Vec<&PeerInfo> = Vec::new();
    for (_, _, p) in scored {
        if !out.iter().any(|o| o.address == p.address) {
            out.push(p);
        }
        if out.len() == 3 {
            break;
        }
    }
    out
}

/// Polls the message until delivered or expired, or until `timeout` (then returns the last
/// status seen).
async fn wait_delivered(
    client: &BrokerClient,
    id: i64,
    timeout: Option<Duration>,
    started: Instant,
) -> Result<MessageStatus, peers_core::ClientError> {
    loop {
        let st = client.message_status(id).await?;
        if st.status != MessageState::Queued || timeout.is_some_and(|t| started.elapsed() >= t) {
            return Ok(st);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_status_line(st: &MessageStatus) {
    match st.status {
        MessageState::Delivered => println!(
            "#{} delivered to {} via {} after {}",
            st.message_id,
            st.to,
            st.delivered_via.as_deref().unwrap_or("?"),
            duration(st.delivered_at_ms.unwrap_or(st.sent_at_ms) - st.sent_at_ms)
        ),
        MessageState::Expired => println!(
            "#{} to {} expired undelivered (sent {})",
            st.message_id,
            st.to,
            ago(st.sent_at_ms)
        ),
        _ => println!(
            "#{} to {} is queued (sent {}){}",
            st.message_id,
            st.to,
            ago(st.sent_at_ms),
            if st.recipient_alive {
                ""
            } else {
                "; that session is not running"
            }
        ),
    }
}
