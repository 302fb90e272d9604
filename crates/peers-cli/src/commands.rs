//! The mail commands: send, peers, status, inbox, log, tail, show.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use peers_core::wire::{
    ErrorCode, HistoryQuery, ListPeersQuery, MessageState, MessageStatus, PeerInfo, Scope,
    SendRequest,
};
use peers_core::{BrokerClient, identity, now_ms};
use serde_json::json;

use crate::context::{self, Ctx, Exit};
use crate::terminal;
use crate::{JsonArg, LogArgs, PeersArgs, ScopeArg, SendArgs, ShowArgs, TailArgs};

/// The exit code of `peers status` when no broker answers (as `systemctl status` for a
/// stopped unit): 0 running, 3 not running, 1 any other failure.
pub const STATUS_NOT_RUNNING: u8 = 3;

/// What a queued message to a running session that no waiter can wake waits for.
const NO_WAKE: &str = "no idle waiter is armed for that session, so the mail reaches it at \
                       its next prompt, tool call or end of turn";

/// How often `send --wait` and `tail` poll the broker.
const POLL: Duration = Duration::from_millis(500);

pub fn send(a: SendArgs) -> Result<()> {
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
    let timeout = a
        .timeout
        .as_deref()
        .map(context::parse_duration)
        .transpose()?;
    let client = ctx.user()?;
    let req = SendRequest {
        to: a.to.trim().to_string(),
        message,
        reply_to: a.reply_to,
    };
    let sent = ctx
        .rt
        .block_on(client.send(&req))
        .map_err(|e| match e.code() {
            Some(ErrorCode::UnknownPeer) => unknown_recipient(&ctx, &client, &req.to),
            _ => ctx.explain(e),
        })?;
    if !a.wait {
        if a.json {
            return context::print_json(&sent);
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
                    context::ago(sent.recipient_last_seen_ms)
                )
            } else if sent.status == MessageState::Queued && !sent.recipient_can_wake {
                format!("; {NO_WAKE}")
            } else {
                String::new()
            }
        );
        return Ok(());
    }
    if !a.json {
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
            if a.json {
                context::print_json(&st)?;
            } else {
                print_status_line(&st);
            }
            if st.status == MessageState::Delivered {
                Ok(())
            } else if st.status == MessageState::Expired {
                Err(Exit(1).into())
            } else {
                if !a.json {
                    eprintln!(
                        "not delivered after {}; it stays queued (`peers show {id}` looks again)",
                        context::human_duration(started.elapsed().as_millis() as i64)
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
            context::human_duration(st.delivered_at_ms.unwrap_or(st.sent_at_ms) - st.sent_at_ms)
        ),
        MessageState::Expired => println!(
            "#{} to {} expired undelivered (sent {})",
            st.message_id,
            st.to,
            context::ago(st.sent_at_ms)
        ),
        _ => println!(
            "#{} to {} is queued (sent {}){}",
            st.message_id,
            st.to,
            context::ago(st.sent_at_ms),
            if st.recipient_alive {
                ""
            } else {
                "; that session is not running"
            }
        ),
    }
}

fn list_query(ctx: &Ctx, scope: Scope, include_gone: bool) -> ListPeersQuery {
    let cwd = std::env::current_dir().ok();
    ListPeersQuery {
        scope,
        include_gone,
        machine_id: identity::machine_id(&ctx.cfg.state_dir).ok(),
        git_root: cwd
            .as_deref()
            .and_then(identity::git_root)
            .map(|p| p.display().to_string()),
        cwd: cwd.map(|p| p.display().to_string()),
    }
}

pub fn peers(a: PeersArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let scope = match a.scope {
        ScopeArg::Machine => Scope::Machine,
        ScopeArg::Directory => Scope::Directory,
        ScopeArg::Repo => Scope::Repo,
        ScopeArg::All => Scope::All,
    };
    let list = ctx
        .rt
        .block_on(client.list_peers(&list_query(&ctx, scope, a.all)))
        .map_err(|e| ctx.explain(e))?;
    if a.json {
        return context::print_json(&list);
    }
    if list.peers.is_empty() {
        println!(
            "no sessions{} (they appear once Claude Code starts with peers installed: \
             `peers install`, then `peers doctor`)",
            if a.all { "" } else { " running" }
        );
        return Ok(());
    }
    print_peers(&list.peers);
    Ok(())
}

fn print_peers(peers: &[PeerInfo]) {
    let w = peers
        .iter()
        .map(|p| p.address.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:<12}  {:<5}  {:>4}  {:<10}  WHERE",
        "NAME", "ID", "STATE", "MAIL", "SEEN"
    );
    for p in peers {
        let mut where_ = p.cwd.clone();
        if let Some(b) = &p.git_branch {
            where_.push_str(&format!(" ({b})"));
        }
        println!(
            "{:<w$}  {:<12}  {:<5}  {:>4}  {:<10}  {}",
            p.address,
            p.peer_id,
            if p.alive { "live" } else { "gone" },
            p.queued,
            context::ago(p.last_seen_ms),
            where_
        );
        if let Some(s) = p.summary.as_deref().filter(|s| !s.is_empty()) {
            println!("{:<w$}  {}", "", one_line(&terminal::safe_line(s), 100));
        }
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    } else {
        s
    }
}

