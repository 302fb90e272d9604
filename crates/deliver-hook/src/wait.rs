//! `peers-deliver --wait`: the asyncRewake hook (on SessionStart and on Stop) that wakes an
//! idle session when mail arrives.
//!
//! Armed at SessionStart, it covers a session that never finished a turn (and so never ran a
//! Stop hook); there the session file may not exist yet, since `peers-mcp` registers at the
//! same time, so it waits for it up to [`SESSION_FILE_WAIT`] while its Claude Code process
//! lives. Each Stop arms a new waiter, which supersedes the one before (the broker answers
//! the older long poll with `superseded`).
//!
//! Long-polls `GET /v1/inbox/wait` until the broker says mail is queued, then claims it as an
//! automatic delivery (it starts a turn by itself, so it counts against the loop budget),
//! writes the framed mail to stderr, acks it with `via = "wake"` and exits 2. Exits 0 when a
//! newer waiter of the same session supersedes it, when the Claude Code process or its session
//! file is gone, when the loop budget is exhausted, when mail arrives while a turn is running
//! (the turn's own hooks deliver it; see [`turn_running`]), and in headless sessions unless
//! `wait_headless` is set. A broker that goes away is waited for (peers-mcp restarts it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peers_core::config::Config;
use peers_core::process;
use peers_core::render::{self, Occasion};
use peers_core::session::SessionFile;
use peers_core::wire::{ClaimRequest, WaitQuery};
use peers_core::{BrokerClient, ClientError};

use crate::input::Event;
use crate::{EXIT_WAKE, debug, deliver, locate};

/// How long one long poll is held by the broker.
pub const POLL_MS: u64 = 30_000;
/// Mail already queued when the waiter starts is left a moment to the ordinary Stop hook,
/// which delivers it without ending the turn.
pub const START_GRACE: Duration = Duration::from_millis(300);
/// How often the waiter checks that its Claude Code process and session file still exist.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);
/// The via of a wake ack.
pub const VIA: &str = "wake";
/// At SessionStart, how long the waiter waits for `peers-mcp` to register and write the
/// session file (it may start the broker first). Longer than the ordinary hook's 2 s: the
/// waiter runs in the background and holds up nothing.
pub const SESSION_FILE_WAIT: Duration = Duration::from_secs(120);

/// Whether this session may wait: interactive sessions always, headless (`-p`) only when
/// configured, since `-p` waits for such a hook before exiting.
pub fn should_wait(attended_env: Option<&str>, wait_headless: bool) -> bool {
    attended_env.map(str::trim) != Some("0") || wait_headless
}

/// How the waiter wakes its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waker {
    /// Claude Code's asyncRewake: the text on stderr, exit 2.
    Rewake,
    /// `codex queue --thread <thread>` with the text, through `bin` (`codex.rs`).
    CodexQueue { thread: String, bin: PathBuf },
}

/// `peers-deliver --wait-codex <thread>`, started by [`crate::codex::arm`] with `CLAUDE_PID`
/// naming the Codex process (no hook input).
pub fn run_codex(thread: Option<&str>) -> i32 {
    let Some(thread) = thread.filter(|t| crate::codex::valid_thread(t)) else {
        debug(|| "--wait-codex without a thread id".into());
        return 0;
    };
    let Some(cfg) = crate::load_config() else {
        return 0;
    };
    let env_pid = std::env::var("CLAUDE_PID").ok();
    let Some(session) = locate::find_session(&cfg.state_dir, env_pid.as_deref()) else {
        debug(|| "no session file: not waiting".into());
        return 0;
    };
    let waker = Waker::CodexQueue {
        thread: thread.to_string(),
        bin: crate::codex::codex_bin(session.claude_pid),
    };
    let Some(rt) = crate::runtime() else { return 0 };
    let code = rt.block_on(wait_loop(&cfg, session, &waker));
    rt.shutdown_background();
    code
}

