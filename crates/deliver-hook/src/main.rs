//! The Claude Code hook that puts peer mail in front of the model (filled in by a later issue).
fn main() {
    eprintln!("peers-deliver {}: not built yet", peers_core::VERSION);
}