pub fn status(a: JsonArg) -> Result<()> {
    let ctx = Ctx::load()?;
    let health = match ctx.rt.block_on(ctx.anon().health()) {
        Ok(h) => h,
        Err(_) => {
            // Not an error of this command: it says what is going on, and exits 3 (as
            // `systemctl status` does for a stopped unit) so scripts can tell.
            let how = context::how_to_start(&ctx.cfg);
            if a.json {
                context::print_json(&json!({
                    "running": false,
                    "url": ctx.url(),
                    "how_to_start": how,
                }))?;
            } else {
                println!(
                    "broker: not running at {}{}",
                    ctx.url(),
                    if ctx.cfg.is_remote() {
                        " (the hub does not answer)"
                    } else {
                        ""
                    }
                );
                println!("  {how}");
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
    if a.json {
        return context::print_json(&json!({
            "running": true,
            "url": ctx.url(),
            "broker": health,
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
        context::human_duration(health.uptime_ms as i64)
    );
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
                context::ago(n.at_ms),
                terminal::safe_line(author),
                terminal::safe_line(&n.text)
            );
        }
    }
    Ok(())
}

pub fn log(a: LogArgs, inbox: bool) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let since_ms = a
        .since
        .as_deref()
        .map(context::parse_duration)
        .transpose()?
        .map(|d| now_ms() - d.as_millis() as i64);
    // The inbox is the log filtered to undelivered mail: ask for more, then filter.
    let q = HistoryQuery {
        limit: Some(if inbox { 10_000 } else { a.limit.max(1) }),
        since_ms,
        from: a.from.clone(),
        to: a.to.clone(),
        body: a.body,
    };
    let mut log = ctx
        .rt
        .block_on(client.messages(&q))
        .map_err(|e| ctx.explain(e))?;
    if inbox {
        log.messages.retain(|m| m.status == MessageState::Queued);
        log.messages.truncate(a.limit.max(1) as usize);
    }
    if a.json {
        return context::print_json(&log);
    }
    if log.messages.is_empty() {
        println!(
            "{}",
            if inbox {
                "no mail waiting: every message was delivered"
            } else {
                "no messages"
            }
        );
        return Ok(());
    }
    for m in &log.messages {
        println!("{}", log_line(m));
        if let Some(b) = m.body.as_deref().filter(|_| a.body) {
            println!("{}", terminal::indented(b, "       "));
        }
    }
    Ok(())
}

/// Where a message is, for the human: `delivered via Stop after 1.2s`, `queued (session
/// ended)`, …
fn state_text(m: &MessageStatus) -> String {
    match m.status {
        MessageState::Delivered => format!(
            "delivered via {} after {}",
            m.delivered_via.as_deref().unwrap_or("?"),
            context::human_duration(m.delivered_at_ms.unwrap_or(m.sent_at_ms) - m.sent_at_ms)
        ),
        MessageState::Queued if !m.recipient_alive => "queued (session ended)".into(),
        s => s.as_str().to_string(),
    }
}

fn log_line(m: &MessageStatus) -> String {
    let mut line = format!(
        "#{:<5} {:<10} {} -> {}  {}  ({} B",
        m.message_id,
        context::ago(m.sent_at_ms),
        terminal::safe_line(&m.from),
        terminal::safe_line(&m.to),
        state_text(m),
        m.bytes
    );
    if let Some(r) = m.reply_to {
        line.push_str(&format!(", reply to #{r}"));
    }
    if !m.replies.is_empty() {
        let r: Vec<String> = m.replies.iter().map(|r| format!("#{r}")).collect();
        line.push_str(&format!(", replies {}", r.join(" ")));
    }
    line.push(')');
    line
}

/// At most this many messages of a thread are fetched for `peers show`.
const THREAD_MAX: usize = 200;

pub fn show(a: ShowArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let id: i64 = a.id.trim().trim_start_matches('#').parse().map_err(|_| {
        anyhow!(
            "{:?} is not a message id (a number, as `peers log` shows)",
            a.id
        )
    })?;
    let client = ctx.user()?;
    let st = ctx
        .rt
        .block_on(client.message_with_body(id))
        .map_err(|e| match e.code() {
            Some(peers_core::wire::ErrorCode::NotFound) => {
                anyhow!("no message #{id}: `peers log` lists the messages")
            }
            _ => ctx.explain(e),
        })?;
    let thread = ctx
        .rt
        .block_on(thread_of(&client, &st))
        .map_err(|e| ctx.explain(e))?;
    if a.json {
        let mut v = serde_json::to_value(&st)?;
        let mut list = Vec::with_capacity(thread.len());
        for (depth, m) in &thread {
            let mut one = serde_json::to_value(m)?;
            one["depth"] = json!(depth);
            list.push(one);
        }
        v["thread"] = json!(list);
        return context::print_json(&v);
    }
    println!("message #{}", st.message_id);
    println!(
        "  from:      {}{}",
        terminal::safe_line(&st.from),
        if st.from_kind == peers_core::wire::SenderKind::Human {
            " (you)"
        } else {
            ""
        }
    );
    println!(
        "  to:        {} (peer {}, {})",
        terminal::safe_line(&st.to),
        st.to_peer_id,
        if st.recipient_alive {
            "running"
        } else {
            "session ended"
        }
    );
    println!(
        "  sent:      {} ({})",
        peers_core::format_ms(st.sent_at_ms),
        context::ago(st.sent_at_ms)
    );
    println!("  status:    {}", st.status.as_str());
    if let Some(at) = st.delivered_at_ms {
        println!(
            "  delivered: {} via {} ({} after sending)",
            peers_core::format_ms(at),
            st.delivered_via.as_deref().unwrap_or("?"),
            context::human_duration(at - st.sent_at_ms)
        );
    } else if st.status != MessageState::Delivered {
        println!("  expires:   {}", peers_core::format_ms(st.expires_at_ms));
        if st.status == MessageState::Queued && st.recipient_alive {
            println!(
                "  wake:      {}",
                if st.recipient_can_wake {
                    "the session is idle-wakeable: the mail wakes it"
                } else {
                    NO_WAKE
                }
            );
        }
    }
    println!("  size:      {} bytes", st.bytes);
    if let Some(r) = st.reply_to {
        println!("  reply to:  #{r}");
    }
    if !st.replies.is_empty() {
        let r: Vec<String> = st.replies.iter().map(|r| format!("#{r}")).collect();
        println!("  replies:   {}", r.join(", "));
    }
    if let Some(b) = &st.body {
        println!("  text:");
        println!("{}", terminal::indented(b, "    "));
    }
    if thread.len() > 1 {
        println!();
        println!("thread ({} messages, oldest first):", thread.len());
        for (depth, m) in &thread {
            let mark = if m.message_id == st.message_id {
                "▶"
            } else {
                " "
            };
            let pad = "  ".repeat(*depth);
            println!(
                "{mark} {pad}#{} {} {} -> {}  {}",
                m.message_id,
                peers_core::format_ms(m.sent_at_ms),
                terminal::safe_line(&m.from),
                terminal::safe_line(&m.to),
                state_text(m)
            );
            if let Some(b) = &m.body {
                println!("{}", terminal::indented(b, &format!("  {pad}    ")));
            }
        }
    }
    Ok(())
}

/// The thread `st` belongs to: from the root it answers (following `reply_to` up) through
/// every reply, depth first in the order sent, each with its depth. At most [`THREAD_MAX`]
/// messages; a message that cannot be read is left out.
async fn thread_of(
    client: &BrokerClient,
    st: &MessageStatus,
) -> Result<Vec<(usize, MessageStatus)>, peers_core::ClientError> {
    let mut seen = std::collections::HashSet::from([st.message_id]);
    let mut root = st.clone();
    while let Some(parent) = root.reply_to {
        if !seen.insert(parent) || seen.len() > THREAD_MAX {
            break;
        }
        match client.message_with_body(parent).await {
            Ok(p) => root = p,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => break,
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![(0usize, root)];
    while let Some((depth, m)) = stack.pop() {
        for r in m.replies.iter().rev() {
            if out.len() + stack.len() >= THREAD_MAX {
                break;
            }
            let reply = if *r == st.message_id {
                st.clone()
            } else {
                match client.message_with_body(*r).await {
                    Ok(x) => x,
                    Err(e) if e.code() == Some(ErrorCode::NotFound) => continue,
                    Err(e) => return Err(e),
                }
            };
            stack.push((depth + 1, reply));
        }
        out.push((depth, m));
    }
    Ok(out)
}

pub fn tail(a: TailArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let since = a
        .since
        .as_deref()
        .map(context::parse_duration)
        .transpose()?;
    let start = now_ms();
    let from_ms = start - since.map(|d| d.as_millis() as i64).unwrap_or(0);
    // Seen messages and their last state.
    let mut seen: HashMap<i64, MessageState> = HashMap::new();
    // Without --since, mail still queued from before is followed silently until it is
    // delivered (shown then); everything older stays out.
    let mut watch_from = from_ms;
    if since.is_none() {
        let q = HistoryQuery {
            limit: Some(10_000),
            since_ms: Some(start - 7 * 86_400_000),
            ..Default::default()
        };
        let log = ctx
            .rt
            .block_on(client.messages(&q))
            .map_err(|e| ctx.explain(e))?;
        for m in &log.messages {
            seen.insert(m.message_id, m.status);
            if m.status == MessageState::Queued {
                watch_from = watch_from.min(m.sent_at_ms);
            }
        }
    }
    if !a.json {
        eprintln!("following {} (Ctrl-C stops)…", ctx.url());
    }
    ctx.rt.block_on(async {
        loop {
            let q = HistoryQuery {
                limit: Some(10_000),
                since_ms: Some(watch_from),
                ..Default::default()
            };
            match client.messages(&q).await {
                Ok(log) => {
                    // The log is newest first; print in send order.
                    for m in log.messages.iter().rev() {
                        let before = seen.insert(m.message_id, m.status);
                        let events: Vec<&str> = match (before, m.status) {
                            (None, MessageState::Queued) => vec!["sent"],
                            (None, MessageState::Delivered) => vec!["sent", "delivered"],
                            (None, MessageState::Expired) => vec!["sent", "expired"],
                            (Some(MessageState::Queued), MessageState::Delivered) => {
                                vec!["delivered"]
                            }
                            (Some(MessageState::Queued), MessageState::Expired) => vec!["expired"],
                            _ => vec![],
                        };
                        for ev in events {
                            print_event(ev, m, a.json);
                        }
                    }
                    // Move the window up past messages that reached a final state.
                    let oldest_open = log
                        .messages
                        .iter()
                        .filter(|m| m.status == MessageState::Queued)
                        .map(|m| m.sent_at_ms)
                        .min();
                    watch_from = oldest_open.unwrap_or(now_ms() - 60_000).max(watch_from);
                }
                Err(e) if e.is_unreachable() => {
                    if !a.json {
                        eprintln!("(broker not answering at {}; retrying)", ctx.url());
                    }
                }
                Err(e) => return Err(ctx.explain(e)),
            }
            tokio::select! {
                _ = context::interrupted() => return Ok(()),
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

fn print_event(ev: &str, m: &MessageStatus, as_json: bool) {
    use std::io::Write;
    let line = if as_json {
        json!({"event": ev, "message": m}).to_string()
    } else {
        let at = if ev == "delivered" {
            m.delivered_at_ms.unwrap_or(m.sent_at_ms)
        } else {
            m.sent_at_ms
        };
        let time = peers_core::format_ms(at);
        match ev {
            "sent" => format!(
                "{time}  sent       #{} {} -> {} ({} B{})",
                m.message_id,
                m.from,
                m.to,
                m.bytes,
                m.reply_to
                    .map(|r| format!(", reply to #{r}"))
                    .unwrap_or_default()
            ),
            "delivered" => format!(
                "{time}  delivered  #{} to {} via {} after {}",
                m.message_id,
                m.to,
                m.delivered_via.as_deref().unwrap_or("?"),
                context::human_duration(m.delivered_at_ms.unwrap_or(m.sent_at_ms) - m.sent_at_ms)
            ),
            _ => format!(
                "{time}  expired    #{} to {} undelivered",
                m.message_id, m.to
            ),
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