pub fn run() -> i32 {
    // Read the hook JSON in any case, so Claude Code's write never fails; only the event
    // (and its source) matters here.
    let input = crate::read_input();
    let at_start = input.as_ref().and_then(|i| i.event()) == Some(Event::SessionStart);
    if at_start && input.as_ref().and_then(|i| i.source.as_deref()) == Some("compact") {
        // A compaction happens inside a turn: that turn's Stop arms the next waiter.
        debug(|| "SessionStart after a compaction: not waiting".into());
        return 0;
    }
    let Some(cfg) = crate::load_config() else {
        return 0;
    };
    let attended = std::env::var("CLAUDE_CODE_SESSION_ATTENDED").ok();
    if !should_wait(attended.as_deref(), cfg.wait_headless) {
        debug(|| "headless session: not waiting".into());
        return 0;
    }
    let env_pid = std::env::var("CLAUDE_PID").ok();
    let found = if at_start {
        wait_for_session(&cfg.state_dir, env_pid.as_deref(), SESSION_FILE_WAIT)
    } else {
        locate::find_session(&cfg.state_dir, env_pid.as_deref())
    };
    let Some(session) = found else {
        debug(|| "no session file: not waiting".into());
        return 0;
    };
    let Some(rt) = crate::runtime() else { return 0 };
    let code = rt.block_on(wait_loop(&cfg, session, &Waker::Rewake));
    // Don't linger on the runtime's shutdown: nothing else is pending.
    rt.shutdown_background();
    code
}

/// Looks for this hook's session file until it appears, `limit` passes, or the Claude Code
/// process is gone (`CLAUDE_PID` no longer alive, or this hook's parent gone: then it was
/// re-parented).
pub fn wait_for_session(
    state_dir: &Path,
    env_pid: Option<&str>,
    limit: Duration,
) -> Option<SessionFile> {
    let started = Instant::now();
    let parent = std::os::unix::process::parent_id();
    let claude_pid = env_pid.and_then(|p| p.trim().parse::<u32>().ok());
    loop {
        if let Some(s) = locate::find_session(state_dir, env_pid) {
            return Some(s);
        }
        let gone = std::os::unix::process::parent_id() != parent
            || claude_pid.is_some_and(|p| !process::pid_alive(p));
        if gone || started.elapsed() >= limit {
            debug(|| format!("no session file after {:?}", started.elapsed()));
            return None;
        }
        // Quick at first (peers-mcp usually registers within a second), then relaxed.
        let step = if started.elapsed() < Duration::from_secs(3) {
            50
        } else {
            250
        };
        std::thread::sleep(Duration::from_millis(step));
    }
}

