//! The session file: `<state_dir>/sessions/<claude_pid>.json`, mode 0600.
//!
//! `peers-mcp` writes it after registering; `peers-deliver` reads it to find its peer id,
//! token and broker without a broker round trip. The Claude Code pid is the key because it is
//! the one identity both see (hooks get `CLAUDE_PID` or find it in their ancestry; the MCP
//! server is claude's child).
//!
//! A pid outlives its process: the kernel gives it to a later one. So the file also records
//! the Claude Code process's start time, and [`SessionFile::is_current`] accepts a file only
//! while the process with that pid is the one that was recorded. Reading is bounded: only a
//! regular file (no symlink, no FIFO) of at most [`MAX_FILE_LEN`] bytes is read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::wire::Agent;
use crate::{paths, process};

/// The largest session file read (a real one is well under 1 KiB).
pub const MAX_FILE_LEN: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionFile {
    pub peer_id: String,
    pub name: String,
    /// `name@host`.
    pub address: String,
    pub token: String,
    /// The broker this session registered with.
    pub broker_url: String,
    /// Every broker the session may use, `broker_url` first (brokers on one shared database,
    /// for failover). Empty in files written by older versions or for a single broker: then
    /// `broker_url` alone ([`SessionFile::broker_urls`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_urls: Vec<String>,
    pub claude_pid: u32,
    /// The start time of the Claude Code process ([`process::start_time`]); `None` in files
    /// written by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_start_time: Option<u64>,
    pub mcp_pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub machine_id: String,
    pub cwd: String,
    pub written_ms: i64,
    /// What this session's client calls the peers tools, up to the bare name
    /// (`peers-mcp --tool-prefix`): `mcp__peers__` for a user-scope server,
    /// `mcp__plugin_peers_peers__` under the plugin. The hook renders mail with it. Files
    /// written before the field existed read as the default.
    #[serde(default = "default_tool_prefix")]
    pub tool_prefix: String,
    /// The agent CLI of this session (`peers-mcp` finds it); the hook answers in its output
    /// form. Files written before the field existed read as Claude Code.
    #[serde(default)]
    pub agent: Agent,
}

/// The `broker_urls` of a session file: all of `all`, rotated so that `first` (the broker that
/// answered the registration) comes first; empty for a single broker.
pub fn broker_list(all: &[String], first: &str) -> Vec<String> {
    if all.len() < 2 {
        return Vec::new();
    }
    let at = all.iter().position(|u| u == first).unwrap_or(0);
    all[at..].iter().chain(&all[..at]).cloned().collect()
}

fn default_tool_prefix() -> String {
    crate::render::DEFAULT_TOOL_PREFIX.to_string()
}

impl SessionFile {
    /// The brokers to try, in order: `broker_urls`, or `broker_url` alone.
    pub fn broker_urls(&self) -> Vec<String> {
        if self.broker_urls.is_empty() {
            vec![self.broker_url.clone()]
        } else {
            self.broker_urls.clone()
        }
    }

    pub fn path(state_dir: &Path, claude_pid: u32) -> PathBuf {
        paths::sessions_dir(state_dir).join(format!("{claude_pid}.json"))
    }

