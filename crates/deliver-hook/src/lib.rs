//! `peers-deliver`, the hook that puts peer mail in front of the model, for Claude Code, Codex
//! CLI and Gemini CLI.
//!
//! One command for SessionStart, UserPromptSubmit, PostToolUse and Stop (Gemini: BeforeAgent,
//! AfterTool, AfterAgent; the event and the client come from the JSON on stdin, `input.rs`):
//! find this session's file, claim queued mail from the broker (an atomic lease), print the
//! hook JSON for the event in that client's form, then ack the lease with the event name,
//! listing only the messages that fit into the text (the rest go straight back to the queue).
//!
//! `peers-deliver --wait` is registered as an `asyncRewake` Stop hook: it long-polls the
//! broker and, when mail arrives for the idle session, claims it, writes it to stderr and
//! exits 2 so Claude Code wakes the model. Codex has no asyncRewake: its Stop hook starts
//! `peers-deliver --wait-codex <thread>` in the background, which wakes the idle session with
//! `codex queue` (`codex.rs`). Gemini CLI has no wake path: its mail waits for the next hook
//! event, and senders are told it cannot be woken (no waiter is armed).
//!
//! The text comes from `peers_core::render`, the one renderer of model-facing mail, with the
//! tool names of this session's client (`SessionFile::tool_prefix`).
//!
//! Whatever fails, the hook exits 0 with nothing on stdout, quickly: a broken mail system must
//! never break or slow the user's session. See `docs/ARCHITECTURE.md` for the choices.

pub mod codex;
pub mod deliver;
pub mod front;
pub mod input;
pub mod locate;
pub mod state;
pub mod wait;

use std::io::{IsTerminal, Read, Write};

use std::time::Duration;

/// Exit code that makes Claude Code wake the session with the hook's stderr (asyncRewake).
pub const EXIT_WAKE: i32 = 2;

/// Test-only: sleep this many ms between claim and printing (to show that a hook killed
/// there leaves the mail to be delivered again).
pub const PAUSE_AFTER_CLAIM_ENV: &str = "PEERS_DELIVER_TEST_PAUSE_AFTER_CLAIM_MS";
/// Set to a file path to append a line about each decision there (never stdout or stderr:
/// stdout is the hook's answer and stderr is the waiter's wake text).
pub const DEBUG_ENV: &str = "PEERS_DELIVER_DEBUG";

/// Largest stdin the hook reads (tool responses can be big; the hook needs only the head).
const MAX_STDIN: u64 = 8 << 20;

/// How long the hook waits for its JSON on stdin; after that it goes on as with no input.
pub const STDIN_DEADLINE: Duration = Duration::from_secs(2);

/// Appends a line to the debug log when `PEERS_DELIVER_DEBUG` names one.
pub fn debug(msg: impl FnOnce() -> String) {
    if let Some(path) = std::env::var_os(DEBUG_ENV).filter(|p| !p.is_empty())
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(
            f,
            "{} peers-deliver[{}]: {}",
            peers_core::now_ms(),
            std::process::id(),
            msg()
        );
    }
}

/// Reads one JSON value from stdin as the hook input. It stops at the end of that value, so
/// a client that keeps stdin open after it does not hang the hook, and it gives up after
/// [`STDIN_DEADLINE`] (a writer that sent part of a value and keeps the pipe open). `None`
/// for a terminal, empty, malformed or late input.
pub fn read_input() -> Option<input::HookInput> {
    if std::io::stdin().is_terminal() {
        return None;
    }
    // On this thread (a thread of its own would cost more than the rest of a no-mail run):
    // every read first waits for input with poll(2), at most until the deadline.
    let stdin = UntilDeadline {
        deadline: std::time::Instant::now() + STDIN_DEADLINE,
    };
    parse_input(std::io::BufReader::with_capacity(
        64 << 10,
        stdin.take(MAX_STDIN),
    ))
}

/// Stdin (fd 0, unbuffered) whose reads fail with `TimedOut` once `deadline` passes without
/// input.
struct UntilDeadline {
    deadline: std::time::Instant,
}

impl Read for UntilDeadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let left = self
                .deadline
                .saturating_duration_since(std::time::Instant::now());
            // Rounded up: a wait of 0 ms before the deadline would spin.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let mut fd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            match unsafe { libc::poll(&mut fd, 1, ms) } {
                0 => return Err(std::io::ErrorKind::TimedOut.into()),
                n if n > 0 => break,
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        // SAFETY: a read into `buf`, which is valid for `buf.len()` bytes.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// The first JSON value of `reader` as hook input.
fn parse_input(reader: impl Read) -> Option<input::HookInput> {
    match serde_json::Deserializer::from_reader(reader)
        .into_iter::<input::HookInput>()
        .next()
    {
        Some(Ok(i)) => Some(i),
        Some(Err(e)) if e.io_error_kind() == Some(std::io::ErrorKind::TimedOut) => {
            debug(|| format!("no complete hook JSON on stdin within {STDIN_DEADLINE:?}"));
            None
        }
        Some(Err(e)) => {
            debug(|| format!("stdin is not hook JSON: {e}"));
            None
        }
        None => {
            debug(|| "stdin is empty".into());
            None
        }
    }
}

/// The config, or `None` (logged to the debug file) when it cannot be read: the hook then
/// does nothing.
pub fn load_config() -> Option<peers_core::Config> {
    peers_core::Config::load()
        .inspect_err(|e| debug(|| format!("config: {e}")))
        .ok()
}

/// A single-threaded runtime: the hook does one or two requests, so no worker threads.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .ok()
}

pub(crate) fn pause_after_claim() {
    if let Some(ms) = std::env::var(PAUSE_AFTER_CLAIM_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        debug(|| format!("test pause after claim: {ms} ms"));
        std::thread::sleep(Duration::from_millis(ms));
    }
}

const USAGE: &str = "peers-deliver: the hook of peers (Claude Code, Codex CLI, Gemini CLI)

Run by the agent CLI on SessionStart, UserPromptSubmit, PostToolUse and Stop (Gemini CLI:
BeforeAgent, AfterTool, AfterAgent) with the hook JSON on stdin; prints the hook JSON that
shows waiting peer mail to the model, in that client's form.

  peers-deliver                     one hook event (reads stdin)
  peers-deliver --wait              asyncRewake Stop hook: wait for mail, wake the idle
                                    Claude Code session (exit 2)
  peers-deliver --wait-codex ID     started by the Codex Stop hook itself: wait for mail,
                                    wake the idle Codex session with `codex queue`

`peers install` registers both. Whatever fails, the hook exits 0 with no output.
";

/// Runs the binary with `args` (without the program name); returns the exit code.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        None => deliver::run(),
        Some("--wait") => wait::run(),
        Some(codex::WAIT_ARG) => wait::run_codex(args.get(1).map(String::as_str)),
        Some("--version" | "-V") => {
            println!("peers-deliver {}", peers_core::VERSION);
            0
        }
        Some("--help" | "-h") => {
            print!("{USAGE}");
            0
        }
        Some(other) => {
            debug(|| format!("unknown argument {other:?}"));
            0
        }
    }
}
