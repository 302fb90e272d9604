//! Driving the real `peers-mcp` binary over stdio with rmcp's client, under a fake "Claude
//! Code" parent process the test owns and can kill.

use std::path::{Path, PathBuf};
use std::process::Command;

use peers_core::BrokerClient;
use peers_testkit::standin::{self, McpSession};
use peers_testkit::{BrokerProcess, TestEnv, bin};
use serde_json::json;

pub use peers_testkit::standin::{WAIT, message_id};

/// A test environment for peers-mcp sessions: a fixed host label, fast heartbeats.
pub fn env() -> TestEnv {
    let mut env = TestEnv::new();
    env.set("PEERS_HOST", "testhost")
        .set("PEERS_HEARTBEAT_MS", "300")
        .set("PEERS_SWEEP_MS", "200")
        .set("PEERS_LOG", "info");
    env
}

/// How the fake Claude Code process runs `peers-mcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parent {
    /// `sh -c 'peers-mcp; exit 0'`: no process is named claude, so the direct parent (the
    /// shell the test spawned) is the session.
    Shell,
    /// A script named `claude` that runs `sh -c 'peers-mcp; exit 0'`: peers-mcp must walk up
    /// past the wrapper shell to the process named `claude`.
    ClaudeScript,
}

/// Starts `peers-mcp` in `cwd` under a stand-in Claude Code process of kind `parent`.
pub async fn session(env: &TestEnv, cwd: &Path, parent: Parent) -> McpSession {
    session_with_args(env, cwd, parent, &[]).await
}

/// A [`session`] started from a shell in `work/<dir>` of the environment.
pub async fn shell_session(env: &TestEnv, dir: &str) -> McpSession {
    session(env, &env.dir.path().join("work").join(dir), Parent::Shell).await
}

/// `message` sent by `from` to `to` with `send_message`; the id the tool answered.
pub async fn sent(from: &McpSession, to: &str, message: &str) -> i64 {
    let text = from
        .ok("send_message", json!({"to": to, "message": message}))
        .await;
    standin::message_id(&text)
}

/// Sessions `alpha` and `bravo` ([`shell_session`]), once bravo's session file is written.
pub async fn alpha_and_bravo(env: &TestEnv) -> (McpSession, McpSession) {
    let a = shell_session(env, "alpha").await;
    let b = shell_session(env, "bravo").await;
    b.session_file().await;
    (a, b)
}

/// A fresh [`env`], its [`Reaper`] and a broker running in it: `(env, reaper, broker)`; bind
/// them in that order so the broker stops first and the environment goes last.
pub async fn with_broker() -> (TestEnv, Reaper, BrokerProcess) {
    broker_in(env()).await
}

/// Like [`with_broker`], in `env`.
pub async fn broker_in(env: TestEnv) -> (TestEnv, Reaper, BrokerProcess) {
    let reaper = Reaper::new(&env);
    let broker = BrokerProcess::start(&env).await;
    (env, reaper, broker)
}

/// Like [`session`], passing `args` to `peers-mcp` (with [`Parent::Shell`] only).
pub async fn session_with_args(
    env: &TestEnv,
    cwd: &Path,
    parent: Parent,
    args: &[&str],
) -> McpSession {
    std::fs::create_dir_all(cwd).unwrap();
    let mcp = mcp_bin();
    assert!(args.is_empty() || parent == Parent::Shell);
    let mut cmd = match parent {
        Parent::Shell => standin::under_shell(Command::new("/bin/sh"), &mcp, args),
        Parent::ClaudeScript => {
            let dir = env.dir.path().join("fakebin");
            std::fs::create_dir_all(&dir).unwrap();
            let script = dir.join("claude");
            if !script.exists() {
                std::fs::write(
                    &script,
                    "#!/bin/sh\n/bin/sh -c '\"$PEERS_TEST_MCP_BIN\"; exit 0'\nexit 0\n",
                )
                .unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let mut c = Command::new(&script);
            c.env("PEERS_TEST_MCP_BIN", &mcp);
            c
        }
    };
    env.apply(&mut cmd);
    cmd.env(
        "CLAUDE_CODE_SESSION_ID",
        format!("test-session-{}", cwd.display()),
    )
    .current_dir(cwd);
    McpSession::start(cmd, &env.state_dir).await
}

/// The `peers-mcp` under test: `PEERS_TEST_MCP_BIN` when set (e.g. a release build for the
/// RSS measurement), else the one built next to this test.
pub fn mcp_bin() -> PathBuf {
    std::env::var_os("PEERS_TEST_MCP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("peers-mcp"))
}

/// Whether a process exists and is not a zombie.
pub fn running(pid: u32) -> bool {
    peers_core::process::running(pid)
}

/// Kills, when dropped, every process whose environment names this test's state dir: the
/// `peers-mcp` servers, their wrapper shells, and brokers they started — whatever a failing
/// test left behind. Declare it first so it drops last.
pub struct Reaper(pub String, pub PathBuf);

impl Reaper {
    pub fn new(env: &TestEnv) -> Reaper {
        Reaper(
            peers_testkit::state_dir_marker(env),
            env.state_dir.join("logs"),
        )
    }

    /// Prints the logs of the processes in this environment (on a failing test).
    pub fn dump_logs(&self) {
        let Ok(dir) = std::fs::read_dir(&self.1) else {
            return;
        };
        for f in dir.flatten() {
            if let Ok(t) = std::fs::read_to_string(f.path()) {
                eprintln!("===== {} =====\n{t}", f.path().display());
            }
        }
    }

    pub fn kill_all(&self) {
        peers_testkit::kill_processes_with_env(std::slice::from_ref(&self.0));
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        self.kill_all();
    }
}

/// The pid of the broker answering at `url`.
pub async fn broker_pid(url: &str) -> Option<u32> {
    BrokerClient::new(url, None)
        .health()
        .await
        .ok()
        .map(|h| h.pid)
}
