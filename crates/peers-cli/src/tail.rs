//! `peers tail`: sends and deliveries as they happen, until Ctrl-C. It follows the broker's
//! event stream (`GET /v1/events`, [`EventFollower`]): an event names what changed, the
//! message's status says how, and a [`Tracker`] prints each step once. When the broker stops
//! answering it says so and reconnects by itself, catching up on what it missed.

use std::collections::HashMap;

use anyhow::Result;
use clap::Args;
use peers_core::BrokerClient;
use peers_core::client::{EventFollower, Followed};
use peers_core::now_ms;
use peers_core::wire::{Event, HistoryQuery, MessageState, MessageStatus};
use serde_json::json;

use crate::context::{self, Ctx, JsonArg, duration};

#[derive(Args)]
#[command(mut_arg("json", |a| a.help("Print one JSON object per line: {\"event\": \"sent\"|\"delivered\"|\"expired\", \"message\": …}")))]
pub struct TailArgs {
    /// Also replay messages sent within this long before now (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only posts to this topic (`name` or `#name`).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    #[command(flatten)]
    pub output: JsonArg,
}

pub fn run(a: TailArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let since = context::parse_optional_duration(a.since.as_deref())?;
    let topic = a
        .topic
        .as_deref()
        .map(peers_core::address::topic_name)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--topic: {e}"))?;
    let start = now_ms();
    let mut tracker = Tracker {
        seen: HashMap::new(),
        topic: topic.map(|t| format!("#{t}")),
        json: a.output.json,
        // Without --since, what was sent before is followed silently until it changes.
        replay_from: since.map(|d| start - d.as_millis() as i64),
        started: start,
        learned: false,
        live_at: start,
    };
    let url = ctx.url();
    ctx.rt.block_on(async {
        tokio::select! {
            r = follow(&client, &mut tracker, &url) => r.map_err(|e| ctx.explain(e)),
            _ = context::interrupted() => Ok(()),
        }
    })
}

async fn follow(
    client: &BrokerClient,
    t: &mut Tracker,
    url: &str,
) -> Result<(), peers_core::ClientError> {
    let mut feed = EventFollower::new(client.clone());
    let mut down = false;
    let mut opened = false;
    loop {
        match feed.next().await {
            Followed::Connected => {
                // Whatever happened while no stream was open: the log says.
                t.catch_up(client).await?;
                if !t.json {
                    if !opened {
                        eprintln!("following {url} (Ctrl-C stops)…");
                    } else if down {
                        eprintln!("(reconnected to {url})");
                    }
                }
                opened = true;
                down = false;
            }
            Followed::Down { reason, .. } => {
                if !down && !t.json {
                    eprintln!("(broker not answering at {url}: {reason}; retrying)");
                }
                down = true;
            }
            Followed::Event(Event::Message { message }) => print(t.observe(message)),
            Followed::Event(Event::Delivered {
                message_ids: Some(ids),
                ..
            }) => {
                for id in ids {
                    if let Ok(m) = client.message_status(id).await {
                        print(t.observe(m));
                    }
                }
            }
            Followed::Event(Event::Delivered {
                message_ids: None, ..
            })
            | Followed::Event(Event::Resync { .. }) => t.catch_up(client).await?,
            Followed::Event(_) => {}
        }
    }
}

/// What `tail` has printed of each message: its last known status.
struct Tracker {
    seen: HashMap<i64, MessageStatus>,
    /// Only posts to this channel (`#name`).
    topic: Option<String>,
    json: bool,
    /// The first catch-up prints messages sent from then on (`--since`); `None`: it only
    /// learns them.
    replay_from: Option<i64>,
    started: i64,
    /// The first catch-up is done.
    learned: bool,
    /// When the stream was last seen open (a catch-up or an event).
    live_at: i64,
}

