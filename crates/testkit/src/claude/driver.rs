//! Starts the real Claude Code CLI against a [`FakeApi`](crate::claude::FakeApi): headless (`-p`) as a
//! child process, interactive under a private tmux server. Everything is stopped on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::tmux::Tmux;

/// The variable naming the Claude Code binary to test against.
pub const ENV_BIN: &str = "PEERS_CLAUDE_BIN";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/e2e sits two levels below the workspace root")
        .to_path_buf()
}

/// The Claude Code binary: `$PEERS_CLAUDE_BIN`, else the pinned copy `cargo xtask` installs
/// under `target/claude-code`.
pub fn claude_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_BIN).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = workspace_root()
        .join("target/claude-code/node_modules/@anthropic-ai/claude-code-linux-x64/claude");
    p.is_file().then_some(p)
}

/// The Claude Code binary, or a loud SKIPPED line naming `test` and `None`.
pub fn claude_or_skip(test: &str) -> Option<PathBuf> {
    let found = claude_bin();
    if found.is_none() {
        let msg = format!(
            "SKIPPED {test}: no Claude Code CLI ({ENV_BIN} unset or missing, and no \
             target/claude-code install). Run `cargo xtask e2e` or set {ENV_BIN}."
        );
        let bar = "!".repeat(msg.len().min(100));
        // Straight to the stderr fd, past libtest's output capture, so it shows even when
        // the (skipped) test passes.
        use std::io::Write;
        let _ = std::io::stderr().write_all(format!("\n{bar}\n{msg}\n{bar}\n").as_bytes());
        println!("E2E-SKIPPED {test}");
    }
    found
}

/// The claude runs are heavy: tests in one binary take this lock to run one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

type EnvVars = Vec<(String, String)>;

/// Everything needed to start one Claude Code session.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// A label for logs and file names.
    pub label: String,
    pub claude: PathBuf,
    /// The project directory the session runs in (created if missing).
    pub cwd: PathBuf,
    /// A directory for this session's HOME, settings and logs (created if missing).
    pub dir: PathBuf,
    /// `ANTHROPIC_BASE_URL`.
    pub api_url: String,
    /// The whole `--settings` file, if any.
    pub settings: Option<Value>,
    /// The whole `--mcp-config` file, if any.
    pub mcp_config: Option<Value>,
    /// `--allowedTools`.
    pub allowed_tools: Vec<String>,
    /// Extra environment (the test's `PEERS_*` variables, …). `HOME` here is ignored: every
    /// session gets its own under `dir`.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
}

