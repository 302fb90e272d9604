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

pub fn run(a: ShowArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let id = message_id(&a.id)?;
    let client = ctx.user()?;
    let st = ctx
        .rt
        .block_on(client.message_with_body(id))
        .map_err(|e| not_found_or(&ctx, id, e))?;
    let thread = ctx
        .rt
        .block_on(thread_of(&client, id))
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
        print_thread(&thread, st.message_id);
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

/// The thread of message `id` in reading order: from its root through every reply, depth
/// first in the order sent, each with its depth (one `GET /v1/messages/{id}/thread`).
pub(crate) async fn thread_of(
    client: &BrokerClient,
    id: i64,
) -> Result<Vec<(usize, MessageStatus)>, peers_core::ClientError> {
    let t = client.thread(id).await?;
    Ok(in_reading_order(t.root_id, t.messages))
}

/// A thread's messages (in send order) arranged depth first under their root.
fn in_reading_order(root_id: i64, messages: Vec<MessageStatus>) -> Vec<(usize, MessageStatus)> {
    let ids: std::collections::HashSet<i64> = messages.iter().map(|m| m.message_id).collect();
    let mut children: std::collections::HashMap<i64, Vec<MessageStatus>> = Default::default();
    let mut tops = Vec::new();
    for m in messages {
        match m
            .reply_to
            .filter(|r| ids.contains(r) && m.message_id != root_id)
        {
            Some(parent) => children.entry(parent).or_default().push(m),
            // The root, or a reply whose parent the caller may not see.
            None => tops.push(m),
        }
    }
    let mut out = Vec::new();
    let mut stack: Vec<(usize, MessageStatus)> = tops.into_iter().rev().map(|m| (0, m)).collect();
    while let Some((depth, m)) = stack.pop() {
        if let Some(kids) = children.remove(&m.message_id) {
            stack.extend(kids.into_iter().rev().map(|k| (depth + 1, k)));
        }
        out.push((depth, m));
    }
    out
}

/// The thread, oldest first, indented by depth, `current` marked.
pub fn print_thread(thread: &[(usize, MessageStatus)], current: i64) {
    for (depth, m) in thread {
        let mark = if m.message_id == current { "▶" } else { " " };
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

#[derive(Args)]
pub struct ThreadArgs {
    /// Any message of the thread (a leading `#` is fine).
    pub id: String,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `peers thread ID`: the whole conversation, bodies and delivery states included.
pub fn thread(a: ThreadArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let id = message_id(&a.id)?;
    let client = ctx.user()?;
    let t = ctx
        .rt
        .block_on(client.thread(id))
        .map_err(|e| not_found_or(&ctx, id, e))?;
    if a.output.json {
        return context::print_json(&t);
    }
    let list = in_reading_order(t.root_id, t.messages);
    println!(
        "thread of #{} ({} messages, oldest first):",
        t.root_id,
        list.len()
    );
    print_thread(&list, id);
    Ok(())
}

fn message_id(arg: &str) -> Result<i64> {
    arg.trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| anyhow!("{arg:?} is not a message id (a number, as `peers log` shows)"))
}

fn not_found_or(ctx: &Ctx, id: i64, e: peers_core::ClientError) -> anyhow::Error {
    match e.code() {
        Some(ErrorCode::NotFound) => anyhow!("no message #{id}: `peers log` lists the messages"),
        _ => ctx.explain(e),
    }
}
