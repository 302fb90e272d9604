//! `peers dashboard`: a one-time login link to the broker's web dashboard (printed, and on a
//! desktop opened in the browser), or `--logout-all` to end every dashboard login.

use std::process::{Command, Stdio};

use anyhow::Result;
use clap::Args;

use crate::context::{self, Ctx, JsonArg};

#[derive(Args)]
pub struct DashboardArgs {
    /// A link for a browser on another machine than the broker's (a hub): needs the hub
    /// token (`token` in config.toml or PEERS_TOKEN).
    #[arg(long)]
    pub hub: bool,
    /// Print the link only; do not open a browser.
    #[arg(long)]
    pub no_open: bool,
    /// End every dashboard login (and void unused links) instead.
    #[arg(long, conflicts_with_all = ["hub", "no_open"])]
    pub logout_all: bool,
    #[command(flatten)]
    pub output: JsonArg,
}

pub fn run(a: DashboardArgs) -> Result<()> {
    let ctx = Ctx::load()?;
    let client = ctx.user()?;
    if a.logout_all {
        let out = ctx
            .rt
            .block_on(client.dashboard_logout_all())
            .map_err(|e| ctx.explain(e))?;
        if a.output.json {
            return context::print_json(&out);
        }
        println!("ended {} dashboard login(s)", out.sessions);
        return Ok(());
    }
    let code = ctx
        .rt
        .block_on(client.dashboard_code(a.hub))
        .map_err(|e| ctx.explain(e))?;
    let url = format!("{}{}", ctx.url().trim_end_matches('/'), code.path);
    if a.output.json {
        return context::print_json(&serde_json::json!({
            "url": url,
            "expires_ms": code.expires_ms,
        }));
    }
    println!("{url}");
    eprintln!("(works once, for 2 minutes; `peers dashboard --logout-all` ends every login)");
    if !a.no_open {
        open_in_browser(&url);
    }
    Ok(())
}

/// Opens `url` in the desktop's browser, best effort: without a desktop, or when it fails,
/// the printed link is all there is.
fn open_in_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return;
    };
    let _ = Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
