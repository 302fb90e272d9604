//! Driving the real `peers-mcp` binary over stdio with rmcp's client, under a fake "Claude
//! Code" parent process the test owns and can kill.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::session::SessionFile;
use peers_testkit::{TestEnv, bin, eventually};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};

pub const WAIT: Duration = Duration::from_secs(30);

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

/// One running `peers-mcp` under a fake Claude Code process.
pub struct Session {
    pub claude: Option<tokio::process::Child>,
    pub claude_pid: u32,
    pub client: Option<RunningService<RoleClient, ()>>,
    pub state_dir: PathBuf,
    pub cwd: PathBuf,
}

impl Session {
    pub async fn start(env: &TestEnv, cwd: &Path, parent: Parent) -> Session {
        Self::start_with_args(env, cwd, parent, &[]).await
    }

    /// Like [`Session::start`], passing `args` to `peers-mcp` (with [`Parent::Shell`] only).
    pub async fn start_with_args(
        env: &TestEnv,
        cwd: &Path,
        parent: Parent,
        args: &[&str],
    ) -> Session {
        std::fs::create_dir_all(cwd).unwrap();
        let mcp = mcp_bin();
        assert!(args.is_empty() || parent == Parent::Shell);
        let mut cmd = match parent {
            Parent::Shell => {
                let mut c = std::process::Command::new("/bin/sh");
                c.arg("-c")
                    .arg("\"$0\" \"$@\"; exit 0")
                    .arg(&mcp)
                    .args(args);
                c
            }
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
                    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                        .unwrap();
                }
                let mut c = std::process::Command::new(&script);
                c.env("PEERS_TEST_MCP_BIN", &mcp);
                c
            }
        };
        env.apply(&mut cmd);
        cmd.env_remove("CLAUDECODE")
            .env(
                "CLAUDE_CODE_SESSION_ID",
                format!("test-session-{}", cwd.display()),
            )
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn the fake claude");
        let claude_pid = child.id().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let client = ().serve((stdout, stdin)).await.expect("MCP handshake with peers-mcp");
        Session {
            claude: Some(child),
            claude_pid,
            client: Some(client),
            state_dir: env.state_dir.clone(),
            cwd: cwd.to_path_buf(),
        }
    }

    pub fn client(&self) -> &RunningService<RoleClient, ()> {
        self.client.as_ref().expect("client still open")
    }

    /// Calls a tool; panics only on a protocol error (tool errors come back as results).
    pub async fn call(&self, tool: &'static str, args: serde_json::Value) -> CallToolResult {
        let mut p = CallToolRequestParams::new(tool);
        if let serde_json::Value::Object(m) = args {
            p = p.with_arguments(m);
        }
        self.client()
            .call_tool(p)
            .await
            .unwrap_or_else(|e| panic!("{tool} gave a protocol error: {e}"))
    }

    /// Calls a tool that must succeed and returns its text.
    pub async fn ok(&self, tool: &'static str, args: serde_json::Value) -> String {
        let r = self.call(tool, args.clone()).await;
        let t = text(&r);
        assert_ne!(r.is_error, Some(true), "{tool} {args} failed: {t}");
        t
    }

    /// Calls a tool that must fail as a tool error and returns its text.
    pub async fn err(&self, tool: &'static str, args: serde_json::Value) -> String {
        let r = self.call(tool, args.clone()).await;
        let t = text(&r);
        assert_eq!(r.is_error, Some(true), "{tool} {args} should fail: {t}");
        t
    }

    /// The session file, waiting for it to appear.
    pub async fn session_file(&self) -> SessionFile {
        let (dir, pid) = (self.state_dir.clone(), self.claude_pid);
        eventually(WAIT, "the session file appears", || {
            let dir = dir.clone();
            async move { SessionFile::read(&dir, pid).ok().flatten() }
        })
        .await
    }

    /// A client with this session's peer token, as the hook would use it.
    pub async fn peer_client(&self) -> BrokerClient {
        let s = self.session_file().await;
        BrokerClient::new(&s.broker_url, Some(s.token))
    }

    /// SIGKILL the fake Claude Code process and reap it.
    pub async fn kill_claude(&mut self) {
        if let Some(mut c) = self.claude.take() {
            let _ = c.kill().await;
        }
    }
}

/// The `peers-mcp` under test: `PEERS_TEST_MCP_BIN` when set (e.g. a release build for the
/// RSS measurement), else the one built next to this test.
pub fn mcp_bin() -> PathBuf {
    std::env::var_os("PEERS_TEST_MCP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("peers-mcp"))
}

/// The text of a tool result.
pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first `#<digits>` after "Message #" in a text.
pub fn message_id(text: &str) -> i64 {
    let i = text.find("Message #").expect("a message id in the text") + "Message #".len();
    text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
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
