//! The session file: `<state_dir>/sessions/<claude_pid>.json`, mode 0600.
//!
//! `peers-mcp` writes it after registering; `peers-deliver` reads it to find its peer id,
//! token and broker without a broker round trip. The Claude Code pid is the key because it is
//! the one identity both see (hooks get `CLAUDE_PID` or find it in their ancestry; the MCP
//! server is claude's child).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionFile {
    pub peer_id: String,
    pub name: String,
    /// `name@host`.
    pub address: String,
    pub token: String,
    pub broker_url: String,
    pub claude_pid: u32,
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
}

fn default_tool_prefix() -> String {
    crate::render::DEFAULT_TOOL_PREFIX.to_string()
}

impl SessionFile {
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

    /// Reads the session of `claude_pid`; `Ok(None)` when there is none.
    pub fn read(state_dir: &Path, claude_pid: u32) -> std::io::Result<Option<SessionFile>> {
        match std::fs::read(Self::path(state_dir, claude_pid)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the session file of `claude_pid` if it is still ours (same peer id).
    pub fn remove_if_ours(state_dir: &Path, claude_pid: u32, peer_id: &str) -> std::io::Result<()> {
        if Self::read(state_dir, claude_pid)?.is_some_and(|s| s.peer_id == peer_id) {
            std::fs::remove_file(Self::path(state_dir, claude_pid))?;
        }
        Ok(())
    }

    /// The tool names to render this session's mail with.
    pub fn tool_names(&self) -> crate::render::ToolNames {
        crate::render::ToolNames::or_default(&self.tool_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = SessionFile {
            peer_id: "p1".into(),
            name: "api".into(),
            address: "api@box".into(),
            token: "t".into(),
            broker_url: "http://127.0.0.1:7900".into(),
            claude_pid: 4242,
            mcp_pid: 4243,
            session_id: None,
            machine_id: "m".into(),
            cwd: "/x".into(),
            written_ms: 1,
            tool_prefix: "mcp__plugin_peers_peers__".into(),
        };
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
    }
}
