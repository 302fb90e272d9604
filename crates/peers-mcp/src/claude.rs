//! Finding the agent process this server belongs to (Claude Code, Codex CLI or Gemini CLI),
//! and watching it.
//!
//! Each client spawns stdio MCP servers directly, so the parent is normally the agent: `claude`,
//! the native `codex` binary, or Gemini CLI's `node` (the relaunched child, unless
//! `GEMINI_CLI_NO_RELAUNCH=true`; that process is also the parent of the hooks). When a wrapper
//! sits between (`sh -c`, `npx`), walk up to the nearest ancestor that is one of them. Gemini
//! runs as a plain `node`, so a `node` counts only when Gemini CLI said it started this server
//! (`GEMINI_CLI=1` in the environment of its MCP servers). When none is found, the direct parent
//! is the session, taken for Claude Code.

use peers_core::process;
use peers_core::wire::Agent;

/// One process as the ancestry walk sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Names it may go by: the kernel's short name, the executable's file name, argv\[0\]'s
    /// file name.
    pub names: Vec<String>,
}

impl ProcInfo {
    /// The agent this process is, if it is one. `gemini`: whether Gemini CLI started this
    /// server, so that a `node` is its process.
    fn agent(&self, gemini: bool) -> Option<Agent> {
        let any = |f: fn(&str) -> bool| self.names.iter().any(|n| f(n.trim()));
        if any(is_claude_name) {
            Some(Agent::Claude)
        } else if any(|n| n == "codex") {
            Some(Agent::Codex)
        } else if gemini && any(|n| n == "node" || n == "gemini") {
            Some(Agent::Gemini)
        } else {
            None
        }
    }
}

/// Whether the environment says Gemini CLI started this MCP server (`GEMINI_CLI=1`).
pub fn started_by_gemini(value: Option<&str>) -> bool {
    value.map(str::trim) == Some("1")
}

/// `claude`, or a versioned build of it (`claude-2.1.328`) as some installers name it.
pub fn is_claude_name(name: &str) -> bool {
    let name = name.trim();
    name == "claude"
        || name.starts_with("claude-") && name[7..].starts_with(|c: char| c.is_ascii_digit())
}

/// How many ancestors the walk looks at before settling for the direct parent.
const MAX_WALK: usize = 8;

/// The agent process for a process whose parent is `ppid`, given a way to look processes up:
/// the nearest ancestor that is an agent ([`ProcInfo::agent`]), else `ppid` itself as Claude
/// Code (or as Gemini CLI when `gemini`).
pub fn find_agent(
    ppid: u32,
    gemini: bool,
    lookup: impl Fn(u32) -> Option<ProcInfo>,
) -> (u32, Agent) {
    let mut pid = ppid;
    for _ in 0..MAX_WALK {
        if pid <= 1 {
            break;
        }
        let Some(info) = lookup(pid) else { break };
        if let Some(agent) = info.agent(gemini) {
            return (pid, agent);
        }
        if info.ppid == pid {
            break;
        }
        pid = info.ppid;
    }
    (ppid, if gemini { Agent::Gemini } else { Agent::Claude })
}

/// This process's parent pid.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Whether the session's Claude Code process is gone: no process with its pid and start time
/// runs (a zombie counts as gone). `direct_parent` is the parent pid this server started
/// with: when Claude Code is that parent, being reparented means it exited.
pub fn claude_gone(claude_pid: u32, start_time: Option<u64>, direct_parent: u32) -> bool {
    if claude_pid == direct_parent && parent_pid() != direct_parent {
        return true;
    }
    !process::is_same(claude_pid, start_time) || process::is_zombie(claude_pid)
}

/// One process as the ancestry walk sees it, from [`peers_core::process`].
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    Some(ProcInfo {
        pid,
        ppid: process::parent_of(pid)?,
        names: process::names(pid),
    })
}

/// The terminal Claude Code runs in (`/dev/pts/3`), from its standard streams.
pub fn tty_of(pid: u32) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        for fd in 0..3 {
            if let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) {
                let t = target.to_string_lossy();
                if t.starts_with("/dev/pts/") || t.starts_with("/dev/tty") {
                    return Some(t.into_owned());
                }
            }
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn table(rows: &[(u32, u32, &str)]) -> HashMap<u32, ProcInfo> {
        rows.iter()
            .map(|&(pid, ppid, name)| {
                (
                    pid,
                    ProcInfo {
                        pid,
                        ppid,
                        names: vec![name.to_string()],
                    },
                )
            })
            .collect()
    }

    #[test]
    fn walks_past_wrappers_to_claude() {
        let t = table(&[
            (50, 40, "node"),
            (40, 30, "npx"),
            (30, 20, "claude"),
            (20, 1, "zsh"),
        ]);
        let find = |pid, gemini| find_agent(pid, gemini, |p| t.get(&p).cloned());
        assert_eq!(find(50, false), (30, Agent::Claude));
        assert_eq!(find(30, false), (30, Agent::Claude));
        // Gemini CLI started it: the nearest node is Gemini's.
        assert_eq!(find(50, true), (50, Agent::Gemini));
    }

    #[test]
    fn codex_and_gemini_processes() {
        // Codex runs MCP servers as its children (hooks through `/bin/bash -c`).
        let t = table(&[(60, 50, "peers-mcp"), (50, 40, "codex"), (40, 1, "zsh")]);
        let find = |pid, gemini| find_agent(pid, gemini, |p| t.get(&p).cloned());
        assert_eq!(find(50, false), (50, Agent::Codex));
        assert_eq!(find(60, false), (50, Agent::Codex));
        // Gemini relaunches node: the child is the parent of MCP servers and hooks, and is
        // the nearest; with GEMINI_CLI_NO_RELAUNCH=true there is one node.
        let t = table(&[(70, 60, "node"), (60, 40, "node"), (40, 1, "bash")]);
        let find = |pid, gemini| find_agent(pid, gemini, |p| t.get(&p).cloned());
        assert_eq!(find(70, true), (70, Agent::Gemini));
        // A node that Gemini did not vouch for is not an agent.
        assert_eq!(find(70, false), (70, Agent::Claude));
        assert!(started_by_gemini(Some("1")));
        assert!(!started_by_gemini(Some("0")));
        assert!(!started_by_gemini(None));
    }

    #[test]
    fn without_an_agent_the_direct_parent_is_the_session() {
        let t = table(&[(50, 40, "sh"), (40, 1, "cargo-test")]);
        assert_eq!(
            find_agent(50, false, |p| t.get(&p).cloned()),
            (50, Agent::Claude)
        );
        assert_eq!(find_agent(77, false, |_| None), (77, Agent::Claude));
        assert_eq!(find_agent(77, true, |_| None), (77, Agent::Gemini));
    }

    #[test]
    fn claude_names() {
        assert!(is_claude_name("claude"));
        assert!(is_claude_name("claude-2.1.328"));
        assert!(!is_claude_name("claude-desktop"));
        assert!(!is_claude_name("claudex"));
    }

    #[test]
    fn own_process_is_found() {
        let me = proc_info(std::process::id()).unwrap();
        assert_eq!(me.ppid, parent_pid());
        let start = process::start_time(parent_pid());
        assert!(start.is_some());
        assert!(!claude_gone(parent_pid(), start, parent_pid()));
        assert!(claude_gone(
            parent_pid(),
            start.map(|t| t + 1),
            parent_pid()
        ));
    }
}
