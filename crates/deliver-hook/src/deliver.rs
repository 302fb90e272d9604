//! One hook event: claim, print, ack.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use peers_core::client::Timeouts;
use peers_core::render::{self, Framed, Me, Occasion};
use peers_core::session::SessionFile;
use peers_core::wire::{AckRequest, Agent, ClaimRequest, ClaimResponse};
use peers_core::{BrokerClient, ClientError, Config};
use serde_json::json;

use crate::input::{Event, HookInput};
use crate::{debug, locate, state};

/// Whole-request bound of the hook's claim and ack (the connect timeout comes from config).
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);
/// At most this many messages per claim; more would not fit into one hook text anyway.
pub const CLAIM_MAX: u32 = 20;
/// On SessionStart the MCP server (started beside the hook) may still be registering, perhaps
/// starting the broker first: wait this long for its session file.
pub const SESSION_START_WAIT: Duration = Duration::from_millis(2_000);

/// What the hook prints for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub json: serde_json::Value,
    pub framed: Option<Framed>,
}

/// The hook JSON for `event` carrying `text`, in `client`'s output form.
///
/// Claude Code: `additionalContext` for every event. On Stop it continues the turn just as
/// `{"decision":"block"}` does (counted against the client's cap, `stop_hook_active` on the
/// next Stop), but the model is shown the text once, as "Stop hook additional context", and
/// the human's screen says "Stop hook says: …" instead of "Stop hook reported a problem"
/// (Claude Code 2.1.332, `stop_hook_output_forms` in `crates/e2e`).
///
/// Codex CLI and Gemini CLI: `additionalContext` on SessionStart, the prompt and the tool
/// events (Codex shows it as a developer message, Gemini as `<hook_context>`); at the turn's
/// end `{"decision":"block","reason":…}`, which both send on as a new user message (Codex
/// fails a Stop hook that answers with additionalContext).
pub fn hook_json(client: Agent, event: Event, text: &str) -> serde_json::Value {
    match (client, event) {
        (Agent::Codex | Agent::Gemini, Event::Stop) => json!({
            "decision": "block",
            "reason": text,
        }),
        _ => json!({
            "hookSpecificOutput": {
                "hookEventName": event.name_for(client),
                "additionalContext": text,
            }
        }),
    }
}

pub fn occasion(event: Event) -> Occasion {
    match event {
        Event::SessionStart => Occasion::SessionStart,
        Event::UserPromptSubmit => Occasion::Prompt,
        Event::PostToolUse => Occasion::MidTurn,
        Event::Stop => Occasion::TurnEnd,
    }
}

/// A client for every broker of the session, with the hook's tight timeouts.
pub fn client(cfg: &Config, session: &SessionFile) -> BrokerClient {
    client_for(cfg, session, &session.broker_urls())
}

/// A client for `urls` with the session's token and the hook's tight timeouts: a connect
/// timeout per broker, and [`REQUEST_TIMEOUT`] for a whole call across all of them.
pub fn client_for(cfg: &Config, session: &SessionFile, urls: &[String]) -> BrokerClient {
    BrokerClient::with_failover(
        urls,
        Some(session.token.clone()),
        Timeouts {
            connect: Duration::from_millis(cfg.hook_connect_timeout_ms.max(1)),
            request: REQUEST_TIMEOUT,
        },
    )
}

