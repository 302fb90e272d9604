//! `peers demo`: a throw-away broker and two simulated Claude Code sessions, all real
//! binaries, exchanging mail both ways; prints what each model is shown.
//!
//! Each session is a stand-in `claude` (a tiny shell script named `claude`, so `peers-mcp` and
//! `peers-deliver` find it exactly as they find Claude Code) running the real `peers-mcp`,
//! which the demo drives over stdio with minimal JSON-RPC, as Claude Code would. The hooks are
//! the real `peers-deliver`, fed the hook JSON Claude Code writes on stdin. Nothing of the
//! user's own set-up is read or touched: own state dir, own config path, own free port.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use peers_core::BrokerClient;
use peers_core::wire::{HistoryQuery, MessageState, SendRequest};
use serde_json::{Value, json};

use crate::context;

const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// A child killed when dropped.
struct Guard(Option<Child>);

impl Guard {
    fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Waits up to `t` for a clean exit, then kills.
    fn finish(&mut self, t: Duration) {
        if let Some(mut c) = self.0.take() {
            let deadline = Instant::now() + t;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The environment every demo process runs in.
struct DemoEnv {
    dir: PathBuf,
    vars: Vec<(String, String)>,
    url: String,
}

impl DemoEnv {
    fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        for k in [
            "PEERS_BROKER_URL",
            "PEERS_BROKER_URLS",
            "PEERS_TOKEN",
            "PEERS_DB",
            "PEERS_BIND",
            "CLAUDE_PID",
            "CLAUDECODE",
            "CLAUDE_CODE_SESSION_ID",
            "CLAUDE_CODE_ENTRYPOINT",
            "CLAUDE_PROJECT_DIR",
            "PEERS_DELIVER_DEBUG",
        ] {
            c.env_remove(k);
        }
        c.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }
}

/// One simulated session: the stand-in claude process and the JSON-RPC pipe to its peers-mcp.
struct Session {
    label: &'static str,
    cwd: PathBuf,
    claude: Guard,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    next_id: u64,
    address: String,
}

impl Session {
    fn start(
        env: &DemoEnv,
        fake_claude: &Path,
        mcp: &Path,
        label: &'static str,
    ) -> Result<Session> {
        let cwd = env.dir.join(label);
        std::fs::create_dir_all(&cwd)?;
        let log = std::fs::File::create(env.dir.join(format!("{label}.mcp.stderr")))?;
        let mut cmd = env.command(fake_claude);
        cmd.arg(mcp)
            .current_dir(&cwd)
            .env("CLAUDE_PROJECT_DIR", &cwd)
            .env("CLAUDECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", mcp.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Session {
            label,
            cwd,
            claude: Guard(Some(child)),
            stdin,
            lines: rx,
            next_id: 1,
            address: String::new(),
        };
        s.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "peers-demo", "version": peers_core::VERSION}
            }),
        )?;
        s.notify("notifications/initialized", json!({}))?;
        Ok(s)
    }

    fn send_line(&mut self, v: &Value) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", self.label))?;
        let mut line = v.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.flush())
            .with_context(|| format!("{}: peers-mcp stopped reading", self.label))
    }

    fn notify(&mut self, method: &str, params: Value) -> Result<()> {
        self.send_line(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).map_err(|_| {
                anyhow!(
                    "{}: peers-mcp did not answer {method} within {} s",
                    self.label,
                    STEP_TIMEOUT.as_secs()
                )
            })?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue; // a notification or a request from the server
            }
            if let Some(err) = v.get("error") {
                bail!("{}: {method} failed: {err}", self.label);
            }
            return Ok(v.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// Calls an MCP tool as the model would; returns the result text.
    fn tool(&mut self, name: &str, args: Value) -> Result<String> {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}))?;
        let text: Vec<&str> = r
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect();
        let text = text.join("\n");
        if r.get("isError").and_then(Value::as_bool) == Some(true) {
            bail!("{}: {name} failed: {text}", self.label);
        }
        Ok(text)
    }

    /// Runs the real peers-deliver for `event` the way Claude Code does; returns its stdout.
    fn hook(&self, env: &DemoEnv, deliver: &Path, input: Value) -> Result<String> {
        let mut cmd = env.command(deliver);
        cmd.current_dir(&self.cwd)
            .env("CLAUDE_PID", self.claude.pid().to_string())
            .env("CLAUDE_PROJECT_DIR", &self.cwd)
            .env("CLAUDECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = Guard(Some(cmd.spawn().context("cannot run peers-deliver")?));
        let c = child.0.as_mut().expect("just spawned");
        if let Some(mut si) = c.stdin.take() {
            si.write_all(input.to_string().as_bytes())?;
        }
        let mut out = c.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        });
        child.finish(STEP_TIMEOUT);
        Ok(reader.join().unwrap_or_default())
    }

    /// Closes the MCP pipe (EOF): peers-mcp unregisters and exits, then the stand-in claude.
    fn end(&mut self) {
        self.stdin = None;
        self.claude.finish(Duration::from_secs(5));
    }
}

