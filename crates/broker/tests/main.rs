//! The broker's integration tests, one binary: the broker as a process over real HTTP and a
//! real SQLite file (`api`), what it lets in (`boundaries`), handovers (`handover`), session identity (`identity`), mail markers (`mailmark`),
//! storage faults (`storage`), topics and broadcasts (`topics`), threads and
//! history (`history`),
//! retention pruning under load (`retention`), two brokers on one PostgreSQL database
//! (`postgres`) and the optional TLS (`tls`).

mod api;
mod boundaries;
mod handover;
mod history;
mod identity;
mod mailmark;
mod postgres;
mod retention;
mod storage;
mod tls;
mod tokens;
mod topics;
mod util;
