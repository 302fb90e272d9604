//! A stand-in Claude Code session: a child process the test owns standing in for Claude Code
//! (a shell, or a script named `claude`), running the real `peers-mcp`, driven over stdio by
//! rmcp's client as Claude Code would drive it. Feature `mcp`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use peers_core::BrokerClient;
use peers_core::session::SessionFile;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};

use crate::poll::eventually;

/// How long a session waits for its session file.
pub const WAIT: Duration = Duration::from_secs(30);

/// `sh` (the command `sh`, e.g. one made in a network namespace) running `mcp args…` as
/// `sh -c '"$0" "$@"; exit 0'`: the shell stays the parent of `peers-mcp`.
pub fn under_shell(mut sh: Command, mcp: &Path, args: &[&str]) -> Command {
    sh.arg("-c")
        .arg("\"$0\" \"$@\"; exit 0")
        .arg(mcp)
        .args(args);
    sh
}

/// One running `peers-mcp` under a stand-in Claude Code process. Dropping it closes the MCP
/// client and kills the stand-in.
pub struct McpSession {
    pub claude: Option<tokio::process::Child>,
    pub claude_pid: u32,
    pub client: Option<RunningService<RoleClient, ()>>,
    pub state_dir: PathBuf,
}

impl McpSession {
    /// Spawns `cmd` (the stand-in, which runs `peers-mcp`; its environment and directory
    /// already set) with piped stdio and does the MCP handshake. `state_dir` is where the
    /// session file will appear.
    pub async fn start(mut cmd: Command, state_dir: &Path) -> McpSession {
        cmd.env_remove("CLAUDECODE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn the stand-in claude");
        let claude_pid = child.id().unwrap();
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let client = ().serve((stdout, stdin)).await.expect("MCP handshake with peers-mcp");
        McpSession {
            claude: Some(child),
            claude_pid,
            client: Some(client),
            state_dir: state_dir.to_path_buf(),
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

    /// The session's peer name, from its session file.
    pub async fn name(&self) -> String {
        self.session_file().await.name
    }

    /// A client with this session's peer token, as the hook would use it.
    pub async fn peer_client(&self) -> BrokerClient {
        let s = self.session_file().await;
        BrokerClient::new(&s.broker_url, Some(s.token))
    }

    /// SIGKILL the stand-in Claude Code process and reap it.
    pub async fn kill_claude(&mut self) {
        if let Some(mut c) = self.claude.take() {
            let _ = c.kill().await;
        }
    }
}

impl Drop for McpSession {
    fn drop(&mut self) {
        drop(self.client.take());
        if let Some(c) = self.claude.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// The text of a tool result.
pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The digits after the first "Message #" in a text.
pub fn message_id(text: &str) -> i64 {
    let i = text.find("Message #").expect("a message id in the text") + "Message #".len();
    text[i..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}
