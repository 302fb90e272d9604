//! `peers export`: every message on the broker as JSON lines (`GET /v1/export`), to stdout
//! or a file, for backups and audits.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use peers_core::now_ms;
use peers_core::wire::ExportQuery;

use crate::context::{self, Ctx};

#[derive(Args)]
pub struct ExportArgs {
    /// Only messages sent within this long (e.g. 2h, 30d), or since this date (2026-01-31,
    /// UTC) or time (2026-01-31T08:00:00Z).
    #[arg(long, value_name = "DURATION|DATE")]
    pub since: Option<String>,
    /// Write to this file instead of stdout (replaced only once the export is complete).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let since_ms = a.since.as_deref().map(since_ms).transpose()?;
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let q = ExportQuery { since_ms };
    match &a.out {
        None => {
            let stdout = std::io::stdout().lock();
            write_all(&ctx, &client, &q, std::io::BufWriter::new(stdout))?;
        }
        Some(path) => {
            // Written beside the target and renamed at the end: a broken export never
            // replaces a good one.
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            let n = write_all(
                &ctx,
                &client,
                &q,
                std::io::BufWriter::new(tmp.as_file_mut()),
            )?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("exported {n} messages to {}", path.display());
        }
    }
    Ok(())
}

/// Streams the export into `out`, line by line; how many messages.
fn write_all(
    ctx: &Ctx,
    client: &peers_core::BrokerClient,
    q: &ExportQuery,
    mut out: impl Write,
) -> Result<u64> {
    ctx.rt.block_on(async {
        let mut lines = client.export(q).await.map_err(|e| ctx.explain(e))?;
        let mut n = 0;
        while let Some(line) = lines.next_line().await {
            let line = line.map_err(|e| ctx.explain(e))?;
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            n += 1;
        }
        out.flush()?;
        Ok(n)
    })
}

/// `--since`: a duration back from now, a date (midnight UTC) or an RFC 3339 time.
fn since_ms(s: &str) -> Result<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = s.trim();
    // A date is its midnight UTC.
    for text in [t.to_string(), format!("{t}T00:00:00Z")] {
        if let Ok(at) = time::OffsetDateTime::parse(&text, &Rfc3339) {
            return Ok((at.unix_timestamp_nanos() / 1_000_000) as i64);
        }
    }
    match context::parse_duration(t) {
        Ok(d) => Ok(now_ms() - d.as_millis() as i64),
        Err(_) => Err(anyhow!(
            "--since {s:?} is neither a duration (30m, 2h, 7d), a date (2026-01-31) nor a \
             time (2026-01-31T08:00:00Z)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::since_ms;

    #[test]
    fn since_takes_a_date_a_time_or_a_duration() {
        assert_eq!(since_ms("2026-01-31").unwrap(), 1_769_817_600_000);
        assert_eq!(since_ms("2026-01-31T08:00:00Z").unwrap(), 1_769_846_400_000);
        // `since_ms` reads the clock between these two readings.
        let before = peers_core::now_ms();
        let since = since_ms("2h").unwrap();
        let after = peers_core::now_ms();
        assert!(
            (before - 7_200_000..=after - 7_200_000).contains(&since),
            "{before} {since} {after}"
        );
        let e = since_ms("yesterday").unwrap_err().to_string();
        assert!(e.contains("neither a duration"), "{e}");
    }
}
