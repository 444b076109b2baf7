//! earlykill's pure core: everything that decides, and nothing that talks
//! to the world. The compiler enforces it: this crate depends on no Kafka
//! client, async runtime, HTTP or database crate, so a decision can be
//! reproduced from its inputs alone (replays, backtests, property tests).
//!
//! - [`event`] — the contract: one Rust type per Avro schema in `schemas/`,
//!   the single-object wire codec (serde_avro_fast on the hot path,
//!   apache-avro as the reference it is checked against), input validation,
//!   and the classification of each input record into a fold input or a
//!   dead-letter reason.
//! - [`monitor`] — the fold: `(state, event) -> (state, decisions)` for one
//!   partition, with its event-time clock, the rule, the deadline timers,
//!   held interactions and the changelog snapshot and restore.
//! - [`merge`] — the event-time merge of one partition's three input topics
//!   (what Kafka Streams calls the `PartitionGroup`): the order the fold
//!   sees, whatever order the topics were fetched in.
//! - `fixtures` (feature `fixtures`) — builders for tests and benches.
//!
//! The `earlykill` crate is the shell around this one: Kafka, the HTTP API,
//! PostgreSQL and the command line. Its code map is in its crate docs.
//!
//! Tests: unit and property tests beside the code, and the suite in
//! `tests/core/` (the rule against an oracle, decode fuzzing, the contract
//! against the reference Avro implementation). Benches: `cargo bench -p
//! earlykill-core --bench fold` and `--bench memory`.

#![warn(missing_docs)]

pub mod event;
pub mod merge;
pub mod monitor;
pub mod shadow;

#[cfg(feature = "fixtures")]
pub mod fixtures;
