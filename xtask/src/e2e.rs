//! `cargo xtask e2e`: the end-to-end scenarios against the real Claude Code CLI.
//!
//! Makes sure the pinned CLI is there, builds the workspace binaries (the sessions run the
//! real `peers-mcp`, `peers-deliver`, `peers-broker`), builds the `peers-e2e` tests, then runs
//! every test on its own (one claude scenario at a time) and prints, per scenario, pass/fail,
//! its duration and the send-to-context latencies it measured (`E2E-LATENCY` lines). Each
//! test's whole output goes to `target/e2e-logs/<test>.log`.
//!
//! Arguments filter the tests by substring (`cargo xtask e2e s4 smoke`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{claude, root, run_cmd};

/// One test binary of `peers-e2e` and one test in it.
struct Case {
    exe: PathBuf,
    name: String,
}

enum Outcome {
    Passed,
    Failed,
    Skipped,
    Ignored,
}

struct Ran {
    case: Case,
    outcome: Outcome,
    took: Duration,
    latencies: Vec<String>,
    log: PathBuf,
}

pub fn run(args: &[String]) -> Result<()> {
    let bin = claude::ensure().context("the end-to-end tests need the Claude Code CLI")?;
    let version = claude::installed_version(&bin).unwrap_or_else(|| "unknown version".into());
    eprintln!("xtask e2e: Claude Code CLI {version}: {}", bin.display());
    // SAFETY: single-threaded here; set before spawning the test processes.
    unsafe { std::env::set_var(claude::ENV_BIN, &bin) };
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("xtask e2e: WARNING: tmux is missing; the interactive scenarios will fail");
    }

    run_cmd(crate::cargo_cmd().args(["build", "--workspace", "--bins"]))?;
    let exes = test_executables()?;
    let mut cases = vec![];
    for exe in exes {
        for name in list_tests(&exe)? {
            if args.is_empty() || args.iter().any(|a| name.contains(a.as_str())) {
                cases.push(Case {
                    exe: exe.clone(),
                    name,
                });
            }
        }
    }
    if cases.is_empty() {
        bail!("no end-to-end test matches {args:?}");
    }
    let logs = root().join("target").join("e2e-logs");
    std::fs::create_dir_all(&logs)?;

    let mut results = vec![];
    for case in cases {
        eprintln!("xtask e2e: running {} …", case.name);
        let r = run_case(case, &logs)?;
        let word = match r.outcome {
            Outcome::Passed => "PASS",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "SKIPPED",
            Outcome::Ignored => "IGNORED",
        };
        eprintln!(
            "xtask e2e: {word} {} ({:.1} s)",
            r.case.name,
            r.took.as_secs_f64()
        );
        if matches!(r.outcome, Outcome::Failed) {
            let text = std::fs::read_to_string(&r.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("----- last lines of {} -----", r.log.display());
            for l in tail {
                eprintln!("{l}");
            }
            eprintln!("-----");
        }
        results.push(r);
    }

    println!();
    println!("end-to-end results (Claude Code {version}):");
    println!("{:<56} {:<8} {:>8}  latency", "scenario", "result", "time");
    let mut failed = 0;
    for r in &results {
        let word = match r.outcome {
            Outcome::Passed => "pass",
            Outcome::Failed => {
                failed += 1;
                "FAIL"
            }
            Outcome::Skipped => "skipped",
            Outcome::Ignored => "ignored",
        };
        let lat = if r.latencies.is_empty() {
            "-".to_string()
        } else {
            r.latencies.join(", ")
        };
        println!(
            "{:<56} {:<8} {:>7.1}s  {lat}",
            r.case.name,
            word,
            r.took.as_secs_f64()
        );
    }
    println!("logs: {}", logs.display());
    if failed > 0 {
        bail!("{failed} end-to-end scenario(s) failed");
    }
    Ok(())
}

/// Builds the `peers-e2e` tests and returns their executables.
fn test_executables() -> Result<Vec<PathBuf>> {
    let out = crate::cargo_cmd()
        .args([
            "test",
            "-p",
            "peers-e2e",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the end-to-end tests failed");
    }
    let mut exes = vec![];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"") {
            continue;
        }
        if let Some(exe) = json_string_after(line, "\"executable\":\"") {
            let p = PathBuf::from(exe);
            if !exes.contains(&p) {
                exes.push(p);
            }
        }
    }
    if exes.is_empty() {
        bail!("cargo built no test executables for peers-e2e");
    }
    // The smoke test (the harness alone) first, then the scenarios.
    exes.sort_by_key(|p| !p.to_string_lossy().contains("/smoke-"));
    Ok(exes)
}

/// The JSON string value that starts right after `key` in `line` (no escapes expected in
/// paths; `\\` and `\"` are undone anyway).
fn json_string_after(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// The tests in one test executable (`--list`).
fn list_tests(exe: &Path) -> Result<Vec<String>> {
    let out = Command::new(exe)
        .args(["--list", "--format", "terse"])
        .output()
        .with_context(|| format!("cannot list tests of {}", exe.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

fn run_case(case: Case, logs: &Path) -> Result<Ran> {
    let log = logs.join(format!("{}.log", case.name.replace("::", "-")));
    let file = std::fs::File::create(&log)?;
    let t0 = Instant::now();
    let status = Command::new(&case.exe)
        .args([
            case.name.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir(root().join("crates").join("e2e"))
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot run {}", case.exe.display()))?;
    let took = t0.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let latencies = text
        .lines()
        .filter_map(|l| l.strip_prefix("E2E-LATENCY "))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            match parts.as_slice() {
                [_, what, ms] => format!("{what} {ms} ms"),
                _ => l.to_string(),
            }
        })
        .collect();
    let outcome = if !status.success() {
        Outcome::Failed
    } else if text.contains("E2E-SKIPPED") {
        Outcome::Skipped
    } else if text.contains(" 1 ignored") && !text.contains(" 1 passed") {
        Outcome::Ignored
    } else {
        Outcome::Passed
    };
    Ok(Ran {
        case,
        outcome,
        took,
        latencies,
        log,
    })
}
