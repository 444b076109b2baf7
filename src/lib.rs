//! earlykill watches each posted content variant for its first minutes and
//! kills the ones that engage at less than half the rate expected.
//!
//! The data flow, in order:
//!
//! - [`event`] — the contract: one Rust type per Avro schema in `schemas/`,
//!   the single-object wire codec (serde_avro_fast on the hot path,
//!   apache-avro as the reference it is checked against), input validation, and
//!   the classification of each input record into a fold input or a
//!   dead-letter reason.
//! - [`monitor`] — the pure fold: `(state, event) -> (state, decisions)` for
//!   one partition, with its event-time clock, deadline index, held
//!   interactions and changelog snapshot/restore. No clock, I/O or randomness.
//!
//! - [`projector`] — `earlykill project` and `replay`: the decisions topic
//!   into PostgreSQL. Migrations, the `variant_monitoring` table written in
//!   idempotent batches with each partition's next offset in the same
//!   transaction, outage handling, and the rebuild from offset 0.
//!
//! - [`processor`] — `earlykill run`: the Kafka shell around the fold, one
//!   part per file behind a narrow `Broker` trait. One consumer group over
//!   the co-partitioned inputs, an event-time merge per partition,
//!   decisions, changelog and offsets committed in one transaction, restore
//!   on assignment, dead letters.
//! - [`api`] — the HTTP API: health, readiness, metrics, and the seeds'
//!   endpoints (active sessions, status, start and stop monitoring).
//! - [`upstream`] — producing input events (the API's writes).
//! - [`generate`] — `earlykill generate`: simulated upstream traffic.
//! - [`demo`] — `earlykill demo`: the whole flow on librdkafka's mock
//!   cluster, in one process.
//! - [`tail`] — `earlykill tail`: any earlykill topic as JSON lines.
//! - [`registry`] — the Confluent Schema Registry client.
//! - [`backtest`] — `earlykill backtest`: the recorded inputs folded again
//!   under other thresholds, on every core, and scored.
//! - [`config`] — one configuration system for every subcommand: layers
//!   (defaults, file, environment, flags) declared once per subcommand,
//!   with errors that name the key.
//! - [`telemetry`] — metric names and the audit log line per decision.
//! - [`watch`] — status shared between a worker thread and its watchers.
//! - [`shutdown`] — how every worker is asked to stop, and the signals.
//! - [`backoff`] — the one retry policy (exponential, with jitter).

#![warn(missing_docs)]

pub mod api;
pub mod backoff;
pub mod backtest;
pub mod config;
pub mod demo;

pub mod generate;
pub mod kafka;

pub mod processor;
pub mod projector;
pub mod registry;
pub mod secret;
pub mod shutdown;
pub mod tail;
pub mod telemetry;
pub mod upstream;
pub mod watch;
