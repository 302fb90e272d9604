//! `peers token create|list|revoke`: script tokens for scripts and CI, which may only post
//! (to the listed recipients, if any) and read the status of their own posts.

use anyhow::Result;
use clap::{Args, Subcommand};
use peers_core::wire::{TokenCreateRequest, TokenInfo};

use crate::context::{self, Ctx, JsonArg, ago, parse_duration};
use crate::terminal;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a script token and print it (once: only its hash is kept). A script posts with
    /// it as `Authorization: Bearer <token>` (see docs/PROTOCOL.md); its mail shows as from
    /// `NAME (script)`.
    Create(CreateArgs),
    /// The script tokens: name, what each may post to, created, expires, last used (never the
    /// token itself).
    List(ListArgs),
    /// Revoke a script token: it is refused from its next request on.
    Revoke(RevokeArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The token's name (also its posts' sender, `NAME (script)`).
    pub name: String,
    /// A recipient it may post to: a peer name, `name@host`, `'#topic'`, or `'*'` (repeat
    /// for several). Without any: every recipient.
    #[arg(long = "post-to", value_name = "PEER_OR_TOPIC")]
    pub post_to: Vec<String>,
    /// How long it stays valid (`30d`, `12h`, …); without: until revoked.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    #[command(flatten)]
    pub output: JsonArg,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: JsonArg,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The token's name.
    pub name: String,
}

pub fn run(c: TokenCommand) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    match c {
        TokenCommand::Create(a) => {
            let expires_in_ms = match a.expires.as_deref() {
                None => None,
                Some(s) => Some(i64::try_from(parse_duration(s)?.as_millis()).unwrap_or(i64::MAX)),
            };
            let req = TokenCreateRequest {
                name: a.name,
                post_to: a.post_to,
                expires_in_ms,
            };
            let made = ctx
                .rt
                .block_on(client.create_token(&req))
                .map_err(|e| ctx.explain(e))?;
            if a.output.json {
                return context::print_json(&made);
            }
            println!("{}", made.token);
            eprintln!(
                "script token {:?} ({}); shown only now: keep it in your CI's secrets",
                made.info.name,
                scope(&made.info)
            );
            Ok(())
        }
        TokenCommand::List(a) => {
            let list = ctx
                .rt
                .block_on(client.tokens())
                .map_err(|e| ctx.explain(e))?;
            if a.output.json {
                return context::print_json(&list);
            }
            if list.tokens.is_empty() {
                println!(
                    "no script tokens: `peers token create NAME --post-to '#topic'` makes one"
                );
            }
            for t in &list.tokens {
                println!("{}", line(t));
            }
            Ok(())
        }
        TokenCommand::Revoke(a) => {
            ctx.rt
                .block_on(client.revoke_token(&a.name))
                .map_err(|e| ctx.explain(e))?;
            println!("revoked script token {:?}", a.name);
            Ok(())
        }
    }
}

fn scope(t: &TokenInfo) -> String {
    if t.post_to.is_empty() {
        "may post to anyone".into()
    } else {
        format!("may post to {}", t.post_to.join(", "))
    }
}

fn line(t: &TokenInfo) -> String {
    let now = peers_core::now_ms();
    let state = match (t.revoked_ms, t.expires_ms) {
        (Some(ms), _) => format!("revoked {}", ago(ms)),
        (None, Some(e)) if e <= now => format!("expired {}", ago(e)),
        (None, Some(e)) => format!("expires in {}", context::duration(e - now)),
        (None, None) => "never expires".into(),
    };
    format!(
        "{:<20} {}; created {}; {}; {}",
        terminal::safe_line(&t.name),
        terminal::safe_line(&scope(t)),
        ago(t.created_ms),
        state,
        t.last_used_ms
            .map(|ms| format!("last used {}", ago(ms)))
            .unwrap_or_else(|| "never used".into())
    )
}
