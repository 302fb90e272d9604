//! The hook's front linked statically, as `cargo xtask install` installs it (issue 16).
//!
//! Why: the common no-mail event on a local broker makes no request, so what it costs is the
//! start of the process, and most of a dynamically linked front's start is the dynamic
//! loader (docs/BENCHMARKS.md, "The hook's front"). The front resolves no host names, so
//! glibc's NSS, which a static binary loses, does not matter to it; the networked hook
//! `peers-deliver-net` it execs stays dynamic.
//!
//! Cargo has no per-binary link setting, so the front is relinked with `cargo rustc … -C
//! target-feature=+crt-static` (only the `peers-deliver` binary gets the flag) and copied
//! into a directory of its own, `<profile>/static-front/`, beside a link to the full hook; the
//! next `cargo build` relinks the ordinary dynamic front in place. Only on Linux with glibc:
//! elsewhere `build` returns `None` and the ordinary front is used.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The front's and the full hook's file names (`deliver_hook::front::FULL_BIN`).
const FRONT: &str = "peers-deliver";
const FULL: &str = "peers-deliver-net";

/// Whether this platform gets a static front.
pub fn supported() -> bool {
    cfg!(all(target_os = "linux", target_env = "gnu"))
}

/// Builds the static front for `profile` (`"debug"` or `"release"`, after the ordinary build
/// of `deliver-hook`'s binaries) and returns its path: `<profile>/static-front/peers-deliver`,
/// with `peers-deliver-net` beside it linking to the full hook of the same profile. `None`
/// where there is no static front (another platform, or the link failed: said on stderr).
pub fn build(profile: &str) -> Result<Option<PathBuf>> {
    if !supported() {
        return Ok(None);
    }
    let mut cmd = crate::cargo_cmd();
    cmd.args(["rustc", "-p", "deliver-hook", "--bin", FRONT]);
    if profile == "release" {
        cmd.arg("--release");
    }
    // A machine without glibc's static libraries (`libc.a`: Debian's libc6-dev, Fedora's
    // glibc-static) cannot link it; the dynamic front works the same, only slower to start.
    if let Err(e) = crate::run_cmd(cmd.args(["--", "-C", "target-feature=+crt-static"])) {
        eprintln!(
            "xtask: WARNING: cannot link the hook's front statically ({e:#}); using the \
             dynamic one (install glibc's static library, e.g. glibc-static, to get it)"
        );
        return Ok(None);
    }
    let out = crate::target_dir().join(profile);
    let dir = out.join("static-front");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let front = dir.join(FRONT);
    // Copy to a temp name and rename, so a front running from here is never overwritten.
    let tmp = dir.join(format!(".{FRONT}.new"));
    std::fs::copy(out.join(FRONT), &tmp).context("copy the static front")?;
    std::fs::rename(&tmp, &front)?;
    let full = dir.join(FULL);
    if std::fs::symlink_metadata(&full).is_err() {
        std::os::unix::fs::symlink(Path::new("..").join(FULL), &full)
            .with_context(|| format!("cannot link {}", full.display()))?;
    }
    Ok(Some(front))
}