fn hook_input(s: &Session, event: &str, extra: Value) -> Value {
    let mut v = json!({
        "session_id": format!("00000000-0000-4000-8000-00000000000{}", if s.label == "api" { 1 } else { 2 }),
        "transcript_path": s.cwd.join("transcript.jsonl"),
        "cwd": s.cwd,
        "hook_event_name": event,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

/// What the model sees from a hook's output.
fn shown(out: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(out.trim()) else {
        return if out.trim().is_empty() {
            "(the hook printed nothing: nothing was shown)".into()
        } else {
            out.trim().to_string()
        };
    };
    if let Some(t) = v
        .pointer("/hookSpecificOutput/additionalContext")
        .and_then(Value::as_str)
    {
        return t.to_string();
    }
    if let Some(t) = v.get("reason").and_then(Value::as_str) {
        return t.to_string();
    }
    v.to_string()
}

fn boxed(text: &str) {
    for l in text.lines() {
        println!("   │ {l}");
    }
}

fn indent(text: &str) {
    for l in text.lines() {
        println!("   {l}");
    }
}

fn need(name: &str) -> Result<PathBuf> {
    context::find_binary(name).ok_or_else(|| {
        anyhow!(
            "cannot find {name} next to peers or on PATH: install all five binaries with \
             `cargo xtask install`"
        )
    })
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's temporary directory (state, logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let broker_bin = need("peers-broker")?;
    let mcp = need("peers-mcp")?;
    let deliver = need("peers-deliver")?;

    let tmp = tempfile::Builder::new().prefix("peers-demo-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let env = DemoEnv {
        url: format!("http://127.0.0.1:{port}"),
        vars: vec![
            (
                "PEERS_STATE_DIR".into(),
                dir.join("state").display().to_string(),
            ),
            (
                "PEERS_CONFIG".into(),
                dir.join("config.toml").display().to_string(),
            ),
            ("PEERS_PORT".into(), port.to_string()),
            ("PEERS_BIND".into(), "127.0.0.1".into()),
            ("PEERS_SWEEP_MS".into(), "500".into()),
        ],
        dir: dir.clone(),
    };
    // The stand-in for Claude Code: a process named `claude` that runs its MCP server.
    let fake_claude = dir.join("bin/claude");
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::write(&fake_claude, "#!/bin/sh\n\"$@\"\nexit 0\n")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake_claude, std::fs::Permissions::from_mode(0o755))?;
    }

    println!("peers demo: two simulated Claude Code sessions, `api` and `web`, on a throw-away");
    println!(
        "broker at {} (state in {}), using the real",
        env.url,
        dir.display()
    );
    println!(
        "peers-broker, peers-mcp and peers-deliver from {}.\n",
        mcp.parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = std::fs::File::create(dir.join("broker.out"))?;
    let mut broker = Guard(Some(
        env.command(&broker_bin)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start peers-broker")?,
    ));
    let anon = BrokerClient::new(&env.url, None);
    let deadline = Instant::now() + STEP_TIMEOUT;
    let health = loop {
        if let Ok(h) = rt.block_on(anon.health()) {
            break h;
        }
        if Instant::now() >= deadline {
            bail!(
                "the demo broker did not start; see {}",
                dir.join("broker.out").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "✓ peers-broker {} started (pid {})",
        health.version, health.pid
    );

    let result = (|| -> Result<()> {
        let mut api = Session::start(&env, &fake_claude, &mcp, "api")?;
        let mut web = Session::start(&env, &fake_claude, &mcp, "web")?;
        for s in [&mut api, &mut web] {
            let who = s.tool("whoami", json!({}))?;
            s.address = who.split('`').nth(1).unwrap_or(s.label).to_string();
            println!(
                "✓ session {:<4} Claude Code pid {} → peers-mcp registered it as {}",
                s.label,
                s.claude.pid(),
                s.address
            );
        }

        let secret = peers_core::paths::read_secret(&dir.join("state"))?
            .ok_or_else(|| anyhow!("the demo broker wrote no secret"))?;
        let user = BrokerClient::new(&env.url, Some(secret));
        let last_id = |rt: &tokio::runtime::Runtime| -> Result<i64> {
            let log = rt
                .block_on(user.messages(&HistoryQuery {
                    tag: None,
                    project: None,
                    until_ms: None,
                    status: None,
                    limit: Some(1),
                    ..Default::default()
                }))
                .map_err(|e| anyhow!("{e}"))?;
            log.messages
                .first()
                .map(|m| m.message_id)
                .ok_or_else(|| anyhow!("no message in the log"))
        };

        println!("\n1. api's model calls the MCP tool send_message:");
        let ask = "I renamed POST /auth/login to /v1/session. Can you point the login form at it?";
        println!("   send_message {{to: \"web\", message: \"{ask}\"}}");
        let r = api.tool("send_message", json!({"to": "web", "message": ask}))?;
        indent(&format!("→ {r}"));
        let first = last_id(&rt)?;

        println!(
            "\n2. web's model runs a tool (Bash); Claude Code runs the PostToolUse hook \
             peers-deliver.\n   What web's model is shown, mid-turn (additionalContext):"
        );
        let out = web.hook(
            &env,
            &deliver,
            hook_input(
                &web,
                "PostToolUse",
                json!({
                    "tool_name": "Bash",
                    "tool_input": {"command": "npm test", "description": "run the tests"},
                    "tool_response": {"stdout": "ok", "stderr": "", "interrupted": false, "isImage": false},
                    "tool_use_id": "toolu_demo_1"
                }),
            ),
        )?;
        boxed(&shown(&out));

        println!("\n3. web's model answers with send_message (a reply to #{first}):");
        let answer = "Done: the form posts to /v1/session now, tests pass.";
        println!("   send_message {{to: \"api\", reply_to: {first}, message: \"{answer}\"}}");
        let r = web.tool(
            "send_message",
            json!({"to": "api", "message": answer, "reply_to": first}),
        )?;
        indent(&format!("→ {r}"));

        println!(
            "\n4. api's model finishes its turn; Claude Code runs the Stop hook peers-deliver.\n   \
             The hook's additionalContext continues the turn, and api's model is shown:"
        );
        let out = api.hook(
            &env,
            &deliver,
            hook_input(
                &api,
                "Stop",
                json!({"stop_hook_active": false, "last_assistant_message": "Asked web to update the form."}),
            ),
        )?;
        boxed(&shown(&out));

        println!("\n5. You send web a note (`peers send web \"…\"`, marked as from the human):");
        let note = "Please run the e2e tests before you commit.";
        let sent = rt
            .block_on(user.send(&SendRequest {
                tags: vec![],
                to: "web".into(),
                message: note.into(),
                reply_to: None,
                scope: None,
            }))
            .map_err(|e| anyhow!("{e}"))?;
        println!("   sent #{} to {}", sent.message_id, sent.to);
        println!("   web's user types a prompt; the UserPromptSubmit hook shows web's model:");
        let out = web.hook(
            &env,
            &deliver,
            hook_input(
                &web,
                "UserPromptSubmit",
                json!({"prompt": "what's next?", "permission_mode": "default"}),
            ),
        )?;
        boxed(&shown(&out));

        println!("\nDelivery status, as senders see it (`peers log`):");
        let log = rt
            .block_on(user.messages(&HistoryQuery::default()))
            .map_err(|e| anyhow!("{e}"))?;
        let mut all_delivered = true;
        for m in log.messages.iter().rev() {
            all_delivered &= m.status == MessageState::Delivered;
            println!(
                "   #{} {} -> {}: {}{}",
                m.message_id,
                m.from,
                m.to,
                m.status.as_str(),
                match (&m.delivered_via, m.delivered_at_ms) {
                    (Some(via), Some(at)) =>
                        format!(" via {via} after {}", context::duration(at - m.sent_at_ms)),
                    _ => String::new(),
                }
            );
        }
        api.end();
        web.end();
        if !all_delivered || log.messages.len() < 3 {
            bail!(
                "not every message was delivered; the demo's files are in {}",
                dir.display()
            );
        }
        Ok(())
    })();

    // Stop the broker through its API, as `peers broker stop` does.
    if let Some(secret) = peers_core::paths::read_secret(&dir.join("state"))
        .ok()
        .flatten()
    {
        let _ = rt.block_on(BrokerClient::new(&env.url, Some(secret)).shutdown());
    }
    broker.finish(Duration::from_secs(5));

    if let Err(e) = result {
        let kept = tmp.keep();
        return Err(e.context(format!(
            "the demo failed; its files are kept in {}",
            kept.display()
        )));
    }
    if a.keep {
        let kept = tmp.keep();
        println!(
            "\nDone in {}. Kept the demo's files in {}.",
            context::duration(started.elapsed().as_millis() as i64),
            kept.display()
        );
    } else {
        drop(tmp);
        println!(
            "\nDone in {}: sessions ended, broker stopped, temporary files removed.",
            context::duration(started.elapsed().as_millis() as i64)
        );
        println!("With Claude Code: `peers install`, then start two sessions in two projects.");
    }
    Ok(())
}
