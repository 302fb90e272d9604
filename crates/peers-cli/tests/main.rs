//! The CLI's integration tests, one binary: the real `peers` (and its siblings) in a
//! throw-away environment.

mod broker;
mod claude_code;
mod demo;
mod doctor;
mod export;
mod failover;
mod hub_init;
mod install;
mod live;
mod mail;
mod texts;
mod token;
mod util;
