//! The core shared by every peers binary.
//!
//! * [`wire`] — the JSON types of every broker API call. Types that cross the wire live here
//!   and nowhere else, so the broker, the MCP server, the hook and the CLI cannot drift apart.
//! * [`config`] — the one typed settings struct: defaults < `config.toml` < `PEERS_*` env.
//! * [`paths`] — where state, config and the per-user secret live.
//! * [`identity`] — machine id, host label, friendly names, git facts about a directory.
//! * [`process`] — pids, parents, process start times (`/proc` on Linux, sysinfo elsewhere).
//! * [`mailmark`] — the files by which a local broker tells the hook whether mail may wait.
//! * [`local_broker`] — finding `peers-broker`, starting it detached, waiting until it answers.
//! * [`render`] — the one renderer of model-facing mail (hook, wake, `check_messages`), the
//!   SessionStart introduction and `list_peers` entries, with this client's tool names.
//! * [`session`] — the session file `peers-mcp` writes and `peers-deliver` reads.
//! * [`claude_settings`] — the hook set and MCP entry that plug peers into Claude Code.
//! * [`client`] — the async HTTP client for the broker API.

pub mod address;
pub mod claude_settings;
pub mod client;
pub mod config;
pub mod identity;
pub mod local_broker;
pub mod mailmark;
pub mod paths;
pub mod process;
pub mod render;
pub mod session;
pub mod wire;

pub use client::{BrokerClient, ClientError};
pub use config::{Config, ConfigError, DbUrl};

/// The version every binary reports; the broker puts it in `/v1/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, the one time unit on the wire.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats epoch milliseconds as an RFC 3339 UTC timestamp (`2026-11-21T13:35:00Z`) for
/// text meant for people and models.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// Parses `90`, `30s`, `10m`, `2h`, `1d`, `500ms` (no unit: seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 30s, 10m, 2h or 1d"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" | "hr" | "hrs" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        "w" | "week" | "weeks" => n * 7.0 * 86400.0,
        _ => {
            return Err(format!(
                "{s:?} is not a duration: use e.g. 30s, 10m, 2h or 1d"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_epoch_ms_as_rfc3339() {
        assert_eq!(super::format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_ms(1_763_732_100_500), "2025-11-21T13:35:00Z");
    }
}
