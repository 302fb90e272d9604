//! A scripted fake of the Anthropic Messages API, one per simulated Claude Code session.
//!
//! Main-loop requests (those that carry `tools`) take the next [`Step`] of the script; when the
//! script runs out, the fallback step answers (by default the text "ok"). Requests without
//! `tools` (titles, summaries, quota checks) get a plain text reply, `count_tokens` a number,
//! and any other path `{}`. Replies stream as SSE when the request asks for `stream`, else
//! come back as one JSON message. Every request is recorded with the time it arrived, so a
//! test can assert on exactly what the model was shown and when.
//!
//! The server runs on its own thread and tokio runtime, so a dynamic step may block (wait for
//! another session, for a gate, for mail) without stalling anything else; keep such waits
//! bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::claude::shown;

/// One tool call the scripted model makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub input: Value,
}

/// What the scripted model answers to one request: optional text, then zero or more tool
/// calls (stop reason `tool_use` when there is one, else `end_turn`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub text: Option<String>,
    pub tools: Vec<ToolCall>,
}

impl Reply {
    pub fn text(t: impl Into<String>) -> Reply {
        Reply {
            text: Some(t.into()),
            tools: vec![],
        }
    }

    pub fn tool(name: impl Into<String>, input: Value) -> Reply {
        Reply {
            text: None,
            tools: vec![ToolCall {
                name: name.into(),
                input,
            }],
        }
    }

    /// A `Bash` tool call running `command`.
    pub fn bash(command: impl Into<String>) -> Reply {
        let command = command.into();
        Reply::tool(
            "Bash",
            json!({"command": command, "description": "scripted step"}),
        )
    }

    /// Text followed by a tool call, in one assistant message.
    pub fn text_and_tool(t: impl Into<String>, name: impl Into<String>, input: Value) -> Reply {
        let mut r = Reply::tool(name, input);
        r.text = Some(t.into());
        r
    }

    pub fn is_tool_use(&self) -> bool {
        !self.tools.is_empty()
    }
}

/// What a dynamic step sees: the request it answers and everything recorded so far.
pub struct StepCtx<'a> {
    /// The request body being answered.
    pub body: &'a Value,
    /// How many main-loop requests came before this one.
    pub index: usize,
    /// The fake API this step runs in (its records, for example).
    pub api: &'a FakeApi,
}

impl StepCtx<'_> {
    /// All text of the request, flattened (system, every message, tool results).
    pub fn all_text(&self) -> String {
        shown::all_text(self.body)
    }

    /// The text added since the model last spoke: tool results, hook context, Stop feedback,
    /// the user's prompt.
    pub fn latest_text(&self) -> String {
        shown::latest_user_text(self.body)
    }
}

type DynStep = dyn Fn(&StepCtx<'_>) -> Reply + Send + Sync;

/// One step of a script.
#[derive(Clone)]
pub enum Step {
    /// A fixed reply.
    Fixed(Reply),
    /// A reply computed when the request arrives. It runs on a blocking thread and may wait.
    Dynamic(Arc<DynStep>),
}

impl Step {
    pub fn text(t: impl Into<String>) -> Step {
        Step::Fixed(Reply::text(t))
    }

    pub fn tool(name: impl Into<String>, input: Value) -> Step {
        Step::Fixed(Reply::tool(name, input))
    }

    pub fn bash(command: impl Into<String>) -> Step {
        Step::Fixed(Reply::bash(command))
    }

    pub fn dynamic(f: impl Fn(&StepCtx<'_>) -> Reply + Send + Sync + 'static) -> Step {
        Step::Dynamic(Arc::new(f))
    }

    /// Waits for `gate` (at most `timeout`), then answers `then`.
    pub fn after(gate: &Gate, timeout: Duration, then: Reply) -> Step {
        let gate = gate.clone();
        Step::dynamic(move |_| {
            gate.wait(timeout);
            then.clone()
        })
    }
}

impl From<Reply> for Step {
    fn from(r: Reply) -> Step {
        Step::Fixed(r)
    }
}

/// A one-shot latch shared between steps, sessions and the test.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        let (m, c) = &*self.0;
        *m.lock().unwrap() = true;
        c.notify_all();
    }

    pub fn is_open(&self) -> bool {
        *self.0.0.lock().unwrap()
    }

    /// Waits until open; returns false when `timeout` passed first.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (m, c) = &*self.0;
        let guard = m.lock().unwrap();
        let (guard, _) = c.wait_timeout_while(guard, timeout, |open| !*open).unwrap();
        *guard
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Position among all requests to this fake.
    pub seq: usize,
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: Value,
    /// Whether it carried `tools` (a main-loop request), and so took a script step.
    pub main_loop: bool,
    /// The reply given, for main-loop and other message requests.
    pub reply: Option<Reply>,
}

