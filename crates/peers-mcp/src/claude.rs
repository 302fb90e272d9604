//! Finding the Claude Code process this server belongs to, and watching it.
//!
//! Claude Code spawns stdio MCP servers directly, so the parent is normally `claude`. When a
//! wrapper sits between (`sh -c`, `npx`, `node`), walk up to the nearest ancestor whose
//! executable is named `claude`; when there is none, the direct parent is the session.

use peers_core::process;

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
    fn is_claude(&self) -> bool {
        self.names.iter().any(|n| is_claude_name(n))
    }
}

/// `claude`, or a versioned build of it (`claude-2.1.328`) as some installers name it.
pub fn is_claude_name(name: &str) -> bool {
    let name = name.trim();
    name == "claude"
        || name.starts_with("claude-") && name[7..].starts_with(|c: char| c.is_ascii_digit())
}

/// How many ancestors the walk looks at before settling for the direct parent.
const MAX_WALK: usize = 8;

/// The Claude Code pid for a process whose parent is `ppid`, given a way to look processes
/// up: the nearest ancestor named `claude`, else `ppid` itself.
pub fn find_claude_pid(ppid: u32, lookup: impl Fn(u32) -> Option<ProcInfo>) -> u32 {
    let mut pid = ppid;
    for _ in 0..MAX_WALK {
        if pid <= 1 {
            break;
        }
        let Some(info) = lookup(pid) else { break };
        if info.is_claude() {
            return pid;
        }
        if info.ppid == pid {
            break;
        }
        pid = info.ppid;
    }
    ppid
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
        assert_eq!(find_claude_pid(50, |p| t.get(&p).cloned()), 30);
        assert_eq!(find_claude_pid(30, |p| t.get(&p).cloned()), 30);
    }

    #[test]
    fn without_claude_the_direct_parent_is_the_session() {
        let t = table(&[(50, 40, "sh"), (40, 1, "cargo-test")]);
        assert_eq!(find_claude_pid(50, |p| t.get(&p).cloned()), 50);
        assert_eq!(find_claude_pid(77, |_| None), 77);
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
