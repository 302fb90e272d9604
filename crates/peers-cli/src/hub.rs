//! `peers hub init`: make this machine the hub of the user's peers network — the hub token and
//! config (bind, port, token; 0600), a service that keeps `peers-broker` running (a systemd
//! user unit on Linux, a launchd agent on macOS), and the snippet to paste on every client.
//!
//! With `--postgres URL`: several brokers on one PostgreSQL database. The config gets
//! `db_url` (it may hold the database password: the file is 0600 and the password is never
//! printed), the service is one instance per port (a systemd template `peers-broker@.service`,
//! or one launchd agent per port), each with its own state dir, and the config and the client
//! snippet list every broker in `broker_urls` (so sessions on this machine fail over too).
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
    /// and the snippet for every client machine. With --postgres: several brokers on one
    /// PostgreSQL database (db_url, a service per broker, the clients' broker_urls).
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
    /// Several brokers on one PostgreSQL database (`postgres://user:password@host:5432/db`):
    /// writes it as `db_url` into this config (mode 0600; the password is never printed) and a
    /// service per broker instance.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// With --postgres: how many brokers this machine runs, on ports PORT, PORT+1, ….
    #[arg(long, value_name = "N", default_value_t = 2, requires = "postgres",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub brokers: u16,
}

pub fn run(cmd: HubCommand) -> Result<()> {
    match cmd {
        HubCommand::Init(a) => init(a),
    }
}

/// Top-level keys this command sets in `config.toml` (and [`Shared`]'s with `--postgres`).
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
    let db_url = a.postgres.as_deref().map(postgres_url).transpose()?;
    let port = a.port.unwrap_or(cfg.port);
    let ports: Vec<u16> = match db_url {
        Some(_) => (0..a.brokers)
            .map(|i| port.checked_add(i))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                anyhow!(
                    "--port {port} with --brokers {}: past port 65535",
                    a.brokers
                )
            })?,
        None => vec![port],
    };
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
    let scheme = if cfg.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let host = match a.bind {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("{scheme}://{host}:{p}"))
        .collect();
    let shared = db_url.as_deref().map(|db_url| Shared {
        db_url,
        broker_urls: &urls,
    });
    let text = config_text(&existing, a.bind, port, &token, shared);
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
    if let Some(u) = &db_url {
        println!(
            "  db_url = \"{}\": every broker of this config shares that database",
            peers_core::DbUrl::redact(u)
        );
    }

    if !a.no_service {
        let broker = crate::context::find_binary("peers-broker").ok_or_else(|| {
            anyhow!(
                "cannot find peers-broker next to peers or on PATH; install it first \
                 (`cargo xtask install`), or pass --no-service"
            )
        })?;
        let env = service_env(&cfg);
        if db_url.is_some() {
            write_instances(&broker, &env, &cfg, &ports)?;
        } else if cfg!(target_os = "macos") {
            let plist = peers_core::paths::home()?.join("Library/LaunchAgents/com.peers.hub.plist");
            write_file(
                &plist,
                &launchd_plist(&broker, &env, &cfg.logs_dir(), "com.peers.hub", "hub"),
            )?;
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

    println!();
    println!("On each client machine, put this in its peers config.toml");
    println!("(usually ~/.config/peers/config.toml; `peers doctor` names it):");
    println!();
    if db_url.is_some() {
        println!("{}", broker_urls_line(&urls));
    } else {
        println!("broker_url = \"{}\"", urls[0]);
    }
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
    if db_url.is_some() {
        println!(
            "Brokers on other machines: copy {} (mode 0600: it holds the database URL) and the \
             service there, and add their URLs to broker_urls. Clients never need db_url.",
            path.display()
        );
    }
    Ok(())
}

/// The `--postgres` value, checked: a PostgreSQL URL, else a clear error (without the password).
fn postgres_url(url: &str) -> Result<String> {
    // Something that is no URL at all may still hold a password: then it is not repeated.
    let shown = if url.contains("://") {
        peers_core::DbUrl::redact(url)
    } else {
        "(the value)".to_string()
    };
    match peers_core::DbUrl::parse(url) {
        Ok(peers_core::DbUrl::Postgres(u)) => Ok(u),
        Ok(peers_core::DbUrl::Sqlite(_)) => bail!(
            "--postgres {shown}: that is an SQLite URL; --postgres takes \
             postgres://user:password@host:5432/dbname"
        ),
        Err(e) => bail!("--postgres {shown}: {e}"),
    }
}

/// The services of several brokers on one database: a systemd template instantiated per port,
/// or one launchd agent per port.
fn write_instances(
    broker: &Path,
    env: &[(String, String)],
    cfg: &Config,
    ports: &[u16],
) -> Result<()> {
    share_machine_id(cfg, ports)?;
    if cfg!(target_os = "macos") {
        let agents = peers_core::paths::home()?.join("Library/LaunchAgents");
        for p in ports {
            let label = format!("com.peers.broker.{p}");
            let plist = agents.join(format!("{label}.plist"));
            let mut env = env.to_vec();
            env.extend(instance_env(cfg, &p.to_string()));
            write_file(
                &plist,
                &launchd_plist(
                    broker,
                    &env,
                    &cfg.logs_dir(),
                    &label,
                    &format!("broker-{p}"),
                ),
            )?;
            println!("wrote {}", plist.display());
            println!("  start it:  launchctl load -w {}", plist.display());
        }
        return Ok(());
    }
    let unit = systemd_user_dir()?.join("peers-broker@.service");
    write_file(&unit, &systemd_template(broker, env, cfg))?;
    println!("wrote {}", unit.display());
    let instances: Vec<String> = ports.iter().map(|p| format!("peers-broker@{p}")).collect();
    println!(
        "  start them:  systemctl --user daemon-reload && systemctl --user enable --now {}",
        instances.join(" ")
    );
    println!("  at boot without a login:  loginctl enable-linger $USER");
    Ok(())
}

/// Gives each instance's state dir this machine's id: the brokers and the sessions of one
/// machine must agree on it, or no broker would judge this machine's sessions by their
/// processes (only by heartbeats). An instance dir that already has an id keeps it.
fn share_machine_id(cfg: &Config, ports: &[u16]) -> Result<()> {
    use peers_core::paths;
    let id = peers_core::identity::machine_id(&cfg.state_dir)
        .with_context(|| format!("the machine id in {}", cfg.state_dir.display()))?;
    for p in ports {
        let dir = instance_state_dir(cfg, &p.to_string());
        let file = paths::machine_id_file(&dir);
        if file.exists() {
            continue;
        }
        paths::ensure_private_dir(&dir)
            .and_then(|()| paths::write_private_file(&file, id.as_bytes()))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

/// The state dir of the broker instance `instance` (a port, or `%i` in a systemd template).
fn instance_state_dir(cfg: &Config, instance: &str) -> PathBuf {
    cfg.state_dir.join(format!("broker-{instance}"))
}

/// What sets one broker instance apart: its port and its own state dir (`instance` is the
/// port, or `%i` in a systemd template).
fn instance_env(cfg: &Config, instance: &str) -> Vec<(String, String)> {
    vec![
        ("PEERS_PORT".to_string(), instance.to_string()),
        (
            "PEERS_STATE_DIR".to_string(),
            instance_state_dir(cfg, instance).display().to_string(),
        ),
    ]
}

/// `key = value` on a top-level line, the value as written.
fn key_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| v.split('#').next().unwrap_or("").trim())
}

/// What `--postgres` adds to the config: the database, and every broker of this machine as
/// `broker_urls`, so sessions here fail over between them and never start a broker of their
/// own.
pub struct Shared<'a> {
    pub db_url: &'a str,
    pub broker_urls: &'a [String],
}

