//! The MCP server: tools `whoami`, `list_peers`, `send_message`, `message_status`,
//! `set_summary`, `check_messages`, and the server instructions.
//!
//! Every failure the model can act on is a tool result with `is_error` and a sentence saying
//! what to do — never a protocol error and never a crash.
//!
//! Mail and peer lists are rendered by `peers_core::render`, the renderer the hook uses too.
//! Every tool name in a text (instructions, descriptions, parameter docs, results) is the one
//! this session's client has: descriptions are written with `{tool}` placeholders that
//! [`ToolNames::fill`] replaces when the server starts.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use peers_core::render::{self, Me, Occasion, ToolNames, ago};
use peers_core::wire::{
    AckRequest, ClaimRequest, ListPeersQuery, MessageState, MessageStatus, PeerInfo, Scope,
    SendRequest, SendResponse,
};
use peers_core::{ClientError, format_ms, now_ms};

use crate::peer::{Peer, PeerError};

/// A message id as the model may write it: `42`, `"42"` or `"#42"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct IdArg(pub serde_json::Value);

impl IdArg {
    pub fn parse(&self) -> Result<i64, String> {
        let bad = || {
            format!(
                "{} is not a message id: pass the number a sent message got, e.g. 42",
                self.0
            )
        };
        match &self.0 {
            serde_json::Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(bad),
            serde_json::Value::String(s) => s
                .trim()
                .trim_start_matches('#')
                .trim()
                .parse()
                .map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl JsonSchema for IdArg {
    fn schema_name() -> Cow<'static, str> {
        "MessageId".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["integer", "string"],
            "description": "A message id as returned by {send_message}, e.g. 42 (a number or a numeric string)."
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListPeersArgs {
    /// Which peers to list: "machine" (sessions on this computer), "directory" (same working
    /// directory), "repo" (same git repository) or "all" (default: also your other machines).
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendArgs {
    /// The recipient peer: its name (e.g. "api"), "name@host" for a session on another
    /// machine, or its peer id. Case-insensitive. See {list_peers} for the names.
    pub to: String,
    /// The message text; it is shown to the other session's model as it is.
    pub message: String,
    /// The id of the message this one answers, if it is a reply.
    #[serde(default)]
    pub reply_to: Option<IdArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusArgs {
    /// The id {send_message} returned.
    pub message_id: IdArg,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SummaryArgs {
    /// One line on what this session is working on, shown to other peers in {list_peers}.
    pub summary: String,
}

#[derive(Clone)]
pub struct PeersServer {
    peer: Arc<Peer>,
    tools: ToolNames,
    tool_router: ToolRouter<PeersServer>,
}

fn ok(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text.into())])
}

fn fail(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text.into())])
}

/// The router with every `{tool}` placeholder in descriptions and parameter docs replaced by
/// this client's tool names.
fn named_router(mut router: ToolRouter<PeersServer>, tools: &ToolNames) -> ToolRouter<PeersServer> {
    for route in router.map.values_mut() {
        if let Some(d) = route.attr.description.take() {
            route.attr.description = Some(tools.fill(&d).into());
        }
        let schema = serde_json::Value::Object((*route.attr.input_schema).clone());
        if let Ok(serde_json::Value::Object(filled)) =
            serde_json::from_str(&tools.fill(&schema.to_string()))
        {
            route.attr.input_schema = Arc::new(filled);
        }
    }
    router
}

#[tool_router]
impl PeersServer {
    pub fn new(peer: Arc<Peer>) -> PeersServer {
        let tools = peer.facts.tools.clone();
        PeersServer {
            peer,
            tool_router: named_router(Self::tool_router(), &tools),
            tools,
        }
    }

    /// The text for a failure of the broker itself (unreachable, not registered).
    fn broker_trouble(&self, what: &str, detail: &str) -> CallToolResult {
        let hint = if self.peer.config.is_remote() {
            "This session uses a remote peers hub; it may be down or unreachable from here. \
             Tell the human, and try again later."
        } else {
            "peers-mcp tried to start the local broker and it did not come up. Tell the human \
             to run `peers doctor` (or `peers broker start`), then try again."
        };
        fail(format!(
            "{what} failed: the peers broker is not available ({detail}). {hint}"
        ))
    }

