//! A scripted fake of the OpenAI Responses API (`POST /v1/responses`, SSE), for driving the
//! real Codex CLI offline (`model_provider` pointed at [`FakeOpenAi::url`], `wire_api =
//! "responses"`), on the pattern of [`crate::claude::FakeApi`].
//!
//! Each request that carries `tools` (the main loop) takes the next [`Reply`] of the script;
//! when it runs out, and for requests without tools (titles), the answer is the text "ok".
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

struct Inner {
    script: Mutex<VecDeque<Reply>>,
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
    let n = inner.requests.push(req.clone());
    let reply = main
        .then(|| inner.script.lock().unwrap().pop_front())
        .flatten()
        .unwrap_or_else(|| Reply::text("ok"));
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
        "model": req.get("model").cloned().unwrap_or(json!("fake")), "output": [],
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
