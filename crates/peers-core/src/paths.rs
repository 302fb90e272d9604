//! Where peers keeps its files.
//!
//! * state dir (`PEERS_STATE_DIR`, else the platform state/data dir + `peers`): the database,
//!   the per-user secret, the machine id, session files, logs.
//! * config file (`PEERS_CONFIG`, else `<config_dir>/peers/config.toml`).
//! * the home directory ([`home`]), for the files of other programs (`~/.claude`, services).
//!
//! A file peers replaces whole (session files, Claude Code settings, service files) is written
//! with [`write_file_atomic`] (or [`write_private_file`], mode 0600): a reader never sees half
//! a file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "peers")
}

/// The default state directory when `PEERS_STATE_DIR` is not set.
pub fn default_state_dir() -> PathBuf {
    project_dirs()
        .map(|d| {
            d.state_dir()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| d.data_local_dir().to_path_buf())
        })
        .unwrap_or_else(|| std::env::temp_dir().join("peers"))
}

/// The default config file when `PEERS_CONFIG` is not set.
pub fn default_config_file() -> PathBuf {
    project_dirs()
        .map(|d| d.config_dir().join("config.toml"))
        .unwrap_or_else(|| PathBuf::from("peers-config.toml"))
}

/// The per-user secret that authenticates registration and human calls on a local broker.
pub fn secret_file(state_dir: &Path) -> PathBuf {
    state_dir.join("secret")
}

pub fn machine_id_file(state_dir: &Path) -> PathBuf {
    state_dir.join("machine_id")
}

pub fn sessions_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions")
}

pub fn logs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("logs")
}

pub fn default_db_file(state_dir: &Path) -> PathBuf {
    state_dir.join("peers.db")
}

/// Creates `dir` (and parents) readable by the owner only.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, atomically (a temp file renamed into place), so
/// a reader never sees half a file.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_file_atomic(path, contents, 0o600)
}

/// Writes `contents` to `path` with `mode` (unix permission bits, whatever the umask),
/// atomically: a temp file in the same directory, synced, then renamed into place, so a
/// reader never sees half a file and a failed write leaves the old file as it was. Creates the
/// directory. `path` itself is replaced: to write through a symlink, pass its target.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The user's home directory: `HOME`, else the password database (as the state and config
/// directories are found).
pub fn home() -> io::Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|d| d.home_dir().to_path_buf())
        .ok_or_else(|| io::Error::other("cannot tell the home directory: HOME is not set"))
}

/// Reads the per-user secret, trimmed. `None` when the file does not exist yet (no broker has
/// started on this state dir).
pub fn read_secret(state_dir: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(secret_file(state_dir)) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the secret, creating it (32 random bytes, hex, mode 0600) if it does not exist.
/// Creation uses `O_EXCL`, so two processes racing here end up with the same secret.
pub fn ensure_secret(state_dir: &Path) -> io::Result<String> {
    if let Some(s) = read_secret(state_dir)?.filter(|s| !s.is_empty()) {
        return Ok(s);
    }
    ensure_private_dir(state_dir)?;
    let secret = random_hex(32);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(secret_file(state_dir)) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Someone else won the race; theirs is the secret. Give them a moment to write it.
            for _ in 0..50 {
                if let Some(s) = read_secret(state_dir)?.filter(|s| !s.is_empty()) {
                    return Ok(s);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(io::Error::other("the secret file exists but stays empty"))
        }
        Err(e) => Err(e),
    }
}

/// `n` random bytes from the OS, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_created_once_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(read_secret(&state).unwrap(), None);
        let a = ensure_secret(&state).unwrap();
        let b = ensure_secret(&state).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(secret_file(&state))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn private_file_is_written_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        write_private_file(&p, b"one").unwrap();
        write_private_file(&p, b"two").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn atomic_write_sets_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("settings.json");
        write_file_atomic(&p, b"{}", 0o644).unwrap();
        write_file_atomic(&p, b"{\"a\": 1}", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\": 1}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["settings.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
                0o640
            );
        }
    }
}
