//! The twelve tools: what each does with the broker. Their texts are in `texts.rs`.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use peers_core::address::topic_name;
use peers_core::render::{self, Me, Occasion};
use peers_core::wire::{
    AckRequest, ClaimRequest, ErrorCode, HandoverRequest, ListPeersQuery, MessageState, PeerInfo,
    Scope, SearchQuery, SendRequest, SubscribeRequest, TopicPostsQuery,
};
use peers_core::{ClientError, now_ms};

use super::args::{
    HandoverArgs, ListPeersArgs, ReadTopicArgs, SearchArgs, SendArgs, StatusArgs, SubscribeArgs,
    SummaryArgs, ThreadArgs, TopicArgs,
};
use super::{PeersServer, fail, ok, texts};
use crate::peer::PeerError;

#[tool_router(vis = "pub(super)")]
impl PeersServer {
    #[tool(
        description = texts::WHOAMI,
        annotations(title = "peers: my name and address", read_only_hint = true)
    )]
    async fn whoami(&self) -> CallToolResult {
        let hb = self.peer.call(|c| async move { c.heartbeat().await }).await;
        let Some(reg) = self.peer.current() else {
            return match hb {
                Err(e) => self.peer_error("whoami", e),
                Ok(_) => fail(texts::WHOAMI_NOT_REGISTERED),
            };
        };
        let queued = hb.ok().map(|hb| hb.queued);
        ok(texts::whoami(&reg, &self.peer.facts, queued))
    }

    #[tool(
        description = texts::LIST_PEERS,
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
                Err(e) => return fail(texts::failed("list_peers", e)),
            },
        };
        let q = &ListPeersQuery {
            scope,
            ..Default::default()
        };
        let list = match self
            .peer
            .call(|c| async move { c.list_peers(q).await })
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
        description = texts::SEND_MESSAGE,
        annotations(title = "peers: message another Claude Code session")
    )]
    async fn send_message(&self, Parameters(args): Parameters<SendArgs>) -> CallToolResult {
        let to = args.to.trim().to_string();
        if to.is_empty() {
            return fail(texts::empty_recipient(&self.tools));
        }
        let reply_to = match args.reply_to.as_ref().filter(|r| !r.0.is_null()) {
            None => None,
            Some(r) => match r.parse() {
                Ok(id) => Some(id),
                Err(e) => return fail(texts::failed("send_message", format!("reply_to: {e}"))),
            },
        };
        let max = self.peer.config.max_message_bytes;
        if args.message.len() > max {
            return fail(texts::oversize_text(args.message.len(), max));
        }
        if args.message.trim().is_empty() {
            return fail(texts::EMPTY_MESSAGE);
        }
        let scope = match args
            .scope
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(s) => match s.parse::<Scope>() {
                Ok(sc) => Some(sc),
                Err(e) => return fail(texts::failed("send_message", e)),
            },
        };
        let req = &SendRequest {
            tags: args.tags,
            to: to.clone(),
            message: args.message,
            reply_to,
            scope,
        };
        let sent = self.peer.call(|c| async move { c.send(req).await }).await;
        match sent {
            Ok(r) => ok(texts::format_sent(&r, now_ms(), &self.tools)),
            Err(PeerError::Client(e)) if is_unknown_peer(&e) && !to.starts_with(['#', '*']) => {
                tracing::info!("send to unknown peer {to:?}: {e}");
                let names = self.peer_addresses().await;
                fail(texts::unknown_peer(&to, &names, &self.tools))
            }
            Err(PeerError::Client(e))
                if e.status() == Some(413) || e.code() == Some(ErrorCode::PayloadTooLarge) =>
            {
                fail(texts::too_large(&e))
            }
            Err(e) => self.peer_error("send_message", e),
        }
    }

    #[tool(
        description = texts::MESSAGE_STATUS,
        annotations(title = "peers: message delivery status", read_only_hint = true)
    )]
    async fn message_status(&self, Parameters(args): Parameters<StatusArgs>) -> CallToolResult {
        let id = match args.message_id.parse() {
            Ok(id) => id,
            Err(e) => return fail(texts::failed("message_status", e)),
        };
        match self
            .peer
            .call(|c| async move { c.message_status(id).await })
            .await
        {
            Ok(s) => ok(texts::format_status(&s, now_ms())),
            Err(PeerError::Client(e)) if e.status() == Some(404) => fail(texts::no_such_message(
                "message_status",
                id,
                &e,
                &self.tools,
            )),
            Err(e) => self.peer_error("message_status", e),
        }
    }

    #[tool(
        description = texts::READ_THREAD,
        annotations(title = "peers: read a conversation", read_only_hint = true)
    )]
    async fn read_thread(&self, Parameters(args): Parameters<ThreadArgs>) -> CallToolResult {
        let id = match args.message_id.parse() {
            Ok(id) => id,
            Err(e) => return fail(texts::failed("read_thread", e)),
        };
        match self.peer.call(|c| async move { c.thread(id).await }).await {
            Ok(t) => ok(render::thread(
                &self.tools,
                t.root_id,
                &t.messages,
                now_ms(),
            )),
            Err(PeerError::Client(e)) if e.status() == Some(404) => {
                fail(texts::no_such_message("read_thread", id, &e, &self.tools))
            }
            Err(e) => self.peer_error("read_thread", e),
        }
    }

    #[tool(
        description = texts::SEARCH_MESSAGES,
        annotations(title = "peers: search mail", read_only_hint = true)
    )]
    async fn search_messages(&self, Parameters(args): Parameters<SearchArgs>) -> CallToolResult {
        let now = now_ms();
        let ago = |what: &str, v: Option<&str>| match v.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => peers_core::parse_duration(s)
                .map(|d| Some(now - d.as_millis() as i64))
                .map_err(|e| texts::failed("search_messages", format!("{what}: {e}"))),
        };
        let since_ms = match ago("since", args.since.as_deref()) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let until_ms = match ago("until", args.until.as_deref()) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let status = match args
            .status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(s) => match MessageState::from_filter(s) {
                Ok(s) => Some(s),
                Err(e) => return fail(texts::failed("search_messages", format!("status: {e}"))),
            },
        };
        let query = args.query.unwrap_or_default();
        let q = &SearchQuery {
            q: query.clone(),
            from: args.from,
            to: args.to,
            topic: args.topic,
            tag: args.tag,
            project: args.project,
            since_ms,
            until_ms,
            status,
            limit: Some(args.limit.unwrap_or(20).clamp(1, 200)),
        };
        match self.peer.call(|c| async move { c.search(q).await }).await {
            Ok(r) => ok(render::search_hits(&self.tools, &query, &r.hits, now_ms())),
            Err(e) => self.peer_error("search_messages", e),
        }
    }

    #[tool(
        description = texts::SET_SUMMARY,
        annotations(title = "peers: set my summary")
    )]
    async fn set_summary(&self, Parameters(args): Parameters<SummaryArgs>) -> CallToolResult {
        let summary = args.summary.trim();
        let res = self
            .peer
            .call(|c| async move { c.set_summary(summary).await })
            .await;
        match res {
            Ok(_) => {
                self.peer.set_local_summary(summary);
                ok(texts::summary_set(summary))
            }
            Err(e) => self.peer_error("set_summary", e),
        }
    }

    #[tool(
        description = texts::SUBSCRIBE,
        annotations(title = "peers: subscribe to a topic")
    )]
    async fn subscribe(&self, Parameters(args): Parameters<SubscribeArgs>) -> CallToolResult {
        let topic = match topic_name(&args.topic) {
            Ok(t) => t,
            Err(e) => return fail(texts::failed("subscribe", e)),
        };
        let req = &SubscribeRequest {
            topic,
            wake: args.wake,
            mute: args.mute,
        };
        match self
            .peer
            .call(|c| async move { c.subscribe(req).await })
            .await
        {
            Ok(sub) => ok(texts::subscribed(&sub, &self.tools)),
            Err(e) => self.peer_error("subscribe", e),
        }
    }

    #[tool(
        description = texts::UNSUBSCRIBE,
        annotations(title = "peers: leave a topic")
    )]
    async fn unsubscribe(&self, Parameters(args): Parameters<TopicArgs>) -> CallToolResult {
        let topic = match topic_name(&args.topic) {
            Ok(t) => t,
            Err(e) => return fail(texts::failed("unsubscribe", e)),
        };
        let t = &topic;
        match self
            .peer
            .call(|c| async move { c.unsubscribe(t).await })
            .await
        {
            Ok(u) if u.was_subscribed => {
                ok(format!("Left #{topic}: its posts no longer reach you."))
            }
            Ok(_) => ok(format!(
                "You were not subscribed to #{topic}; nothing changed."
            )),
            Err(e) => self.peer_error("unsubscribe", e),
        }
    }

    #[tool(
        description = texts::HANDOVER,
        annotations(title = "peers: leave a note for the next session")
    )]
    async fn handover(&self, Parameters(args): Parameters<HandoverArgs>) -> CallToolResult {
        let req = HandoverRequest {
            note: args.note,
            to: args.to,
        };
        let r = &req;
        match self.peer.call(|c| async move { c.handover(r).await }).await {
            Ok(h) => ok(format!(
                "Message #{} (a handover) left: waiting for the next session named {} (shown once, first, \
                 at its start; {} tells whether it has it).",
                h.message_id,
                h.to,
                self.tools.status()
            )),
            Err(e) => self.peer_error("handover", e),
        }
    }

    #[tool(
        description = texts::LIST_TOPICS,
        annotations(title = "peers: list topics", read_only_hint = true)
    )]
    async fn list_topics(&self) -> CallToolResult {
        match self.peer.call(|c| async move { c.topics().await }).await {
            Ok(l) => ok(render::topic_list(&self.tools, &l.topics, now_ms())),
            Err(e) => self.peer_error("list_topics", e),
        }
    }

    #[tool(
        description = texts::READ_TOPIC,
        annotations(title = "peers: read a topic's posts", read_only_hint = true)
    )]
    async fn read_topic(&self, Parameters(args): Parameters<ReadTopicArgs>) -> CallToolResult {
        let topic = match topic_name(&args.topic) {
            Ok(t) => t,
            Err(e) => return fail(texts::failed("read_topic", e)),
        };
        let since_id = match args.since_id.as_ref().filter(|r| !r.0.is_null()) {
            None => None,
            Some(r) => match r.parse() {
                Ok(id) => Some(id),
                Err(e) => return fail(texts::failed("read_topic", format!("since_id: {e}"))),
            },
        };
        let q = &TopicPostsQuery {
            since_id,
            limit: Some(args.limit.unwrap_or(20).clamp(1, 200)),
        };
        let t = &topic;
        match self
            .peer
            .call(|c| async move { c.topic_posts(t, q).await })
            .await
        {
            Ok(p) => ok(render::topic_history(&self.tools, &p.topic, &p.posts)),
            Err(e) => self.peer_error("read_topic", e),
        }
    }

    #[tool(
        description = texts::CHECK_MESSAGES,
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

impl PeersServer {
    /// The addresses of every peer there is, for the text about an unknown recipient (none
    /// when the broker cannot say).
    async fn peer_addresses(&self) -> Vec<String> {
        let q = ListPeersQuery {
            scope: Scope::All,
            ..Default::default()
        };
        let Some(reg) = self.peer.current() else {
            return Vec::new();
        };
        match reg.client.list_peers(&q).await {
            Ok(l) => l
                .peers
                .into_iter()
                .map(|p| render::one_line(&p.address))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn is_unknown_peer(e: &ClientError) -> bool {
    e.code() == Some(ErrorCode::UnknownPeer)
        || (e.status() == Some(404) && e.code() == Some(ErrorCode::NotFound))
}
