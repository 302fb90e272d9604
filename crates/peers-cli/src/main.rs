//! The human's command-line tool (filled in by a later issue).
fn main() {
    eprintln!("peers {}: not built yet", peers_core::VERSION);
}
