//! earlykill watches each posted content variant for its first minutes and
//! kills the ones that engage at less than half the rate expected.
//!
//! This crate is the shell: Kafka, the HTTP API, PostgreSQL and the
//! command line around the pure core, the `earlykill-core` crate
//! (`crates/earlykill-core/`: the event contract and codec, validation, the
//! fold, the rule, the timers and the event-time merge), which depends on
//! no Kafka, async, HTTP or database crate.
//!
//! # Code map
//!
//! This is the one code map; README links here. The modules, in layers, a
//! module using only the layers below its own (checked from the `use`
//! lines by `tests/suite/architecture.rs`, which holds the same list):
//!
//! 1. Leaves, which every component may use:
//!    [`backoff`] (the one retry policy, exponential with jitter),
//!    [`shutdown`] (how every worker is asked to stop, and the signals),
//!    [`watch`] (status shared between a worker thread and its watchers),
//!    [`secret`] (values never logged), [`registry`] (the Confluent Schema
//!    Registry client), [`telemetry`] (metric names, the audit line per
//!    decision; it takes plain values).
//! 2. [`kafka`] — the Kafka plumbing several components share: topics by
//!    role, pass-through properties, the clients' contexts, cached
//!    watermarks, per-partition queues and their wake-up, topic ids; its
//!    `unsafe` calls with their `SAFETY` notes.
//! 3. Components, each owning its resolved settings and their defaults:
//!    - [`processor`] — `earlykill run`: one consumer group over the
//!      co-partitioned inputs, the event-time merge per partition,
//!      decisions, changelog and offsets committed in one transaction,
//!      restore on assignment, dead letters, worker threads, the worker's
//!      named lifecycle. Configuration: [`processor::ProcessorConfig`].
//!    - [`projector`] — `earlykill project` and `replay`: the decisions
//!      topic into the `variant_monitoring` table, exactly once.
//!      Configuration: [`projector::ProjectorConfig`].
//!    - [`upstream`] — producing input events (the API's writes).
//!    - [`tail`] — `earlykill tail`: any earlykill topic as JSON lines.
//! 4. Components built on others: [`generate`] (`earlykill generate`,
//!    simulated traffic through [`upstream`]), [`backtest`] (`earlykill
//!    backtest`: the recorded inputs read as the processor reads them,
//!    folded again under other thresholds, scored) and [`cluster`] (each
//!    instance announces the partitions it owns and its API's address on a
//!    compacted topic, so that any instance answers for the group).
//! 5. [`api`] — the HTTP API: health, readiness, metrics, and the seeds'
//!    endpoints over the processor's sessions and the projector's table.
//! 6. [`config`] — one configuration system for every subcommand: each
//!    subcommand's settings declared once (`layer!`: a flag, a variable, a
//!    file key and a default from the component), layered flags >
//!    environment > file > defaults, and checked with errors that name the
//!    key and the fix.
//! 7. [`demo`] — `earlykill demo`: every component wired on librdkafka's
//!    mock cluster in one process, with its own settings.
//!
//! The binary (`src/main.rs`, `src/cli/`) sits on top: the command line,
//! one module per group of subcommands, logging and the signal handling.
//!
//! # Tests and benches
//!
//! - `crates/earlykill-core/tests/core/` — the core's suite: the rule
//!   against an oracle (proptest), decode fuzzing, the contract against
//!   apache-avro. Its benches: `fold`, `memory`.
//! - `tests/suite/` — everything self-contained: the processor on
//!   librdkafka's mock cluster, the binary as a child process, the
//!   configuration, the deployment files, the architecture.
//! - `tests/services/` — what needs PostgreSQL (started by the tests),
//!   the tansu broker over TCP, or Python: the API, the projector, the
//!   real-broker tier, the soak.
//! - `tests/common/` — helpers both suites share.
//! - `benches/` — the projector, the pipeline on the mock, the real
//!   broker, the backtest.
//!
//! Each suite's `main.rs` lists its modules and what each covers.

#![warn(missing_docs)]

pub mod api;
pub mod backoff;
pub mod backtest;
pub mod cluster;
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
