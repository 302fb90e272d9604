//! Mail markers: files in `<state_dir>/mail/` by which a local broker tells the hook "mail may
//! be waiting for this session", so the hook's common no-mail run makes no request at all.
//!
//! * `mail/<peer_id>` (empty): mail may be waiting for that peer. The broker creates it after
//!   it has committed mail for the peer and before it answers the send; it deletes it only when
//!   a claim found nothing and, checked after the delete, nothing is pending (queued or leased).
//! * `mail/.broker`: `<pid> <start_time> <url>` of the broker that keeps the markers (written
//!   after its store opened and before it serves, removed at clean shutdown or as soon as a
//!   marker cannot be written). A marker's absence means "no mail" only while this file names
//!   the live broker process (same start time: a reused pid is another process) that listens
//!   at the session's broker URL.
//!
//! The broker side of the protocol, and why it never hides mail, is in the broker's
//! `mailmark` module; this module is the file layout both sides share. Only the broker writes
//! here; the hook only reads.

use std::io;
use std::path::{Path, PathBuf};

use crate::process;

/// The directory of the markers.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("mail")
}

/// The file that names the broker keeping the markers.
pub fn broker_file(state_dir: &Path) -> PathBuf {
    dir(state_dir).join(".broker")
}

/// The marker of `peer_id`, or `None` for an id that is not a plain file name (peer ids are
/// hex; anything else never gets a marker, and the hook then takes the network path).
pub fn marker(state_dir: &Path, peer_id: &str) -> Option<PathBuf> {
    let plain = !peer_id.is_empty()
        && peer_id.len() <= 64
        && peer_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| dir(state_dir).join(peer_id))
}

/// What `mail/.broker` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMark {
    pub pid: u32,
    /// [`process::start_time`] of the broker.
    pub start_time: u64,
    /// The URL local clients reach the broker at (`Config::broker_url`).
    pub url: String,
}

impl BrokerMark {
    /// This process, serving at `url`.
    pub fn this_process(url: &str) -> Option<BrokerMark> {
        let pid = std::process::id();
        Some(BrokerMark {
            pid,
            start_time: process::start_time(pid)?,
            url: url.to_string(),
        })
    }

    pub fn parse(text: &str) -> Option<BrokerMark> {
        let mut it = text.split_ascii_whitespace();
        let mark = BrokerMark {
            pid: it.next()?.parse().ok()?,
            start_time: it.next()?.parse().ok()?,
            url: it.next()?.to_string(),
        };
        it.next().is_none().then_some(mark)
    }

    pub fn to_line(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.url)
    }

    /// Reads `mail/.broker`; `None` when absent or not in the expected form.
    pub fn read(state_dir: &Path) -> Option<BrokerMark> {
        BrokerMark::parse(&std::fs::read_to_string(broker_file(state_dir)).ok()?)
    }

    /// Writes `mail/.broker` (atomically, mode 0600), creating the directory.
    pub fn write(&self, state_dir: &Path) -> io::Result<()> {
        crate::paths::write_private_file(&broker_file(state_dir), self.to_line().as_bytes())
    }

    /// Whether the process it names runs now (not a zombie) with the start time it recorded.
    pub fn is_live(&self) -> bool {
        process::is_same(self.pid, Some(self.start_time)) && !process::is_zombie(self.pid)
    }
}

/// The hook's question: may it skip the network for `peer_id` at `url`? True only when
/// `mail/.broker` names the live broker at exactly `url` and `mail/<peer_id>` does not exist.
/// Anything unexpected (no `.broker`, a dead or reused pid, another URL, an odd peer id, an
/// unreadable directory) answers false.
pub fn nothing_waiting(state_dir: &Path, peer_id: &str, url: &str) -> bool {
    let Some(marker) = marker(state_dir, peer_id) else {
        return false;
    };
    let Some(broker) = BrokerMark::read(state_dir) else {
        return false;
    };
    if broker.url != url || !broker.is_live() {
        return false;
    }
    // Only "definitely absent" counts: a permission error or the like is "may be waiting".
    matches!(std::fs::symlink_metadata(&marker), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:7900";

    #[test]
    fn broker_line_round_trips_and_rejects_junk() {
        let m = BrokerMark {
            pid: 12,
            start_time: 345,
            url: URL.into(),
        };
        assert_eq!(BrokerMark::parse(&m.to_line()), Some(m));
        for junk in ["", "12", "12 345", "x 345 u", "12 y u", "12 345 u extra"] {
            assert_eq!(BrokerMark::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn markers_only_for_plain_ids() {
        let d = Path::new("/s");
        assert_eq!(marker(d, "a1b2c3"), Some(PathBuf::from("/s/mail/a1b2c3")));
        for bad in ["", ".broker", "../x", "a/b", ".", &"a".repeat(65)] {
            assert_eq!(marker(d, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn skip_only_with_a_live_broker_at_the_url_and_no_marker() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        // No .broker: ask the broker.
        assert!(!nothing_waiting(s, "p1", URL));
        let me = BrokerMark::this_process(URL).unwrap();
        me.write(s).unwrap();
        assert!(nothing_waiting(s, "p1", URL));
        assert!(!nothing_waiting(s, "p1", "http://127.0.0.1:7901"));
        assert!(!nothing_waiting(s, "../p1", URL));
        std::fs::write(marker(s, "p1").unwrap(), "").unwrap();
        assert!(!nothing_waiting(s, "p1", URL));
        assert!(nothing_waiting(s, "p2", URL));
        // Same pid, another start time: a reused pid.
        BrokerMark {
            start_time: me.start_time + 1,
            ..me.clone()
        }
        .write(s)
        .unwrap();
        assert!(!nothing_waiting(s, "p2", URL));
        // A pid that does not exist.
        BrokerMark {
            pid: i32::MAX as u32,
            ..me
        }
        .write(s)
        .unwrap();
        assert!(!nothing_waiting(s, "p2", URL));
    }
}
