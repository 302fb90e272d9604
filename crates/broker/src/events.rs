//! The live feed behind `GET /v1/events`: handlers publish a [`wire::Event`] after their
//! commit; every open stream gets it. The last [`KEEP`] events stay in memory so a client that
//! reconnects with `Last-Event-ID` gets what it missed; older ones (or ones from before a
//! restart, whose ids name another boot) are answered with a `resync`.
//!
//! Publishing costs next to nothing while no stream is open (no JSON is built, a send's status
//! is not read back: the event is only counted, so a later resume knows it missed it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use peers_core::wire::{self, Event, MessageState, PeerChange, ResyncReason};
use peers_store::StoreEvent;
use tokio::sync::broadcast;

use crate::AppState;

/// Events kept for `Last-Event-ID` resumes.
pub const KEEP: usize = 1024;

/// One published event: its sequence number and its JSON.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub seq: u64,
    pub json: Arc<str>,
}

/// The broker's one feed.
pub struct Feed {
    tx: broadcast::Sender<Stamped>,
    /// The recent events and the next sequence number, under one lock so ids follow the
    /// order in which streams receive them.
    recent: Mutex<(VecDeque<Stamped>, u64)>,
    /// Names this broker start in every id (`<boot>-<seq>`).
    boot: String,
}

/// Where a new stream starts.
pub struct Opened {
    pub rx: broadcast::Receiver<Stamped>,
    /// The held events after the client's `Last-Event-ID`.
    pub replay: Vec<Stamped>,
    /// The client asked to resume but missed events the broker no longer holds.
    pub missed: bool,
}

impl Default for Feed {
    fn default() -> Feed {
        let (tx, _) = broadcast::channel(KEEP);
        Feed {
            tx,
            recent: Mutex::new((VecDeque::with_capacity(KEEP), 1)),
            boot: format!("{:x}", peers_core::now_ms()),
        }
    }
}

impl Feed {
    /// Whether any stream is open (else publishing is skipped).
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn publish(&self, event: &Event) {
        if !self.watched() {
            self.skip();
            return;
        }
        let json: Arc<str> = match serde_json::to_string(event) {
            Ok(j) => j.into(),
            Err(e) => {
                tracing::warn!(error = %e, "event not serialisable");
                return;
            }
        };
        let mut recent = self.recent.lock().expect("feed lock");
        let seq = recent.1;
        recent.1 += 1;
        let stamped = Stamped { seq, json };
        if recent.0.len() == KEEP {
            recent.0.pop_front();
        }
        recent.0.push_back(stamped.clone());
        let _ = self.tx.send(stamped);
    }

    /// Counts an event nobody watched without building it: a client that resumes from before
    /// it learns that it missed something.
    pub fn skip(&self) {
        let mut recent = self.recent.lock().expect("feed lock");
        recent.0.clear();
        recent.1 += 1;
    }

    /// The SSE id of an event.
    pub fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.boot)
    }

    /// Opens a stream, resuming after `last_id` (a `Last-Event-ID`) when given.
    pub fn open(&self, last_id: Option<&str>) -> Opened {
        let recent = self.recent.lock().expect("feed lock");
        // Subscribed under the lock: nothing published between the copy and the receiver.
        let rx = self.tx.subscribe();
        let Some(last_id) = last_id else {
            return Opened {
                rx,
                replay: vec![],
                missed: false,
            };
        };
        let after = last_id
            .trim()
            .split_once('-')
            .filter(|(boot, _)| *boot == self.boot)
            .and_then(|(_, seq)| seq.parse::<u64>().ok());
        let oldest = recent.0.front().map_or(recent.1, |s| s.seq);
        match after {
            // Everything after `after` is still held (or nothing came since).
            Some(after) if after + 1 >= oldest && after < recent.1 => Opened {
                rx,
                replay: recent.0.iter().filter(|s| s.seq > after).cloned().collect(),
                missed: false,
            },
            _ => Opened {
                rx,
                replay: vec![],
                missed: true,
            },
        }
    }
}

/// A `resync` event as JSON (sent to one stream, not published).
pub fn resync_json(why: ResyncReason) -> String {
    serde_json::to_string(&Event::Resync { why, peer_id: None }).expect("plain enum")
}

impl AppState {
    /// Publishes an event to every open `/v1/events` stream (after the change is committed).
    pub fn publish(&self, event: Event) {
        self.feed.publish(&event);
    }

    /// Publishes a new message's status (read back only while a stream is open).
    pub async fn publish_message(&self, id: i64) {
        if !self.feed.watched() {
            self.feed.skip();
            return;
        }
        match self.store.status(id, false).await {
            Ok(Some((mut message, _))) => {
                message.recipient_can_wake =
                    message.recipient_alive && self.waiters.can_wake(&message.to_peer_id);
                self.feed.publish(&Event::Message { message });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, message = id, "no event for a sent message"),
        }
    }

