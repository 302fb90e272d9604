//! The hook's two binaries: the front `peers-deliver` (what the hooks run) links no network
//! code and hands an event that must ask the broker to `peers-deliver-net` beside it.

use std::path::PathBuf;

use crate::util::*;

/// The full hook built with these tests.
fn net_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_peers-deliver-net"))
}

/// The symbol names of `bin` (`nm`), or `None` when `nm` cannot run.
fn symbols(bin: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("nm").arg(bin).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_front_links_no_network_code() {
    // By the symbol table (debug info would still name code the linker dropped).
    let (Some(net), Some(front)) = (symbols(&net_bin()), symbols(&hook_bin())) else {
        eprintln!("SKIPPED: `nm` (binutils) cannot read the hook binaries");
        return;
    };
    for krate in ["reqwest", "hyper", "tokio", "rustls"] {
        assert!(net.contains(krate), "the full hook should link {krate}");
        assert!(!front.contains(krate), "the front links {krate}");
    }
}

#[tokio::test]
async fn the_front_hands_mail_to_the_full_hook_and_is_silent_without_it() {
    let h = Harness::start(&[]).await;
    let id = h.send("through the front").await;
    // A front alone in its directory: the event needs the broker (a marker), and there is no
    // full hook to do it: exit 0, nothing shown, the mail still waits.
    let alone = tempfile::tempdir().unwrap();
    let front = alone.path().join("peers-deliver");
    std::fs::copy(hook_bin(), &front).unwrap();
    let debug = h.env.dir.path().join("front-debug.log");
    let mut lone = h.hook_at(&front, &[]);
    lone.env(deliver_hook::DEBUG_ENV, &debug);
    let r = run_with(lone, POST_TOOL_USE);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (Some(0), "", "")
    );
    let log = std::fs::read_to_string(&debug).unwrap();
    assert!(log.contains("cannot run the full hook"), "{log}");

    // With the full hook beside it (the built pair), the same event shows the mail.
    assert_eq!(stdout_ids(&h.run(POST_TOOL_USE).stdout), vec![id]);
    // Arguments go to the full hook as they are.
    let mut version = std::process::Command::new(hook_bin());
    version.arg("--version");
    let r = run_with(version, "");
    assert_eq!(r.stdout, format!("peers-deliver {}\n", peers_core::VERSION));
}

/// Whether the ELF file `bin` names a program interpreter (`PT_INTERP`): a dynamically linked
/// executable does, a static one does not. 64-bit little-endian ELF only.
fn has_interpreter(bin: &std::path::Path) -> bool {
    let elf = std::fs::read(bin).unwrap();
    assert_eq!(
        &elf[..6],
        b"\x7fELF\x02\x01",
        "{}: not 64-bit LE ELF",
        bin.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3)
}

#[test]
fn the_installed_front_is_linked_statically_and_the_full_hook_is_not() {
    // `cargo xtask test` runs this suite against the front `cargo xtask install` installs
    // (`PEERS_TEST_DELIVER_BIN`, with `PEERS_TEST_DELIVER_STATIC=1`); a plain `cargo test`
    // has only the ordinary dynamic build.
    if std::env::var_os("PEERS_TEST_DELIVER_STATIC").is_none() {
        eprintln!(
            "SKIPPED: the static front is built by `cargo xtask test` (PEERS_TEST_DELIVER_STATIC)"
        );
        return;
    }
    let front = hook_bin();
    assert!(
        !has_interpreter(&front),
        "{} is dynamically linked",
        front.display()
    );
    // The full hook keeps glibc's NSS for host names: dynamic, and the one the front execs.
    let full = front.with_file_name(deliver_hook::front::FULL_BIN);
    assert!(has_interpreter(&full), "{} is static", full.display());
    assert!(has_interpreter(&net_bin()));
}
