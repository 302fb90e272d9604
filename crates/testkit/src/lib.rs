//! Shared support for the integration tests of every crate: a throw-away environment (state
//! dir, config file, HOME, free port), the real `peers-broker` as a child process, and the
//! paths of the workspace's built binaries; registered sessions ([`peer`]), polling ([`poll`]),
//! the common request bodies ([`requests`]), a throw-away PostgreSQL cluster ([`postgres`])
//! and, with feature `mcp`, a stand-in Claude Code session running the real `peers-mcp`
//! ([`standin`]).
//!
//! Binaries of other packages are not built by `cargo test -p X`; `cargo xtask test` builds
//! them first (`cargo build --workspace --bins`). [`bin`] says so when one is missing.

pub mod claude;
pub mod netns;
pub mod peer;
pub mod plugin;
pub mod poll;
pub mod postgres;
pub mod requests;
#[cfg(feature = "mcp")]
pub mod standin;
pub mod tmux;

pub use poll::eventually;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peers_core::BrokerClient;

/// The path of a workspace binary in the same target dir as the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/test-binary -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("test binary has a parent dir");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is not built; run `cargo build --workspace --bins` (cargo xtask test does)",
        p.display()
    );
    p
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A throw-away environment: every path a peers binary or Claude Code would touch points
/// inside one temp dir, and the broker gets a free port.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub config_file: PathBuf,
    pub home: PathBuf,
    pub port: u16,
    /// Extra `PEERS_*` (or any) variables for every process started in this environment.
    pub extra: BTreeMap<String, String>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("peers-test-")
            .tempdir()
            .expect("tempdir");
        let state_dir = dir.path().join("state");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let config_file = dir.path().join("config.toml");
        TestEnv {
            state_dir,
            config_file,
            home,
            port: free_port(),
            extra: BTreeMap::new(),
            dir,
        }
    }

    /// Adds a variable for every process started in this environment.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The variables that confine a process to this environment.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("HOME".into(), self.home.display().to_string()),
            (
                "PEERS_STATE_DIR".into(),
                self.state_dir.display().to_string(),
            ),
            (
                "PEERS_CONFIG".into(),
                self.config_file.display().to_string(),
            ),
            ("PEERS_PORT".into(), self.port.to_string()),
            ("PEERS_BIND".into(), "127.0.0.1".into()),
            (
                "XDG_CONFIG_HOME".into(),
                self.home.join(".config").display().to_string(),
            ),
            (
                "XDG_STATE_HOME".into(),
                self.home.join(".local/state").display().to_string(),
            ),
            (
                "XDG_DATA_HOME".into(),
                self.home.join(".local/share").display().to_string(),
            ),
        ];
        v.extend(self.extra.iter().map(|(k, val)| (k.clone(), val.clone())));
        v
    }

    /// Applies [`TestEnv::vars`] to a command and removes variables that would leak the
    /// developer's own set-up into it.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for k in [
            "PEERS_BROKER_URL",
            "PEERS_BROKER_URLS",
            "PEERS_TOKEN",
            "PEERS_DB",
            "PEERS_HOST",
            "CLAUDE_PID",
            "CLAUDE_CODE_SESSION_ID",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(self.vars())
    }

    /// The per-user secret, once a broker has created it.
    pub fn secret(&self) -> Option<String> {
        peers_core::paths::read_secret(&self.state_dir)
            .ok()
            .flatten()
    }

    /// A client authenticated as the human (the per-user secret).
    pub fn user_client(&self) -> BrokerClient {
        BrokerClient::new(&self.url(), self.secret())
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves nothing
/// running.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already taken")
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.0 {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit, up to `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.0.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.0 = None;
                    return Some(status);
                }
            } else {
                return None;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A long-lived stand-in for a Claude Code process: its pid is what a session registers as
/// `claude_pid`, and killing it ends the "session".
pub fn fake_claude() -> ChildGuard {
    ChildGuard::new(
        Command::new("sleep")
            .arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    )
}

/// The real `peers-broker`, started in a [`TestEnv`].
pub struct BrokerProcess {
    pub child: ChildGuard,
    pub url: String,
}

impl BrokerProcess {
    /// Starts `peers-broker` in `env` and waits until `/v1/health` answers.
    pub async fn start(env: &TestEnv) -> BrokerProcess {
        Self::start_with(env, &[]).await
    }

    /// Like [`BrokerProcess::start`] with extra arguments.
    pub async fn start_with(env: &TestEnv, args: &[&str]) -> BrokerProcess {
        let b = Self::spawn(env, &bin("peers-broker"), args, Stdio::inherit());
        b.wait_healthy(Duration::from_secs(10)).await;
        b
    }

    /// Starts the broker binary `bin` (e.g. a release build) in `env` with `args`, its stderr
    /// going to `stderr`, without waiting for it.
    pub fn spawn(env: &TestEnv, bin: &Path, args: &[&str], stderr: Stdio) -> BrokerProcess {
        let mut cmd = Command::new(bin);
        env.apply(&mut cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = ChildGuard::new(cmd.spawn().expect("spawn peers-broker"));
        BrokerProcess {
            child,
            url: env.url(),
        }
    }

    /// Waits until the broker answers `/v1/health`, panicking after `timeout`.
    pub async fn wait_healthy(&self, timeout: Duration) {
        wait_healthy(&self.url, timeout).await
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        self.child.kill();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited in time.
    pub fn terminate(&mut self) -> bool {
        self.child.signal(libc::SIGTERM);
        self.child.wait_timeout(Duration::from_secs(10)).is_some()
    }
}

/// Polls `url/v1/health` until it answers, panicking after `timeout`.
pub async fn wait_healthy(url: &str, timeout: Duration) {
    let client = BrokerClient::new(url, None);
    let deadline = Instant::now() + timeout;
    loop {
        if client.health().await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "broker at {url} not healthy after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The environment entry that marks every process started in a [`TestEnv`].
pub fn state_dir_marker(env: &TestEnv) -> String {
    format!("PEERS_STATE_DIR={}", env.state_dir.display())
}

/// SIGKILLs every process (but this one) whose environment holds one of `entries`
/// (`KEY=value`, e.g. [`state_dir_marker`]): what a failing test left behind, including
/// grandchildren no [`ChildGuard`] knows about, such as a broker a `peers-mcp` started.
/// Linux only (reads `/proc/<pid>/environ`); elsewhere it does nothing.
pub fn kill_processes_with_env(entries: &[String]) {
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(p.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|kv| entries.iter().any(|e| kv == e.as_bytes()))
        {
            // SAFETY: kill(2) on a process that carries this test's own marker.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}
