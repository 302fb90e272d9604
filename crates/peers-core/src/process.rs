//! Facts about processes on this machine: whether a pid exists, its parent, its names, and its
//! start time — the one place that reads `/proc/<pid>/stat` (Linux) or asks sysinfo (elsewhere).
//!
//! A pid alone does not name a process for long: after one exits, the kernel hands its pid to
//! a later one. The pid plus the process's **start time** does. [`start_time`] is an opaque
//! number that only means something compared with another reading for the same pid: on Linux
//! field 22 of `/proc/<pid>/stat` (clock ticks since boot), elsewhere sysinfo's start time
//! (seconds since the epoch). [`is_same`] is the check every liveness test uses.

/// The fields of `/proc/<pid>/stat` that peers uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// The kernel's short name (at most 15 bytes; may hold spaces and parentheses).
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    pub ppid: u32,
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Field 22: when the process started, in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses the text of `/proc/<pid>/stat`: `pid (comm) state ppid …`. The command name may hold
/// spaces and `)`, so the fields after it are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    // Field 3 (state) is rest[0], so field N is rest[N - 3].
    let rest: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let mut state = field(3)?.chars();
    let (Some(state), None) = (state.next(), state.next()) else {
        return None;
    };
    Some(Stat {
        pid,
        comm,
        state,
        ppid: field(4)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// `/proc/<pid>/stat`, parsed; `None` when there is no such process (or no `/proc`).
pub fn stat(pid: u32) -> Option<Stat> {
    if pid == 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A size in KiB from `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), for measurements; `None`
/// where there is no `/proc`.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of [`Stat`]'s times.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

/// Whether a process with this pid exists (zombies included). `kill(pid, 0)` failing with
/// `EPERM` means it exists but belongs to someone else: alive.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether the process has exited but not been reaped yet (a zombie, or dead).
pub fn is_zombie(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        stat(pid).is_some_and(|s| matches!(s.state, 'Z' | 'X'))
    }
    #[cfg(not(target_os = "linux"))]
    {
        fallback::is_zombie(pid)
    }
}

/// Whether the process exists and is not a zombie.
pub fn running(pid: u32) -> bool {
    pid_alive(pid) && !is_zombie(pid)
}

/// The parent pid of `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        stat(pid).map(|s| s.ppid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        fallback::parent_of(pid)
    }
}

/// `pid`, its parent, its grandparent, … — at most `max` pids, stopping before pid 1 (init)
/// and where a parent cannot be read.
pub fn ancestors(pid: u32, max: usize) -> impl Iterator<Item = u32> {
    let mut next = Some(pid);
    std::iter::from_fn(move || {
        let p = next.filter(|&p| p > 1)?;
        next = parent_of(p).filter(|&pp| pp != p);
        Some(p)
    })
    .take(max)
}

/// The start time of `pid` (see the module docs: opaque, compare only with another reading).
pub fn start_time(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        stat(pid).map(|s| s.start_ticks)
    }
    #[cfg(not(target_os = "linux"))]
    {
        fallback::start_time(pid)
    }
}

/// When `pid` started, in epoch milliseconds, rounded down (never later than the truth, as
/// long as the wall clock was not set back since boot).
pub fn started_ms(pid: u32) -> Option<i64> {
    #[cfg(target_os = "linux")]
    {
        let ticks = start_time(pid)?;
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: i64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(btime * 1000 + (ticks * 1000 / clock_ticks_per_sec()) as i64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        fallback::start_time(pid).map(|secs| secs as i64 * 1000)
    }
}

/// Whether `pid` is still the process that had start time `start` when it was recorded: it
/// exists and (when a start time was recorded) started at that time. A reused pid is not the
/// same process.
pub fn is_same(pid: u32, start: Option<u64>) -> bool {
    match start {
        None => pid_alive(pid),
        Some(t) => pid_alive(pid) && start_time(pid) == Some(t),
    }
}

/// The names a process may go by: the kernel's short name, the executable's file name and
/// argv\[0\]'s file name (those that can be read).
pub fn names(pid: u32) -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        let mut names = Vec::new();
        if let Some(s) = stat(pid) {
            names.push(s.comm);
        }
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
        names
    }
    #[cfg(not(target_os = "linux"))]
    {
        fallback::names(pid)
    }
}

/// The arguments `pid` was started with, argv\[0\] first (empty where they cannot be read;
/// on Linux only).
pub fn args(pid: u32) -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                c.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Vec::new()
    }
}

