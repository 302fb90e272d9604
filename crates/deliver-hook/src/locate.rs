//! Which session is this hook part of: `CLAUDE_PID` when it names a session file, else the
//! nearest ancestor process that has one (`<state_dir>/sessions/<pid>.json`).
//!
//! The walk reads `/proc/<pid>/stat` on Linux (a few microseconds per step, no process
//! spawned); elsewhere it asks sysinfo about one pid at a time.

use std::path::Path;

use peers_core::session::SessionFile;

/// How many ancestors the walk visits at most (claude -> sh -> hook is two; wrappers add a few).
pub const MAX_DEPTH: usize = 32;

/// Finds the session for this process. `claude_pid_env` is the value of `CLAUDE_PID`.
pub fn find_session(state_dir: &Path, claude_pid_env: Option<&str>) -> Option<SessionFile> {
    if let Some(pid) = claude_pid_env.and_then(|s| s.trim().parse::<u32>().ok())
        && let Some(s) = read_session(state_dir, pid)
    {
        return Some(s);
    }
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..MAX_DEPTH {
        if pid <= 1 {
            return None;
        }
        if let Some(s) = read_session(state_dir, pid) {
            return Some(s);
        }
        pid = parent_of(pid)?;
    }
    None
}

/// The session file of `pid`, if there is a readable one that names that pid.
fn read_session(state_dir: &Path, pid: u32) -> Option<SessionFile> {
    SessionFile::read(state_dir, pid)
        .ok()
        .flatten()
        .filter(|s| s.claude_pid == pid)
}

/// The parent pid of `pid`.
#[cfg(target_os = "linux")]
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ppid(&stat)
}

#[cfg(not(target_os = "linux"))]
pub fn parent_of(pid: u32) -> Option<u32> {
    parent_of_sysinfo(pid)
}

/// The parent pid from sysinfo (the portable way; compiled on Linux for tests only).
#[cfg(any(not(target_os = "linux"), test))]
pub fn parent_of_sysinfo(pid: u32) -> Option<u32> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let mut sys = System::new().ok()?;
    let p = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[p]),
        false,
        ProcessRefreshKind::nothing(),
    );
    sys.process(p)?.parent().map(|pp| pp.as_u32())
}

/// `pid (comm) S ppid …`: the command name may hold spaces and parentheses, so the fields are
/// counted from the last `)`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        assert_eq!(parse_stat_ppid("123 (sh) S 45 123 123 0"), Some(45));
        assert_eq!(parse_stat_ppid("9 (a) b (c)) R 7 1 1"), Some(7));
        assert_eq!(parse_stat_ppid("9 (x y) S"), None);
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn proc_and_sysinfo_agree_on_our_parent() {
        let me = std::process::id();
        let want = std::os::unix::process::parent_id();
        assert_eq!(parent_of(me), Some(want));
        assert_eq!(parent_of_sysinfo(me), Some(want));
    }

    fn session(pid: u32) -> SessionFile {
        SessionFile {
            peer_id: format!("p{pid}"),
            name: "api".into(),
            address: "api@box".into(),
            token: "t".into(),
            broker_url: "http://127.0.0.1:1".into(),
            claude_pid: pid,
            mcp_pid: 1,
            session_id: None,
            machine_id: "m".into(),
            cwd: "/x".into(),
            written_ms: 1,
            tool_prefix: peers_core::render::DEFAULT_TOOL_PREFIX.into(),
        }
    }

    #[test]
    fn env_pid_first_then_ancestry() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_session(dir.path(), None), None);
        assert_eq!(find_session(dir.path(), Some("4242")), None);

        // The test runner's parent (cargo, a shell) stands in for claude.
        let parent = std::os::unix::process::parent_id();
        let grandparent = parent_of(parent).filter(|&g| g > 1).unwrap_or(parent);
        session(grandparent).write(dir.path()).unwrap();
        let found = find_session(dir.path(), None).unwrap();
        assert_eq!(found.claude_pid, grandparent);
        // A CLAUDE_PID without a session file falls back to the walk.
        assert_eq!(
            find_session(dir.path(), Some("4242")).unwrap().claude_pid,
            grandparent
        );
        // A CLAUDE_PID with one wins.
        session(4242).write(dir.path()).unwrap();
        assert_eq!(
            find_session(dir.path(), Some("4242")).unwrap().claude_pid,
            4242
        );
        assert_eq!(
            find_session(dir.path(), Some(" nonsense "))
                .unwrap()
                .claude_pid,
            grandparent
        );
    }

    #[test]
    fn a_file_that_names_another_pid_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let s = session(4242);
        s.write(dir.path()).unwrap();
        std::fs::rename(
            SessionFile::path(dir.path(), 4242),
            SessionFile::path(dir.path(), 777),
        )
        .unwrap();
        assert_eq!(read_session(dir.path(), 777), None);
    }
}