/// Finds the session; on SessionStart keeps looking a little while for the MCP server to
/// write its file (both start together).
fn find_session(cfg: &Config, event: Event) -> Option<SessionFile> {
    let env_pid = std::env::var("CLAUDE_PID").ok();
    let started = Instant::now();
    loop {
        if let Some(s) = locate::find_session(&cfg.state_dir, env_pid.as_deref()) {
            return Some(s);
        }
        // Not conditional on the sessions dir existing: the first session on a fresh state
        // dir creates it only as it registers.
        if event != Event::SessionStart || started.elapsed() >= SESSION_START_WAIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An event that must ask the broker, as far as the hook got without it: the brokers not
/// backed off (in order) and the Stop streak so far.
pub struct Ask<'a> {
    pub cfg: &'a Config,
    pub session: &'a SessionFile,
    pub input: &'a HookInput,
    pub client: Agent,
    pub event: Event,
    pub urls: Vec<String>,
    pub streak: u32,
}

/// The whole hook run; every failure ends in exit 0 with nothing printed.
pub fn run() -> i32 {
    run_with(claim_and_print)
}

/// One hook event, with `online` for the part that needs the broker: claim, print, ack
/// ([`claim_and_print`], the full hook), or hand the event to the full hook (the front,
/// [`crate::front`]); it returns whether something was printed. Generic, so the front links
/// none of the network code.
pub fn run_with(online: impl FnOnce(Ask<'_>, &mut dyn Write) -> bool) -> i32 {
    let Some(input) = crate::read_input() else {
        return 0;
    };
    let gemini_env = crate::input::gemini_session_env();
    let marked = input.marked_client(gemini_env.as_deref());
    // Unmarked input uses the event names Claude Code and Codex share.
    let not_ours = || debug(|| format!("event {:?} is not ours", input.hook_event_name));
    let Some(event) = input.event_for(marked.unwrap_or(Agent::Claude)) else {
        not_ours();
        return 0;
    };
    let Some(cfg) = crate::load_config() else {
        return 0;
    };
    let Some(session) = find_session(&cfg, event) else {
        debug(|| "no session file for this process or its ancestors".into());
        return 0;
    };
    let client = marked.unwrap_or(session.agent);
    let Some(event) = input.event_for(client) else {
        not_ours();
        return 0;
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    handle(&cfg, &session, &input, client, event, &mut out, online);
    0
}

/// Records whether a turn is running, for the waiter, then claims, prints to `out` in
/// `client`'s form, acks. A Codex turn that ends idle starts the Codex waiter
/// ([`crate::codex::arm`]), which wakes the session with `codex queue` when mail comes.
pub fn handle(
    cfg: &Config,
    session: &SessionFile,
    input: &HookInput,
    client: Agent,
    event: Event,
    out: &mut dyn Write,
    online: impl FnOnce(Ask<'_>, &mut dyn Write) -> bool,
) {
    let state_dir = cfg.state_dir.as_path();
    let pid = session.claude_pid;
    if event == Event::UserPromptSubmit {
        state::set_turn(state_dir, pid, true, peers_core::now_ms());
    }
    let printed = match offline(cfg, session, input, event) {
        Some((urls, streak)) => online(
            Ask {
                cfg,
                session,
                input,
                client,
                event,
                urls,
                streak,
            },
            out,
        ),
        None => false,
    };
    if event == Event::Stop {
        // A block continues the turn; otherwise the session goes idle and the waiter may wake it.
        state::set_turn(state_dir, pid, printed, peers_core::now_ms());
    }
    if client == Agent::Codex && matches!(event, Event::Stop | Event::SessionStart) && !printed {
        crate::codex::arm(cfg, session, input);
    }
}

/// Everything before the network: `None` when this event asks no broker (every broker backed
/// off, the Stop block cap reached, or no mail marker on a local broker); else the brokers to
/// ask and the Stop streak so far.
fn offline(
    cfg: &Config,
    session: &SessionFile,
    input: &HookInput,
    event: Event,
) -> Option<(Vec<String>, u32)> {
    let state_dir = cfg.state_dir.as_path();
    let now = peers_core::now_ms();
    // Brokers that failed a moment ago are skipped; with none left, so is the network.
    let (urls, skipped): (Vec<String>, Vec<String>) = session
        .broker_urls()
        .into_iter()
        .partition(|u| state::backoff_active(state_dir, u, now) != Some(true));
    if urls.is_empty() {
        debug(|| {
            format!(
                "brokers {} marked unreachable; skipping",
                skipped.join(", ")
            )
        });
        return None;
    }

    let mut streak = 0;
    if event == Event::Stop {
        streak = state::stop_streak(state_dir, session.claude_pid, input.stop_hook_active);
        let cap = state::stop_block_cap(
            std::env::var("CLAUDE_CODE_STOP_HOOK_BLOCK_CAP")
                .ok()
                .as_deref(),
        );
        // Keep one below Claude Code's cap: a block it ignores would lose the acked mail.
        if streak + 1 >= cap {
            debug(|| format!("{streak} Stop blocks in a row (cap {cap}); not blocking again"));
            return None;
        }
    }

    if skip_network(cfg, session, event) {
        debug(|| "no mail marker and the local broker is up: nothing to claim".into());
        return None;
    }
    Some((urls, streak))
}

/// Claims from the brokers of `ask`, prints, acks; returns whether something was printed.
pub fn claim_and_print(ask: Ask<'_>, out: &mut dyn Write) -> bool {
    let Ask {
        cfg,
        session,
        client: agent,
        event,
        urls,
        streak,
        ..
    } = ask;
    let state_dir = cfg.state_dir.as_path();
    let now = peers_core::now_ms();
    let Some(rt) = crate::runtime() else {
        return false;
    };
    let client = client_for(cfg, session, &urls);
    let claim = ClaimRequest {
        max: Some(CLAIM_MAX),
        lease_ms: Some(cfg.lease_ms),
        automatic: event == Event::Stop,
    };
    let result = rt.block_on(client.claim(&claim));
    note_brokers(state_dir, &urls, &client, &result, cfg.hook_backoff_ms, now);
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            debug(|| format!("claim failed: {e}"));
            return false;
        }
    };
    if resp.budget_exhausted {
        debug(|| "loop budget exhausted: the mail waits".into());
        return false;
    }
    if !resp.messages.is_empty() {
        crate::pause_after_claim();
    }

    let Some(output) = render(session, agent, event, &resp) else {
        return false;
    };
    let mut line = output.json.to_string();
    line.push('\n');
    if out
        .write_all(line.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        // Nobody read it: leave the lease to lapse, the mail comes back.
        return false;
    }
    if event == Event::Stop {
        state::set_stop_streak(state_dir, session.claude_pid, streak + 1);
    }
    if let (Some(lease_id), Some(framed)) = (resp.lease_id, output.framed) {
        ack(
            &rt,
            &client,
            lease_id,
            event.name_for(agent),
            &framed,
            resp.messages.len(),
        );
    }
    true
}

/// Whether this event can do without a claim: a session on the local broker (not a hub
/// client) whose broker keeps mail markers and has none for it
/// ([`peers_core::mailmark::nothing_waiting`]). SessionStart always asks: it prints the
/// introduction even without mail.
pub fn skip_network(cfg: &Config, session: &SessionFile, event: Event) -> bool {
    event != Event::SessionStart
        && !cfg.is_remote()
        && peers_core::mailmark::nothing_waiting(
            &cfg.state_dir,
            &session.peer_id,
            &session.broker_url,
        )
}

/// The output for `event` of `client` given a claim, or `None` when there is nothing to print.
pub fn render(
    session: &SessionFile,
    client: Agent,
    event: Event,
    resp: &ClaimResponse,
) -> Option<Output> {
    let with_intro = event == Event::SessionStart;
    if event == Event::Stop && resp.messages.is_empty() {
        return None;
    }
    let tools = session.tool_names();
    let framed = render::frame(
        me(session, &tools),
        occasion(event),
        &resp.messages,
        with_intro,
        render::DEFAULT_BUDGET,
    )?;
    Some(Output {
        json: hook_json(client, event, &framed.text),
        framed: (!resp.messages.is_empty()).then_some(framed),
    })
}

/// The session as the renderer addresses it.
pub fn me<'a>(session: &'a SessionFile, tools: &'a render::ToolNames) -> Me<'a> {
    Me {
        name: &session.name,
        address: &session.address,
        tools,
    }
}

/// Acks what was shown; the rest of the lease goes back to the queue.
pub fn ack(
    rt: &tokio::runtime::Runtime,
    client: &BrokerClient,
    lease_id: String,
    via: &str,
    framed: &Framed,
    claimed: usize,
) {
    let req = AckRequest {
        lease_id,
        via: via.to_string(),
        message_ids: (framed.shown.len() != claimed).then(|| framed.shown.clone()),
    };
    match rt.block_on(client.ack(&req)) {
        Ok(r) => debug(|| {
            format!(
                "acked via {via}: {} delivered, {} released",
                r.delivered, r.released
            )
        }),
        // The lease lapses and the mail is delivered again: at least once, never lost.
        Err(e) => debug(|| format!("ack failed: {e}")),
    }
}

/// Updates the backoff markers after a call to `urls` (tried in order by `client`): the
/// brokers that could not be reached are skipped for `backoff_ms`; the one that answered is
/// tried again at once.
fn note_brokers<T>(
    state_dir: &Path,
    urls: &[String],
    client: &BrokerClient,
    result: &Result<T, ClientError>,
    backoff_ms: u64,
    now: i64,
) {
    let answered = match result {
        Err(e) if e.is_unreachable() => None,
        _ => Some(client.base_url()),
    };
    let failed: Vec<&str> = match (answered, result) {
        // The client tries in order from the first URL; those before the one that answered
        // failed.
        (Some(a), _) => urls
            .iter()
            .map(String::as_str)
            .take_while(|u| *u != a)
            .collect(),
        (None, Err(e)) => e.unreachable_urls(),
        (None, Ok(_)) => Vec::new(),
    };
    if backoff_ms > 0 {
        for u in &failed {
            debug(|| format!("broker {u} unreachable: skipped for {backoff_ms} ms"));
            state::set_backoff(state_dir, u, now + backoff_ms as i64);
        }
    }
    if let Some(a) = answered {
        state::clear_backoff(state_dir, a, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    /// Issue 17: each client gets its own output form, with its own event names.
    /// JSON with its keys sorted: serde_json's `preserve_order` (on in a workspace build) must
    /// not change the snapshot.
    fn sorted(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let fields: Vec<String> = keys
                    .into_iter()
                    .map(|k| format!("{}:{}", serde_json::Value::from(k.as_str()), sorted(&m[k])))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            other => other.to_string(),
        }
    }

    #[test]
    fn output_forms_per_client() {
        let forms: Vec<String> = Agent::ALL
            .into_iter()
            .flat_map(|a| {
                [
                    Event::SessionStart,
                    Event::UserPromptSubmit,
                    Event::PostToolUse,
                    Event::Stop,
                ]
                .map(move |e| format!("{a} {}: {}", e.name_for(a), sorted(&hook_json(a, e, "X"))))
            })
            .collect();
        expect![[r#"
            claude SessionStart: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"SessionStart"}}
            claude UserPromptSubmit: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"UserPromptSubmit"}}
            claude PostToolUse: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"PostToolUse"}}
            claude Stop: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"Stop"}}
            codex SessionStart: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"SessionStart"}}
            codex UserPromptSubmit: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"UserPromptSubmit"}}
            codex PostToolUse: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"PostToolUse"}}
            codex Stop: {"decision":"block","reason":"X"}
            gemini SessionStart: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"SessionStart"}}
            gemini BeforeAgent: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"BeforeAgent"}}
            gemini AfterTool: {"hookSpecificOutput":{"additionalContext":"X","hookEventName":"AfterTool"}}
            gemini AfterAgent: {"decision":"block","reason":"X"}"#]].assert_eq(&forms.join("\n"));
    }
}
