//! `peers token create|list|revoke` against a real broker: the token is printed once, works
//! for a post to the listed recipient, is listed without the token, and is refused after a
//! revoke.

use peers_core::BrokerClient;
use peers_core::wire::SendRequest;

use crate::util::{assert_contains, peers, with_web};

#[tokio::test]
async fn create_list_revoke() {
    let (env, cwd, _broker, _claude, _web, _web_client) = with_web().await;
    let made = peers(
        &env,
        &cwd,
        &[
            "token",
            "create",
            "ci",
            "--post-to",
            "web",
            "--expires",
            "30d",
        ],
    )
    .ok();
    let token = made.stdout.trim().to_string();
    assert!(token.starts_with("peers_script_"), "{}", made.stdout);
    assert_contains(&made.stderr, "shown only now");

    let script = BrokerClient::new(&env.url(), Some(token.clone()));
    let post = |to: &str| SendRequest {
        to: to.into(),
        message: "build green".into(),
        reply_to: None,
        scope: None,
        tags: vec![],
    };
    script.send(&post("web")).await.expect("post to web");

    let list = peers(&env, &cwd, &["token", "list"]).ok().stdout;
    assert_contains(&list, "ci");
    assert_contains(&list, "may post to web");
    assert_contains(&list, "expires in");
    assert_contains(&list, "last used");
    assert!(!list.contains(&token), "{list}");

    peers(&env, &cwd, &["token", "revoke", "ci"]).ok();
    let e = script.send(&post("web")).await.expect_err("revoked");
    assert_eq!(e.status(), Some(401), "{e}");
    let again = peers(&env, &cwd, &["token", "revoke", "ci"]);
    assert_ne!(again.code, 0);
    assert_contains(&again.stderr, "no script token");
}