    fn peer_error(&self, what: &str, e: PeerError) -> CallToolResult {
        match e {
            PeerError::NotRegistered(reason) => self.broker_trouble(what, &reason),
            PeerError::Client(e) if e.is_unreachable() => self.broker_trouble(what, &e.to_string()),
            PeerError::Client(e) => fail(format!("{what} failed: {e}")),
            PeerError::Lost(reason) => fail(format!(
                "{what} failed: this session lost its registration with the peers broker and \
                 could not register again ({reason}). Tell the human; restarting Claude Code's \
                 MCP servers (/mcp) usually fixes it."
            )),
        }
    }

    #[tool(
        description = "peers: who am I? Returns this Claude Code session's own peer name \
        (name@host), peer id, and how other Claude Code sessions on this machine or your other \
        machines address it. Use it before telling another session how to reach you.",
        annotations(title = "peers: my name and address", read_only_hint = true)
    )]
    async fn whoami(&self) -> CallToolResult {
        let hb = self.peer.call(|c| async move { c.heartbeat().await }).await;
        let Some(reg) = self.peer.current() else {
            return match hb {
                Err(e) => self.peer_error("whoami", e),
                Ok(_) => fail("whoami failed: not registered with the peers broker; try again."),
            };
        };
        let f = &self.peer.facts;
        let mut text = format!(
            "You are `{addr}` (peer id {id}), a Claude Code session registered with peers.\n\
             Other sessions address you as `{name}` from this machine ({host}), as `{addr}` from \
             any machine, or by the id {id}.\n\
             Working directory: {cwd}",
            addr = reg.address,
            id = reg.peer_id,
            name = reg.name,
            host = f.host,
            cwd = f.cwd.display()
        );
        if let Some(root) = &f.git_root {
            text.push_str(&format!("\nGit repository: {}", root.display()));
        }
        if let Some(b) = &f.git_branch {
            text.push_str(&format!(" (branch {b})"));
        }
        text.push_str(&format!(
            "\nClaude Code pid: {}\nBroker: {}",
            f.claude_pid,
            reg.client.base_url()
        ));
        if let Ok(hb) = hb {
            text.push_str(&format!(
                "\nMail waiting for you: {} (it is delivered into your context by itself).",
                hb.queued
            ));
        }
        ok(text)
    }

    #[tool(
        description = "peers: list the other running Claude Code sessions (peers) on this \
        machine or on your other machines, with name@host, working directory, repository, \
        summary, last seen and mail waiting for them. Use it to find whom to message with \
        {send_message}. Not the built-in ListAgents (that lists subagents/teammates).",
        annotations(
            title = "peers: list other Claude Code sessions",
            read_only_hint = true
        )
    )]
    async fn list_peers(&self, Parameters(args): Parameters<ListPeersArgs>) -> CallToolResult {
        let scope: Scope = match args
            .scope
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => Scope::All,
            Some(s) => match s.parse() {
                Ok(sc) => sc,
                Err(e) => return fail(format!("list_peers failed: {e}")),
            },
        };
        let q = ListPeersQuery {
            scope,
            ..Default::default()
        };
        let list = match self
            .peer
            .call(|c| {
                let q = q.clone();
                async move { c.list_peers(&q).await }
            })
            .await
        {
            Ok(l) => l,
            Err(e) => return self.peer_error("list_peers", e),
        };
        let me = self.peer.current().map(|r| r.peer_id.clone());
        let peers: Vec<&PeerInfo> = list
            .peers
            .iter()
            .filter(|p| Some(&p.peer_id) != me.as_ref())
            .collect();
        let scope_word = format!("{scope:?}").to_lowercase();
        ok(render::peer_list(
            &self.tools,
            &peers,
            &scope_word,
            now_ms(),
        ))
    }

    #[tool(
        description = "peers: send a message to another Claude Code session (a peer) on this \
        machine or on your other machines, by its name, name@host or peer id. The text is \
        injected into that session's context at its next hook event (tool call, prompt, turn \
        end) or wakes it when idle, if it can be woken (the result says). Returns the message \
        id for {message_status}. Not the built-in SendMessage (that is for subagents/teammates).",
        annotations(title = "peers: message another Claude Code session")
    )]
    async fn send_message(&self, Parameters(args): Parameters<SendArgs>) -> CallToolResult {
        let to = args.to.trim().to_string();
        if to.is_empty() {
            return fail(format!(
                "send_message failed: `to` is empty. Pass a peer name (see {}).",
                self.tools.list()
            ));
        }
        let reply_to = match args.reply_to.as_ref().filter(|r| !r.0.is_null()) {
            None => None,
            Some(r) => match r.parse() {
                Ok(id) => Some(id),
                Err(e) => return fail(format!("send_message failed: reply_to: {e}")),
            },
        };
        let max = self.peer.config.max_message_bytes;
        if args.message.len() > max {
            return fail(oversize_text(args.message.len(), max));
        }
        if args.message.trim().is_empty() {
            return fail("send_message failed: the message is empty. Write the text to send.");
        }
        let req = SendRequest {
            to: to.clone(),
            message: args.message,
            reply_to,
        };
        let sent = self
            .peer
            .call(|c| {
                let req = req.clone();
                async move { c.send(&req).await }
            })
            .await;
        match sent {
            Ok(r) => ok(format_sent(&r, now_ms(), &self.tools)),
            Err(PeerError::Client(e)) if is_unknown_peer(&e) => {
                fail(self.unknown_peer_text(&to, &e).await)
            }
            Err(PeerError::Client(e))
                if e.status() == Some(413)
                    || e.code() == Some(peers_core::wire::ErrorCode::PayloadTooLarge) =>
            {
                fail(format!(
                    "send_message failed: the message is too large ({e}). Shorten it, split it \
                     into several messages, or write the content to a file the other session \
                     can read and send the path."
                ))
            }
            Err(e) => self.peer_error("send_message", e),
        }
    }

    async fn unknown_peer_text(&self, to: &str, e: &ClientError) -> String {
        let q = ListPeersQuery {
            scope: Scope::All,
            ..Default::default()
        };
        let names: Vec<String> = match self.peer.current() {
            Some(reg) => match reg.client.list_peers(&q).await {
                Ok(l) => l
                    .peers
                    .into_iter()
                    .map(|p| render::one_line(&p.address))
                    .collect(),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        tracing::info!("send to unknown peer {to:?}: {e}");
        let list = if names.is_empty() {
            "No other peers are running right now; the session you mean may not have started \
             (or lacks peers)."
                .to_string()
        } else {
            format!("Known peers: {}.", names.join(", "))
        };
        format!(
            "send_message failed: there is no peer named {to:?}; nothing was sent. {list} Use one \
             of these names (or name@host, or a peer id from {}) and send again.",
            self.tools.list()
        )
    }

    #[tool(
        description = "peers: delivery status of a message you sent to another Claude Code \
        session: queued (waiting; is the recipient running?), delivered (when, by which hook \
        event) or expired, plus the ids of replies. Pass the message_id {send_message} returned.",
        annotations(title = "peers: message delivery status", read_only_hint = true)
    )]
    async fn message_status(&self, Parameters(args): Parameters<StatusArgs>) -> CallToolResult {
        let id = match args.message_id.parse() {
            Ok(id) => id,
            Err(e) => return fail(format!("message_status failed: {e}")),
        };
        match self
            .peer
            .call(|c| async move { c.message_status(id).await })
            .await
        {
            Ok(s) => ok(format_status(&s, now_ms())),
            Err(PeerError::Client(e)) if e.status() == Some(404) => fail(format!(
                "message_status failed: no message #{id} that you can see ({e}). Use the id \
                 {} returned.",
                self.tools.send()
            )),
            Err(e) => self.peer_error("message_status", e),
        }
    }

    #[tool(
        description = "peers: set the one-line summary other Claude Code sessions see for this \
        session in {list_peers} (what you are working on). Update it when your task changes.",
        annotations(title = "peers: set my summary")
    )]
    async fn set_summary(&self, Parameters(args): Parameters<SummaryArgs>) -> CallToolResult {
        let summary = args.summary.trim().to_string();
        let res = self
            .peer
            .call(|c| {
                let s = summary.clone();
                async move { c.set_summary(&s).await }
            })
            .await;
        match res {
            Ok(_) => {
                self.peer.set_local_summary(&summary);
                ok(format!("Summary set: {summary}"))
            }
            Err(e) => self.peer_error("set_summary", e),
        }
    }

    #[tool(
        description = "peers: fetch messages other Claude Code sessions sent you that have not \
        reached your context yet. Rarely needed: peer mail is normally injected into your \
        context by itself (hooks); use this only if told mail is waiting or to check by hand.",
        annotations(title = "peers: check for incoming peer messages")
    )]
    async fn check_messages(&self) -> CallToolResult {
        let claim = self
            .peer
            .call(|c| async move { c.claim(&ClaimRequest::default()).await })
            .await;
        let claim = match claim {
            Ok(c) => c,
            Err(e) => return self.peer_error("check_messages", e),
        };
        if claim.messages.is_empty() {
            return ok(render::no_mail());
        }
        let reg = self.peer.current();
        let (name, address) = reg
            .as_deref()
            .map_or(("", ""), |r| (r.name.as_str(), r.address.as_str()));
        let me = Me {
            name,
            address,
            tools: &self.tools,
        };
        // No budget: this is where a message too big for a hook is read whole.
        let text = render::frame(
            me,
            Occasion::Check,
            &claim.messages,
            false,
            render::UNLIMITED,
        )
        .map(|f| f.text)
        .unwrap_or_default();
        if let (Some(lease_id), Some(reg)) = (claim.lease_id, self.peer.current()) {
            let ack = AckRequest {
                lease_id,
                via: "check_messages".into(),
                message_ids: Some(claim.messages.iter().map(|m| m.message_id).collect()),
            };
            if let Err(e) = reg.client.ack(&ack).await {
                // Unacked mail goes back to the queue when the lease ends: shown twice at
                // worst, never lost.
                tracing::warn!("ack after check_messages failed: {e}");
            }
        }
        ok(text)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PeersServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("peers", peers_core::VERSION)
                    .with_title("peers: messages between Claude Code sessions"),
            )
            .with_instructions(instructions(&self.peer, &self.tools))
    }
}

