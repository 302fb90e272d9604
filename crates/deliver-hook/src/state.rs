//! Small files the hook keeps in the state dir between runs.
//!
//! * `hook-backoff`: after a failure to reach the broker, `<until_ms> <broker_url>`; until
//!   then, hooks for that broker skip the network entirely (an unreachable broker costs one
//!   file read per tool call, not a connect timeout).
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

/// Whether calls to `url` are being skipped at `now_ms`. `Some(true)`: skip; `Some(false)`:
/// a marker exists but is stale or for another broker; `None`: no marker.
pub fn backoff_active(state_dir: &Path, url: &str, now_ms: i64) -> Option<bool> {
    let text = std::fs::read_to_string(backoff_file(state_dir)).ok()?;
    let (until, marked) = text.trim().split_once(' ')?;
    let until: i64 = until.parse().ok()?;
    Some(marked == url && now_ms < until)
}

/// Marks `url` unreachable until `until_ms` (best effort).
pub fn set_backoff(state_dir: &Path, url: &str, until_ms: i64) {
    let _ = peers_core::paths::write_private_file(
        &backoff_file(state_dir),
        format!("{until_ms} {url}\n").as_bytes(),
    );
}

pub fn clear_backoff(state_dir: &Path) {
    let _ = std::fs::remove_file(backoff_file(state_dir));
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
        assert_eq!(backoff_active(d.path(), "http://other", 10), Some(false));
        clear_backoff(d.path());
        assert_eq!(backoff_active(d.path(), u, 10), None);
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