    /// Writes atomically with mode 0600.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<PathBuf> {
        paths::ensure_private_dir(&paths::sessions_dir(state_dir))?;
        let path = Self::path(state_dir, self.claude_pid);
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        paths::write_private_file(&path, &json)?;
        Ok(path)
    }

    /// Reads the session of `claude_pid`; `Ok(None)` when there is none. A path that is not a
    /// regular file (a symlink, a FIFO, a device) or is larger than [`MAX_FILE_LEN`] is an
    /// error, without reading it.
    pub fn read(state_dir: &Path, claude_pid: u32) -> std::io::Result<Option<SessionFile>> {
        match read_bounded(&Self::path(state_dir, claude_pid)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the Claude Code process this file names is still the one that wrote it: a
    /// process with that pid exists, has the recorded start time, and did not start after the
    /// file was written (for files without a start time). A pid that was handed to a new
    /// process after the session crashed fails this.
    pub fn is_current(&self) -> bool {
        let pid = self.claude_pid;
        process::is_same(pid, self.claude_start_time)
            && process::started_ms(pid).is_none_or(|started| started <= self.written_ms)
    }

    /// Removes the session file of `claude_pid` if it is still ours (same peer id).
    pub fn remove_if_ours(state_dir: &Path, claude_pid: u32, peer_id: &str) -> std::io::Result<()> {
        if Self::read(state_dir, claude_pid)?.is_some_and(|s| s.peer_id == peer_id) {
            std::fs::remove_file(Self::path(state_dir, claude_pid))?;
        }
        Ok(())
    }

    /// The tool names to render this session's mail with: Claude Code's from `tool_prefix`
    /// (it differs under the plugin), the other clients' from their agent.
    pub fn tool_names(&self) -> crate::render::ToolNames {
        match self.agent {
            Agent::Claude => crate::render::ToolNames::or_default(&self.tool_prefix),
            other => crate::render::ToolNames::for_agent(other),
        }
    }
}

/// The contents of `path` if it is a regular file of at most [`MAX_FILE_LEN`] bytes. Opened
/// with `O_NOFOLLOW` (a symlink fails) and `O_NONBLOCK` (a FIFO does not block the open), then
/// checked on the open file.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = opts.open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(Error::new(ErrorKind::InvalidData, "not a regular file"));
    }
    let too_big = || Error::new(ErrorKind::InvalidData, "larger than 64 KiB");
    if meta.len() > MAX_FILE_LEN {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(too_big());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(claude_pid: u32) -> SessionFile {
        SessionFile {
            peer_id: "p1".into(),
            name: "api".into(),
            address: "api@box".into(),
            token: "t".into(),
            broker_url: "http://127.0.0.1:7900".into(),
            broker_urls: Vec::new(),
            claude_pid,
            claude_start_time: None,
            mcp_pid: 4243,
            session_id: None,
            machine_id: "m".into(),
            cwd: "/x".into(),
            written_ms: 1,
            tool_prefix: "mcp__plugin_peers_peers__".into(),
            agent: Agent::Claude,
        }
    }

    #[test]
    fn round_trip_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample(4242);
        s.write(dir.path()).unwrap();
        assert_eq!(
            SessionFile::read(dir.path(), 4242).unwrap(),
            Some(s.clone())
        );
        SessionFile::remove_if_ours(dir.path(), 4242, "other").unwrap();
        assert!(SessionFile::read(dir.path(), 4242).unwrap().is_some());
        SessionFile::remove_if_ours(dir.path(), 4242, "p1").unwrap();
        assert_eq!(SessionFile::read(dir.path(), 4242).unwrap(), None);
    }

    #[test]
    fn a_file_without_tool_prefix_reads_as_the_default() {
        let old = r#"{"peer_id":"p1","name":"api","address":"api@box","token":"t",
            "broker_url":"http://127.0.0.1:7900","claude_pid":1,"mcp_pid":2,"machine_id":"m",
            "cwd":"/x","written_ms":1}"#;
        let s: SessionFile = serde_json::from_str(old).unwrap();
        assert_eq!(s.tool_prefix, "mcp__peers__");
        assert_eq!(s.tool_names().send(), "mcp__peers__send_message");
        assert_eq!(s.agent, Agent::Claude);
        let codex = SessionFile {
            agent: Agent::Codex,
            ..s
        };
        assert_eq!(codex.tool_names().send(), "mcp__peers.send_message");
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        sample(1).write(dir.path()).unwrap();
        let sessions = paths::sessions_dir(dir.path());
        let err = |pid: u32| SessionFile::read(dir.path(), pid).unwrap_err().to_string();

        std::os::unix::fs::symlink("/dev/zero", sessions.join("2.json")).unwrap();
        SessionFile::read(dir.path(), 2).unwrap_err();
        // A symlink to a good session file is refused as well.
        std::os::unix::fs::symlink(sessions.join("1.json"), sessions.join("3.json")).unwrap();
        SessionFile::read(dir.path(), 3).unwrap_err();

        let fifo = std::ffi::CString::new(sessions.join("4.json").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(err(4), "not a regular file");

        std::fs::write(sessions.join("5.json"), vec![b' '; 100 * 1024]).unwrap();
        assert_eq!(err(5), "larger than 64 KiB");
        assert_eq!(SessionFile::read(dir.path(), 6).unwrap(), None);
    }

    #[test]
    fn a_file_is_current_only_for_the_process_that_wrote_it() {
        let me = std::process::id();
        let start = process::start_time(me);
        let mut s = sample(me);
        s.claude_start_time = start;
        s.written_ms = crate::now_ms();
        assert!(s.is_current());
        // Another process with this pid (a different start time).
        s.claude_start_time = start.map(|t| t + 1);
        assert!(!s.is_current());
        // No start time recorded (an older peers-mcp): the process must not have started
        // after the file was written.
        s.claude_start_time = None;
        assert!(s.is_current());
        s.written_ms = process::started_ms(me).unwrap() - 1_000;
        assert!(!s.is_current());
        // No such process.
        assert!(!sample(0).is_current());
    }
}
