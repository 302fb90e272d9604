//! Shared by the integration tests: a real broker in a temp environment, a registered
//! recipient session (with a session file keyed by a fake Claude Code pid), a sender peer, and
//! a runner for the real `peers-deliver` binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use peers_core::BrokerClient;
use peers_core::session::SessionFile;
use peers_core::wire::{RegisterRequest, SendRequest};
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv, peer};

/// The recorded hook inputs of Claude Code 2.1.328 (`../shared/CLAUDE_CODE_FACTS.md`).
pub const SESSION_START: &str = r#"{"session_id":"b00e","transcript_path":"/t/b00e.jsonl","cwd":"/home/me/proj","hook_event_name":"SessionStart","source":"startup"}"#;
pub const USER_PROMPT_SUBMIT: &str = r#"{"session_id":"s","transcript_path":"/t/s.jsonl","cwd":"/home/me/proj","prompt_id":"p1","permission_mode":"default","hook_event_name":"UserPromptSubmit","prompt":"hello there"}"#;
pub const POST_TOOL_USE: &str = r#"{"session_id":"s","cwd":"/home/me/proj","prompt_id":"p1","permission_mode":"default","effort":{"level":"medium"},"hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"echo hi","description":"say hi"},"tool_response":{"stdout":"hi","stderr":"","interrupted":false,"isImage":false,"noOutputExpected":false},"tool_use_id":"toolu_1","duration_ms":60}"#;
pub const STOP: &str = r#"{"session_id":"s","cwd":"/home/me/proj","hook_event_name":"Stop","stop_hook_active":false,"last_assistant_message":"done one","background_tasks":[],"session_crons":[]}"#;
pub const STOP_ACTIVE: &str = r#"{"session_id":"s","cwd":"/home/me/proj","hook_event_name":"Stop","stop_hook_active":true,"last_assistant_message":"done two","background_tasks":[],"session_crons":[]}"#;

/// The hook under test: `PEERS_TEST_DELIVER_BIN` when set (e.g. an older build, to see a
/// new test fail on it), else the one built with these tests.
pub fn hook_bin() -> PathBuf {
    std::env::var_os("PEERS_TEST_DELIVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_peers-deliver")))
}

/// One registered session: the fake Claude Code process, its peer, its client.
pub struct Peer {
    pub claude: ChildGuard,
    pub claude_pid: u32,
    pub name: String,
    pub address: String,
    pub peer_id: String,
    pub token: String,
    pub cwd: PathBuf,
    pub client: BrokerClient,
}

pub struct Harness {
    pub env: TestEnv,
    pub broker: BrokerProcess,
    /// The recipient: the hook runs as this session.
    pub me: Peer,
    /// Another session that sends mail.
    pub web: Peer,
}

impl Harness {
    /// A broker plus two registered sessions; `vars` are set for the broker and every hook.
    pub async fn start(vars: &[(&str, &str)]) -> Harness {
        Self::start_with_broker(vars, None).await
    }

    /// Like [`Harness::start`], running the broker binary `broker_bin` (default: the
    /// workspace's debug build).
    pub async fn start_with_broker(vars: &[(&str, &str)], broker_bin: Option<&Path>) -> Harness {
        let mut env = TestEnv::new();
        for (k, v) in vars {
            env.set(k, *v);
        }
        let broker = match broker_bin {
            None => BrokerProcess::start(&env).await,
            Some(bin) => {
                let b = BrokerProcess::spawn(&env, bin, &[], Stdio::null());
                b.wait_healthy(Duration::from_secs(10)).await;
                b
            }
        };
        let me = register(&env, "api", peers_testkit::fake_claude()).await;
        let web = register(&env, "web", peers_testkit::fake_claude()).await;
        write_session(&env, &me, me.claude_pid);
        Harness {
            env,
            broker,
            me,
            web,
        }
    }

    /// `web` sends `body` to `me`; returns the message id.
    pub async fn send(&self, body: &str) -> i64 {
        self.send_reply(body, None).await
    }

    pub async fn send_reply(&self, body: &str, reply_to: Option<i64>) -> i64 {
        self.web
            .client
            .send(&SendRequest {
                tags: vec![],
                to: self.me.name.clone(),
                message: body.to_string(),
                reply_to,
                scope: None,
            })
            .await
            .expect("send")
            .message_id
    }

