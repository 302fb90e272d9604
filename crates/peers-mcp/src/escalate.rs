//! Telling the human when mail waits: one desktop notification per waiting batch.
//!
//! Each heartbeat answers how much mail waits for this session and since when. When the oldest
//! waiting message is older than `escalate_after_secs`, or the broker's loop budget held the
//! batch back, this session's `peers-mcp` — running on the machine where the human sits, also
//! when the broker is a hub elsewhere — raises one desktop notification (D-Bus
//! `org.freedesktop.Notifications` on Linux) naming the session, the senders and
//! `peers inbox`. It does not notify again for that batch: only once the batch was taken (the
//! queue emptied, or its oldest message is newer than the one notified for) can the next
//! batch notify.
//!
//! Where no notification can be shown (no session bus, no notification server, a timeout) the
//! failure is logged and recorded as a broker notice (`POST /v1/notices`, kind `escalation`),
//! which `peers status` shows. Nothing here is ever an error for the session.

use std::sync::Arc;
use std::time::Duration;

use peers_core::wire::{HeartbeatResponse, MessageState, NoticeRequest};
use peers_core::{BrokerClient, now_ms};

use crate::peer::{Peer, Registration};

/// How long showing one notification may take before it counts as failed.
const SHOW_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a batch escalates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The oldest message has waited this long (ms).
    Waiting(i64),
    /// An automatic claim for this batch was refused by the loop budget.
    Budget,
}

/// The per-session memory of which batch was notified for.
#[derive(Debug)]
pub struct Escalation {
    after_ms: i64,
    /// `oldest_queued_ms` of the batch notified for, until that batch was taken.
    notified: Option<i64>,
}

impl Escalation {
    pub fn new(after: Duration) -> Escalation {
        Escalation {
            after_ms: after.as_millis().min(i64::MAX as u128) as i64,
            notified: None,
        }
    }

    /// Forgets a notified batch that has been taken. Returns the oldest waiting message's time
    /// when a batch waits that has not been notified for.
    pub fn pending(&mut self, queued: u64, oldest: Option<i64>) -> Option<i64> {
        let oldest = oldest.filter(|_| queued > 0);
        match (oldest, self.notified) {
            (None, _) => {
                self.notified = None;
                None
            }
            (Some(o), Some(n)) if o <= n => None,
            (Some(o), _) => {
                self.notified = None;
                Some(o)
            }
        }
    }

    /// Decides for a pending batch (from [`Escalation::pending`]) whether to notify now, and if
    /// so marks it notified.
    pub fn decide(&mut self, oldest: i64, now: i64, held_by_budget: bool) -> Option<Reason> {
        let age = now.saturating_sub(oldest);
        let reason = if age >= self.after_ms {
            Reason::Waiting(age)
        } else if held_by_budget {
            Reason::Budget
        } else {
            return None;
        };
        self.notified = Some(oldest);
        Some(reason)
    }

    /// Whether a batch with this oldest message is below the threshold (so only the loop
    /// budget could make it escalate now).
    pub fn too_young(&self, oldest: i64, now: i64) -> bool {
        now.saturating_sub(oldest) < self.after_ms
    }
}

/// Called after each successful heartbeat.
pub async fn on_heartbeat(
    esc: &mut Escalation,
    peer: &Arc<Peer>,
    reg: &Arc<Registration>,
    hb: &HeartbeatResponse,
) {
    let Some(oldest) = esc.pending(hb.queued, hb.oldest_queued_ms) else {
        return;
    };
    let now = now_ms();
    let held = esc.too_young(oldest, now) && held_by_budget(peer, &reg.peer_id, oldest).await;
    let Some(reason) = esc.decide(oldest, now, held) else {
        return;
    };
    // Showing may take a while (a D-Bus round trip, at worst the timeout); the heartbeat goes
    // on meanwhile. The batch is already marked, so this runs once per batch.
    let reg = reg.clone();
    let queued = hb.queued;
    tokio::spawn(async move { escalate(reg, queued, reason).await });
}

/// Whether the broker recorded a loop-budget notice for this peer since the batch's oldest
/// message was sent: an automatic claim for it was refused. Needs the user credential (the
/// local secret, or the hub token); without one, only the time threshold applies.
async fn held_by_budget(peer: &Peer, peer_id: &str, oldest: i64) -> bool {
    let Ok(Some(cred)) = peer.config.user_credential() else {
        return false;
    };
    let user = peer.config.client(Some(cred));
    match user.notices().await {
        Ok(list) => list.notices.iter().any(|n| {
            n.kind == "loop_budget" && n.peer_id.as_deref() == Some(peer_id) && n.at_ms >= oldest
        }),
        Err(e) => {
            tracing::debug!("cannot read the broker's notices: {e}");
            false
        }
    }
}

async fn escalate(reg: Arc<Registration>, queued: u64, reason: Reason) {
    let senders = senders(&reg.client).await;
    let (summary, body) = texts(&reg.address, queued, &senders, reason);
    match show(&summary, &body).await {
        Ok(()) => tracing::info!(queued, ?reason, "desktop notification shown: {summary}"),
        Err(e) => {
            tracing::warn!(
                "no desktop notification could be shown ({e}): {summary}. {body}; recording a \
                 notice for `peers status`"
            );
            let text = format!(
                "{} — {} (no desktop notification could be shown: {e})",
                summary.trim_start_matches("peers: "),
                body.replace('\n', " ")
            );
            let req = NoticeRequest {
                kind: "escalation".into(),
                text: text.chars().take(2000).collect(),
            };
            if let Err(e) = reg.client.add_notice(&req).await {
                tracing::warn!("cannot record the notice either: {e}");
            }
        }
    }
}

