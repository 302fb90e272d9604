//! Running the real `peers` binary (and its siblings) in a throw-away environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use peers_core::BrokerClient;
use peers_core::wire::{RegisterRequest, RegisterResponse};
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv, bin, fake_claude, peer};

pub use peers_testkit::poll::wait_until;

/// A directory for PATH that holds no `claude`, so install takes the file-writing path.
pub fn plain_path(env: &TestEnv) -> String {
    let empty = env.dir.path().join("emptybin");
    std::fs::create_dir_all(&empty).unwrap();
    format!("{}:/usr/bin:/bin", empty.display())
}

/// `peers …` in `env`, run in `cwd`, with `claude` not on PATH.
pub fn peers_cmd(env: &TestEnv, cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("peers"));
    env.apply(&mut c)
        .env("PATH", plain_path(env))
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null());
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `peers …` to completion.
pub fn peers(env: &TestEnv, cwd: &Path, args: &[&str]) -> Run {
    peers_cmd(env, cwd, args)
        .output()
        .expect("run peers")
        .into()
}

/// A project directory inside the environment.
pub fn project(env: &TestEnv, name: &str) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Registers a simulated session (its Claude Code stand-in is `claude`, which also stands in
/// for its peers-mcp) directly with the broker; returns the registration.
pub async fn register(env: &TestEnv, claude: &ChildGuard, cwd: &Path) -> RegisterResponse {
    let req = RegisterRequest {
        mcp_pid: claude.pid(),
        host: "testhost".into(),
        ..peer::request(env, claude.pid(), cwd.display())
    };
    peer::register(env, &req).await
}

/// A client with a peer's token.
pub fn peer_client(env: &TestEnv, reg: &RegisterResponse) -> BrokerClient {
    BrokerClient::new(&env.url(), Some(reg.token.clone()))
}

/// A running broker with one registered session, `web` (project dir `web`), and the human's
/// working dir `here`: `(env, cwd, broker, claude, web, web_client)`. Bind them in that order
/// so they drop like hand-written locals (the broker before the environment's temp dir).
pub type WithWeb = (
    TestEnv,
    PathBuf,
    BrokerProcess,
    ChildGuard,
    RegisterResponse,
    BrokerClient,
);

/// Starts the broker of a fresh environment and registers `web` with it.
pub async fn with_web() -> WithWeb {
    let env = TestEnv::new();
    let cwd = project(&env, "here");
    let broker = BrokerProcess::start(&env).await;
    let claude = fake_claude();
    let web = register(&env, &claude, &project(&env, "web")).await;
    let web_client = peer_client(&env, &web);
    (env, cwd, broker, claude, web, web_client)
}

impl Run {
    /// The `message_id` of a `send --json`.
    pub fn message_id(&self) -> i64 {
        self.json()["message_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no message_id in:\n{}", self.stdout))
    }
}

/// Asserts that `text` contains `needle`, showing `text` when it does not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text}");
}
