//! A client configured with several brokers (`broker_urls`) fails over between them: two real
//! brokers, each on its own state dir (so its own SQLite), and a dead URL in front of them.

use peers_testkit::{BrokerProcess, TestEnv, fake_claude, free_port};

use crate::util::{assert_contains, peer_client, peers, project, register};

const TOKEN: &str = "hub-token-for-the-failover-test";

fn hub_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.set("PEERS_TOKEN", TOKEN);
    env
}

#[tokio::test]
async fn send_and_peers_fail_over_from_a_dead_broker_to_a_live_one() {
    let (a_env, b_env) = (hub_env(), hub_env());
    let mut a = BrokerProcess::start(&a_env).await;
    let _b = BrokerProcess::start(&b_env).await;
    let claude = fake_claude();
    let web_a = register(&a_env, &claude, &project(&a_env, "web")).await;
    let web_b = register(&b_env, &claude, &project(&b_env, "web")).await;

    // The human's machine: its own state dir, the brokers only in its config.
    let me = TestEnv::new();
    let cwd = project(&me, "here");
    let dead = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(
        &me.config_file,
        format!(
            "broker_urls = [\"{dead}\", \"{}\", \"{}\"]\ntoken = \"{TOKEN}\"\n",
            a_env.url(),
            b_env.url()
        ),
    )
    .unwrap();

    let list = peers(&me, &cwd, &["peers", "--json"]).ok().json();
    assert_eq!(list["peers"][0]["name"], "web", "{list}");
    let sent = peers(
        &me,
        &cwd,
        &["send", "web", "via the first live one", "--json"],
    )
    .ok()
    .json();
    assert_eq!(sent["to_peer_id"], web_a.peer_id.as_str(), "{sent}");
    let inbox_a = peer_client(&a_env, &web_a).peek().await.unwrap();
    assert_eq!(inbox_a.messages.len(), 1);

    // `peers status` names every broker and whether it answers.
    let status = peers(&me, &cwd, &["status"]).ok().stdout;
    assert_contains(&status, &format!("{dead}  does not answer"));
    assert_contains(&status, &format!("{}  answers", a_env.url()));
    assert_contains(&status, &format!("{}  answers", b_env.url()));
    // So does `peers doctor` (its other checks may fail here: nothing is installed).
    let doctor = peers(&me, &cwd, &["doctor"]).stdout;
    assert_contains(&doctor, &format!("{dead} does not answer"));
    assert_contains(&doctor, &format!("answers at {}", a_env.url()));
    assert_contains(&doctor, &format!("answers at {}", b_env.url()));
    assert_contains(&doctor, "the hub accepts the token");

    // The first live broker goes away: the next one takes the mail.
    a.kill9();
    let sent = peers(&me, &cwd, &["send", "web", "via the second", "--json"])
        .ok()
        .json();
    assert_eq!(sent["to_peer_id"], web_b.peer_id.as_str(), "{sent}");
    let inbox_b = peer_client(&b_env, &web_b).peek().await.unwrap();
    assert_eq!(inbox_b.messages.len(), 1);
    let status = peers(&me, &cwd, &["status", "--json"]).ok().json();
    let answers: Vec<bool> = status["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["answers"].as_bool().unwrap())
        .collect();
    assert_eq!(answers, [false, false, true], "{status}");
}

#[tokio::test]
async fn an_http_error_is_not_failed_over() {
    // The first broker answers and refuses the token (401): that is the answer, the second
    // broker (which would accept it) is not asked, and nothing is sent there.
    let mut wrong = TestEnv::new();
    wrong.set("PEERS_TOKEN", "another-token");
    let _w = BrokerProcess::start(&wrong).await;
    let b_env = hub_env();
    let _b = BrokerProcess::start(&b_env).await;
    let claude = fake_claude();
    let web_b = register(&b_env, &claude, &project(&b_env, "web")).await;

    let me = TestEnv::new();
    let cwd = project(&me, "here");
    std::fs::write(
        &me.config_file,
        format!(
            "broker_urls = [\"{}\", \"{}\"]\ntoken = \"{TOKEN}\"\n",
            wrong.url(),
            b_env.url()
        ),
    )
    .unwrap();
    let r = peers(&me, &cwd, &["send", "web", "must not arrive"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_contains(&r.stderr, "refused the token");
    let inbox_b = peer_client(&b_env, &web_b).peek().await.unwrap();
    assert!(inbox_b.messages.is_empty());
}

#[tokio::test]
async fn both_broker_url_and_broker_urls_is_a_clear_error() {
    let me = TestEnv::new();
    let cwd = project(&me, "here");
    std::fs::write(
        &me.config_file,
        "broker_url = \"http://127.0.0.1:9\"\nbroker_urls = [\"http://127.0.0.1:10\"]\n",
    )
    .unwrap();
    let r = peers(&me, &cwd, &["peers"]);
    assert_ne!(r.code, 0);
    assert_contains(&r.stderr, "both broker_url and broker_urls are set");
}
