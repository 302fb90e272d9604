//! A scripted fake of the OpenAI Responses API (`POST /v1/responses`, SSE), for driving the
//! real Codex CLI offline (`model_provider` pointed at [`FakeOpenAi::url`], `wire_api =
//! "responses"`), on the pattern of [`crate::claude::FakeApi`].
//!
//! Each request that carries `tools` (the main loop) takes the next [`Reply`] of the script;
//! when it runs out, the fallback answers ([`FakeOpenAi::set_fallback`]: a function of the
//! request, by default the text "ok"); requests without tools (titles) get the text "ok".
//! Every request body is recorded, so a test can read what the model was shown: hook
//! `additionalContext` arrives as a `role: "developer"` message, a Stop block as a user message
//! `<hook_prompt …>reason</hook_prompt>`. MCP tools are offered inside a `namespace` tool
//! `mcp__<server>`; a call names the namespace and the bare function ([`Reply::mcp`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::fake_server::Requests;

/// One answer of the scripted model.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    /// A `function_call` (the shell tool is `exec_command {"cmd"}`), in `namespace` if given.
    Call {
        namespace: Option<String>,
        name: String,
        args: Value,
    },
}

impl Reply {
    pub fn text(t: impl Into<String>) -> Reply {
        Reply::Text(t.into())
    }
    /// The shell tool running `cmd`.
    pub fn shell(cmd: impl Into<String>) -> Reply {
        Reply::Call {
            namespace: None,
            name: "exec_command".into(),
            args: json!({"cmd": cmd.into()}),
        }
    }
    /// A tool `name` of the MCP server `server` (namespace `mcp__<server>`).
    pub fn mcp(server: &str, name: &str, args: Value) -> Reply {
        Reply::Call {
            namespace: Some(format!("mcp__{server}")),
            name: name.into(),
            args,
        }
    }
}

/// A reply computed from the request it answers (it may block a little: it runs on a
/// blocking thread).
pub type Fallback = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

struct Inner {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Fallback>>,
    requests: Requests,
}

/// A running fake. Dropping the last handle stops it.
pub struct FakeOpenAi {
    inner: Arc<Inner>,
    addr: SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl FakeOpenAi {
    pub fn start(script: Vec<Reply>) -> FakeOpenAi {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            fallback: Mutex::new(None),
            requests: Requests::default(),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (addr, tx) = crate::fake_server::serve("fake-openai", app);
        FakeOpenAi {
            inner,
            addr,
            _shutdown: tx,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the provider's `base_url`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// What answers main-loop requests once the script is used up.
    pub fn set_fallback(&self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        *self.inner.fallback.lock().unwrap() = Some(Arc::new(f));
    }

    /// Every request body so far.
    pub fn records(&self) -> Vec<Value> {
        self.inner.requests.all()
    }

    /// Waits for a main-loop request whose `input` contains `needle`.
    pub fn wait_for_input(&self, timeout: Duration, needle: &str) -> Option<Value> {
        self.inner.requests.wait_main_with(timeout, "input", needle)
    }

    /// Waits until `n` main-loop requests have arrived.
    pub fn wait_main_requests(&self, n: usize, timeout: Duration) -> bool {
        self.inner.requests.wait_main_count(n, timeout)
    }
}

/// The texts of the `role: "developer"` messages of a request's `input`.
pub fn developer_texts(request: &Value) -> Vec<String> {
    request["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["role"] == "developer")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_string))
        .collect()
}

fn sse(event: &str, data: Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

async fn handle(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let main = req.get("tools").is_some();
    let model = req.get("model").cloned().unwrap_or(json!("fake"));
    let n = inner.requests.push(req.clone());
    let scripted = main
        .then(|| inner.script.lock().unwrap().pop_front())
        .flatten();
    let fallback = main
        .then(|| inner.fallback.lock().unwrap().clone())
        .flatten();
    let reply = match (scripted, fallback) {
        (Some(r), _) => r,
        (None, Some(f)) => tokio::task::spawn_blocking(move || f(&req))
            .await
            .unwrap_or_else(|e| Reply::text(format!("(fallback panicked: {e})"))),
        (None, None) => Reply::text("ok"),
    };
    let item = match reply {
        Reply::Text(t) => json!({
            "type": "message", "id": format!("msg_{n}"), "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": t, "annotations": []}],
        }),
        Reply::Call {
            namespace,
            name,
            args,
        } => {
            let mut c = json!({
                "type": "function_call", "id": format!("fc_{n}"), "call_id": format!("call_{n}"),
                "status": "completed", "name": name, "arguments": args.to_string(),
            });
            if let Some(ns) = namespace {
                c["namespace"] = json!(ns);
            }
            c
        }
    };
    let resp = json!({
        "id": format!("resp_{n}"), "object": "response", "status": "in_progress",
        "model": model, "output": [],
    });
    let mut out = sse(
        "response.created",
        json!({"type": "response.created", "response": resp}),
    );
    out += &sse(
        "response.output_item.added",
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
    );
    if item["type"] == "message" {
        out += &sse(
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "item_id": item["id"],
                   "output_index": 0, "content_index": 0,
                   "delta": item["content"][0]["text"]}),
        );
    }
    out += &sse(
        "response.output_item.done",
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    );
    let mut done = resp.clone();
    done["status"] = json!("completed");
    done["output"] = json!([item]);
    done["usage"] = json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15});
    out += &sse(
        "response.completed",
        json!({"type": "response.completed", "response": done}),
    );
    ([(header::CONTENT_TYPE, "text/event-stream")], out).into_response()
}