/// The executable of `pid` (on Linux only).
pub fn exe(pid: u32) -> Option<std::path::PathBuf> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_link(format!("/proc/{pid}/exe")).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// The portable way, through sysinfo, one pid at a time (used where there is no `/proc`;
/// compiled on Linux for tests only, to check that both ways agree).
#[cfg(any(not(target_os = "linux"), test))]
pub mod fallback {
    use sysinfo::{Pid, Process, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

    fn with<T>(pid: u32, kind: ProcessRefreshKind, f: impl FnOnce(&Process) -> T) -> Option<T> {
        let mut sys = System::new().ok()?;
        let p = Pid::from_u32(pid);
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[p]), true, kind);
        sys.process(p).map(f)
    }

    pub fn parent_of(pid: u32) -> Option<u32> {
        with(pid, ProcessRefreshKind::nothing(), |p| {
            p.parent().map(|pp| pp.as_u32())
        })?
    }

    /// Seconds since the epoch.
    pub fn start_time(pid: u32) -> Option<u64> {
        with(pid, ProcessRefreshKind::nothing(), Process::start_time)
    }

    pub fn is_zombie(pid: u32) -> bool {
        use sysinfo::ProcessStatus;
        with(pid, ProcessRefreshKind::nothing(), |p| {
            matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
        })
        .unwrap_or(false)
    }

    pub fn names(pid: u32) -> Vec<String> {
        let kind = ProcessRefreshKind::nothing()
            .with_exe(UpdateKind::OnlyIfNotSet)
            .with_cmd(UpdateKind::OnlyIfNotSet);
        with(pid, kind, |p| {
            let mut names = vec![p.name().to_string_lossy().into_owned()];
            if let Some(n) = p.exe().and_then(|e| e.file_name()) {
                names.push(n.to_string_lossy().into_owned());
            }
            if let Some(a0) = p.cmd().first() {
                let a0 = a0.to_string_lossy();
                if let Some(base) = a0.rsplit('/').next().filter(|b| !b.is_empty()) {
                    names.push(base.to_string());
                }
            }
            names
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (a (b) c) S 45 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 \
                        123456 1000000 200 18446744073709551615";

    #[test]
    fn stat_lines_parse_with_odd_names() {
        let s = parse_stat(LINE).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 45);
        assert_eq!((s.utime, s.stime), (7, 3));
        assert_eq!(s.start_ticks, 123456);
        let closing = parse_stat(&LINE.replace("(a (b) c)", "(x) R 1 (y))")).unwrap();
        assert_eq!(closing.comm, "x) R 1 (y)");
        assert_eq!(closing.ppid, 45);
        assert_eq!(parse_stat("9 (x y) S 7"), None, "too few fields");
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn pid_liveness() {
        assert!(pid_alive(std::process::id()));
        assert!(pid_alive(1), "pid 1 exists (EPERM or not)");
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        assert!(running(std::process::id()));
    }

    #[test]
    fn own_process_facts() {
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        assert_eq!(parent_of(me), Some(parent));
        assert_eq!(fallback::parent_of(me), Some(parent));
        let up: Vec<u32> = ancestors(me, 3).collect();
        assert_eq!(up[0], me);
        assert_eq!(up.get(1).copied().unwrap_or(parent), parent);
        assert!(up.len() <= 3 && !up.contains(&1) && !up.contains(&0));
        let start = start_time(me).expect("our own start time");
        assert!(is_same(me, Some(start)));
        assert!(is_same(me, None));
        assert!(!is_same(me, Some(start + 1)), "another start time");
        assert!(!is_same(0, Some(start)));
        let ms = started_ms(me).unwrap();
        assert!(ms <= crate::now_ms(), "{ms} is in the future");
        assert!(
            crate::now_ms() - ms < 24 * 3600 * 1000,
            "this test started today"
        );
        assert!(!names(me).is_empty());
        #[cfg(target_os = "linux")]
        assert!(status_kib(me, "VmRSS").is_some_and(|kib| kib > 0));
        assert!(!is_zombie(me));
    }

    #[test]
    fn a_reaped_child_is_gone_and_a_zombie_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it exits.
        for _ in 0..5000 {
            if is_zombie(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(
            pid_alive(pid) && !running(pid),
            "a zombie exists but does not run"
        );
        child.wait().unwrap();
        assert!(!running(pid));
    }
}
