//! The self-contained suite: everything that needs no service outside the
//! test process (the Kafka paths run on librdkafka's in-process mock
//! cluster, the binary as a child process). One test crate, one link; a
//! module per subject:
//!
//! - `processor` — `earlykill run` end to end on the mock cluster:
//!   decisions, exactly-once across a crash, partitions moving with their
//!   state, worker threads.
//! - `catch_up` — a backlog read unevenly gives the pure fold's decisions.
//! - `idle_clock` — the idle clock replayed after a crash.
//! - `flood` — thousands of bad records of every dead-letter kind between
//!   valid ones.
//! - `schema_dir` — `--schema-dir` through the binary.
//! - `tail` — `earlykill tail` through the binary.
//! - `backtest` — `earlykill backtest` against figures worked out by hand.
//! - `config` — layered configuration and errors that name the key.
//! - `deploy` — the dashboard, alerts, chart and compose file against the
//!   code.
//! - `architecture` — the import graph runs one way, the core stays pure,
//!   no source file grows past 800 lines.
//!
//! The core's own suite is `crates/earlykill-core/tests/core/`; the tests
//! that need PostgreSQL, a real broker or Python are `tests/services/`.

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod backtest;
mod catch_up;
mod config;
mod deploy;
mod docs;
mod flood;
mod idle_clock;
mod processor;
mod schema_dir;
mod shadow;
mod tail;
