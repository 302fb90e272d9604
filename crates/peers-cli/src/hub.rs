//! `peers hub init`: make this machine the hub of the user's peers network — the hub token and
//! config (bind, port, token; 0600), a service that keeps `peers-broker` running (a systemd
//! user unit on Linux, a launchd agent on macOS), and the snippet to paste on every client.
//!
//! The same files, with comments, are in `examples/`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use peers_core::Config;

#[derive(Subcommand)]
pub enum HubCommand {
    /// Make this machine the hub: token + config (0600), a service with restart on failure,
    /// and the snippet for every client machine.
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// The address the hub listens on: one the other machines reach (a tailnet or LAN address).
    #[arg(long, value_name = "ADDR")]
    pub bind: IpAddr,
    /// The port (default: the configured one, 7900).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Make a new hub token even if the config has one (every client needs the new one).
    #[arg(long)]
    pub rotate_token: bool,
    /// Write the config but no service file.
    #[arg(long)]
    pub no_service: bool,
}

pub fn run(cmd: HubCommand) -> Result<()> {
    match cmd {
        HubCommand::Init(a) => init(a),
    }
}

/// Top-level keys this command sets in `config.toml`.
const KEYS: [&str; 3] = ["bind", "port", "token"];

fn init(a: InitArgs) -> Result<()> {
    let cfg = Config::load().map_err(|e| anyhow!("{e}"))?;
    if a.bind.is_loopback() {
        bail!(
            "--bind {} is loopback: other machines cannot reach it. Give the address they use \
             for this machine (a tailnet or LAN address, e.g. --bind 100.64.0.7)",
            a.bind
        );
    }
    if a.bind.is_unspecified() {
        eprintln!(
            "peers: note: {} listens on every interface of this machine; a tailnet or LAN \
             address is safer",
            a.bind
        );
    }
    let port = a.port.unwrap_or(cfg.port);
    let path = cfg.config_file.clone();
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // The token already in the file (not one from PEERS_TOKEN) is kept unless rotated.
    let file_token = existing
        .lines()
        .find_map(|l| key_value(l, "token"))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|t| !t.is_empty() && !t.contains('.'));
    let (token, new_token) = match file_token {
        Some(t) if !a.rotate_token => (t, false),
        _ => (peers_core::paths::random_hex(32), true),
    };
    let text = config_text(&existing, a.bind, port, &token);
    peers_core::paths::write_private_file(&path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "{} {} (bind {}, port {port}, {} hub token; mode 0600)",
        if existing.is_empty() {
            "wrote"
        } else {
            "updated"
        },
        path.display(),
        a.bind,
        if new_token { "new" } else { "kept the" }
    );

    if !a.no_service {
        let broker = crate::context::find_binary("peers-broker").ok_or_else(|| {
            anyhow!(
                "cannot find peers-broker next to peers or on PATH; install it first \
                 (`cargo xtask install`), or pass --no-service"
            )
        })?;
        let env = service_env(&cfg);
        if cfg!(target_os = "macos") {
            let plist = peers_core::paths::home()?.join("Library/LaunchAgents/com.peers.hub.plist");
            write_file(&plist, &launchd_plist(&broker, &env, &cfg.logs_dir()))?;
            println!("wrote {}", plist.display());
            println!("  start it:  launchctl load -w {}", plist.display());
        } else {
            let unit = systemd_user_dir()?.join("peers-hub.service");
            write_file(&unit, &systemd_unit(&broker, &env))?;
            println!("wrote {}", unit.display());
            println!(
                "  start it:  systemctl --user daemon-reload && systemctl --user enable --now \
                 peers-hub"
            );
            println!("  at boot without a login:  loginctl enable-linger $USER");
        }
        println!(
            "  (a local broker already running for this state dir keeps the port: stop it \
             first with `peers broker stop`)"
        );
    }

    let scheme = if cfg.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let host = match a.bind {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    println!();
    println!("On each client machine, put this in its peers config.toml");
    println!("(usually ~/.config/peers/config.toml; `peers doctor` names it):");
    println!();
    println!("broker_url = \"{scheme}://{host}:{port}\"");
    println!("token = \"{token}\"");
    if let Some(cert) = &cfg.tls_cert {
        println!(
            "tls_ca = \"/path/to/a/copy/of/{}\"",
            cert.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "hub.pem".into())
        );
    }
    println!();
    println!("Keep the token secret: it lets a machine register sessions and read the mail log.");
    Ok(())
}

