//! Finding the Claude Code process this server belongs to, and watching it.
//!
//! Claude Code spawns stdio MCP servers directly, so the parent is normally `claude`. When a
//! wrapper sits between (`sh -c`, `npx`, `node`), walk up to the nearest ancestor whose
//! executable is named `claude`; when there is none, the direct parent is the session.

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

/// Whether the session's Claude Code process is gone. `direct_parent` is the parent pid this
/// server started with: when Claude Code is that parent, being reparented means it exited
/// (this also holds while it lingers as a zombie, which `kill(pid, 0)` still reports alive).
pub fn claude_gone(claude_pid: u32, direct_parent: u32) -> bool {
    if claude_pid == direct_parent && parent_pid() != direct_parent {
        return true;
    }
    !peers_core::identity::pid_alive(claude_pid) || is_zombie(claude_pid)
}

#[cfg(target_os = "linux")]
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, ppid) = parse_stat(&stat)?;
    let mut names = vec![comm];
    if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
        && let Some(n) = exe.file_name()
    {
        names.push(n.to_string_lossy().into_owned());
    }
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
        && let Some(arg0) = cmdline.split(|&b| b == 0).next()
    {
        let arg0 = String::from_utf8_lossy(arg0);
        if let Some(base) = arg0.rsplit('/').next().filter(|b| !b.is_empty()) {
            names.push(base.to_string());
        }
    }
    Some(ProcInfo { pid, ppid, names })
}

/// `(comm, ppid)` from the text of `/proc/<pid>/stat`; comm may hold spaces and parentheses.
#[cfg(any(target_os = "linux", test))]
fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let close = s.rfind(')')?;
            s.get(close + 1..)?
                .split_whitespace()
                .next()
                .map(|st| st == "Z" || st == "X")
        })
        .unwrap_or(false)
}

#[cfg(not(target_os = "linux"))]
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let mut sys = System::new().ok()?;
    let p = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[p]),
        true,
        ProcessRefreshKind::nothing()
            .with_exe(UpdateKind::OnlyIfNotSet)
            .with_cmd(UpdateKind::OnlyIfNotSet),
    );
    let proc_ = sys.process(p)?;
    let mut names = vec![proc_.name().to_string_lossy().into_owned()];
    if let Some(n) = proc_.exe().and_then(|e| e.file_name()) {
        names.push(n.to_string_lossy().into_owned());
    }
    if let Some(a0) = proc_.cmd().first() {
        let a0 = a0.to_string_lossy();
        if let Some(base) = a0.rsplit('/').next() {
            names.push(base.to_string());
        }
    }
    Some(ProcInfo {
        pid,
        ppid: proc_.parent().map(|p| p.as_u32()).unwrap_or(0),
        names,
    })
}

#[cfg(not(target_os = "linux"))]
fn is_zombie(pid: u32) -> bool {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System};
    let Ok(mut sys) = System::new() else {
        return false;
    };
    let p = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[p]),
        true,
        ProcessRefreshKind::nothing(),
    );
    matches!(
        sys.process(p).map(|p| p.status()),
        Some(ProcessStatus::Zombie | ProcessStatus::Dead)
    )
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
    fn stat_lines_parse_with_odd_names() {
        let (comm, ppid) = parse_stat("123 (a (b) c) S 45 123 123 0 -1").unwrap();
        assert_eq!((comm.as_str(), ppid), ("a (b) c", 45));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_process_is_found() {
        let me = proc_info(std::process::id()).unwrap();
        assert_eq!(me.ppid, parent_pid());
        assert!(!claude_gone(parent_pid(), parent_pid()));
    }
}