/// Who this session is and how peer mail works, for the model.
pub fn instructions(peer: &Peer, tools: &ToolNames) -> String {
    let who = match peer.current() {
        Some(r) => {
            let mut w = format!(
                "You are `{}` (`{}` on this machine; id {}).",
                r.address, r.name, r.peer_id
            );
            if r.inherited_messages > 0 {
                w.push_str(&format!(
                    " {} message(s) sent to this name before this session started wait for you \
                     and arrive shortly.",
                    r.inherited_messages
                ));
            }
            w
        }
        None => tools.fill(
            "This session is not registered with the peers broker yet (it keeps trying); \
             {whoami} shows your name once it is.",
        ),
    };
    instructions_text(&who, tools)
}

/// The instructions around `who`.
pub fn instructions_text(who: &str, tools: &ToolNames) -> String {
    let rest = tools.fill(
        "Peer mail reaches your context by itself (after a tool call, at turn end, or by waking \
         you) as data from other agents: don't poll. {list_peers}: find sessions. \
         {send_message}: write to one (reply_to answers). {message_status}: delivered? \
         {set_summary}: what you work on. {whoami}: your address. {check_messages}: manual \
         fallback. Not the built-in SendMessage/ListAgents (subagents, teammates).",
    );
    format!(
        "peers: mail between this Claude Code session and the user's other sessions (peers), on \
         this and their other machines. {who} {rest}"
    )
}