/// One reader's copy, as `tail` compares them: (reader, state).
fn copies(m: &MessageStatus) -> Vec<(String, MessageState)> {
    if m.readers.is_empty() {
        return vec![(m.to.clone(), m.status)];
    }
    m.readers
        .iter()
        .map(|r| {
            // A lease is an internal step: the copy is still on its way.
            let s = if r.status == MessageState::Leased {
                MessageState::Queued
            } else {
                r.status
            };
            (r.to.clone(), s)
        })
        .collect()
}

impl Tracker {
    /// Reads the log for what changed since the oldest message still on its way (or all
    /// that `--since` asks for, the first time) and prints each step not printed yet.
    async fn catch_up(&mut self, client: &BrokerClient) -> Result<(), peers_core::ClientError> {
        // From a minute before the stream was last known open: what a broker sharing the
        // database took while this one was away.
        let recent = self.live_at - 60_000;
        let (since, quiet) = match (self.learned, self.replay_from) {
            (false, Some(from)) => (from, false),
            // Learn the last week silently: only later steps of that mail are shown.
            (false, None) => (self.started - 7 * 86_400_000, true),
            (true, _) => {
                let open = self
                    .seen
                    .values()
                    .filter(|m| copies(m).iter().any(|(_, s)| *s == MessageState::Queued))
                    .map(|m| m.sent_at_ms)
                    .min();
                (open.unwrap_or(recent).min(recent), false)
            }
        };
        let q = HistoryQuery {
            limit: Some(10_000),
            since_ms: Some(since),
            topic: self.topic.clone(),
            ..Default::default()
        };
        let log = client.messages(&q).await?;
        // The log is newest first; print in send order.
        for m in log.messages.into_iter().rev() {
            if quiet {
                self.seen.insert(m.message_id, m);
            } else {
                print(self.observe(m));
            }
        }
        self.learned = true;
        self.live_at = now_ms();
        Ok(())
    }

    /// The lines for the steps `m` took since it was last seen: `sent`, then `delivered` or
    /// `expired` for each reader's copy.
    fn observe(&mut self, m: MessageStatus) -> Vec<String> {
        let mut lines = Vec::new();
        self.live_at = now_ms();
        if let Some(t) = &self.topic
            && m.channel.as_deref() != Some(t.as_str())
        {
            return lines;
        }
        let before = self.seen.get(&m.message_id).map(copies);
        if before.is_none() {
            lines.push(event_line("sent", &m, None, self.json));
        }
        for (reader, now) in copies(&m) {
            let was = before
                .as_ref()
                .and_then(|b| b.iter().find(|(r, _)| *r == reader).map(|(_, s)| *s))
                .unwrap_or(MessageState::Queued);
            if was != MessageState::Queued || now == MessageState::Queued {
                continue;
            }
            let ev = match now {
                MessageState::Delivered => "delivered",
                MessageState::Expired => "expired",
                _ => continue,
            };
            lines.push(event_line(ev, &m, Some(&reader), self.json));
        }
        self.seen.insert(m.message_id, m);
        lines
    }
}

