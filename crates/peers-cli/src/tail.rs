//! `peers tail`: sends and deliveries as they happen, until Ctrl-C.

use std::collections::HashMap;

use anyhow::Result;
use clap::Args;
use peers_core::now_ms;
use peers_core::wire::{HistoryQuery, MessageState, MessageStatus};
use serde_json::json;

use crate::context::{self, Ctx, JsonArg, POLL, duration};

#[derive(Args)]
#[command(mut_arg("json", |a| a.help("Print one JSON object per line")))]
pub struct TailArgs {
    /// Also replay messages sent within this long before now (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    #[command(flatten)]
    pub output: JsonArg,
}

pub fn run(a: TailArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let since = context::parse_optional_duration(a.since.as_deref())?;
    let start = now_ms();
    let from_ms = start - since.map(|d| d.as_millis() as i64).unwrap_or(0);
    // Seen messages and their last state.
    let mut seen: HashMap<i64, MessageState> = HashMap::new();
    // Without --since, mail still queued from before is followed silently until it is
    // delivered (shown then); everything older stays out.
    let mut watch_from = from_ms;
    if since.is_none() {
        let q = HistoryQuery {
            tag: None,
            project: None,
            until_ms: None,
            status: None,
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
    if !a.output.json {
        eprintln!("following {} (Ctrl-C stops)…", ctx.url());
    }
    ctx.rt.block_on(async {
        loop {
            let q = HistoryQuery {
                tag: None,
                project: None,
                until_ms: None,
                status: None,
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
                            print_event(ev, m, a.output.json);
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
                    if !a.output.json {
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
                duration(m.delivered_at_ms.unwrap_or(m.sent_at_ms) - m.sent_at_ms)
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
