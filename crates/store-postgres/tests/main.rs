//! The PostgreSQL backend against a real server: a throw-away cluster per test (testkit's
//! `PgCluster`), a fresh database in it, one or two `PgStore` handles on it standing for one
//! or two brokers. Skipped loudly when PostgreSQL is not installed. `story` runs the shared
//! story (`peers_store::story`), `pg` what only a shared server has, `migration` an upgrade of
//! a database the previous schema made.

mod migration;
mod pg;
mod story;