fn is_unknown_peer(e: &ClientError) -> bool {
    e.code() == Some(peers_core::wire::ErrorCode::UnknownPeer)
        || (e.status() == Some(404) && e.code() == Some(peers_core::wire::ErrorCode::NotFound))
}

pub fn oversize_text(len: usize, max: usize) -> String {
    format!(
        "send_message failed: the message is {len} bytes, over the limit of {max} bytes; \
         nothing was sent. Shorten it, split it into several messages, or write the content to \
         a file the other session can read and send the path."
    )
}

pub fn format_sent(r: &SendResponse, now: i64, tools: &ToolNames) -> String {
    let to = render::one_line(&r.to);
    let mut s = format!(
        "Message #{} sent to {to} (status: {}). ",
        r.message_id,
        public_state(r.status),
    );
    if !r.recipient_alive {
        s.push_str(&format!(
            "Warning: {to}'s session is not running (last seen {}). The message waits for the \
             next session with that name on that machine.",
            ago(r.recipient_last_seen_ms, now)
        ));
    } else if r.recipient_can_wake {
        s.push_str(
            "It is put into the recipient's context at its next hook event (tool call, prompt, \
             turn end), or wakes it if it is idle.",
        );
    } else {
        s.push_str(
            "It is put into the recipient's context at its next hook event (tool call, prompt, \
             turn end). It cannot wake that session now: while it is idle, the message waits.",
        );
    }
    s.push_str(&format!(
        " Check delivery with {} {{\"message_id\": {}}}.",
        tools.status(),
        r.message_id
    ));
    s
}

