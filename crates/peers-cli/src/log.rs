//! `peers log` and `peers inbox`: the message log, newest first; the inbox is the log
//! filtered to mail not delivered yet.

use anyhow::Result;
use clap::Args;
use peers_core::now_ms;
use peers_core::wire::{HistoryQuery, MessageState, MessageStatus};

use crate::context::{self, Ctx, JsonArg, ago, duration};
use crate::terminal;

#[derive(Args)]
pub struct LogArgs {
    /// Only messages from this sender (a peer name, name@host, id, or `you`).
    #[arg(long)]
    pub from: Option<String>,
    /// Only messages to this peer (its copies of posts included).
    #[arg(long)]
    pub to: Option<String>,
    /// Only posts to this topic (`deploys` or `'#deploys'`).
    #[arg(long)]
    pub topic: Option<String>,
    /// Only messages with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only messages sent from this project (a session's repository or directory name).
    #[arg(long)]
    pub project: Option<String>,
    /// Only messages in this state: queued (some copy waits), delivered (every copy was),
    /// expired.
    #[arg(long, value_parser = ["queued", "delivered", "expired"])]
    pub status: Option<String>,
    /// Only messages sent within this long (e.g. 10m, 2h, 1d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only messages sent longer ago than this (e.g. 1h).
    #[arg(long, value_name = "DURATION")]
    pub until: Option<String>,
    /// At most this many messages.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Also print each message's text (control characters shown as `\u{…}` escapes).
    #[arg(long)]
    pub body: bool,
    #[command(flatten)]
    pub output: JsonArg,
}

pub fn run(a: LogArgs, inbox: bool) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let since_ms = context::parse_optional_duration(a.since.as_deref())?
        .map(|d| now_ms() - d.as_millis() as i64);
    let until_ms = context::parse_optional_duration(a.until.as_deref())?
        .map(|d| now_ms() - d.as_millis() as i64);
    let status = a
        .status
        .as_deref()
        .map(MessageState::from_filter)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // The inbox is the log filtered to undelivered mail: ask for more, then filter.
    let q = HistoryQuery {
        tag: a.tag.clone(),
        project: a.project.clone(),
        until_ms,
        status,
        limit: Some(if inbox { 10_000 } else { a.limit.max(1) }),
        since_ms,
        from: a.from.clone(),
        to: a.to.clone(),
        body: a.body,
        topic: a.topic.clone(),
    };
    let mut log = ctx
        .rt
        .block_on(client.messages(&q))
        .map_err(|e| ctx.explain(e))?;
    if inbox {
        log.messages.retain(|m| m.status == MessageState::Queued);
        log.messages.truncate(a.limit.max(1) as usize);
    }
    if a.output.json {
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
pub fn state_text(m: &MessageStatus) -> String {
    if m.channel.is_some() {
        let (done, all) = m.delivered_of();
        return format!("delivered to {done} of {all} reader(s)");
    }
    match m.status {
        MessageState::Delivered => format!(
            "delivered via {} after {}",
            m.delivered_via.as_deref().unwrap_or("?"),
            duration(m.delivered_at_ms.unwrap_or(m.sent_at_ms) - m.sent_at_ms)
        ),
        MessageState::Queued if !m.recipient_alive => "queued (session ended)".into(),
        s => s.as_str().to_string(),
    }
}

fn log_line(m: &MessageStatus) -> String {
    let mut line = format!(
        "#{:<5} {:<10} {} -> {}  {}  ({} B",
        m.message_id,
        ago(m.sent_at_ms),
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