/// Resolves when the session is over: its Claude Code process (that pid with that start time)
/// or its session file is gone.
async fn session_over(path: PathBuf, claude_pid: u32, start: Option<u64>) {
    loop {
        if !process::is_same(claude_pid, start) || !path.exists() {
            return;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Sleeps `d`, or returns `true` early when the session ended meanwhile.
async fn sleep_or_over(d: Duration, path: &Path, claude_pid: u32, start: Option<u64>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = session_over(path.to_path_buf(), claude_pid, start) => true,
    }
}

async fn wait_loop(cfg: &Config, mut session: SessionFile, waker: &Waker) -> i32 {
    let started = Instant::now();
    let started_ms = peers_core::now_ms();
    let path = SessionFile::path(&cfg.state_dir, session.claude_pid);
    let (pid, start) = (session.claude_pid, session.claude_start_time);
    let mut client = deliver::client(cfg, &session);
    let mut retry = Duration::from_millis(250);
    let mut auth_failures = 0;
    let mut first = true;
    loop {
        // Re-read the session file: peers-mcp rewrites it when it re-registers after a broker
        // restart (possibly with a new token); it removes it when the session ends.
        match SessionFile::read(&cfg.state_dir, pid) {
            // Only this Claude Code process's file: another process given its pid is another
            // session.
            Ok(Some(s)) if s.claude_pid == pid && s.claude_start_time == start => {
                if s.token != session.token || s.broker_urls() != session.broker_urls() {
                    debug(|| "session file changed: new credentials".into());
                    client = deliver::client(cfg, &s);
                    session = s;
                }
            }
            _ => {
                debug(|| "session file gone: done".into());
                return 0;
            }
        }
        let q = WaitQuery {
            timeout_ms: Some(POLL_MS),
        };
        let res = tokio::select! {
            r = client.wait(&q) => r,
            _ = session_over(path.clone(), pid, start) => {
                debug(|| "session ended while waiting".into());
                return 0;
            }
        };
        let was_first = std::mem::replace(&mut first, false);
        match res {
            Ok(w) if w.superseded => {
                debug(|| "superseded by a newer waiter".into());
                return 0;
            }
            Ok(w) if w.mail => {
                retry = Duration::from_millis(250);
                auth_failures = 0;
                if was_first {
                    let e = started.elapsed();
                    if e < START_GRACE && sleep_or_over(START_GRACE - e, &path, pid, start).await {
                        return 0;
                    }
                }
                if turn_running(cfg, pid, started_ms) {
                    debug(|| "a turn is running: its own hooks deliver the mail".into());
                    return 0;
                }
                match deliver_wake(cfg, &client, &session, waker).await {
                    Some(code) => return code,
                    // Someone else took it: wait again, not in a tight loop.
                    None => {
                        if sleep_or_over(Duration::from_millis(200), &path, pid, start).await {
                            return 0;
                        }
                    }
                }
            }
            Ok(_) => {
                retry = Duration::from_millis(250);
                auth_failures = 0;
            }
            Err(e) => {
                debug(|| format!("wait failed: {e}"));
                // Unreachable, or the database behind every broker down (503): wait on.
                if !e.is_unreachable() && e.status() != Some(503) {
                    let auth = matches!(e.status(), Some(401 | 403))
                        || e.code() == Some(peers_core::wire::ErrorCode::UnknownPeer);
                    auth_failures += 1;
                    // A stale token is fixed when peers-mcp re-registers; anything else (or a
                    // token that stays bad) ends the wait.
                    if !auth || auth_failures > 5 {
                        return 0;
                    }
                }
                if sleep_or_over(retry, &path, pid, start).await {
                    return 0;
                }
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How far before the waiter's own start a `busy` mark still counts: the ordinary Stop hook
/// that runs beside the waiter may write it a moment before the waiter starts.
pub const BUSY_SLACK_MS: i64 = 2_000;

/// Whether the session is in a turn now (a prompt was submitted after this waiter started, or
/// the Stop that started it blocked and the turn goes on). Then the turn's own PostToolUse
/// and Stop hooks deliver the mail, and its next Stop starts a new waiter: waking now would
/// only spend the loop budget and race them.
pub fn turn_running(cfg: &Config, claude_pid: u32, started_ms: i64) -> bool {
    matches!(
        crate::state::turn(&cfg.state_dir, claude_pid),
        Some((true, at)) if at >= started_ms - BUSY_SLACK_MS
    )
}

/// Claims and hands the wake text to `waker`. `Some(exit code)` when done, `None` when there
/// was nothing to claim after all.
async fn deliver_wake(
    cfg: &Config,
    client: &BrokerClient,
    session: &SessionFile,
    waker: &Waker,
) -> Option<i32> {
    let claim = ClaimRequest {
        max: Some(deliver::CLAIM_MAX),
        lease_ms: Some(cfg.lease_ms),
        automatic: true,
    };
    let resp = match client.claim(&claim).await {
        Ok(r) => r,
        Err(e) => return claim_error(e),
    };
    if resp.budget_exhausted {
        debug(|| "loop budget exhausted: not waking".into());
        return Some(0);
    }
    if resp.messages.is_empty() {
        return None;
    }
    crate::pause_after_claim();
    let tools = session.tool_names();
    let framed = render::frame(
        deliver::me(session, &tools),
        Occasion::Wake,
        &resp.messages,
        false,
        render::DEFAULT_BUDGET,
    )?;
    let code = match waker {
        Waker::Rewake => {
            let mut err = std::io::stderr().lock();
            if err
                .write_all(framed.text.as_bytes())
                .and_then(|_| err.flush())
                .is_err()
            {
                return Some(0);
            }
            EXIT_WAKE
        }
        Waker::CodexQueue { thread, bin } => {
            if !crate::codex::queue(bin, thread, &framed.text).await {
                // Not acked: the lease lapses and the mail comes back.
                return Some(0);
            }
            debug(|| format!("queued the mail into Codex thread {thread}"));
            0
        }
    };
    if let Some(lease_id) = resp.lease_id {
        let req = peers_core::wire::AckRequest {
            lease_id,
            via: VIA.to_string(),
            message_ids: (framed.shown.len() != resp.messages.len()).then(|| framed.shown.clone()),
        };
        if let Err(e) = client.ack(&req).await {
            debug(|| format!("wake ack failed: {e}"));
        }
    }
    Some(code)
}

fn claim_error(e: ClientError) -> Option<i32> {
    debug(|| format!("wake claim failed: {e}"));
    // Back to waiting: the next wait says whether mail is still there.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_sessions_do_not_wait_unless_asked() {
        assert!(should_wait(Some("1"), false));
        assert!(should_wait(None, false));
        assert!(!should_wait(Some("0"), false));
        assert!(should_wait(Some("0"), true));
    }
}
