//! `peers demo` runs the real binaries and shows mail both ways, then cleans up.

use std::time::{Duration, Instant};

use crate::util::{peers_cmd, project};
use peers_testkit::TestEnv;

#[test]
fn demo_shows_mail_both_ways_and_cleans_up() {
    let env = TestEnv::new();
    let cwd = project(&env, "p");
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let started = Instant::now();
    let out: crate::util::Run = peers_cmd(&env, &cwd, &["demo"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap()
        .into();
    let s = &out.stdout;
    assert_eq!(out.code, 0, "{s}\n{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(60));
    // web's model was shown api's mail (PostToolUse), api's model web's reply (Stop), and web
    // the human's note (UserPromptSubmit).
    assert!(s.contains("<peer-message id=\"1\" from=\"api@"), "{s}");
    assert!(
        s.contains("<peer-message id=\"2\" from=\"web@") && s.contains("re=\"1\""),
        "{s}"
    );
    assert!(s.contains("<peer-message id=\"3\" from=\"you@"), "{s}");
    assert!(s.contains("delivered via PostToolUse"), "{s}");
    assert!(s.contains("delivered via Stop"), "{s}");
    assert!(s.contains("delivered via UserPromptSubmit"), "{s}");
    // Nothing is left behind.
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        !env.state_dir.exists(),
        "the demo never touches the configured state dir"
    );
}