/// `broker_urls = ["…", …]` (each a JSON string, which is a valid TOML basic string).
fn broker_urls_line(urls: &[String]) -> String {
    let quoted: Vec<String> = urls
        .iter()
        .map(|u| serde_json::to_string(u).unwrap_or_default())
        .collect();
    format!("broker_urls = [{}]", quoted.join(", "))
}

/// The config with `bind`, `port`, `token` (and with `shared`, `db_url` and `broker_urls`)
/// set; every other line kept as it was (the config has only top-level keys).
pub fn config_text(
    existing: &str,
    bind: IpAddr,
    port: u16,
    token: &str,
    shared: Option<Shared<'_>>,
) -> String {
    let mut out = String::new();
    if existing.trim().is_empty() {
        out.push_str(
            "# peers hub (written by `peers hub init`). Other machines reach this broker at\n\
             # bind:port with the token below; keep this file private (mode 0600).\n",
        );
    }
    let shared_keys = ["db_url", "broker_url", "broker_urls"];
    for line in existing.lines() {
        if KEYS.iter().any(|k| key_value(line, k).is_some())
            || (shared.is_some() && shared_keys.iter().any(|k| key_value(line, k).is_some()))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "bind = \"{bind}\"\nport = {port}\ntoken = \"{token}\"\n"
    ));
    if let Some(sh) = shared {
        let quoted = serde_json::to_string(sh.db_url).unwrap_or_default();
        out.push_str(&format!("db_url = {quoted}\n"));
        out.push_str(&broker_urls_line(sh.broker_urls));
        out.push('\n');
    }
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
    let head = "# peers hub: the broker every peers session of this user's machines talks to.\n\
         # Written by `peers hub init`; see examples/peers-hub.service.\n\
         [Unit]\n\
         Description=peers hub (peers-broker)\n";
    systemd_text(head, broker, env)
}

