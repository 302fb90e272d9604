//! The MCP server: tools `whoami`, `list_peers`, `send_message`, `message_status`,
//! `set_summary`, `check_messages`, the topic tools `subscribe`, `unsubscribe`,
//! `list_topics`, `read_topic`, and the server instructions.
//!
//! `handlers.rs` holds the `#[tool]` methods (what each tool does), `texts.rs` every text
//! they show that is not mail, `args.rs` their arguments. Every failure the model can act on
//! is a tool result with `is_error` and a sentence saying what to do — never a protocol error
//! and never a crash.
//!
//! Mail and peer lists are rendered by `peers_core::render`, the renderer the hook uses too.
//! Every tool name in a text (instructions, descriptions, parameter docs, results) is the one
//! this session's client has: descriptions are written with `{tool}` placeholders that
//! [`ToolNames::fill`] replaces when the server starts.

mod args;
mod handlers;
mod texts;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool_handler};

use peers_core::render::ToolNames;

use crate::peer::{Peer, PeerError};

#[derive(Clone)]
pub struct PeersServer {
    peer: Arc<Peer>,
    tools: ToolNames,
    tool_router: ToolRouter<PeersServer>,
}

impl PeersServer {
    pub fn new(peer: Arc<Peer>) -> PeersServer {
        let tools = peer.facts.tools.clone();
        PeersServer {
            peer,
            tool_router: named_router(Self::tool_router(), &tools),
            tools,
        }
    }

    /// The tool result for a failed broker call.
    fn peer_error(&self, what: &str, e: PeerError) -> CallToolResult {
        let remote = self.peer.config.is_remote();
        fail(match e {
            PeerError::NotRegistered(reason) => texts::broker_trouble(what, &reason, remote),
            PeerError::Client(e) if e.is_unreachable() => {
                texts::broker_trouble(what, &e.to_string(), remote)
            }
            PeerError::Client(e) => texts::failed(what, e),
            PeerError::Lost(reason) => texts::registration_lost(what, &reason),
        })
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
            .with_instructions(texts::instructions(
                self.peer.current().as_deref(),
                &self.tools,
            ))
    }
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
