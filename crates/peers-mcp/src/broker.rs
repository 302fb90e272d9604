//! Making sure the local broker runs: start `peers-broker` detached and wait until healthy.

use std::path::Path;
use std::time::{Duration, Instant};

use peers_core::{BrokerClient, Config, local_broker};

/// How long to wait for a freshly started broker to answer `/v1/health`.
const START_WAIT: Duration = Duration::from_secs(6);

/// Ensures a broker answers at the configured URL. A remote (hub) broker is never started:
/// when it does not answer, that is an error.
pub async fn ensure(config: &Config, anon: &BrokerClient) -> Result<(), String> {
    if anon.health().await.is_ok() {
        return Ok(());
    }
    if config.is_remote() {
        return Err(format!(
            "the peers hub at {} does not answer; it is configured as a remote broker, so it \
             is not started from here",
            config.broker_url()
        ));
    }
    let bin = local_broker::find_binary("peers-broker").ok_or_else(|| {
        "cannot find the peers-broker binary next to peers-mcp or on PATH; install peers \
         (`peers install`) or start the broker by hand"
            .to_string()
    })?;
    tracing::info!(bin = %bin.display(), url = %config.broker_url(), "starting the local broker");
    spawn_detached(&bin, config).map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let deadline = Instant::now() + START_WAIT;
    loop {
        if anon.health().await.is_ok() {
            tracing::info!("the local broker is up");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "started {} but it did not answer at {} within {} s; see the logs in {}",
                bin.display(),
                config.broker_url(),
                START_WAIT.as_secs(),
                config.logs_dir().display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the broker detached (see [`peers_core::local_broker::detached_command`]). Spawned
/// through tokio so that a broker exiting while this server runs (a second one finding the
/// first healthy) is reaped rather than left a zombie.
fn spawn_detached(bin: &Path, config: &Config) -> std::io::Result<()> {
    let mut cmd = tokio::process::Command::from(local_broker::detached_command(bin, config)?);
    let child = cmd.kill_on_drop(false).spawn()?;
    tracing::info!(pid = child.id(), "spawned peers-broker");
    Ok(())
}
