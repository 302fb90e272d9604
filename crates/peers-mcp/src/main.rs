//! The per-session stdio MCP server (filled in by a later issue).
fn main() {
    eprintln!("peers-mcp {}: not built yet", peers_core::VERSION);
}
