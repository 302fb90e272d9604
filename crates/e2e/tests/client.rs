//! What the client itself does, with tiny shell hooks and no peers binaries: the facts
//! `docs/CLAUDE_CODE.md` records and the hook relies on. Each prints what the model and the
//! human were shown (`E2E_DUMP=1` for every request).

use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use peers_testkit::claude::{
    FakeApi, Interactive, Reply, SessionSpec, Step, claude_or_skip, serial,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// What each test here starts with: the serial lock, the client and a temp dir; `None`,
/// after saying SKIPPED, without a Claude Code CLI.
fn start(test: &str) -> Option<(MutexGuard<'static, ()>, PathBuf, tempfile::TempDir)> {
    let serial = serial();
    let claude = claude_or_skip(test)?;
    Some((serial, claude, tempdir()))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("peers-e2e-")
        .tempdir()
        .unwrap()
}

fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

fn spec(claude: &Path, tmp: &Path, api: &FakeApi, hooks: Value) -> SessionSpec {
    let mut spec = SessionSpec::new(
        "client",
        claude,
        &tmp.join("proj"),
        &tmp.join("session"),
        &api.url(),
    );
    spec.settings = Some(json!({ "hooks": hooks }));
    spec.allowed_tools = vec!["Bash".into()];
    spec
}

/// An `asyncRewake` hook on SessionStart is armed in an interactive session that never got
/// a prompt, and its exit 2 wakes the model (the fact the SessionStart waiter rests on).
#[test]
fn session_start_async_rewake_wakes_a_never_prompted_session() {
    let name = "session_start_async_rewake_wakes_a_never_prompted_session";
    let Some((_serial, claude, tmp)) = start(name) else {
        return;
    };
    let go = tmp.path().join("go");
    let ran = tmp.path().join("ran");
    let hook = script(
        &tmp.path().join("waiter.sh"),
        &format!(
            "cat >/dev/null\necho \"$CLAUDE_CODE_SESSION_ATTENDED\" > '{ran}'\n\
             while [ ! -e '{go}' ]; do sleep 0.05; done\n\
             printf 'wake-marker-4712 from the SessionStart waiter' >&2\nexit 2\n",
            ran = ran.display(),
            go = go.display()
        ),
    );
    let api = FakeApi::start("client", vec![Step::text("woken and read it")]);
    let hooks = json!({"SessionStart": [{"hooks": [{
        "type": "command", "command": hook.to_string_lossy(),
        "asyncRewake": true, "timeout": 600,
    }]}]});
    let mut s = Interactive::start(&spec(&claude, tmp.path(), &api, hooks)).unwrap();
    // Nobody types anything.
    assert!(api.wait_quiet(Duration::from_secs(2), WAIT));
    assert!(
        api.main_requests().is_empty(),
        "a main-loop request before any prompt:\n{}",
        api.transcript()
    );
    assert_eq!(
        std::fs::read_to_string(&ran).ok().as_deref().map(str::trim),
        Some("1"),
        "the SessionStart asyncRewake hook did not run (or not as an attended session)"
    );
    let t0 = Instant::now();
    std::fs::write(&go, "").unwrap();
    let woke = api
        .wait_for_text(WAIT, "wake-marker-4712")
        .unwrap_or_else(|| panic!("never woken:\n{}\n{}", api.transcript(), s.screen()));
    let latency = woke.at.saturating_duration_since(t0);
    api.wait_for(WAIT, |r| r.reply == Some(Reply::text("woken and read it")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let screen = s.scrollback(200);
    api.dump_if_asked();
    eprintln!(
        "[{name}] woken after {latency:?}; the model was shown:\n{}\n--- screen ---\n{screen}",
        woke.latest_text()
    );
    s.stop();
    peers_testkit::claude::report_latency("client", "session_start_rewake", latency);
    assert!(
        latency < Duration::from_secs(2),
        "woken only after {latency:?}"
    );
}

/// One Stop-hook output form tried in its own turn: what came of it.
#[derive(Debug)]
struct StopOutcome {
    form: &'static str,
    /// A main-loop request came after the model's final answer (the turn went on).
    continued: bool,
    /// The marker reached the model's context (in any later request).
    in_context: bool,
    /// What the model was shown in the request after the Stop, if any.
    shown: String,
    /// The screen lines that changed during this turn.
    screen: String,
}

/// The Stop output forms: the classic block, `additionalContext` (accepted on Stop since
/// 2.1.163 per the changelog), and combinations. Records for each whether the turn goes on,
/// whether the text reaches the model, and what the human's screen shows.
#[test]
fn stop_hook_output_forms() {
    let name = "stop_hook_output_forms";
    let Some((_serial, claude, tmp)) = start(name) else {
        return;
    };
    let mode = tmp.path().join("mode");
    let hook = script(
        &tmp.path().join("stop.sh"),
        &format!(
            "cat >/dev/null\nm='{m}'\n[ -e \"$m\" ] || exit 0\n\
             code=$(head -n1 \"$m\"); out=$(tail -n +2 \"$m\"); rm -f \"$m\"\n\
             if [ \"$code\" = 2 ]; then printf '%s' \"$out\" >&2; exit 2; fi\n\
             printf '%s' \"$out\"\nexit 0\n",
            m = mode.display()
        ),
    );
    // (name, exit code, output, the marker that must reach the model)
    let forms: Vec<(&'static str, i32, Value, &'static str)> = vec![
        (
            "block",
            0,
            json!({"decision": "block", "reason": "stop-marker-block"}),
            "stop-marker-block",
        ),
        (
            "additionalContext",
            0,
            json!({"hookSpecificOutput": {"hookEventName": "Stop",
                   "additionalContext": "stop-marker-ctx"}}),
            "stop-marker-ctx",
        ),
        (
            "additionalContext multi-line",
            0,
            json!({"hookSpecificOutput": {"hookEventName": "Stop",
                   "additionalContext": "stop-marker-multi first line\nsecond line\n<peer-message from=\"x\">third</peer-message>"}}),
            "stop-marker-multi",
        ),
        (
            "block+suppressOutput",
            0,
            json!({"decision": "block", "reason": "stop-marker-suppressed",
                   "suppressOutput": true}),
            "stop-marker-suppressed",
        ),
        (
            "block+additionalContext",
            0,
            json!({"decision": "block", "reason": "stop-marker-both",
                   "hookSpecificOutput": {"hookEventName": "Stop",
                   "additionalContext": "stop-marker-both-ctx"}}),
            "stop-marker-both-ctx",
        ),
        (
            "continue+additionalContext",
            0,
            json!({"continue": true, "suppressOutput": true,
                   "hookSpecificOutput": {"hookEventName": "Stop",
                   "additionalContext": "stop-marker-cont"}}),
            "stop-marker-cont",
        ),
        ("exit2", 2, json!("stop-marker-exit2"), "stop-marker-exit2"),
    ];
    let api = FakeApi::start("client", vec![]);
    api.set_fallback(Step::dynamic(|ctx| {
        Reply::text(format!("answer {}", ctx.index))
    }));
    let hooks = json!({"Stop": [{"hooks": [{
        "type": "command", "command": hook.to_string_lossy(), "timeout": 10,
    }]}]});
    let mut s = Interactive::start(&spec(&claude, tmp.path(), &api, hooks)).unwrap();
    let mut outcomes = vec![];
    for (i, (form, code, out, marker)) in forms.iter().enumerate() {
        let out = match out {
            Value::String(t) => t.clone(),
            v => v.to_string(),
        };
        std::fs::write(&mode, format!("{code}\n{out}")).unwrap();
        s.keys(&["C-l"]).ok();
        let before_screen = s.scrollback(300);
        let n = api.main_requests().len();
        s.submit(&format!("probe {i} {form}")).unwrap();
        api.wait_for(WAIT, |r| {
            r.main_loop && r.latest_text().contains(&format!("probe {i} {form}"))
        })
        .unwrap_or_else(|| panic!("turn {i} never ran:\n{}", s.screen()));
        assert!(api.wait_quiet(Duration::from_secs(3), WAIT));
        std::thread::sleep(Duration::from_millis(500));
        let after: Vec<_> = api.main_requests().into_iter().skip(n).collect();
        let continued = after.len() > 1;
        let in_context = after.iter().skip(1).any(|r| r.all_text().contains(marker));
        let shown = after.get(1).map(|r| r.latest_text()).unwrap_or_default();
        let screen_now = s.scrollback(300);
        let old: std::collections::HashSet<&str> = before_screen.lines().collect();
        let screen = screen_now
            .lines()
            .filter(|l| !l.trim().is_empty() && !old.contains(l))
            .collect::<Vec<_>>()
            .join("\n");
        outcomes.push(StopOutcome {
            form,
            continued,
            in_context,
            shown,
            screen,
        });
    }
    api.dump_if_asked();
    for o in &outcomes {
        eprintln!(
            "===== [{name}] form {}: continued={} in_context={}\n--- shown next ---\n{}\n--- screen ---\n{}\n",
            o.form, o.continued, o.in_context, o.shown, o.screen
        );
    }
    s.stop();
    let get = |f: &str| outcomes.iter().find(|o| o.form == f).unwrap();
    // Every form continues the turn and reaches the model.
    for o in &outcomes {
        assert!(o.continued && o.in_context, "{o:#?}");
    }
    // The classic block: shown to the model twice, as feedback and as a "blocking error", and
    // the human's screen calls it a problem.
    let block = get("block");
    assert!(
        block.shown.contains("Stop hook feedback:")
            && block.shown.contains("Stop hook blocking error"),
        "{block:#?}"
    );
    assert!(
        block.screen.contains("Stop hook reported a problem"),
        "{block:#?}"
    );
    // additionalContext: once, as "Stop hook additional context: …"; the human sees "Stop
    // hook says: …" and no problem.
    for f in ["additionalContext", "additionalContext multi-line"] {
        let o = get(f);
        assert!(
            o.shown
                .contains("Stop hook additional context: stop-marker")
                && !o.shown.contains("blocking error")
                && !o.shown.contains("Stop hook feedback"),
            "{o:#?}"
        );
        assert!(o.screen.contains("Stop hook says: stop-marker"), "{o:#?}");
        assert!(!o.screen.to_lowercase().contains("problem"), "{o:#?}");
    }
    let multi = get("additionalContext multi-line");
    assert!(
        multi.shown.contains("second line\n<peer-message"),
        "{multi:#?}"
    );
}

/// A Stop hook that answers `additionalContext` at every Stop: how often the client goes on,
/// and what `stop_hook_active` says on the Stops that follow (the hook keeps its own count of
/// consecutive continuations below the client's cap).
#[test]
fn stop_additional_context_streak() {
    let name = "stop_additional_context_streak";
    let Some((_serial, claude, tmp)) = start(name) else {
        return;
    };
    let on = tmp.path().join("on");
    let count = tmp.path().join("count");
    let log = tmp.path().join("stdin.log");
    let hook = script(
        &tmp.path().join("stop.sh"),
        &format!(
            "in=$(cat)\nprintf '%s\\n' \"$in\" >> '{log}'\n[ -e '{on}' ] || exit 0\n\
             n=$(cat '{count}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{count}'\n\
             [ $n -le 12 ] || exit 0\n\
             printf '{{\"hookSpecificOutput\":{{\"hookEventName\":\"Stop\",\"additionalContext\":\"streak-%s\"}}}}' $n\n",
            log = log.display(),
            on = on.display(),
            count = count.display()
        ),
    );
    let api = FakeApi::start("client", vec![]);
    api.set_fallback(Step::dynamic(|ctx| {
        Reply::text(format!("answer {}", ctx.index))
    }));
    let hooks = json!({"Stop": [{"hooks": [{
        "type": "command", "command": hook.to_string_lossy(), "timeout": 10,
    }]}]});
    let mut s = Interactive::start(&spec(&claude, tmp.path(), &api, hooks)).unwrap();
    std::fs::write(&on, "").unwrap();
    s.submit("go on as long as the hook says").unwrap();
    api.wait_for(WAIT, |r| r.main_loop).unwrap();
    assert!(api.wait_quiet(Duration::from_secs(4), WAIT));
    let shown: Vec<String> = api
        .main_requests()
        .iter()
        .map(|r| r.latest_text())
        .collect();
    let stdin = std::fs::read_to_string(&log).unwrap_or_default();
    let active: Vec<bool> = stdin
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["stop_hook_active"].as_bool().unwrap_or(false))
        .collect();
    let screen = s.scrollback(300);
    api.dump_if_asked();
    eprintln!(
        "[{name}] {} main requests; stop_hook_active per Stop: {active:?}\n--- screen ---\n{screen}",
        shown.len()
    );
    for (i, t) in shown.iter().enumerate() {
        eprintln!(
            "--- request {i} ---\n{}",
            peers_testkit::claude::shown::truncate(t, 400)
        );
    }
    s.stop();
    // A continuation by additionalContext counts as a block: the next Stop says
    // stop_hook_active, and the client's cap (8 by default) ends the streak; the output of the
    // Stop past the cap never reaches the model.
    assert_eq!(active.first(), Some(&false), "{active:?}");
    assert!(
        active.len() > 2 && active[1..].iter().all(|a| *a),
        "{active:?}"
    );
    let reached = (1..=12)
        .filter(|n| shown.iter().any(|t| t.contains(&format!("streak-{n}\n"))))
        .count();
    eprintln!("[{name}] {reached} continuations reached the model");
    assert_eq!(reached, 8, "the client's default cap is 8 continuations");
    assert!(screen.contains("consecutive times"), "{screen}");
}
