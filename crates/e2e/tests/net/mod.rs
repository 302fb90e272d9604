//! The peers network the Codex and Gemini CLI scenarios run in: a broker on a throw-away
//! environment and a stand-in session `web` registered straight with it (it sends and reads
//! mail over the real HTTP API), and a Codex home set up by the real `peers install`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peers_core::wire::{ListPeersQuery, PeerInfo, Scope, SendRequest, SendResponse};
use peers_testkit::fake_openai::FakeOpenAi;
use peers_testkit::peer::Peer;
use peers_testkit::{BrokerProcess, ChildGuard, TestEnv};
use serde_json::json;

pub struct Net {
    pub env: TestEnv,
    pub rt: tokio::runtime::Runtime,
    pub web: Peer,
    _broker: BrokerProcess,
}

impl Net {
    pub fn start() -> Net {
        for b in ["peers-deliver", "peers-mcp", "peers-broker", "peers"] {
            peers_testkit::bin(b);
        }
        let env = TestEnv::new();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let broker = rt.block_on(BrokerProcess::start(&env));
        let web_dir = env.dir.path().join("work/web");
        std::fs::create_dir_all(&web_dir).unwrap();
        let web = rt.block_on(Peer::register(&env, web_dir.display()));
        Net {
            env,
            rt,
            web,
            _broker: broker,
        }
    }

    /// The project directory `work/<name>` (the session's peer name comes from it).
    pub fn project(&self, name: &str) -> PathBuf {
        let p = self.env.dir.path().join("work").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Waits until a session named `name` is registered.
    pub fn wait_registered(&self, name: &str, timeout: Duration) -> PeerInfo {
        let deadline = Instant::now() + timeout;
        let user = self.env.user_client();
        loop {
            let list = self
                .rt
                .block_on(user.list_peers(&ListPeersQuery {
                    scope: Scope::All,
                    ..Default::default()
                }))
                .unwrap();
            if let Some(p) = list.peers.into_iter().find(|p| p.name == name) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "the session {name} never registered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `message` from `web` to `to`.
    pub fn send_from_web(&self, to: &str, message: &str) -> SendResponse {
        self.rt
            .block_on(self.web.client.send(&SendRequest {
                to: to.into(),
                message: message.into(),
                reply_to: None,
                scope: None,
                tags: vec![],
            }))
            .unwrap()
    }
}

/// `peers install --agent codex` into `$CODEX_HOME`, then the fake provider in front and the
/// test's environment for the MCP server (Codex clears the environment of MCP servers: the
/// variables confining it to the test must be in its `env`).
pub fn codex_home(env: &TestEnv, api: &FakeOpenAi) -> std::path::PathBuf {
    let home = env.dir.path().join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = env
        .apply(&mut Command::new(peers_testkit::bin("peers")))
        .args(["install", "--agent", "codex"])
        .env("CODEX_HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "peers install: {out:?}");
    let installed = std::fs::read_to_string(home.join("config.toml")).unwrap();
    let vars: Vec<String> = env
        .vars()
        .iter()
        .map(|(k, v)| format!("{k} = {}", json!(v)))
        .collect();
    let with_env = installed.replacen(
        "default_tools_approval_mode = \"approve\"",
        &format!(
            "default_tools_approval_mode = \"approve\"\nenv = {{ {} }}",
            vars.join(", ")
        ),
        1,
    );
    assert_ne!(with_env, installed, "{installed}");
    let provider = format!(
        "model = \"fake-model\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\n\
         name = \"Fake\"\nbase_url = \"{}\"\nwire_api = \"responses\"\nenv_key = \"FAKE_API_KEY\"\n\n",
        api.url()
    );
    std::fs::write(home.join("config.toml"), provider + &with_env).unwrap();
    home
}

/// `codex exec PROMPT` in `project` with `home` as its `CODEX_HOME` (full access: the shell
/// tool may reach the broker), quiet.
pub fn codex_exec(
    env: &TestEnv,
    codex: &std::path::Path,
    home: &std::path::Path,
    project: &std::path::Path,
    prompt: &str,
) -> ChildGuard {
    ChildGuard::new(
        env.apply(&mut Command::new(codex))
            .args([
                "exec",
                "--skip-git-repo-check",
                "-s",
                "danger-full-access",
                prompt,
            ])
            .current_dir(project)
            .env("CODEX_HOME", home)
            .env("FAKE_API_KEY", "sk-test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