    /// Publishes what an ack did.
    pub fn publish_acked(
        &self,
        peer_id: &str,
        ids: Option<Vec<i64>>,
        via: String,
        acked: peers_store::Acked,
    ) {
        let at_ms = peers_core::now_ms();
        if acked.delivered > 0 {
            self.publish(Event::Delivered {
                peer_id: Some(peer_id.to_string()),
                message_ids: ids,
                state: MessageState::Delivered,
                via: Some(via),
                count: acked.delivered,
                at_ms,
            });
        }
        if acked.released > 0 {
            self.publish(Event::Delivered {
                peer_id: Some(peer_id.to_string()),
                message_ids: None,
                state: MessageState::Queued,
                via: None,
                count: acked.released,
                at_ms,
            });
        }
    }

    /// Publishes a change to the peers.
    pub fn publish_peers(&self, change: PeerChange, peer_ids: Vec<String>) {
        self.publish(Event::Peers { change, peer_ids });
    }

    /// Publishes a notice just stored.
    pub fn publish_notice(&self, n: &peers_store::NewNotice) {
        self.publish(Event::Notice {
            notice: wire::Notice {
                id: 0,
                at_ms: n.now,
                kind: n.kind.clone(),
                peer_id: n.peer_id.clone(),
                text: n.text.clone(),
                author: n.author.clone(),
            },
        });
    }

    /// Publishes a subscription change.
    pub fn publish_topic(&self, topic: &str, peer_id: &str, subscribed: bool) {
        self.publish(Event::Topic {
            topic: topic.to_string(),
            peer_id: peer_id.to_string(),
            subscribed,
        });
    }

    /// What a sweep changed.
    pub fn publish_swept(&self, gone: Vec<String>, swept: peers_store::Swept) {
        let at_ms = peers_core::now_ms();
        if swept.marked_gone > 0 {
            self.publish_peers(PeerChange::Gone, gone);
        }
        for (state, count) in [
            (MessageState::Queued, swept.requeued),
            (MessageState::Expired, swept.expired),
        ] {
            if count > 0 {
                self.publish(Event::Delivered {
                    peer_id: None,
                    message_ids: None,
                    state,
                    via: None,
                    count,
                    at_ms,
                });
            }
        }
    }

    /// What another broker on the same database committed, as coarse events.
    pub fn publish_store_event(&self, event: &StoreEvent) {
        self.publish(match event {
            StoreEvent::Mail { peer_id } => Event::Resync {
                why: ResyncReason::Elsewhere,
                peer_id: Some(peer_id.clone()),
            },
            StoreEvent::PeersChanged => Event::Peers {
                change: PeerChange::Changed,
                peer_ids: vec![],
            },
            StoreEvent::Lagged => Event::Resync {
                why: ResyncReason::Missed,
                peer_id: None,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> Event {
        Event::Delivered {
            peer_id: None,
            message_ids: Some(vec![n]),
            state: MessageState::Delivered,
            via: None,
            count: 1,
            at_ms: n,
        }
    }

    #[test]
    fn resumes_from_held_events_and_says_when_it_cannot() {
        let feed = Feed::default();
        let _watching = feed.open(None);
        for n in 0..5 {
            feed.publish(&event(n));
        }
        let after_two = feed.open(Some(&feed.id(2)));
        assert!(!after_two.missed);
        assert_eq!(
            after_two.replay.iter().map(|s| s.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let up_to_date = feed.open(Some(&feed.id(5)));
        assert!(!up_to_date.missed && up_to_date.replay.is_empty());
        assert!(feed.open(Some("0-3")).missed, "another boot");
        assert!(feed.open(Some("garbage")).missed);
        assert!(feed.open(Some(&feed.id(99))).missed, "from the future");
        for n in 0..KEEP as i64 {
            feed.publish(&event(n));
        }
        assert!(feed.open(Some(&feed.id(2))).missed, "no longer held");
        let held = feed.open(Some(&feed.id(10)));
        assert!(!held.missed);
        assert_eq!(held.replay.first().map(|s| s.seq), Some(11));
    }

    #[test]
    fn nothing_is_kept_while_nobody_watches_but_a_resume_learns_it_missed_events() {
        let feed = Feed::default();
        let watching = feed.open(None);
        feed.publish(&event(1));
        drop(watching);
        assert!(!feed.open(Some(&feed.id(1))).missed);
        feed.publish(&event(2));
        assert!(feed.recent.lock().unwrap().0.is_empty());
        assert!(feed.open(Some(&feed.id(1))).missed);
    }
}
