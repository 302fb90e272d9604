//! A terminal program under a private tmux server: start it in a pane of a given size, type
//! into it (`send-keys`), read the screen (`capture-pane`). The server (its own socket under
//! a directory of the test's) is killed on drop, and the program with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use peers_core::claude_settings::shell_quote;

/// One tmux session (`main`) on a private server.
pub struct Tmux {
    /// Names the program in failure messages.
    pub label: String,
    tmpdir: PathBuf,
    socket: String,
    stopped: bool,
}

impl Tmux {
    /// Whether tmux is installed; a test that needs it prints a loud SKIPPED line without it.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts `program args…` in `cwd` in a `width`×`height` pane with exactly the variables
    /// `env` (and `TERM`), through a launcher script written into `dir`. The pane stays on
    /// screen after the program exits (`remain-on-exit`), so its last words can be read.
    pub fn start(
        label: &str,
        dir: &Path,
        cwd: &Path,
        env: &[(String, String)],
        program: &Path,
        args: &[String],
        (width, height): (u16, u16),
    ) -> Result<Tmux> {
        std::fs::create_dir_all(dir)?;
        let tmpdir = dir.join("tmux");
        std::fs::create_dir_all(&tmpdir)?;
        let launcher = dir.join("launch.sh");
        let mut script = String::from("#!/bin/sh\n");
        script.push_str(&format!(
            "cd {} || exit 1\n",
            shell_quote(&cwd.to_string_lossy())
        ));
        script.push_str("exec env -i TERM=xterm-256color");
        for (k, v) in env {
            script.push_str(&format!(" {}", shell_quote(&format!("{k}={v}"))));
        }
        script.push_str(&format!(" {}", shell_quote(&program.to_string_lossy())));
        for a in args {
            script.push_str(&format!(" {}", shell_quote(a)));
        }
        script.push('\n');
        std::fs::write(&launcher, script)?;
        let conf = dir.join("tmux.conf");
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g history-limit 5000\n",
        )?;
        let t = Tmux {
            label: label.to_string(),
            tmpdir,
            socket: "t".into(),
            stopped: false,
        };
        let out = t
            .cmd()
            .arg("-f")
            .arg(&conf)
            .args(["new-session", "-d", "-s", "main", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg("sh")
            .arg(&launcher)
            .output()
            .context("cannot run tmux (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "tmux new-session failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(t)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TERM", "xterm-256color")
            .env("TMUX_TMPDIR", &self.tmpdir)
            .args(["-L", &self.socket])
            .stdin(Stdio::null());
        c
    }

    /// `tmux args…`, its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd().args(args).output()?;
        if !out.status.success() {
            bail!(
                "tmux {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The pid of the program in the pane (the launcher execs env, which execs it).
    pub fn pane_pid(&self) -> Result<u32> {
        self.run(&["display-message", "-p", "-t", "main", "#{pane_pid}"])?
            .trim()
            .parse()
            .context("pane pid")
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "main"])
            .unwrap_or_default()
    }

    /// The screen and up to `lines` lines of scrollback above it.
    pub fn scrollback(&self, lines: u32) -> String {
        let start = format!("-{lines}");
        self.run(&["capture-pane", "-p", "-t", "main", "-S", &start])
            .unwrap_or_default()
    }

    /// Sends tmux key names (`Up`, `Enter`, `C-c`, `Tab`, `Escape`).
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        self.run(&args).map(drop)
    }

    /// Types `text` literally (no key names).
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.run(&["send-keys", "-t", "main", "-l", text]).map(drop)
    }

    /// Waits until the screen satisfies `pred`; returns the screen, or an error with the last
    /// screen after `timeout`.
    pub fn wait_screen(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if pred(&s) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!(
                    "[{}] screen not as expected after {timeout:?}:\n{s}",
                    self.label
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the tmux server (and with it the program's terminal).
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let _ = self.cmd().arg("kill-server").output();
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.stop();
    }
}
