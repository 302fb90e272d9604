//! A throw-away PostgreSQL cluster for tests: `initdb` into a temp dir, a postmaster on a free
//! loopback port (TCP on `127.0.0.1` only, its socket in the temp dir), one fresh database per
//! test ([`PgCluster::fresh_database`]), stopped by pid and removed when dropped; tests that
//! need no cluster of their own share one ([`PgCluster::shared`]).
//!
//! The binaries come from `PATH`, else the newest `/usr/lib/postgresql/<version>/bin`. As
//! root (PostgreSQL refuses to run as root) the cluster runs as the system user `peers-pg`,
//! created when missing. Without PostgreSQL binaries [`PgCluster::start`] says loudly that the
//! test is skipped and returns `None`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::ChildGuard;

/// The unprivileged user a cluster started by root runs as.
const PG_USER: &str = "peers-pg";

/// A running throw-away PostgreSQL cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// `(uid, gid)` to run the server as, when the tests run as root.
    owner: Option<(u32, u32)>,
    postmaster: Option<ChildGuard>,
    /// Extra `-c name=value` settings of the server.
    settings: Vec<String>,
}

impl PgCluster {
    /// Starts a cluster, or `None` (after an eprintln `SKIPPED: …`) when PostgreSQL is not
    /// installed. Panics when it is installed but will not start: that is a failure, not a skip.
    pub fn start() -> Option<PgCluster> {
        Self::start_with(None)
    }

    /// Like [`PgCluster::start`], serving TLS (as well as plain connections) with the PEM
    /// certificate chain and key given.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<PgCluster> {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Option<PgCluster> {
        let Some(bin) = find_bin_dir() else {
            eprintln!(
                "SKIPPED: no PostgreSQL server binaries (initdb, postgres) on PATH or in \
                 /usr/lib/postgresql/*/bin; install the postgresql package to run this test"
            );
            return None;
        };
        let owner = is_root().then(unprivileged_user);
        let dir = tempfile::Builder::new()
            .prefix("peers-pg-")
            .tempdir()
            .expect("tempdir for the PostgreSQL cluster");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the cluster dir to the PostgreSQL user");
        }
        let mut cluster = PgCluster {
            bin,
            port: crate::free_port(),
            dir,
            owner,
            postmaster: None,
            settings: Vec::new(),
        };
        let out = cluster
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(cluster.data_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some((cert, key)) = tls {
            // The server reads them as its own user, the key private to it.
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = cluster.dir.path().join(name);
                std::fs::write(&path, pem).expect("write the server's TLS files");
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .expect("chmod the server's TLS files");
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                        .expect("chown the server's TLS files");
                }
            }
            let dir = cluster.dir.path().display().to_string();
            cluster.settings = vec![
                "ssl=on".into(),
                format!("ssl_cert_file={dir}/server.crt"),
                format!("ssl_key_file={dir}/server.key"),
            ];
        }
        cluster.start_again();
        Some(cluster)
    }

    /// A cluster shared by the tests of this process that run at the same time: started by
    /// the first, stopped when the last one running lets go of it (a later test starts a new
    /// one). Give each test its own database ([`PgCluster::fresh_database`]). `None` as for
    /// [`PgCluster::start`].
    pub fn shared() -> Option<Arc<PgCluster>> {
        static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = shared.upgrade() {
            return Some(c);
        }
        let c = Arc::new(PgCluster::start()?);
        *shared = Arc::downgrade(&c);
        Some(c)
    }

    /// Creates an empty database with a name not used before in this process; its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        self.create_database(&format!("test_{}", NEXT.fetch_add(1, Ordering::SeqCst)))
    }

    /// A URL of database `db` on this cluster (user `postgres`, no password).
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of the default database `postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let out = self
            .command("createdb")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url_of(name)
    }

    /// The postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(ChildGuard::pid)
    }

    /// Stops the server at once (SIGQUIT to the postmaster: immediate shutdown, as a crash
    /// would) and waits for it to exit. The data stays; [`PgCluster::start_again`] restarts it.
    pub fn stop(&mut self) {
        if let Some(mut pm) = self.postmaster.take() {
            pm.signal(libc::SIGQUIT);
            if pm.wait_timeout(Duration::from_secs(30)).is_none() {
                pm.kill();
            }
        }
    }

    /// Starts the postmaster (again) on the same port and data, and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        assert!(self.postmaster.is_none(), "the cluster is running");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-h", "127.0.0.1", "-k"])
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            // Throw-away data: no fsync (commits still wait for their WAL write, and
            // `synchronous_commit` behaves as configured).
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start postgres");
        self.postmaster = Some(ChildGuard::new(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p"])
                .arg(self.port.to_string())
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            let exited = self
                .postmaster
                .as_mut()
                .and_then(|pm| pm.child().try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                self.stop();
                panic!("PostgreSQL did not start (exit {exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One of the cluster's binaries, run as the cluster's owner, in the cluster's dir.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(self.dir.path())
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env("PGCONNECT_TIMEOUT", "5");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory holding `initdb` and `postgres`: the one on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let initdb = d.join("initdb");
            if initdb.is_file() {
                // Debian links initdb into PATH but not postgres: follow the link.
                let real = std::fs::canonicalize(&initdb).ok()?;
                let dir = real.parent()?.to_path_buf();
                if has_both(&dir) {
                    return Some(dir);
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    id(&["-u"]).as_deref() == Some("0")
}

/// `(uid, gid)` of [`PG_USER`], created as a system user when missing (once per process:
/// tests starting clusters at once must not race `useradd`).
fn unprivileged_user() -> (u32, u32) {
    static USER: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *USER.get_or_init(create_user)
}

fn create_user() -> (u32, u32) {
    if id(&["-u", PG_USER]).is_none() {
        // Another test binary may create it at the same moment: "exists" is fine too.
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_USER,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let uid = id(&["-u", PG_USER]).and_then(|s| s.parse().ok());
    let gid = id(&["-g", PG_USER]).and_then(|s| s.parse().ok());
    match (uid, gid) {
        (Some(u), Some(g)) => (u, g),
        _ => panic!("cannot create the system user {PG_USER} to run PostgreSQL as (useradd)"),
    }
}

/// `id <args>`'s output, trimmed; `None` when it fails.
fn id(args: &[&str]) -> Option<String> {
    let out = Command::new("id").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
