//! Waking an idle interactive Codex CLI session: Codex has no asyncRewake, but
//! `codex queue --thread <session_id> --message <text>` makes an idle TUI start a turn with
//! that text as the user's message.
//!
//! The ordinary hook, on a Codex Stop that did not block (the session goes idle) and on
//! SessionStart, starts the Codex waiter in the background ([`arm`]): `peers-deliver
//! --wait-codex <thread>`, detached (its own session, no stdio), told its Codex process
//! through `CLAUDE_PID`. It is the waiter of `wait.rs` with another last step: when mail
//! arrives while the session is idle it claims it as an automatic delivery (so it counts
//! against the same loop budget as a Claude Code wake), runs `codex queue` with the framed
//! mail, acks it `via = "wake"` once the queue call succeeded (else the lease lapses and the
//! mail comes back), and exits. Superseding, the turn check and the end of the session work
//! as for Claude Code.
//!
//! Not for `codex exec` (headless: its process ends with the turn, and a queued message would
//! wait for a session nobody runs), recognised by the Codex process's arguments.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use peers_core::process;
use peers_core::session::SessionFile;

use crate::debug;
use crate::input::HookInput;

/// The argument that starts the Codex waiter; the thread id follows.
pub const WAIT_ARG: &str = "--wait-codex";
/// How long one `codex queue` call may take before it counts as failed.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the Codex process was started as `codex exec` (headless): its first argument that
/// is not an option is `exec` (or its alias `e`).
pub fn is_exec(args: &[String]) -> bool {
    args.iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|a| a == "exec" || a == "e")
}

/// Starts the Codex waiter for this session in the background, unless the session is
/// headless or the input has no thread id. Best effort: a failure is logged and forgotten.
pub fn arm(cfg: &peers_core::Config, session: &SessionFile, input: &HookInput) {
    let Some(thread) = input.session_id.as_deref().filter(|t| valid_thread(t)) else {
        debug(|| "Codex hook input without a usable session_id: no waiter".into());
        return;
    };
    if is_exec(&process::args(session.claude_pid)) && !cfg.wait_headless {
        debug(|| "codex exec: not waiting".into());
        return;
    }
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let mut cmd = Command::new(me);
    cmd.args([WAIT_ARG, thread])
        .env("CLAUDE_PID", session.claude_pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it detaches the waiter from the hook's process
    // group, so Codex ending the hook does not end it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(child) => debug(|| format!("started the Codex waiter (pid {})", child.id())),
        Err(e) => debug(|| format!("cannot start the Codex waiter: {e}")),
    }
}

/// A thread id as Codex writes it (a UUID): nothing that could read as an option or carry
/// anything else.
pub fn valid_thread(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && !t.starts_with('-')
}

/// The `codex` binary of the session: its process's executable.
pub fn codex_bin(codex_pid: u32) -> PathBuf {
    process::exe(codex_pid).unwrap_or_else(|| PathBuf::from("codex"))
}

/// Runs `codex queue --thread <thread> --message <text>` (in this process's environment, so
/// with the session's `CODEX_HOME`); whether it succeeded within [`QUEUE_TIMEOUT`].
pub async fn queue(bin: &Path, thread: &str, text: &str) -> bool {
    let run = tokio::process::Command::new(bin)
        .args(["queue", "--thread", thread, "--message", text])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(QUEUE_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => true,
        Ok(Ok(out)) => {
            debug(|| {
                format!(
                    "codex queue failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            });
            false
        }
        Ok(Err(e)) => {
            debug(|| format!("cannot run {}: {e}", bin.display()));
            false
        }
        Err(_) => {
            debug(|| format!("codex queue took over {QUEUE_TIMEOUT:?}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exec_is_headless() {
        assert!(is_exec(&args(&[
            "codex",
            "exec",
            "--skip-git-repo-check",
            "hi"
        ])));
        assert!(is_exec(&args(&[
            "/x/codex",
            "--dangerously-bypass-hook-trust",
            "exec",
            "hi"
        ])));
        assert!(is_exec(&args(&["codex", "e", "hi"])));
        assert!(!is_exec(&args(&["codex", "--no-alt-screen"])));
        assert!(!is_exec(&args(&["codex", "fix the exec bug"])));
        assert!(!is_exec(&args(&["codex"])));
        assert!(!is_exec(&[]));
    }

    #[test]
    fn thread_ids() {
        assert!(valid_thread("01a23224-a751-7041-a31a-170fcf6ab5b1"));
        assert!(!valid_thread(""));
        assert!(!valid_thread("--message"));
        assert!(!valid_thread("a b"));
        assert!(!valid_thread(&"a".repeat(65)));
    }
}
