//! Which session is this hook part of: `CLAUDE_PID` when it names a session file, else the
//! nearest ancestor process that has one (`<state_dir>/sessions/<pid>.json`).
//!
//! A file counts only while it belongs to the live process with that pid
//! ([`SessionFile::is_current`]: same start time, not started after the file was written), so a
//! process that was handed the pid of a crashed session is not taken for it. The walk and the
//! start times come from [`peers_core::process`] (`/proc` on Linux, sysinfo elsewhere).

use std::path::Path;

use peers_core::process;
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
    process::ancestors(std::os::unix::process::parent_id(), MAX_DEPTH)
        .find_map(|pid| read_session(state_dir, pid))
}

/// The session file of `pid`, if there is a readable one that names that pid and belongs to
/// the process that has it now.
fn read_session(state_dir: &Path, pid: u32) -> Option<SessionFile> {
    SessionFile::read(state_dir, pid)
        .ok()
        .flatten()
        .filter(|s| s.claude_pid == pid && s.is_current())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(pid: u32) -> SessionFile {
        SessionFile {
            peer_id: format!("p{pid}"),
            name: "api".into(),
            address: "api@box".into(),
            token: "t".into(),
            broker_url: "http://127.0.0.1:1".into(),
            broker_urls: Vec::new(),
            claude_pid: pid,
            claude_start_time: process::start_time(pid),
            mcp_pid: 1,
            session_id: None,
            machine_id: "m".into(),
            cwd: "/x".into(),
            written_ms: peers_core::now_ms(),
            tool_prefix: peers_core::render::DEFAULT_TOOL_PREFIX.into(),
            agent: Default::default(),
        }
    }

    /// A live process that is not our ancestor, standing in for a Claude Code process.
    struct Other(std::process::Child);

    impl Other {
        fn start() -> Other {
            Other(
                std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .unwrap(),
            )
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Other {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn env_pid_first_then_ancestry() {
        let dir = tempfile::tempdir().unwrap();
        let other = Other::start();
        let other_pid = other.pid().to_string();
        assert_eq!(find_session(dir.path(), None), None);
        assert_eq!(find_session(dir.path(), Some(&other_pid)), None);

        // The test runner's parent (cargo, a shell) stands in for claude.
        let parent = std::os::unix::process::parent_id();
        let grandparent = process::parent_of(parent)
            .filter(|&g| g > 1)
            .unwrap_or(parent);
        session(grandparent).write(dir.path()).unwrap();
        let found = find_session(dir.path(), None).unwrap();
        assert_eq!(found.claude_pid, grandparent);
        // A CLAUDE_PID without a session file falls back to the walk.
        assert_eq!(
            find_session(dir.path(), Some(&other_pid))
                .unwrap()
                .claude_pid,
            grandparent
        );
        // A CLAUDE_PID with one wins.
        session(other.pid()).write(dir.path()).unwrap();
        assert_eq!(
            find_session(dir.path(), Some(&other_pid))
                .unwrap()
                .claude_pid,
            other.pid()
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
        let other = Other::start();
        let s = session(other.pid());
        s.write(dir.path()).unwrap();
        std::fs::rename(
            SessionFile::path(dir.path(), other.pid()),
            SessionFile::path(dir.path(), 777),
        )
        .unwrap();
        assert_eq!(read_session(dir.path(), 777), None);
    }

    #[test]
    fn a_file_of_another_process_with_this_pid_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let other = Other::start();
        let pid = other.pid();
        let mut s = session(pid);
        s.write(dir.path()).unwrap();
        assert_eq!(read_session(dir.path(), pid), Some(s.clone()));
        // Recorded for a process with another start time: the pid was reused.
        s.claude_start_time = s.claude_start_time.map(|t| t + 1);
        s.write(dir.path()).unwrap();
        assert_eq!(read_session(dir.path(), pid), None);
        assert_eq!(find_session(dir.path(), Some(&pid.to_string())), None);
        // No start time recorded, and the process started after the file was written.
        s.claude_start_time = None;
        s.written_ms = process::started_ms(pid).unwrap() - 1_000;
        s.write(dir.path()).unwrap();
        assert_eq!(read_session(dir.path(), pid), None);
        // The process has ended.
        drop(other);
        let mut s = session(pid);
        s.claude_start_time = Some(1);
        s.write(dir.path()).unwrap();
        assert_eq!(read_session(dir.path(), pid), None);
    }
}
