//! A session is its Claude Code pid **plus that process's start time**: a process that is
//! given the pid of a crashed session is not that session — the hook shows it none of the old
//! session's mail (nor acks it), and its `peers-mcp` registers as a new session.

// The helpers of the main test binary; this one uses a few of them.
#[allow(dead_code)]
#[path = "../util.rs"]
mod util;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use peers_core::process;
use peers_core::session::SessionFile;
use peers_core::wire::{ListPeersQuery, MessageState, SendRequest};
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv, bin, eventually};
use util::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_session_file_recorded_for_another_start_time_is_ignored() {
    let h = Harness::start(&[]).await;
    let id = h.send("only for the process that registered").await;
    let path = SessionFile::path(&h.env.state_dir, h.me.claude_pid);
    let good = SessionFile::read(&h.env.state_dir, h.me.claude_pid)
        .unwrap()
        .unwrap();
    assert!(good.claude_start_time.is_some());

    // The file names this pid, but a process that started at another time.
    let mut other = good.clone();
    other.claude_start_time = good.claude_start_time.map(|t| t + 1);
    other.write(&h.env.state_dir).unwrap();
    let r = h.run(POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    // A file without a start time (an older peers-mcp) written before the process started.
    let mut old = good.clone();
    old.claude_start_time = None;
    old.written_ms = process::started_ms(h.me.claude_pid).unwrap() - 60_000;
    old.write(&h.env.state_dir).unwrap();
    let r = h.run(POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    assert_eq!(h.status(id).await.status, MessageState::Queued);

    // The right file delivers.
    std::fs::remove_file(&path).unwrap();
    good.write(&h.env.state_dir).unwrap();
    let r = h.run(POST_TOOL_USE);
    assert_eq!(stdout_ids(&r.stdout), vec![id], "{:?}", r.stdout);
}

/// Whether this test may set the next pid (root, `/proc/sys/kernel/ns_last_pid` writable).
fn can_set_next_pid() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/kernel/ns_last_pid")
        .is_ok()
}

/// Spawns `cmd` so that it gets `pid`, by setting the pid namespace's last pid just below it.
/// Another process forking in between takes the pid first: kill ours and try again.
fn spawn_at_pid(cmd: &mut Command, pid: u32) -> Child {
    for _ in 0..500 {
        if process::pid_alive(pid) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut child = cmd.spawn().unwrap();
        if child.id() == pid {
            return child;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not get pid {pid} for a new process");
}

/// A stand-in Claude Code process: a shell that waits for a line on stdin, then runs the real
/// `peers-mcp` as its child in `cwd` (the shell is the session's Claude Code pid).
fn stand_in(env: &TestEnv, cwd: &Path) -> Command {
    std::fs::create_dir_all(cwd).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"read go; "$0"; exit 0"#)
        .arg(bin("peers-mcp"));
    env.apply(&mut cmd);
    cmd.env_remove("CLAUDECODE")
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn go(claude: &mut Child) {
    let stdin = claude.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
}

/// Kills every process that carries this test's state dir (peers-mcp servers) when dropped.
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        peers_testkit::kill_processes_with_env(std::slice::from_ref(&self.0));
    }
}

#[tokio::test]
async fn a_process_given_the_pid_of_a_crashed_session_is_a_new_session() {
    if !can_set_next_pid() {
        eprintln!(
            "SKIPPED: a_process_given_the_pid_of_a_crashed_session_is_a_new_session needs root \
             (it writes /proc/sys/kernel/ns_last_pid to hand a pid to a new process)"
        );
        return;
    }
    let mut env = TestEnv::new();
    env.set("PEERS_HOST", "testbox")
        .set("PEERS_HEARTBEAT_MS", "300")
        .set("PEERS_SWEEP_MS", "200");
    let _reaper = Reaper(peers_testkit::state_dir_marker(&env));
    let _broker = BrokerProcess::start(&env).await;
    let user = env.user_client();
    let state = env.state_dir.clone();

    // The session that will crash, with mail waiting for it.
    let mut old = ChildGuard::new(
        stand_in(&env, &env.dir.path().join("work/old"))
            .spawn()
            .unwrap(),
    );
    go(old.child());
    let pid = old.pid();
    let old_file = eventually(WAIT, "the first session registers", || {
        let state = state.clone();
        async move { SessionFile::read(&state, pid).ok().flatten() }
    })
    .await;
    assert_eq!(old_file.name, "old");
    assert_eq!(old_file.claude_start_time, process::start_time(pid));
    let id = user
        .send(&SendRequest {
            tags: vec![],
            to: "old".into(),
            message: "for the old session only".into(),
            reply_to: None,
            scope: None,
        })
        .await
        .unwrap()
        .message_id;

    // It crashes: Claude Code and its peers-mcp killed at once, no goodbye, the file left.
    // SAFETY: kill(2) of the peers-mcp this test started.
    unsafe { libc::kill(old_file.mcp_pid as libc::pid_t, libc::SIGKILL) };
    old.kill();
    eventually(WAIT, "the old peers-mcp is gone", || async {
        (!process::running(old_file.mcp_pid)).then_some(())
    })
    .await;
    assert!(SessionFile::path(&state, pid).exists());

    // A new process, elsewhere, is given the same pid.
    let mut new = ChildGuard::new(spawn_at_pid(
        &mut stand_in(&env, &env.dir.path().join("work/new")),
        pid,
    ));
    assert_eq!(new.pid(), pid);
    assert_ne!(process::start_time(pid), old_file.claude_start_time);

    // A hook of the new process (Claude Code sets CLAUDE_PID) before its peers-mcp runs:
    // the old session's file is not its own.
    let hook = || {
        let mut cmd = Command::new(hook_bin());
        env.apply(&mut cmd)
            .env("CLAUDE_PID", pid.to_string())
            .env("CLAUDE_CODE_SESSION_ATTENDED", "1");
        cmd
    };
    let r = run_with(hook(), POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""), "{}", r.stderr);
    assert_eq!(
        user.message_status(id).await.unwrap().status,
        MessageState::Queued
    );

    // Its peers-mcp registers as a new session: its own id and name, none of the old mail.
    go(new.child());
    let new_file = eventually(WAIT, "the new session registers", || {
        let (state, old_id) = (state.clone(), old_file.peer_id.clone());
        async move {
            SessionFile::read(&state, pid)
                .ok()
                .flatten()
                .filter(|f| f.peer_id != old_id)
        }
    })
    .await;
    assert_eq!(
        new_file.name, "new",
        "it does not take the old session's name"
    );
    assert_eq!(new_file.claude_start_time, process::start_time(pid));
    let peers = user
        .list_peers(&ListPeersQuery {
            include_gone: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .peers;
    let find = |peer_id: &str| {
        peers
            .iter()
            .find(|p| p.peer_id == peer_id)
            .unwrap_or_else(|| panic!("{peer_id} in {peers:?}"))
    };
    let (o, n) = (find(&old_file.peer_id), find(&new_file.peer_id));
    assert!(!o.alive, "the crashed session is over: {o:?}");
    assert_eq!(o.queued, 1, "its mail still waits for it: {o:?}");
    assert!(n.alive, "{n:?}");
    assert_eq!(n.queued, 0, "the new session inherited nothing: {n:?}");

    // The hook of the new session now finds its own session, with no mail.
    let r = run_with(hook(), POST_TOOL_USE);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""), "{}", r.stderr);
    let st = user.message_status(id).await.unwrap();
    assert_eq!(st.status, MessageState::Queued, "{st:?}");
}
