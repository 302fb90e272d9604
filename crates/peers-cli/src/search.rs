//! `peers search`: full-text search over every message on the broker (the human sees all).

use anyhow::Result;
use clap::Args;
use peers_core::now_ms;
use peers_core::wire::SearchQuery;

use crate::context::{self, Ctx, JsonArg, ago};
use crate::terminal;

#[derive(Args)]
pub struct SearchArgs {
    /// What to find in bodies and tags: words (all must match), "a phrase", OR, NOT,
    /// prefix* (SQLite FTS5 syntax; quote a word holding `:` or other punctuation).
    pub query: String,
    /// Only messages from this sender (a peer name, name@host, id, or `you`).
    #[arg(long)]
    pub from: Option<String>,
    /// Only posts to this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only messages with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only messages sent from this project.
    #[arg(long)]
    pub project: Option<String>,
    /// Only messages sent within this long (e.g. 2h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// At most this many matches, best first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub output: JsonArg,
}

pub fn run(a: SearchArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let since_ms = context::parse_optional_duration(a.since.as_deref())?
        .map(|d| now_ms() - d.as_millis() as i64);
    let q = SearchQuery {
        q: a.query.clone(),
        from: a.from,
        topic: a.topic,
        tag: a.tag,
        project: a.project,
        since_ms,
        limit: Some(a.limit.clamp(1, 200)),
        ..Default::default()
    };
    let found = ctx
        .rt
        .block_on(client.search(&q))
        .map_err(|e| ctx.explain(e))?;
    if a.output.json {
        return context::print_json(&found);
    }
    if found.hits.is_empty() {
        println!("no message matches {:?}", a.query);
        return Ok(());
    }
    for h in &found.hits {
        let thread = if h.thread_id == h.message_id {
            String::new()
        } else {
            format!(" (thread #{})", h.thread_id)
        };
        println!(
            "#{}{thread} {} {} -> {}  {}",
            h.message_id,
            peers_core::format_ms(h.sent_at_ms),
            terminal::safe_line(&h.from),
            terminal::safe_line(&h.to),
            ago(h.sent_at_ms)
        );
        println!("    {}", terminal::safe_line(&h.snippet));
    }
    Ok(())
}
