//! A scripted fake of the Gemini API (`generativelanguage` v1beta), for driving the real
//! Gemini CLI offline (`GOOGLE_GEMINI_BASE_URL` = [`FakeGemini::url`], `-m gemini-2.5-pro`,
//! `security.auth.selectedType = "gemini-api-key"`).
//!
//! Main-loop calls (`:streamGenerateContent` with `tools`) take the next [`Reply`]; internal
//! calls asking for JSON (`generationConfig.responseMimeType`) get a minimal object of their
//! schema, `:countTokens` a number, anything else the text "ok". Every request body is
//! recorded: hook `additionalContext` shows as `<hook_context>X</hook_context>` text (for
//! AfterTool inside the functionResponse output). MCP tools are declared flat as
//! `mcp_<server>_<tool>`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::fake_server::Requests;

/// One answer of the scripted model.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    Call { name: String, args: Value },
}

impl Reply {
    pub fn text(t: impl Into<String>) -> Reply {
        Reply::Text(t.into())
    }
    /// The shell tool running `command`.
    pub fn shell(command: impl Into<String>) -> Reply {
        Reply::Call {
            name: "run_shell_command".into(),
            args: json!({"command": command.into()}),
        }
    }
    pub fn call(name: impl Into<String>, args: Value) -> Reply {
        Reply::Call {
            name: name.into(),
            args,
        }
    }
}

struct Inner {
    script: Mutex<VecDeque<Reply>>,
    requests: Requests,
}

/// A running fake; dropping it stops the server.
pub struct FakeGemini {
    inner: Arc<Inner>,
    addr: std::net::SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl FakeGemini {
    pub fn start(script: Vec<Reply>) -> FakeGemini {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            requests: Requests::default(),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (addr, tx) = crate::fake_server::serve("fake-gemini", app);
        FakeGemini {
            inner,
            addr,
            _shutdown: tx,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for a main-loop request whose `contents` contains `needle`.
    pub fn wait_for_contents(&self, timeout: Duration, needle: &str) -> Option<Value> {
        self.inner
            .requests
            .wait_main_with(timeout, "contents", needle)
    }

    /// Waits until `n` main-loop requests have arrived.
    pub fn wait_main_requests(&self, n: usize, timeout: Duration) -> bool {
        self.inner.requests.wait_main_count(n, timeout)
    }
}

/// A minimal value matching a (Gemini-style, upper-case types) JSON schema.
fn dummy(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"]
        .as_str()
        .unwrap_or("object")
        .to_lowercase()
        .as_str()
    {
        "object" => {
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let required: Vec<String> = schema["required"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_else(|| props.keys().cloned().collect());
            Value::Object(
                props
                    .iter()
                    .filter(|(k, _)| required.contains(k))
                    .map(|(k, v)| (k.clone(), dummy(v)))
                    .collect(),
            )
        }
        "array" => json!([]),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        _ => json!("fake"),
    }
}

async fn handle(State(inner): State<Arc<Inner>>, uri: Uri, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    if path.ends_with(":countTokens") {
        return axum::Json(json!({"totalTokens": 10})).into_response();
    }
    let gen_cfg = req["generationConfig"].clone();
    let reply = {
        inner.requests.push(req.clone());
        let scripted = req
            .get("tools")
            .and_then(|_| inner.script.lock().unwrap().pop_front());
        match scripted {
            Some(r) => r,
            None if gen_cfg["responseMimeType"] == "application/json" => {
                let schema = if gen_cfg["responseJsonSchema"].is_null() {
                    &gen_cfg["responseSchema"]
                } else {
                    &gen_cfg["responseJsonSchema"]
                };
                Reply::text(dummy(schema).to_string())
            }
            None => Reply::text("ok"),
        }
    };
    let part = match reply {
        Reply::Text(t) => json!({"text": t}),
        Reply::Call { name, args } => json!({"functionCall": {"name": name, "args": args}}),
    };
    let resp = json!({
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "fake",
    });
    if !path.ends_with(":streamGenerateContent") {
        return axum::Json(resp).into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        format!("data: {resp}\n\n"),
    )
        .into_response()
}

/// The Gemini CLI entry script: `$PEERS_GEMINI_JS`, else the pinned npm install under
/// `target/gemini-cli` (`cargo xtask test` installs it). Run with `node`.
pub fn gemini_js() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("PEERS_GEMINI_JS").filter(|p| !p.is_empty()) {
        let p = std::path::PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = crate::claude::driver::workspace_root()
        .join("target/gemini-cli/node_modules/@google/gemini-cli/bundle/gemini.js");
    p.is_file().then_some(p)
}
