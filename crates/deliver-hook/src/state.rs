//! Small files the hook keeps in the state dir between runs.
//!
//! * `hook-backoff`: after a failure to reach a broker, a line `<until_ms> <broker_url>`; until
//!   then, hooks skip that broker (an unreachable broker costs one file read per tool call,
//!   not a connect timeout), and skip the network entirely when every broker of the session
//!   is marked.
//! * `hook-stop-<claude_pid>`: how many Stop blocks in a row this hook has made for a session,
//!   so it stays under Claude Code's cap on consecutive Stop blocks (a block past the cap is
//!   ignored, and mail acked for it would never be seen).
//! * `hook-turn-<claude_pid>`: `busy <ms>` when a turn runs (a prompt was submitted, or a Stop
//!   blocked so the turn goes on), `idle <ms>` when a Stop let the turn end. The waiter reads
//!   it: mail for a running turn is left to that turn's own hooks instead of a wake.

use std::path::{Path, PathBuf};

pub fn backoff_file(state_dir: &Path) -> PathBuf {
    state_dir.join("hook-backoff")
}

/// The markers of the backoff file: `(until_ms, url)`, one a line.
fn backoff_marks(state_dir: &Path) -> Vec<(i64, String)> {
    let Ok(text) = std::fs::read_to_string(backoff_file(state_dir)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (until, url) = l.trim().split_once(' ')?;
            Some((until.parse().ok()?, url.to_string()))
        })
        .collect()
}

fn write_marks(state_dir: &Path, marks: &[(i64, String)]) {
    if marks.is_empty() {
        let _ = std::fs::remove_file(backoff_file(state_dir));
        return;
    }
    let text: String = marks
        .iter()
        .map(|(u, url)| format!("{u} {url}\n"))
        .collect();
    let _ = peers_core::paths::write_private_file(&backoff_file(state_dir), text.as_bytes());
}

/// Whether calls to `url` are being skipped at `now_ms`. `Some(true)`: skip; `Some(false)`:
/// `url` has a marker but it is stale; `None`: no marker for `url`.
pub fn backoff_active(state_dir: &Path, url: &str, now_ms: i64) -> Option<bool> {
    backoff_marks(state_dir)
        .into_iter()
        .find(|(_, u)| u == url)
        .map(|(until, _)| now_ms < until)
}

/// Marks `url` unreachable until `until_ms` (best effort); other brokers' markers stay.
pub fn set_backoff(state_dir: &Path, url: &str, until_ms: i64) {
    let mut marks = backoff_marks(state_dir);
    marks.retain(|(_, u)| u != url);
    marks.push((until_ms, url.to_string()));
    write_marks(state_dir, &marks);
}

/// Removes the marker of `url` (it answered) and every marker lapsed at `now_ms`; the file
/// goes when none is left.
pub fn clear_backoff(state_dir: &Path, url: &str, now_ms: i64) {
    let mut marks = backoff_marks(state_dir);
    let before = marks.len();
    marks.retain(|(until, u)| u != url && now_ms < *until);
    if marks.len() != before {
        write_marks(state_dir, &marks);
    }
}

fn streak_file(state_dir: &Path, claude_pid: u32) -> PathBuf {
    state_dir.join(format!("hook-stop-{claude_pid}"))
}

/// Stop blocks in a row so far. A Stop without `stop_hook_active` starts a new streak.
pub fn stop_streak(state_dir: &Path, claude_pid: u32, stop_hook_active: bool) -> u32 {
    if !stop_hook_active {
        let _ = std::fs::remove_file(streak_file(state_dir, claude_pid));
        return 0;
    }
    std::fs::read_to_string(streak_file(state_dir, claude_pid))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // Active but no record: some other Stop hook blocked; count that one.
        .unwrap_or(1)
}

pub fn set_stop_streak(state_dir: &Path, claude_pid: u32, n: u32) {
    let _ = std::fs::write(streak_file(state_dir, claude_pid), n.to_string());
}