/// The senders of the waiting mail, in order of first message, without repeats.
async fn senders(client: &BrokerClient) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match client.peek().await {
        Ok(list) => {
            for m in list.messages {
                if m.status == MessageState::Queued && !out.contains(&m.from) {
                    out.push(m.from);
                }
            }
        }
        Err(e) => tracing::debug!("cannot peek at the waiting mail: {e}"),
    }
    out
}

/// The notification's summary and body.
pub fn texts(address: &str, queued: u64, senders: &[String], reason: Reason) -> (String, String) {
    let from = match senders {
        [] => String::new(),
        [one] => format!(" from {one}"),
        [first @ .., last] if senders.len() <= 4 => {
            format!(" from {} and {last}", first.join(", "))
        }
        _ => format!(
            " from {} and {} more",
            senders[..3].join(", "),
            senders.len() - 3
        ),
    };
    let mail = if queued == 1 {
        "1 message".to_string()
    } else {
        format!("{queued} messages")
    };
    let summary = format!("peers: mail waits for {address}");
    let why = match reason {
        Reason::Waiting(ms) => format!(
            "waiting {}; the session has not taken it",
            human_secs(ms / 1000)
        ),
        Reason::Budget => "held back: the session used its loop budget of automatic turns, so \
                           it waits for your next prompt there"
            .to_string(),
    };
    let body = format!("{mail}{from}, {why}.\nLook with `peers inbox --to {address}`.");
    (summary, body)
}

fn human_secs(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// Shows a desktop notification, bounded in time.
async fn show(summary: &str, body: &str) -> Result<(), String> {
    let mut n = notify_rust::Notification::new();
    n.appname("peers").summary(summary).body(body);
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        n.timeout(notify_rust::Timeout::Never);
        match tokio::time::timeout(SHOW_TIMEOUT, n.show_async()).await {
            Ok(Ok(_handle)) => Ok(()),
            Ok(Err(e)) => Err(no_bus_hint(e.to_string())),
            Err(_) => Err(format!(
                "the notification service did not answer within {} s",
                SHOW_TIMEOUT.as_secs()
            )),
        }
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        match tokio::time::timeout(
            SHOW_TIMEOUT,
            tokio::task::spawn_blocking(move || n.show().map(|_| ()).map_err(|e| e.to_string())),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the notification service did not answer within {} s",
                SHOW_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Names the usual cause when there is no D-Bus session bus at all.
#[cfg(all(unix, not(target_os = "macos")))]
fn no_bus_hint(e: String) -> String {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        format!("{e}; DBUS_SESSION_BUS_ADDRESS is not set (no desktop session bus)")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notification_per_waiting_batch() {
        let mut e = Escalation::new(Duration::from_secs(90));
        // Nothing waits.
        assert_eq!(e.pending(0, None), None);
        // A batch since t=1000: too young at first, then old enough once.
        assert_eq!(e.pending(2, Some(1000)), Some(1000));
        assert_eq!(e.decide(1000, 50_000, false), None);
        assert_eq!(e.pending(2, Some(1000)), Some(1000));
        assert_eq!(e.decide(1000, 91_000, false), Some(Reason::Waiting(90_000)));
        // Same batch, more mail on top: no second notification.
        assert_eq!(e.pending(3, Some(1000)), None);
        // A newer oldest message means the notified batch was taken: the next batch may
        // notify, here early because the loop budget holds it back.
        assert_eq!(e.pending(1, Some(5000)), Some(5000));
        assert_eq!(e.decide(5000, 6000, false), None);
        assert_eq!(e.decide(5000, 6000, true), Some(Reason::Budget));
        assert_eq!(e.pending(1, Some(5000)), None);
        // Taken: the queue emptied; mail inherited with an older time notifies again.
        assert_eq!(e.pending(0, None), None);
        assert_eq!(e.pending(1, Some(4000)), Some(4000));
        // A stale oldest with an empty queue counts as empty.
        assert_eq!(e.pending(0, Some(4000)), None);
    }

    #[test]
    fn texts_name_the_session_the_senders_and_how_to_look() {
        let (s, b) = texts(
            "web@vm",
            3,
            &["api@vm".into(), "you@vm".into()],
            Reason::Waiting(95_000),
        );
        assert_eq!(s, "peers: mail waits for web@vm");
        assert!(
            b.starts_with("3 messages from api@vm and you@vm, waiting 95 s"),
            "{b}"
        );
        assert!(b.contains("peers inbox --to web@vm"), "{b}");
        let many: Vec<String> = (0..6).map(|i| format!("p{i}@vm")).collect();
        let (_, b) = texts("web@vm", 6, &many, Reason::Budget);
        assert!(b.contains("from p0@vm, p1@vm, p2@vm and 3 more"), "{b}");
        assert!(b.contains("loop budget"), "{b}");
        let (_, b) = texts("web@vm", 1, &[], Reason::Waiting(7_200_000));
        assert!(b.starts_with("1 message, waiting 2 h;"), "{b}");
    }
}