fn public_state(s: MessageState) -> &'static str {
    match s {
        MessageState::Leased => "queued",
        other => other.as_str(),
    }
}

pub fn format_status(m: &MessageStatus, now: i64) -> String {
    let mut s = format!("Message #{} from {} to {}: ", m.message_id, m.from, m.to);
    match m.status {
        MessageState::Queued | MessageState::Leased => {
            s.push_str(&format!(
                "queued since {} ({}); the recipient's session {}.",
                format_ms(m.sent_at_ms),
                ago(m.sent_at_ms, now),
                match (m.recipient_alive, m.recipient_can_wake) {
                    (false, _) => "is not running; the message waits for its next session",
                    (true, true) => {
                        "is running: it gets the message at its next hook event (tool call, \
                         prompt, turn end), or is woken by it if idle"
                    }
                    (true, false) => {
                        "is running: it gets the message at its next hook event (tool call, \
                         prompt, turn end); it cannot be woken now, so while it is idle the \
                         message waits"
                    }
                }
            ));
            s.push_str(&format!(" Expires at {}.", format_ms(m.expires_at_ms)));
        }
        MessageState::Delivered => {
            let at = m
                .delivered_at_ms
                .map(|t| format!("{} ({})", format_ms(t), ago(t, now)))
                .unwrap_or_else(|| "an unknown time".into());
            s.push_str(&format!("delivered at {at}"));
            if let Some(via) = &m.delivered_via {
                s.push_str(&format!(" via {via}"));
            }
            s.push('.');
        }
        MessageState::Expired => {
            s.push_str(&format!(
                "expired at {} without being delivered.",
                format_ms(m.expires_at_ms)
            ));
        }
    }
    if let Some(r) = m.reply_to {
        s.push_str(&format!(" It replies to #{r}."));
    }
    if m.replies.is_empty() {
        s.push_str(" No replies yet.");
    } else {
        let ids: Vec<String> = m.replies.iter().map(|r| format!("#{r}")).collect();
        s.push_str(&format!(" Replies: {}.", ids.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use peers_core::wire::SenderKind;

    #[test]
    fn ids_parse_from_numbers_and_strings() {
        let p = |v: serde_json::Value| IdArg(v).parse();
        assert_eq!(p(serde_json::json!(42)), Ok(42));
        assert_eq!(p(serde_json::json!("42")), Ok(42));
        assert_eq!(p(serde_json::json!(" #7 ")), Ok(7));
        assert_eq!(p(serde_json::json!(3.0)), Ok(3));
        assert!(
            p(serde_json::json!("abc"))
                .unwrap_err()
                .contains("not a message id")
        );
        assert!(p(serde_json::json!(1.5)).is_err());
        assert!(p(serde_json::json!(null)).is_err());
    }

    #[test]
    fn id_schema_allows_number_and_string() {
        let schema = schemars::schema_for!(StatusArgs);
        let v = serde_json::to_value(&schema).unwrap();
        assert_eq!(
            v["properties"]["message_id"]["type"],
            serde_json::json!(["integer", "string"])
        );
    }

    #[test]
    fn ago_words() {
        assert_eq!(ago(0, 5_000), "5 s ago");
        assert_eq!(ago(0, 120_000), "2 min ago");
        assert_eq!(ago(0, 7_200_000), "2 h ago");
        assert_eq!(ago(10, 0), "0 s ago");
    }

    fn status(state: MessageState, alive: bool, can_wake: bool) -> MessageStatus {
        MessageStatus {
            message_id: 5,
            from: "a@h".into(),
            from_kind: SenderKind::Peer,
            to: "b@h".into(),
            to_peer_id: "p".into(),
            status: state,
            sent_at_ms: 0,
            delivered_at_ms: None,
            delivered_via: None,
            expires_at_ms: 1000,
            reply_to: None,
            replies: vec![],
            recipient_alive: alive,
            recipient_can_wake: can_wake,
            bytes: 2,
            body: None,
        }
    }

    #[test]
    fn status_texts() {
        let mut texts = vec![];
        for (alive, can_wake) in [(false, false), (true, false), (true, true)] {
            texts.push(format_status(
                &status(MessageState::Queued, alive, can_wake),
                1000,
            ));
        }
        let mut m = status(MessageState::Delivered, true, true);
        m.delivered_at_ms = Some(500);
        m.delivered_via = Some("PostToolUse".into());
        m.reply_to = Some(4);
        m.replies = vec![6];
        texts.push(format_status(&m, 1000));
        m.status = MessageState::Expired;
        texts.push(format_status(&m, 1000));
        expect![[r#"
            Message #5 from a@h to b@h: queued since 1970-01-01T00:00:00Z (1 s ago); the recipient's session is not running; the message waits for its next session. Expires at 1970-01-01T00:00:01Z. No replies yet.
            Message #5 from a@h to b@h: queued since 1970-01-01T00:00:00Z (1 s ago); the recipient's session is running: it gets the message at its next hook event (tool call, prompt, turn end); it cannot be woken now, so while it is idle the message waits. Expires at 1970-01-01T00:00:01Z. No replies yet.
            Message #5 from a@h to b@h: queued since 1970-01-01T00:00:00Z (1 s ago); the recipient's session is running: it gets the message at its next hook event (tool call, prompt, turn end), or is woken by it if idle. Expires at 1970-01-01T00:00:01Z. No replies yet.
            Message #5 from a@h to b@h: delivered at 1970-01-01T00:00:00Z (0 s ago) via PostToolUse. It replies to #4. Replies: #6.
            Message #5 from a@h to b@h: expired at 1970-01-01T00:00:01Z without being delivered. It replies to #4. Replies: #6."#]]
        .assert_eq(&texts.join("\n"));
    }

    #[test]
    fn sent_texts_promise_a_wake_only_when_one_can_happen() {
        let plugin = ToolNames::new("mcp__plugin_peers_peers__").unwrap();
        let mut texts = vec![];
        for (alive, can_wake) in [(false, false), (true, false), (true, true)] {
            let r = SendResponse {
                message_id: 12,
                to: "web@h".into(),
                to_peer_id: "p".into(),
                status: MessageState::Queued,
                recipient_alive: alive,
                recipient_last_seen_ms: 0,
                recipient_can_wake: can_wake,
            };
            texts.push(format_sent(&r, 120_000, &plugin));
        }
        expect![[r#"
            Message #12 sent to web@h (status: queued). Warning: web@h's session is not running (last seen 2 min ago). The message waits for the next session with that name on that machine. Check delivery with mcp__plugin_peers_peers__message_status {"message_id": 12}.
            Message #12 sent to web@h (status: queued). It is put into the recipient's context at its next hook event (tool call, prompt, turn end). It cannot wake that session now: while it is idle, the message waits. Check delivery with mcp__plugin_peers_peers__message_status {"message_id": 12}.
            Message #12 sent to web@h (status: queued). It is put into the recipient's context at its next hook event (tool call, prompt, turn end), or wakes it if it is idle. Check delivery with mcp__plugin_peers_peers__message_status {"message_id": 12}."#]]
        .assert_eq(&texts.join("\n"));
    }

    #[test]
    fn instructions_name_the_clients_tools() {
        let plugin = ToolNames::new("mcp__plugin_peers_peers__").unwrap();
        let who = "You are `api@h` (`api` on this machine; id p1).";
        expect!["peers: mail between this Claude Code session and the user's other sessions (peers), on this and their other machines. You are `api@h` (`api` on this machine; id p1). Peer mail reaches your context by itself (after a tool call, at turn end, or by waking you) as data from other agents: don't poll. mcp__peers__list_peers: find sessions. mcp__peers__send_message: write to one (reply_to answers). mcp__peers__message_status: delivered? mcp__peers__set_summary: what you work on. mcp__peers__whoami: your address. mcp__peers__check_messages: manual fallback. Not the built-in SendMessage/ListAgents (subagents, teammates)."]
        .assert_eq(&instructions_text(who, &ToolNames::default()));
        let t = instructions_text(who, &plugin);
        assert!(!t.contains("mcp__peers__") && !t.contains('{'), "{t}");
        assert_eq!(t.matches("mcp__plugin_peers_peers__").count(), 6, "{t}");
    }

    #[test]
    fn oversize_text_says_what_to_do() {
        let t = oversize_text(70_000, 65_536);
        assert!(
            t.contains("70000") && t.contains("65536") && t.contains("split"),
            "{t}"
        );
    }
}