    /// A command for the hook, confined to the test environment, with `CLAUDE_PID` set.
    pub fn hook(&self, args: &[&str]) -> Command {
        self.hook_at(&hook_bin(), args)
    }

    /// Like [`Harness::hook`], running the binary `program`.
    pub fn hook_at(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        self.env.apply(&mut cmd);
        cmd.args(args)
            .env("CLAUDE_PID", self.me.claude_pid.to_string())
            .env("CLAUDE_CODE_SESSION_ATTENDED", "1")
            .env_remove("CLAUDE_CODE_STOP_HOOK_BLOCK_CAP")
            .env_remove(deliver_hook::PAUSE_AFTER_CLAIM_ENV);
        cmd
    }

    /// Runs one hook event with `input` on stdin.
    pub fn run(&self, input: &str) -> HookRun {
        run_with(self.hook(&[]), input)
    }

    pub async fn status(&self, id: i64) -> peers_core::wire::MessageStatus {
        self.web.client.message_status(id).await.expect("status")
    }
}

pub struct HookRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl HookRun {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The text the model sees (additionalContext or reason).
    pub fn text(&self) -> String {
        let j = self.json();
        j["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .or(j["reason"].as_str())
            .expect("a text field")
            .to_string()
    }
}

pub fn run_with(mut cmd: Command, input: &str) -> HookRun {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn peers-deliver");
    // The hook stops reading at the first byte that cannot be JSON: a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    HookRun {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
        elapsed: started.elapsed(),
    }
}

/// Registers a session for `claude` with the user secret, in its own directory `name`.
pub async fn register(env: &TestEnv, name: &str, claude: ChildGuard) -> Peer {
    let cwd = env.dir.path().join("work").join(name);
    std::fs::create_dir_all(&cwd).unwrap();
    let req = RegisterRequest {
        host: "testbox".into(),
        ..peer::request(env, claude.pid(), cwd.display())
    };
    let p = peer::Peer::register_with(env, claude, req).await;
    let claude_pid = p.claude_pid();
    Peer {
        claude: p.claude,
        claude_pid,
        client: p.client,
        name: p.reg.name,
        address: p.reg.address,
        peer_id: p.reg.peer_id,
        token: p.reg.token,
        cwd,
    }
}

/// Writes the session file of `peer` keyed by `key_pid`, as peers-mcp would.
pub fn write_session(env: &TestEnv, peer: &Peer, key_pid: u32) -> PathBuf {
    write_session_with_prefix(env, peer, key_pid, peers_core::render::DEFAULT_TOOL_PREFIX)
}

/// Like [`write_session`], for a client that names the tools with `tool_prefix`.
pub fn write_session_with_prefix(
    env: &TestEnv,
    peer: &Peer,
    key_pid: u32,
    tool_prefix: &str,
) -> PathBuf {
    SessionFile {
        peer_id: peer.peer_id.clone(),
        name: peer.name.clone(),
        address: peer.address.clone(),
        token: peer.token.clone(),
        broker_url: env.url(),
        broker_urls: Vec::new(),
        claude_pid: key_pid,
        claude_start_time: peers_core::process::start_time(key_pid),
        mcp_pid: std::process::id(),
        session_id: None,
        machine_id: peers_core::identity::machine_id(&env.state_dir).unwrap(),
        cwd: peer.cwd.display().to_string(),
        written_ms: peers_core::now_ms(),
        tool_prefix: tool_prefix.into(),
        agent: Default::default(),
    }
    .write(&env.state_dir)
    .unwrap()
}

/// The message ids shown in a hook's stdout (its JSON); empty for empty stdout.
pub fn stdout_ids(stdout: &str) -> Vec<i64> {
    if stdout.trim().is_empty() {
        return vec![];
    }
    let j: serde_json::Value = serde_json::from_str(stdout).expect("hook stdout is JSON");
    let text = j["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .or(j["reason"].as_str())
        .expect("a text field");
    shown_ids(text)
}

/// The message ids shown in a hook text.
pub fn shown_ids(text: &str) -> Vec<i64> {
    text.match_indices("<peer-message id=\"")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}
