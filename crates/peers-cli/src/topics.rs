//! `peers topics` and `peers topic NAME`: the topics, and one topic's recent posts with
//! their bodies and each reader's state.

use anyhow::{Result, anyhow};
use clap::Args;
use peers_core::address::topic_name;
use peers_core::wire::{ErrorCode, TopicPostsQuery};

use crate::context::{self, Ctx, JsonArg, ago};
use crate::log::state_text;
use crate::show::reader_lines;
use crate::terminal;

#[derive(Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub output: JsonArg,
}

#[derive(Args)]
pub struct TopicArgs {
    /// The topic (`deploys` or `'#deploys'`).
    pub name: String,
    /// At most this many posts, the newest (default 20).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Only posts after this message id.
    #[arg(long, value_name = "ID")]
    pub since_id: Option<i64>,
    #[command(flatten)]
    pub output: JsonArg,
}

pub fn list(a: TopicsArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    let list = ctx
        .rt
        .block_on(client.topics())
        .map_err(|e| ctx.explain(e))?;
    if a.output.json {
        return context::print_json(&list);
    }
    if list.topics.is_empty() {
        println!(
            "no topics yet: `peers send '#name' \"…\"` posts to a new one, and a session's \
             subscribe tool (or `topics = [\"name\"]` in config.toml) subscribes to one"
        );
        return Ok(());
    }
    for t in &list.topics {
        println!(
            "#{:<24} {:>3} subscriber(s) {:>5} post(s)  {}",
            terminal::safe_line(&t.topic),
            t.subscribers,
            t.posts,
            t.last_post_ms
                .map(|ms| format!("last post {}", ago(ms)))
                .unwrap_or_else(|| "no posts".into())
        );
    }
    Ok(())
}

pub fn show(a: TopicArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let topic = topic_name(&a.name).map_err(|e| anyhow!(e))?;
    let client = ctx.user()?;
    let q = TopicPostsQuery {
        since_id: a.since_id,
        limit: Some(a.limit.clamp(1, 500)),
    };
    let posts = ctx
        .rt
        .block_on(client.topic_posts(&topic, &q))
        .map_err(|e| match e.code() {
            Some(ErrorCode::NotFound) => anyhow!("{e}"),
            _ => ctx.explain(e),
        })?;
    if a.output.json {
        return context::print_json(&posts);
    }
    if posts.posts.is_empty() {
        println!("#{topic} has no posts yet");
        return Ok(());
    }
    println!("#{topic}: {} post(s), oldest first", posts.posts.len());
    for p in &posts.posts {
        println!();
        println!(
            "#{} {} from {}  {}",
            p.message_id,
            ago(p.sent_at_ms),
            terminal::safe_line(&p.from),
            state_text(p)
        );
        if let Some(b) = &p.body {
            println!("{}", terminal::indented(b, "    "));
        }
        for line in reader_lines(p) {
            println!("    · {line}");
        }
    }
    Ok(())
}