fn turn_file(state_dir: &Path, claude_pid: u32) -> PathBuf {
    state_dir.join(format!("hook-turn-{claude_pid}"))
}

pub fn set_turn(state_dir: &Path, claude_pid: u32, busy: bool, now_ms: i64) {
    let word = if busy { "busy" } else { "idle" };
    let _ = std::fs::write(turn_file(state_dir, claude_pid), format!("{word} {now_ms}"));
}

/// The last recorded turn state: `(busy, at_ms)`.
pub fn turn(state_dir: &Path, claude_pid: u32) -> Option<(bool, i64)> {
    let text = std::fs::read_to_string(turn_file(state_dir, claude_pid)).ok()?;
    let (word, ms) = text.trim().split_once(' ')?;
    let ms = ms.parse().ok()?;
    match word {
        "busy" => Some((true, ms)),
        "idle" => Some((false, ms)),
        _ => None,
    }
}

/// Claude Code ignores Stop blocks after this many in a row (`CLAUDE_CODE_STOP_HOOK_BLOCK_CAP`,
/// default 8).
pub fn stop_block_cap(env_value: Option<&str>) -> u32 {
    env_value
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &u32| n > 0)
        .unwrap_or(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_per_url_and_expires() {
        let d = tempfile::tempdir().unwrap();
        let u = "http://127.0.0.1:1";
        assert_eq!(backoff_active(d.path(), u, 100), None);
        set_backoff(d.path(), u, 1_000);
        assert_eq!(backoff_active(d.path(), u, 999), Some(true));
        assert_eq!(backoff_active(d.path(), u, 1_000), Some(false));
        assert_eq!(backoff_active(d.path(), "http://other", 10), None);
        // One marker per broker: marking a second keeps the first.
        set_backoff(d.path(), "http://other", 2_000);
        assert_eq!(backoff_active(d.path(), u, 999), Some(true));
        assert_eq!(backoff_active(d.path(), "http://other", 1_999), Some(true));
        set_backoff(d.path(), u, 3_000);
        assert_eq!(backoff_active(d.path(), u, 2_999), Some(true));
        clear_backoff(d.path(), u, 10);
        assert_eq!(backoff_active(d.path(), u, 10), None);
        assert_eq!(backoff_active(d.path(), "http://other", 10), Some(true));
        // Lapsed markers go with the next clear.
        set_backoff(d.path(), u, 3_000);
        clear_backoff(d.path(), "http://third", 2_500);
        assert_eq!(backoff_active(d.path(), u, 2_500), Some(true));
        assert_eq!(backoff_active(d.path(), "http://other", 2_500), None);
        clear_backoff(d.path(), u, 2_500);
        assert!(!backoff_file(d.path()).exists());
        std::fs::write(backoff_file(d.path()), "junk").unwrap();
        assert_eq!(backoff_active(d.path(), u, 10), None);
    }

    #[test]
    fn turn_state() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(turn(d.path(), 7), None);
        set_turn(d.path(), 7, true, 10);
        assert_eq!(turn(d.path(), 7), Some((true, 10)));
        set_turn(d.path(), 7, false, 11);
        assert_eq!(turn(d.path(), 7), Some((false, 11)));
        assert_eq!(turn(d.path(), 8), None);
    }

    #[test]
    fn stop_streaks() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(stop_streak(d.path(), 7, true), 1);
        set_stop_streak(d.path(), 7, 5);
        assert_eq!(stop_streak(d.path(), 7, true), 5);
        assert_eq!(stop_streak(d.path(), 8, true), 1);
        assert_eq!(stop_streak(d.path(), 7, false), 0);
        assert_eq!(stop_streak(d.path(), 7, true), 1);
        assert_eq!(stop_block_cap(None), 8);
        assert_eq!(stop_block_cap(Some("3")), 3);
        assert_eq!(stop_block_cap(Some("0")), 8);
        assert_eq!(stop_block_cap(Some("x")), 8);
    }
}