/// The variable naming the Codex CLI binary to test against.
pub const CODEX_BIN_ENV: &str = "PEERS_CODEX_BIN";

/// The native Codex binary: `$PEERS_CODEX_BIN`, else the pinned npm install under
/// `target/codex` (`npm install --prefix target/codex @openai/codex@0.171.0`, as `.ci/run`
/// does).
pub fn codex_bin() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(CODEX_BIN_ENV).filter(|p| !p.is_empty()) {
        let p = std::path::PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = crate::claude::driver::workspace_root().join(
        "target/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    );
    p.is_file().then_some(p)
}

/// The Codex binary, or a loud SKIPPED line naming `test` and `None`.
pub fn codex_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let found = codex_bin();
    if found.is_none() {
        use std::io::Write;
        let msg = format!(
            "SKIPPED {test}: no Codex CLI ({CODEX_BIN_ENV} unset or missing, and no target/codex \
             install). Run `npm install --prefix target/codex @openai/codex@0.171.0` or set \
             {CODEX_BIN_ENV}."
        );
        let _ = std::io::stderr().write_all(format!("\n{msg}\n").as_bytes());
        println!("E2E-SKIPPED {test}");
    }
    found
}

/// The texts of the `function_call_output` items of a request's `input` (what the tools
/// answered), in order.
pub fn tool_outputs(request: &Value) -> Vec<String> {
    request["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| match &i["output"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// The `function_call` items of a request's `input` named `name` (the model's earlier calls).
pub fn calls_named(request: &Value, name: &str) -> usize {
    request["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "function_call" && i["name"] == name)
        .count()
}

/// The hooks a real Codex sees for `cwd` with `codex_home`, as its app server's `hooks/list`
/// reports them (each with `key`, `eventName`, `command`, `currentHash`, `trustStatus`, …).
/// Runs `codex app-server` on stdio with only `HOME`, `PATH` and `CODEX_HOME` set; `None` when
/// it gave no answer within 30 s.
pub fn hooks_list(
    codex: &std::path::Path,
    home: &std::path::Path,
    codex_home: &std::path::Path,
    cwd: &std::path::Path,
) -> Option<Vec<Value>> {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let mut child = crate::ChildGuard::new(
        Command::new(codex)
            .arg("app-server")
            .env_clear()
            .env("HOME", home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CODEX_HOME", codex_home)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start codex app-server"),
    );
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"clientInfo": {"name": "peers-tests", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "hooks/list",
               "params": {"cwds": [cwd.display().to_string()]}}),
    ];
    let mut stdin = child.child().stdin.take().unwrap();
    for r in requests {
        writeln!(stdin, "{r}").ok()?;
    }
    let stdout = child.child().stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["id"] == 2
            {
                let _ = tx.send(v);
                return;
            }
        }
    });
    let answer = rx.recv_timeout(Duration::from_secs(30)).ok();
    drop(stdin);
    child.kill();
    let data = answer?["result"]["data"].as_array()?.clone();
    Some(
        data.iter()
            .flat_map(|d| d["hooks"].as_array().cloned().unwrap_or_default())
            .collect(),
    )
}
