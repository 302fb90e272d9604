//! `peers-deliver-net`, the full hook: the whole event with the network (claim, print, ack),
//! `--wait` and `--wait-codex`. The front `peers-deliver` execs it; see the library docs.
//! Exits 0 on any failure, including a panic.
fn main() {
    std::panic::set_hook(Box::new(|info| {
        deliver_hook::debug(|| format!("panic: {info}"));
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = std::panic::catch_unwind(|| deliver_hook::run(&args)).unwrap_or(0);
    std::process::exit(code);
}
