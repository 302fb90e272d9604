//! Who and where a session is: the machine id, the host label, the friendly name, git facts.

use std::path::{Path, PathBuf};

use crate::paths;

/// The machine id: a UUID created once in the state dir and kept. The host label is only for
/// display; two machines with the same hostname still have different ids.
pub fn machine_id(state_dir: &Path) -> std::io::Result<String> {
    let file = paths::machine_id_file(state_dir);
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    paths::ensure_private_dir(state_dir)?;
    let id = uuid::Uuid::new_v4().to_string();
    // Create-new so two processes starting together agree on one id.
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    match opts.open(&file) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(id.as_bytes())?;
            f.sync_all()?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for _ in 0..50 {
                let s = std::fs::read_to_string(&file)?;
                if !s.trim().is_empty() {
                    return Ok(s.trim().to_string());
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::io::Error::other(
                "machine_id file exists but stays empty",
            ))
        }
        Err(e) => Err(e),
    }
}

/// The host label: the configured one, else the short hostname, lowercased.
pub fn host_label(configured: Option<&str>) -> String {
    if let Some(h) = configured.map(str::trim).filter(|h| !h.is_empty()) {
        return h.to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let short = name.split('.').next().unwrap_or("").to_lowercase();
    if short.is_empty() {
        "localhost".into()
    } else {
        short
    }
}

/// Turns a directory's base name into a peer name: lowercased, every run of characters other
/// than ASCII letters and digits becomes one `-`, no leading or trailing `-`; `peer` if
/// nothing is left.
pub fn name_from_dir(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    slug(&base)
}

/// The slug rule of [`name_from_dir`], for any string.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut dash = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "peer".into() } else { out }
}

/// The base name for a session: its git repository's directory name when inside one, else its
/// working directory's.
pub fn base_name(cwd: &Path, git_root: Option<&Path>) -> String {
    name_from_dir(git_root.unwrap_or(cwd))
}

/// The nearest ancestor of `dir` (itself included) that holds `.git` (a directory, or a file
/// as in worktrees and submodules).
pub fn git_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// The checked-out branch of the repository at `root`, read from `.git/HEAD` without running
/// git. `None` for a detached HEAD or anything unexpected.
pub fn git_branch(root: &Path) -> Option<String> {
    let dot_git = root.join(".git");
    let git_dir = if dot_git.is_file() {
        // A worktree: `.git` is a file `gitdir: <path>`.
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let p = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
        if p.is_absolute() { p } else { root.join(p) }
    } else {
        dot_git
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    head.trim()
        .strip_prefix("ref: refs/heads/")
        .map(str::to_string)
}

/// Names that mean someone other than a session: `you` (the human, as messages show it),
/// `human`, `user`, `all`, `peers`. A session whose directory has one of these names is
/// numbered as if the name were taken (`you-2`, `peers-2`, …).
pub const RESERVED_NAMES: [&str; 5] = ["you", "human", "user", "all", "peers"];

/// Whether no session may be called `name`: a reserved name, or one starting with `#` (a
/// topic) or `*` (a broadcast).
pub fn is_reserved_name(name: &str) -> bool {
    let name = name.trim();
    name.starts_with('#')
        || name.starts_with('*')
        || RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_slugs() {
        assert_eq!(
            name_from_dir(Path::new("/home/me/My Project")),
            "my-project"
        );
        assert_eq!(
            name_from_dir(Path::new("/src/api_server.v2")),
            "api-server-v2"
        );
        assert_eq!(name_from_dir(Path::new("/src/--x--")), "x");
        assert_eq!(name_from_dir(Path::new("/")), "peer");
        assert_eq!(slug("Ünïcode"), "n-code");
    }

    #[test]
    fn git_root_and_branch_come_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("Repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("src/deep")).unwrap();
        std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/feature/x\n").unwrap();
        let root = git_root(&repo.join("src/deep")).unwrap();
        assert_eq!(root, repo);
        assert_eq!(git_branch(&root).as_deref(), Some("feature/x"));
        assert_eq!(base_name(&repo.join("src/deep"), Some(&root)), "repo");
    }

    #[test]
    fn machine_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = machine_id(dir.path()).unwrap();
        assert_eq!(a, machine_id(dir.path()).unwrap());
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn reserved_names() {
        for n in ["you", "YOU", "human", "user", "all", "peers", "#ops", "*"] {
            assert!(is_reserved_name(n), "{n}");
        }
        for n in ["you-2", "peers-2", "api", "yours"] {
            assert!(!is_reserved_name(n), "{n}");
        }
    }
}
