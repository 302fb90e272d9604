//! peers-mcp's integration tests, one binary: the real `peers-mcp` over stdio under a
//! stand-in Claude Code process, against a real broker.

mod escalation;
mod history;
mod mcp_server;
mod util;
