//! `cargo xtask bench …` (filled in with the broker benchmark).

use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum Which {
    /// The broker: sends/s, claim+ack latency, RSS, start-up time.
    Broker,
}

pub fn run(_which: Which) -> Result<()> {
    anyhow::bail!("benchmarks are not built yet")
}