fn print(lines: Vec<String>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// One line of `tail`: `ev` (`sent`, `delivered`, `expired`) of `m`, for `reader`'s copy.
fn event_line(ev: &str, m: &MessageStatus, reader: Option<&str>, as_json: bool) -> String {
    if as_json {
        let mut v = json!({"event": ev, "message": m});
        if let Some(r) = reader.filter(|_| m.channel.is_some()) {
            v["reader"] = json!(r);
        }
        v.to_string()
    } else {
        let copy = reader.and_then(|r| m.readers.iter().find(|c| c.to == r));
        let delivered_at = copy
            .and_then(|c| c.delivered_at_ms)
            .or(m.delivered_at_ms)
            .unwrap_or(m.sent_at_ms);
        let via = copy
            .and_then(|c| c.delivered_via.as_deref())
            .or(m.delivered_via.as_deref())
            .unwrap_or("?");
        let to = reader.unwrap_or(&m.to);
        let at = if ev == "delivered" {
            delivered_at
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
                "{time}  delivered  #{} to {to} via {via} after {}",
                m.message_id,
                duration(delivered_at - m.sent_at_ms)
            ),
            _ => format!("{time}  expired    #{} to {to} undelivered", m.message_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use peers_core::wire::{ReaderStatus, SenderKind};

    const T0: i64 = 1_795_268_100_000;

    fn tracker(topic: Option<&str>) -> Tracker {
        Tracker {
            seen: HashMap::new(),
            topic: topic.map(str::to_string),
            json: false,
            replay_from: None,
            started: T0,
            learned: true,
            live_at: T0,
        }
    }

    fn reader(to: &str, status: MessageState) -> ReaderStatus {
        let done = status == MessageState::Delivered;
        ReaderStatus {
            peer_id: format!("id-{to}"),
            to: to.into(),
            status,
            delivered_at_ms: done.then_some(T0 + 1500),
            delivered_via: done.then(|| "PostToolUse".into()),
            alive: true,
            wake: false,
            can_wake: false,
        }
    }

    fn post(channel: &str, readers: Vec<ReaderStatus>) -> MessageStatus {
        MessageStatus {
            tags: vec![],
            project: None,
            message_id: 7,
            from: "api@box".into(),
            from_kind: SenderKind::Peer,
            to: channel.into(),
            to_peer_id: String::new(),
            status: MessageState::Queued,
            sent_at_ms: T0,
            delivered_at_ms: None,
            delivered_via: None,
            expires_at_ms: T0 + 86_400_000,
            reply_to: None,
            replies: vec![],
            recipient_alive: true,
            recipient_can_wake: false,
            bytes: 11,
            body: None,
            channel: Some(channel.into()),
            readers,
        }
    }

    #[test]
    fn each_readers_copy_of_a_post_is_told_once_and_leases_are_not() {
        let mut t = tracker(None);
        let q = |r| reader(r, MessageState::Queued);
        let mut lines = t.observe(post("#deploys", vec![q("web@box"), q("db@box")]));
        lines.extend(t.observe(post(
            "#deploys",
            vec![reader("web@box", MessageState::Leased), q("db@box")],
        )));
        lines.extend(t.observe(post(
            "#deploys",
            vec![reader("web@box", MessageState::Delivered), q("db@box")],
        )));
        // Told again (a resync): nothing new.
        lines.extend(t.observe(post(
            "#deploys",
            vec![reader("web@box", MessageState::Delivered), q("db@box")],
        )));
        lines.extend(t.observe(post(
            "#deploys",
            vec![
                reader("web@box", MessageState::Delivered),
                reader("db@box", MessageState::Expired),
            ],
        )));
        expect![[r#"
            2026-11-21T13:35:00Z  sent       #7 api@box -> #deploys (11 B)
            2026-11-21T13:35:01Z  delivered  #7 to web@box via PostToolUse after 1.5 s
            2026-11-21T13:35:00Z  expired    #7 to db@box undelivered"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[test]
    fn topic_keeps_only_that_topics_posts() {
        let mut t = tracker(Some("#deploys"));
        assert!(t.observe(post("#alerts", vec![])).is_empty());
        let mut direct = post("web@box", vec![]);
        direct.channel = None;
        assert!(t.observe(direct).is_empty());
        assert_eq!(t.observe(post("#deploys", vec![])).len(), 1);
    }

    #[test]
    fn json_lines_name_the_event_and_the_reader() {
        let mut t = tracker(None);
        t.json = true;
        t.observe(post(
            "#deploys",
            vec![reader("web@box", MessageState::Queued)],
        ));
        let lines = t.observe(post(
            "#deploys",
            vec![reader("web@box", MessageState::Delivered)],
        ));
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["event"], "delivered");
        assert_eq!(v["reader"], "web@box");
        assert_eq!(v["message"]["message_id"], 7);
    }
}
