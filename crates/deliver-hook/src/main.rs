//! `peers-deliver`, the hook's front (`front.rs`): the no-network part of an event, then the
//! full hook `peers-deliver-net` when a broker must be asked. Exits 0 on any failure,
//! including a panic.
fn main() {
    std::panic::set_hook(Box::new(|info| {
        deliver_hook::debug(|| format!("panic: {info}"));
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = std::panic::catch_unwind(|| deliver_hook::front::run(&args)).unwrap_or(0);
    std::process::exit(code);
}