impl Recorded {
    /// All text the model was shown in this request.
    pub fn all_text(&self) -> String {
        shown::all_text(&self.body)
    }

    /// The text added since the model last spoke.
    pub fn latest_text(&self) -> String {
        shown::latest_user_text(&self.body)
    }
}

struct Inner {
    script: Mutex<VecDeque<Step>>,
    fallback: Mutex<Step>,
    records: Mutex<Vec<Recorded>>,
    changed: Condvar,
    main_count: Mutex<usize>,
    label: String,
}

/// A running fake API. Dropping it stops the server.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl FakeApi {
    /// Starts a fake on a free loopback port answering main-loop requests from `script`.
    pub fn start(label: &str, script: Vec<Step>) -> FakeApi {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            fallback: Mutex::new(Step::text("ok")),
            records: Mutex::new(vec![]),
            changed: Condvar::new(),
            main_count: Mutex::new(0),
            label: label.to_string(),
        });
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let api = FakeApi {
            inner,
            addr,
            shutdown: Arc::new(Mutex::new(Some(tx))),
        };
        let state = api.clone_weakly();
        std::thread::Builder::new()
            .name(format!("fake-api-{label}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                    let app = Router::new().fallback(handle).with_state(state);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn fake api thread");
        api
    }

    // The server holds a handle without the shutdown sender, so dropping the test's last
    // handle stops it.
    fn clone_weakly(&self) -> FakeApi {
        FakeApi {
            inner: self.inner.clone(),
            addr: self.addr,
            shutdown: Arc::new(Mutex::new(None)),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Appends steps to the script.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.inner.script.lock().unwrap().extend(steps);
    }

    /// The step used for main-loop requests once the script is used up.
    pub fn set_fallback(&self, step: Step) {
        *self.inner.fallback.lock().unwrap() = step;
    }

    /// Steps not yet taken.
    pub fn remaining(&self) -> usize {
        self.inner.script.lock().unwrap().len()
    }

    /// Every request so far.
    pub fn records(&self) -> Vec<Recorded> {
        self.inner.records.lock().unwrap().clone()
    }

    /// The main-loop requests so far.
    pub fn main_requests(&self) -> Vec<Recorded> {
        self.records().into_iter().filter(|r| r.main_loop).collect()
    }

    /// Waits until a recorded request satisfies `pred`, returning it; `None` after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Recorded) -> bool,
    ) -> Option<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut records = self.inner.records.lock().unwrap();
        loop {
            if let Some(r) = records.iter().find(|r| pred(r)) {
                return Some(r.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            records = self
                .inner
                .changed
                .wait_timeout(records, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits for a main-loop request whose text contains `needle`.
    pub fn wait_for_text(&self, timeout: Duration, needle: &str) -> Option<Recorded> {
        self.wait_for(timeout, |r| r.main_loop && r.all_text().contains(needle))
    }

    /// Waits until no request arrived for `quiet`, at most `timeout`; returns whether it did.
    pub fn wait_quiet(&self, quiet: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self
                .inner
                .records
                .lock()
                .unwrap()
                .last()
                .map(|r| r.at)
                .unwrap_or_else(Instant::now);
            if last.elapsed() >= quiet {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A readable dump of the main-loop requests (the latest text of each), for failures.
    pub fn transcript(&self) -> String {
        let mut out = String::new();
        for r in self.main_requests() {
            out.push_str(&format!(
                "--- [{}] request #{} ---\n{}\n=> {:?}\n",
                self.inner.label,
                r.seq,
                shown::truncate(&r.latest_text(), 3000),
                r.reply
            ));
        }
        out
    }

    /// With `E2E_DUMP` set, prints every request and the transcript to stderr; when
    /// `E2E_DUMP` names a directory, also writes every request body to `<dir>/<label>.jsonl`.
    pub fn dump_if_asked(&self) {
        let Some(dump) = std::env::var_os("E2E_DUMP") else {
            return;
        };
        for r in self.records() {
            eprintln!(
                "[{}] #{} {} {} main={} reply={:?}",
                self.inner.label, r.seq, r.method, r.path, r.main_loop, r.reply
            );
        }
        eprintln!("{}", self.transcript());
        let dir = std::path::PathBuf::from(dump);
        if dir.is_dir() {
            let lines: Vec<String> = self
                .records()
                .iter()
                .map(|r| {
                    json!({"seq": r.seq, "method": r.method, "path": r.path, "body": r.body})
                        .to_string()
                })
                .collect();
            let f = dir.join(format!("{}.jsonl", self.inner.label));
            let _ = std::fs::write(&f, lines.join("\n") + "\n");
            eprintln!("[{}] requests written to {}", self.inner.label, f.display());
        }
    }

    fn record(&self, mut rec: Recorded) -> usize {
        let mut records = self.inner.records.lock().unwrap();
        rec.seq = records.len();
        let seq = rec.seq;
        records.push(rec);
        self.inner.changed.notify_all();
        seq
    }

    fn set_reply(&self, seq: usize, reply: Reply) {
        let mut records = self.inner.records.lock().unwrap();
        if let Some(r) = records.get_mut(seq) {
            r.reply = Some(reply);
        }
        self.inner.changed.notify_all();
    }

    fn next_step(&self) -> (usize, Step) {
        let mut n = self.inner.main_count.lock().unwrap();
        let index = *n;
        *n += 1;
        let step = self
            .inner
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.inner.fallback.lock().unwrap().clone());
        (index, step)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        // Only the handle created by `start` (and its clones) holds the sender; stop the
        // server when the last of those goes.
        if Arc::strong_count(&self.shutdown) == 1
            && let Some(tx) = self.shutdown.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    }
}

async fn handle(State(api): State<FakeApi>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        if body.is_empty() {
            Value::Null
        } else {
            json!({"raw": String::from_utf8_lossy(&body)})
        }
    });
    let main_loop = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let seq = api.record(Recorded {
        seq: 0,
        at: Instant::now(),
        method: method.to_string(),
        path: path.clone(),
        body: body.clone(),
        main_loop,
        reply: None,
    });
    if method != Method::POST {
        return axum::Json(json!({})).into_response();
    }
    if path.contains("count_tokens") {
        return axum::Json(json!({"input_tokens": 10})).into_response();
    }
    if !path.ends_with("/messages") {
        return axum::Json(json!({})).into_response();
    }
    let reply = if main_loop {
        let (index, step) = api.next_step();
        match step {
            Step::Fixed(r) => r,
            Step::Dynamic(f) => {
                let api2 = api.clone();
                let body2 = body.clone();
                tokio::task::spawn_blocking(move || {
                    f(&StepCtx {
                        body: &body2,
                        index,
                        api: &api2,
                    })
                })
                .await
                .unwrap_or_else(|e| Reply::text(format!("(scripted step panicked: {e})")))
            }
        }
    } else {
        Reply::text("ok")
    };
    api.set_reply(seq, reply.clone());
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_string();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    render(&reply, seq, &model, stream)
}

fn blocks(reply: &Reply, seq: usize) -> Vec<Value> {
    let mut out = vec![];
    if let Some(t) = &reply.text {
        out.push(json!({"type": "text", "text": t}));
    }
    for (i, t) in reply.tools.iter().enumerate() {
        out.push(json!({
            "type": "tool_use",
            "id": format!("toolu_{seq:04}_{i}"),
            "name": t.name,
            "input": t.input,
        }));
    }
    out
}

fn render(reply: &Reply, seq: usize, model: &str, stream: bool) -> Response {
    let content = blocks(reply, seq);
    let stop = if reply.is_tool_use() {
        "tool_use"
    } else {
        "end_turn"
    };
    let usage = json!({"input_tokens": 10, "output_tokens": 5});
    let id = format!("msg_{seq:04}");
    if !stream {
        return axum::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let mut sse = String::new();
    let mut ev = |name: &str, data: Value| {
        sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    ev(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage}}),
    );
    for (i, b) in content.iter().enumerate() {
        if b["type"] == "text" {
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": i,
                       "content_block": {"type": "text", "text": ""}}),
            );
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i,
                       "delta": {"type": "text_delta", "text": b["text"]}}),
            );
        } else {
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": i,
                       "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"],
                                         "input": {}}}),
            );
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i,
                       "delta": {"type": "input_json_delta",
                                 "partial_json": b["input"].to_string()}}),
            );
        }
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        );
    }
    ev(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        sse,
    )
        .into_response()
}