/// The template `peers-broker@.service`: instance `%i` is the port.
pub fn systemd_template(broker: &Path, env: &[(String, String)], cfg: &Config) -> String {
    let head = "# One of several peers brokers on one PostgreSQL database (db_url in the config).\n\
         # Written by `peers hub init --postgres`. The instance is the port; each has its own\n\
         # state dir:  systemctl --user enable --now peers-broker@7900 peers-broker@7901\n\
         [Unit]\n\
         Description=peers broker on port %i (peers-broker, shared PostgreSQL)\n";
    let mut env = env.to_vec();
    env.retain(|(k, _)| k != "PEERS_STATE_DIR");
    env.extend(instance_env(cfg, "%i"));
    systemd_text(head, broker, &env)
}

fn systemd_text(head: &str, broker: &Path, env: &[(String, String)]) -> String {
    let mut s = String::from(head);
    s.push_str(
        "After=network-online.target\n\
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

/// A launchd agent `label` running the broker with `env`; stderr to `<logs>/<log>.err`.
pub fn launchd_plist(
    broker: &Path,
    env: &[(String, String)],
    logs: &Path,
    label: &str,
    log: &str,
) -> String {
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
    <string>{label}</string>
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
        label = esc(label),
        log = esc(&logs.join(format!("{log}.err")).display().to_string()),
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
        let t = config_text(old, "10.0.0.2".parse().unwrap(), 7900, "abc", None);
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
        let p = launchd_plist(
            Path::new("/bin/peers-broker"),
            &env,
            Path::new("/l"),
            "com.peers.hub",
            "hub",
        );
        assert!(p.contains("<string>/bin/peers-broker</string>"), "{p}");
        assert!(p.contains("<key>SuccessfulExit</key>"), "{p}");
    }

    #[test]
    fn postgres_config_and_template() {
        let url = "postgres://peers:hunter2@db.internal:5432/peers?sslmode=verify-full";
        let old = "db_url = \"sqlite:///old.db\"\nhost = \"hub\"\nbroker_url = \"http://x:1\"\n";
        let urls = [
            "http://10.0.0.2:7900".to_string(),
            "http://10.0.0.2:7901".to_string(),
        ];
        let shared = Shared {
            db_url: url,
            broker_urls: &urls,
        };
        let t = config_text(old, "10.0.0.2".parse().unwrap(), 7900, "abc", Some(shared));
        expect_test::expect![[r#"
            host = "hub"
            bind = "10.0.0.2"
            port = 7900
            token = "abc"
            db_url = "postgres://peers:hunter2@db.internal:5432/peers?sslmode=verify-full"
            broker_urls = ["http://10.0.0.2:7900", "http://10.0.0.2:7901"]
        "#]]
        .assert_eq(&t);
        // Without --postgres an existing db_url stays.
        let kept = config_text(old, "10.0.0.2".parse().unwrap(), 7900, "abc", None);
        assert!(kept.contains("db_url = \"sqlite:///old.db\""), "{kept}");

        let cfg = Config::load_from(|k| match k {
            "PEERS_CONFIG" => Some("/h/.config/peers/config.toml".into()),
            "PEERS_STATE_DIR" => Some("/h/.local/state/peers".into()),
            _ => None,
        })
        .unwrap();
        let env = vec![
            (
                "PEERS_CONFIG".to_string(),
                "/h/.config/peers/config.toml".to_string(),
            ),
            (
                "PEERS_STATE_DIR".to_string(),
                "/h/.local/state/peers".to_string(),
            ),
        ];
        expect_test::expect![[r#"
            # One of several peers brokers on one PostgreSQL database (db_url in the config).
            # Written by `peers hub init --postgres`. The instance is the port; each has its own
            # state dir:  systemctl --user enable --now peers-broker@7900 peers-broker@7901
            [Unit]
            Description=peers broker on port %i (peers-broker, shared PostgreSQL)
            After=network-online.target
            Wants=network-online.target

            [Service]
            Type=simple
            Environment="PEERS_CONFIG=/h/.config/peers/config.toml"
            Environment="PEERS_PORT=%i"
            Environment="PEERS_STATE_DIR=/h/.local/state/peers/broker-%i"
            ExecStart=/bin/peers-broker
            Restart=on-failure
            RestartSec=2

            [Install]
            WantedBy=default.target
        "#]]
        .assert_eq(&systemd_template(
            Path::new("/bin/peers-broker"),
            &env,
            &cfg,
        ));
    }

    #[test]
    fn postgres_urls_are_checked_without_showing_the_password() {
        assert!(postgres_url("postgresql://u:p@h/db").is_ok());
        for bad in ["mysql://u:s3cret@h/db", "sqlite:///x.db", "u:s3cret@h"] {
            let e = postgres_url(bad).unwrap_err().to_string();
            assert!(e.contains("postgres://") && !e.contains("s3cret"), "{e}");
        }
    }
}
