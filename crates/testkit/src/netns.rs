//! Several "machines" on one (for the hub tests and `cargo xtask bench hub`): Linux network namespaces joined by veth pairs to a bridge in the
//! hub's namespace, all inside `10.231.0.0/24`, which exists only inside these namespaces.
//!
//! ```text
//!   <tag>-hub: br0 10.231.0.1 ── veth ── <tag>-c1: 10.231.0.11
//!                             └─ veth ── <tag>-c2: 10.231.0.12 …
//! ```
//!
//! [`Net`] deletes every namespace it made when dropped (deleting a namespace deletes the veth
//! ends and the bridge in it). Names are unique per process and run. Needs root and `ip`;
//! [`Net::unavailable`] says why not, so tests can print SKIPPED.
//!
//! Processes join a namespace with `setns` before `exec` ([`Ns::command`]); async code runs in
//! one on a thread of its own that joined it ([`Ns::run`]): a socket belongs to the namespace of
//! the thread that made it.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The hub's address in every [`Net`].
pub const HUB_ADDR: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);

/// One namespace: a "machine".
#[derive(Clone, Debug)]
pub struct Ns {
    pub name: String,
    pub addr: Ipv4Addr,
    /// The veth end that joins it to the hub's bridge, as named in the hub's namespace.
    pub hub_side: Option<String>,
}

/// A hub namespace and `n` client namespaces, deleted on drop.
pub struct Net {
    pub hub: Ns,
    pub clients: Vec<Ns>,
    made: Vec<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Why namespaces cannot be made here (not root, no `ip`), or `None`.
    pub fn unavailable() -> Option<String> {
        // Probed once per process: parallel tests must not race on the probe's name.
        static WHY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        WHY.get_or_init(Self::probe).clone()
    }

    fn probe() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("needs root for network namespaces".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Some("needs the `ip` command (iproute2)".into());
        }
        let probe = format!("phprobe{}", std::process::id());
        if let Err(e) = ip(&["netns", "add", &probe]) {
            return Some(format!("cannot make a network namespace: {e}"));
        }
        let _ = ip(&["netns", "del", &probe]);
        None
    }

    /// Makes the hub namespace and `clients` client namespaces, joined and up.
    pub fn new(clients: usize) -> Result<Net, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("p{:x}{n}", std::process::id());
        let hub = Ns {
            name: format!("{tag}-hub"),
            addr: HUB_ADDR,
            hub_side: None,
        };
        let mut net = Net {
            hub: hub.clone(),
            clients: vec![],
            made: vec![],
        };
        ip(&["netns", "add", &hub.name])?;
        net.made.push(hub.name.clone());
        ip(&["-n", &hub.name, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub.name, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &hub.name,
            "addr",
            "add",
            "10.231.0.1/24",
            "dev",
            "br0",
        ])?;
        ip(&["-n", &hub.name, "link", "set", "br0", "up"])?;
        for i in 1..=clients {
            let name = format!("{tag}-c{i}");
            ip(&["netns", "add", &name])?;
            net.made.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            let (h, c) = (format!("{tag}h{i}"), format!("{tag}c{i}"));
            ip(&["link", "add", &h, "type", "veth", "peer", "name", &c])?;
            ip(&["link", "set", &h, "netns", &hub.name])?;
            ip(&["link", "set", &c, "netns", &name])?;
            ip(&["-n", &hub.name, "link", "set", &h, "master", "br0"])?;
            ip(&["-n", &hub.name, "link", "set", &h, "up"])?;
            let addr = Ipv4Addr::new(10, 231, 0, 10 + i as u8);
            ip(&["-n", &name, "addr", "add", &format!("{addr}/24"), "dev", &c])?;
            ip(&["-n", &name, "link", "set", &c, "up"])?;
            net.clients.push(Ns {
                name,
                addr,
                hub_side: Some(h),
            });
        }
        Ok(net)
    }

    /// Cuts (`up = false`) or restores the link between the hub and client `i` (0-based), on
    /// the hub's side: the client keeps its address and route, its packets go nowhere.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let h = self.clients[i].hub_side.as_deref().expect("a client");
        ip(&[
            "-n",
            &self.hub.name,
            "link",
            "set",
            h,
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("hub-tests: {e}");
            }
        }
    }
}

impl Ns {
    fn open(&self) -> File {
        File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("open namespace {}: {e}", self.name))
    }

    /// A command that runs in this namespace (`setns` between fork and exec).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let file = self.open();
        let mut cmd = Command::new(program);
        // SAFETY: setns(2) is async-signal-safe; the descriptor stays open in `file`, which
        // the closure owns for as long as the command exists.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `make()`'s future on a new thread that joined this namespace (a current-thread
    /// runtime of its own). It starts at once; the returned future yields its result.
    pub fn run<T, F, Fut>(&self, make: F) -> impl Future<Output = T> + use<T, F, Fut>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let file = self.open();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a descriptor we own.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let _ = tx.send(rt.block_on(make()));
        });
        async move { rx.await.expect("the namespace thread panicked") }
    }
}
