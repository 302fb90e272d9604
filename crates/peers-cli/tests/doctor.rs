//! `peers doctor` names each fault of a broken set-up and passes on a good one.

mod common;

use common::{peers, project};
use peers_testkit::{BrokerProcess, TestEnv, bin};

#[test]
fn doctor_names_each_fault_of_a_broken_set_up() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    // A secret readable by others, no broker running, hooks pointing at a missing binary.
    let secret = peers_core::paths::secret_file(&env.state_dir);
    peers_core::paths::ensure_secret(&env.state_dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    peers(&env, &cwd, &["install"]).ok();
    let settings = env.home.join(".claude/settings.json");
    let text = std::fs::read_to_string(&settings).unwrap();
    let deliver = bin("peers-deliver").display().to_string();
    std::fs::write(
        &settings,
        text.replace(&deliver, "/nonexistent/bin/peers-deliver"),
    )
    .unwrap();

    let out = peers(&env, &cwd, &["doctor"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let s = &out.stdout;
    assert!(s.contains("✗ broker: not running"), "{s}");
    assert!(s.contains("peers broker start"), "{s}");
    assert!(s.contains("✗ secret") && s.contains("mode 0644"), "{s}");
    assert!(
        s.contains(&format!("chmod 600 {}", secret.display())),
        "{s}"
    );
    assert!(
        s.contains("✗ hooks") && s.contains("/nonexistent/bin/peers-deliver, which does not exist"),
        "{s}"
    );
    assert!(
        s.contains("✓ binaries") && s.contains("✓ mcp server"),
        "{s}"
    );

    // The same as JSON.
    let out = peers(&env, &cwd, &["doctor", "--json"]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(v["ok"], false);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"broker") && failed.contains(&"secret") && failed.contains(&"hooks"));

    // Nothing installed at all: hooks and MCP server are named.
    let bare = TestEnv::new();
    let out = peers(&bare, &project(&bare, "p"), &["doctor"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("✗ hooks: no peers hooks"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("✗ mcp server"), "{}", out.stdout);
    assert!(out.stdout.contains("run `peers install`"), "{}", out.stdout);
}

#[tokio::test]
async fn doctor_passes_on_a_good_set_up() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    let _broker = BrokerProcess::start(&env).await;
    peers(&env, &cwd, &["install"]).ok();
    let out = peers(&env, &cwd, &["doctor"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    for line in [
        "✓ binaries",
        "✓ broker",
        "✓ secret",
        "✓ hooks",
        "✓ mcp server",
    ] {
        assert!(out.stdout.contains(line), "{line}:\n{}", out.stdout);
    }
    assert!(out.stdout.contains(peers_core::VERSION));
    assert!(!out.stdout.contains('✗'), "{}", out.stdout);
}
