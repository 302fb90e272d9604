//! The front of the hook: the installed `peers-deliver` is a small binary that does only the
//! part of an event that needs no network (read stdin, find the session file, record the
//! turn state, check the backoff and mail markers) and, when the event must ask a broker,
//! `exec`s the full hook `peers-deliver-net` beside it, which does the whole event again with
//! the network (docs/ARCHITECTURE.md, "The hook's two binaries").
//!
//! Why two binaries: the common no-mail event on a local broker makes no request, so what it
//! costs is mostly the start of the process, and a process that links the HTTP client, TLS
//! and the async runtime starts measurably slower than one that does not (docs/BENCHMARKS.md,
//! "The hook's front"). The front is generic code of this crate ([`crate::deliver::run_with`]
//! with an `online` step that execs), so both binaries make the same decisions.
//!
//! The full hook gets the event on its stdin as before: the front writes the input it parsed
//! ([`crate::input::HookInput`], only the fields the hook reads) to an unlinked temporary
//! file and makes that the new process's stdin. `exec` keeps the pid and the parent, so the
//! full hook finds the same session. Any other argument (`--wait`, `--wait-codex`,
//! `--version`) goes to the full hook unchanged.

use std::io::{Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use crate::debug;
use crate::deliver::Ask;

/// The full hook's file name; it lives in the front's directory.
pub const FULL_BIN: &str = "peers-deliver-net";

/// The full hook beside the running front.
pub fn full_bin() -> Option<PathBuf> {
    Some(std::env::current_exe().ok()?.with_file_name(FULL_BIN))
}

/// Runs the front with `args` (without the program name); returns the exit code when it does
/// not exec the full hook.
pub fn run(args: &[String]) -> i32 {
    if !args.is_empty() {
        exec_full(args, None);
        return 0;
    }
    crate::deliver::run_with(hand_on)
}

/// The front's `online` step: the full hook takes the event over (this returns only when it
/// cannot be started; the event then shows nothing and its mail waits for the next one).
fn hand_on(ask: Ask<'_>, out: &mut dyn Write) -> bool {
    let _ = out.flush();
    match serde_json::to_vec(ask.input) {
        Ok(input) => exec_full(&[], Some(&input)),
        Err(e) => debug(|| format!("cannot pass the hook input on: {e}")),
    }
    false
}

/// Replaces this process with the full hook, `input` on its stdin (else this stdin); returns
/// only on failure, which it logs.
fn exec_full(args: &[String], input: Option<&[u8]>) {
    let Some(bin) = full_bin() else {
        debug(|| "cannot find this binary's directory".into());
        return;
    };
    let mut cmd = Command::new(&bin);
    cmd.args(args);
    if let Some(bytes) = input {
        let stdin = tempfile::tempfile().and_then(|mut f| {
            f.write_all(bytes)?;
            f.rewind()?;
            Ok(f)
        });
        match stdin {
            Ok(f) => {
                cmd.stdin(f);
            }
            Err(e) => {
                debug(|| format!("cannot pass the hook input on: {e}"));
                return;
            }
        }
    }
    let e = cmd.exec();
    debug(|| format!("cannot run the full hook {}: {e}", bin.display()));
}