/// `key = value` on a top-level line, the value as written.
fn key_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| v.split('#').next().unwrap_or("").trim())
}

/// The config with `bind`, `port` and `token` set; every other line kept as it was (the
/// config has only top-level keys).
pub fn config_text(existing: &str, bind: IpAddr, port: u16, token: &str) -> String {
    let mut out = String::new();
    if existing.trim().is_empty() {
        out.push_str(
            "# peers hub (written by `peers hub init`). Other machines reach this broker at\n\
             # bind:port with the token below; keep this file private (mode 0600).\n",
        );
    }
    for line in existing.lines() {
        if KEYS.iter().any(|k| key_value(line, k).is_some()) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "bind = \"{bind}\"\nport = {port}\ntoken = \"{token}\"\n"
    ));
    out
}

/// Variables the service needs to find the same config and state as this shell.
fn service_env(cfg: &Config) -> Vec<(String, String)> {
    let mut env = vec![(
        "PEERS_CONFIG".to_string(),
        cfg.config_file.display().to_string(),
    )];
    if std::env::var_os("PEERS_STATE_DIR").is_some() {
        env.push((
            "PEERS_STATE_DIR".to_string(),
            cfg.state_dir.display().to_string(),
        ));
    }
    env
}

pub fn systemd_unit(broker: &Path, env: &[(String, String)]) -> String {
    let mut s = String::from(
        "# peers hub: the broker every peers session of this user's machines talks to.\n\
         # Written by `peers hub init`; see examples/peers-hub.service.\n\
         [Unit]\n\
         Description=peers hub (peers-broker)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\n\
         [Service]\n\
         Type=simple\n",
    );
    for (k, v) in env {
        s.push_str(&format!("Environment=\"{k}={v}\"\n"));
    }
    s.push_str(&format!(
        "ExecStart={}\nRestart=on-failure\nRestartSec=2\n\n[Install]\nWantedBy=default.target\n",
        broker.display()
    ));
    s
}

pub fn launchd_plist(broker: &Path, env: &[(String, String)], logs: &Path) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut vars = String::new();
    for (k, v) in env {
        vars.push_str(&format!(
            "        <key>{}</key>\n        <string>{}</string>\n",
            esc(k),
            esc(v)
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- peers hub, written by `peers hub init`; see examples/com.peers.hub.plist -->
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>com.peers.hub</string>
    <key>ProgramArguments</key>
    <array>
        <string>{broker}</string>
    </array>
    <key>EnvironmentVariables</key>
    <dict>
{vars}    </dict>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key>
        <false/>
    </dict>
    <key>StandardErrorPath</key>
    <string>{log}</string>
</dict>
</plist>
"#,
        broker = esc(&broker.display().to_string()),
        log = esc(&logs.join("hub.err").display().to_string()),
    )
}

fn systemd_user_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => peers_core::paths::home()?.join(".config"),
    };
    Ok(base.join("systemd/user"))
}

/// Writes a service file (mode 0644) atomically.
fn write_file(path: &Path, text: &str) -> Result<()> {
    peers_core::paths::write_file_atomic(path, text.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_replaced_and_the_rest_kept() {
        let old = "# mine\nhost = \"lap\"\nport = 1\ntoken = \"old\" # x\nbind=\"127.0.0.1\"\n";
        let t = config_text(old, "10.0.0.2".parse().unwrap(), 7900, "abc");
        assert_eq!(
            t,
            "# mine\nhost = \"lap\"\nbind = \"10.0.0.2\"\nport = 7900\ntoken = \"abc\"\n"
        );
        assert_eq!(key_value("token = \"old\" # x", "token"), Some("\"old\""));
        assert_eq!(key_value("tokens = 1", "token"), None);
    }

    #[test]
    fn service_files_restart_on_failure() {
        let env = vec![("PEERS_CONFIG".to_string(), "/h/c.toml".to_string())];
        let u = systemd_unit(Path::new("/bin/peers-broker"), &env);
        assert!(u.contains("ExecStart=/bin/peers-broker\n"), "{u}");
        assert!(u.contains("Restart=on-failure"), "{u}");
        assert!(u.contains("Environment=\"PEERS_CONFIG=/h/c.toml\""), "{u}");
        let p = launchd_plist(Path::new("/bin/peers-broker"), &env, Path::new("/l"));
        assert!(p.contains("<string>/bin/peers-broker</string>"), "{p}");
        assert!(p.contains("<key>SuccessfulExit</key>"), "{p}");
    }
}
