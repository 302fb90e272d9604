//! Hostile local input is bounded: a stdin that sends part of the JSON and stays open, and
//! session files that are symlinks, FIFOs or too big. Each time the hook exits 0 quickly with
//! no output and the mail stays queued.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;
use peers_core::session::SessionFile;
use peers_core::wire::MessageState;
use peers_testkit::ChildGuard;

/// The generous bound the issue names ("within a few seconds").
const BOUND: Duration = Duration::from_secs(8);

/// Runs the hook with `input` and stdin left open; returns (exit code, stdout) if it exited
/// within [`BOUND`]. Its address space is capped at 1 GiB so that a hook which reads without
/// a bound fails instead of eating the machine's memory.
fn run_open_stdin(mut cmd: Command, input: &str) -> (Option<i32>, String) {
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &cap);
            Ok(())
        });
    }
    let mut hook = ChildGuard::new(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = hook.child().stdin.take().unwrap();
    let _ = stdin.write_all(input.as_bytes());
    let _ = stdin.flush();
    let mut stdout = hook.child().stdout.take().unwrap();
    let status = hook.wait_timeout(BOUND);
    drop(stdin);
    let mut out = String::new();
    if status.is_some() {
        use std::io::Read;
        stdout.read_to_string(&mut out).unwrap();
    }
    (status.and_then(|s| s.code()), out)
}

#[tokio::test]
async fn partial_json_on_a_stdin_left_open_is_given_up_after_the_deadline() {
    let h = Harness::start(&[]).await;
    let id = h.send("waits for a whole hook input").await;
    let (code, stdout) = run_open_stdin(h.hook(&[]), r#"{"hook_ev"#);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), ""),
        "the hook must exit 0 with no output within {BOUND:?}"
    );
    assert_eq!(h.status(id).await.status, MessageState::Queued);
}

#[tokio::test]
async fn session_files_that_are_not_small_regular_files_are_ignored() {
    let h = Harness::start(&[]).await;
    let id = h.send("only for the real session file").await;
    let path = SessionFile::path(&h.env.state_dir, h.me.claude_pid);
    let good = std::fs::read(&path).unwrap();

    // A symlink to /dev/zero (an endless read), and a symlink to a good file.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let (code, stdout) = run_open_stdin(h.hook(&[]), POST_TOOL_USE);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), ""),
        "symlink to /dev/zero"
    );
    let elsewhere = h.env.dir.path().join("elsewhere.json");
    std::fs::write(&elsewhere, &good).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    let (code, stdout) = run_open_stdin(h.hook(&[]), POST_TOOL_USE);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), ""),
        "symlink to a session"
    );

    // A FIFO nobody writes to (opening it for reading would block).
    std::fs::remove_file(&path).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path inside the test's temp dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, stdout) = run_open_stdin(h.hook(&[]), POST_TOOL_USE);
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "FIFO");

    // A valid session file padded to 100 KiB: over the 64 KiB bound, so not read.
    std::fs::remove_file(&path).unwrap();
    let mut big = good.clone();
    big.resize(100 * 1024, b' ');
    std::fs::write(&path, &big).unwrap();
    assert!(serde_json::from_slice::<SessionFile>(&big).is_ok());
    let (code, stdout) = run_open_stdin(h.hook(&[]), POST_TOOL_USE);
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "100 KiB file");
    assert_eq!(h.status(id).await.status, MessageState::Queued);

    // The same file at its real size is read, and the mail is delivered.
    std::fs::write(&path, &good).unwrap();
    let r = h.run(POST_TOOL_USE);
    assert_eq!(stdout_ids(&r.stdout), vec![id], "{:?}", r.stdout);
}
