//! `peers hub init --postgres URL`: the config with `db_url` (0600), a service per broker, the
//! clients' `broker_urls`; the database password never printed.

use std::os::unix::fs::PermissionsExt;

use expect_test::expect;
use peers_testkit::TestEnv;

use crate::util::{Run, peers, project};

/// `peers hub init --bind 10.0.0.2 --postgres URL …` in `env`.
fn hub_init_postgres(env: &TestEnv, url: &str, more: &[&str]) -> Run {
    let mut args = vec!["hub", "init", "--bind", "10.0.0.2", "--postgres", url];
    args.extend_from_slice(more);
    peers(env, &project(env, "here"), &args)
}

#[test]
fn hub_init_postgres_writes_the_config_and_a_template_and_hides_the_password() {
    let env = TestEnv::new();
    let url = "postgres://peers:hunter2@127.0.0.1:5432/peers?sslmode=require";
    let r = hub_init_postgres(&env, url, &["--brokers", "2"]).ok();
    assert!(!r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"));

    let text = std::fs::read_to_string(&env.config_file).unwrap();
    let mode = std::fs::metadata(&env.config_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(text.contains(&format!("db_url = \"{url}\"")), "{text}");
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap()
        .to_string();
    // The broker reads it back as the PostgreSQL URL.
    let cfg = peers_core::Config::load_from(|k| match k {
        "PEERS_CONFIG" => Some(env.config_file.display().to_string()),
        _ => None,
    })
    .unwrap();
    assert_eq!(cfg.db_url, peers_core::DbUrl::Postgres(url.into()));
    // Sessions on this machine use every broker too (and never start one of their own).
    let p = env.port;
    assert_eq!(
        cfg.broker_urls(),
        [
            format!("http://10.0.0.2:{p}"),
            format!("http://10.0.0.2:{}", p + 1)
        ]
    );

    // Every instance has this machine's id, so the brokers judge this machine's sessions
    // by their processes.
    let id = std::fs::read_to_string(peers_core::paths::machine_id_file(&env.state_dir)).unwrap();
    for port in [p, p + 1] {
        let dir = env.state_dir.join(format!("broker-{port}"));
        let theirs = std::fs::read_to_string(peers_core::paths::machine_id_file(&dir)).unwrap();
        assert_eq!(theirs, id, "broker-{port}");
    }

    let unit = env.home.join(".config/systemd/user/peers-broker@.service");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains("Environment=\"PEERS_PORT=%i\""),
        "{unit_text}"
    );
    assert!(!unit_text.contains("hunter2"));

    let tmp = env.dir.path().display().to_string();
    let port = env.port;
    // Paths, the token and the ports vary from run to run (in that order: the token's hex
    // could hold a port's digits).
    let shown = r
        .stdout
        .replace(&tmp, "$TMP")
        .replace(&token, "$TOKEN")
        .replace(&(port + 1).to_string(), "$PORT1")
        .replace(&port.to_string(), "$PORT");
    expect![[r#"
        wrote $TMP/config.toml (bind 10.0.0.2, port $PORT, new hub token; mode 0600)
          db_url = "postgres://peers:***@127.0.0.1:5432/peers?sslmode=require": every broker of this config shares that database
        wrote $TMP/home/.config/systemd/user/peers-broker@.service
          start them:  systemctl --user daemon-reload && systemctl --user enable --now peers-broker@$PORT peers-broker@$PORT1
          at boot without a login:  loginctl enable-linger $USER
          (a local broker already running for this state dir keeps the port: stop it first with `peers broker stop`)

        On each client machine, put this in its peers config.toml
        (usually ~/.config/peers/config.toml; `peers doctor` names it):

        broker_urls = ["http://10.0.0.2:$PORT", "http://10.0.0.2:$PORT1"]
        token = "$TOKEN"

        Keep the token secret: it lets a machine register sessions and read the mail log.
        Brokers on other machines: copy $TMP/config.toml (mode 0600: it holds the database URL) and the service there, and add their URLs to broker_urls. Clients never need db_url.
    "#]]
    .assert_eq(&shown);
}

#[test]
fn hub_init_refuses_a_url_that_is_not_postgres_without_echoing_its_password() {
    let env = TestEnv::new();
    let r = hub_init_postgres(&env, "mysql://u:s3cret@h/db", &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("postgres://"), "{}", r.stderr);
    assert!(!r.stderr.contains("s3cret") && !r.stdout.contains("s3cret"));
    assert!(!env.config_file.exists(), "nothing written");
}
