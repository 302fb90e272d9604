//! `peers show`: one message, its text, and the thread it belongs to.

use anyhow::{Result, anyhow};
use clap::Args;
use peers_core::BrokerClient;
use peers_core::wire::{ErrorCode, MessageState, MessageStatus};
use serde_json::json;

use crate::context::{self, Ctx, JsonArg, ago, duration};
use crate::log::state_text;
use crate::send::NO_WAKE;
use crate::terminal;

#[derive(Args)]
pub struct ShowArgs {
    /// The message id (as printed by `peers send` or `peers log`; a leading `#` is fine).
    pub id: String,
    #[command(flatten)]
    pub output: JsonArg,
}

/// At most this many messages of a thread are fetched for `peers show`.
const THREAD_MAX: usize = 200;

pub fn run(a: ShowArgs) -> Result<()> {
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
    if a.output.json {
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
    if st.channel.is_some() {
        println!(
            "  to:        {} ({})",
            terminal::safe_line(&st.to),
            state_text(&st)
        );
    } else {
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
    }
    println!(
        "  sent:      {} ({})",
        peers_core::format_ms(st.sent_at_ms),
        ago(st.sent_at_ms)
    );
    println!("  status:    {}", st.status.as_str());
    if let Some(at) = st.delivered_at_ms {
        println!(
            "  delivered: {} via {} ({} after sending)",
            peers_core::format_ms(at),
            st.delivered_via.as_deref().unwrap_or("?"),
            duration(at - st.sent_at_ms)
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
    if st.channel.is_some() {
        for line in reader_lines(&st) {
            println!("    {line}");
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

/// One line per reader of a post: who, and where its copy is.
pub fn reader_lines(st: &MessageStatus) -> Vec<String> {
    st.readers
        .iter()
        .map(|r| {
            let state = match r.status {
                MessageState::Delivered => format!(
                    "delivered via {} after {}",
                    r.delivered_via.as_deref().unwrap_or("?"),
                    duration(r.delivered_at_ms.unwrap_or(st.sent_at_ms) - st.sent_at_ms)
                ),
                MessageState::Expired => "expired undelivered".into(),
                s if !r.alive => format!("{} (session ended)", s.as_str()),
                s if r.can_wake => format!("{} (can wake it)", s.as_str()),
                s => format!("{} (at its next hook event)", s.as_str()),
            };
            format!("{:<24} {state}", terminal::safe_line(&r.to))
        })
        .collect()
}

/// The thread `st` belongs to: from the root it answers (following `reply_to` up) through
/// every reply, depth first in the order sent, each with its depth. At most [`THREAD_MAX`]
/// messages; a message that cannot be read is left out.
pub(crate) async fn thread_of(
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