impl SessionSpec {
    pub fn new(label: &str, claude: &Path, cwd: &Path, dir: &Path, api_url: &str) -> SessionSpec {
        SessionSpec {
            label: label.to_string(),
            claude: claude.to_path_buf(),
            cwd: cwd.to_path_buf(),
            dir: dir.to_path_buf(),
            api_url: api_url.to_string(),
            settings: None,
            mcp_config: None,
            allowed_tools: vec![],
            env: vec![],
            args: vec![],
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// Creates the directories, the pre-seeded `~/.claude.json` and the config files; returns
    /// the full argument list (after the binary) and the environment.
    fn prepare(&self) -> Result<(Vec<String>, EnvVars)> {
        std::fs::create_dir_all(&self.cwd)?;
        let home = self.home();
        std::fs::create_dir_all(home.join(".claude"))?;
        let cwd = std::fs::canonicalize(&self.cwd)?;
        let mut projects = serde_json::Map::new();
        projects.insert(
            cwd.to_string_lossy().into_owned(),
            json!({"hasTrustDialogAccepted": true, "hasCompletedProjectOnboarding": true}),
        );
        std::fs::write(
            home.join(".claude.json"),
            serde_json::to_vec_pretty(&json!({
                "hasCompletedOnboarding": true,
                "projects": projects,
            }))?,
        )?;
        let mut args = vec![];
        if let Some(s) = &self.settings {
            let f = self.dir.join("settings.json");
            std::fs::write(&f, serde_json::to_vec_pretty(s)?)?;
            args.push("--settings".into());
            args.push(f.to_string_lossy().into_owned());
        }
        if let Some(m) = &self.mcp_config {
            let f = self.dir.join("mcp.json");
            std::fs::write(&f, serde_json::to_vec_pretty(m)?)?;
            args.push("--mcp-config".into());
            args.push(f.to_string_lossy().into_owned());
        }
        if !self.allowed_tools.is_empty() {
            args.push("--allowedTools".into());
            args.push(self.allowed_tools.join(" "));
        }
        args.extend(self.args.iter().cloned());

        let mut env: Vec<(String, String)> = vec![];
        for k in ["PATH", "LANG", "USER", "LOGNAME", "TZ"] {
            if let Ok(v) = std::env::var(k) {
                env.push((k.into(), v));
            }
        }
        if !env.iter().any(|(k, _)| k == "LANG") {
            env.push(("LANG".into(), "C.UTF-8".into()));
        }
        env.push(("SHELL".into(), "/bin/bash".into()));
        env.push(("TERM".into(), "xterm-256color".into()));
        env.extend(self.env.iter().filter(|(k, _)| k != "HOME").cloned());
        env.push(("HOME".into(), home.to_string_lossy().into_owned()));
        env.push(("ANTHROPIC_BASE_URL".into(), self.api_url.clone()));
        env.push(("ANTHROPIC_API_KEY".into(), "sk-test".into()));
        env.push(("DISABLE_AUTOUPDATER".into(), "1".into()));
        env.push(("DISABLE_ERROR_REPORTING".into(), "1".into()));
        env.push(("DISABLE_TELEMETRY".into(), "1".into()));
        Ok((args, env))
    }
}

/// The output of a finished headless run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// A headless (`claude -p`) session. Killed, with its whole process group, on drop.
pub struct Headless {
    pub label: String,
    child: Option<Child>,
    pid: u32,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

impl Headless {
    /// Starts `claude -p <prompt>`.
    pub fn start(spec: &SessionSpec, prompt: &str) -> Result<Headless> {
        std::fs::create_dir_all(&spec.dir)?;
        let (args, env) = spec.prepare()?;
        let stdout = spec.dir.join("stdout.txt");
        let stderr = spec.dir.join("stderr.txt");
        let mut cmd = Command::new(&spec.claude);
        cmd.arg("-p")
            .arg(prompt)
            .args(&args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", spec.claude.display()))?;
        Ok(Headless {
            label: spec.label.clone(),
            pid: child.id(),
            child: Some(child),
            stdout,
            stderr,
            started: Instant::now(),
        })
    }

    /// The claude process id (the peer's `claude_pid`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits for the run to end, killing it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<RunOutput> {
        let deadline = Instant::now() + timeout;
        let mut status = None;
        while let Some(child) = self.child.as_mut() {
            if let Some(s) = child.try_wait()? {
                status = Some(s);
                self.child = None;
                break;
            }
            if Instant::now() >= deadline {
                self.kill();
                let out = self.output(None);
                bail!(
                    "[{}] claude -p still running after {timeout:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                    self.label,
                    out.stdout,
                    out.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Hooks and MCP servers left in the group go too.
        kill_group(self.pid, libc::SIGKILL);
        Ok(self.output(status))
    }

    fn output(&self, status: Option<ExitStatus>) -> RunOutput {
        RunOutput {
            status,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Kills the session and its process group.
    pub fn kill(&mut self) {
        kill_group(self.pid, libc::SIGTERM);
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_group(self.pid, libc::SIGKILL);
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) on a process group this module created with process_group(0).
        unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    }
}

/// An interactive session in a private tmux server ([`Tmux`], its own socket under the
/// session dir). The tmux server, claude and its process group are stopped on drop.
pub struct Interactive {
    pub label: String,
    tmux: Tmux,
    pid: u32,
    stopped: bool,
}

impl Interactive {
    /// Starts claude interactively in tmux and gets it past the API-key question, up to the
    /// prompt. Returns once the input box is ready.
    pub fn start(spec: &SessionSpec) -> Result<Interactive> {
        std::fs::create_dir_all(&spec.dir)?;
        let (args, env) = spec.prepare()?;
        let tmux = Tmux::start(
            &spec.label,
            &spec.dir,
            &spec.cwd,
            &env,
            &spec.claude,
            &args,
            (160, 50),
        )?;
        // The pane runs `sh launch.sh`, which execs env, which execs claude: same pid.
        let pid = tmux.pane_pid()?;
        let it = Interactive {
            label: spec.label.clone(),
            tmux,
            pid,
            stopped: false,
        };
        it.pass_startup_screens(Duration::from_secs(60))?;
        Ok(it)
    }

    /// The claude process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        self.tmux.screen()
    }

    /// The screen and up to `lines` lines of scrollback above it.
    pub fn scrollback(&self, lines: u32) -> String {
        self.tmux.scrollback(lines)
    }

    /// Sends tmux key names (`Up`, `Enter`, `C-c`) or literal text (`-l`).
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        self.tmux.keys(keys)
    }

    /// Types `text` and presses Enter.
    pub fn submit(&self, text: &str) -> Result<()> {
        self.tmux.type_text(text)?;
        std::thread::sleep(Duration::from_millis(300));
        self.keys(&["Enter"])
    }

    /// Waits until the screen satisfies `pred`; returns the screen, or an error with the last
    /// screen after `timeout`.
    pub fn wait_screen(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        self.tmux.wait_screen(timeout, pred)
    }

    fn pass_startup_screens(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut answered_key = false;
        loop {
            let s = self.screen();
            let lower = s.to_lowercase();
            if !answered_key && lower.contains("api key") && lower.contains("no") {
                // "Do you want to use this API key?" with "No" preselected.
                self.keys(&["Up"])?;
                std::thread::sleep(Duration::from_millis(200));
                self.keys(&["Enter"])?;
                answered_key = true;
                eprintln!("[{}] answered the API-key question (Up Enter)", self.label);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            if is_prompt_ready(&s) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "[{}] claude did not reach its prompt within {timeout:?}:\n{s}",
                    self.label
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops claude (SIGTERM, then SIGKILL to its group) and the tmux server.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.pid > 1 {
            // SAFETY: signals to the claude process this session started.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && process_exists(self.pid) {
                std::thread::sleep(Duration::from_millis(50));
            }
            kill_group(self.pid, libc::SIGKILL);
        }
        self.tmux.stop();
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the screen shows claude's input box waiting for a prompt (2.1.328 draws it as a
/// `❯ ` line between two rules; older builds said `? for shortcuts`).
pub fn is_prompt_ready(screen: &str) -> bool {
    if screen.to_lowercase().contains("api key") {
        return false;
    }
    screen.contains("? for shortcuts")
        || screen.lines().any(|l| {
            let l = l.trim_start_matches([' ', '│']);
            l.starts_with('❯') || l.starts_with("> ") || l == ">"
        })
}

/// Whether a process exists (EPERM counts as existing); zombies count as gone.
pub fn process_exists(pid: u32) -> bool {
    peers_core::process::running(pid)
}
