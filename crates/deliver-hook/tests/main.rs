//! The hook's integration tests, one binary: the real `peers-deliver` against a real broker,
//! with the recorded hook inputs of Claude Code. `pid_reuse` is a binary of its own
//! (`tests/pid_reuse/main.rs`): it sets the kernel's next pid, which the other tests' child
//! processes would race for.

mod bench;
mod delivery;
mod events;
mod failover;
mod front;
mod input_bounds;
mod mailmark;
mod util;
mod wait;
