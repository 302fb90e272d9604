//! The real Claude Code CLI as a test harness (used by `peers-e2e`, the CLI's install tests):, driven offline against a scripted fake of the
//! Anthropic Messages API, with the peers MCP server and hooks configured exactly as
//! `peers install` writes them (`peers_core::claude_settings`).
//!
//! * [`FakeApi`]: one scripted model per simulated session, recording every request.
//! * [`driver`]: starts `claude -p` or an interactive `claude` under tmux, stops it on drop.
//! * [`shown`]: what a request showed the model, as text, and small parsers.
//!
//! The scenarios live in `crates/e2e/tests/`; `cargo xtask e2e` runs them one by one and
//! prints pass/fail and the measured send-to-context latency of each.

pub mod driver;
pub mod fake_api;
pub mod shown;

pub use driver::{Headless, Interactive, RunOutput, SessionSpec, claude_or_skip, serial};
pub use fake_api::{FakeApi, Gate, Recorded, Reply, Step, StepCtx, ToolCall};

/// Prints one machine-readable result line for `cargo xtask e2e`:
/// `E2E-LATENCY <scenario> <what> <millis>`.
pub fn report_latency(scenario: &str, what: &str, d: std::time::Duration) {
    println!(
        "E2E-LATENCY {scenario} {what} {:.1}",
        d.as_secs_f64() * 1000.0
    );
}
